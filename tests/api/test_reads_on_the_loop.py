"""Short reads run on the HTTP edge's event loop; anything that could wait runs on a
worker thread (`SecureGate.runs_on_loop`).

Handing a request to a worker thread cost more CPU than a whole audited read (see
bench/README.md), so a read of one resource, the capability statement and one person's
emergency summary run in place, but only where nothing in them can wait: a store whose
reads never wait (SQLite in WAL mode, not a MongoDB server across a network), an audit
trail that does not wait for a commit (the journal), and no auditor's catch-up."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_gateway.api.app import create_app
from fhir_gateway.config import Settings
from fhir_gateway.fhir.interceptors import BaseInterceptor, InterceptorChain
from fhir_gateway.fhir.request import FhirRequest, Interaction
from fhir_gateway.security.audit.journal import JournalledAuditTrail
from fhir_gateway.security.gate import SecureGate
from fhir_gateway.store import open_store
from fhir_gateway.store.base import StoreEngine
from gatewaykit import FHIR_JSON

NHS = "https://fhir.nhs.uk/Id/nhs-number"


class WhereRun(BaseInterceptor):
    """Notes the thread each interaction ran on."""

    def __init__(self) -> None:
        self.threads: dict[str, str] = {}

    def on_request(self, request: FhirRequest, interaction: Interaction) -> None:
        self.threads[f"{request.method} {request.path}"] = threading.current_thread().name


def gateway_client(engine: StoreEngine, where: WhereRun | None = None,
           **settings: Any) -> TestClient:
    chain = InterceptorChain([where] if where else [])
    return TestClient(create_app(Settings(**{"auth_enabled": False, "audit_enabled": True,
                                             **settings}),
                                 engine=engine, interceptors=chain),
                      base_url="http://gateway.test")


def gate_of(http: TestClient) -> SecureGate:
    return http.app.state.security.gate(http.app.state.fhir_router)


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Iterator[StoreEngine]:
    engine = open_store(f"sqlite:///{tmp_path / 'gw.sqlite3'}")
    yield engine
    engine.close()


@pytest.mark.parametrize(("method", "path", "params", "in_place"), [
    ("GET", "Patient/p1", [], True),
    ("HEAD", "Patient/p1", [], True),
    ("GET", "Patient/p1/_history/1", [], True),
    ("GET", "metadata", [], True),
    ("GET", "Patient/$emergency-summary", [("identifier", f"{NHS}|9434765919")], True),
    ("GET", "Patient/p1/$emergency-summary", [], True),
    ("GET", "Patient", [("name", "smith")], False),  # a search: unbounded
    ("GET", "Patient/p1/$everything", [], False),
    ("GET", "Patient/p1/_history", [], False),
    ("GET", "_history", [], False),
    ("PUT", "Patient/p1", [], False),  # a write waits for the writer lock
    ("DELETE", "Patient/p1", [], False),
    ("POST", "", [], False),
    ("GET", "AuditEvent/a1", [], False),  # an auditor's read waits for the import
    ("GET", "Nonsense/p1/x/y/z", [], False),
])
def test_which_requests_run_in_place(sqlite_file: StoreEngine, method: str, path: str,
                                     params: list[tuple[str, str]], in_place: bool) -> None:
    with gateway_client(sqlite_file) as http:
        assert isinstance(http.app.state.security.trail, JournalledAuditTrail)
        req = FhirRequest(method=method, path=path, params=params)
        assert gate_of(http).runs_on_loop(req) is in_place


def test_nothing_runs_in_place_where_reads_or_the_trail_can_wait(
        sqlite_file: StoreEngine, tmp_path: Path) -> None:
    read = FhirRequest(method="GET", path="Patient/p1")
    # the journal switched off: the trail's submit waits for the store's commit
    with gateway_client(sqlite_file, audit_journal="off") as http:
        assert not isinstance(http.app.state.security.trail, JournalledAuditTrail)
        assert gate_of(http).runs_on_loop(read) is False
    # unaudited, the same store's reads may run in place
    with gateway_client(sqlite_file, audit_enabled=False) as http:
        assert gate_of(http).runs_on_loop(read) is True
    # MongoDB: every read is a round trip, journal or not
    mongo = open_store("mongomock://localhost/loop-test")
    with gateway_client(mongo, audit_journal=str(tmp_path / "journal")) as http:
        assert isinstance(http.app.state.security.trail, JournalledAuditTrail)
        assert gate_of(http).runs_on_loop(read) is False


def test_a_read_runs_on_the_event_loop_and_a_search_on_a_worker(
        sqlite_file: StoreEngine) -> None:
    where = WhereRun()
    with gateway_client(sqlite_file, where) as http:
        assert http.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"},
                        headers=FHIR_JSON).status_code == 201
        assert http.get("/fhir/Patient/p1").json()["id"] == "p1"
        assert http.get("/fhir/Patient?_id=p1").json()["total"] == 1
        loop_thread = where.threads["GET Patient/p1"]
        assert "worker" not in loop_thread.lower()
        assert where.threads["GET Patient"] != loop_thread
        assert where.threads["PUT Patient/p1"] != loop_thread
        # what ran in place was audited like the rest, and durably before the answer
        trail = http.app.state.security.trail
        assert trail._synced == trail._written
