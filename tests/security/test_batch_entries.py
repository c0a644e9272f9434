"""Batch entries are interactions of their own: a write entry runs in its own transaction
(fhir/bundles.py `_batch_entry`) and is audited whether it succeeds or is refused."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_gateway.fhir.repository import Repository
from fhir_gateway.store.base import VersionConflict
from security_kit import FHIR_JSON, Gateway


def _batch_whose_create_fails(gw: Gateway, monkeypatch: pytest.MonkeyPatch,
                              error: Exception, request_id: str
                              ) -> tuple[list[str], list[dict[str, Any]]]:
    """A feed's batch (an Observation create that raises `error`, then a search): the
    entries' status codes, and the create events recorded for entry 0."""
    real = Repository.create

    def failing(self: Repository, resource: dict[str, Any], **kw: Any) -> Any:
        if resource.get("resourceType") == "Observation":
            raise error
        return real(self, resource, **kw)

    monkeypatch.setattr(Repository, "create", failing)
    feed = {**gw.login("acute-feed", "feed", partner="acute", org="RXA",
                       scope="system/*.cruds"), **FHIR_JSON, "X-Request-Id": request_id}
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": obs, "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "GET", "url": "Observation?code:text=x"}}]}
    answer = gw.http.post("/fhir", json=batch, headers=feed)
    assert answer.status_code == 200, answer.text
    monkeypatch.setattr(Repository, "create", real)
    statuses = [e["response"]["status"][:3] for e in answer.json()["entry"]]
    events = [e for e in gw.audit_events(subtype="create")
              if (e.get("outcomeDesc") or "").startswith("Bundle.entry[0]")]
    return statuses, events


def test_an_entry_that_keeps_meeting_other_writers_is_refused_and_audited(
        gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    statuses, refused = _batch_whose_create_fails(
        gw, monkeypatch, VersionConflict("another writer got there first"), "batch-1")
    assert statuses == ["409", "200"]
    assert [e["outcome"] for e in refused] == ["4"], refused


def test_an_entry_failing_unforeseen_is_answered_for_itself_and_audited(
        gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception no check foresaw fails its entry (500), not the batch, and the trail
    records that entry's failure as it records a refused one."""
    statuses, failed = _batch_whose_create_fails(
        gw, monkeypatch, RuntimeError("a fault no check foresaw"), "batch-2")
    assert statuses == ["500", "200"]
    assert [(e["outcome"], e["outcomeDesc"]) for e in failed] == [
        ("8", "Bundle.entry[0]: 500 exception")], failed
