"""`fhir-gateway conflicts refresh` (a real process on a SQLite file): it stores the
CPR-conflict DetectedIssues a store loaded by an older gateway never got, takes away one
whose decision has since passed its review date or whose Patient is gone, changes nothing
when run again, and is on the audit trail."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from fhir_gateway.fhir.repository import Repository
from fhir_gateway.store import open_store
from fhir_gateway.store.query import IndexQuery
from fhir_gateway.summary.conflicts import CprConflictRecord, stored_issue_id
from fhir_gateway.summary.terms import REVIEW_DATE_EXTENSION

CLI = str(Path(sys.executable).with_name("fhir-gateway"))
SCT = "http://snomed.info/sct"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"


def run(store: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "--store", store, *args], capture_output=True, text=True,
                          timeout=120, check=False)


def write_record(repo: Repository, pid: str, *, gp_review: str | None = None) -> None:
    """A person whose GP (not for CPR) and hospice (for CPR) decisions differ."""
    repo.update({"resourceType": "Patient", "id": pid, "name": [{"family": "Example"}]},
                rtype="Patient", rid=pid)
    for oid, code, when, ods, review in (
            (f"{pid}-gp", "450476008", "2025-10-01", "X9G01", gp_review),
            (f"{pid}-hospice", "450475007", "2025-11-01", "X9H01", None)):
        decision: dict[str, Any] = {
            "resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": SCT, "code": "304251008"}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
            "valueCodeableConcept": {"coding": [{"system": SCT, "code": code}]}}
        if review:
            decision["extension"] = [{"url": REVIEW_DATE_EXTENSION, "valueDate": review}]
        repo.update(decision, rtype="Observation", rid=oid)
        repo.update({"resourceType": "Provenance", "id": f"prov-{oid}",
                     "target": [{"reference": f"Observation/{oid}/_history/1"}],
                     "recorded": f"{when}T09:00:00Z",
                     "agent": [{"who": {"identifier": {"system": ODS, "value": ods}}}]},
                    rtype="Provenance", rid=f"prov-{oid}")


def issue(store: str, pid: str) -> dict[str, Any] | None:
    engine = open_store(store)
    try:
        with engine.session(write=False) as session:
            issue_id = stored_issue_id(session, pid)
        stored = Repository(engine).current("DetectedIssue", issue_id) if issue_id else None
        return None if stored is None or stored.deleted else json.loads(stored.body or "{}")
    finally:
        engine.close()


def counts(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_refresh_stores_what_an_older_gateway_never_did_and_is_audited(
        tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    engine = open_store(store)
    try:
        write_record(Repository(engine, derivations=()), "ann")  # as before stored issues
    finally:
        engine.close()
    assert issue(store, "ann") is None
    assert counts(run(store, "conflicts", "refresh", "--json")) == {
        "people checked": 1, "created": 1, "updated": 0, "deleted": 0, "failed": 0}
    stored = issue(store, "ann")
    assert stored is not None
    assert {i["reference"] for i in stored["implicated"]} == {"Observation/ann-gp",
                                                              "Observation/ann-hospice"}
    # run again: nothing to change, no new version
    assert counts(run(store, "conflicts", "refresh", "--json"))["created"] == 0
    assert issue(store, "ann")["meta"] == stored["meta"]  # type: ignore[index]
    engine = open_store(store)
    try:
        rows = Repository(engine).find(IndexQuery(rtype="AuditEvent", limit=100)).rows
    finally:
        engine.close()
    events = [json.loads(r.body or "{}") for r in rows]
    refreshes = [e for e in events if "worked out again by the command line"
                 in (e.get("outcomeDesc") or "")]
    assert len(refreshes) == 2, [e.get("outcomeDesc") for e in events]
    assert [{x["what"].get("reference") for x in e["entity"]
             if x.get("role", {}).get("code") == "1"} for e in refreshes] \
        in ([{"Patient/ann"}, set()], [set(), {"Patient/ann"}])
    assert run(store, "audit", "verify").returncode == 0


def test_refresh_takes_away_an_expired_conflict_and_a_deleted_patients(
        tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    engine = open_store(store)
    try:
        # worked out on 1 December 2025, when the GP's decision was still in date
        repo = Repository(engine, derivations=(CprConflictRecord(lambda: dt.date(2025, 12, 1)),))
        write_record(repo, "ann", gp_review="2026-01-01")
        write_record(repo, "bob")
        # deleted by a gateway that did not yet take a deleted Patient's issue away
        Repository(engine, derivations=()).delete("Patient", "bob")
    finally:
        engine.close()
    assert issue(store, "ann") is not None and issue(store, "bob") is not None
    # today (the clock's, 2026 or later) the GP's decision has expired: nothing differs
    done = counts(run(store, "conflicts", "refresh", "--json"))
    assert done["deleted"] == 2 and done["created"] == done["failed"] == 0
    assert issue(store, "ann") is None and issue(store, "bob") is None
