"""The ways partner data arrives: `fhir-gateway ingest`, `POST /ingest/{partner}`, MLLP."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import hl7
import pytest
from fastapi.testclient import TestClient

from fhir_gateway.fhir.repository import Repository
from fhir_gateway.ingest import map_file
from fhir_gateway.mllp import END, START, loader_processor, serve
from fhir_gateway.pipeline.service import IngestService
from fhir_gateway.store.base import StoreEngine
from fhir_gateway.store.query import IndexQuery

FEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
CLI = str(Path(sys.executable).with_name("fhir-gateway"))


def test_cli_ingest_json_summary_and_exit_codes(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    run = subprocess.run([CLI, "--store", store, "ingest", "--partner", "gp", "--json",
                          str(FEEDS / "gp" / "palliative_register.csv")],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr  # 0 even though two rows were rejected
    summary = json.loads(run.stdout)
    assert {"read", "created", "updated", "unchanged", "rejected", "held"} <= set(summary)
    rows = (FEEDS / "gp" / "palliative_register.csv").read_text().strip().count("\n")
    assert summary["rejected"] == 2 and summary["read"] == rows  # every row but the header
    again = json.loads(subprocess.run(
        [CLI, "--store", store, "ingest", "--partner", "gp", "--json",
         str(FEEDS / "gp" / "palliative_register.csv")],
        capture_output=True, text=True, timeout=300, check=False).stdout)
    assert (again["created"], again["updated"]) == (0, 0)
    missing = subprocess.run([CLI, "--store", store, "ingest", "--partner", "gp", "--json",
                              str(tmp_path / "nope.csv")],
                             capture_output=True, text=True, timeout=120, check=False)
    assert missing.returncode == 1 and "nothing could be read" in missing.stderr
    unknown = subprocess.run([CLI, "--store", store, "ingest", "--partner", "pharmacy",
                              str(FEEDS / "gp" / "palliative_register.csv")],
                             capture_output=True, text=True, timeout=120, check=False)
    assert unknown.returncode == 1 and len(unknown.stderr.strip().splitlines()) == 1


def test_cli_ingest_of_an_empty_extract_exits_0_and_of_a_failed_copy_1(tmp_path: Path) -> None:
    """A register listing nobody today (the mapping's header alone) exited 1, "nothing
    could be read", paging whoever schedules the load; a zero-byte or blank file (a failed
    copy) or a missing one still exits 1, also beside an empty extract."""
    store = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    header = (FEEDS / "gp" / "palliative_register.csv").read_text().splitlines()[0]
    empty = tmp_path / "register-empty.csv"
    empty.write_text(header + "\r\n")
    (tmp_path / "zero.csv").write_bytes(b"")
    (tmp_path / "blank.csv").write_text(" \r\n\r\n")
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbf\r\n")  # a failed export's mark alone

    def ingest(*names: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, "--store", store, "ingest", "--partner", "gp", "--json",
                               *(str(tmp_path / n) for n in names)],
                              capture_output=True, text=True, timeout=300, check=False)

    done = ingest("register-empty.csv")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["read"], summary["rejected"], summary["held"]) == (0, 0, 0)
    assert "no records" in done.stderr and "nothing could be read" not in done.stderr
    bundle = tmp_path / "bundle-empty.json"  # a community extract listing nobody
    bundle.write_text('{"resourceType": "Bundle", "type": "collection"}')
    empty_bundle = subprocess.run([CLI, "--store", store, "ingest", "--partner", "community",
                                   "--json", str(bundle)],
                                  capture_output=True, text=True, timeout=300, check=False)
    assert empty_bundle.returncode == 0, empty_bundle.stderr
    assert json.loads(empty_bundle.stdout)["rejected"] == 0
    for names in (("zero.csv",), ("blank.csv",), ("bom.csv",), ("nope.csv",),
                  ("register-empty.csv", "zero.csv"), ("register-empty.csv", "nope.csv")):
        failed = ingest(*names)
        assert failed.returncode == 1, (names, failed.stderr)
        assert "nothing could be read" in failed.stderr, names


def test_cli_ingest_is_audited_naming_each_patient_it_wrote(tmp_path: Path) -> None:
    import getpass

    from fhir_gateway.store import open_store

    store = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    run = subprocess.run([CLI, "--store", store, "ingest", "--partner", "gp", "--json",
                          str(FEEDS / "gp" / "palliative_register.csv")],
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    engine = open_store(store)
    try:
        repo = Repository(engine)
        patients = {r.rid for r in repo.find(IndexQuery(rtype="Patient", limit=1000)).rows}
        events = [json.loads(r.body or "{}")
                  for r in repo.find(IndexQuery(rtype="AuditEvent", limit=1000)).rows]
    finally:
        engine.close()
    (event,) = [e for e in events
                if any(a.get("altId") == f"cli:{getpass.getuser()}" for a in e["agent"])]
    named = {x["what"]["reference"] for x in event["entity"]
             if x.get("role", {}).get("code") == "1"}
    assert patients and named == {f"Patient/{p}" for p in patients}
    verified = subprocess.run([CLI, "--store", store, "audit", "verify"],
                              capture_output=True, text=True, timeout=120, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_http_ingest_answers_the_summary(client: TestClient) -> None:
    data = (FEEDS / "hospice" / "clients.jsonl").read_bytes()
    r = client.post("/ingest/hospice?filename=clients.jsonl", content=data,
                    headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["created"] > 0 and body["rejected"] == 1
    assert "hospice" in body["rejections"][0]["reason"]
    assert client.post("/ingest/pharmacy", content=data).status_code == 404
    assert client.post("/ingest/hospice", content=b"",
                       headers={"Content-Type": "application/x-ndjson"}).status_code == 400
    bad_type = client.post("/ingest/hospice", content=data,
                           headers={"Content-Type": "image/png"})
    assert bad_type.status_code == 415
    assert bad_type.json()["resourceType"] == "OperationOutcome"
    held = client.get("/review/held")
    assert held.status_code == 200 and isinstance(held.json(), list)


def test_http_ingest_takes_the_json_media_type_stu3_systems_send(client: TestClient) -> None:
    """An STU3 system labels its Bundle `application/json+fhir` (DSTU2's name for FHIR
    JSON); it was refused 415."""
    data = (FEEDS / "community" / "bundle-00000.json").read_bytes()
    r = client.post("/ingest/community?filename=bundle-00000.json", content=data,
                    headers={"Content-Type": "application/json+fhir; charset=utf-8"})
    assert r.status_code == 200, r.text
    assert r.json()["created"] > 0


GODSON = {"clientId": "MSH-7", "nhsNumber": "9434765919", "dob": "1961-11-03",
          "name": {"first": "Pat", "last": "White"}, "gender": "female",
          "respect": {"formId": "RSP-7", "version": "1", "completedOn": "2026-07-16",
                      "cpr": "not-attempt", "contacts": [
                          {"name": "Jo", "relationship": "godson", "phone": "1", "lpa": False}],
                      "clinician": {"name": "Dr Smith", "gmc": "6000676"}}}


def test_what_was_kept_incompletely_is_reported_with_where(client: TestClient,
                                                          tmp_path: Path) -> None:
    # "godson" is in no ConceptMap: the contact is kept with the term as text, and the run
    # says so, naming the record, instead of only storing it
    line = (json.dumps(GODSON) + "\n").encode()
    r = client.post("/ingest/hospice?filename=c.jsonl", content=line,
                    headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["rejected"] == 0 and body["created"] > 0
    (warning,) = body["warnings"]
    assert (warning["partner"], warning["file"], warning["position"], warning["record"]) == (
        "hospice", "c.jsonl", "line 1", "MSH-7")
    assert "godson" in warning["warning"]
    # the command line says it too: in --json, and on stderr otherwise
    path = tmp_path / "c.jsonl"
    path.write_bytes(line)
    store = f"sqlite:///{tmp_path / 'w.sqlite3'}"
    run = subprocess.run([CLI, "--store", store, "ingest", "--partner", "hospice", "--json",
                          str(path)], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr
    assert "godson" in json.loads(run.stdout)["warnings"][0]["warning"]
    plain = subprocess.run([CLI, "--store", f"sqlite:///{tmp_path / 'p.sqlite3'}", "ingest",
                            "--partner", "hospice", str(path)],
                           capture_output=True, text=True, timeout=300, check=False)
    assert plain.returncode == 0 and "warning: hospice" in plain.stderr
    assert "godson" in plain.stderr


def test_mllp_acknowledges_after_storing(engine: StoreEngine) -> None:
    service = IngestService(Repository(engine))
    process = loader_processor(service.loader, "acute", map_file)
    messages = (FEEDS / "acute" / "adt.hl7").read_bytes().split(b"MSH|")[1:3]
    good = [b"MSH|" + m for m in messages]
    truncated = b"MSH|^~\\&|PAS|RXA|SCR|GATEWAY|202506172006||ADT^A01^ADT_A01|BADX|P|2.4\r"

    async def exchange() -> list[bytes]:
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        server = asyncio.create_task(serve("127.0.0.1", 0, process,
                                           ready=ready.set_result))
        port = await asyncio.wait_for(ready, 10)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        acks = []
        for frame in [*good, truncated]:
            writer.write(START + frame + END)
            await writer.drain()
            acks.append(await asyncio.wait_for(reader.readuntil(END), 30))
        writer.close()
        server.cancel()
        return acks

    acks = asyncio.run(exchange())
    codes = [str(hl7.parse(a[1:-2].decode()).segment("MSA")[1]) for a in acks]
    assert codes[:2] == ["AA", "AA"] and codes[2] in ("AE", "AR")
    assert "PID" in acks[2].decode()  # the reason names the missing segment
    assert service.loader.repo.find(IndexQuery(rtype="Encounter")).rows  # stored before AA


def test_a_nul_in_a_name_is_rejected_for_review_not_a_crash(engine: StoreEngine) -> None:
    # No NHS number: matched on name, birth date and postcode. The NUL must not reach the
    # identity lookup's LIKE pattern (where SQLite ends it) nor stop the run. (It was held
    # for review; since session 13 a control character in mapped text rejects the record,
    # kept with its text and a reason naming the column.)
    council = (b"Person ID,Title,First Name,Last Name,DOB,Postcode,NHS No (if known),Service,"
               b"Service Start,Service End,Provider,Key Worker\n"
               b"SC1,Mrs,Ada,Sec\x00ret,1931-02-03,DY1 1AA,,Home care,2026-01-02,,Oak,"
               b"Brenda\n")
    summary = IngestService(Repository(engine)).ingest("socialcare", "s.csv", council)
    assert (summary.read, summary.held, summary.rejected) == (1, 0, 1), summary.rejections
    (rejection,) = summary.rejections
    assert rejection["field"] == "Last Name" and "U+0000" in rejection["reason"]


def test_a_cli_ingest_by_a_uid_with_no_user_entry_is_audited_under_its_number(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A container run as an arbitrary uid has no passwd entry: the records were stored,
    then naming the operator failed, so no AuditEvent, no summary, and exit 1 with a line
    that made the operator think nothing happened."""
    import getpass
    import os

    from fhir_gateway.cli import main
    from fhir_gateway.store import open_store

    def no_entry() -> str:
        raise KeyError(f"getpwuid(): uid not found: {os.getuid()}")

    monkeypatch.setattr(getpass, "getuser", no_entry)
    store = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    status = main(["--store", store, "ingest", "--partner", "gp", "--json",
                   str(FEEDS / "gp" / "palliative_register.csv")])
    assert status == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["created"] > 0
    engine = open_store(store)
    try:
        events = [json.loads(r.body or "{}") for r in Repository(engine).find(
            IndexQuery(rtype="AuditEvent", limit=1000)).rows]
    finally:
        engine.close()
    assert any(a.get("altId") == f"cli:uid:{os.getuid()}" for e in events
               for a in e["agent"])


def test_an_audit_failure_after_a_cli_write_says_the_write_was_stored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from fhir_gateway.cli import main
    from fhir_gateway.pipeline import cli as pipeline_cli

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(pipeline_cli, "_record", broken)
    status = main(["--store", f"sqlite:///{tmp_path / 'cli.sqlite3'}", "ingest",
                   "--partner", "gp", str(FEEDS / "gp" / "palliative_register.csv")])
    assert status == 1
    said = capsys.readouterr().err
    assert said.startswith("fhir-gateway: stored (read ") and "created" in said
    assert "the audit record of it could not be written: No space left" in said
