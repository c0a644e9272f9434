"""Clinical-safety rules of the emergency summary a crew relies on: it never quietly shows
one CPR decision while a disagreeing one is on record, and never says "no plan recorded"
when one is (a merge, narrow scopes, an unfamiliar representation, review dates across
midnight, same-day decisions, a place of death, a record too big to read at once)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from summary_kit import (
    CPR_URL,
    GP,
    HOSPICE,
    RULES_TODAY,
    SCT,
    Doc,
    Record,
    by_nhs,
    cpr_of,
    document,
    headline,
    valid_nhs,
)

from fhir_gateway.fhir.repository import Repository
from fhir_gateway.pipeline.service import IngestService
from fhir_gateway.store.base import StoreEngine
from fhir_gateway.summary.terms import REVIEW_DATE_EXTENSION

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
from security_kit import Gateway, patient, provenance

TODAY = RULES_TODAY  # 1 June 2026 (Europe/London)


def plain(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).replace("&#x27;", "'")


def source_of(doc: Doc, resource: dict[str, Any]) -> str | None:
    """The ODS code the summary credits a cited resource to (its words: "Source: ...")."""
    for section in doc.composition["section"]:
        refs = [e["reference"] for e in section.get("entry", [])]
        ref = next((r for r in refs if doc.by_ref.get(r) is resource), None)
        if ref is not None:
            items = re.findall(r"<li>(.*?)</li>", section["text"]["div"])
            item = items[refs.index(ref) - (1 if refs[0].startswith("urn:") else 0)]
            found = re.search(r"Source: .*?\((\w+)\), received", item)
            return found.group(1) if found else None
    return None


# -- 1. an A40 merge keeps each fact's authoring partner ----------------------------------

GP_HEADER = ("NHS Number,Surname,Forename,Date of Birth,Sex,Practice Code,Usual GP,"
             "Palliative Register Date,GSF Code,Preferred Place of Death,PPD Recorded,DNACPR,"
             "DNACPR Date,Care Plan Summary,Last Reviewed,Date of Death,Place of Death\n")


def _spaced(nhs: str) -> str:
    return f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"


def _merge_feeds(http: TestClient, old: str, survivor: str) -> None:
    """GP DNACPR and hospice ReSPECT 'for CPR' on `old`; the acute trust admits the person
    as `survivor` and then merges `old` into it (A40)."""
    service = IngestService(Repository(http.app.state.fhir_router.repository.engine))
    gp = GP_HEADER + (f"{_spaced(old)},WHITE,Ann,03/11/1940,F,Y90028,Dr Clarke,29/11/2025,"
                      "Amber,Home,25/12/2025,Y,11/02/2026,Plan,11/03/2026,,\n")
    service.ingest("gp", "gp.csv", gp.encode(), today=TODAY)
    hospice = json.dumps({
        "clientId": "MSH-1", "nhsNumber": old, "name": {"first": "Ann", "last": "White"},
        "dob": "1940-11-03", "gender": "female", "respect": {
            "formId": "RSP-1", "version": "3", "completedOn": "2026-03-01", "cpr": "attempt",
            "careFocus": "life-sustaining", "preferredPlaceOfCare": "home",
            "recommendations": "Full treatment", "capacity": "has-capacity", "contacts": [],
            "clinician": {"name": "Dr Smith", "gmc": "6000676"}}}) + "\n"
    service.ingest("hospice", "clients.jsonl", hospice.encode(), today=TODAY)
    adt = ("MSH|^~\\&|PAS|RXA|SCR|GATEWAY|202604010900||ADT^A01^ADT_A01|M1|P|2.4\r"
           "EVN|A01|202604010900\r"
           f"PID|1||{survivor}^^^NHS^NH~RXA1^^^RXA^MR||WHITE^ANN||19401103|F\r"
           "PV1|1|I|WARD 7^BAY C^BED 1^RXA||||C1^DOC^A|||300|||||||||V1|||||||||||||||||||||||"
           "||202604010900|\r"
           "MSH|^~\\&|PAS|RXA|SCR|GATEWAY|202604020900||ADT^A40^ADT_A39|M2|P|2.4\r"
           "EVN|A40|202604020900\r"
           f"PID|1||{survivor}^^^NHS^NH~RXA1^^^RXA^MR||WHITE^ANN||19401103|F\r"
           f"MRG|{old}^^^NHS^NH\r")
    summary_ = service.ingest("acute", "adt.hl7", adt.encode(), today=TODAY)
    assert summary_.rejected == 0, summary_.rejections


def test_a_merge_keeps_every_partners_decision_and_its_author(http: TestClient) -> None:
    old, survivor = valid_nhs(100), valid_nhs(300)
    _merge_feeds(http, old, survivor)
    doc = document(http, by_nhs(survivor))
    decisions = {(cpr_of(o), source_of(doc, o)) for o in doc.cited("cpr")}
    assert decisions == {("not-attempt", "X9G01"), ("attempt", "X9H01")}
    assert "PARTNERS DISAGREE ON CPR" in headline(doc)
    (issue,) = doc.of_type("DetectedIssue")
    assert "Borough Hospitals" not in issue["detail"]
    # the plans stay their authors' (the hospice's ReSPECT form, the GP's plan), none
    # becomes the hospital's that merged the records
    assert {source_of(doc, p) for p in doc.cited("respect")} == {"X9H01", "X9G01"}
    for key in ("cpr", "respect", "places", "contacts", "alerts"):
        assert "Borough Hospitals" not in doc.text(key), key
    # each cited fact's authoring Provenance is in the Bundle
    provs = doc.of_type("Provenance")
    for obs in doc.cited("cpr"):
        assert any(t["reference"].startswith(f"Observation/{obs['id']}/_history/")
                   and p["agent"][0]["who"]["identifier"]["value"] != "RXA"
                   for p in provs for t in p["target"])


def test_the_merged_away_nhs_number_gives_the_surviving_record_clearly(
        http: TestClient) -> None:
    old, survivor = valid_nhs(100), valid_nhs(300)
    _merge_feeds(http, old, survivor)
    doc = document(http, by_nhs(old))
    kept = doc.of_type("Patient")[0]
    assert any(i["value"] == survivor for i in kept["identifier"])
    words = plain(headline(doc))
    assert f"NHS number {_spaced(old)}" in words and "merged" in words
    assert f"NHS number {_spaced(survivor)}" in words
    assert {cpr_of(o) for o in doc.cited("cpr")} == {"attempt", "not-attempt"}
    page = plain(http.get(by_nhs(old), headers={"Accept": "text/html"}).text)
    assert f"NHS number {_spaced(old)}" in page and "merged" in page


def test_a_record_merged_into_one_the_caller_cannot_see_is_not_shown_empty(
        http: TestClient) -> None:
    """Its facts moved to the survivor: summarising the merged-away record instead would
    say "no plan recorded" about a person who has one."""
    from fhir_gateway.fhir.interceptors import BaseInterceptor
    from fhir_gateway.fhir.request import FhirRequest

    survivor = Record(http, pid="keep", nhs=valid_nhs(20))
    survivor.cpr("not-attempt", "2026-01-01", GP)
    Record(http, pid="old", nhs=valid_nhs(40),
           link=[{"other": {"reference": "Patient/keep"}, "type": "replaced-by"}])
    shown = document(http, "/fhir/Patient/old/$emergency-summary")
    assert "Found by Patient/old, which was merged into this record" in headline(shown)

    class HideSurvivor(BaseInterceptor):
        def can_see(self, request: FhirRequest, resource: dict[str, Any]) -> bool:
            return resource.get("id") != "keep"

    http.app.state.fhir_router.interceptors.add(HideSurvivor())
    assert http.get("/fhir/Patient/old/$emergency-summary").status_code == 404


def test_a_chain_of_merges_leads_to_the_record_that_holds_the_facts(
        http: TestClient) -> None:
    """A merged into B, then B into C: asking for A shows C (where the facts are), never B
    (empty: "no plan recorded"); a circle of links is refused, not followed for ever."""
    def merged(pid: str, into: str, n: int) -> None:
        Record(http, pid=pid, nhs=valid_nhs(n),
               link=[{"other": {"reference": f"Patient/{into}"}, "type": "replaced-by"}])

    last = Record(http, pid="c", nhs=valid_nhs(20))
    last.cpr("not-attempt", "2026-01-01", GP)
    merged("b", "c", 40)
    merged("a", "b", 60)
    doc = document(http, "/fhir/Patient/a/$emergency-summary")
    assert doc.of_type("Patient")[0]["id"] == "c"
    assert "NOT FOR ATTEMPTED CPR" in headline(doc)
    merged("x", "y", 80)
    merged("y", "x", 100)
    circle = http.get("/fhir/Patient/x/$emergency-summary")
    # a broken chain the caller can see is said, never "not known": a crew would read
    # that as a person with no plan
    assert circle.status_code == 409, circle.text
    said = circle.json()["issue"][0]["diagnostics"]
    assert "circle" in said and "Patient/x -> Patient/y -> Patient/x" in said
    page = http.get("/fhir/Patient/x/$emergency-summary", headers={"Accept": "text/html"})
    assert page.status_code == 409
    words = plain(page.text)
    assert "RECORD FOUND, NOT SHOWN" in words and "No record found" not in words
    assert "This person has a record on the shared record, which may hold a care plan" \
        in words


def test_a_chain_longer_than_any_merge_makes_is_said_not_called_unknown(
        http: TestClient) -> None:
    Record(http, pid="m12", nhs=valid_nhs(500)).cpr("not-attempt", "2026-01-01", GP)
    for n in range(12):
        Record(http, pid=f"m{n}", nhs=valid_nhs(520 + 20 * n),
               link=[{"other": {"reference": f"Patient/m{n + 1}"}, "type": "replaced-by"}])
    far = http.get("/fhir/Patient/m0/$emergency-summary")
    assert far.status_code == 409, far.text
    assert "run past 10 merges" in far.json()["issue"][0]["diagnostics"]
    near = document(http, "/fhir/Patient/m4/$emergency-summary")  # 8 merges from m12
    assert near.of_type("Patient")[0]["id"] == "m12"
    assert "NOT FOR ATTEMPTED CPR" in headline(near)


def test_a_record_merged_into_a_deleted_one_is_said_to_be_broken(http: TestClient) -> None:
    from fhir_gateway.fhir.interceptors import BaseInterceptor
    from fhir_gateway.fhir.request import FhirRequest

    Record(http, pid="gone", nhs=valid_nhs(20)).cpr("not-attempt", "2026-01-01", GP)
    Record(http, pid="left", nhs=valid_nhs(40),
           link=[{"other": {"reference": "Patient/gone"}, "type": "replaced-by"}])
    assert http.delete("/fhir/Patient/gone").status_code in (200, 204)
    for asked in ("/fhir/Patient/left/$emergency-summary", by_nhs(valid_nhs(40))):
        r = http.get(asked)
        assert r.status_code == 409, r.text
        said = r.json()["issue"][0]["diagnostics"]
        assert "merged into Patient/gone, which has since been deleted" in said

    class HideGone(BaseInterceptor):
        def can_see(self, request: FhirRequest, resource: dict[str, Any]) -> bool:
            return resource.get("id") != "gone"

    # to a caller who may not see the deleted record, exactly as if it never existed
    http.app.state.fhir_router.interceptors.add(HideGone())
    hidden = http.get("/fhir/Patient/left/$emergency-summary")
    assert hidden.status_code == 404, hidden.text
    assert "gone" not in hidden.text


# -- 2. scopes that cannot read everything the summary uses are refused -------------------


def _two_partner_record(gw: Gateway) -> None:
    def obs(rid: str, code: str, when: str) -> dict[str, Any]:
        return {"resourceType": "Observation", "id": rid, "status": "final",
                "code": {"coding": [{"system": SCT, "code": "304251008"}]},
                "subject": {"reference": "Patient/amb-1"}, "effectiveDateTime": when,
                "valueCodeableConcept": {"coding": [{"system": SCT, "code": code}]}}

    gw.put(patient("amb-1", "9434765919", "Example"))
    gw.put(obs("cpr-gp", "450476008", "2026-01-05"))
    gw.put(provenance("Observation/cpr-gp", "X9G01", "amb-1"))
    gw.put(obs("cpr-hosp", "450475007", "2026-03-01"))
    gw.put(provenance("Observation/cpr-hosp", "X9H01", "amb-1"))


@pytest.mark.parametrize("scope", ["system/Patient.rs system/Observation.rs",
                                   "system/Patient.rs", "system/Patient.read"])
def test_narrow_scopes_are_refused_naming_what_is_needed(gw: Gateway, scope: str) -> None:
    _two_partner_record(gw)
    crew = gw.login("crew", "ambulance", org="RYC", scope=scope)
    resp = gw.http.get(by_nhs("9434765919"), headers=crew)
    assert resp.status_code == 403, resp.text
    outcome = resp.json()
    assert outcome["resourceType"] == "OperationOutcome"
    said = outcome["issue"][0]["diagnostics"]
    assert "system/Provenance.rs" in said and "system/Consent.rs" in said
    assert "Example" not in resp.text and "attempted CPR" not in resp.text
    by_id = gw.http.get("/fhir/Patient/amb-1/$emergency-summary", headers=crew)
    assert by_id.status_code == 403
    page = gw.http.get(by_nhs("9434765919"), headers={**crew, "Accept": "text/html"})
    assert page.status_code == 403 and "system/Provenance.rs" in page.text


@pytest.mark.parametrize("scope", [
    "system/*.rs", "system/*.read",
    "system/Patient.rs system/Observation.rs system/CarePlan.rs system/RelatedPerson.rs "
    "system/Consent.rs system/Flag.rs system/CareTeam.rs system/DetectedIssue.rs "
    "system/Provenance.rs"])
def test_scopes_covering_every_type_get_the_disagreement(gw: Gateway, scope: str) -> None:
    _two_partner_record(gw)
    crew = gw.login("crew", "ambulance", org="RYC", scope=scope)
    resp = gw.http.get(by_nhs("9434765919"), headers=crew)
    assert resp.status_code == 200, resp.text
    doc = Doc(resp.json())
    assert "PARTNERS DISAGREE ON CPR" in headline(doc)
    assert len(doc.of_type("DetectedIssue")) == 1


def test_unsourced_decisions_of_different_resources_are_never_one_source(
        http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-05", None)
    rec.cpr("attempt", "2026-03-01", None)
    doc = document(http, by_nhs(rec.nhs))
    assert {cpr_of(o) for o in doc.cited("cpr")} == {"attempt", "not-attempt"}
    # no partner is on the record: the headline says what the DetectedIssue says
    assert "RECORDS DISAGREE ON CPR" in headline(doc) and "PARTNERS" not in headline(doc)
    assert len(doc.of_type("DetectedIssue")) == 1
    assert "Who recorded one or more of these is not on the record" in doc.text("cpr")
    assert doc.of_type("DetectedIssue")[0]["code"]["text"] == \
        "The shared record holds different current CPR decisions"


# -- 3. CPR decisions in a form the summary does not fully read ----------------------------


def _observation(rec: Record, code: str, **more: Any) -> dict[str, Any]:
    return rec.put({"resourceType": "Observation", "status": "final",
                    "code": {"coding": [{"system": SCT, "code": code}]},
                    "subject": {"reference": f"Patient/{rec.pid}"},
                    "effectiveDateTime": "2026-02-01", **more}, GP)


@pytest.mark.parametrize(("code", "words", "decision"), [
    ("450476008", "NOT FOR ATTEMPTED CPR", "not-attempt"),
    ("450475007", "FOR ATTEMPTED CPR", "attempt")])
def test_an_observation_coded_as_the_decision_is_a_decision(
        http: TestClient, code: str, words: str, decision: str) -> None:
    rec = Record(http)
    obs = _observation(rec, code)
    doc = document(http, by_nhs(rec.nhs))
    assert [o["id"] for o in doc.cited("cpr")] == [obs["id"]]
    assert f"<b>{words}</b>" in headline(doc)
    assert "NO EMERGENCY CARE PLAN" not in headline(doc)


def test_an_unreadable_resuscitation_status_is_shown_not_dropped(http: TestClient) -> None:
    rec = Record(http)
    obs = _observation(rec, "304251008",
                       valueCodeableConcept={"text": "DNACPR - not for resuscitation"})
    doc = document(http, by_nhs(rec.nhs))
    assert [o["id"] for o in doc.cited("cpr")] == [obs["id"]]
    text = plain(doc.text("cpr"))
    assert "CPR status recorded but not understood: DNACPR - not for resuscitation" in text
    assert "Borough GP (X9G01)" in text and "1 Feb 2026" in text
    assert "NO EMERGENCY CARE PLAN" not in headline(doc)
    assert "NO CPR DECISION" not in headline(doc)


@pytest.mark.parametrize("where", ["value", "code", "flag"])
def test_a_record_coding_both_decisions_is_never_read_as_either(
        http: TestClient, where: str) -> None:
    """A value (or a code) holding both 'for' and 'not for attempted CPR' decides
    nothing: shown as not understood, never read by whichever coding comes first."""
    rec = Record(http)
    both = {"coding": [{"system": SCT, "code": "450475007"},
                       {"system": SCT, "code": "450476008"}]}
    if where == "value":
        made = _observation(rec, "304251008", valueCodeableConcept=both)
    elif where == "code":
        made = rec.put({"resourceType": "Observation", "status": "final", "code": both,
                        "subject": {"reference": f"Patient/{rec.pid}"},
                        "effectiveDateTime": "2026-02-01"}, GP)
    else:
        made = rec.put({"resourceType": "Flag", "status": "active", "code": both,
                        "subject": {"reference": f"Patient/{rec.pid}"}}, GP)
    doc = document(http, by_nhs(rec.nhs))
    assert [o["id"] for o in doc.cited("cpr")] == [made["id"]]
    assert "recorded but not understood" in plain(doc.text("cpr"))
    assert "FOR ATTEMPTED CPR" not in headline(doc)


def test_an_undated_dnacpr_from_the_gp_register_is_kept_and_shown(
        http: TestClient, engine: StoreEngine) -> None:
    """The GP mapping keeps an undated decision with a warning (gp.yaml `expect`); the
    CPR profile must not then reject the person's whole register row, hiding the DNACPR
    (and the person) from the crew."""
    header = ("NHS Number,Surname,Forename,Date of Birth,Sex,Practice Code,Usual GP,"
              "Palliative Register Date,GSF Code,Preferred Place of Death,PPD Recorded,"
              "DNACPR,DNACPR Date,Care Plan Summary,Last Reviewed,Date of Death,"
              "Place of Death")
    row = ("943 476 5919,WHITE,Patricia,03/11/1961,F,Y90028,Dr Clarke,29/11/2025,Blue,"
           "Care Home,25/12/2025,Y,,Advance care plan discussed,11/03/2026,,")
    loaded = IngestService(Repository(engine)).ingest(
        "gp", "palliative_register.csv", f"{header}\r\n{row}\r\n".encode())
    assert loaded.rejected == 0, loaded.rejections
    assert any("DNACPR Date" in w["warning"] for w in loaded.warnings)
    doc = document(http, by_nhs("9434765919"))
    assert "NOT FOR ATTEMPTED CPR" in headline(doc)
    assert "date not recorded" in plain(doc.text("cpr"))


def test_an_unreadable_status_beside_a_readable_one_is_a_conflict(http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("attempt", "2026-03-01", HOSPICE)
    _observation(rec, "304251008", valueString="see paper form: no CPR")
    doc = document(http, by_nhs(rec.nhs))
    assert "PARTNERS DISAGREE ON CPR" in headline(doc)
    assert len(doc.of_type("DetectedIssue")) == 1
    assert "FOR ATTEMPTED CPR</b>" not in headline(doc).replace("DISAGREE ON CPR</b>", "")


# -- 4. review dates are judged on the London day; partial dates at their end --------------


def test_a_review_datetime_is_judged_on_the_london_day(http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-10", GP, meta={"profile": [CPR_URL]}, extension=[
        {"url": REVIEW_DATE_EXTENSION, "valueDateTime": "2026-05-31T23:30:00Z"}])
    doc = document(http, by_nhs(rec.nhs))  # 00:30 on 1 June in London: due today
    assert "NOT FOR ATTEMPTED CPR" in headline(doc) and "EXPIRED" not in doc.text("cpr")
    assert "review by 1 Jun 2026" in doc.text("cpr")
    rec2 = Record(http, pid="p2", nhs=valid_nhs(60))
    rec2.cpr("not-attempt", "2026-01-10", GP, meta={"profile": [CPR_URL]}, extension=[
        {"url": REVIEW_DATE_EXTENSION, "valueDateTime": "2026-05-31T22:30:00Z"}])
    doc = document(http, by_nhs(rec2.nhs))  # 23:30 on 31 May in London: passed
    assert "NO CURRENT CPR DECISION" in headline(doc) and "EXPIRED" in doc.text("cpr")


@pytest.mark.parametrize(("end", "expired"), [("2026-06", False), ("2026", False),
                                              ("2026-05", True), ("2025", True)])
def test_a_partial_review_date_lasts_to_the_end_of_its_period(
        http: TestClient, end: str, expired: bool) -> None:
    rec = Record(http)
    rec.put({"resourceType": "Flag", "status": "active",
             "subject": {"reference": f"Patient/{rec.pid}"},
             "code": {"coding": [{"system": SCT, "code": "450476008"}]},
             "period": {"start": "2025-01-10", "end": end}}, GP)
    doc = document(http, by_nhs(rec.nhs))
    assert ("EXPIRED" in doc.text("cpr")) is expired
    assert ("NOT FOR ATTEMPTED CPR" in headline(doc)) is not expired
    if end == "2026-06":
        assert "review by Jun 2026" in doc.text("cpr")


# -- 5. decisions the dates cannot order are both shown -----------------------------------


def test_same_partner_same_day_date_and_datetime_disagreeing_shows_both(
        http: TestClient) -> None:
    rec = Record(http)
    a = rec.cpr("attempt", "2026-02-01T08:00:00Z", GP)
    b = rec.cpr("not-attempt", "2026-02-01", GP)
    doc = document(http, by_nhs(rec.nhs))
    assert {o["id"] for o in doc.cited("cpr")} == {a["id"], b["id"]}
    # one partner's own records disagree: the crew is not told two partners do
    assert "RECORDS DISAGREE ON CPR" in headline(doc) and "PARTNERS" not in headline(doc)
    page = http.get(by_nhs(rec.nhs), headers={"Accept": "text/html"}).text
    assert "RECORDS DISAGREE ON CPR" in page and "PARTNERS DISAGREE" not in page
    (issue,) = doc.of_type("DetectedIssue")
    assert {doc.by_ref[i["reference"]]["id"] for i in issue["implicated"]} == {a["id"], b["id"]}
    assert issue["code"]["text"] == "The shared record holds different current CPR decisions"


def test_same_partner_a_later_day_still_supersedes(http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("attempt", "2026-02-01T08:00:00Z", GP)
    newer = rec.cpr("not-attempt", "2026-02-02", GP)
    doc = document(http, by_nhs(rec.nhs))
    assert [o["id"] for o in doc.cited("cpr")] == [newer["id"]]
    assert not doc.of_type("DetectedIssue")
    # and two times of one day are ordered by the time
    rec2 = Record(http, pid="p2", nhs=valid_nhs(70))
    rec2.cpr("not-attempt", "2026-02-01T20:00:00Z", GP)
    rec2.cpr("attempt", "2026-02-01T08:00:00Z", GP)
    doc = document(http, by_nhs(rec2.nhs))
    assert [cpr_of(o) for o in doc.cited("cpr")] == ["not-attempt"]


def test_same_partner_same_day_agreeing_is_one_decision(http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2026-02-01T08:00:00Z", GP)
    rec.cpr("not-attempt", "2026-02-01", GP)
    doc = document(http, by_nhs(rec.nhs))
    assert len(doc.cited("cpr")) == 1 and not doc.of_type("DetectedIssue")


def test_an_undated_decision_cannot_be_superseded_by_a_dated_one(http: TestClient) -> None:
    rec = Record(http)
    undated = rec.put({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "adr"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                            "consentcategorycodes", "code": "dnr"}]}],
        "patient": {"reference": f"Patient/{rec.pid}"}, "policyRule": {"text": "DNACPR"}},
        GP)
    dated = rec.cpr("attempt", "2026-02-01", GP)
    doc = document(http, by_nhs(rec.nhs))
    assert {f"{o['resourceType']}/{o['id']}" for o in doc.cited("cpr")} == {
        f"Consent/{undated['id']}", f"Observation/{dated['id']}"}
    assert len(doc.of_type("DetectedIssue")) == 1


def test_an_expired_decision_never_hides_a_current_one_the_dates_cannot_order(
        http: TestClient) -> None:
    """Of one partner's decisions the dates cannot order, the same value once: the
    current one, not whichever was stored last (an expired one stored later hid it)."""
    rec = Record(http)
    current = rec.put({"resourceType": "Flag", "status": "active",  # undated
                       "subject": {"reference": f"Patient/{rec.pid}"},
                       "code": {"coding": [{"system": SCT, "code": "450476008"}]}}, GP)
    rec.cpr("not-attempt", "2025-01-10", GP, meta={"profile": [CPR_URL]}, extension=[
        {"url": REVIEW_DATE_EXTENSION, "valueDateTime": "2025-06-01"}])  # expired
    doc = document(http, by_nhs(rec.nhs))
    assert "NOT FOR ATTEMPTED CPR" in headline(doc), headline(doc)
    first = doc.cited("cpr")[0]
    assert (first["resourceType"], first["id"]) == ("Flag", current["id"])


# -- 6. a recorded place of death says the person died ------------------------------------


def test_a_place_of_death_says_the_person_died_first(http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP)
    eol = "https://fhir.shared-care-record.example/CodeSystem/end-of-life-observation"
    loc = "https://fhir.shared-care-record.example/CodeSystem/death-location-type"
    pod = rec.put({"resourceType": "Observation", "status": "final",
                   "code": {"coding": [{"system": eol, "code": "place-of-death"}]},
                   "subject": {"reference": f"Patient/{rec.pid}"},
                   "effectiveDateTime": "2026-05-20",
                   "valueCodeableConcept": {"coding": [{"system": loc, "code": "10",
                                                        "display": "Hospital"}]}}, GP)
    doc = document(http, by_nhs(rec.nhs))
    assert doc.titles()[0] == "Deceased"
    assert f"Observation/{pod['id']}" in [f"{r['resourceType']}/{r['id']}"
                                          for r in doc.cited("deceased")]
    text = plain(doc.text("deceased"))
    assert "has died" in text and "Place of death: Hospital" in text
    assert "Borough GP (X9G01)" in text
    assert headline(doc).index("DECEASED") < headline(doc).index("NOT FOR")
    page = http.get(by_nhs(rec.nhs), headers={"Accept": "text/html"}).text
    assert page.index("DECEASED") < page.index("NOT FOR ATTEMPTED CPR")
    assert "Place of death: Hospital" in page


def _death_then_correction(nhs: str) -> tuple[bytes, bytes]:
    """An acute discharge recording a death in hospital, and a later A08 correcting it."""
    pid = f"PID|1||{nhs}^^^NHS^NH~RXA9^^^RXA^MR||WHITE^ANN||19401103|F"
    died = ("MSH|^~\\&|PAS|RXA|SCR|GATEWAY|202605200900||ADT^A03^ADT_A03|D1|P|2.4\r"
            "EVN|A03|202605200900\r"
            f"{pid}{'|' * 21}202605200900|Y\r"
            "PV1|1|I|WARD 7^BAY C^BED 1^RXA||||C1^DOC^A|||300|||||||||V9"
            + "|" * 17 + "20||||||||202605180900|202605200900\r")
    corrected = ("MSH|^~\\&|PAS|RXA|SCR|GATEWAY|202605210900||ADT^A08^ADT_A01|D2|P|2.4\r"
                 "EVN|A08|202605210900\r"
                 f"{pid}{'|' * 22}N\r")
    return died.encode(), corrected.encode()


@pytest.mark.parametrize("order", ["in-order", "correction-first"])
def test_a_death_recorded_in_error_and_corrected_is_not_shown_as_certain(
        http: TestClient, order: str) -> None:
    nhs = valid_nhs(500)
    service = IngestService(Repository(http.app.state.fhir_router.repository.engine))
    died, corrected = _death_then_correction(nhs)
    for name, data in ([("d.hl7", died), ("c.hl7", corrected)] if order == "in-order"
                       else [("c.hl7", corrected), ("d.hl7", died)]):
        result = service.ingest("acute", name, data, today=TODAY)
        assert result.rejected == 0, result.rejections
    doc = document(http, by_nhs(nhs))
    (pat,) = doc.of_type("Patient")
    # the correction is the newer message whatever the order of delivery
    assert pat.get("deceasedBoolean") is False and "deceasedDateTime" not in pat
    assert doc.titles()[0] == "Deceased"
    assert "RECORDS DISAGREE ON WHETHER THIS PERSON HAS DIED" in headline(doc)
    assert "DECEASED" not in headline(doc).replace("RECORDS DISAGREE", "")
    text = plain(doc.text("deceased"))
    assert "say they have not died" in text and "Place of death: Hospital" in text


def test_a_correction_older_than_the_death_does_not_undo_it(http: TestClient) -> None:
    nhs = valid_nhs(600)
    service = IngestService(Repository(http.app.state.fhir_router.repository.engine))
    died, corrected = _death_then_correction(nhs)
    older = corrected.replace(b"202605210900", b"202605190900")
    for name, data in (("d.hl7", died), ("c.hl7", older)):
        assert service.ingest("acute", name, data, today=TODAY).rejected == 0
    doc = document(http, by_nhs(nhs))
    (pat,) = doc.of_type("Patient")
    assert pat["deceasedDateTime"].startswith("2026-05-20")
    assert "DECEASED 20 May 2026" in headline(doc), headline(doc)
    assert "RECORDS DISAGREE ON WHETHER" not in headline(doc)


# -- 7. a record too big to read at once never says "no plan recorded" --------------------


def test_a_cut_read_says_the_summary_may_be_incomplete_in_the_headline(
        http: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from fhir_gateway.summary import facts

    rec = Record(http)
    for day in range(1, 5):  # other Observations fill the read before the decision
        _observation(rec, "376201000000102", effectiveDateTime=f"2026-01-0{day}")
    rec.cpr("not-attempt", "2026-02-01", GP)
    monkeypatch.setattr(facts, "MAX_COMPARTMENT", 4)
    doc = document(http, by_nhs(rec.nhs))
    assert "NO EMERGENCY CARE PLAN RECORDED" not in headline(doc)
    assert "MAY BE INCOMPLETE" in headline(doc)
    page = http.get(by_nhs(rec.nhs), headers={"Accept": "text/html"}).text
    assert "NO EMERGENCY CARE PLAN RECORDED" not in page and "MAY BE INCOMPLETE" in page
    # nor does the document say it to a machine ("Nil Known") or in any section's words
    for key in ("cpr", "legal", "contacts", "team"):
        section = doc.section(key)
        assert section is not None and "entry" not in section, key
        assert section["emptyReason"]["coding"][0]["code"] == "unavailable", key
        assert "recorded." not in section["text"]["div"] and "None found in what was read" \
            in section["text"]["div"], key
    assert "No contacts recorded" not in page and "None found in what was read" in page


def test_types_the_summary_does_not_use_do_not_fill_its_read(
        http: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from fhir_gateway.summary import facts

    rec = Record(http)
    for _ in range(4):
        rec.put({"resourceType": "Encounter", "status": "finished", "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HH"},
            "subject": {"reference": f"Patient/{rec.pid}"}}, None)
    rec.cpr("not-attempt", "2026-02-01", GP)
    monkeypatch.setattr(facts, "MAX_COMPARTMENT", 4)
    doc = document(http, by_nhs(rec.nhs))
    assert "<b>NOT FOR ATTEMPTED CPR</b>" in headline(doc)
    assert "some facts may be missing" not in doc.text("about")


def test_a_type_is_never_crowded_out_of_the_read_by_another(
        http: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read together, the patient's Observations would fill the bound before the
    RelatedPerson (read in type order); then each type is read on its own."""
    from fhir_gateway.summary import facts

    rec = Record(http)
    for day in range(1, 5):
        _observation(rec, "376201000000102", effectiveDateTime=f"2026-01-0{day}")
    rec.put({"resourceType": "RelatedPerson", "active": True,
             "patient": {"reference": f"Patient/{rec.pid}"},
             "relationship": [{"text": "daughter"}], "name": [{"text": "Ruth Okafor"}],
             "telecom": [{"system": "phone", "value": "07700 900123"}]}, HOSPICE)
    monkeypatch.setattr(facts, "MAX_COMPARTMENT", 4)
    doc = document(http, by_nhs(rec.nhs))
    assert "Ruth Okafor" in doc.text("contacts")
    assert "MAY BE INCOMPLETE" not in headline(doc)


# -- 8. the page says what the document says -----------------------------------------------


def test_the_page_carries_the_disagreement_sentence_near_the_cpr_box(
        http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP)
    rec.cpr("attempt", "2026-03-01", HOSPICE)
    doc = document(http, by_nhs(rec.nhs))
    sentence = plain(doc.text("conflict")).split("check the patient's forms")[0]
    detail = re.search(r"Borough Hospice \(X9H01\) records [^.]*\.", sentence)
    assert detail is not None
    page = plain(http.get(by_nhs(rec.nhs), headers={"Accept": "text/html"}).text)
    assert detail.group(0) in page
    assert page.index(detail.group(0)) < page.index("ReSPECT recommendations")


# -- decisions whose date must not decide: not confirmed, or dated after today -----------

@pytest.mark.parametrize("status", ["preliminary", "registered", "unknown"])
def test_an_unconfirmed_decision_never_replaces_a_final_one(http: TestClient,
                                                            status: str) -> None:
    rec = Record(http)
    final = rec.cpr("not-attempt", "2026-01-01", GP)
    draft = rec.cpr("attempt", "2026-03-01", GP, status=status)
    doc = document(http, by_nhs(rec.nhs))
    assert {o["id"] for o in doc.cited("cpr")} == {final["id"], draft["id"]}
    assert "FOR ATTEMPTED CPR" not in headline(doc).replace("NOT FOR ATTEMPTED CPR", "")
    assert len(doc.of_type("DetectedIssue")) == 1
    assert f"Status: {status}" in plain(doc.text("cpr"))
    # a later final decision of the same partner replaces the final one; the draft of
    # the same value is then shown as the final one
    newer = rec.cpr("attempt", "2026-04-01", GP)
    doc = document(http, by_nhs(rec.nhs))
    assert [o["id"] for o in doc.cited("cpr")] == [newer["id"]]
    assert not doc.of_type("DetectedIssue")


def test_a_decision_dated_after_today_does_not_replace_the_others(http: TestClient) -> None:
    rec = Record(http)
    real = rec.cpr("attempt", "2026-05-01", GP)
    slip = rec.cpr("not-attempt", "2062-01-02", GP)  # 2026 mistyped
    doc = document(http, by_nhs(rec.nhs))
    assert {o["id"] for o in doc.cited("cpr")} == {real["id"], slip["id"]}
    assert len(doc.of_type("DetectedIssue")) == 1
    assert "Dated after today: check the date" in plain(doc.text("cpr"))
    # today's own date is not "after today"
    rec2 = Record(http, pid="p2", nhs=valid_nhs(70))
    rec2.cpr("attempt", "2026-05-01", GP)
    today = rec2.cpr("not-attempt", TODAY.isoformat(), GP)
    doc = document(http, by_nhs(rec2.nhs))
    assert [o["id"] for o in doc.cited("cpr")] == [today["id"]]


# -- a contact taken off the ReSPECT form stops being shown -----------------------------


def _hospice_form(nhs: str, contacts: list[dict[str, Any]] | None) -> bytes:
    respect = {"formId": "RSP-9", "version": "3", "completedOn": "2026-03-01",
               "cpr": "not-attempt", "careFocus": "comfort", "preferredPlaceOfCare": "home",
               "recommendations": "Comfort", "capacity": "has-capacity",
               "contacts": contacts or [], "clinician": {"name": "Dr Smith", "gmc": "6000676"}}
    line = {"clientId": "MSH-9", "nhsNumber": nhs, "name": {"first": "Ann", "last": "White"},
            "dob": "1940-11-03", "gender": "female",
            **({"respect": respect} if contacts is not None else {})}
    return (json.dumps(line) + "\n").encode()


SON = {"name": "Peter White", "relationship": "son", "phone": "07700 900502", "lpa": True}
NEIGHBOUR = {"name": "Ann Green", "relationship": "neighbour", "phone": "07700 900503",
             "lpa": False}


@pytest.mark.parametrize("then", [[NEIGHBOUR], [], None],
                         ids=["son-taken-off", "no-contacts-left", "no-form-any-more"])
def test_a_contact_taken_off_the_form_is_no_longer_shown(
        http: TestClient, then: list[dict[str, Any]] | None) -> None:
    nhs = valid_nhs(400)
    service = IngestService(Repository(http.app.state.fhir_router.repository.engine))
    service.ingest("hospice", "c1.jsonl", _hospice_form(nhs, [SON, NEIGHBOUR]), today=TODAY)
    before = document(http, by_nhs(nhs))
    assert "Peter White" in before.text("contacts")
    assert [r["resourceType"] for r in before.cited("legal")] == ["RelatedPerson"]

    result = service.ingest("hospice", "c2.jsonl", _hospice_form(nhs, then), today=TODAY)
    assert result.rejected == 0 and result.updated >= 1, result.to_json()
    after = document(http, by_nhs(nhs))
    assert "Peter White" not in json.dumps(after.bundle)
    assert after.cited("legal") == [] and "Peter White" not in after.text("legal")
    assert ("Ann Green" in after.text("contacts")) == (then == [NEIGHBOUR])

    # the same file again changes nothing; the son named again comes back
    again = service.ingest("hospice", "c2.jsonl", _hospice_form(nhs, then), today=TODAY)
    assert again.created == again.updated == 0, again.to_json()
    service.ingest("hospice", "c3.jsonl", _hospice_form(nhs, [SON]), today=TODAY)
    assert [r["name"][0]["text"] for r in document(http, by_nhs(nhs)).cited("legal")] == [
        "Peter White"]


# -- a partner's ReSPECT forms the dates cannot order are both current -------------------


def _respect(rec: Record, description: str, created: str | None) -> dict[str, Any]:
    return rec.put({"resourceType": "CarePlan", "status": "active", "intent": "plan",
                    "category": [{"coding": [{"system": SCT, "code": "735324008"}],
                                  "text": "ReSPECT form"}],
                    "title": "ReSPECT recommendations", "description": description,
                    "subject": {"reference": f"Patient/{rec.pid}"},
                    **({"created": created} if created else {})}, HOSPICE)


def test_a_newer_undated_form_is_shown_beside_the_older_dated_one(http: TestClient) -> None:
    rec = Record(http)
    old = _respect(rec, "Full escalation, for ICU", "2026-01-10")
    new = _respect(rec, "Comfort care only, not for ICU", None)
    doc = document(http, by_nhs(rec.nhs))
    cited = [f"CarePlan/{p['id']}" for p in doc.cited("respect")]
    assert sorted(cited) == sorted([f"CarePlan/{old['id']}", f"CarePlan/{new['id']}"])
    text = plain(doc.text("respect"))
    assert "Comfort care only" in text and "Full escalation" in text
    assert "more than one current form or plan of one kind" in text
    # one form only: no such note
    rec2 = Record(http, pid="p2", nhs=valid_nhs(700))
    _respect(rec2, "Comfort care only", "2026-01-10")
    assert "more than one" not in plain(document(http, by_nhs(rec2.nhs)).text("respect"))


def test_one_partners_not_died_beside_anothers_death_is_shown_as_a_disagreement(
        http: TestClient) -> None:
    # the GP records a death; the hospital's newer A08 says PID-30 N. The GP's death
    # stands (one partner cannot withdraw another's), and the crew is told they disagree.
    nhs = valid_nhs(800)
    service = IngestService(Repository(http.app.state.fhir_router.repository.engine))
    gp = GP_HEADER + (f"{_spaced(nhs)},WHITE,Ann,03/11/1940,F,Y90028,Dr Clarke,29/11/2025,"
                      "Amber,Home,25/12/2025,N,,Plan,11/03/2026,20/05/2026,Home\n")
    assert service.ingest("gp", "gp.csv", gp.encode(), today=TODAY).rejected == 0
    _, corrected = _death_then_correction(nhs)
    assert service.ingest("acute", "c.hl7", corrected, today=TODAY).rejected == 0
    doc = document(http, by_nhs(nhs))
    (pat,) = doc.of_type("Patient")
    assert pat["deceasedDateTime"] == "2026-05-20"
    assert doc.titles()[0] == "Deceased"
    assert "RECORDS DISAGREE ON WHETHER THIS PERSON HAS DIED" in headline(doc)
    text = plain(doc.text("deceased"))
    assert "from Borough Hospitals NHS Trust (RXA) says they have not died" in text
    assert "has died (20 May 2026)" in text
    page = http.get(by_nhs(nhs), headers={"Accept": "text/html"}).text
    assert "RECORDS DISAGREE ON WHETHER THIS PERSON HAS DIED" in page


def test_a_routine_not_died_sent_before_the_death_is_no_disagreement(
        http: TestClient) -> None:
    # hospital systems send PID-30 N on every message while the person lives: an A08 in
    # April says nothing against the death the GP records in May
    nhs = valid_nhs(900)
    service = IngestService(Repository(http.app.state.fhir_router.repository.engine))
    _, corrected = _death_then_correction(nhs)
    april = corrected.replace(b"202605210900", b"202604010900")
    assert service.ingest("acute", "a.hl7", april, today=TODAY).rejected == 0
    gp = GP_HEADER + (f"{_spaced(nhs)},WHITE,Ann,03/11/1940,F,Y90028,Dr Clarke,29/11/2025,"
                      "Amber,Home,25/12/2025,N,,Plan,11/03/2026,20/05/2026,Home\n")
    assert service.ingest("gp", "gp.csv", gp.encode(), today=TODAY).rejected == 0
    doc = document(http, by_nhs(nhs))
    assert "DECEASED 20 May 2026" in headline(doc), headline(doc)
    assert "DISAGREE" not in headline(doc)
    assert "have not died" not in plain(doc.text("deceased"))
