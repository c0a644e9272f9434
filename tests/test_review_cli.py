"""`fhir-gateway review resolve` (a real process on a SQLite file): a record is never
filed on a Patient an A40 merged away, where no crew's summary reads it; a resolve is
audited like any write; one that does not settle the record exits 1 saying why."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fhir_gateway.fhir.repository import Repository
from fhir_gateway.pipeline.loader import Loader, Summary
from fhir_gateway.store import open_store
from fhir_gateway.store.query import IndexQuery

CLI = str(Path(sys.executable).with_name("fhir-gateway"))
# No NHS number and nobody like her on the record: held for review.
COUNCIL = ("Person ID,Title,First Name,Last Name,DOB,Postcode,NHS No (if known),Service,"
           "Service Start,Service End,Provider,Key Worker\n"
           "SC900001,Mrs,Ada,Secretname,1931-02-03,DY1 1AA,,Home care,2026-01-02,,"
           "Oakleigh Care Home,Brenda Johnson\n")


def run(store: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "--store", store, *args], capture_output=True, text=True,
                          timeout=120, check=False)


def put_patients(store: str) -> None:
    engine = open_store(store)
    try:
        repo = Repository(engine)
        repo.update({"resourceType": "Patient", "id": "keep",
                     "name": [{"family": "Secretname", "given": ["Ada"]}]}, rtype="Patient",
                    rid="keep")
        repo.update({"resourceType": "Patient", "id": "old", "active": False,
                     "name": [{"family": "Secretname", "given": ["Ada"]}],
                     "link": [{"other": {"reference": "Patient/keep"},
                               "type": "replaced-by"}]}, rtype="Patient", rid="old")
    finally:
        engine.close()


def audit_events(store: str) -> list[dict[str, Any]]:
    engine = open_store(store)
    try:
        rows = Repository(engine).find(IndexQuery(rtype="AuditEvent", limit=1000)).rows
        return [json.loads(r.body or "{}") for r in rows]
    finally:
        engine.close()


def test_resolving_onto_a_merged_away_patient_is_refused_naming_the_survivor(
        tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    council = tmp_path / "council.csv"
    council.write_text(COUNCIL)
    assert run(store, "ingest", "--partner", "socialcare", str(council)).returncode == 0
    put_patients(store)
    (held,) = [json.loads(line) for line in run(store, "review", "list").stdout.splitlines()
               if "key" in json.loads(line)]
    refused = run(store, "review", "resolve", held["key"], "--patient", "old")
    assert refused.returncode == 1
    assert "Patient/keep" in refused.stderr and "Traceback" not in refused.stderr
    assert held["key"] in run(store, "review", "list").stdout  # still held

    settled = run(store, "review", "resolve", held["key"], "--patient", "keep")
    assert settled.returncode == 0, settled.stderr
    resolves = [e for e in audit_events(store)
                if "settled by a reviewer" in (e.get("outcomeDesc") or "")]
    (event,) = resolves
    assert event["agent"][0]["altId"] == f"cli:{getpass.getuser()}"
    assert {x["what"]["reference"] for x in event["entity"]
            if x.get("role", {}).get("code") == "1"} == {"Patient/keep"}
    assert run(store, "audit", "verify").returncode == 0


def test_a_resolve_that_does_not_settle_the_record_exits_1_saying_why(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from fhir_gateway.cli import main

    def rejected(self: Loader, key: str, **_: Any) -> Summary:
        return Summary(rejected=1, rejections=[{"reason": "the NHS numbers differ"}])

    monkeypatch.setattr(Loader, "resolve_held", rejected)
    status = main(["--store", f"sqlite:///{tmp_path / 'gw.sqlite3'}", "review", "resolve",
                   "socialcare/x", "--patient", "p1"])
    assert status == 1
    assert "the NHS numbers differ" in capsys.readouterr().err


def test_the_operator_replaces_an_nhs_number_a_partner_corrected(tmp_path: Path) -> None:
    """An A08 keeping the MRN but giving another NHS number is held; the operator's
    `--replace-nhs-number` puts the corrected number on the person, audited as such."""
    from pipeline.identity_kit import X, Y, adt

    store = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    first, second = tmp_path / "a.hl7", tmp_path / "b.hl7"
    first.write_bytes(adt("C1", "A01", "202601010900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                          visit="V1"))
    second.write_bytes(adt("C2", "A08", "202601020900", f"{Y}^^^NHS^NH~M1^^^RXA^MR",
                           visit="V1"))
    for path in (first, second):
        assert run(store, "ingest", "--partner", "acute", "--json", str(path)).returncode == 0
    (held,) = [json.loads(line) for line in run(store, "review", "list").stdout.splitlines()]
    assert held["received"] and "last_received" not in held  # how long it has waited
    assert run(store, "ingest", "--partner", "acute", "--json", str(second)).returncode == 0
    (again,) = [json.loads(line) for line in run(store, "review", "list").stdout.splitlines()]
    assert again["received"] == held["received"] < again["last_received"]
    (patient,) = held["candidates"]
    usage = run(store, "review", "resolve", held["key"], "--create", "--replace-nhs-number")
    assert usage.returncode == 2 and "--replace-nhs-number needs --patient" in usage.stderr
    done = run(store, "review", "resolve", held["key"], "--patient", patient,
               "--replace-nhs-number")
    assert done.returncode == 0, done.stderr
    assert run(store, "review", "list").stdout == ""
    engine = open_store(store)
    try:
        body = json.loads(Repository(engine).read("Patient", patient).body or "{}")
    finally:
        engine.close()
    assert [i["value"] for i in body["identifier"]
            if i["system"] == "https://fhir.nhs.uk/Id/nhs-number"] == [Y]
    resolved = [e for e in audit_events(store)
                if "--replace-nhs-number" in json.dumps(e) and e.get("outcome") == "0"]
    assert len(resolved) == 1


def test_the_operator_discards_a_held_record_which_is_kept(tmp_path: Path) -> None:
    """`review discard` takes a held record off the queue unapplied; `review list` then
    shows it as discarded, with who and why; the audit event says what was done, not why."""
    store = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    feed = tmp_path / "council.csv"
    feed.write_text(COUNCIL)
    assert run(store, "ingest", "--partner", "socialcare", "--json",
               str(feed)).returncode == 0
    (held,) = [json.loads(line) for line in run(store, "review", "list").stdout.splitlines()]
    assert run(store, "review", "discard", held["key"]).returncode == 2  # why, please
    done = run(store, "review", "discard", held["key"], "--reason", "duplicate test entry")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"discarded": held["key"]}
    (listed,) = [json.loads(line) for line in run(store, "review", "list").stdout.splitlines()]
    assert listed["discarded"] == held["key"]
    assert listed["held_because"] == held["reason"]
    assert (listed["reason"], listed["by"]) == ("duplicate test entry",
                                                f"cli:{getpass.getuser()}")
    again = run(store, "review", "discard", held["key"], "--reason", "again")
    assert again.returncode == 1 and "no held record" in again.stderr
    discards = [e for e in audit_events(store)
                if "discard" in json.dumps(e) and e.get("action") == "D"]
    assert len(discards) == 1 and "duplicate test entry" not in json.dumps(discards)
    engine = open_store(store)
    try:
        assert Repository(engine).find(IndexQuery(rtype="Patient")).rows == []
    finally:
        engine.close()


def test_an_attachment_contradicting_the_record_needs_the_reviewers_say_so(
        tmp_path: Path) -> None:
    """Not a candidate, another birth date and surname: a mistyped id, until the reviewer
    says otherwise; the override is in the audited command."""
    store = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    council = tmp_path / "council.csv"
    council.write_text(COUNCIL)
    assert run(store, "ingest", "--partner", "socialcare", str(council)).returncode == 0
    engine = open_store(store)
    try:
        Repository(engine).update({"resourceType": "Patient", "id": "other",
                                   "name": [{"family": "Jones", "given": ["Mary"]}],
                                   "birthDate": "1950-01-01"}, rtype="Patient", rid="other")
    finally:
        engine.close()
    (held,) = [json.loads(line) for line in run(store, "review", "list").stdout.splitlines()
               if "key" in json.loads(line)]
    refused = run(store, "review", "resolve", held["key"], "--patient", "other")
    assert refused.returncode == 1, refused.stderr
    assert "birth date and family name differ" in refused.stderr
    assert "--despite-differences" in refused.stderr and "Traceback" not in refused.stderr
    usage = run(store, "review", "resolve", held["key"], "--create", "--despite-differences")
    assert usage.returncode == 2 and "goes with --patient" in usage.stderr
    assert held["key"] in run(store, "review", "list").stdout  # still held
    done = run(store, "review", "resolve", held["key"], "--patient", "other",
               "--despite-differences")
    assert done.returncode == 0, done.stderr
    assert held["key"] not in run(store, "review", "list").stdout
    assert any("--patient other --despite-differences" in (e.get("outcomeDesc") or "")
               for e in audit_events(store))
