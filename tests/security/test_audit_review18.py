"""Session 18's audit review: the trail names every Patient a partly failed ingest or a
settled hold wrote, and an auditor's Provenance carries no clinical content."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_review_queue import _load

from fhir_gateway import cli
from fhir_gateway.fhir.repository import Repository
from fhir_gateway.pipeline.loader import Loader
from fhir_gateway.store import open_store
from fhir_gateway.store.base import StoreUnavailable
from fhir_gateway.store.query import IndexQuery
from security_kit import Gateway, patient

HEADER = ("Person ID,Title,First Name,Last Name,DOB,Postcode,NHS No (if known),"
          "Service,Service Start,Service End,Provider,Key Worker\n")
TWO_ROWS = (HEADER
            + "SC1,Mrs,Ada,Alpha,1931-02-03,DY1 1AA,9990000018,Home care,2026-01-02,,Oak,Bea\n"
            + "SC2,Mr,Bob,Beta,1932-02-03,DY1 1AB,9990000026,Home care,2026-01-02,,Oak,Bea\n")


def _person(pid: str, nhs: str, given: str, family: str, born: str) -> dict[str, Any]:
    p = patient(pid, nhs, family)
    p["name"][0]["given"] = [given]
    p["birthDate"] = born
    p["address"] = [{"postalCode": "DY1 1AA"}]
    return p


PEOPLE = (_person("pa", "9990000018", "Ada", "Alpha", "1931-02-03"),
          _person("pb", "9990000026", "Bob", "Beta", "1932-02-03"))


def _fail_second_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """One record per batch, and the store goes away before the second batch: the first
    batch's records are committed, as a writer lock held too long leaves them."""
    real, calls = Loader._apply_batch, []

    def flaky(self: Loader, batch: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise StoreUnavailable("the disk went away")
        self.batch_records = 1
        real(self, batch, *args, **kwargs)

    monkeypatch.setattr(Loader, "_apply_batch", flaky)
    init = Loader.__init__

    def one_per_batch(self: Loader, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.batch_records = 1

    monkeypatch.setattr(Loader, "__init__", one_per_batch)


def _named(event: dict[str, Any]) -> set[str]:
    return {x["what"]["reference"] for x in event.get("entity", [])
            if str((x.get("what") or {}).get("reference", "")).startswith("Patient/")}


def _care_plan_subjects(repo: Repository) -> list[str]:
    return [json.loads(r.body or "{}")["subject"]["reference"]
            for r in repo.find(IndexQuery(rtype="CarePlan", limit=50)).rows]


def test_an_http_ingest_failing_part_way_names_the_patients_it_had_stored(
        gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    for p in PEOPLE:
        gw.put(p)
    feed = gw.login("sc-feed", "feed", partner="socialcare", org="SC001", scope="system/*.cruds")
    gw.http.app.state.ingest_service.loader.batch_records = 1
    _fail_second_batch(monkeypatch)
    answer = gw.http.post("/ingest/socialcare", content=TWO_ROWS.encode(),
                          headers={**feed, "Content-Type": "text/csv"})
    assert answer.status_code == 503, answer.text
    assert _care_plan_subjects(Repository(gw.engine)) == ["Patient/pa"]
    (event,) = [e for e in gw.audit_events(subtype="create")
                if "ingest of a socialcare file" in e.get("outcomeDesc", "")]
    assert event["outcome"] == "8" and "503 after it stored" in event["outcomeDesc"]
    assert _named(event) == {"Patient/pa"}
    auditor = gw.login("audit-team", "auditor", org="X26")
    rows = gw.http.get("/audit/report?kind=patient&patient=pa", headers=auditor).json()["rows"]
    assert [(r["client"], r["outcome"]) for r in rows] == [("sc-feed", "8")]


def test_a_cli_ingest_failing_part_way_is_audited_naming_what_it_stored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'cli.sqlite3'}"
    engine = open_store(url)
    for p in PEOPLE:
        Repository(engine).update(p, rtype="Patient", rid=p["id"])
    engine.close()
    (tmp_path / "sc.csv").write_text(TWO_ROWS)
    _fail_second_batch(monkeypatch)
    assert cli.main(["--store", url, "ingest", "--partner", "socialcare",
                     str(tmp_path / "sc.csv")]) == 1
    engine = open_store(url)
    try:
        repo = Repository(engine)
        assert _care_plan_subjects(repo) == ["Patient/pa"]
        events = [json.loads(r.body or "{}")
                  for r in repo.find(IndexQuery(rtype="AuditEvent", limit=50)).rows]
    finally:
        engine.close()
    (event,) = events
    assert "stopped part way by an error" in event["outcomeDesc"]
    assert _named(event) == {"Patient/pa"}


def test_a_hold_settled_by_creating_a_patient_names_that_patient(gw: Gateway) -> None:
    social, _ = _load(gw)
    (held,) = gw.http.get("/review/held", headers=social).json()
    before = {e["id"] for e in gw.audit_events()}
    settled = gw.http.post(f"/review/held/{held['key']}", json={"create": True},
                           headers=social)
    assert settled.status_code == 200, settled.text
    (created,) = [r.rid for r in Repository(gw.engine).find(
        IndexQuery(rtype="Patient", limit=50)).rows if "Secretname" in (r.body or "")]
    (event,) = [e for e in gw.audit_events() if e["id"] not in before
                and "review queue: POST" in e.get("outcomeDesc", "")]
    assert _named(event) == {f"Patient/{created}"}


SECRET = "metastatic pancreatic cancer, DNACPR agreed"


@pytest.mark.parametrize("extra", [
    {"contained": [{"resourceType": "Condition", "id": "c", "code": {"text": SECRET},
                    "subject": {"reference": "Patient/p1"}}],
     "entity": [{"role": "source", "what": {"reference": "#c"}}]},
    {"text": {"status": "generated",
              "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{SECRET}</div>'}},
    {"reason": [{"text": SECRET, "coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT",
        "display": SECRET}]}]},
    {"activity": {"text": SECRET}},
    {"target": [{"reference": "Observation/gp-o1", "display": SECRET}]},
    {"extension": [{"url": "http://example.org/note", "valueString": SECRET}]},
    {"meta": {"tag": [{"system": "http://example.org/t", "code": "x", "display": SECRET}],
              "security": [{"system": "http://example.org/s", "code": "y",
                            "display": SECRET}],
              "extension": [{"url": "http://example.org/m", "valueString": SECRET}]}},
])
def test_an_auditor_sees_no_text_a_feed_put_in_a_provenance(
        gw: Gateway, extra: dict[str, Any]) -> None:
    """DOMAIN.md: auditors see no clinical content. A feed's Provenance can carry text
    anywhere, so the auditor's answer keeps who, when, what and why in codes only."""
    gw.put(patient("p1", "9434765919", "Jones"))
    feed = gw.login("gpf", "feed", partner="gp", org="B86001", scope="system/*.cruds")
    sent = {**feed, "Content-Type": "application/fhir+json"}
    obs = {"resourceType": "Observation", "id": "gp-o1", "status": "final",
           "code": {"text": "DNACPR"}, "subject": {"reference": "Patient/p1"}}
    assert gw.http.put("/fhir/Observation/gp-o1", headers=sent,
                       content=json.dumps(obs)).status_code in (200, 201)
    prov = {"resourceType": "Provenance", "id": "gp-prov1",
            "target": [{"reference": "Observation/gp-o1"}], "recorded": "2026-01-01T00:00:00Z",
            "agent": [{"who": {"identifier": {
                "system": "https://fhir.nhs.uk/Id/ods-organization-code", "value": "B86001"}}}],
            **extra}
    stored = gw.http.put("/fhir/Provenance/gp-prov1", headers=sent,
                         content=json.dumps(prov))
    assert stored.status_code in (200, 201), stored.text
    auditor = gw.login("aud", "auditor", org="X26")
    for url in ("/fhir/Provenance/gp-prov1", "/fhir/Provenance?target=Observation/gp-o1",
                "/fhir/Provenance/gp-prov1/_history", "/fhir/Provenance/gp-prov1/_history/1",
                "/fhir/Provenance?_id=gp-prov1&_summary=true",
                "/fhir/Provenance?_id=gp-prov1&_elements=meta,target"):
        seen = gw.http.get(url, headers=auditor)
        assert seen.status_code == 200, (url, seen.text)
        assert "Observation/gp-o1" in seen.text, url
        assert "pancreatic" not in seen.text and seen.text.count("SUBSETTED") == 1, \
            (url, seen.text)
    batch = gw.http.post("/fhir", headers={**auditor, "Content-Type": "application/fhir+json"},
                         content=json.dumps({"resourceType": "Bundle", "type": "batch", "entry": [
                             {"request": {"method": "GET", "url": "Provenance/gp-prov1"}}]}))
    assert batch.status_code == 200 and "gp-prov1" in batch.text, batch.text
    assert "pancreatic" not in batch.text
    ward = gw.login("ward", "clinician", org="RXX01")
    assert "pancreatic" in gw.http.get("/fhir/Provenance/gp-prov1", headers=ward).text


@pytest.mark.parametrize("query", [
    "Provenance?agent-type:text=HIV", "Provenance?agent-role:text=HIV",
    "Provenance?_tag:text=cancer", "AuditEvent?_tag:text=cancer", "Provenance?_text=cancer",
])
def test_an_auditor_cannot_search_the_words_its_answers_leave_out(gw: Gateway,
                                                                 query: str) -> None:
    """The count of a `:text` search would confirm a guessed word, one by one."""
    auditor = gw.login("aud", "auditor", org="X26")
    refused = gw.http.get(f"/fhir/{query}", headers=auditor)
    assert refused.status_code == 403, refused.text
    assert gw.http.get("/fhir/Provenance?agent-type=http://terminology.hl7.org/CodeSystem/"
                       "provenance-participant-type|author", headers=auditor).status_code == 200
