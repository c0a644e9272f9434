"""A write that waited its limit for another writer (another worker's long transaction
Bundle holding SQLite's writer lock) is answered 503 with Retry-After and an
OperationOutcome, never a bare 500; over `/ingest` the file's records are not kept as
rejected (the feed resends). The other writer is this test holding the lock file, and the
wait is cut to a fraction of a second."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhir_gateway.store import sqlite as sqlite_module
from fhir_gateway.store.base import StoreBusy, StoreEngine
from fhir_gateway.store.query import IndexQuery
from gatewaykit import FHIR_JSON

FEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
PATIENT = {"resourceType": "Patient", "name": [{"family": "Busy"}]}


# SQLite only (its writer lock is the point): conftest's `engine` and `client`, one engine.
pytestmark = pytest.mark.parametrize("engine", ["sqlite"], indirect=True)


@pytest.fixture
def held_lock(engine: StoreEngine, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Another process's writer holds the store until the test body ends."""
    monkeypatch.setattr(sqlite_module, "WRITER_WAIT_S", 0.2)
    with open(f"{engine.path}-writers", "ab") as other:  # type: ignore[attr-defined]
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        yield
        fcntl.flock(other.fileno(), fcntl.LOCK_UN)


def _assert_busy(resp: object, says: str = "nothing was written") -> None:
    assert resp.status_code == 503, resp.text  # type: ignore[attr-defined]
    assert resp.headers["retry-after"].isdigit()  # type: ignore[attr-defined]
    outcome = resp.json()  # type: ignore[attr-defined]
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "transient"
    assert says in outcome["issue"][0]["diagnostics"]


def _count(engine: StoreEngine, rtype: str) -> int:
    with engine.session(write=False) as s:
        return len(s.find(IndexQuery(rtype=rtype, limit=100)).rows)


def test_a_create_the_store_is_too_busy_for_is_a_503_to_retry(
        client: TestClient, engine: StoreEngine, held_lock: None) -> None:
    _assert_busy(client.post("/fhir/Patient", json=PATIENT, headers=FHIR_JSON))
    assert _count(engine, "Patient") == 0


def test_a_transaction_the_store_is_too_busy_for_is_a_503_to_retry(
        client: TestClient, engine: StoreEngine, held_lock: None) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": PATIENT,
         "request": {"method": "POST", "url": "Patient"}}]}
    _assert_busy(client.post("/fhir", json=bundle, headers=FHIR_JSON))
    assert _count(engine, "Patient") == 0


def test_an_ingest_the_store_is_too_busy_for_is_a_503_and_rejects_nothing(
        client: TestClient, engine: StoreEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    data = (FEEDS / "hospice" / "clients.jsonl").read_bytes()
    monkeypatch.setattr(sqlite_module, "WRITER_WAIT_S", 0.2)
    with open(f"{engine.path}-writers", "ab") as other:  # type: ignore[attr-defined]
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        try:
            _assert_busy(client.post("/ingest/hospice?filename=clients.jsonl", content=data,
                                     headers={"Content-Type": "application/x-ndjson"}),
                         says="resend the whole file")
        finally:
            fcntl.flock(other.fileno(), fcntl.LOCK_UN)
    assert client.get("/review/rejected").json() == []  # no record blamed for it
    again = client.post("/ingest/hospice?filename=clients.jsonl", content=data,
                        headers={"Content-Type": "application/x-ndjson"})
    assert again.status_code == 200 and again.json()["created"] > 0


def test_a_store_busy_while_a_record_is_applied_is_not_blamed_on_the_record(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    # Were it taken for the record's fault (a GatewayError), the record would be kept as
    # rejected and the feed told not to resend it (MLLP AE).
    loader = client.app.state.ingest_service.loader  # type: ignore[attr-defined]

    def busy(*_args: object) -> None:
        raise StoreBusy("the store is busy; nothing was written; try again")

    monkeypatch.setattr(loader, "_apply", busy)
    data = (FEEDS / "hospice" / "clients.jsonl").read_bytes()
    _assert_busy(client.post("/ingest/hospice?filename=clients.jsonl", content=data,
                             headers={"Content-Type": "application/x-ndjson"}),
                 says="resend the whole file")
    assert client.get("/review/rejected").json() == []
