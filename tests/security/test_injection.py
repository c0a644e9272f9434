"""NoSQL operators and SQL in search values are data, never query: no 500, no leak, no
damage, on both engines, through an authenticated client."""

from __future__ import annotations

import pytest

from security_kit import Gateway, patient

HOSTILE = [
    '{"$ne": null}', '{"$gt": ""}', "$where", '{"$where": "sleep(100)"}', "[$ne]=1",
    "' OR '1'='1", "'; DROP TABLE resources; --", '" OR 1=1 --', "1; DELETE FROM versions",
    "%' OR 1=1 --", "\\' OR 1=1", "Jones' UNION SELECT body FROM resources --", "\x00",
    "a" * 5000,
]
PARAMS = ["name", "family", "identifier", "_id", "birthdate", "general-practitioner",
          "name:contains", "name:exact", "identifier:of-type", "_lastUpdated",
          "general-practitioner:Organization.name", "_has:Observation:subject:code"]


@pytest.mark.parametrize("param", PARAMS)
def test_hostile_search_values_are_plain_data(gw: Gateway, param: str) -> None:
    gw.put(patient("p1", "9434765919", "Jones"))
    h = gw.login("ward", "clinician")
    for value in HOSTILE:
        resp = gw.http.get("/fhir/Patient", params={param: value}, headers=h)
        assert resp.status_code in (200, 400), (param, value, resp.status_code, resp.text)
        if resp.status_code == 200 and value != "\x00":  # NUL normalises to "" (matches all)
            assert not resp.json().get("entry"), (param, value)  # matched nothing
    everyone = gw.http.get("/fhir/Patient", headers=h).json()["entry"]
    assert [e["resource"]["id"] for e in everyone] == ["p1"]  # nothing dropped or changed


def test_hostile_values_in_post_search_and_ids(gw: Gateway) -> None:
    gw.put(patient("p1", "9434765919", "Jones"))
    h = gw.login("ward", "clinician")
    for value in HOSTILE[:8]:
        resp = gw.http.post("/fhir/Patient/_search", data={"name": value}, headers=h)
        assert resp.status_code in (200, 400), resp.text
        resp = gw.http.get(f"/fhir/Patient/{value}", headers=h)
        assert resp.status_code in (400, 404), resp.text
    assert gw.http.get("/fhir/Patient/p1", headers=h).status_code == 200
