"""_sort (R4 3.1.1.5.1) on one and several keys, ascending and descending, with the exact
order asserted; paging with _count and next links (3.1.1.5.3), followed to the last
page while resources are created, updated and deleted between pages; _count=0 and
_summary=count (total only); _total.

Order the gateway documents where R4 leaves it open (store/query.py): ties, and the
order without _sort, are by (lastUpdated, type, id) ascending; a resource without a value
for a sort parameter sorts lowest (first ascending, last descending)."""

from __future__ import annotations

import base64
from typing import Any

from eol_search_kit import (
    bundle,
    create,
    encounter,
    get_page,
    listed,
    make,
    next_link,
    ordered,
    patient,
    put,
    refused,
    self_link,
)
from fastapi.testclient import TestClient


def follow(client: TestClient, rtype: str, params: list[tuple[str, str]],
           between: Any = None) -> tuple[list[str], list[dict[str, Any]]]:
    """Every page of a search: the match ids in order, and the pages."""
    b = bundle(client, rtype, params)
    pages = [b]
    seen = listed(b)
    while url := next_link(b):
        if between:
            between(len(pages))
        b = get_page(client, url)
        pages.append(b)
        seen += listed(b)
    return seen, pages


def seed_births(client: TestClient) -> dict[str, str]:
    return {
        "day": make(client, {"resourceType": "Patient", "birthDate": "1938-03-14",
                             "name": [{"family": "Ahmed"}]}),
        "month": make(client, {"resourceType": "Patient", "birthDate": "1941-11",
                               "name": [{"family": "brennan"}]}),
        "year": make(client, {"resourceType": "Patient", "birthDate": "1950",
                              "name": [{"family": "Ökafor"}]}),
        "unknown": make(client, {"resourceType": "Patient",
                                 "name": [{"family": "Zielinski"}]}),
    }


def test_sort_one_key_both_directions(client: TestClient) -> None:
    p = seed_births(client)
    assert ordered(client, "Patient", {"_sort": "birthdate"}) \
        == [p["unknown"], p["day"], p["month"], p["year"]]
    assert ordered(client, "Patient", {"_sort": "-birthdate"}) \
        == [p["year"], p["month"], p["day"], p["unknown"]]


def test_sort_strings_case_and_accent_insensitive(client: TestClient) -> None:
    # R4 3.1.1.5.1: "sorting SHOULD be performed on a case-insensitive basis"
    p = seed_births(client)
    assert ordered(client, "Patient", {"_sort": "family"}) \
        == [p["day"], p["month"], p["year"], p["unknown"]]
    assert ordered(client, "Patient", {"_sort": "-family"}) \
        == [p["unknown"], p["year"], p["month"], p["day"]]


def test_sort_repeating_values_uses_the_earliest_in_sort_order(client: TestClient) -> None:
    # R4 3.1.1.5.1: with several values, "the sort is based on the item in the set of
    # multiple parameters that comes earliest in the specified sort order"
    both = make(client, {"resourceType": "Patient", "name": [{"family": "Brennan"},
                                                             {"family": "Okafor"}]})
    middle = make(client, {"resourceType": "Patient", "name": [{"family": "Cole"}]})
    assert ordered(client, "Patient", {"_sort": "family"}) == [both, middle]
    assert ordered(client, "Patient", {"_sort": "-family"}) == [both, middle]


def test_sort_several_keys(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    e1 = encounter(client, grace, {"start": "2026-05-01T10:00:00Z",
                                   "end": "2026-05-01T11:00:00Z"})
    e2 = encounter(client, grace, {"start": "2026-05-12T08:00:00Z"}, "IMP",
                   status="in-progress")
    e3 = encounter(client, grace, {"start": "2026-05-03T22:10:00Z",
                                   "end": "2026-05-09T14:00:00Z"}, "IMP")
    e4 = encounter(client, grace, {"start": "2026-04-20T09:00:00Z"}, "AMB",
                   status="in-progress")
    # e2 and e4 are both ongoing (open end: the latest possible date): a tie, broken by id
    assert ordered(client, "Encounter", {"_sort": "status,-date"}) == [e3, e1,
                                                                      *sorted([e2, e4])]
    assert ordered(client, "Encounter", {"_sort": "-status,date"}) == [e4, e2, e1, e3]
    assert ordered(client, "Encounter", {"_sort": "class,date"}) == [e4, e1, e3, e2]
    assert ordered(client, "Encounter", [("_sort", "-class"), ("status", "in-progress")]) \
        == [e2, e4]


def test_repeated_sort_parameters_are_inner_sort_orders(client: TestClient) -> None:
    # R4 3.1.1.9 (search control parameters): _sort - "Order to sort results in (can
    # repeat for inner sort orders)"; so _sort=a&_sort=b is _sort=a,b
    older = make(client, {"resourceType": "Patient", "gender": "female", "birthDate": "1930"})
    man = make(client, {"resourceType": "Patient", "gender": "male", "birthDate": "1940"})
    younger = make(client, {"resourceType": "Patient", "gender": "female",
                            "birthDate": "1950"})
    assert ordered(client, "Patient", {"_sort": "gender,-birthdate"}) == [younger, older, man]
    assert ordered(client, "Patient", [("_sort", "gender"), ("_sort", "-birthdate")]) \
        == [younger, older, man]


def test_sort_ties_and_default_order_follow_the_id(client: TestClient) -> None:
    # The gateway's documented order (store/query.py): the _sort keys, then (type, id),
    # a tie-break that updates never move, so paging is stable while data changes.
    first = make(client, {"resourceType": "Patient", "gender": "female"})
    second = make(client, {"resourceType": "Patient", "gender": "female"})
    third = make(client, {"resourceType": "Patient", "gender": "male"})
    women = sorted([first, second])
    assert ordered(client, "Patient", {}) == sorted([first, second, third])
    assert ordered(client, "Patient", {"_sort": "gender"}) == [*women, third]
    assert ordered(client, "Patient", {"_sort": "-gender"}) == [third, *women]
    assert ordered(client, "Patient", {"_sort": "-_lastUpdated"}) == [third, second, first]
    assert ordered(client, "Patient", {"_sort": "_id"}) == sorted([first, second, third])


def test_sort_by_an_unknown_parameter_is_refused(client: TestClient) -> None:
    seed_births(client)
    assert "shoe-size" in refused(client, "Patient", {"_sort": "shoe-size"})
    refused(client, "Patient", {"_sort": "birthdate,-nope"})


def test_sorted_pages_concatenate_to_the_unpaged_order(client: TestClient) -> None:
    p = seed_births(client)
    extra = make(client, {"resourceType": "Patient", "birthDate": "1941-11",
                          "name": [{"family": "Brennan"}]})  # ties "month" on both keys
    for sort in ["birthdate", "-birthdate", "family,-birthdate", "-family,birthdate"]:
        whole = ordered(client, "Patient", {"_sort": sort})
        assert sorted(whole) == sorted([*p.values(), extra])
        for count in ("1", "2", "3"):
            seen, pages = follow(client, "Patient", [("_sort", sort), ("_count", count)])
            assert seen == whole, (sort, count)
            assert all(len(listed(b)) <= int(count) for b in pages)


def test_paging_follows_every_next_link(client: TestClient) -> None:
    made = [make(client, {"resourceType": "Patient", "gender": "other"}) for _ in range(7)]
    make(client, {"resourceType": "Patient", "gender": "male"})
    seen, pages = follow(client, "Patient", [("gender", "other"), ("_count", "3")])
    assert [len(listed(b)) for b in pages] == [3, 3, 1]
    assert seen == sorted(made)  # the default order: by id
    first_self = self_link(pages[0])
    assert first_self.startswith("http://gateway.test/fhir/Patient?")
    assert "gender=other" in first_self and "_count=3" in first_self
    nxt = next_link(pages[0])
    assert nxt and "_count=3" in nxt and "gender=other" in nxt  # the original criteria


def test_paging_while_creating_and_updating_with_a_stable_sort(client: TestClient) -> None:
    births = ["1931", "1934", "1937", "1940", "1943", "1946", "1949"]
    stored = {b: create(client, {"resourceType": "Patient", "birthDate": b}) for b in births}
    added: list[str] = []

    def meanwhile(page: int) -> None:
        # update one already seen and one still to come; create one after the cursor and
        # one before it (which this paging, correctly, does not see)
        for year in ("1931", "1949"):
            resource = stored[year]
            resource["name"] = [{"family": f"Updated-{page}"}]
            stored[year] = put(client, resource)
        added.append(make(client, {"resourceType": "Patient", "birthDate": f"19{60 + page}"}))
        make(client, {"resourceType": "Patient", "birthDate": f"192{page}"})

    seen, _ = follow(client, "Patient", [("_sort", "birthdate"), ("_count", "2"),
                                         ("birthdate", "ge1930")], between=meanwhile)
    assert len(seen) == len(set(seen))  # nothing twice
    assert seen == [stored[b]["id"] for b in births] + added  # nothing lost, in order


def test_updating_the_last_resource_of_a_sorted_page_does_not_repeat_it(
        client: TestClient) -> None:
    # The issue asks for no repeats and no losses while resources change between pages.
    # With _sort, the sort value of an updated resource is unchanged, so it is already
    # behind the cursor; only the (lastUpdated) tie-break moved.
    stored = [create(client, {"resourceType": "Patient", "birthDate": b})
              for b in ("1931", "1934", "1937", "1940")]

    def meanwhile(page: int) -> None:
        last_seen = stored[2 * page - 1]
        last_seen["active"] = True
        put(client, last_seen)

    seen, _ = follow(client, "Patient", [("_sort", "birthdate"), ("_count", "2")],
                     between=meanwhile)
    assert seen == [r["id"] for r in stored]


def test_paging_while_creating_with_the_default_order(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    alert = {"resourceType": "Flag", "status": "active", "code": {"text": "DNACPR"},
             "subject": {"reference": f"Patient/{grace}"}}
    made = [make(client, alert) for _ in range(5)]
    added: list[str] = []

    def meanwhile(_page: int) -> None:
        added.append(make(client, alert))

    seen, _ = follow(client, "Flag", [("patient", grace), ("_count", "2")],
                     between=meanwhile)
    assert len(seen) == len(set(seen))
    # every Flag that existed throughout is seen once; one made meanwhile is seen only
    # when its id sorts after the cursor (R4 3.1.1.8 leaves this to the server)
    assert set(made) <= set(seen) <= set(made) | set(added)


def test_paging_with_the_default_order_when_resources_change(client: TestClient) -> None:
    stored = [create(client, {"resourceType": "Patient", "gender": "female"})
              for _ in range(6)]

    def meanwhile(page: int) -> None:
        if page == 1:
            for r in (stored[1], stored[4]):  # one already seen, one not yet
                r["active"] = True
                put(client, r)
            r = client.delete(f"/fhir/Patient/{stored[5]['id']}")
            assert r.status_code in (200, 204), r.text

    b = bundle(client, "Patient", [("gender", "female"), ("_count", "2")])
    seen: list[tuple[str, str]] = [(e["resource"]["id"], e["resource"]["meta"]["versionId"])
                                   for e in b["entry"]]
    page = 1
    while url := next_link(b):
        meanwhile(page)
        page += 1
        b = get_page(client, url)
        seen += [(e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in b["entry"]]
    order = sorted(s["id"] for s in stored)
    changed = {stored[1]["id"], stored[4]["id"]}
    expected = [(rid, "1") for rid in order[:2]]  # page 1, read before the changes
    for rid in order[2:]:
        if rid == stored[5]["id"]:
            continue  # deleted before its page was read
        expected.append((rid, "2" if rid in changed else "1"))
    # each resource once, in id order, as it was when its page was read: nothing repeated,
    # nothing that still exists lost
    assert seen == expected


def test_count_zero_is_summary_count(client: TestClient) -> None:
    # R4 3.1.1.5.3: "if _count has the value 0, this shall be treated the same as
    # _summary=count: the server returns a bundle that reports the total number of
    # resources that match in Bundle.total, but with no entries, and no prev/next/last"
    for _ in range(3):
        make(client, {"resourceType": "Patient", "gender": "female"})
    b = bundle(client, "Patient", {"gender": "female", "_count": "0"})
    assert b["total"] == 3
    assert b.get("entry", []) == []
    assert next_link(b) is None


def test_summary_count_and_total(client: TestClient) -> None:
    for gender in ("female", "female", "female", "male"):
        make(client, {"resourceType": "Patient", "gender": gender})
    b = bundle(client, "Patient", {"gender": "female", "_summary": "count"})
    assert b["total"] == 3 and "entry" not in b and next_link(b) is None
    b = bundle(client, "Patient", {"_summary": "count", "_include": "Patient:organization"})
    assert b["total"] == 4 and "entry" not in b
    _, pages = follow(client, "Patient", [("gender", "female"), ("_count", "2"),
                                          ("_total", "accurate")])
    assert [b["total"] for b in pages] == [3, 3]
    b = bundle(client, "Patient", {"gender": "female"})
    assert b["total"] == 3  # one page: the total is known
    b = bundle(client, "Patient", {"gender": "female", "_total": "none"})
    assert "total" not in b


def test_bad_paging_values_are_refused(client: TestClient) -> None:
    make(client, {"resourceType": "Patient", "gender": "female"})
    for value in ("-1", "ten", "2.5", ""):
        if value:
            refused(client, "Patient", {"_count": value})
    refused(client, "Patient", {"_summary": "maybe"})
    refused(client, "Patient", {"_total": "exact"})
    refused(client, "Patient", {"_cursor": "not-a-cursor"})
    nested = base64.urlsafe_b64encode(b"[" * 2000).rstrip(b"=").decode()
    refused(client, "Patient", {"_cursor": nested})  # too deep to parse: 400, not 500


def _cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).rstrip(b"=").decode()


def test_paging_sorted_by_a_quantity_or_a_number(client: TestClient) -> None:
    # The cursor carries the last row's number (a double; -1e308 for a missing value):
    # the next link the gateway issued must be followed, in both directions.
    weights = [70, 82.5, 65, 90, 65.25, None]
    made = [make(client, {"resourceType": "Observation", "status": "final",
                          "code": {"text": "weight"},
                          **({"valueQuantity": {"value": w, "unit": "kg"}} if w is not None
                             else {"valueString": "not weighed"})}) for w in weights]
    risks = [make(client, {"resourceType": "RiskAssessment", "status": "final",
                           "subject": {"reference": "Patient/p"},
                           "prediction": [{"probabilityDecimal": p}]})
             for p in (0.25, 0.125, 0.5)]
    for rtype, sort in [("Observation", "value-quantity"), ("Observation", "-value-quantity"),
                        ("RiskAssessment", "probability"), ("RiskAssessment", "-probability")]:
        whole = ordered(client, rtype, {"_sort": sort})
        assert sorted(whole) == sorted(made if rtype == "Observation" else risks)
        for count in ("1", "2"):
            seen, _ = follow(client, rtype, [("_sort", sort), ("_count", count)])
            assert seen == whole, (sort, count)
    by_weight = [m for _, m in sorted((w, m) for w, m in zip(weights, made, strict=True)
                                      if w is not None)]
    assert ordered(client, "Observation", {"_sort": "value-quantity"})[1:] == by_weight


def test_a_cursor_holds_only_finite_numbers(client: TestClient) -> None:
    made = make(client, {"resourceType": "Observation", "status": "final",
                         "code": {"text": "weight"}, "valueQuantity": {"value": 70}})
    sort = {"_sort": "value-quantity"}
    for key in ('[NaN,"Observation","x"]', '[Infinity,"Observation","x"]',
                '[-Infinity,"Observation","x"]', '[true,"Observation","x"]',
                '[1e999,"Observation","x"]'):
        refused(client, "Observation", {**sort, "_cursor": _cursor(key)})
    after_missing = {**sort, "_cursor": _cursor('[-1e308,"Observation","x"]')}
    assert ordered(client, "Observation", after_missing) == [made]
    after_it = {**sort, "_cursor": _cursor(f'[70.0,"Observation","{made}"]')}
    assert ordered(client, "Observation", after_it) == []
