"""Review 11 of the audit trail: `audit verify` fails while a journal line could not be
stored; is not fooled by a live gateway's commits between its reads; checks the version
rows vread and `_history` serve; a feed's ingest names the Patients it wrote; and an
interaction that touched more patients than one event names is recorded in full."""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fhir_gateway.fhir.repository import Repository
from fhir_gateway.search.values import now_instant
from fhir_gateway.security.audit import events as events_module
from fhir_gateway.security.audit.chain import AuditTrail, Chain, Unsealed, chain_link
from fhir_gateway.security.audit.events import audit_event, audit_events, is_continuation
from fhir_gateway.security.audit.verify import verify
from fhir_gateway.store import open_store
from fhir_gateway.store.base import StoreEngine
from fhir_gateway.store.query import IndexQuery
from security_kit import Gateway, patient, secured

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

CLI = str(Path(sys.executable).with_name("fhir-gateway"))


def event(n: int) -> dict[str, Any]:
    return audit_event(subtype="read", status=200, caller=None, observer="test",
                       destination="http://gateway.test/fhir", request_id=f"req-{n}",
                       patients=[f"p{n}"], what=f"Patient/p{n}")


def dead_writers_journal(tmp_path: Path, n: int) -> tuple[Path, list[bytes]]:
    """A journal as a writer that died before importing leaves it: `n` sealed lines (each
    acknowledged), beside the store at tmp_path/s.sqlite3. Its path and lines."""
    directory = tmp_path / "s.sqlite3-audit"
    directory.mkdir()
    _seq, _head, texts = Chain("dead-w").seal([Unsealed.of(event(i)) for i in range(n)],
                                              now_instant())
    journal = directory / "dead.journal"
    return journal, [t.encode("utf-8") for t in texts]


def audit_verify(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "--store", f"sqlite:///{tmp_path / 's.sqlite3'}", "audit",
                           "verify"], capture_output=True, text=True, timeout=60,
                          check=False)


# -- 1: a journal line that could not be stored -----------------------------------------


def test_verify_fails_while_a_journal_line_could_not_be_read(tmp_path: Path) -> None:
    journal, lines = dead_writers_journal(tmp_path, 10)
    lines[-1] = lines[-1][:50] + b"\xff" + lines[-1][51:]  # the last, acknowledged line
    journal.write_bytes(b"".join(line + b"\n" for line in lines))
    for _run in (1, 2):  # and still on the next run: the journal waits for review
        result = audit_verify(tmp_path)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "dead.damaged" in result.stdout + result.stderr
    assert [p.name for p in journal.parent.iterdir()] == ["dead.damaged"]


def test_lines_out_of_order_keep_their_journal(tmp_path: Path) -> None:
    journal, lines = dead_writers_journal(tmp_path, 10)
    lines[4], lines[5] = lines[5], lines[4]
    journal.write_bytes(b"".join(line + b"\n" for line in lines))
    result = audit_verify(tmp_path)
    assert result.returncode == 1
    kept = journal.with_suffix(".damaged")
    assert kept.exists(), "the only copy of event #5 was removed"
    assert lines[5] in kept.read_bytes()  # #5, which the store could not take after #6
    assert "dead-w #5" in result.stdout + result.stderr


# -- 2: verify beside a live gateway -----------------------------------------------------


class CommitsWhileRead(Repository):
    """A repository on which another writer commits `batch` events once, right after the
    first page of a search: a live gateway's importer committing between verify's reads."""

    def __init__(self, engine: StoreEngine, trail: AuditTrail, batch: int) -> None:
        super().__init__(engine)
        self.trail, self.batch = trail, batch

    def find(self, query: IndexQuery, **kwargs: Any) -> Any:
        found = super().find(query, **kwargs)
        if self.batch and query.rtype == "AuditEvent":
            self.trail.record([event(100 + n) for n in range(self.batch)])
            self.batch = 0
        return found


def test_verify_beside_a_live_writer_finds_the_trail_intact(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 's.sqlite3'}")
    trail = AuditTrail(Repository(engine))
    try:
        trail.record([event(n) for n in range(5)])
        report = verify(CommitsWhileRead(engine, trail, batch=3))
        assert report.intact, report.problems
        assert verify(Repository(engine)).events == 8
    finally:
        trail.close()
    # a chain really cut back (its last event gone, the head left) still fails
    with sqlite3.connect(tmp_path / "s.sqlite3") as db:
        last = max(db.execute("SELECT rid, body FROM resources WHERE rtype='AuditEvent'"),
                   key=lambda r: chain_link(json.loads(r[1]))[1])[0]
        db.execute("DELETE FROM resources WHERE rtype='AuditEvent' AND rid=?", (last,))
        db.execute("DELETE FROM versions WHERE rtype='AuditEvent' AND rid=?", (last,))
    report = verify(Repository(engine))
    assert not report.intact and any("the head says" in p for p in report.problems)
    engine.close()


# -- 3: the version rows vread and _history serve ------------------------------------------


def test_verify_checks_the_history_an_auditor_reads(tmp_path: Path) -> None:
    """SQLite keeps each version's body twice (resources, versions): vread and _history
    serve the second copy, so verify must check it too."""
    engine = open_store(f"sqlite:///{tmp_path / 's.sqlite3'}")
    with secured(engine) as gw:
        auditor = gw.login("auditor", "auditor", org="X26")
        gw.http.get("/fhir/Patient/x", headers=gw.login("ward", "clinician", org="RXX01"))
        assert gw.verify().intact
        (ev,) = [e for e in gw.audit_events(subtype="read")]
        with sqlite3.connect(tmp_path / "s.sqlite3") as db:
            body = db.execute("SELECT body FROM versions WHERE rtype='AuditEvent' AND "
                              "rid=?", (ev["id"],)).fetchone()[0]
            db.execute("UPDATE versions SET body=? WHERE rtype='AuditEvent' AND rid=?",
                       (body.replace('"ward"', '"someone-else"'), ev["id"]))
        history = gw.http.get(f"/fhir/AuditEvent/{ev['id']}/_history/1", headers=auditor)
        assert "someone-else" in history.text  # what an auditor reads in the history
        report = gw.verify()
    engine.close()
    assert not report.intact
    assert any(ev["id"] in p and "history" in p for p in report.problems), report.problems


# -- 4: an ingest names the Patients it wrote ------------------------------------------------


def test_an_ingest_event_names_the_patients_it_wrote(gw: Gateway) -> None:
    """`POST /ingest/gp` of the GP register: "who accessed this person's record" lists
    the feed's ingest for each person the file wrote, as it would a feed's REST write."""
    feed = gw.login("gp-feed", "feed", partner="gp", org="B86001", scope="system/*.cruds")
    auditor = gw.login("auditor", "auditor", org="X26")
    register = (FIXTURES / "feeds" / "gp" / "palliative_register.csv").read_bytes()
    loaded = gw.http.post("/ingest/gp", content=register,
                          headers={**feed, "Content-Type": "text/csv"})
    assert loaded.status_code == 200 and loaded.json()["created"] > 0, loaded.text
    people = gw.repository.find(IndexQuery(rtype="Patient", limit=1000)).rows
    assert len(people) > 1
    for person in people:
        rows = gw.http.get(f"/audit/report?kind=patient&patient={person.rid}",
                           headers=auditor).json()["rows"]
        assert ("gp-feed", "create") in [(r["client"], r["interaction"]) for r in rows]


def test_another_partners_held_record_applied_by_a_later_run_is_on_the_trail(
        gw: Gateway) -> None:
    """The council's row is held (no match); the hospice's upload then makes the person,
    and its retry applies the council's row: the hospice's answer and event say nothing
    of it, and an event of its own names the person for the council's write."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
    from test_ingest_answers import COUNCIL, HOSPICE

    council = gw.login("sc-feed", "feed", partner="socialcare", org="X1AB1",
                       scope="system/*.cruds")
    hospice = gw.login("hos-feed", "feed", partner="hospice", org="X2AB2",
                       scope="system/*.cruds")
    auditor = gw.login("auditor", "auditor", org="X26")
    held = gw.http.post("/ingest/socialcare?filename=s.csv", content=COUNCIL,
                        headers={**council, "Content-Type": "text/csv"})
    assert held.status_code == 200 and held.json()["held"] == 1, held.text
    made = gw.http.post("/ingest/hospice?filename=c.jsonl", content=HOSPICE,
                        headers={**hospice, "Content-Type": "application/x-ndjson"})
    assert made.status_code == 200, made.text
    assert "socialcare" not in made.text
    (person,) = gw.repository.find(IndexQuery(rtype="Patient", limit=10)).rows
    rows = gw.http.get(f"/audit/report?kind=patient&patient={person.rid}",
                       headers=auditor).json()["rows"]
    assert {r["client"] for r in rows} == {"hos-feed", "held-record-retry/socialcare"}


# -- 5: more patients than one event names -------------------------------------------------


def test_audit_events_name_every_patient() -> None:
    patients = {f"p{n:04d}" for n in range(2500)}
    made = audit_events(subtype="search-type", status=200, caller=None, observer="t",
                        destination="d", request_id="big", patients=patients)
    assert len(made) == 3
    named = [x["what"]["reference"] for e in made for x in e["entity"]
             if x.get("role", {}).get("code") == "1"]
    assert sorted(named) == sorted(f"Patient/{p}" for p in patients)
    assert not is_continuation(made[0]) and all(is_continuation(e) for e in made[1:])
    assert all(any((x.get("what") or {}).get("identifier", {}).get("value") == "big"
                   for x in e["entity"]) for e in made)


def test_a_search_past_the_cap_is_reported_for_every_patient(
        gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(events_module, "MAX_PATIENT_ENTITIES", 3)
    for n in range(5):
        gw.put(patient(f"s{n}", "", f"Same{n}") | {"identifier": []})
    ward = gw.login("ward", "clinician", org="RXX01")
    auditor = gw.login("auditor", "auditor", org="X26")
    found = gw.http.get("/fhir/Patient?_count=50", headers={**ward, "X-Request-Id": "big"})
    assert len(found.json()["entry"]) == 5
    for n in range(5):
        rows = gw.http.get(f"/audit/report?kind=patient&patient=s{n}",
                           headers=auditor).json()["rows"]
        assert [(r["client"], r["interaction"]) for r in rows] == \
            [("ward", "search-type")], (n, rows)
    searches = [e for e in gw.audit_events(subtype="search-type")
                if base64.b64decode(next(x["query"] for x in e["entity"] if "query" in x))
                .startswith(b"GET Patient")]
    assert len(searches) == 2  # the access and its continuation
    # the accesses summary counts the search once (and the token request not at all)
    ward_events = [e for e in gw.audit_events() if e["type"]["code"] == "rest" and any(
        (a.get("who") or {}).get("identifier", {}).get("value") == "RXX01"
        for a in e["agent"])]
    summary = gw.http.get("/audit/report?kind=summary", headers=auditor).json()["rows"]
    counted = sum(r["count"] for r in summary if r["organisation"] == "RXX01")
    assert counted == len(ward_events) - 1
    # a break-glass search past the cap is one access on the review list
    glass = {**ward, "X-Purpose-Of-Use": "ETREAT", "X-Break-Glass-Reason": "unconscious"}
    assert gw.http.get("/fhir/Patient?_count=50", headers=glass).status_code == 200
    review = gw.http.get("/audit/report?kind=break-glass", headers=auditor).json()["rows"]
    assert len(review) == 1, review
