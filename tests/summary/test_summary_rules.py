"""What "current" means, what the summary refuses, and how it shows what it shows: each rule
of `fhir_gateway.summary.facts` and `operation` on small records written directly."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from summary_kit import (
    ACUTE,
    CPR_URL,
    GP,
    HOSPICE,
    NHS,
    RULES_TODAY,
    SCT,
    SUMMARY,
    Doc,
    Record,
    by_nhs,
    cpr_of,
    document,
    headline,
    valid_nhs,
)

from fhir_gateway.fhir.interceptors import BaseInterceptor
from fhir_gateway.fhir.request import FhirRequest
from fhir_gateway.summary.operation import prefers_html
from fhir_gateway.summary.terms import REVIEW_DATE_EXTENSION

TODAY = RULES_TODAY


def summary(http: TestClient, nhs: str, **headers: str) -> Doc:
    return document(http, by_nhs(nhs), **headers)


# -- current facts ----------------------------------------------------------------------


def test_newest_decision_per_partner_supersedes_older_ones(http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("attempt", "2025-01-10", GP)
    newer = rec.cpr("not-attempt", "2026-02-01", GP)
    doc = summary(http, rec.nhs)
    assert [o["id"] for o in doc.cited("cpr")] == [newer["id"]]
    assert "NOT FOR ATTEMPTED CPR" in headline(doc)
    assert not doc.of_type("DetectedIssue")
    assert "For attempted CPR" not in json.dumps(doc.composition)


@pytest.mark.parametrize("dated", [{"effectivePeriod": {"start": "2026-05-21"}},
                                   {"effectiveInstant": "2026-05-21T09:30:00Z"}])
def test_a_decision_dated_by_a_period_or_an_instant_is_dated(
        http: TestClient, dated: dict[str, Any]) -> None:
    """R4 allows effective[x] as a period or an instant: such a decision was "date not
    recorded" and could not supersede the partner's older one (both shown, flagged)."""
    rec = Record(http)
    rec.cpr("not-attempt", "2024-01-10", GP)
    newer = rec.put({"resourceType": "Observation", "status": "final",
                     "code": {"coding": [{"system": SCT, "code": "304251008"}]},
                     "subject": {"reference": f"Patient/{rec.pid}"}, **dated,
                     "valueCodeableConcept": {"coding": [{"system": SCT, "code": "450475007"}]}},
                    GP)
    doc = summary(http, rec.nhs)
    assert [o["id"] for o in doc.cited("cpr")] == [newer["id"]]
    assert "FOR ATTEMPTED CPR" in headline(doc) and "DISAGREE" not in headline(doc)
    assert "21 May 2026" in doc.text("cpr") and "date not recorded" not in doc.text("cpr")


def test_a_decision_for_a_period_that_has_ended_is_expired_not_current(
        http: TestClient) -> None:
    """CPR "for the weeks of a procedure" (effectivePeriod 1 Feb - 1 Mar) showed, in June,
    as the GP's current decision over its standing DNACPR."""
    rec = Record(http)
    standing = rec.cpr("not-attempt", "2025-09-01", GP)
    rec.put({"resourceType": "Observation", "status": "final",
             "code": {"coding": [{"system": SCT, "code": "304251008"}]},
             "subject": {"reference": f"Patient/{rec.pid}"},
             "effectivePeriod": {"start": "2026-02-01", "end": "2026-03-01"},
             "valueCodeableConcept": {"coding": [{"system": SCT, "code": "450475007"}]}}, GP)
    doc = summary(http, rec.nhs)
    assert "NOT FOR ATTEMPTED CPR" in headline(doc) and "DISAGREE" not in headline(doc)
    assert standing["id"] in [o["id"] for o in doc.cited("cpr")]
    assert "EXPIRED" in doc.text("cpr")[doc.text("cpr").index("For attempted CPR"):]


def _for_a_period(rec: Record, start: str, end: str, **more: Any) -> dict[str, Any]:
    return rec.put({"resourceType": "Observation", "status": "final",
                    "code": {"coding": [{"system": SCT, "code": "304251008"}]},
                    "subject": {"reference": f"Patient/{rec.pid}"},
                    "effectivePeriod": {"start": start, "end": end},
                    "valueCodeableConcept": {"coding": [{"system": SCT, "code": "450475007"}]},
                    **more}, GP)


def test_a_period_decision_keeps_its_review_date_and_yields_to_newer_ones(
        http: TestClient) -> None:
    """The first rule for periods let the end stand in for a passed review date (a month
    ending later), and kept a period decision current beside its source's newer one."""
    rec = Record(http)
    _for_a_period(rec, "2026-01-10", "2026-06", extension=[
        {"url": REVIEW_DATE_EXTENSION, "valueDate": "2026-05-10"}])
    assert "EXPIRED" in summary(http, rec.nhs).text("cpr")  # "today" is 1 Jun 2026
    other = Record(http, pid="p2", nhs=valid_nhs(100))
    _for_a_period(other, "2026-01-10", "2026-12-01")
    newer = other.cpr("not-attempt", "2026-05-20", GP)
    doc = summary(http, other.nhs)
    assert "NOT FOR ATTEMPTED CPR" in headline(doc) and "DISAGREE" not in headline(doc)
    assert [o["id"] for o in doc.cited("cpr")] == [newer["id"]]


def test_a_received_time_in_the_future_is_not_believed(http: TestClient) -> None:
    """A Provenance's `recorded` is its writer's word: 2030 (a clock error) made the crew
    read the decision as received, and the record as fed, in 2030."""
    rec = Record(http)
    rec.put({"resourceType": "Observation", "status": "final",
             "code": {"coding": [{"system": SCT, "code": "304251008"}]},
             "subject": {"reference": f"Patient/{rec.pid}"},
             "effectiveDateTime": "2026-05-01",
             "valueCodeableConcept": {"coding": [{"system": SCT, "code": "450476008"}]}},
            GP, recorded="2030-01-01T09:00:00Z")
    page = http.get(by_nhs(rec.nhs), headers={"Accept": "text/html"}).text
    assert "NOT FOR ATTEMPTED CPR" in page and "2030" not in page
    assert "2030" not in json.dumps(summary(http, rec.nhs).composition)


def test_next_of_kin_on_the_patient_is_a_contact(http: TestClient) -> None:
    """R4 and UK Core hold next of kin in Patient.contact: the summary said "No contacts
    recorded" while its own Patient entry carried the name and number."""
    kin = {"relationship": [{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "N",
        "display": "Next-of-Kin"}]}], "name": {"given": ["Ruth"], "family": "Okafor"},
        "telecom": [{"system": "phone", "value": "07700 900123", "use": "mobile"}]}
    gone = {"name": {"text": "Old Neighbour"}, "period": {"end": "2025-03-01"},
            "telecom": [{"system": "phone", "value": "01384 000000"}]}
    rec = Record(http, contact=[kin, gone])
    doc = summary(http, rec.nhs)
    contacts = doc.text("contacts")
    assert "Ruth Okafor" in contacts and "07700 900123" in contacts
    assert "Next-of-Kin" in contacts and "No contacts recorded" not in contacts
    assert "Relationship ended" in contacts[contacts.index("Old Neighbour"):]
    page = http.get(by_nhs(rec.nhs), headers={"Accept": "text/html"}).text
    assert "Ruth Okafor" in page and "07700 900123" in page


def test_partners_agreeing_is_not_a_conflict(http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP)
    rec.cpr("not-attempt", "2026-03-01", HOSPICE)
    doc = summary(http, rec.nhs)
    assert len(doc.cited("cpr")) == 2 and not doc.of_type("DetectedIssue")
    assert "2 partners record the same decision" in doc.text("cpr")


def test_partners_disagreeing_shows_both_and_a_detected_issue(http: TestClient) -> None:
    rec = Record(http)
    gp = rec.cpr("not-attempt", "2026-01-01", GP)
    hospice = rec.cpr("attempt", "2026-03-01", HOSPICE)
    doc = summary(http, rec.nhs)
    assert [o["id"] for o in doc.cited("cpr")] == [hospice["id"], gp["id"]]  # newest first
    (issue,) = doc.of_type("DetectedIssue")
    assert {doc.by_ref[i["reference"]]["id"] for i in issue["implicated"]} == {gp["id"],
                                                                              hospice["id"]}
    assert "Borough GP (X9G01)" in issue["detail"] and "Borough Hospice" in issue["detail"]
    assert issue["code"]["text"] == "Partners hold different current CPR decisions"
    assert "1 Jan 2026" in issue["detail"] and "1 Mar 2026" in issue["detail"]
    # the same disagreement always gets the same issue id
    assert Doc(http.get(by_nhs(rec.nhs)).json()).of_type("DetectedIssue")[0]["id"] == issue["id"]


def test_decision_past_its_review_date_is_expired_not_current(http: TestClient) -> None:
    rec = Record(http)
    expired = rec.cpr("not-attempt", "2025-01-01", GP, extension=[
        {"url": REVIEW_DATE_EXTENSION, "valueDate": "2026-05-31"}],
        meta={"profile": [CPR_URL]})  # the profile allows the extension
    doc = summary(http, rec.nhs)
    assert "NO CURRENT CPR DECISION" in headline(doc)
    assert "NOT FOR ATTEMPTED CPR" not in headline(doc)
    assert [o["id"] for o in doc.cited("cpr")] == [expired["id"]]
    assert "EXPIRED: review date 31 May 2026 has passed" in doc.text("cpr")
    # reviewed today: still current
    rec.put({**expired, "extension": [{"url": REVIEW_DATE_EXTENSION,
                                       "valueDate": TODAY.isoformat()}]}, GP)
    doc = summary(http, rec.nhs)
    assert "NOT FOR ATTEMPTED CPR" in headline(doc)
    assert "review by 1 Jun 2026" in doc.text("cpr")


def test_an_unreadable_review_date_is_said_not_ignored(http: TestClient) -> None:
    """A review date that cannot be read (a string, not a date) leaves the decision shown
    as recorded, with a warning that whether it is still current is unknown."""
    rec = Record(http)
    rec.cpr("not-attempt", "2025-01-01", GP, extension=[
        {"url": REVIEW_DATE_EXTENSION, "valueString": "next spring"}])
    doc = summary(http, rec.nhs)
    assert "NOT FOR ATTEMPTED CPR" in headline(doc)
    assert "A review date was recorded but cannot be read" in doc.text("cpr")
    rec2 = Record(http, pid="p2", nhs=valid_nhs(500))
    rec2.cpr("not-attempt", "2025-01-01", GP, extension=[
        {"url": REVIEW_DATE_EXTENSION, "valueDate": "2030-01-01"}])
    assert "cannot be read" not in summary(http, rec2.nhs).text("cpr")


def test_an_expired_decision_does_not_make_a_conflict(http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2025-01-01", GP, extension=[
        {"url": REVIEW_DATE_EXTENSION, "valueDate": "2025-07-01"}])
    rec.cpr("attempt", "2025-03-01", HOSPICE)
    doc = summary(http, rec.nhs)
    assert not doc.of_type("DetectedIssue")
    assert "FOR ATTEMPTED CPR" in headline(doc)
    assert "EXPIRED" in doc.text("cpr")  # shown, as expired


def test_flag_and_dnacpr_directive_are_decisions_with_review_dates(http: TestClient) -> None:
    rec = Record(http)
    rec.put({"resourceType": "Flag", "status": "active",
             "code": {"coding": [{"system": SCT, "code": "450476008"}]},
             "subject": {"reference": f"Patient/{rec.pid}"},
             "period": {"start": "2025-01-01", "end": "2025-12-31"}}, ACUTE)
    rec.put({"resourceType": "Consent", "status": "active",
             "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                             "consentscope", "code": "adr"}]},
             "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                                 "consentcategorycodes", "code": "dnr"}]}],
             "patient": {"reference": f"Patient/{rec.pid}"}, "dateTime": "2026-02-02",
             "policyRule": {"text": "DNACPR"},
             "provision": {"period": {"end": "2027-02-02"}}}, GP)
    doc = summary(http, rec.nhs)
    cited = {r["resourceType"]: r for r in doc.cited("cpr")}
    assert set(cited) == {"Flag", "Consent"}
    text = doc.text("cpr")
    assert "EXPIRED: review date 31 Dec 2025" in text and "review by 2 Feb 2027" in text
    assert "NOT FOR ATTEMPTED CPR" in headline(doc) and not doc.of_type("DetectedIssue")


def test_records_in_error_and_replaced_plans_are_not_facts(http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("attempt", "2026-04-01", GP, status="entered-in-error")
    rec.cpr("not-attempt", "2026-01-01", GP)
    plan = {"resourceType": "CarePlan", "intent": "plan", "status": "active",
            "category": [{"coding": [{"system": SCT, "code": "735324008"}],
                          "text": "ReSPECT form"}],
            "subject": {"reference": f"Patient/{rec.pid}"}}
    old = rec.put({**plan, "created": "2025-01-01", "title": "Old form"}, HOSPICE)
    # the same partner's new form replaces its old one (another partner's could not:
    # test_summary_review7.py)
    rec.put({**plan, "created": "2026-01-01", "title": "New form", "replaces": [
        {"reference": f"CarePlan/{old['id']}"}]}, HOSPICE)
    rec.put({**plan, "created": "2026-02-01", "title": "Withdrawn", "status": "revoked"},
            ACUTE)
    doc = summary(http, rec.nhs)
    assert [cpr_of(o) for o in doc.cited("cpr")] == ["not-attempt"]
    assert [p["title"] for p in doc.cited("respect")] == ["New form"]


def test_a_replaced_form_stays_replaced_when_its_replacement_is_revoked(
        http: TestClient) -> None:
    rec = Record(http)
    plan = {"resourceType": "CarePlan", "intent": "plan", "status": "active",
            "category": [{"coding": [{"system": SCT, "code": "735324008"}],
                          "text": "ReSPECT form"}],
            "subject": {"reference": f"Patient/{rec.pid}"}}
    old = rec.put({**plan, "created": "2025-01-01", "title": "Full escalation"}, HOSPICE)
    new = rec.put({**plan, "created": "2026-01-01", "title": "Comfort care", "replaces": [
        {"reference": f"CarePlan/{old['id']}"}]}, HOSPICE)
    rec.put({**new, "status": "revoked"}, HOSPICE)
    doc = summary(http, rec.nhs)
    assert doc.cited("respect") == []  # neither form is current


def test_a_form_on_hold_says_so(http: TestClient) -> None:
    rec = Record(http)
    rec.put({"resourceType": "CarePlan", "intent": "plan", "status": "on-hold",
             "category": [{"coding": [{"system": SCT, "code": "735324008"}],
                           "text": "ReSPECT form"}], "created": "2026-01-01",
             "title": "Comfort care", "subject": {"reference": f"Patient/{rec.pid}"}},
            HOSPICE)
    doc = summary(http, rec.nhs)
    assert [p["title"] for p in doc.cited("respect")] == ["Comfort care"]
    assert "ON HOLD: its author has suspended it" in doc.text("respect")
    page = http.get(by_nhs(rec.nhs), headers={"Accept": "text/html"}).text
    assert "ON HOLD" in page


def test_an_ended_relationship_holds_no_power_of_attorney(http: TestClient) -> None:
    rec = Record(http)
    lpa = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                        "code": "HPOWATT"}]}]
    rec.put({"resourceType": "RelatedPerson", "active": True, "relationship": lpa,
             "patient": {"reference": f"Patient/{rec.pid}"}, "name": [{"text": "Peter"}],
             "period": {"start": "2020-01-01", "end": "2025-01-01"}}, HOSPICE)
    rec.put({"resourceType": "RelatedPerson", "active": True, "relationship": lpa,
             "patient": {"reference": f"Patient/{rec.pid}"}, "name": [{"text": "Mary"}],
             "period": {"start": "2025-01-02"}}, HOSPICE)
    doc = summary(http, rec.nhs)
    legal = doc.text("legal")
    assert "Mary" in legal and "Peter" not in legal
    contacts = doc.text("contacts")
    assert "Relationship ended 1 Jan 2025" in contacts  # as every date on the page
    assert contacts.count("Holds Lasting Power of Attorney") == 1


def test_deceased_is_said_first(http: TestClient) -> None:
    rec = Record(http, deceasedDateTime="2026-05-20")
    rec.cpr("not-attempt", "2026-01-01", GP)
    doc = summary(http, rec.nhs)
    assert doc.titles()[0] == "Deceased"
    assert headline(doc).index("DECEASED 20 May 2026") < headline(doc).index("NOT FOR")
    page = http.get(by_nhs(rec.nhs), headers={"Accept": "text/html"}).text
    assert page.index("DECEASED 20 May 2026") < page.index("NOT FOR ATTEMPTED CPR")


def test_nothing_recorded_says_so_with_when_the_record_was_last_fed(http: TestClient) -> None:
    rec = Record(http)
    doc = summary(http, rec.nhs)
    last = rec.patient["meta"]["lastUpdated"]
    assert "NO EMERGENCY CARE PLAN RECORDED" in headline(doc)
    assert "Record last fed" in headline(doc)
    assert f"{int(last[8:10])} " in headline(doc)  # the day it was fed
    for key in ("cpr", "respect", "places", "legal", "contacts", "alerts"):
        section = doc.section(key)
        assert section is not None and "entry" not in section
        assert section["emptyReason"]["coding"][0]["code"] == "nilknown"
    page = http.get(by_nhs(rec.nhs), headers={"Accept": "text/html"}).text
    assert "NO EMERGENCY CARE PLAN RECORDED" in page and "Record last fed" in page


def test_places_legal_contacts_alerts_newest_per_partner(http: TestClient) -> None:
    rec = Record(http)
    eol = "https://fhir.shared-care-record.example/CodeSystem/end-of-life-observation"
    loc = "https://fhir.shared-care-record.example/CodeSystem/death-location-type"

    def place(kind: str, code: str, when: str, partner: tuple[str, str]) -> dict[str, Any]:
        return rec.put({"resourceType": "Observation", "status": "final",
                        "code": {"coding": [{"system": eol, "code": kind}]},
                        "subject": {"reference": f"Patient/{rec.pid}"},
                        "effectiveDateTime": when, "valueCodeableConcept": {
                            "coding": [{"system": loc, "code": code}]}}, partner)

    place("preferred-place-of-death", "10", "2025-01-01", GP)
    home = place("preferred-place-of-death", "21", "2026-01-01", GP)
    care = place("preferred-place-of-care", "30", "2025-06-01", HOSPICE)
    adrt = rec.put({"resourceType": "Observation", "status": "final",
                    "code": {"coding": [{"system": SCT, "code": "816321000000109",
                                         "display": "Has ADRT for life-sustaining treatment"}]},
                    "subject": {"reference": f"Patient/{rec.pid}"},
                    "effectiveDateTime": "2025-09-01"}, GP)
    meds = rec.put({"resourceType": "Observation", "status": "final",
                    "code": {"coding": [{"system": SCT, "code": "376201000000102",
                                         "display": "Issue of anticipatory medication box"}]},
                    "subject": {"reference": f"Patient/{rec.pid}"},
                    "effectiveDateTime": "2026-04-01"}, GP)
    team = rec.put({"resourceType": "CareTeam", "status": "active", "name": "District nurses",
                    "subject": {"reference": f"Patient/{rec.pid}"},
                    "telecom": [{"system": "phone", "value": "0300 123 4567", "use": "work"}]},
                   ACUTE)
    doc = summary(http, rec.nhs)
    assert [o["id"] for o in doc.cited("places")] == [home["id"], care["id"]]
    assert [o["id"] for o in doc.cited("legal")] == [adrt["id"]]
    assert [o["id"] for o in doc.cited("alerts")] == [meds["id"]]
    assert team["id"] in [r["id"] for r in doc.cited("team")]
    assert "0300 123 4567" in doc.text("team")
    assert "No care team phone number recorded" not in doc.text("team")


# -- who sees what ------------------------------------------------------------------------


class Hide(BaseInterceptor):
    """Hides resources as consent or role rules would."""

    def __init__(self, hidden: Any) -> None:
        self.hidden = hidden

    def can_see(self, request: FhirRequest, resource: dict[str, Any]) -> bool:
        return not self.hidden(resource)


def test_what_a_caller_may_not_see_neither_shows_nor_counts(http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP)
    hidden = rec.cpr("attempt", "2026-03-01", HOSPICE)
    chain = http.app.state.fhir_router.interceptors
    chain.add(Hide(lambda r: r.get("id") == hidden["id"]))
    doc = summary(http, rec.nhs)
    assert [cpr_of(o) for o in doc.cited("cpr")] == ["not-attempt"]
    assert not doc.of_type("DetectedIssue") and hidden["id"] not in json.dumps(doc.bundle)


def test_a_hidden_patient_looks_exactly_like_an_unknown_one(http: TestClient) -> None:
    rec = Record(http)
    unknown = valid_nhs(500)
    absent = http.get(by_nhs(unknown))
    http.app.state.fhir_router.interceptors.add(Hide(lambda r: r["resourceType"] == "Patient"))
    hidden = http.get(by_nhs(rec.nhs))
    assert absent.status_code == hidden.status_code == 404
    assert absent.json() == json.loads(hidden.text.replace(
        f"{rec.nhs[:3]} {rec.nhs[3:6]} {rec.nhs[6:]}",
        f"{unknown[:3]} {unknown[3:6]} {unknown[6:]}"))
    hidden_id = http.get(f"/fhir/Patient/{rec.pid}/$emergency-summary")
    unknown_id = http.get("/fhir/Patient/nobody/$emergency-summary")
    assert hidden_id.status_code == unknown_id.status_code == 404
    assert hidden_id.json() == json.loads(unknown_id.text.replace("nobody", rec.pid))


def test_the_operation_only_reads_through_visible(http: TestClient) -> None:
    """Every resource in the answer passed `can_see` for this request."""
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP)
    seen: list[str] = []

    class Watch(BaseInterceptor):
        def can_see(self, request: FhirRequest, resource: dict[str, Any]) -> bool:
            seen.append(f"{resource['resourceType']}/{resource['id']}")
            return True

    http.app.state.fhir_router.interceptors.add(Watch())
    doc = summary(http, rec.nhs)
    shown = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in doc.entries
             if e["resource"]["resourceType"] not in ("Composition", "DetectedIssue")}
    assert shown and shown <= set(seen)


# -- finding the person -----------------------------------------------------------------


@pytest.mark.parametrize(("query", "words"), [
    ([("identifier", f"{NHS}|9434765918")], "check digit"),
    ([("identifier", f"{NHS}|0000000000")], "placeholder"),  # passes Modulus 11
    ([("identifier", f"{NHS}|943476591")], "not ten digits"),
    ([("identifier", f"{NHS}|94347659AB")], "not ten digits"),
    ([("identifier", "https://example.org/mrn|9434765919")], "must be an NHS number"),
    ([], "exactly one NHS number"),
    ([("identifier", f"{NHS}|9434765919"), ("identifier", f"{NHS}|9434765919")],
     "exactly one NHS number"),
    ([("identifier", f"{NHS}|9434765919"), ("name", "x")], "not name"),
])
def test_bad_requests_are_400_naming_the_problem(http: TestClient, query: list,
                                                 words: str) -> None:
    resp = http.get(SUMMARY, params=query)
    assert resp.status_code == 400, resp.text
    assert resp.json()["resourceType"] == "OperationOutcome"
    assert words in resp.json()["issue"][0]["diagnostics"]
    page = http.get(SUMMARY, params=query, headers={"Accept": "text/html"})
    assert page.status_code == 400
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "CHECK THE REQUEST" in page.text and words in page.text.replace("&#x27;", "'")
    assert "<script" not in page.text


def test_unknown_is_404_and_only_patients_have_a_summary(http: TestClient) -> None:
    assert http.get(by_nhs(valid_nhs(7))).status_code == 404
    assert http.get("/fhir/Patient/nobody/$emergency-summary").status_code == 404
    assert http.get("/fhir/Observation/$emergency-summary",
                    params={"identifier": f"{NHS}|9434765919"}).status_code == 404
    page = http.get(by_nhs(valid_nhs(7)), headers={"Accept": "text/html"})
    assert page.status_code == 404 and "NO RECORD FOUND" in page.text


def test_by_id_gives_the_same_summary(http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP)
    by_id = http.get(f"/fhir/Patient/{rec.pid}/$emergency-summary").json()
    assert Doc(by_id).cited("cpr") == summary(http, rec.nhs).cited("cpr")


def test_two_records_with_one_nhs_number_are_refused_not_guessed(http: TestClient) -> None:
    rec = Record(http)
    Record(http, pid="p2", nhs=rec.nhs)
    resp = http.get(by_nhs(rec.nhs))
    assert resp.status_code == 409 and "will not choose" in resp.text


def test_a_merged_record_is_summarised_as_the_one_it_was_merged_into(http: TestClient) -> None:
    survivor = Record(http, pid="keep", nhs=valid_nhs(20))
    survivor.cpr("not-attempt", "2026-01-01", GP)
    Record(http, pid="old", nhs=valid_nhs(40),
           link=[{"other": {"reference": "Patient/keep"}, "type": "replaced-by"}])
    doc = Doc(http.get("/fhir/Patient/old/$emergency-summary").json())
    assert doc.composition["subject"]["reference"] == "http://gateway.test/fhir/Patient/keep"
    assert [cpr_of(o) for o in doc.cited("cpr")] == ["not-attempt"]


# -- the document and the page ----------------------------------------------------------


def test_document_shape(http: TestClient) -> None:
    rec = Record(http)
    obs = rec.cpr("not-attempt", "2026-01-01", GP)
    resp = http.get(by_nhs(rec.nhs), headers={"Accept": "application/fhir+json"})
    assert resp.headers["content-type"].startswith("application/fhir+json")
    doc = Doc(resp.json())
    bundle = doc.bundle
    assert bundle["identifier"]["value"].startswith("urn:uuid:")
    assert bundle["entry"][0]["resource"]["resourceType"] == "Composition"
    assert bundle["entry"][1]["fullUrl"] == f"http://gateway.test/fhir/Patient/{rec.pid}"
    comp = doc.composition
    assert comp["type"]["coding"][0] == {"system": SCT, "code": "861421000000109",
                                         "display": "End of life care coordination summary"}
    assert comp["subject"]["reference"] == f"http://gateway.test/fhir/Patient/{rec.pid}"
    assert comp["title"] and comp["author"] and comp["date"] == bundle["timestamp"]
    for section in comp["section"]:
        assert section["text"]["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml">')
        for entry in section.get("entry", []):
            assert entry["reference"] in doc.by_ref
    provs = doc.of_type("Provenance")
    assert any(t["reference"] == f"Observation/{obs['id']}/_history/1"
               for p in provs for t in p["target"])
    assert "Borough GP (X9G01), received" in doc.text("cpr")


def test_everything_from_the_record_is_escaped(http: TestClient) -> None:
    rec = Record(http)
    rec.put({"resourceType": "RelatedPerson", "active": True,
             "patient": {"reference": f"Patient/{rec.pid}"},
             "relationship": [{"text": "son"}],
             "name": [{"text": "<script>alert(1)</script> & <b>Bob</b>"}],
             "telecom": [{"system": "phone", "value": "\"><img src=x>"}]}, HOSPICE)
    page = http.get(by_nhs(rec.nhs), headers={"Accept": "text/html"})
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert "<script" not in page.text and "<img" not in page.text and "<b>Bob" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;Bob&lt;/b&gt;" in page.text
    doc = summary(http, rec.nhs)
    assert "<script" not in json.dumps([s["text"] for s in doc.composition["section"]])


def test_record_text_cannot_reorder_the_page_or_break_the_narrative(
        http: TestClient) -> None:
    # A right-to-left override in a name redrew the identity line backwards (the NHS
    # number and birth date read reversed); control characters made the narrative
    # ill-formed XHTML.
    from xml.etree import ElementTree

    rec = Record(http, name=[{"family": "Example", "given": ["Ann\u202e"]}])
    rec.put({"resourceType": "RelatedPerson", "active": True,
             "patient": {"reference": f"Patient/{rec.pid}"},
             "relationship": [{"text": "son"}],
             "name": [{"text": "Bob\x0b\u2067 Smith"}],
             "telecom": [{"system": "phone", "value": "07700 900123"}]}, HOSPICE)
    page = http.get(by_nhs(rec.nhs), headers={"Accept": "text/html"}).text
    for control in ("\u202e", "\u2067", "\x0b"):
        assert control not in page
    assert "<bdi>Ann Example</bdi>" in page  # and isolated from the numbers after it
    doc = summary(http, rec.nhs)
    for section in doc.composition["section"]:
        ElementTree.fromstring(section["text"]["div"])  # well-formed, or this raises
    assert "Bob\ufffd Smith" in doc.text("contacts")


def test_the_name_shown_is_the_one_in_use_not_a_former_one(http: TestClient) -> None:
    # No official name: the first recorded is a maiden name that ended in 1965.
    rec = Record(http, name=[
        {"use": "maiden", "family": "Maidenname", "given": ["Ann"],
         "period": {"end": "1965-06-01"}},
        {"use": "usual", "family": "Currentname", "given": ["Ann"]}])
    rec.put({"resourceType": "RelatedPerson", "active": True,
             "patient": {"reference": f"Patient/{rec.pid}"},
             "relationship": [{"text": "son"}],
             "name": [{"family": "Oldson", "period": {"end": "2001-01-01"}},
                      {"use": "official", "family": "Newson", "given": ["Bob"]}],
             "telecom": [{"system": "phone", "value": "07700 900123"}]}, HOSPICE)
    doc = summary(http, rec.nhs)
    assert doc.composition["subject"]["display"] == "Ann Currentname"
    assert "Bob Newson" in doc.text("contacts") and "Oldson" not in doc.text("contacts")
    page = http.get(by_nhs(rec.nhs), headers={"Accept": "text/html"}).text
    assert "Ann Currentname" in page and "Maidenname" not in page


def test_times_carry_the_clock_zone_so_the_repeated_hour_reads_differently() -> None:
    from fhir_gateway.summary.words import instant

    # 25 Oct 2026: the clocks go back at 02:00 BST, so 01:30 London time happens twice
    assert instant("2026-10-25T00:30:00Z") == "25 Oct 2026 01:30 BST"
    assert instant("2026-10-25T01:30:00Z") == "25 Oct 2026 01:30 GMT"


@pytest.mark.parametrize(("accept", "html"), [
    (None, False), ("application/fhir+json", False), ("*/*", False),
    ("text/html", True),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),
    ("application/fhir+json, text/html;q=0.5", False),
    ("text/html;q=0.9, application/json", False),
    ("text/html;q=0", False),
])
def test_accept_decides_page_or_document(accept: str | None, html: bool) -> None:
    assert prefers_html(accept) is html


@pytest.mark.parametrize(("query", "accept", "expected"), [
    # a tablet's WebView sending XHTML without */* gets the page, not "JSON only"
    ("", "application/xhtml+xml", "text/html"),
    ("", "text/html, application/xhtml+xml", "text/html"),
    # _format overrides Accept (R4 3.1.0.1.10), both ways
    ("&_format=json", "text/html", "application/fhir+json"),
    ("&_format=html", "application/fhir+json", "text/html"),
    ("&_format=text/html", None, "text/html"),
    ("&_format=text/html;charset=utf-8", None, "text/html"),
    # and formats the summary cannot write are still refused
    ("&_format=xml", "text/html", "406"),
    ("", "application/fhir+xml", "406"),
])
def test_format_and_accept_choose_what_the_summary_answers(
        http: TestClient, query: str, accept: str | None, expected: str) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP)
    resp = http.get(by_nhs(rec.nhs) + query, headers={"Accept": accept} if accept else {})
    if expected == "406":
        assert resp.status_code == 406, resp.text
        assert resp.json()["resourceType"] == "OperationOutcome"
        return
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith(expected)
    if expected == "text/html":
        assert "Not for attempted CPR" in resp.text



def test_page_shows_each_fact_with_its_source_and_date(http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP)
    rec.cpr("attempt", "2026-03-01", HOSPICE)
    page = http.get(by_nhs(rec.nhs), headers={"Accept": "text/html"}).text
    box = page[page.index("PARTNERS DISAGREE ON CPR"):page.index("ReSPECT recommendations")]
    assert "Not for attempted CPR</span> - decided 1 Jan 2026" in box
    assert "For attempted CPR</span> - decided 1 Mar 2026" in box
    assert "Source: Borough GP (X9G01), received 1 May 2026" in box
    assert "Source: Borough Hospice (X9H01), received 1 May 2026" in box
    assert "does not choose" in box


def test_a_record_too_large_to_read_at_once_says_it_may_be_incomplete(
        http: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from fhir_gateway.summary import facts

    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP)
    rec.cpr("not-attempt", "2026-02-01", HOSPICE)
    # each type is read with its own bound (Provenance does not count: it is searched for
    # per fact), so the two decisions must exceed it
    monkeypatch.setattr(facts, "MAX_COMPARTMENT", 1)
    doc = summary(http, rec.nhs)
    assert "some facts may be missing" in doc.text("about")
    assert "MAY BE INCOMPLETE" in headline(doc)


def test_a_fact_with_many_provenances_does_not_hide_anothers_source(
        http: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Provenance is read for all unsourced facts at once, newest first, up to a bound per
    fact; when one fact's many newer Provenances fill the bound, the others' are still
    read (each on its own), so no fact loses its source."""
    from fhir_gateway.summary import facts

    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP)  # its Provenance: recorded 1 May 2026
    busy = {"resourceType": "Observation", "id": "p1-busy", "status": "final",
            "code": {"coding": [{"system": SCT, "code": "304251008"}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2026-02-01",
            "valueCodeableConcept": {"coding": [{"system": SCT, "code": "450476008"}]}}
    for day in range(1, 6):  # five versions, each with a newer Provenance
        rec.put({**busy, "note": [{"text": f"reviewed {day}"}]}, HOSPICE,
                recorded=f"2026-06-0{day}T10:00:00Z")
    monkeypatch.setattr(facts, "MAX_PROVENANCE", 1)
    doc = summary(http, rec.nhs)
    assert [doc.partner_of(o) for o in doc.cited("cpr")] == ["hospice", "gp"]
    text = doc.text("cpr")
    assert "Source: Borough Hospice (X9H01), received 5 Jun 2026" in text
    assert "Source: Borough GP (X9G01), received 1 May 2026" in text
