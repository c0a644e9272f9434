"""When the audit trail cannot be written (a full disk under the journal) after a
request's data was committed (a transaction or batch Bundle, `POST /ingest/{partner}`),
the answer says the data WAS stored: a 500 OperationOutcome, never the 503 "nothing was
answered; try again" (a retry would store it again) and never a bare 500. A request that
committed nothing still gets the 503."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_gateway.fhir.request import FhirRequest
from fhir_gateway.security.audit.chain import AuditUnavailable
from fhir_gateway.store.query import IndexQuery
from security_kit import FHIR_JSON, NHS, Gateway

FEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
JOURNAL_FULL = "the audit journal could not be written, so the request was not answered; " \
               "try again"


class _Unwritable:
    async def settled(self) -> None:
        raise AuditUnavailable(JOURNAL_FULL)


def _break_trail(gw: Gateway, monkeypatch: pytest.MonkeyPatch, *,
                 at_append: bool = False) -> None:
    """From now on no audit event can be made durable (as with a full journal disk):
    the append itself fails (`at_append`, the journal's write), or its fsync does;
    what is committed in the store's own transaction (a single write's event) still is."""
    trail = gw.http.app.state.security.trail

    def fail(_events: list[dict[str, Any]]) -> None:
        raise AuditUnavailable(JOURNAL_FULL)

    monkeypatch.setattr(trail, "submit", fail if at_append else lambda _e: _Unwritable())
    monkeypatch.setattr(trail, "record", fail)


def _feed(gw: Gateway) -> dict[str, str]:
    return {**gw.login("hospice-feed", "feed", partner="hospice", org="RH100",
                       scope="system/*.cruds"), **FHIR_JSON}


def _patients(gw: Gateway) -> int:
    return len(gw.repository.find(IndexQuery(rtype="Patient", limit=1000)).rows)


def _bundle(kind: str, family: str = "Stored") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": [
        {"fullUrl": "urn:uuid:0a1b2c3d-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "name": [{"family": family}],
                      "identifier": [{"system": NHS, "value": "9434765919"}]},
         "request": {"method": "POST", "url": "Patient"}}]}


def _says_stored(resp: Any) -> None:
    assert resp.status_code == 500, resp.text
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    text = outcome["issue"][0]["diagnostics"]
    assert "WAS stored" in text and "audit record could not be written" in text
    assert "try again" not in text


@pytest.mark.parametrize("at_append", [False, True], ids=["at-fsync", "at-append"])
@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_a_bundle_committed_before_its_audit_failed_says_it_was_stored(
        gw: Gateway, monkeypatch: pytest.MonkeyPatch, kind: str, at_append: bool) -> None:
    feed = _feed(gw)
    _break_trail(gw, monkeypatch, at_append=at_append)
    _says_stored(gw.http.post("/fhir", json=_bundle(kind), headers=feed))
    assert _patients(gw) == 1


def test_a_refused_transaction_with_its_audit_failing_is_still_a_503(
        gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    feed = _feed(gw)
    bundle = _bundle("transaction")
    bundle["entry"][0]["resource"]["birthDate"] = "not a date"  # refused: nothing stored
    _break_trail(gw, monkeypatch)
    resp = gw.http.post("/fhir", json=bundle, headers=feed)
    assert resp.status_code == 503, resp.text
    assert _patients(gw) == 0


def test_a_read_with_its_audit_failing_is_still_a_503(
        gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    feed = _feed(gw)
    _break_trail(gw, monkeypatch)
    resp = gw.http.get("/fhir/Patient", headers=feed)
    assert resp.status_code == 503 and "try again" in resp.text


def test_the_gate_called_without_deferring_says_so_too(
        gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    from fhir_gateway.security.gate import StoredUnaudited

    feed = _feed(gw)
    app = gw.http.app
    gate = app.state.security.gate(app.state.fhir_router)
    _break_trail(gw, monkeypatch)
    req = FhirRequest(method="POST", path="", body=_bundle("transaction"),
                      headers={k.lower(): v for k, v in feed.items()},
                      base_url="http://gateway.test/fhir", request_id="r-1")
    with pytest.raises(StoredUnaudited, match="WAS stored"):
        gate.handle(req)
    assert _patients(gw) == 1


def test_an_ingest_committed_before_its_audit_failed_says_what_was_stored(
        gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    feed = _feed(gw)
    data = (FEEDS / "hospice" / "clients.jsonl").read_bytes()
    _break_trail(gw, monkeypatch)
    resp = gw.http.post("/ingest/hospice?filename=clients.jsonl", content=data,
                        headers={**feed, "Content-Type": "application/x-ndjson"})
    _says_stored(resp)
    assert "created" in json.dumps(resp.json())
    assert _patients(gw) > 0


def test_a_refused_ingest_with_its_audit_failing_is_a_503_not_a_bare_500(
        gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    feed = _feed(gw)
    _break_trail(gw, monkeypatch)
    resp = gw.http.post("/ingest/hospice", content=b"x",
                        headers={**feed, "Content-Type": "image/png"})  # refused: 415
    assert resp.status_code == 503, resp.text
    assert resp.json()["issue"][0]["diagnostics"] == JOURNAL_FULL
    assert _patients(gw) == 0
