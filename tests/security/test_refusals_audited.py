"""Every interaction leaves an AuditEvent, including those refused at the HTTP edge before
they reach the FHIR router (406 format, 415 media type, 400 unreadable JSON, 413 size) and
a token request too malformed to read (400). The caller's answer is what it always was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from security_kit import FHIR_JSON, Gateway, seed_hidden_record

Call = Callable[[Gateway, dict[str, str]], httpx.Response]


def _events(gw: Gateway, request_id: str) -> list[dict[str, Any]]:
    return [e for e in gw.audit_events()
            if any((ent.get("what") or {}).get("identifier", {}).get("value") == request_id
                   for ent in e.get("entity", []))]


def _client_of(event: dict[str, Any]) -> str | None:
    return event["agent"][0].get("altId")


CASES: list[tuple[str, str, Call, int, str]] = [
    ("_format=xml", "clinician",
     lambda gw, h: gw.http.get("/fhir/Patient/hid?_format=xml", headers=h),
     406, "_format='xml': this server speaks FHIR JSON only"),
    ("Accept xml", "clinician",
     lambda gw, h: gw.http.get("/fhir/Patient/hid",
                               headers={**h, "Accept": "application/fhir+xml"}),
     406, "Accept 'application/fhir+xml': this server speaks FHIR JSON only"),
    ("text/plain body", "feed",
     lambda gw, h: gw.http.put("/fhir/Patient/hid", content=b"x",
                               headers={**h, "Content-Type": "text/plain"}),
     415, "Content-Type 'text/plain' is not supported; send application/fhir+json"),
    ("bad JSON", "feed",
     lambda gw, h: gw.http.put("/fhir/Patient/hid", content=b"{", headers={**h, **FHIR_JSON}),
     400, ""),
    ("oversized body", "feed",
     lambda gw, h: gw.http.post("/fhir/Observation", content=b"x" * (2 * 1024 * 1024),
                                headers={**h, **FHIR_JSON}),
     413, "at most 1048576 are accepted"),
]


@pytest.mark.parametrize(("label", "role", "call", "status", "words"), CASES,
                         ids=[c[0] for c in CASES])
def test_a_request_refused_at_the_edge_is_audited_as_its_caller(
        gw: Gateway, label: str, role: str, call: Call, status: int, words: str) -> None:
    seed_hidden_record(gw)
    headers = gw.login("gp-ward", "clinician", org="B86001") if role == "clinician" else \
        gw.login("gp-feed", "feed", partner="gp", org="B86001", scope="system/*.cruds")
    resp = call(gw, {**headers, "X-Request-Id": "edge-1"})
    assert resp.status_code == status, resp.text
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert words in outcome["issue"][0]["diagnostics"]
    (event,) = _events(gw, "edge-1")
    assert event["outcome"] == "4"
    assert event["outcomeDesc"].startswith(f"{status} ")
    assert _client_of(event) == ("gp-ward" if role == "clinician" else "gp-feed")
    assert gw.verify().intact


def test_an_anonymous_request_refused_at_the_edge_is_audited_as_unauthenticated(
        gw: Gateway) -> None:
    for i, headers in enumerate(({}, {"Authorization": "Bearer not-a-token"})):
        resp = gw.http.get("/fhir/Patient/hid?_format=xml",
                           headers={**headers, "X-Request-Id": f"anon-{i}"})
        assert resp.status_code == 406
        (event,) = _events(gw, f"anon-{i}")
        assert event["outcome"] == "4" and _client_of(event) is None
        assert event["agent"][0]["who"] == {"display": "unauthenticated"}


def test_a_malformed_token_request_is_audited(gw: Gateway) -> None:
    resp = gw.http.post("/auth/token", json={"grant_type": "client_credentials"},
                        headers={"X-Request-Id": "tok-1"})
    assert resp.status_code == 400
    assert resp.json() == {"error": "invalid_request", "error_description":
                           "send the token request as application/x-www-form-urlencoded"}
    assert resp.headers["cache-control"] == "no-store"
    (event,) = _events(gw, "tok-1")
    assert event["type"]["code"] == "110114" and event["outcome"] == "4"
    assert event["agent"][0]["who"] == {"display": "unauthenticated"}
    assert event["outcomeDesc"].startswith("400 invalid_request")
