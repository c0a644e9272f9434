"""The stored CPR-conflict DetectedIssue (`fhir_gateway.summary.conflicts`) is part of the
person's record: consent hides it from other organisations like the rest, break-glass
opens it, a holder sees it, and no partner feed can change or delete it.

The record: Patient `hid` (a deny consent; held by the hospice RH1 and the hospital RXA,
named by the Provenance ingest wrote) whose two partners' current CPR decisions differ.
A GP clinician (B86001) is "another organisation".
"""

from __future__ import annotations

from typing import Any

import pytest

from fhir_gateway.summary.facts import conflict_issue_id
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
ISSUE = f"DetectedIssue/{conflict_issue_id('hid')}"


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
    assert gw.repository.read(*ISSUE.split("/")).body  # the partners disagree: stored
    return gw


def ids(resp: Any) -> set[str]:
    assert resp.status_code == 200, resp.text
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in resp.json().get("entry", [])
            if e["resource"]["resourceType"] != "OperationOutcome"}


@pytest.mark.parametrize("query", [
    "DetectedIssue", "DetectedIssue?patient=Patient/hid", f"DetectedIssue?_id={ISSUE[14:]}",
    "DetectedIssue?implicated=Observation/dnacpr",
    "Observation?_id=dnacpr&_revinclude=DetectedIssue:implicated",
    "DetectedIssue?patient.name=Secretname",
    "Patient?_has:DetectedIssue:patient:_id=" + ISSUE[14:],
])
def test_another_organisation_finds_nothing_of_it(record: Gateway, query: str) -> None:
    h = gp(record)
    assert ids(record.http.get(f"/fhir/{query}", headers=h)) == set()
    assert record.http.get(f"/fhir/{ISSUE}", headers=h).status_code == 404
    assert record.http.get(f"/fhir/{ISSUE}/_history", headers=h).status_code == 404


def test_a_holder_and_break_glass_see_it(record: Gateway) -> None:
    hospice = record.login("hospice-ward", "clinician", org="RH1")
    assert ids(record.http.get("/fhir/DetectedIssue?patient=Patient/hid",
                               headers=hospice)) == {ISSUE}
    glass = {**gp(record), "X-Purpose-Of-Use": "ETREAT",
             "X-Break-Glass-Reason": "cardiac arrest, patient unconscious"}
    assert ids(record.http.get("/fhir/DetectedIssue?patient=Patient/hid",
                               headers=glass)) == {ISSUE}


def test_no_feed_can_change_or_delete_it(record: Gateway) -> None:
    before = record.repository.read(*ISSUE.split("/"))
    for partner, org in (("hospice", "RH1"), ("acute", "RXA"), ("gp", "B86001")):
        feed = record.login(f"{partner}-feed", "feed", partner=partner, org=org,
                            scope="system/*.cruds")
        body = {"resourceType": "DetectedIssue", "id": ISSUE[14:], "status": "final",
                "code": {"text": "nothing to see"}, "patient": {"reference": "Patient/hid"}}
        assert record.http.put(f"/fhir/{ISSUE}", json=body,
                               headers={**feed, **FHIR_JSON}).status_code == 404
        assert record.http.delete(f"/fhir/{ISSUE}", headers=feed).status_code == 404
    after = record.repository.read(*ISSUE.split("/"))
    assert (after.version, after.body) == (before.version, before.body)
