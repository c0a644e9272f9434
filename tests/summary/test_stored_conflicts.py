"""The stored DetectedIssue for partners whose current CPR decisions differ (INTERFACE.md,
"How facts are held"; `fhir_gateway.summary.conflicts`): created, updated and deleted with
the decisions, in their transaction, whatever path wrote them; found by a DetectedIssue
search; never shown by the summary beside the one it works out itself."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from summary_kit import (
    EXPECTED,
    FILES,
    GP,
    HOSPICE,
    NHS,
    RULES_TODAY,
    SCT,
    Record,
    by_nhs,
    document,
    load_feeds,
    valid_nhs,
)

from fhir_gateway.fhir.repository import Repository
from fhir_gateway.ingest.model import PARTNER_TAG_SYSTEM
from fhir_gateway.store.base import StoreEngine
from fhir_gateway.store.query import IndexQuery
from fhir_gateway.summary import conflicts
from fhir_gateway.summary.conflicts import stored_issue_id
from fhir_gateway.summary.facts import is_stored_conflict
from fhir_gateway.validation import default_validator
from gatewaykit import make_engine

ISSUES = "/fhir/DetectedIssue"


@pytest.fixture(autouse=True)
def judged_today(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review dates of stored issues are judged on the small records' day, as the
    summary's are (conftest's `http`)."""
    monkeypatch.setattr(conflicts, "london_today", lambda: RULES_TODAY)


def issues_of(http: TestClient, pid: str) -> list[dict[str, Any]]:
    resp = http.get(ISSUES, params={"patient": f"Patient/{pid}"})
    assert resp.status_code == 200, resp.text
    return [e["resource"] for e in resp.json().get("entry", [])]


def issue_id_of(http: TestClient, pid: str) -> str | None:
    engine = http.app.state.fhir_router.repository.engine
    with engine.session(write=False) as session:
        return stored_issue_id(session, pid)


def implicated(issue: dict[str, Any]) -> set[str]:
    return {i["reference"] for i in issue["implicated"]}


def ref(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def test_disagreeing_partners_get_one_stored_issue_naming_both(http: TestClient) -> None:
    rec = Record(http)
    gp = rec.cpr("not-attempt", "2026-01-01", GP)
    assert issues_of(http, rec.pid) == []
    hospice = rec.cpr("attempt", "2026-03-01", HOSPICE)
    [issue] = issues_of(http, rec.pid)
    assert issue["id"] == issue_id_of(http, rec.pid) and is_stored_conflict(issue)
    assert implicated(issue) == {ref(gp), ref(hospice)}
    assert issue["patient"] == {"reference": f"Patient/{rec.pid}"}
    assert issue["status"] == "final" and issue["severity"] == "high"
    assert issue["code"]["coding"][0]["code"] == "partner-conflict"
    assert "X9G01" in issue["detail"] and "X9H01" in issue["detail"]
    assert "Not for attempted CPR" in issue["detail"] and "For attempted CPR" in issue["detail"]
    # when the later of the two decisions was stored (not when it was last worked out)
    stored = [http.get(f"/fhir/{ref(r)}").json()["meta"]["lastUpdated"] for r in (gp, hospice)]
    assert issue["identifiedDateTime"] == max(stored)
    errors = [i for i in default_validator().validate(issue) if i.severity in ("error", "fatal")]
    assert errors == [] and "SCR-DetectedIssue" in issue["meta"]["profile"][0]


def test_agreement_deletes_the_issue_and_a_new_conflict_brings_it_back(
        http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP)
    rec.cpr("attempt", "2026-03-01", HOSPICE)
    [first] = issues_of(http, rec.pid)
    issue_id = first["id"]
    # the hospice's newer form agrees with the GP: nothing to flag any more
    rec.cpr("not-attempt", "2026-04-01", HOSPICE)
    assert issues_of(http, rec.pid) == []
    assert http.get(f"{ISSUES}/{issue_id}").status_code == 410
    history = http.get(f"{ISSUES}/{issue_id}/_history").json()["entry"]
    kept = [e["resource"] for e in history if "resource" in e]
    assert kept and all(i["id"] == issue_id for i in kept)  # what it said is kept
    # the GP's newer decision disagrees again: the same issue comes back, a new version
    newer = rec.cpr("attempt", "2026-05-01", GP)
    [issue] = issues_of(http, rec.pid)
    assert issue["id"] == issue_id and int(issue["meta"]["versionId"]) > len(kept)
    assert ref(newer) in implicated(issue)


def test_a_partners_newer_decision_is_judged_with_its_provenance(http: TestClient) -> None:
    """A feed writes a decision, then its Provenance: the Provenance decides whose it is,
    so the stored issue is worked out again when it arrives (else the GP's newer decision,
    unsourced for a moment, would stand as a conflict with the GP's older one)."""
    rec = Record(http)
    rec.cpr("attempt", "2025-01-10", GP)
    rec.cpr("not-attempt", "2026-02-01", GP)
    assert issues_of(http, rec.pid) == []


def test_writing_the_same_decision_again_changes_nothing(http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP)
    hospice = rec.cpr("attempt", "2026-03-01", HOSPICE)
    [before] = issues_of(http, rec.pid)
    again = {k: v for k, v in hospice.items() if k != "meta"}
    assert http.put(f"/fhir/{ref(hospice)}", json=again).status_code == 200
    [after] = issues_of(http, rec.pid)
    assert after["meta"] == before["meta"]


def test_a_decision_moved_to_another_person_moves_the_conflict(http: TestClient) -> None:
    ann = Record(http)
    ann.cpr("not-attempt", "2026-01-01", GP)
    hospice = ann.cpr("attempt", "2026-03-01", HOSPICE)
    bob = Record(http, pid="p2", nhs=valid_nhs(50))
    bob.cpr("not-attempt", "2026-02-01", GP)
    assert len(issues_of(http, ann.pid)) == 1 and issues_of(http, bob.pid) == []
    moved = {**{k: v for k, v in hospice.items() if k != "meta"},
             "subject": {"reference": f"Patient/{bob.pid}"}}
    assert http.put(f"/fhir/{ref(hospice)}", json=moved).status_code == 200
    assert issues_of(http, ann.pid) == []
    [issue] = issues_of(http, bob.pid)
    assert ref(hospice) in implicated(issue)


def test_a_rolled_back_transaction_leaves_no_issue(http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP)
    decision = {"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": SCT, "code": "304251008"}]},
                "subject": {"reference": f"Patient/{rec.pid}"},
                "effectiveDateTime": "2026-03-01",
                "valueCodeableConcept": {"coding": [{"system": SCT, "code": "450475007"}]}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:5d1a0b4e-0000-4000-8000-000000000001", "resource": decision,
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Observation", "id": "nope", "status": "final",
                      "code": {"text": "x"}},
         "request": {"method": "PUT", "url": "Observation/nope", "ifMatch": 'W/"7"'}}]}
    resp = http.post("/fhir", json=bundle)
    assert resp.status_code >= 400, resp.text
    assert issues_of(http, rec.pid) == []
    # the same decision alone commits, and with it the issue
    assert http.post("/fhir/Observation", json=decision).status_code == 201
    assert len(issues_of(http, rec.pid)) == 1


def test_the_summary_shows_its_own_issue_not_the_stored_one_too(http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP)
    rec.cpr("attempt", "2026-03-01", HOSPICE)
    assert len(issues_of(http, rec.pid)) == 1
    doc = document(http, by_nhs(rec.nhs))
    [issue] = doc.of_type("DetectedIssue")
    assert issue["id"] != issue_id_of(http, rec.pid)  # the document's, made for this call
    assert doc.cited("alerts") == []
    assert "Recorded issue" not in json.dumps(doc.composition)


def test_a_failure_to_work_the_issue_out_loses_no_decision(
        http: TestClient, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    rec = Record(http)

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("summary rules broke")

    monkeypatch.setattr(conflicts, "gather", broken)
    with caplog.at_level(logging.ERROR, logger="fhir_gateway.summary.conflicts"):
        gp = rec.cpr("not-attempt", "2026-01-01", GP)
        hospice = rec.cpr("attempt", "2026-03-01", HOSPICE)
    for decision in (gp, hospice):
        assert http.get(f"/fhir/{ref(decision)}").status_code == 200
    assert f"Patient/{rec.pid}" in caplog.text
    assert issues_of(http, rec.pid) == []
    # the summary works the conflict out for itself all the same
    assert document(http, by_nhs(rec.nhs)).of_type("DetectedIssue")


# -- the partners' sample feeds ----------------------------------------------------------


def _stored_issues(engine: StoreEngine) -> dict[str, dict[str, Any]]:
    with engine.session(write=False) as s:
        rows = s.find(IndexQuery(rtype="DetectedIssue", limit=1000)).rows
    return {r.rid: json.loads(r.body) for r in rows if r.body}


def _patient_of(engine: StoreEngine, nhs: str) -> dict[str, Any]:
    with engine.session(write=False) as s:
        rows = s.find(IndexQuery(rtype="Patient", limit=1000)).rows
    patients = [json.loads(r.body) for r in rows if r.body]
    [patient] = [p for p in patients if {"system": NHS, "value": nhs} in [
        {"system": i.get("system"), "value": i.get("value")} for i in p.get("identifier", [])]]
    return patient


@pytest.fixture(scope="module")
def fed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreEngine]:
    """SQLite only: loading the feeds into mongomock takes a minute; test_summary_feeds
    checks the stored issues of its mongomock load over HTTP."""
    engine = make_engine("sqlite", tmp_path_factory.mktemp("sqlite"))
    load_feeds(engine, list(FILES))
    yield engine
    engine.close()


def test_feeds_store_an_issue_for_each_conflict_expected_and_no_other(
        fed: StoreEngine) -> None:
    issues = _stored_issues(fed)
    conflicted = [p for p in EXPECTED["people"].values() if p["cpr_conflict"]]
    assert conflicted and len(issues) == len(conflicted)
    for person in conflicted:
        patient = _patient_of(fed, person["nhs"])
        [issue] = [i for i in issues.values()
                   if i["patient"]["reference"] == f"Patient/{patient['id']}"]
        with fed.session(write=False) as s:
            decisions = [json.loads(s.current(*i["reference"].split("/")).body)
                         for i in issue["implicated"]]
        assert {d["effectiveDateTime"][:10] for d in decisions} == \
            {c["date"] for c in person["cpr"]}
        assert all(d["subject"]["reference"] == f"Patient/{patient['id']}" for d in decisions)


def test_feeds_loaded_again_change_no_issue(fed: StoreEngine) -> None:
    before = {k: v["meta"] for k, v in _stored_issues(fed).items()}
    load_feeds(fed, list(FILES))
    assert {k: v["meta"] for k, v in _stored_issues(fed).items()} == before


@pytest.mark.parametrize("seed", [3, 11])
def test_feeds_shuffled_store_the_same_issues(seed: int, tmp_path: Any) -> None:
    files = list(FILES)
    random.Random(seed).shuffle(files)
    engine = make_engine("sqlite", tmp_path)
    try:
        load_feeds(engine, files)
        got = {_plain(i) for i in _stored_issues(engine).values()}
    finally:
        engine.close()
    (tmp_path / "in-order").mkdir()
    in_order = make_engine("sqlite", tmp_path / "in-order")
    try:
        load_feeds(in_order, list(FILES))
        want = {_plain(i) for i in _stored_issues(in_order).values()}
    finally:
        in_order.close()
    assert got == want and len(want) == sum(p["cpr_conflict"]
                                            for p in EXPECTED["people"].values())


def _plain(issue: dict[str, Any]) -> str:
    """What an issue says, without ids and times that differ between loads."""
    return f"{issue['code']['text']}|{issue['detail']}|{len(issue['implicated'])}"



def test_a_partners_own_issue_is_the_partners_and_never_changed(http: TestClient) -> None:
    """A partner's DetectedIssue about the person is shown as its recorded issue, and the
    gateway's stored conflict issue is another resource: the gateway never writes over,
    deletes or hides what it did not write."""
    rec = Record(http)
    partners = {"resourceType": "DetectedIssue", "id": "hospice-issue", "status": "final",
                "meta": {"tag": [{"system": PARTNER_TAG_SYSTEM, "code": "hospice"}]},
                "code": {"text": "Family dispute over care"},
                "patient": {"reference": f"Patient/{rec.pid}"}}
    assert http.put(f"{ISSUES}/hospice-issue", json=partners).status_code == 201
    rec.cpr("not-attempt", "2026-01-01", GP)
    rec.cpr("attempt", "2026-03-01", HOSPICE)
    found = {i["id"]: i for i in issues_of(http, rec.pid)}
    assert set(found) == {"hospice-issue", issue_id_of(http, rec.pid)}
    assert found["hospice-issue"]["meta"]["versionId"] == "1"
    assert not is_stored_conflict(found["hospice-issue"])
    doc = document(http, by_nhs(rec.nhs))
    assert [i["id"] for i in doc.cited("alerts")] == ["hospice-issue"]
    rec.cpr("attempt", "2026-04-01", GP)  # agreement: the gateway's goes, the partner's stays
    assert [i["id"] for i in issues_of(http, rec.pid)] == ["hospice-issue"]


def test_the_issues_id_cannot_be_worked_out_from_the_patients(tmp_path: Any) -> None:
    """No caller can name the issue before it exists (a refused write would otherwise
    tell whether partners disagree about someone the caller may not see): the same
    person's issue in two stores has two unrelated ids."""
    ids = []
    for n in range(2):
        (tmp_path / str(n)).mkdir()
        engine = make_engine("sqlite", tmp_path / str(n))
        try:
            repo = Repository(engine)
            repo.update({"resourceType": "Patient", "id": "p1"}, rtype="Patient", rid="p1")
            for oid, code in (("gp", "450476008"), ("hospice", "450475007")):
                repo.update({"resourceType": "Observation", "id": oid, "status": "final",
                             "code": {"coding": [{"system": SCT, "code": "304251008"}]},
                             "subject": {"reference": "Patient/p1"},
                             "effectiveDateTime": "2026-01-01", "valueCodeableConcept": {
                                 "coding": [{"system": SCT, "code": code}]}},
                            rtype="Observation", rid=oid)
            with engine.session(write=False) as session:
                ids.append(stored_issue_id(session, "p1"))
        finally:
            engine.close()
    assert all(ids) and ids[0] != ids[1]


def test_deleting_the_patient_deletes_its_issue(http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP)
    rec.cpr("attempt", "2026-03-01", HOSPICE)
    issue_id = issue_id_of(http, rec.pid)
    assert http.delete(f"/fhir/Patient/{rec.pid}").status_code in (200, 204)
    assert http.get(f"{ISSUES}/{issue_id}").status_code == 410
    assert http.get(ISSUES, params={"patient": f"Patient/{rec.pid}"}).json().get("total") == 0


@pytest.mark.parametrize("odd", [
    {"resourceType": "Flag", "status": "active", "period": {"start": 5},
     "code": {"coding": [{"system": SCT, "code": "450476008"}]}},
    {"resourceType": "Flag", "status": "active", "period": {"end": 20270101},
     "code": {"coding": [{"system": SCT, "code": "450475007"}]}},
    {"resourceType": "Observation", "status": "final", "effectiveDateTime": 20260101,
     "code": {"coding": [{"system": SCT, "code": "304251008"}]},
     "valueCodeableConcept": {"coding": [{"system": SCT, "code": "450475007"}]}},
])
def test_a_decision_with_a_number_for_a_date_is_no_500(http: TestClient,
                                                         odd: dict[str, Any]) -> None:
    """A JSON number where FHIR has a date string (review found a Flag's `period.start`
    answered 500 from the search index): refused, or stored and summarised, never a 500;
    the conflict it may make is worked out like any other."""
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP)
    resp = http.post(f"/fhir/{odd['resourceType']}",
                     json={**odd, "subject": {"reference": f"Patient/{rec.pid}"}})
    assert resp.status_code < 500, resp.text
    assert http.get(by_nhs(rec.nhs)).status_code == 200
    assert http.get(ISSUES, params={"patient": f"Patient/{rec.pid}"}).status_code == 200
