"""The store contract, run identically on a SQLite file and on mongomock.

Where mongomock cannot show real MongoDB behaviour, the test says so: mongomock has no
sessions, so the MongoDB engine runs its no-transaction mode (an undo journal) here; real
multi-document transactions and index races need a replica set (docker compose).
"""

from __future__ import annotations

import threading

import pytest

from fhir_gateway.store.base import (
    DateValue,
    IndexEntry,
    NewVersion,
    NumberValue,
    ReferenceValue,
    StoreEngine,
    StoreError,
    StringValue,
    TokenValue,
    VersionConflict,
)
from fhir_gateway.store.query import (
    Criterion,
    IndexQuery,
    MissingPredicate,
    RangePredicate,
    ReferencePredicate,
    StringPredicate,
    TokenPredicate,
    TokenTextPredicate,
)


def put(engine: StoreEngine, rid: str, version: int, *, body: str | None = "{}",
        index: tuple[IndexEntry, ...] = (), lu: str | None = None, rtype: str = "Patient",
        compartments: tuple[str, ...] = ()) -> None:
    with engine.session(write=True) as s:
        s.put(NewVersion(rtype, rid, version, lu or f"2026-01-01T00:00:{version:02d}.000000Z",
                         body, index, compartments))


def ids(engine: StoreEngine, *criteria: Criterion, rtype: str = "Patient") -> set[str]:
    with engine.session(write=False) as s:
        return {v.rid for v in s.find(IndexQuery(rtype=rtype, criteria=list(criteria))).rows}


def test_put_makes_version_current_and_keeps_history(engine: StoreEngine) -> None:
    put(engine, "a", 1, body='{"v":1}')
    put(engine, "a", 2, body='{"v":2}')
    with engine.session(write=False) as s:
        cur = s.current("Patient", "a")
        assert (cur.version, cur.body, cur.deleted) == (2, '{"v":2}', False)
        assert s.version("Patient", "a", 1).body == '{"v":1}'
        assert s.version("Patient", "a", 3) is None
        assert s.current("Patient", "nope") is None
        assert s.current("Observation", "a") is None


def test_existing_version_is_a_conflict_and_changes_nothing(engine: StoreEngine) -> None:
    put(engine, "a", 1, body='{"v":1}')
    with pytest.raises(VersionConflict):
        put(engine, "a", 1, body='{"v":"other"}')
    with engine.session(write=False) as s:
        assert s.current("Patient", "a").body == '{"v":1}'


def _bulk(rid: str, n: int, *, number: bool = False) -> NewVersion:
    index = [IndexEntry("identifier", TokenValue("s", f"code-{n % 3}", f"text {n}")),
             IndexEntry("name", StringValue(f"smith{n % 2}", f"Smith{n % 2}")),
             IndexEntry("birthdate", DateValue(f"2026-01-0{n % 4 + 1}",
                                               f"2026-01-0{n % 4 + 1}T23:59:59")),
             IndexEntry("general-practitioner",
                        ReferenceValue("Practitioner", f"gp{n % 2}", f"Practitioner/gp{n % 2}"))]
    if number:
        index.append(IndexEntry("length", NumberValue(float(n), float(n) + 0.5)))
    return NewVersion("Patient", rid, 1, f"2026-01-01T00:00:{n:02d}.000000Z",
                      f'{{"n":{n},"s":"\\"quoted\\" \\u00e9"}}', tuple(index),
                      compartments=(f"patient-{n % 2}",))


@pytest.mark.parametrize("number", [False, True], ids=["bulk", "with-number-values"])
def test_put_new_stores_and_indexes_exactly_as_put_does(engine: StoreEngine,
                                                        number: bool) -> None:
    one_by_one = [_bulk(f"put-{n}", n, number=number) for n in range(12)]
    many = [_bulk(f"new-{n}", n, number=number) for n in range(12)]
    with engine.session(write=True) as s:
        for new in one_by_one:
            s.put(new)
        s.put_new(many)
    with engine.session(write=False) as s:
        for a, b in zip(one_by_one, many, strict=True):
            x, y = s.current("Patient", a.rid), s.current("Patient", b.rid)
            assert (y.version, y.body, y.last_updated, y.deleted) == \
                (x.version, x.body, x.last_updated, False)
            assert s.version("Patient", b.rid, 1).body == b.body
    criteria = [Criterion("identifier", "token", [TokenPredicate("s", "code-1")]),
                Criterion("identifier", "token", [TokenTextPredicate("text 1")]),
                Criterion("name", "string", [StringPredicate("prefix", "smith1")]),
                Criterion("birthdate", "date", [RangePredicate("eq", "2026-01-02",
                                                               "2026-01-02T23:59:59")]),
                Criterion("general-practitioner", "reference",
                          [ReferencePredicate("Practitioner", "gp0")])]
    if number:
        criteria.append(Criterion("length", "number", [RangePredicate("ge", 5.0, 5.0)]))
    for criterion in criteria:
        found = ids(engine, criterion)
        put_ids = {r.removeprefix("put-") for r in found if r.startswith("put-")}
        new_ids = {r.removeprefix("new-") for r in found if r.startswith("new-")}
        assert put_ids and put_ids == new_ids, criterion
    with engine.session(write=False) as s:
        found = s.find(IndexQuery(rtype="Patient", criteria=[], compartment="patient-1",
                                  limit=100)).rows
    assert {r.rid for r in found} == {f"{w}-{n}" for w in ("put", "new") for n in range(1, 12, 2)}


def test_put_new_of_an_existing_resource_is_a_conflict(engine: StoreEngine) -> None:
    put(engine, "a", 1, body='{"v":1}')
    with pytest.raises(VersionConflict), engine.session(write=True) as s:
        s.put_new([_bulk("b", 1), NewVersion("Patient", "a", 1, "2026-01-01T00:00:09Z",
                                             '{"v":"other"}')])
    with engine.session(write=False) as s:
        assert s.current("Patient", "a").body == '{"v":1}'
        assert s.current("Patient", "b") is None
    with pytest.raises(ValueError), engine.session(write=True) as s:
        s.put_new([NewVersion("Patient", "c", 2, "2026-01-01T00:00:09Z", "{}")])


def test_older_version_than_current_is_a_conflict(engine: StoreEngine) -> None:
    put(engine, "a", 1)
    put(engine, "a", 3)
    with pytest.raises(VersionConflict):
        put(engine, "a", 2)


def test_delete_is_a_tombstone_version(engine: StoreEngine) -> None:
    tok = (IndexEntry("identifier", TokenValue("s", "1")),)
    put(engine, "a", 1, body='{"v":1}', index=tok)
    put(engine, "a", 2, body=None)
    with engine.session(write=False) as s:
        cur = s.current("Patient", "a")
        assert cur.deleted and cur.body is None and cur.version == 2
        assert s.version("Patient", "a", 1).body == '{"v":1}'
    assert ids(engine, Criterion("identifier", "token", [TokenPredicate("s", "1")])) == set()


def test_failed_session_writes_nothing(engine: StoreEngine) -> None:
    # SQLite: ROLLBACK. mongomock has no transactions: the engine's undo journal reverses
    # the writes (real MongoDB would abort the transaction instead).
    put(engine, "a", 1, body='{"v":1}')
    with pytest.raises(RuntimeError), engine.session(write=True) as s:
        s.put(NewVersion("Patient", "a", 2, "2026-01-01T00:00:02.000000Z", '{"v":2}'))
        s.put(NewVersion("Patient", "b", 1, "2026-01-01T00:00:02.000000Z", '{"b":1}'))
        raise RuntimeError("fail mid-transaction")
    with engine.session(write=False) as s:
        assert s.current("Patient", "a").version == 1
        assert s.version("Patient", "a", 2) is None
        assert s.current("Patient", "b") is None


def test_failed_savepoint_undoes_only_its_own_writes(engine: StoreEngine) -> None:
    # One transaction carrying several steps (ingestion batches records this way): a step
    # that raises leaves nothing behind, not even system records it overwrote or deleted,
    # and the steps before and after it commit. mongomock: the undo journal.
    put(engine, "a", 1, body='{"v":1}')
    with engine.session(write=True) as s:
        s.record_put("etimes", "kept", {"n": 1})
        s.record_put("etimes", "overwritten", {"n": 1})
        s.record_put("etimes", "deleted", {"n": 1})
    with engine.session(write=True) as s:
        with s.savepoint():
            s.put(NewVersion("Patient", "before", 1, "2026-01-01T00:00:02.000000Z", "{}"))
        with pytest.raises(RuntimeError), s.savepoint():
            s.put(NewVersion("Patient", "a", 2, "2026-01-01T00:00:02.000000Z", '{"v":2}',
                             (IndexEntry("identifier", TokenValue("s", "2")),)))
            s.put(NewVersion("Patient", "b", 1, "2026-01-01T00:00:02.000000Z", '{"b":1}'))
            assert s.record_put("person-nhs", "9434765919", {"p": "b"}, create_only=True)
            s.record_put("etimes", "overwritten", {"n": 2})
            assert s.record_delete("etimes", "deleted")
            assert s.current("Patient", "b") is not None  # visible inside the step
            raise RuntimeError("this record is bad")
        s.put(NewVersion("Patient", "after", 1, "2026-01-01T00:00:03.000000Z", "{}"))
    with engine.session(write=False) as s:
        assert s.current("Patient", "a").version == 1
        assert s.version("Patient", "a", 2) is None
        assert s.current("Patient", "b") is None
        assert s.current("Patient", "before") is not None
        assert s.current("Patient", "after") is not None
        assert s.record_get("person-nhs", "9434765919") is None
        assert s.record_get("etimes", "overwritten") == {"n": 1}
        assert s.record_get("etimes", "deleted") == {"n": 1}
        assert s.record_get("etimes", "kept") == {"n": 1}
    assert ids(engine, Criterion("identifier", "token", [TokenPredicate("s", "2")])) == set()
    with engine.session(write=True) as s:  # the claim was undone, so it can be made again
        assert s.record_put("person-nhs", "9434765919", {"p": "c"}, create_only=True)


def test_failed_session_undoes_overwritten_and_deleted_records(engine: StoreEngine) -> None:
    with engine.session(write=True) as s:
        s.record_put("etimes", "x", {"n": 1})
        s.record_put("etimes", "y", {"n": 1})
    with pytest.raises(RuntimeError), engine.session(write=True) as s:
        s.record_put("etimes", "x", {"n": 2})
        s.record_delete("etimes", "y")
        raise RuntimeError("fail mid-transaction")
    with engine.session(write=False) as s:
        assert s.record_get("etimes", "x") == {"n": 1}
        assert s.record_get("etimes", "y") == {"n": 1}


def test_history_newest_first_with_keyset_paging(engine: StoreEngine) -> None:
    for i in range(1, 6):
        put(engine, "a", i, lu=f"2026-01-01T00:00:{i:02d}.000000Z")
    put(engine, "b", 1, lu="2026-01-01T00:00:03.000000Z")
    seen = []
    cursor = None
    while True:
        with engine.session(write=False) as s:
            page = s.history(rtype="Patient", rid=None, since=None, cursor=cursor, limit=2)
        seen += [(v.rid, v.version) for v in page.versions]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [("a", 5), ("a", 4), ("b", 1), ("a", 3), ("a", 2), ("a", 1)]
    with engine.session(write=False) as s:
        page = s.history(rtype="Patient", rid="a", since="2026-01-01T00:00:04.000000Z",
                         cursor=None, limit=10)
    assert [v.version for v in page.versions] == [5, 4]


def test_paging_is_stable_while_data_changes(engine: StoreEngine) -> None:
    for i in range(1, 5):
        put(engine, f"r{i}", 1, lu=f"2026-01-01T00:00:{i:02d}.000000Z")
    with engine.session(write=False) as s:
        first = s.history(rtype="Patient", rid=None, since=None, cursor=None, limit=2)
    put(engine, "new", 1, lu="2026-01-01T00:00:09.000000Z")  # newer: must not shift page 2
    with engine.session(write=False) as s:
        second = s.history(rtype="Patient", rid=None, since=None,
                           cursor=first.next_cursor, limit=2)
    assert [v.rid for v in first.versions] == ["r4", "r3"]
    assert [v.rid for v in second.versions] == ["r2", "r1"]


def _indexed(engine: StoreEngine) -> None:
    put(engine, "p1", 1, index=(
        IndexEntry("identifier", TokenValue("https://fhir.nhs.uk/Id/nhs-number", "9434765919")),
        IndexEntry("identifier", TokenValue(None, "LOCAL1")),
        IndexEntry("gender", TokenValue(None, "female", "female")),
        IndexEntry("name", StringValue("o'brien", "O'Brien")),
        IndexEntry("birthdate", DateValue("1940-05-01T00:00:00.000000",
                                          "1940-05-01T23:59:59.999999")),
        IndexEntry("general-practitioner", ReferenceValue("Organization", "org1",
                                                          "Organization/org1")),
    ))
    put(engine, "p2", 1, index=(
        IndexEntry("identifier", TokenValue("https://fhir.nhs.uk/Id/nhs-number", "9000000009")),
        IndexEntry("gender", TokenValue(None, "male")),
        IndexEntry("name", StringValue("smith", "Smith")),
        IndexEntry("birthdate", DateValue("1950-01-01T00:00:00.000000",
                                          "1950-12-31T23:59:59.999999")),
    ))
    put(engine, "p3", 1, index=(
        IndexEntry("name", StringValue("smythe", "Smythe")),
        IndexEntry("length", NumberValue(1.45, 1.55)),
    ))


def test_token_predicates(engine: StoreEngine) -> None:
    _indexed(engine)
    nhs = "https://fhir.nhs.uk/Id/nhs-number"
    assert ids(engine, Criterion("identifier", "token", [TokenPredicate(nhs, "9434765919")])) \
        == {"p1"}
    assert ids(engine, Criterion("identifier", "token", [TokenPredicate(None, "LOCAL1")])) \
        == {"p1"}
    assert ids(engine, Criterion("identifier", "token", [TokenPredicate("", "LOCAL1")])) \
        == {"p1"}
    assert ids(engine, Criterion("identifier", "token", [TokenPredicate("", "9434765919")])) \
        == set()
    assert ids(engine, Criterion("identifier", "token", [TokenPredicate(nhs, None)])) \
        == {"p1", "p2"}
    assert ids(engine, Criterion("gender", "token", [TokenPredicate(None, "male")],
                                 negate=True)) == {"p1", "p3"}
    assert ids(engine, Criterion("gender", "token", [TokenPredicate(None, "male"),
                                                     TokenPredicate(None, "female")])) \
        == {"p1", "p2"}
    assert ids(engine, Criterion("gender", "token", [TokenTextPredicate("fem")])) == {"p1"}
    assert ids(engine, Criterion("gender", "token", [MissingPredicate(True)])) == {"p3"}
    assert ids(engine, Criterion("gender", "token", [MissingPredicate(False)])) == {"p1", "p2"}


def test_and_of_criteria(engine: StoreEngine) -> None:
    _indexed(engine)
    assert ids(engine,
               Criterion("gender", "token", [TokenPredicate(None, "female")]),
               Criterion("name", "string", [StringPredicate("prefix", "o'b")])) == {"p1"}
    assert ids(engine,
               Criterion("gender", "token", [TokenPredicate(None, "male")]),
               Criterion("name", "string", [StringPredicate("prefix", "o'b")])) == set()


def test_string_predicates(engine: StoreEngine) -> None:
    _indexed(engine)
    assert ids(engine, Criterion("name", "string", [StringPredicate("prefix", "sm")])) \
        == {"p2", "p3"}
    assert ids(engine, Criterion("name", "string", [StringPredicate("exact", "Smythe")])) \
        == {"p3"}
    assert ids(engine, Criterion("name", "string", [StringPredicate("exact", "smythe")])) \
        == set()
    assert ids(engine, Criterion("name", "string", [StringPredicate("contains", "yth")])) \
        == {"p3"}


@pytest.mark.parametrize("hostile", ['{"$ne": null}', ".*", "%", "_", "' OR '1'='1", "' OR 1=1 --",
                                     "^", "\\", '"; DROP TABLE resources; --', "$where"])
def test_values_are_data_never_query_syntax(engine: StoreEngine, hostile: str) -> None:
    _indexed(engine)
    for mode in ("prefix", "exact", "contains"):
        assert ids(engine, Criterion("name", "string", [StringPredicate(mode, hostile)])) \
            == set(), mode
    assert ids(engine, Criterion("identifier", "token", [TokenPredicate(hostile, hostile)])) \
        == set()
    assert ids(engine, Criterion("gender", "token", [TokenTextPredicate(hostile)])) == set()
    assert ids(engine) == {"p1", "p2", "p3"}  # and nothing was dropped


def test_like_wildcards_match_literally(engine: StoreEngine) -> None:
    _indexed(engine)
    put(engine, "p4", 1, index=(IndexEntry("name", StringValue("ab 100%_x", "AB 100%_x")),))

    def q(mode: str, text: str) -> set[str]:
        return ids(engine, Criterion("name", "string", [StringPredicate(mode, text)]))

    assert q("contains", "100%_x") == {"p4"}
    assert q("contains", "0%_") == {"p4"}
    assert q("contains", "%") == {"p4"}
    assert q("contains", "_") == {"p4"}
    assert q("prefix", "ab 100%") == {"p4"}
    assert q("prefix", "ab_") == set()  # "_" is not "any character"
    assert q("prefix", "a%") == set()


def test_prefix_finds_exactly_the_strings_that_start_with_it(engine: StoreEngine) -> None:
    # SQLite answers a prefix from the index as a range [prefix, next): the edges of that
    # range, non-ASCII text and an upper-case prefix must match what "starts with" means.
    names = {"e1": "smith", "e2": "smiths", "e3": "smiti", "e4": "smit", "e5": "smith\U0010ffff",
             "e6": "søren", "e7": "sóren", "e8": "sz", "e9": "\ud7ffx"}
    for rid, norm in names.items():
        put(engine, rid, 1, index=(IndexEntry("name", StringValue(norm, norm)),))

    def q(text: str) -> set[str]:
        return ids(engine, Criterion("name", "string", [StringPredicate("prefix", text)]))

    assert q("smith") == {"e1", "e2", "e5"}
    assert q("smit") == {"e1", "e2", "e3", "e4", "e5"}
    assert q("sø") == {"e6"}
    assert q("s") == {"e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8"}
    assert q("\ud7ff") == {"e9"}


def test_date_range_predicates(engine: StoreEngine) -> None:
    _indexed(engine)
    y1950 = ("1950-01-01T00:00:00.000000", "1950-12-31T23:59:59.999999")
    may1940 = ("1940-05-01T00:00:00.000000", "1940-05-31T23:59:59.999999")

    def q(op: str, rng: tuple[str, str]) -> set[str]:
        return ids(engine, Criterion("birthdate", "date", [RangePredicate(op, *rng)]))

    assert q("eq", may1940) == {"p1"}  # a day inside the month: contained
    assert q("eq", y1950) == {"p2"}
    assert q("ne", y1950) == {"p1"}
    assert q("lt", y1950) == {"p1"}
    assert q("gt", may1940) == {"p2"}
    assert q("ge", y1950) == {"p2"}
    assert q("le", may1940) == {"p1"}
    assert q("sa", may1940) == {"p2"}
    assert q("eb", y1950) == {"p1"}


def test_number_and_reference_predicates(engine: StoreEngine) -> None:
    _indexed(engine)
    assert ids(engine, Criterion("length", "number", [RangePredicate("eq", 1.45, 1.55)])) \
        == {"p3"}
    assert ids(engine, Criterion("length", "number", [RangePredicate("gt", 2.0, 2.0)])) == set()
    ref = "general-practitioner"
    assert ids(engine, Criterion(ref, "reference",
                                 [ReferencePredicate("Organization", "org1")])) == {"p1"}
    assert ids(engine, Criterion(ref, "reference", [ReferencePredicate(None, "org1")])) \
        == {"p1"}
    assert ids(engine, Criterion(ref, "reference",
                                 [ReferencePredicate("Practitioner", "org1")])) == set()
    assert ids(engine, Criterion(ref, "reference",
                                 [ReferencePredicate(None, None, url="Organization/org1")])) \
        == {"p1"}


def test_index_rows_follow_the_current_version(engine: StoreEngine) -> None:
    put(engine, "a", 1, index=(IndexEntry("gender", TokenValue(None, "male")),))
    put(engine, "a", 2, index=(IndexEntry("gender", TokenValue(None, "female")),))
    assert ids(engine, Criterion("gender", "token", [TokenPredicate(None, "male")])) == set()
    assert ids(engine, Criterion("gender", "token", [TokenPredicate(None, "female")])) == {"a"}


def test_types_do_not_leak(engine: StoreEngine) -> None:
    put(engine, "x", 1, rtype="Observation",
        index=(IndexEntry("code", TokenValue("http://snomed.info/sct", "304251008")),))
    crit = Criterion("code", "token", [TokenPredicate(None, "304251008")])
    assert ids(engine, crit, rtype="Observation") == {"x"}
    assert ids(engine, crit, rtype="Patient") == set()


def test_concurrent_writers_never_lose_a_version(engine: StoreEngine) -> None:
    # Each thread claims "next version" itself; losers see VersionConflict and retry, as
    # the repository does. (On mongomock this exercises the unique index, not real
    # transaction isolation, which needs a replica set.)
    put(engine, "a", 1)
    written: list[int] = []
    lock = threading.Lock()

    def writer() -> None:
        for _ in range(10):
            while True:
                try:
                    with engine.session(write=True) as s:
                        nxt = s.current("Patient", "a").version + 1
                        s.put(NewVersion("Patient", "a", nxt, "2026-01-01T00:00:00.000000Z",
                                         f'{{"v":{nxt}}}'))
                    with lock:
                        written.append(nxt)
                    break
                except VersionConflict:
                    continue

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(written) == list(range(2, 42))
    with engine.session(write=False) as s:
        assert s.current("Patient", "a").version == 41
        assert all(s.version("Patient", "a", v).body == f'{{"v":{v}}}' for v in range(2, 42))


def test_system_records(engine: StoreEngine) -> None:
    with engine.session(write=True) as s:
        assert s.record_put("client", "gp-feed", {"role": "feed", "partner": "gp"})
        assert s.record_put("client", "ambulance", {"role": "ambulance"})
    with engine.session(write=False) as s:
        assert s.record_get("client", "gp-feed") == {"role": "feed", "partner": "gp"}
        assert s.record_get("client", "nobody") is None
        assert [k for k, _ in s.record_list("client")] == ["ambulance", "gp-feed"]
        assert [k for k, _ in s.record_list("client", after="ambulance")] == ["gp-feed"]
        assert [k for k, _ in s.record_list("client", before="gp-feed")] == ["ambulance"]
        assert s.record_list("client", after="ambulance", before="gp-feed") == []
    with engine.session(write=True) as s:
        assert s.record_put("client", "gp-feed", {"role": "feed", "partner": "hospice"})
        assert s.record_delete("client", "ambulance")
        assert not s.record_delete("client", "ambulance")
    with engine.session(write=False) as s:
        assert s.record_get("client", "gp-feed")["partner"] == "hospice"
        assert s.record_list("client") == [("gp-feed", {"role": "feed", "partner": "hospice"})]


def test_create_only_records_guard_replays_until_expiry(engine: StoreEngine) -> None:
    t0, t1, t2 = ("2026-01-01T00:00:00.000000Z", "2026-01-01T00:05:00.000000Z",
                  "2026-01-01T00:06:00.000000Z")
    with engine.session(write=True) as s:
        assert s.record_put("jti", "abc", {}, expires=t1, create_only=True, now=t0)
        assert not s.record_put("jti", "abc", {}, expires=t1, create_only=True, now=t0)
    with engine.session(write=False) as s:
        assert s.record_get("jti", "abc", now=t0) == {}
        assert s.record_get("jti", "abc", now=t2) is None
    with engine.session(write=True) as s:  # expired: the key may be used again
        assert s.record_put("jti", "abc", {}, expires="2026-01-01T00:11:00.000000Z",
                            create_only=True, now=t2)


def test_records_roll_back_with_the_session(engine: StoreEngine) -> None:
    with pytest.raises(RuntimeError), engine.session(write=True) as s:
        s.record_put("jti", "x", {}, create_only=True)
        raise RuntimeError("fail")
    with engine.session(write=False) as s:
        assert s.record_get("jti", "x") is None


def test_a_write_cannot_open_inside_a_read_session(engine: StoreEngine) -> None:
    """A write nested in a read session (e.g. in a GET the gate runs in one read session)
    would escape the writer's locks or transaction: refused on both engines."""
    with engine.session(write=False), pytest.raises(StoreError), \
            engine.session(write=True) as s:
        s.record_put("counter", "c", {"n": 1})
    with engine.session(write=True) as s:  # a write session may nest a read one
        with engine.session(write=False) as inner:
            assert inner.record_get("counter", "c") is None
        s.record_put("counter", "c", {"n": 1})
    with engine.session(write=False) as s:
        assert s.record_get("counter", "c") == {"n": 1}
