"""The MLLP listener audits each message it loads, as a feed's REST write is audited: an
AuditEvent naming the Patient it wrote, durable before the ACK (so a failure to audit is
an AR, "resend later"), found by the auditors' patient report."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_mllp_frames import adt  # the same admission message

from fhir_gateway.fhir.repository import Repository
from fhir_gateway.ingest import map_file
from fhir_gateway.mllp import loader_processor
from fhir_gateway.pipeline.service import IngestService
from fhir_gateway.security.audit import reports
from fhir_gateway.security.audit.chain import AuditTrail, AuditUnavailable
from fhir_gateway.security.audit.verify import iter_events, verify
from fhir_gateway.store import open_store
from fhir_gateway.store.query import IndexQuery


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[Any, Repository, AuditTrail]]:
    engine = open_store(f"sqlite:///{tmp_path / 'gw.sqlite3'}")
    repository = Repository(engine)
    trail = AuditTrail(repository)
    service = IngestService(repository)
    yield loader_processor(service.loader, "acute", map_file, trail), repository, trail
    trail.close()
    engine.close()


def test_each_stored_message_is_audited_naming_its_patient(
        listener: tuple[Any, Repository, AuditTrail]) -> None:
    process, repository, _trail = listener
    assert process(adt("C1")) == ("AA", "stored")
    (pid,) = [row.rid for row in repository.find(IndexQuery(rtype="Patient")).rows]
    events = [e for _w, _v, e in iter_events(repository)]
    assert len(events) == 1
    (event,) = events
    assert event["subtype"][0]["code"] == "create" and event["outcome"] == "0"
    assert event["agent"][0]["altId"] == "mllp-listener/acute"
    assert {"reference": f"Patient/{pid}"} in [x.get("what") for x in event["entity"]]
    assert {"identifier": {"value": "C1"}} in [x.get("what") for x in event["entity"]]
    # a later message about the same person, and a resend (nothing changed): each is
    # audited naming the person, and the patient report finds all three
    assert process(adt("C2", trigger="A08"))[0] == "AA"
    assert process(adt("C2", trigger="A08"))[0] == "AA"
    rows = reports.patient_access(repository, [pid])
    assert [r["client"] for r in rows] == ["mllp-listener/acute"] * 3
    assert rows[0]["interaction"] == "create" and rows[2]["interaction"] == "update"
    assert verify(repository).intact


def test_a_message_not_audited_is_not_acknowledged(
        listener: tuple[Any, Repository, AuditTrail]) -> None:
    process, _repository, trail = listener
    trail.close()  # the trail cannot be written: the listener answers AR (resend later)
    with pytest.raises(AuditUnavailable):
        process(adt("C3"))


def test_the_mllp_command_audits_what_it_stores(tmp_path: Path) -> None:
    """`fhir-gateway mllp` (a real process and socket) gives its listener the trail."""
    import json
    import socket
    import subprocess
    import sys

    from fhir_gateway.mllp import END, START
    from serverproc import free_port

    store, port = f"sqlite:///{tmp_path / 'gw.sqlite3'}", free_port()
    cli = str(Path(sys.executable).with_name("fhir-gateway"))
    proc = subprocess.Popen([cli, "--store", store, "mllp", "--port", str(port),
                             "--partner", "acute"], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None and "MLLP listening" in proc.stderr.readline()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(START + adt("C9") + END)
            answer = b""
            while END not in answer:
                answer += conn.recv(4096)
        assert b"MSA|AA|C9" in answer
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    verified = subprocess.run([cli, "--store", store, "audit", "verify"],
                              capture_output=True, text=True, timeout=120, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    engine = open_store(store)
    try:
        repository = Repository(engine)
        (pid,) = [row.rid for row in repository.find(IndexQuery(rtype="Patient")).rows]
        events = [json.loads(row.body or "{}")
                  for row in repository.find(IndexQuery(rtype="AuditEvent")).rows]
    finally:
        engine.close()
    assert any(a.get("altId") == "mllp-listener/acute" for e in events for a in e["agent"])
    assert any(x.get("what", {}).get("reference") == f"Patient/{pid}"
               for e in events for x in e.get("entity", []))
