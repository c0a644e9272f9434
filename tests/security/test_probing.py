"""No probing of consent-hidden or other partners' data through side doors: counts,
forged attribution, the answers to a feed's writes, and Provenance of hidden resources.

The record (as in test_hidden_data.py): Patient `hid` has a deny consent to share and is
held by the hospice (RH1, named by the Provenance ingest wrote); Patient `vis` has no
consent. A GP clinician (B86001) and an acute clinician (RXX) are other organisations.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from fhir_gateway.errors import GatewayError
from fhir_gateway.ingest.model import SourceRef
from fhir_gateway.pipeline.provenance import provenance as ingest_provenance
from fhir_gateway.security.consent import MAX_DELETED_TARGETS
from fhir_gateway.store.query import IndexQuery
from security_kit import (
    FHIR_JSON,
    HIDDEN_NHS,
    NHS,
    ODS,
    SECRET_CODE,
    Gateway,
    deny_consent,
    obs,
    seed_hidden_record,
)

LENIENT = {"Prefer": "handling=lenient"}
PARTNER = "https://fhir.example.org/shared-care-record/CodeSystem/partner"
ABSENT_NHS = "9990000026"


@pytest.fixture
def record(gw: Gateway) -> Gateway:
    seed_hidden_record(gw)
    gw.put({**obs("o-vis", "vis"), "code": {"text": "note"}})
    return gw


def ids(bundle: dict[str, Any]) -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry", []) if e["resource"]["resourceType"] != "OperationOutcome"}


def outcome(resp: httpx.Response, *names: str) -> tuple[int, str]:
    """Status and diagnostics, with the given ids blanked (so two answers compare)."""
    text = resp.json()["issue"][0]["diagnostics"] if resp.content else ""
    for name in names:
        text = text.replace(name, "X")
    return resp.status_code, text


def still_there(gw: Gateway, rtype: str, rid: str) -> bool:
    try:
        gw.repository.read(rtype, rid)
    except GatewayError:
        return False
    return True


def ods(code: str) -> dict[str, Any]:
    return {"identifier": {"system": ODS, "value": code}}


# -- A. counts ---------------------------------------------------------------------------


@pytest.mark.parametrize("query", [
    "Patient?name=Secretname&_count=0",
    "Patient?name=Secretname&_count=00",
    f"Observation?code={SECRET_CODE}&_count=0",
    "Patient?name=Secretname&_summary=count",
    "Patient?name=Secretname&_total=estimate",
])
def test_no_count_includes_hidden_records(record: Gateway, query: str) -> None:
    for h in (record.login("gp-ward", "clinician", org="B86001"),
              record.login("gp-feed", "feed", partner="gp", org="B86001",
                           scope="system/*.cruds")):
        resp = record.http.get(f"/fhir/{query}", headers=h)
        assert resp.status_code == 403 or resp.json().get("total") == 0, resp.text


@pytest.mark.parametrize("param", ["_summary:x=count", "_summary:text=count",
                                   "_total:x=accurate", "_count:x=0", "_elements:x=id",
                                   "_sort:x=name"])
def test_result_parameters_take_no_modifier(record: Gateway, param: str) -> None:
    h = record.login("gp-ward", "clinician", org="B86001")
    for prefer in ({}, LENIENT):  # ignoring it could widen what is shown: never lenient
        resp = record.http.get(f"/fhir/Patient?name=Secretname&{param}",
                               headers={**h, **prefer})
        assert resp.status_code == 400, resp.text
        assert "total" not in resp.json()


def test_ambulance_cannot_learn_of_a_hidden_match_with_count_zero(record: Gateway) -> None:
    crew = record.login("crew", "ambulance", org="RYC")
    url = f"/fhir/Patient?identifier={NHS}|{{}}&_count=0"
    hidden = record.http.get(url.format(HIDDEN_NHS), headers=crew)
    absent = record.http.get(url.format(ABSENT_NHS), headers=crew)
    assert (hidden.status_code, hidden.json().get("total")) == \
        (absent.status_code, absent.json().get("total"))
    assert hidden.status_code == 403 or hidden.json().get("total") == 0
    plain = record.http.get(f"/fhir/Patient?identifier={NHS}|{HIDDEN_NHS}", headers=crew)
    assert plain.status_code == 200 and plain.json()["total"] == 0


def test_auditor_may_still_count_the_audit_trail(record: Gateway) -> None:
    h = record.login("audit-team", "auditor")
    resp = record.http.get("/fhir/Provenance?_count=0", headers=h)
    assert resp.status_code == 200 and resp.json()["total"] == 1


# -- B. attribution ----------------------------------------------------------------------


def community_feed(gw: Gateway) -> dict[str, str]:
    return {**gw.login("comm-feed", "feed", partner="community", org="RY1",
                       scope="system/*.cruds"), **FHIR_JSON}


def test_feed_cannot_name_another_organisation_as_provenance_agent(record: Gateway) -> None:
    feed = community_feed(record)
    acute = record.login("acute-ward", "clinician", org="RXX")
    prov = {"resourceType": "Provenance", "target": [{"reference": "Patient/hid"}],
            "recorded": "2026-01-03T00:00:00Z", "agent": [{"who": ods("RXX")}]}
    assert record.http.post("/fhir/Provenance", json=prov, headers=feed).status_code == 403
    onbehalf = {**prov, "agent": [{"who": ods("RY1"), "onBehalfOf": ods("RXX")}]}
    assert record.http.post("/fhir/Provenance", json=onbehalf, headers=feed).status_code == 403
    assert record.http.get("/fhir/Patient/hid/$everything", headers=acute).status_code == 404
    own = {**prov, "agent": [{"who": ods("RY1")}]}
    # naming itself, it still may not target a record that is not its own (the Patient is
    # ingest's): it would become one of the hidden record's holders
    assert record.http.post("/fhir/Provenance", json=own, headers=feed).status_code == 422
    mine = record.http.post("/fhir/Observation", headers=feed, json={
        "resourceType": "Observation", "status": "final", "code": {"text": "x"}})
    assert mine.status_code == 201
    own["target"] = [{"reference": f"Observation/{mine.json()['id']}"}]
    assert record.http.post("/fhir/Provenance", json=own, headers=feed).status_code == 201


def test_a_provenance_agent_holds_the_record_only_when_it_wrote_it(record: Gateway) -> None:
    """Data stored before the write check (or by any other path): the writer's own ODS,
    stamped on the resource by the feed write path, is the only agent that counts."""
    record.put({"resourceType": "Provenance", "id": "forged",
                "meta": {"tag": [{"system": PARTNER, "code": "community"},
                                 {"system": ODS, "code": "RY1"}]},
                "target": [{"reference": "Patient/hid"}], "recorded": "2026-01-03T00:00:00Z",
                "agent": [{"who": ods("RXX")}]})
    acute = record.login("acute-ward", "clinician", org="RXX")
    assert record.http.get("/fhir/Patient/hid", headers=acute).status_code == 404
    hospice = record.login("hospice-ward", "clinician", org="RH1")  # ingest's agent counts
    assert record.http.get("/fhir/Patient/hid", headers=hospice).status_code == 200


def privacy_consent(ptype: str, *orgs: str) -> dict[str, Any]:
    consent = {**deny_consent("hid", "RH1"), "provision": {"type": ptype},
               "dateTime": "2026-02-01",
               "organization": [ods(code) for code in orgs]}
    consent.pop("id")
    return consent


def test_feed_cannot_author_a_consent_in_another_organisations_name(record: Gateway) -> None:
    feed = community_feed(record)
    gp = record.login("gp-ward", "clinician", org="B86001")
    for consent in (privacy_consent("permit", "RH1"), privacy_consent("permit", "RY1", "RH1"),
                    privacy_consent("permit"),
                    {**privacy_consent("permit", "RY1"), "performer": [ods("RH1")]}):
        resp = record.http.post("/fhir/Consent", json=consent, headers=feed)
        assert resp.status_code == 403, resp.text
    assert record.http.get("/fhir/Patient/hid", headers=gp).status_code == 404
    # A permit in its own name is one a feed may write, but it withdraws only an objection
    # its own organisation recorded (session 7's reviews: otherwise any feed opened any
    # record, by saying so or after writing one resource about the person). This one was
    # recorded by RH1, so RY1's permit, before or after RY1 writes to the record, is no
    # decision.
    own = record.http.post("/fhir/Consent", json=privacy_consent("permit", "RY1"), headers=feed)
    assert own.status_code == 201, own.text
    assert record.http.get("/fhir/Patient/hid", headers=gp).status_code == 404
    visit = record.http.post("/fhir/Observation", json=obs("ry1-note", "hid"),
                             headers=feed)
    assert visit.status_code == 201, visit.text
    assert record.http.get("/fhir/Patient/hid", headers=gp).status_code == 404


def test_a_stored_consent_in_another_organisations_name_lifts_nothing(
        record: Gateway) -> None:
    forged = {**privacy_consent("permit", "RH1"), "id": "forged",
              "meta": {"tag": [{"system": PARTNER, "code": "community"},
                               {"system": ODS, "code": "RY1"}]}}
    record.put(forged)
    gp = record.login("gp-ward", "clinician", org="B86001")
    assert record.http.get("/fhir/Patient/hid", headers=gp).status_code == 404


def test_a_deny_consent_in_another_organisations_name_makes_it_no_holder(
        record: Gateway) -> None:
    record.put({**privacy_consent("deny", "RXX"), "id": "forged-deny",
                "meta": {"tag": [{"system": PARTNER, "code": "community"},
                                 {"system": ODS, "code": "RY1"}]}})
    acute = record.login("acute-ward", "clinician", org="RXX")
    assert record.http.get("/fhir/Patient/hid", headers=acute).status_code == 404


# -- C. a feed's writes ------------------------------------------------------------------


def gp_feed(gw: Gateway) -> dict[str, str]:
    return {**gw.login("gp-feed", "feed", partner="gp", org="B86001",
                       scope="system/*.cruds"), **FHIR_JSON}


def test_feed_delete_of_anothers_record_looks_like_absence(record: Gateway) -> None:
    feed = gp_feed(record)
    hidden = record.http.delete("/fhir/Patient/hid", headers=feed)
    absent = record.http.delete("/fhir/Patient/nobody", headers=feed)
    assert outcome(hidden, "hid") == outcome(absent, "nobody")
    assert still_there(record, "Patient", "hid")
    record.repository.delete("Observation", "o-vis")  # another's, deleted
    gone = record.http.delete("/fhir/Observation/o-vis", headers=feed)
    assert outcome(gone, "Observation/o-vis") == outcome(absent, "Patient/nobody")


def test_feed_deletes_its_own_record_and_again(record: Gateway) -> None:
    feed = gp_feed(record)
    created = record.http.post("/fhir/Observation", json=obs("x", "vis"), headers=feed).json()
    url = f"/fhir/Observation/{created['id']}"
    assert record.http.delete(url, headers=feed).status_code == 204
    assert record.http.delete(url, headers=feed).status_code == 204  # idempotent for its own
    assert not still_there(record, "Observation", created["id"])


@pytest.mark.parametrize(("matching", "missing"), [
    (f"Patient?identifier={NHS}|{HIDDEN_NHS}", f"Patient?identifier={NHS}|{ABSENT_NHS}"),
    (f"Observation?subject=Patient/hid&code={SECRET_CODE}",
     "Observation?subject=Patient/hid&code=450476008"),
    ("Patient?_id=hid,vis", "Patient?_id=nobody"),  # two of another's: not "more than one"
])
def test_feed_conditional_delete_matches_only_its_own(record: Gateway, matching: str,
                                                      missing: str) -> None:
    feed = gp_feed(record)
    hit = record.http.delete(f"/fhir/{matching}", headers=feed)
    miss = record.http.delete(f"/fhir/{missing}", headers=feed)
    assert (hit.status_code, hit.content) == (miss.status_code, miss.content) == (204, b"")
    for rtype, rid in (("Patient", "hid"), ("Patient", "vis"), ("Observation", "o-hid")):
        assert still_there(record, rtype, rid)


def test_feed_conditional_create_and_update_ignore_anothers_match(record: Gateway) -> None:
    feed = gp_feed(record)
    new = {"resourceType": "Patient", "name": [{"family": "Fresh"}]}
    created = record.http.post("/fhir/Patient", json=new, headers={
        **feed, "If-None-Exist": f"identifier={NHS}|{HIDDEN_NHS}"})
    assert created.status_code == 201, created.text
    assert created.json()["id"] != "hid" and "Secretname" not in created.text
    updated = record.http.put(f"/fhir/Patient?identifier={NHS}|{HIDDEN_NHS}", json=new,
                              headers=feed)
    assert updated.status_code == 201, updated.text
    assert updated.json()["id"] != "hid"
    hid = record.repository.read("Patient", "hid").body or ""
    assert "Secretname" in hid and "Fresh" not in hid
    again = record.http.post("/fhir/Patient", json=new, headers={  # its own match counts
        **feed, "If-None-Exist": "name=Fresh"})
    assert again.status_code == 412  # the two it made itself


@pytest.mark.parametrize("condition", [None, f"identifier={NHS}|{{nhs}}"],
                         ids=["create", "conditional-create"])
def test_feed_cannot_make_a_second_patient_for_an_nhs_number_on_record(
        record: Gateway, condition: str | None) -> None:
    """One Patient per person: a feed's Patient carrying an NHS number another Patient
    holds is refused (409), whether that Patient is consent-hidden or not (so the answer
    tells nothing about consent), with or without If-None-Exist (another's match is no
    match for a feed, so the create would otherwise go ahead and split the record)."""
    feed = gp_feed(record)
    answers = []
    for nhs, pid in ((HIDDEN_NHS, "hid"), ("9990000018", "vis")):
        body = {"resourceType": "Patient", "name": [{"family": "Fresh"}],
                "identifier": [{"system": NHS, "value": nhs}]}
        headers = {**feed, **({"If-None-Exist": condition.format(nhs=nhs)} if condition else {})}
        r = record.http.post("/fhir/Patient", json=body, headers=headers)
        assert r.status_code == 409, r.text
        assert "Secretname" not in r.text and "Openname" not in r.text and pid not in r.text
        answers.append(r.text.replace(nhs, "N"))
    assert answers[0] == answers[1]
    patients = record.repository.find(IndexQuery(rtype="Patient")).rows
    assert sorted(p.rid for p in patients) == ["hid", "vis"]
    fresh = {"resourceType": "Patient", "identifier": [{"system": NHS, "value": ABSENT_NHS}]}
    assert record.http.post("/fhir/Patient", json=fresh, headers=feed).status_code == 201


def test_feed_cannot_update_as_create_onto_anothers_id(record: Gateway) -> None:
    feed = gp_feed(record)
    record.repository.delete("Observation", "o-vis")  # another's, deleted
    live = record.http.put("/fhir/Observation/o-hid", json=obs("o-hid", "vis"), headers=feed)
    gone = record.http.put("/fhir/Observation/o-vis", json=obs("o-vis", "vis"), headers=feed)
    assert live.status_code == gone.status_code == 404
    assert outcome(live, "o-hid") == outcome(gone, "o-vis")
    assert not still_there(record, "Observation", "o-vis")
    # the same through a conditional update naming the id in its body
    cond = record.http.put("/fhir/Observation?code=nothing-like-this",
                           json=obs("o-hid", "vis"), headers=feed)
    assert outcome(cond, "o-hid") == outcome(live, "o-hid")
    cond_gone = record.http.put("/fhir/Observation?code=nothing-like-this",
                                json=obs("o-vis", "vis"), headers=feed)
    assert outcome(cond_gone, "o-vis") == outcome(live, "o-hid")
    assert "Patient/hid" in (record.repository.read("Observation", "o-hid").body or "")
    fresh = record.http.put("/fhir/Observation/gp-new", json=obs("gp-new", "vis"),
                            headers=feed)
    assert fresh.status_code == 201  # an id no one has used: update-as-create as before


def test_feed_write_refusals_in_a_batch_match_the_direct_ones(record: Gateway) -> None:
    feed = gp_feed(record)
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "DELETE", "url": "Patient/hid"}},
        {"request": {"method": "DELETE", "url": "Patient/nobody"}},
        {"request": {"method": "DELETE", "url": f"Patient?identifier={NHS}|{HIDDEN_NHS}"}}]}
    out = record.http.post("/fhir", json=bundle, headers=feed).json()["entry"]
    assert out[0]["response"]["status"] == out[1]["response"]["status"] == "404"
    assert out[2]["response"]["status"].startswith("204")
    assert still_there(record, "Patient", "hid")


# -- D. Provenance outside the patient's compartment -------------------------------------


def ingest_written(gw: Gateway, target: tuple[str, str, int, bool]) -> str:
    return ingest_written_all(gw, [target])


def ingest_written_all(gw: Gateway, targets: list[tuple[str, str, int, bool]]) -> str:
    source = SourceRef(partner="hospice", ods_code="RH1", partner_name="Borough Hospice",
                       file="respect_export.csv", position="row 17", record_id="HSP-000123",
                       event_time="2026-01-05T10:00:00Z", mapping_version="1", raw="...")
    prov = ingest_provenance(source, targets, "2026-01-05T10:01:00Z")
    return gw.repository.create(prov).stored.rid


def test_provenance_of_a_hidden_resource_is_hidden(record: Gateway) -> None:
    record.put(obs("cpr-hid", "hid"))
    record.put(obs("cpr-vis", "vis"))
    hidden = ingest_written(record, ("Observation", "cpr-hid", 1, True))
    shown = ingest_written(record, ("Observation", "cpr-vis", 1, True))
    gp = record.login("gp-ward", "clinician", org="B86001")
    assert record.http.get(f"/fhir/Provenance/{hidden}", headers=gp).status_code == 404
    found = record.http.get("/fhir/Provenance?target=Observation/cpr-hid,Observation/cpr-vis",
                            headers=gp)
    assert ids(found.json()) == {f"Provenance/{shown}"}
    assert f"Provenance/{hidden}" not in ids(record.http.get(
        "/fhir/Provenance?recorded=2026-01-05T10:01:00Z", headers=gp).json())
    hospice = record.login("hospice-ward", "clinician", org="RH1")
    assert record.http.get(f"/fhir/Provenance/{hidden}", headers=hospice).status_code == 200
    auditor = record.login("audit-team", "auditor")
    assert record.http.get(f"/fhir/Provenance/{hidden}", headers=auditor).status_code == 200


def test_provenance_of_a_deleted_hidden_resource_stays_hidden(record: Gateway) -> None:
    record.put(obs("cpr-hid", "hid"))
    hidden = ingest_written(record, ("Observation", "cpr-hid", 1, True))
    record.repository.delete("Observation", "cpr-hid")
    gp = record.login("gp-ward", "clinician", org="B86001")
    assert record.http.get(f"/fhir/Provenance/{hidden}", headers=gp).status_code == 404


def test_a_provenance_with_too_many_deleted_targets_to_judge_is_hidden(
        record: Gateway) -> None:
    """Deleted targets are judged one by one, up to a bound; past it the Provenance is
    hidden (fail closed), not judged by the targets that happened to come first."""
    targets = []
    for n in range(MAX_DELETED_TARGETS):
        record.put(obs(f"a{n}", "vis"))
        targets.append(("Observation", f"a{n}", 1, True))
    record.put(obs("z-hid", "hid"))  # sorts after every visible one
    targets.append(("Observation", "z-hid", 1, True))
    prov = ingest_written_all(record, targets)
    for _, rid, _, _ in targets:
        record.repository.delete("Observation", rid)
    gp = record.login("gp-ward", "clinician", org="B86001")
    assert record.http.get(f"/fhir/Provenance/{prov}", headers=gp).status_code == 404
    feed = record.login("hospice-feed", "feed", partner="hospice", org="RH1",
                        scope="system/*.cruds")
    assert record.http.get("/fhir/Provenance", headers=feed).status_code == 200


@pytest.mark.parametrize("body", [
    {"resourceType": "Provenance", "agent": 5},
    {"resourceType": "Provenance", "agent": [5, {"who": 5}]},
    {"resourceType": "Consent", "organization": "RH1", "performer": 5},
    {"resourceType": "Consent", "organization": [5], "scope": 5, "category": 5},
    {"resourceType": "Patient", "identifier": 5},
    {"resourceType": "Patient", "identifier": [5, {"system": NHS, "value": 5}]},
    {"resourceType": "Patient", "identifier": [{"system": NHS, "value": "\ud800"}]},
], ids=lambda b: f"{b['resourceType']}-{json.dumps(b)[:40]}")
def test_a_feeds_malformed_body_gets_a_clear_answer_not_a_500(record: Gateway,
                                                              body: dict[str, Any]) -> None:
    feed = gp_feed(record)
    r = record.http.post(f"/fhir/{body['resourceType']}", content=json.dumps(body).encode(),
                         headers={**feed, **FHIR_JSON})  # json.dumps escapes "\ud800"
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


def test_a_feeds_search_reads_only_its_own_partners_rows(
        record: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same answer either way (a feed sees its own resources only), but the store is
    asked for the feed's own rows: another partner's thousands are neither read nor
    hidden one by one to fill a page or look for a next one."""
    from fhir_gateway.fhir.repository import Repository

    for n in range(60):
        record.put({**obs(f"acute-{n}", "vis"),
                    "meta": {"tag": [{"system": PARTNER, "code": "acute"}]}})
    feed = gp_feed(record)
    mine = record.http.post("/fhir/Observation", json=obs("gp-1", "vis"), headers=feed)
    assert mine.status_code == 201, mine.text
    rows_read: list[int] = []
    find = Repository.find

    def counting(self: Repository, *args: Any, **kwargs: Any) -> Any:
        found = find(self, *args, **kwargs)
        rows_read.append(len(found.rows))
        return found

    monkeypatch.setattr(Repository, "find", counting)
    page = record.http.get("/fhir/Observation?_count=1", headers=feed).json()
    assert [e["resource"]["id"] for e in page.get("entry", [])] == [mine.json()["id"]]
    assert not any(link["relation"] == "next" for link in page.get("link", []))
    assert sum(rows_read) < 10, rows_read


def test_feed_conditional_writes_without_a_criterion_are_refused(record: Gateway) -> None:
    """A feed's criteria are narrowed to its own resources (an added `_tag`) before they
    run; blank ones are judged as the feed sent them, so `identifier=` does not become
    "any of the feed's own" and delete, overwrite or return whichever one that is."""
    feed = gp_feed(record)
    own = record.http.post("/fhir/Patient", json={
        "resourceType": "Patient", "identifier": [{"system": NHS, "value": ABSENT_NHS}]},
        headers=feed)
    assert own.status_code == 201, own.text
    pid = own.json()["id"]
    new = {"resourceType": "Patient", "name": [{"family": "Fresh"}]}
    answers = [
        record.http.delete("/fhir/Patient?identifier=", headers=feed),
        record.http.put("/fhir/Patient?identifier=", json=new, headers=feed),
        record.http.post("/fhir/Patient", json=new,
                         headers={**feed, "If-None-Exist": "identifier="}),
        record.http.post("/fhir", headers=feed, json={
            "resourceType": "Bundle", "type": "transaction", "entry": [
                {"request": {"method": "DELETE", "url": "Patient?identifier="}}]}),
    ]
    assert [a.status_code for a in answers] == [400] * 4, [a.text for a in answers]
    assert record.http.get(f"/fhir/Patient/{pid}", headers=feed).json()["meta"][
        "versionId"] == "1"
