"""A partner feed's ingest answer describes that partner's records only.

Held records are retried after every run, whoever's they are: a council row held for
review may be applied when the hospice's file makes its Patient. It must be applied, but
the hospice's answer (the summary, `POST /ingest/hospice`, the CLI) must not count it or
name it: the review queue never shows a feed another partner's held records, and the
answer would tell the hospice that this person is known to social care.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_gateway import jsonio
from fhir_gateway.api.app import create_app
from fhir_gateway.config import Settings
from fhir_gateway.fhir.repository import Repository
from fhir_gateway.pipeline.service import IngestService
from fhir_gateway.store.base import StoreEngine
from fhir_gateway.store.query import IndexQuery
from gatewaykit import make_engine

CLI = str(Path(sys.executable).with_name("fhir-gateway"))

COUNCIL = (b"Person ID,Title,First Name,Last Name,DOB,Postcode,NHS No (if known),Service,"
           b"Service Start,Service End,Provider,Key Worker\r\n"
           b"SC999001,Ms,Philippa,Quennell,1950-02-03,DY1 4DX,,Secret befriending scheme,"
           b"2026-01-05,,Oakleigh,Brenda Johnson\r\n")
HOSPICE = (json.dumps({
    "clientId": "MSH-1", "nhsNumber": "9434765919",
    "name": {"first": "Philippa", "last": "Quennell"}, "dob": "1950-02-03",
    "gender": "female",
    "address": {"line": "1 High St", "town": "Dudley", "postcode": "DY1 4DX"},
    "admissions": []}) + "\n").encode()


@pytest.fixture
def fresh(request: pytest.FixtureRequest, engine: StoreEngine,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreEngine]:
    """A second, empty store of the same kind as `engine`: what the hospice's answer is
    when no other partner's record is held."""
    kind = request.node.callspec.params["engine"]
    store = make_engine(kind, tmp_path_factory.mktemp("fresh"))
    yield store
    store.close()


def council_patient_ids(repo: Repository) -> list[str]:
    return [i["value"] for row in repo.find(IndexQuery(rtype="Patient")).rows
            for i in jsonio.loads_trusted(row.body or "{}").get("identifier", [])
            if i.get("value") == "SC999001"]


def test_the_answer_counts_only_the_feeds_own_records(
        engine: StoreEngine, fresh: StoreEngine, caplog: pytest.LogCaptureFixture) -> None:
    service = IngestService(Repository(engine))
    held = service.ingest("socialcare", "services.csv", COUNCIL)
    assert held.held == 1 and service.loader.list_held()
    with caplog.at_level(logging.INFO, logger="fhir_gateway.pipeline"):
        answer = service.ingest("hospice", "c.jsonl", HOSPICE)
    alone = IngestService(Repository(fresh)).ingest("hospice", "c.jsonl", HOSPICE)
    # the same answer as if no other partner's record had been held
    assert answer.to_json() == alone.to_json()
    assert answer.counts() == alone.counts() and answer.read == 1
    assert all(entry["partner"] == "hospice"
               for entry in answer.warnings + answer.rejections)
    assert "SC999001" not in json.dumps(answer.to_json())
    # the council's record was applied all the same, and said so to the operator only:
    # bare counts per partner, naming no record
    assert service.loader.list_held() == [] and council_patient_ids(service.loader.repo)
    assert answer.others["socialcare"]["retried"] == 1
    assert "others" not in answer.to_json() and "socialcare" not in json.dumps(
        answer.to_json())
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "socialcare" in logged and "SC999001" not in logged


@pytest.fixture
def apps(engine: StoreEngine, fresh: StoreEngine) -> Iterator[tuple[TestClient, TestClient]]:
    settings = Settings(max_body_bytes=1024 * 1024, auth_enabled=False)
    with TestClient(create_app(settings, engine=engine), base_url="http://gateway.test") as a, \
            TestClient(create_app(settings, engine=fresh), base_url="http://gateway.test") as b:
        yield a, b


def post(client: TestClient, partner: str, name: str, body: bytes, ctype: str) -> Any:
    r = client.post(f"/ingest/{partner}?filename={name}", content=body,
                    headers={"Content-Type": ctype})
    assert r.status_code == 200, r.text
    return r.json()


def test_post_ingest_answers_only_for_the_posting_partner(
        apps: tuple[TestClient, TestClient]) -> None:
    shared, alone = apps
    assert post(shared, "socialcare", "services.csv", COUNCIL, "text/csv")["held"] == 1
    answer = post(shared, "hospice", "c.jsonl", HOSPICE, "application/x-ndjson")
    assert answer == post(alone, "hospice", "c.jsonl", HOSPICE, "application/x-ndjson")
    assert answer["read"] == 1
    assert all(w["partner"] == "hospice" for w in answer["warnings"] + answer["rejections"])
    assert shared.get("/review/held").json() == []  # applied, not left held


def test_cli_summary_counts_only_the_partners_own_records(tmp_path: Path) -> None:
    council, hospice = tmp_path / "services.csv", tmp_path / "c.jsonl"
    council.write_bytes(COUNCIL)
    hospice.write_bytes(HOSPICE)

    def ingest(store: str, partner: str, path: Path) -> dict[str, Any]:
        run = subprocess.run([CLI, "--store", store, "ingest", "--partner", partner,
                              "--json", str(path)],
                             capture_output=True, text=True, timeout=300, check=False)
        assert run.returncode == 0, run.stderr
        return dict(json.loads(run.stdout))

    shared = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    assert ingest(shared, "socialcare", council)["held"] == 1
    answer = ingest(shared, "hospice", hospice)
    assert answer == ingest(f"sqlite:///{tmp_path / 'alone.sqlite3'}", "hospice", hospice)
    assert "SC999001" not in json.dumps(answer)


def test_the_cli_tells_the_operator_of_other_partners_records_it_applied(
        tmp_path: Path) -> None:
    """Without --json the CLI speaks to the operator, who may know: the counts are the
    partner's own, and a line on stderr says what the retry did for another partner."""
    council, hospice = tmp_path / "services.csv", tmp_path / "c.jsonl"
    council.write_bytes(COUNCIL)
    hospice.write_bytes(HOSPICE)
    store = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    for partner, path in (("socialcare", council), ("hospice", hospice)):
        run = subprocess.run([CLI, "--store", store, "ingest", "--partner", partner,
                              str(path)], capture_output=True, text=True, timeout=300,
                             check=False)
        assert run.returncode == 0, run.stderr
    assert "also retried 1 held socialcare record(s): created" in run.stderr, run.stderr
    assert "SC999001" not in run.stdout + run.stderr


def test_a_nul_filled_extract_is_answered_rejected_and_kept(engine: StoreEngine) -> None:
    """A failed copy (the file's length, every byte NUL) was answered `read 0`: the operator
    saw nothing wrong and nothing was kept. It is now one rejection, kept for review."""
    service = IngestService(Repository(engine))
    answer = service.ingest("socialcare", "services.csv", b"\x00" * 2048)
    assert (answer.read, answer.rejected) == (1, 1)
    [(_, kept)] = service.loader.list_rejected()
    assert kept["raw"] == "\x00" * 2048 and "services.csv line 1" in kept["reason"]
    assert kept["field"] == "header"


@pytest.mark.parametrize("body", [b"", b"\xef\xbb\xbf", b"\xef\xbb\xbf\r\n  \n"])
def test_a_body_of_nothing_but_a_byte_order_mark_is_empty(
        apps: tuple[TestClient, TestClient], body: bytes) -> None:
    """A failed export's mark alone was answered 200 "read 0" over HTTP (the CLI exits 1)."""
    shared, _ = apps
    r = shared.post("/ingest/hospice?filename=c.jsonl", content=body,
                    headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 400 and "empty" in r.text
