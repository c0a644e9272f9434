"""Auditors read AuditEvents, never clinical content: the recorded query keeps the
interaction, the type and the parameter names, and values only where they say whom or
which record was looked up (or how results were paged and shaped); outcomeDesc keeps the
status and the error's code, and a refusal's own words without anything the caller sent."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from fhir_gateway.security.audit.interceptor import REDACTED, recorded_query
from security_kit import FHIR_JSON, Gateway, seed_hidden_record

SECRET = "Metastatic pancreatic cancer, prognosis weeks"


def _events(gw: Gateway, request_id: str) -> list[dict[str, Any]]:
    return [e for e in gw.audit_events()
            if any((ent.get("what") or {}).get("identifier", {}).get("value") == request_id
                   for ent in e.get("entity", []))]


def _query(event: dict[str, Any]) -> str:
    return next(base64.b64decode(ent["query"]).decode()
                for ent in event["entity"] if "query" in ent)


def _text(event: dict[str, Any]) -> str:
    """Everything an auditor reads in an event, queries decoded."""
    queries = [base64.b64decode(ent["query"]).decode()
               for ent in event.get("entity", []) if "query" in ent]
    return json.dumps(event) + " ".join(queries)


@pytest.mark.parametrize(("rtype", "params", "expected"), [
    ("Condition", [("code:text", SECRET), ("subject", "Patient/vis"), ("_count", "5")],
     f"code:text={REDACTED}&subject=Patient/vis&_count=5"),
    ("Observation", [("subject:Patient.identifier", "https://fhir.nhs.uk/Id/nhs-number|"
                                                    "9434765919"),
                     ("code", "http://snomed.info/sct|816301000000100")],
     f"subject:Patient.identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919"
     f"&code={REDACTED}"),
    ("Patient", [("_has:Observation:patient:code", "816301000000100"), ("_id", "p1")],
     f"_has:Observation:patient:code={REDACTED}&_id=p1"),
    ("Patient", [("name", "Jones"), ("birthdate", "1931-02-03"), ("_sort", "-_lastUpdated"),
                 ("_include", "Patient:general-practitioner")],
     "name=Jones&birthdate=1931-02-03&_sort=-_lastUpdated"
     "&_include=Patient:general-practitioner"),
    # demographics say whom only on a Patient (or through the patient's reference)
    ("Observation", [("patient.name", "Jones"), ("value-string", "Jones")],
     f"patient.name=Jones&value-string={REDACTED}"),
    # a cursor carries the last row's sort values (which may be clinical); a date, a
    # free-text search and a name that is no parameter name carry no identity
    ("Observation", [("_cursor", "WyJ4Il0"), ("date", "ge2026-01-01"), ("_content", SECRET),
                     (SECRET, "1")],
     f"_cursor={REDACTED}&date={REDACTED}&_content={REDACTED}&{REDACTED}={REDACTED}"),
])
def test_the_recorded_query_keeps_names_and_only_identifying_values(
        rtype: str, params: list[tuple[str, str]], expected: str) -> None:
    assert recorded_query("GET", rtype, params) == f"GET {rtype}?{expected}"


def test_a_search_never_records_clinical_values(gw: Gateway) -> None:
    seed_hidden_record(gw)
    ward = gw.login("gp-ward", "clinician", org="B86001")
    resp = gw.http.get("/fhir/Condition", params={"code:text": SECRET, "subject": "Patient/vis"},
                       headers={**ward, "X-Request-Id": "search-1"})
    assert resp.status_code == 200, resp.text
    (event,) = _events(gw, "search-1")
    assert _query(event) == f"GET Condition?code:text={REDACTED}&subject=Patient/vis"

    body = f"code:text={SECRET}&patient=vis&_count=3"
    resp = gw.http.post("/fhir/Condition/_search", content=body.encode(),
                        headers={**ward, "X-Request-Id": "search-2",
                                 "Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 200, resp.text
    (event,) = _events(gw, "search-2")
    assert _query(event) == f"POST Condition/_search?code:text={REDACTED}&patient=vis&_count=3"
    assert gw.verify().intact


def test_an_error_records_its_status_and_code_not_what_the_body_said(gw: Gateway) -> None:
    seed_hidden_record(gw)
    feed = {**gw.login("gp-feed", "feed", partner="gp", org="B86001", scope="system/*.cruds"),
            **FHIR_JSON}
    echoed_id = SECRET[:20].replace(" ", "-")
    cases = [
        ("PUT", "Observation/abc", {"resourceType": "Observation", "id": echoed_id,
                                    "status": "final", "code": {"text": SECRET}},
         400, "400 invalid"),
        ("POST", "Condition", {"resourceType": "Condition", "subject": {"reference":
                                                                         "Patient/vis"},
                               "code": {"text": SECRET}, "onsetDateTime": SECRET},
         400, "400 value"),
    ]
    for i, (method, url, body, status, description) in enumerate(cases):
        resp = gw.http.request(method, f"/fhir/{url}", content=json.dumps(body),
                               headers={**feed, "X-Request-Id": f"bad-{i}"})
        assert resp.status_code == status, resp.text
        assert "Metastatic" in resp.text or "value" in resp.text  # the caller is told
        (event,) = _events(gw, f"bad-{i}")
        assert event["outcome"] == "4"
        assert event["outcomeDesc"] == description
        assert "Metastatic" not in _text(event) and "pancrea" not in _text(event)


def test_a_refusal_keeps_the_gateways_words_but_not_what_the_caller_sent(
        gw: Gateway) -> None:
    ward = gw.login("gp-ward", "clinician", org="B86001")
    resp = gw.http.get("/fhir/Patient", headers={**ward, "X-Request-Id": "purpose",
                                                 "X-Purpose-Of-Use": "cancer-care"})
    assert resp.status_code == 403 and "cancer-care" in resp.text  # the caller is told
    (event,) = _events(gw, "purpose")
    assert event["outcomeDesc"].startswith("403 forbidden: X-Purpose-Of-Use ")
    assert "the clinician role may declare TREAT, ETREAT" in event["outcomeDesc"]
    assert "cancer" not in _text(event)

    resp = gw.http.get("/fhir/Patient/vis", headers={"X-Request-Id": "anon"})
    assert resp.status_code == 401
    (event,) = _events(gw, "anon")
    assert event["outcomeDesc"] == ("401 login: this request needs an access token "
                                    "(Authorization: Bearer); see "
                                    ".well-known/smart-configuration")

    resp = gw.http.get("/fhir/AuditEvent", headers={**ward, "X-Request-Id": "trail"})
    assert resp.status_code == 403
    (event,) = _events(gw, "trail")
    assert event["outcomeDesc"] == "403 forbidden: the clinician role may not read the " \
                                   "audit trail"
    assert gw.verify().intact
