"""Review 21 of the emergency summary: another person's decision naming this one as its
performer; the older SNOMED findings for and not for resuscitation; a DNR directive whose
provision says which; a plan that records CPR only in its activity or words; a
DetectedIssue saying CPR only in its evidence's detail."""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from summary_kit import (
    GP,
    HOSPICE,
    NHS,
    SCT,
    TODAY,
    Record,
    by_nhs,
    document,
    headline,
    valid_nhs,
)

from fhir_gateway.fhir.repository import Repository
from fhir_gateway.pipeline.service import IngestService

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))  # the gw fixture's

ALERT_WORDS = "NO CODED CPR DECISION FOUND: READ THE ALERT"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_CATEGORY = "http://terminology.hl7.org/CodeSystem/consentcategorycodes"


def plain(text: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text)))


def test_a_decision_naming_the_person_as_performer_is_not_theirs(http: TestClient) -> None:
    """Ann's DNACPR listing Bob as a performer put it in Bob's compartment, and Bob's
    summary said NOT FOR ATTEMPTED CPR, citing Ann's decision."""
    ann = Record(http, pid="ann", nhs=valid_nhs(20))
    bob = Record(http, pid="bob", nhs=valid_nhs(40))
    ann.cpr("not-attempt", "2026-01-01", GP, performer=[{"reference": "Patient/bob"}])
    ann.put({"resourceType": "CarePlan", "status": "active", "intent": "plan",
             "subject": {"reference": "Patient/ann"}, "author": {"reference": "Patient/bob"},
             "category": [{"coding": [{"system": SCT, "code": "1382601000000107"}]}],
             "created": "2026-01-01", "title": "Ann's ReSPECT form"}, HOSPICE)
    doc = document(http, by_nhs(bob.nhs))
    assert "NO EMERGENCY CARE PLAN RECORDED" in plain(headline(doc))
    assert "Ann's ReSPECT form" not in plain(str(doc.composition))
    assert doc.cited("cpr") == [] and doc.of_type("Observation") == []
    mine = document(http, by_nhs(ann.nhs))  # still Ann's, of course
    assert "NOT FOR ATTEMPTED CPR" in plain(headline(mine))


@pytest.mark.parametrize(("code", "words"), [("304253006", "NOT FOR ATTEMPTED CPR"),
                                             ("304252001", "FOR ATTEMPTED CPR")])
def test_the_older_resuscitation_findings_are_decisions(
        http: TestClient, code: str, words: str) -> None:
    """A Flag coded 304253006 |Not for resuscitation| (code only) was dropped: the crew
    was told no emergency care plan was recorded."""
    rec = Record(http)
    rec.put({"resourceType": "Flag", "status": "active",
             "code": {"coding": [{"system": SCT, "code": code}]},
             "subject": {"reference": f"Patient/{rec.pid}"},
             "period": {"start": "2026-03-01"}}, GP)
    top = plain(headline(document(http, by_nhs(rec.nhs))))
    assert top.split(" An ")[0].strip().startswith(words), top


def _dnr_consent(rec: Record, *codes: str) -> dict[str, Any]:
    consent: dict[str, Any] = {
        "resourceType": "Consent", "status": "active", "dateTime": "2026-03-01",
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "adr"}]},
        "category": [{"coding": [{"system": CONSENT_CATEGORY, "code": "dnr"}]}],
        "patient": {"reference": f"Patient/{rec.pid}"},
        "policy": [{"uri": "https://www.resus.org.uk/respect"}]}
    if codes:
        consent["provision"] = {"code": [{"coding": [{"system": SCT, "code": c}]}
                                         for c in codes]}
    return consent


@pytest.mark.parametrize(("codes", "words"), [
    ((), "NOT FOR ATTEMPTED CPR"),  # the directive alone: as before
    (("304252001",), "FOR ATTEMPTED CPR"),  # GECCO's DoNotResuscitateOrder, full code
    (("450476008",), "NOT FOR ATTEMPTED CPR"),
    (("450476008", "450475007"), "CPR STATUS RECORDED BUT NOT UNDERSTOOD"),
    (("1234567",), "CPR STATUS RECORDED BUT NOT UNDERSTOOD"),
])
def test_a_dnr_directive_whose_provision_codes_the_status_says_which(
        http: TestClient, codes: tuple[str, ...], words: str) -> None:
    """A DNR Consent whose provision said "For resuscitation" was shown as DNACPR."""
    rec = Record(http)
    rec.put(_dnr_consent(rec, *codes), GP)
    top = plain(headline(document(http, by_nhs(rec.nhs))))
    assert top.strip().startswith(words), top


def test_a_plan_recording_cpr_in_its_activity_is_pointed_to(http: TestClient) -> None:
    """A ReSPECT plan coding "not for attempted CPR" in its activity, with no decision
    recorded elsewhere, got "NO CPR DECISION RECORDED"."""
    rec = Record(http)
    rec.put({"resourceType": "CarePlan", "status": "active", "intent": "plan",
             "subject": {"reference": f"Patient/{rec.pid}"}, "created": "2026-03-01",
             "category": [{"coding": [{"system": SCT, "code": "1382601000000107"}]}],
             "description": "Comfort-focused care at home.",
             "activity": [{"detail": {"status": "not-started", "code": {"coding": [
                 {"system": SCT, "code": "450476008"}]}}}]}, HOSPICE)
    doc = document(http, by_nhs(rec.nhs))
    assert ALERT_WORDS in plain(headline(doc))
    assert "Its activity records: Not for attempted CPR" in plain(doc.text("cpr"))


def test_a_plan_saying_cpr_in_words_beside_a_decision_is_pointed_to(
        http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("attempt", "2026-02-01", GP)
    rec.put({"resourceType": "CarePlan", "status": "active", "intent": "plan",
             "subject": {"reference": f"Patient/{rec.pid}"}, "created": "2026-03-01",
             "category": [{"coding": [{"system": SCT, "code": "1382601000000107"}]}],
             "description": "Not for attempted CPR. Comfort-focused care at home."},
            HOSPICE)
    doc = document(http, by_nhs(rec.nhs))
    top = plain(headline(doc))
    assert top.strip().startswith("FOR ATTEMPTED CPR") and "also mentions CPR" in top
    assert "Not for attempted CPR. Comfort-focused" in plain(doc.text("cpr"))


def test_a_plan_not_saying_cpr_is_not_pointed_to(http: TestClient) -> None:
    """Naming the ReSPECT form, as every ReSPECT plan does, is not saying CPR."""
    rec = Record(http)
    rec.put({"resourceType": "CarePlan", "status": "active", "intent": "plan",
             "subject": {"reference": f"Patient/{rec.pid}"}, "created": "2026-03-01",
             "category": [{"coding": [{"system": SCT, "code": "1382601000000107"}],
                           "text": "ReSPECT form"}],
             "title": "ReSPECT recommendations for emergency care and treatment",
             "note": [{"text": "ReSPECT form RSP-1, version 3"}],
             "description": "Comfort-focused care at home."}, HOSPICE)
    assert "NO CPR DECISION RECORDED" in plain(headline(document(http, by_nhs(rec.nhs))))


def test_a_detected_issue_saying_cpr_in_its_evidence_detail_is_pointed_to(
        http: TestClient) -> None:
    rec = Record(http)
    rec.put({"resourceType": "DetectedIssue", "status": "final", "detail": "Form at home",
             "patient": {"reference": f"Patient/{rec.pid}"},
             "evidence": [{"detail": [{"display": "DNACPR form signed 1/5/26"}]}]}, GP)
    doc = document(http, by_nhs(rec.nhs))
    assert ALERT_WORDS in plain(headline(doc))
    assert "DNACPR form signed 1/5/26" in plain(doc.text("cpr"))


def test_an_nhs_number_written_spaced_is_refused_not_stored_unfindable(
        http: TestClient) -> None:
    """A feed's Patient with its NHS number written as people write it was stored (201);
    the crew's summary for that number then said no record was known."""
    resp = http.put("/fhir/Patient/spaced", json={
        "resourceType": "Patient", "id": "spaced", "name": [{"family": "WHITE"}],
        "identifier": [{"system": NHS, "value": "943 476 5919"}]})
    assert resp.status_code == 422, resp.text
    assert "Patient.identifier[0].value" in resp.text and "scr-nhs-1" in resp.text
    assert http.get("/fhir/Patient/spaced").status_code == 404


def _decision(pid: str, code: str, when: str, rid: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": rid, "status": "final",
            "code": {"coding": [{"system": SCT, "code": "304251008"}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
            "valueCodeableConcept": {"coding": [{"system": SCT, "code": code}]}}


def test_a_partners_later_decision_on_a_merged_away_record_is_shown(gw: Any) -> None:
    """The hospice's Patient was merged by the trust's A40 into the trust's; the hospice,
    whose system knows only its own id, then recorded a DNACPR there (201). The crew was
    shown the hospice's older "for CPR", by either NHS number."""
    old, survivor = valid_nhs(100), valid_nhs(300)
    hospice = {**gw.login("hospice-feed", "feed", partner="hospice", org="X9H01",
                          scope="system/*.cruds"), "X-Purpose-Of-Use": "HOPERAT"}
    crew = {**gw.login("crew", "ambulance", org="RYC"), "X-Purpose-Of-Use": "ETREAT"}
    assert gw.http.put("/fhir/Patient/hosp-1", headers=hospice, json={
        "resourceType": "Patient", "id": "hosp-1", "name": [{"family": "WHITE"}],
        "birthDate": "1940-11-03", "gender": "female",
        "identifier": [{"system": NHS, "value": old}]}).status_code == 201
    assert gw.http.put("/fhir/Observation/cpr-1", headers=hospice, json=_decision(
        "hosp-1", "450475007", "2026-01-05", "cpr-1")).status_code == 201
    adt = ("MSH|^~\\&|PAS|RXA|SCR|GATEWAY|202604010900||ADT^A01^ADT_A01|M1|P|2.4\r"
           "EVN|A01|202604010900\r"
           f"PID|1||{survivor}^^^NHS^NH~RXA1^^^RXA^MR||WHITE^ANN||19401103|F\r"
           "PV1|1|I|WARD 7^BAY C^BED 1^RXA||||C1^DOC^A|||300|||||||||V1\r"
           "MSH|^~\\&|PAS|RXA|SCR|GATEWAY|202604020900||ADT^A40^ADT_A39|M2|P|2.4\r"
           "EVN|A40|202604020900\r"
           f"PID|1||{survivor}^^^NHS^NH~RXA1^^^RXA^MR||WHITE^ANN||19401103|F\r"
           f"MRG|{old}^^^NHS^NH\r")
    run = IngestService(Repository(gw.engine)).ingest("acute", "adt.hl7", adt.encode(),
                                                      today=TODAY)
    assert (run.rejected, run.held) == (0, 0), run.rejections
    later = gw.http.put("/fhir/Observation/cpr-2", headers=hospice, json=_decision(
        "hosp-1", "450476008", "2026-05-01", "cpr-2"))
    assert later.status_code == 201, later.text
    for nhs in (survivor, old):
        doc = document(gw.http, by_nhs(nhs), **crew)
        assert plain(headline(doc)).strip().startswith("NOT FOR ATTEMPTED CPR")
        assert [o["id"] for o in doc.cited("cpr")] == ["cpr-2"]


def _panel(rec: Record, *decisions: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "subject": {"reference": f"Patient/{rec.pid}"}, "effectiveDateTime": "2026-04-01",
            "code": {"coding": [{"system": "https://partner.example/form", "code": "RSP"}],
                     "text": "ReSPECT form"},
            "component": [{"code": {"coding": [{"system": SCT, "code": "304251008"}]},
                           "valueCodeableConcept": {"coding": [{"system": SCT, "code": d}]}}
                          for d in decisions]}


@pytest.mark.parametrize(("decisions", "words"), [
    (("450476008",), "NOT FOR ATTEMPTED CPR"),
    (("450475007",), "FOR ATTEMPTED CPR"),
    (("450476008", "450475007"), "CPR STATUS RECORDED BUT NOT UNDERSTOOD"),
])
def test_a_decision_recorded_as_a_component_is_read(
        http: TestClient, decisions: tuple[str, ...], words: str) -> None:
    """A form's Observation holding the resuscitation status only in a component said
    "NO EMERGENCY CARE PLAN RECORDED" (review 21)."""
    rec = Record(http)
    rec.put(_panel(rec, *decisions), HOSPICE)
    doc = document(http, by_nhs(rec.nhs))
    assert plain(headline(doc)).strip().startswith(words)
    assert "Recorded as" in plain(doc.text("cpr")) and "ReSPECT form" in plain(doc.text("cpr"))
    assert [o["resourceType"] for o in doc.cited("cpr")] == ["Observation"]


def test_a_panel_coded_as_the_status_with_its_decision_in_a_component(
        http: TestClient) -> None:
    rec = Record(http)
    rec.put({"resourceType": "Observation", "status": "final",
             "code": {"coding": [{"system": SCT, "code": "304251008"}]},
             "subject": {"reference": f"Patient/{rec.pid}"}, "effectiveDateTime": "2026-03-01",
             "component": [{"code": {"coding": [{"system": SCT, "code": "304251008"}]},
                            "valueCodeableConcept": {"coding": [
                                {"system": SCT, "code": "450476008"}]}}]}, GP)
    top = plain(headline(document(http, by_nhs(rec.nhs))))
    assert top.strip().startswith("NOT FOR ATTEMPTED CPR"), top


def _merged(http: TestClient) -> tuple[Record, Record]:
    survivor = Record(http, pid="a", nhs=valid_nhs(100),
                      link=[{"other": {"reference": "Patient/b"}, "type": "replaces"}])
    merged = Record(http, pid="b", nhs=valid_nhs(200),
                    link=[{"other": {"reference": "Patient/a"}, "type": "replaced-by"}])
    return survivor, merged


def test_merged_records_left_unread_make_the_summary_say_it_may_be_incomplete(
        http: TestClient) -> None:
    """101 Patients linking to the survivor (`seealso`) stop the merge links being
    followed: the merged-away record's DNACPR went unread, and nothing said so."""
    survivor, merged = _merged(http)
    merged.cpr("not-attempt", "2026-03-01", HOSPICE)
    assert plain(headline(document(http, by_nhs(survivor.nhs)))).strip().startswith(
        "NOT FOR ATTEMPTED CPR")
    for i in range(101):
        survivor.repo.update({"resourceType": "Patient", "id": f"x{i}", "link": [
            {"other": {"reference": "Patient/a"}, "type": "seealso"}]},
            rtype="Patient", rid=f"x{i}")
    top = plain(headline(document(http, by_nhs(survivor.nhs))))
    assert "NOT FOR ATTEMPTED CPR" in top or "INCOMPLETE" in top.upper(), top


def test_the_stored_conflict_of_a_merged_person_is_the_survivors(http: TestClient) -> None:
    """A decision on the merged-away record disagreeing with the survivor's: the summary
    said so, but the stored CPR-conflict issue named only the merged-away record."""
    survivor, merged = _merged(http)
    survivor.cpr("not-attempt", "2026-03-01", GP)
    merged.cpr("attempt", "2026-03-02", HOSPICE)
    assert "DISAGREE" in plain(headline(document(http, by_nhs(survivor.nhs))))
    found = http.get("/fhir/DetectedIssue").json().get("entry", [])
    assert [e["resource"]["patient"] for e in found] == [{"reference": "Patient/a"}]


def test_a_care_team_of_a_household_the_person_is_a_member_of_is_theirs(
        http: TestClient) -> None:
    """`_about` first took only a team whose subject is the person."""
    rec = Record(http)
    rec.put({"resourceType": "Group", "id": "hh", "type": "person", "actual": True}, None)
    rec.put({"resourceType": "CareTeam", "status": "active", "name": "Palliative team",
             "subject": {"reference": "Group/hh"},
             "participant": [{"member": {"reference": f"Patient/{rec.pid}",
                                         "display": "Ann Example"}}],
             "telecom": [{"system": "phone", "value": "0300 000 0000"}]}, HOSPICE)
    assert "Palliative team" in plain(document(http, by_nhs(rec.nhs)).text("team"))


def test_an_unread_plan_with_a_period_that_is_no_object_is_no_500(
        http: TestClient) -> None:
    rec = Record(http)
    rec.repo.update({"resourceType": "CarePlan", "id": "cp", "status": "active",
                     "intent": "plan", "subject": {"reference": f"Patient/{rec.pid}"},
                     "title": "DNACPR plan", "period": ["2026-01-01"]},
                    rtype="CarePlan", rid="cp")
    assert http.get(by_nhs(rec.nhs)).status_code == 200


ADRT = "816301000000100"


@pytest.mark.parametrize("resource", [
    {"resourceType": "Consent", "status": "active", "dateTime": "2026-02-02",
     "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "adr"}]},
     "category": [{"coding": [{"system": CONSENT_CATEGORY, "code": "acd"}],
                   "text": "Advance decision to refuse treatment"}],
     "sourceAttachment": {"title": "ADRT: refuses CPR in all circumstances"}},
    {"resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-02-02",
     "code": {"coding": [{"system": SCT, "code": ADRT}]}, "valueBoolean": True,
     "note": [{"text": "ADRT refuses CPR in all circumstances"}]},
])
def test_an_advance_decision_refusing_cpr_is_pointed_to(
        http: TestClient, resource: dict[str, Any]) -> None:
    """An ADRT whose words refuse CPR was shown under Legal only, below "NO CPR DECISION
    RECORDED" (review 21's list)."""
    rec = Record(http)
    subject = "patient" if resource["resourceType"] == "Consent" else "subject"
    rec.put({**resource, subject: {"reference": f"Patient/{rec.pid}"}}, HOSPICE)
    doc = document(http, by_nhs(rec.nhs))
    assert ALERT_WORDS in plain(headline(doc))
    assert "refuses CPR in all circumstances" in plain(doc.text("cpr"))
    quiet = Record(http, pid="quiet", nhs=valid_nhs(60))
    words = json.dumps(resource).replace("refuses CPR in all circumstances", "on file")
    quiet.put({**json.loads(words), subject: {"reference": "Patient/quiet"}}, HOSPICE)
    assert "NO CPR DECISION RECORDED" in plain(headline(document(http, by_nhs(quiet.nhs))))
