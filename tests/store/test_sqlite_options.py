"""SQLite engine options that only that engine has."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fhir_gateway.store import open_store
from fhir_gateway.store.base import IndexEntry, NewVersion, TokenValue
from fhir_gateway.store.query import Criterion, IndexQuery, TokenPredicate
from fhir_gateway.store.sqlite import SqliteEngine, SqliteSession, compile_query


def _cache_size(engine: SqliteEngine) -> int:
    with engine.session(write=False) as s:
        assert isinstance(s, SqliteSession)
        return int(s.conn.execute("PRAGMA cache_size").fetchone()[0])


def test_cache_mib_sizes_every_connections_page_cache(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 'big.sqlite3'}", sqlite_cache_mib=64)
    assert isinstance(engine, SqliteEngine)
    assert _cache_size(engine) == -64 * 1024  # negative: KiB, not pages
    default = SqliteEngine(tmp_path / "default.sqlite3")
    assert _cache_size(default) == -2000  # SQLite's own default, untouched
    engine.close()
    default.close()


def _coded(n: int, body: str = "{}") -> NewVersion:
    return NewVersion("Patient", f"p{n}", 1, "2026-01-01T00:00:01Z", body,
                      (IndexEntry("identifier", TokenValue("s", f"c{n}")),))


def _found_by_code(engine: SqliteEngine, n: int) -> list[tuple[str, str | None]]:
    with engine.session(write=False) as s:
        rows = s.find(IndexQuery(rtype="Patient", criteria=[Criterion(
            "identifier", "token", [TokenPredicate("s", f"c{n}")])])).rows
    return [(r.rid, r.body) for r in rows]


def test_put_new_finds_its_rows_when_sqlite_picks_rowids_at_random(tmp_path: Path) -> None:
    # Past the largest rowid, SQLite gives new rows free rowids at random, so put_new
    # cannot count them from max(pk) + 1: it must look each one up, and index it there.
    engine = SqliteEngine(tmp_path / "gw.sqlite3")
    try:
        with engine.session(write=True) as s:
            s.conn.execute("INSERT INTO resources (pk, rtype, rid, version, last_updated, "
                           "deleted, body) VALUES (9223372036854775807, 'Patient', 'last', "
                           "1, '2026-01-01T00:00:00Z', 0, '{}')")
            s.put_new([_coded(n) for n in range(5)])
        for n in range(5):
            assert _found_by_code(engine, n) == [(f"p{n}", "{}")]
    finally:
        engine.close()


def test_put_new_splits_its_inserts_at_sqlites_limit_on_bound_variables(tmp_path: Path
                                                                        ) -> None:
    # A build of SQLite may allow as few as 999 bound variables per statement; put_new
    # must split a large batch rather than fail (here: 20, so three rows per statement).
    engine = SqliteEngine(tmp_path / "gw.sqlite3")
    try:
        with engine.session(write=True) as s:
            s.conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 20)
            s.put_new([_coded(n, f'{{"n":{n}}}') for n in range(10)])
        for n in range(10):
            assert _found_by_code(engine, n) == [(f"p{n}", f'{{"n":{n}}}')]
    finally:
        engine.close()


def test_an_error_that_ended_the_transaction_is_the_one_raised(tmp_path: Path) -> None:
    # When SQLite has already rolled the whole transaction back (disk full, I/O error),
    # undoing the savepoint and the session must not bury the error under "no such
    # savepoint" / "no transaction is active".
    engine = SqliteEngine(tmp_path / "gw.sqlite3")
    try:
        with pytest.raises(ValueError, match="the original error"), \
                engine.session(write=True) as s, s.savepoint():
            s.record_put("counter", "c", {"n": 1})
            s.conn.execute("ROLLBACK")  # as SQLite does itself on SQLITE_FULL
            raise ValueError("the original error")
        with engine.session(write=False) as s:
            assert s.record_get("counter", "c") is None
    finally:
        engine.close()


@pytest.mark.parametrize(("rtype", "types"), [
    (None, ["Observation"]), (None, ["Observation", "Consent", "Flag"]),
    # one type (a compartment search, the consent decision's read of a person's merge
    # links: 48 ms each at 1M when the type's index drove)
    ("Observation", None)])
def test_a_patients_compartment_of_some_types_is_read_through_the_compartment(
        tmp_path: Path, rtype: str | None, types: list[str] | None) -> None:
    # The type's index would walk every Observation on the record (the emergency summary
    # read each type so: 42 ms CPU a summary at 1M resources); the patient's compartment
    # holds a few hundred rows. The plan must drive from the compartment whatever the
    # statistics say, so the type is kept off its index.
    engine = SqliteEngine(tmp_path / "gw.sqlite3")
    try:
        with engine.session(write=True) as s:
            for n in range(30):
                s.put(NewVersion("Observation", f"o{n}", 1, "2026-01-01T00:00:01Z", "{}",
                                 compartments=(f"p{n % 3}",)))
        with engine.session(write=False) as s:
            query = IndexQuery(rtype=rtype, compartment="p1", types=types, limit=100)
            sql, args = compile_query(query)
            plan = " | ".join(row[3] for row in s.conn.execute(f"EXPLAIN QUERY PLAN {sql}",
                                                                args))
            found = s.find(query).rows
        assert "compartment_patient" in plan and "(rtype=?)" not in plan, plan
        assert sorted(r.rid for r in found) == sorted(f"o{n}" for n in range(1, 30, 3))
    finally:
        engine.close()


@pytest.mark.parametrize(("since", "second_page"), [
    (None, False), (None, True), ("2024-01-01T00:00:00Z", False),
    ("2024-01-01T00:00:00Z", True)])
def test_one_resources_history_comes_from_its_primary_key(
        tmp_path: Path, since: str | None, second_page: bool) -> None:
    # On `versions_type_updated` SQLite walks the type's whole history (9 s for one
    # Patient's at 1M resources): with `_since` and on every page the instance's own
    # versions come from the primary key, in the same order.
    engine = SqliteEngine(tmp_path / "gw.sqlite3")
    try:
        with engine.session(write=True) as s:
            for v in range(1, 4):
                s.put(NewVersion("Patient", "p1", v, f"2024-02-0{v}T00:00:00.000Z", "{}"))
                s.put(NewVersion("Patient", f"other{v}", 1, f"2024-02-0{v}T00:00:00.000Z",
                                 "{}"))
        with engine.session(write=False) as s:
            first = s.history(rtype="Patient", rid="p1", since=since, cursor=None, limit=1)
            cursor = first.next_cursor if second_page else None
            statements: list[str] = []
            s.conn.set_trace_callback(statements.append)
            page = s.history(rtype="Patient", rid="p1", since=since, cursor=cursor, limit=1)
            s.conn.set_trace_callback(None)
            (sql,) = [x for x in statements if "FROM versions" in x]
            plan = [row[3] for row in s.conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
        assert [v.version for v in first.versions] == [3]
        assert [v.version for v in page.versions] == ([2] if second_page else [3])
        assert not [step for step in plan if "versions_type_updated" in step], plan
    finally:
        engine.close()
