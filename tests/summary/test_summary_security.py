"""The summary with security on (OAuth roles, consent, break-glass, audit): the ambulance
role reaches it, it is audited with the caller's purpose and the patient, a consent
refusal hides it exactly as an unknown person is hidden, and break-glass opens it."""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import pytest
from summary_kit import SCT, Doc, by_nhs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
from security_kit import Gateway, deny_consent, patient, provenance

NHS_NUMBER = "9434765919"
UNKNOWN = "9990000026"  # valid check digit, never issued, not on the record
BREAK_GLASS = "https://fhir.example.org/shared-care-record/policy/break-glass"


@pytest.fixture
def record(gw: Gateway) -> Gateway:
    gw.put(patient("amb-1", NHS_NUMBER, "Example"))
    gw.put({"resourceType": "Observation", "id": "cpr-1", "status": "final",
            "code": {"coding": [{"system": SCT, "code": "304251008"}]},
            "subject": {"reference": "Patient/amb-1"}, "effectiveDateTime": "2026-01-05",
            "valueCodeableConcept": {"coding": [{"system": SCT, "code": "450476008"}]}})
    gw.put(provenance("Observation/cpr-1", "X9G01", "amb-1"))
    return gw


def summary_events(gw: Gateway) -> list[dict[str, Any]]:
    return [e for e in gw.audit_events(subtype="operation")
            if any("$emergency-summary" in base64.b64decode(ent["query"]).decode()
                   for ent in e.get("entity", []) if "query" in ent)]


def test_the_crew_gets_the_summary_audited_with_its_purpose(record: Gateway) -> None:
    crew = record.login("crew", "ambulance", org="RYC")
    resp = record.http.get(by_nhs(NHS_NUMBER), headers=crew)
    assert resp.status_code == 200, resp.text
    doc = Doc(resp.json())
    assert [o["id"] for o in doc.cited("cpr")] == ["cpr-1"]
    assert doc.cited("cpr")[0]["valueCodeableConcept"]["coding"][0]["code"] == "450476008"
    page = record.http.get(by_nhs(NHS_NUMBER), headers={**crew, "Accept": "text/html"})
    assert page.status_code == 200 and "NOT FOR ATTEMPTED CPR" in page.text
    (first, second) = summary_events(record)
    for event in (first, second):
        assert event["outcome"] == "0"
        assert event["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
        assert {"reference": "Patient/amb-1"} in [ent.get("what") for ent in event["entity"]]
        assert event["agent"][0]["altId"] == "crew"
    # the crew's role reaches the summary, not the record's other doors
    assert record.http.get("/fhir/Observation/cpr-1", headers=crew).status_code == 404
    assert record.http.get("/fhir/Observation", headers=crew).status_code == 403


def test_a_bad_nhs_number_is_refused_and_audited(record: Gateway) -> None:
    crew = record.login("crew", "ambulance", org="RYC")
    resp = record.http.get(by_nhs("9434765918"), headers=crew)
    assert resp.status_code == 400 and "check digit" in resp.text
    page = record.http.get(by_nhs("9434765918"), headers={**crew, "Accept": "text/html"})
    assert page.status_code == 400 and "check digit" in page.text
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    events = summary_events(record)
    assert [e["outcome"] for e in events] == ["4", "4"]
    assert all(e["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT" for e in events)


def test_consent_refusal_looks_like_absence_and_break_glass_opens_it(record: Gateway) -> None:
    record.put(deny_consent("amb-1", "X9G01"))
    crew = record.login("crew", "ambulance", org="RYC")
    hidden = record.http.get(by_nhs(NHS_NUMBER), headers=crew)
    absent = record.http.get(by_nhs(UNKNOWN), headers=crew)
    assert hidden.status_code == absent.status_code == 404
    spaced = f"{NHS_NUMBER[:3]} {NHS_NUMBER[3:6]} {NHS_NUMBER[6:]}"
    unknown_spaced = f"{UNKNOWN[:3]} {UNKNOWN[3:6]} {UNKNOWN[6:]}"
    assert hidden.text.replace(spaced, unknown_spaced) == absent.text
    opened = record.http.get(by_nhs(NHS_NUMBER), headers={
        **crew, "X-Purpose-Of-Use": "ETREAT", "X-Break-Glass-Reason": "collapsed, unconscious"})
    assert opened.status_code == 200, opened.text
    assert [o["id"] for o in Doc(opened.json()).cited("cpr")] == ["cpr-1"]
    (event,) = record.audit_events(policy=BREAK_GLASS)
    assert event["purposeOfEvent"][1]["coding"][0]["code"] == "BTG"
    details = {d["type"]: d["valueString"] for ent in event["entity"]
               for d in ent.get("detail", [])}
    assert details == {"reason": "collapsed, unconscious", "consent-overridden": "true"}
    # the organisation that holds the record sees it without breaking the glass
    gp = record.login("gp-ward", "clinician", org="X9G01")
    assert record.http.get(by_nhs(NHS_NUMBER), headers=gp).status_code == 200


def test_a_page_request_refused_at_the_door_gets_a_page(record: Gateway) -> None:
    """No token, or a role without the summary: a crew's browser is told why on a page
    (with the same status and WWW-Authenticate); a FHIR client still gets the
    OperationOutcome; neither shows anything from the record."""
    page = {"Accept": "text/html"}
    anonymous = record.http.get(by_nhs(NHS_NUMBER), headers=page)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"].startswith("text/html")
    assert "www-authenticate" in anonymous.headers
    assert "SIGN-IN NEEDED" in anonymous.text and "HTTP status 401" in anonymous.text
    auditor = record.login("audit-team", "auditor", org="X26")
    refused = record.http.get(by_nhs(NHS_NUMBER), headers={**auditor, **page})
    assert refused.status_code == 403 and "NOT ALLOWED" in refused.text
    slash = record.http.get(by_nhs(NHS_NUMBER).replace("?", "/?"), headers=page)
    assert slash.status_code == 401 and "SIGN-IN NEEDED" in slash.text  # a trailing "/"
    for resp in (anonymous, refused, slash):
        assert "Example" not in resp.text and "CPR" not in resp.text
    fhir = record.http.get(by_nhs(NHS_NUMBER))
    assert fhir.status_code == 401 and fhir.json()["resourceType"] == "OperationOutcome"
