"""The journalled audit trail (security/audit/journal.py): an event is on disk in the
writer's journal before `record` returns, stored in the background, and a journal left by
a writer that died is stored by the next start (or `audit verify`), once, in order.

A writer "dies" here for real: a child process records events and leaves with `os._exit`,
so its journal's `flock` is released by the kernel, as after SIGKILL, and nothing was
imported on the way out (tests/security/test_real_clients.py kills a real server).
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from fhir_gateway.fhir.repository import Repository
from fhir_gateway.fhir.request import FhirRequest
from fhir_gateway.security.audit import journal as journal_module
from fhir_gateway.security.audit.chain import AuditUnavailable, chain_link
from fhir_gateway.security.audit.events import audit_event
from fhir_gateway.security.audit.journal import JournalledAuditTrail, recover
from fhir_gateway.security.audit.verify import iter_events, verify
from fhir_gateway.security.gate import may_read_audit
from fhir_gateway.store import open_store
from security_kit import secured
from serverproc import gateway_cli

JOURNAL = "gw.sqlite3-audit"  # where a store at gw.sqlite3 keeps its journals by default
NEVER = 3600.0  # an import delay no test waits out: only catch_up or close imports


def event(n: int) -> dict[str, Any]:
    return audit_event(subtype="read", status=200, caller=None, observer="test",
                       destination="http://gateway.test/fhir", request_id=f"req-{n}",
                       patients=[f"p{n % 3}"], what=f"Patient/p{n % 3}")


def stored_request_ids(repository: Repository) -> list[str]:
    out = []
    for _where, _version, ev in iter_events(repository):
        assert chain_link(ev) is not None
        out += [e["what"]["identifier"]["value"] for e in ev.get("entity", [])
                if "identifier" in (e.get("what") or {})]
    return sorted(out)


def _die_after_recording(db: str, directory: str, first: int, last: int,
                         imported_up_to: int) -> None:
    """Child process: record events first..last-1 (those below `imported_up_to` stored
    before the rest are journalled), then die without stopping the trail."""
    repository = Repository(open_store(f"sqlite:///{db}"))
    trail = JournalledAuditTrail(repository, Path(directory), import_delay_s=NEVER)
    for n in range(first, last):
        trail.record([event(n)])
        if n + 1 == imported_up_to:
            trail.catch_up()
    os._exit(0)


def die_after_recording(tmp_path: Path, first: int, last: int, *,
                        imported_up_to: int = 0) -> Path:
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_die_after_recording,
                        args=(str(tmp_path / "gw.sqlite3"), str(tmp_path / JOURNAL), first,
                              last, imported_up_to))
    child.start()
    child.join(120)
    assert child.exitcode == 0
    (journal,) = (tmp_path / JOURNAL).glob("*.journal")
    return journal


@pytest.fixture
def repository(tmp_path: Path) -> Any:
    engine = open_store(f"sqlite:///{tmp_path / 'gw.sqlite3'}")
    yield Repository(engine)
    engine.close()


def test_record_is_on_disk_before_it_returns_and_stored_by_catch_up(
        repository: Repository, tmp_path: Path) -> None:
    trail = JournalledAuditTrail(repository, tmp_path / JOURNAL, import_delay_s=NEVER)
    try:
        trail.record([event(1), event(2)])
        lines = trail.path.read_text().splitlines()
        assert [json.loads(line)["entity"][-1]["what"]["identifier"]["value"]
                for line in lines] == ["req-1", "req-2"]
        assert [chain_link(json.loads(line))[1] for line in lines] == [1, 2]
        assert stored_request_ids(repository) == []  # not imported yet
        trail.catch_up()
        assert stored_request_ids(repository) == ["req-1", "req-2"]
        assert verify(repository).intact
    finally:
        trail.close()
    assert not trail.path.exists()  # all of it stored: the journal is removed at stop
    report = verify(repository)
    assert report.intact and report.events == 2 and report.anchors >= 1


def test_a_dead_writers_journal_is_stored_at_the_next_start(
        repository: Repository, tmp_path: Path) -> None:
    journal = die_after_recording(tmp_path, 0, 30)
    assert len(journal.read_text().splitlines()) == 30
    assert stored_request_ids(repository) == []
    trail = JournalledAuditTrail(repository, tmp_path / JOURNAL, import_delay_s=NEVER)
    try:
        assert (trail.recovered.journals, trail.recovered.events) == (1, 30)
        assert not journal.exists()
        assert stored_request_ids(repository) == sorted(f"req-{n}" for n in range(30))
    finally:
        trail.close()
    report = verify(repository)
    assert report.intact, report.problems
    assert report.events == 30 and report.chains == 1


def test_recovery_skips_what_the_store_already_has(repository: Repository,
                                                   tmp_path: Path) -> None:
    # Died after importing the first 12 but before the journal was emptied.
    journal = die_after_recording(tmp_path, 0, 20, imported_up_to=12)
    assert len(journal.read_text().splitlines()) == 20
    assert len(stored_request_ids(repository)) == 12
    found = recover(repository, tmp_path / JOURNAL)
    assert (found.journals, found.events, found.problems) == (1, 8, [])
    assert stored_request_ids(repository) == sorted(f"req-{n}" for n in range(20))
    assert recover(repository, tmp_path / JOURNAL).events == 0  # nothing left to do
    assert verify(repository).intact


def test_a_torn_last_line_was_never_acknowledged_and_is_left_out(
        repository: Repository, tmp_path: Path) -> None:
    journal = die_after_recording(tmp_path, 0, 5)
    with journal.open("ab") as f:
        f.write(b'{"resourceType":"AuditEvent","id":"half-writ')  # no newline: torn
    found = recover(repository, tmp_path / JOURNAL)
    assert (found.events, found.problems) == (5, [])
    assert not journal.exists()
    assert verify(repository).intact


@pytest.mark.parametrize("bad", [
    b"this is not an audit event", b"[1]", b'"x"', b'{"meta": 5}',
    b'{"extension": ["a"], "meta": {}}', b"[" * 100_000,
], ids=["text", "array", "string", "meta", "extension", "deep"])
def test_an_unreadable_line_keeps_the_journal_for_review_and_verify_shows_the_gap(
        repository: Repository, tmp_path: Path, bad: bytes) -> None:
    journal = die_after_recording(tmp_path, 0, 6)
    lines = journal.read_bytes().splitlines(keepends=True)
    lines[2] = bad + b"\n"
    journal.write_bytes(b"".join(lines))
    found = recover(repository, tmp_path / JOURNAL)
    assert found.events == 5
    assert len(found.problems) == 1 and "at byte" in found.problems[0]
    assert journal.with_suffix(".damaged").exists()
    report = verify(repository)
    assert not report.intact
    assert any("events #3 are missing" in p for p in report.problems), report.problems


def test_a_live_writers_journal_is_not_taken(repository: Repository,
                                             tmp_path: Path) -> None:
    first = JournalledAuditTrail(repository, tmp_path / JOURNAL, import_delay_s=NEVER)
    second = None
    try:
        first.record([event(1)])
        second = JournalledAuditTrail(repository, tmp_path / JOURNAL,
                                      import_delay_s=NEVER)
        assert second.recovered.journals == 0 and first.path.exists()
        first.catch_up()
        assert stored_request_ids(repository) == ["req-1"]  # once, by its own writer
    finally:
        first.close()
        if second is not None:
            second.close()
    assert verify(repository).intact


def test_a_failed_append_is_refused_and_cut_back_off(repository: Repository,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    trail = JournalledAuditTrail(repository, tmp_path / JOURNAL, import_delay_s=NEVER)
    try:
        trail.record([event(1)])
        real_write = os.write

        def disk_full(fd: int, data: Any) -> int:
            real_write(fd, bytes(data[:10]))  # part of the line went in, then ENOSPC
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(journal_module.os, "write", disk_full)
        with pytest.raises(AuditUnavailable):
            trail.record([event(2)])
        monkeypatch.setattr(journal_module.os, "write", real_write)
        trail.record([event(3)])
        assert len(trail.path.read_text().splitlines()) == 2  # no half line between
        trail.catch_up()
    finally:
        trail.close()
    assert stored_request_ids(repository) == ["req-1", "req-3"]
    assert verify(repository).intact  # event 2 was never sealed into the chain


def test_a_failed_fsync_stops_the_trail(repository: Repository, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    trail = JournalledAuditTrail(repository, tmp_path / JOURNAL, import_delay_s=NEVER)
    try:
        def failing(fd: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(journal_module.os, "fdatasync", failing)
        with pytest.raises(AuditUnavailable):
            trail.record([event(1)])
        monkeypatch.undo()
        with pytest.raises(AuditUnavailable):  # not trusted again: nothing is answered
            trail.record([event(2)])
    finally:
        trail.close()


def test_the_journal_is_emptied_once_stored(repository: Repository, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(journal_module, "TRUNCATE_AT", 2000)
    trail = JournalledAuditTrail(repository, tmp_path / JOURNAL, import_delay_s=NEVER)
    try:
        for n in range(10):
            trail.record([event(n)])
        trail.catch_up()
        assert trail.path.stat().st_size == 0
        for n in range(10, 13):
            trail.record([event(n)])
        assert len(trail.path.read_text().splitlines()) == 3
        trail.catch_up()
    finally:
        trail.close()
    assert stored_request_ids(repository) == sorted(f"req-{n}" for n in range(13))
    assert verify(repository).intact


def test_audit_verify_stores_a_dead_servers_journal_first(tmp_path: Path) -> None:
    die_after_recording(tmp_path, 0, 4)
    out = gateway_cli(f"sqlite:///{tmp_path / 'gw.sqlite3'}", "audit", "verify")
    assert out.startswith("audit trail intact: 4 events"), out
    assert not list((tmp_path / JOURNAL).glob("*.journal"))


@pytest.mark.parametrize(("path", "params", "reads"), [
    ("AuditEvent", [], True),
    ("AuditEvent/123", [], True),
    ("Patient/1/AuditEvent", [], True),
    ("", [], True),  # batch / transaction / whole-system search
    ("_history", [], True),
    ("Patient", [("_revinclude", "AuditEvent:entity")], True),
    ("Patient", [("_has:AuditEvent:entity:agent", "x")], True),
    ("Patient/1", [], False),
    ("Patient", [("name", "smith")], False),
    ("Patient/1/$emergency-summary", [], False),
])
def test_only_requests_that_may_read_audit_events_wait_for_the_import(
        path: str, params: list[tuple[str, str]], reads: bool) -> None:
    assert may_read_audit(FhirRequest(method="GET", path=path, params=params)) is reads


def test_an_auditor_sees_the_access_just_answered(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # No background import during the test: only the gate's catch-up can make it visible.
    # (A SQLite file: other engines are journalled only when a directory is configured.)
    monkeypatch.setattr(journal_module, "IMPORT_DELAY_S", NEVER)
    engine = open_store(f"sqlite:///{tmp_path / 'gw.sqlite3'}")
    with secured(engine) as gw:
        assert isinstance(gw.http.app.state.security.trail, JournalledAuditTrail)
        ward = gw.login("ward", "clinician", org="RXX01")
        auditor = gw.login("audit", "auditor", scope="system/AuditEvent.rs")
        assert gw.http.get("/fhir/Patient/nobody", headers={
            **ward, "X-Request-Id": "just-now"}).status_code == 404
        found = gw.http.get("/fhir/AuditEvent?entity-type=XrequestId", headers=auditor)
        assert found.status_code == 200
        ids = [e["what"]["identifier"]["value"] for entry in found.json().get("entry", [])
               for e in entry["resource"].get("entity", [])
               if "identifier" in (e.get("what") or {})]
        assert "just-now" in ids
    engine.close()


def test_a_request_whose_audit_cannot_be_made_durable_is_not_answered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The HTTP edge awaits the journal's fsync on the event loop: when it fails, the
    # answer (here a 200 with the patient) is replaced by a 503, never sent.
    engine = open_store(f"sqlite:///{tmp_path / 'gw.sqlite3'}")
    with secured(engine) as gw:
        gw.put({"resourceType": "Patient", "id": "p1"})
        ward = gw.login("ward", "clinician", org="RXX01")
        assert gw.http.get("/fhir/Patient/p1", headers=ward).status_code == 200

        def failing(fd: int) -> None:
            raise OSError(errno.EIO, "Input/output error")

        monkeypatch.setattr(journal_module.os, "fdatasync", failing)
        resp = gw.http.get("/fhir/Patient/p1", headers=ward)
        assert resp.status_code == 503
        assert resp.json()["resourceType"] == "OperationOutcome"
        assert "audit" in resp.text
        monkeypatch.undo()
        assert gw.http.get("/fhir/Patient/p1", headers=ward).status_code == 503  # stays shut
    engine.close()


def test_an_import_that_fails_is_retried_and_stores_each_event_once(
        repository: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = journal_module.store_lines
    calls: list[int] = []

    def flaky(session: Any, registry: Any, lines: list[Any]) -> int:
        calls.append(len(lines))
        stored = real(session, registry, lines)
        if len(calls) == 1:
            raise RuntimeError("store went away mid-import")  # its transaction rolls back
        return stored

    monkeypatch.setattr(journal_module, "store_lines", flaky)
    trail = JournalledAuditTrail(repository, tmp_path / JOURNAL, import_delay_s=0.01)
    try:
        for n in range(5):
            trail.record([event(n)])
        trail.catch_up()
    finally:
        trail.close()
    assert len(calls) >= 2
    assert stored_request_ids(repository) == sorted(f"req-{n}" for n in range(5))
    assert verify(repository).intact


def test_the_journal_works_on_either_engine_when_configured(engine: Any,
                                                            tmp_path: Path) -> None:
    # On MongoDB the journal is used only when FHIR_GATEWAY_AUDIT_JOURNAL names a
    # directory; the importer and recovery go through the store contract alone.
    repository = Repository(engine)
    journal = tmp_path / "audit-journal"
    trail = JournalledAuditTrail(repository, journal, import_delay_s=NEVER)
    try:
        trail.record([event(1), event(2)])
        trail.catch_up()
        assert stored_request_ids(repository) == ["req-1", "req-2"]
        trail.record([event(3)])
    finally:
        trail.close()
    assert stored_request_ids(repository) == ["req-1", "req-2", "req-3"]
    report = verify(repository)
    assert report.intact and report.events == 3, report.problems
    assert not list(journal.glob("*.journal"))


def test_only_an_auditor_waits_for_the_import(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # A clinician's batch and a whole-system search may name AuditEvents but never show
    # one to a clinician: they do not wait for the journal's import. An auditor's do.
    engine = open_store(f"sqlite:///{tmp_path / 'gw.sqlite3'}")
    with secured(engine) as gw:
        ward = gw.login("ward", "clinician", org="RXX01")
        auditor = gw.login("audit", "auditor", scope="system/AuditEvent.rs")
        trail = gw.http.app.state.security.trail
        waits: list[int] = []
        real = trail.catch_up
        monkeypatch.setattr(trail, "catch_up", lambda: (waits.append(1), real())[1])
        batch = {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": "AuditEvent?patient=Patient/p1"}}]}
        json_headers = {"Content-Type": "application/fhir+json"}
        assert gw.http.post("/fhir", json=batch,
                            headers={**ward, **json_headers}).status_code == 200
        assert gw.http.get("/fhir/Patient/p1", headers=ward).status_code == 404
        assert gw.http.get("/fhir/AuditEvent", headers={
            "Authorization": "Bearer not-a-token"}).status_code == 401
        assert waits == []
        assert gw.http.get("/fhir/AuditEvent", headers=auditor).status_code == 200
        assert gw.http.post("/fhir", json=batch,
                            headers={**auditor, **json_headers}).status_code == 200
        assert len(waits) == 2
    engine.close()
