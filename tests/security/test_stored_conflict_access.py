"""The stored CPR-conflict DetectedIssue (`fhir_gateway.summary.conflicts`) is part of the
person's record: consent hides it from other organisations like the rest, break-glass
opens it, a holder sees it, and no partner feed can change or delete it.

The record: Patient `hid` (a deny consent; held by the hospice RH1 and the hospital RXA,
named by the Provenance ingest wrote) whose two partners' current CPR decisions differ.
A GP clinician (B86001) is "another organisation".
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from fhir_gateway.fhir.derivations import DERIVED_TAG_SYSTEM
from fhir_gateway.summary.conflicts import stored_issue_id
from fhir_gateway.summary.facts import is_stored_conflict
from security_kit import (
    FHIR_JSON,
    HIDDEN_NHS,
    Gateway,
    deny_consent,
    gp,
    patient,
    provenance,
)

SCT = "http://snomed.info/sct"


def decision(oid: str, code: str, when: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": SCT, "code": "304251008"}]},
            "subject": {"reference": "Patient/hid"}, "effectiveDateTime": when,
            "valueCodeableConcept": {"coding": [{"system": SCT, "code": code}]}}


@pytest.fixture
def record(gw: Gateway) -> Gateway:
    gw.put(patient("hid", HIDDEN_NHS, "Secretname"))
    gw.put(decision("dnacpr", "450476008", "2026-01-05"))
    gw.put(provenance("Observation/dnacpr", "RH1", "hid"))
    gw.put(decision("for-cpr", "450475007", "2026-02-07"))
    gw.put(provenance("Observation/for-cpr", "RXA", "hid"))
    gw.put(deny_consent("hid", "RH1"))
    return gw


def issue_of(gw: Gateway, pid: str) -> str:
    """`DetectedIssue/<id>` of the person's stored issue (the partners disagree)."""
    with gw.engine.session(write=False) as session:
        found = stored_issue_id(session, pid)
    assert found and gw.repository.read("DetectedIssue", found).body
    return f"DetectedIssue/{found}"


def ids(resp: Any) -> set[str]:
    assert resp.status_code == 200, resp.text
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in resp.json().get("entry", [])
            if e["resource"]["resourceType"] != "OperationOutcome"}


@pytest.mark.parametrize("query", [
    "DetectedIssue", "DetectedIssue?patient=Patient/hid", "DetectedIssue?_id={id}",
    "DetectedIssue?implicated=Observation/dnacpr",
    "Observation?_id=dnacpr&_revinclude=DetectedIssue:implicated",
    "DetectedIssue?patient.name=Secretname",
    "Patient?_has:DetectedIssue:patient:_id={id}",
])
def test_another_organisation_finds_nothing_of_it(record: Gateway, query: str) -> None:
    h = gp(record)
    issue = issue_of(record, "hid")
    query = query.format(id=issue.split("/")[1])
    assert ids(record.http.get(f"/fhir/{query}", headers=h)) == set()
    assert record.http.get(f"/fhir/{issue}", headers=h).status_code == 404
    assert record.http.get(f"/fhir/{issue}/_history", headers=h).status_code == 404


def test_a_holder_and_break_glass_see_it(record: Gateway) -> None:
    issue = issue_of(record, "hid")
    hospice = record.login("hospice-ward", "clinician", org="RH1")
    assert ids(record.http.get("/fhir/DetectedIssue?patient=Patient/hid",
                               headers=hospice)) == {issue}
    glass = {**gp(record), "X-Purpose-Of-Use": "ETREAT",
             "X-Break-Glass-Reason": "cardiac arrest, patient unconscious"}
    assert ids(record.http.get("/fhir/DetectedIssue?patient=Patient/hid",
                               headers=glass)) == {issue}


def test_no_feed_can_change_or_delete_it(record: Gateway) -> None:
    issue = issue_of(record, "hid")
    before = record.repository.read(*issue.split("/"))
    for partner, org in (("hospice", "RH1"), ("acute", "RXA"), ("gp", "B86001")):
        feed = record.login(f"{partner}-feed", "feed", partner=partner, org=org,
                            scope="system/*.cruds")
        body = {"resourceType": "DetectedIssue", "id": issue.split("/")[1], "status": "final",
                "code": {"text": "nothing to see"}, "patient": {"reference": "Patient/hid"}}
        assert record.http.put(f"/fhir/{issue}", json=body,
                               headers={**feed, **FHIR_JSON}).status_code == 404
        assert record.http.delete(f"/fhir/{issue}", headers=feed).status_code == 404
    after = record.repository.read(*issue.split("/"))
    assert (after.version, after.body) == (before.version, before.body)


def test_a_feed_cannot_mark_its_own_issue_as_the_gateways(gw: Gateway) -> None:
    gw.put(patient("vis", "9990000018", "Openname"))
    feed = gw.login("hospice-feed", "feed", partner="hospice", org="RH1",
                    scope="system/*.cruds")
    body = {"resourceType": "DetectedIssue", "status": "final", "code": {"text": "mine"},
            "patient": {"reference": "Patient/vis"},
            "meta": {"tag": [{"system": DERIVED_TAG_SYSTEM, "code": "cpr-conflict"}]}}
    made = gw.http.post("/fhir/DetectedIssue", json=body, headers={**feed, **FHIR_JSON})
    assert made.status_code == 201, made.text
    assert not is_stored_conflict(made.json())
    assert all(t["system"] != DERIVED_TAG_SYSTEM for t in made.json()["meta"]["tag"])


def test_a_decision_refiled_to_a_hidden_person_is_not_read_through_an_old_issue(
        gw: Gateway) -> None:
    """The issue about Ann named the hospice's decision; the decision was then re-filed to
    the consent-hidden person. Its own past versions are hidden (judged as it is now), and
    so are the issue versions that implicate it."""
    gw.put(patient("ann", "9990000018", "Openname"))
    gw.put({**decision("acute-1", "450476008", "2026-01-01"),
            "subject": {"reference": "Patient/ann"}})
    gw.put(provenance("Observation/acute-1", "RXA", "ann"))
    gw.put({**decision("hosp-1", "450475007", "2026-03-01"),
            "subject": {"reference": "Patient/ann"}})
    gw.put(provenance("Observation/hosp-1", "RH1", "ann"))
    issue = issue_of(gw, "ann")
    gw.put(patient("hid", HIDDEN_NHS, "Secretname"))
    gw.put(deny_consent("hid", "RH1"))
    gw.put(decision("hosp-1", "450475007", "2026-03-01"))  # re-filed to `hid`
    h = gp(gw)
    assert gw.http.get("/fhir/Observation/hosp-1/_history/1", headers=h).status_code == 404
    history = gw.http.get(f"/fhir/{issue}/_history", headers=h)
    assert history.status_code in (200, 404)
    shown = json.dumps(history.json()) if history.status_code == 200 else ""
    assert "hosp-1" not in shown and "For attempted CPR" not in shown
    assert gw.http.get(f"/fhir/{issue}/_history/1", headers=h).status_code == 404
