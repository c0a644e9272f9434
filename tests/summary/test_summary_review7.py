"""Review 7 of the emergency summary: who a fact is credited to (only an ODS code tells
sources apart), which plans replace others, dates the calendar cannot hold, CPR mentioned
only in an alert's words, contact points, and legal findings that do not affirm."""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from summary_kit import (
    ACUTE,
    GP,
    HOSPICE,
    SCT,
    Doc,
    Record,
    by_nhs,
    cpr_of,
    document,
    headline,
    valid_nhs,
)

from fhir_gateway.security.consent import PARTNER_TAG_SYSTEM
from fhir_gateway.summary.terms import ODS_SYSTEM, REVIEW_DATE_EXTENSION

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
from security_kit import patient

PAGE = {"Accept": "text/html"}
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def plain(text: str) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text))).strip()


def lines(div: str) -> list[str]:
    """Each line of a section's narrative (items' heads and details), as plain text."""
    return [plain(x) for x in re.split(r"<br/>|<li>|</li>|<p>|</p>", div) if plain(x)]


def tags(partner: str, ods: str) -> dict[str, Any]:
    """The meta a partner feed's REST write carries (as the gateway stamps it)."""
    return {"tag": [{"system": PARTNER_TAG_SYSTEM, "code": partner},
                    {"system": ODS_SYSTEM, "code": ods}]}


def decision(pid: str, code: str, when: str, **more: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": SCT, "code": "304251008"}]},
            "subject": {"reference": f"Patient/{pid}"}, "effectiveDateTime": when,
            "valueCodeableConcept": {"coding": [{"system": SCT, "code": code}]}, **more}


def provenance_of(resource: dict[str, Any], who: dict[str, Any],
                  **more: Any) -> dict[str, Any]:
    return {"resourceType": "Provenance",
            "target": [{"reference": f"{resource['resourceType']}/{resource['id']}/_history/"
                                     f"{resource['meta']['versionId']}"}],
            "recorded": "2026-05-01T10:00:00Z", "agent": [{"who": who}], **more}


# -- 1. only an ODS code identifies a source ---------------------------------------------


def test_two_feeds_naming_one_clinician_are_still_two_sources(gw: Any) -> None:
    """Through the feed API: the GP's DNACPR and the hospice's 'for CPR', each with a
    Provenance naming the same locum by display only, are a disagreement, not one
    source's newer decision."""
    gw.put(patient("amb-1", "9434765919", "Example"))
    feeds = {}
    for partner, ods in (("gp", "X9G01"), ("hospice", "X9H01")):
        feeds[partner] = {**gw.login(f"{partner}-feed", "feed", partner=partner, org=ods,
                                     scope="system/*.cruds"),
                          **FHIR_JSON, "X-Purpose-Of-Use": "HOPERAT"}
    crew = {**gw.login("crew", "ambulance", org="RYC"), "X-Purpose-Of-Use": "ETREAT"}
    for partner, rid, code, when in (("gp", "cpr-gp", "450476008", "2026-01-05"),
                                     ("hospice", "cpr-hosp", "450475007", "2026-03-01")):
        resp = gw.http.put(f"/fhir/Observation/{rid}", headers=feeds[partner],
                           json={**decision("amb-1", code, when), "id": rid})
        assert resp.status_code in (200, 201), resp.text
        prov = {**provenance_of(resp.json(), {"display": "Dr A Patel"}), "id": f"prov-{rid}"}
        resp = gw.http.put(f"/fhir/Provenance/prov-{rid}", headers=feeds[partner], json=prov)
        assert resp.status_code in (200, 201), resp.text
    doc = document(gw.http, by_nhs("9434765919"), **crew)
    assert sorted(cpr_of(o) for o in doc.cited("cpr")) == ["attempt", "not-attempt"]
    assert "PARTNERS DISAGREE ON CPR" in headline(doc)
    assert len(doc.of_type("DetectedIssue")) == 1
    text = plain(doc.text("cpr"))
    assert "(X9G01)" in text and "(X9H01)" in text


def test_a_feeds_resource_is_its_tags_not_a_provenance_naming_another(
        http: TestClient) -> None:
    rec = Record(http)
    gp_obs = rec.put({**decision(rec.pid, "450476008", "2026-01-05"),
                      "meta": tags("gp", GP[0])}, None)
    # the GP feed's own Provenance names the hospice: it must not take the credit
    rec.repo.create({**provenance_of(gp_obs, {"identifier": {
        "system": ODS_SYSTEM, "value": HOSPICE[0]}, "display": HOSPICE[1]}),
        "meta": {"tag": [{"system": PARTNER_TAG_SYSTEM, "code": "gp"}]}})
    rec.put({**decision(rec.pid, "450475007", "2026-03-01"),
             "meta": tags("hospice", HOSPICE[0])}, HOSPICE)
    doc = document(http, by_nhs(rec.nhs))
    assert sorted(cpr_of(o) for o in doc.cited("cpr")) == ["attempt", "not-attempt"]
    assert len(doc.of_type("DetectedIssue")) == 1
    assert f"({GP[0]})" in plain(doc.text("cpr"))


def test_a_provenance_without_an_ods_code_never_merges_two_facts(http: TestClient) -> None:
    rec = Record(http)
    for code, when in (("450476008", "2026-01-05"), ("450475007", "2026-03-01")):
        obs = rec.put(decision(rec.pid, code, when), None)
        rec.repo.create(provenance_of(obs, {"display": "Dr A Patel"}))
    doc = document(http, by_nhs(rec.nhs))
    assert sorted(cpr_of(o) for o in doc.cited("cpr")) == ["attempt", "not-attempt"]
    assert len(doc.of_type("DetectedIssue")) == 1
    text = plain(doc.text("cpr"))
    assert "Who recorded one or more of these is not on the record" in text
    assert "recorded by Dr A Patel" in text  # the name is shown, not used as a source


# -- 2. only a plan in force, of the same source, replaces another -------------------------


def _respect(pid: str, **more: Any) -> dict[str, Any]:
    return {"resourceType": "CarePlan", "status": "active", "intent": "plan",
            "category": [{"coding": [{"system": SCT, "code": "735324008"}],
                          "text": "ReSPECT form"}],
            "title": "ReSPECT recommendations", "description": "Ward-based care; no ICU",
            "subject": {"reference": f"Patient/{pid}"}, "created": "2026-03-01", **more}


def test_a_plan_dated_by_its_start_is_said_to_have_started(http: TestClient) -> None:
    """A community plan active since 4 Dec 2025 (no `created`) read "completed 4 Dec
    2025", as if the plan had ended."""
    rec = Record(http)
    plan = _respect(rec.pid, period={"start": "2025-12-04"})
    del plan["created"]
    rec.put(plan, HOSPICE)
    rec.put(_respect(rec.pid, id="p1-form-2"), GP)  # another source: both shown
    text = plain(document(http, by_nhs(rec.nhs)).text("respect"))
    assert "started 4 Dec 2025" in text and "completed 4 Dec 2025" not in text
    assert "completed 1 Mar 2026" in text  # a form's own date stays its completion


def test_a_plan_that_starts_later_says_so(http: TestClient) -> None:
    rec = Record(http)
    plan = _respect(rec.pid, period={"start": "2026-07-15"})  # "today" is 1 Jun 2026
    del plan["created"]
    rec.put(plan, HOSPICE)
    text = plain(document(http, by_nhs(rec.nhs)).text("respect"))
    assert "starts 15 Jul 2026" in text and "Dated after today" not in text


@pytest.mark.parametrize("status", ["draft", "unknown"])
def test_a_plan_not_in_force_replaces_nothing(http: TestClient, status: str) -> None:
    rec = Record(http)
    form = rec.put(_respect(rec.pid), HOSPICE)
    rec.put(_respect(rec.pid, status=status, created="2026-04-01",
                     replaces=[{"reference": f"CarePlan/{form['id']}"}]), HOSPICE)
    doc = document(http, by_nhs(rec.nhs))
    assert [p["id"] for p in doc.cited("respect")] == [form["id"]]
    assert "NO EMERGENCY CARE PLAN RECORDED" not in headline(doc)
    page = http.get(by_nhs(rec.nhs), headers=PAGE).text
    assert "Ward-based care; no ICU" in page


def test_another_partners_plan_does_not_replace_a_form(http: TestClient) -> None:
    rec = Record(http)
    form = rec.put(_respect(rec.pid), HOSPICE)
    acp = rec.put({**_respect(rec.pid, created="2026-04-01",
                              replaces=[{"reference": f"CarePlan/{form['id']}"}]),
                   "category": [{"coding": [{"system": SCT, "code": "736366004"}],
                                 "text": "Advance care plan"}],
                   "title": "GP advance care plan"}, GP)
    doc = document(http, by_nhs(rec.nhs))
    assert sorted(p["id"] for p in doc.cited("respect")) == sorted([form["id"], acp["id"]])
    assert "holds a plan that says it replaces this one" in plain(doc.text("respect"))


def test_a_completed_plan_of_the_same_source_still_replaces(http: TestClient) -> None:
    rec = Record(http)
    form = rec.put(_respect(rec.pid), HOSPICE)
    new = rec.put(_respect(rec.pid, created="2026-04-01", title="New form",
                           replaces=[{"reference": f"CarePlan/{form['id']}"}]), HOSPICE)
    assert [p["id"] for p in document(http, by_nhs(rec.nhs)).cited("respect")] == [new["id"]]
    rec.put({**new, "status": "completed"}, HOSPICE)
    assert document(http, by_nhs(rec.nhs)).cited("respect") == []


# -- 3. dates the calendar cannot hold are unreadable, never a 500 -----------------------

EXTREMES = ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-12:00"]


def _served(http: TestClient, nhs: str) -> Doc:
    page = http.get(by_nhs(nhs), headers=PAGE)
    assert page.status_code == 200, page.text[:300]
    assert page.headers["content-type"].startswith("text/html")
    return document(http, by_nhs(nhs))


@pytest.mark.parametrize("when", EXTREMES)
def test_an_extreme_decision_date_is_unreadable_not_a_failure(http: TestClient,
                                                               when: str) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP)
    resp = http.put("/fhir/Observation/extreme", headers=FHIR_JSON,
                    json={**decision(rec.pid, "450475007", when), "id": "extreme"})
    assert resp.status_code in (200, 201), resp.text
    doc = _served(http, rec.nhs)
    assert sorted(cpr_of(o) for o in doc.cited("cpr")) == ["attempt", "not-attempt"]
    assert "date cannot be read" in plain(doc.text("cpr"))
    assert "RECORDS DISAGREE ON CPR" in headline(doc)  # one of them has no known source


@pytest.mark.parametrize("when", EXTREMES)
def test_an_extreme_review_date_is_unreadable_not_a_failure(http: TestClient,
                                                             when: str) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP, extension=[
        {"url": REVIEW_DATE_EXTENSION, "valueDateTime": when}])
    doc = _served(http, rec.nhs)
    assert "A review date was recorded but cannot be read" in plain(doc.text("cpr"))
    assert "NOT FOR ATTEMPTED CPR" in headline(doc)


@pytest.mark.parametrize("when", EXTREMES)
def test_an_extreme_received_time_is_unreadable_not_a_failure(http: TestClient,
                                                               when: str) -> None:
    rec = Record(http)
    obs = rec.put(decision(rec.pid, "450476008", "2026-01-01"), HOSPICE, recorded=when)
    doc = _served(http, rec.nhs)
    assert [o["id"] for o in doc.cited("cpr")] == [obs["id"]]
    assert "date cannot be read" in plain(doc.text("cpr"))


def test_an_unexpected_failure_gives_a_crew_page_not_json(
        http: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from fhir_gateway.summary import operation

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    rec = Record(http)
    monkeypatch.setattr(operation, "gather", broken)
    resp = http.get(by_nhs(rec.nhs), headers=PAGE)
    assert resp.status_code == 500
    assert resp.headers["content-type"].startswith("text/html")
    assert "SUMMARY COULD NOT BE MADE" in resp.text and "a bug" not in resp.text


# -- 4. CPR in an alert's words only ------------------------------------------------------


def _flag(rec: Record, text: str) -> dict[str, Any]:
    return rec.put({"resourceType": "Flag", "status": "active",
                    "subject": {"reference": f"Patient/{rec.pid}"}, "code": {"text": text},
                    "period": {"start": "2026-04-01"}}, GP)


def test_an_alert_saying_dnacpr_is_never_met_with_no_decision_recorded(
        http: TestClient) -> None:
    rec = Record(http)
    flag = _flag(rec, "DNACPR in place - original form in blue folder by the bed")
    doc = document(http, by_nhs(rec.nhs))
    top = plain(headline(doc))
    assert "NO CODED CPR DECISION FOUND: READ THE ALERT" in top
    assert "NO EMERGENCY CARE PLAN RECORDED" not in top
    assert "No CPR decision, ReSPECT form" not in top
    assert [r["id"] for r in doc.cited("cpr")] == [flag["id"]]
    assert "No CPR decision recorded" not in plain(doc.text("cpr"))
    page = plain(http.get(by_nhs(rec.nhs), headers=PAGE).text)
    assert "NO CODED CPR DECISION FOUND" in page and "NO EMERGENCY CARE PLAN" not in page


def test_a_resuscitation_alert_beside_a_plan_is_not_no_decision(http: TestClient) -> None:
    rec = Record(http)
    rec.put(_respect(rec.pid), HOSPICE)
    _flag(rec, "Not for resus - see ReSPECT form")
    top = plain(headline(document(http, by_nhs(rec.nhs))))
    assert "NO CPR DECISION RECORDED" not in top and "READ THE ALERT" in top


@pytest.mark.parametrize("kind", ["issue", "zero-width", "wide", "marks", "stops",
                                  "spaces", "hyphens", "after-a-word", "cyrillic", "slashes",
                                  "en-dashes", "spaced-hyphens", "double-spaces",
                                  "before-a-word", "stops-before-a-word",
                                  "initials-in-capitals", "stops-before-a-capital",
                                  "sentence-stop"])
def test_cpr_in_a_partners_issue_or_disguised_letters_sends_the_crew_to_it(
        http: TestClient, kind: str) -> None:
    """A partner's DetectedIssue saying DNACPR, and an alert whose DNACPR is split by
    zero-width joiners, written in wide letters or dressed in combining marks (each read
    by a person as DNACPR), met "NO EMERGENCY CARE PLAN RECORDED"."""
    rec = Record(http)
    words = {"issue": "DNACPR", "zero-width": "\u200d".join("DNACPR"),
             "wide": "\uff24\uff2e\uff21\uff23\uff30\uff32",
             "marks": "".join(c + "\u0332" for c in "DNACPR"), "stops": "D.N.A.C.P.R.",
             "spaces": "D N A C P R", "hyphens": "D-N-A-C-P-R",
             "after-a-word": "a D N R form", "slashes": "D/N/A/C/P/R",
             "en-dashes": "D\u2013N\u2013A\u2013C\u2013P\u2013R",
             "spaced-hyphens": "D - N - A - C - P - R", "double-spaces": "D  N  A  C  P  R",
             "before-a-word": "D N R a copy is in the house",
             "stops-before-a-word": "D.N.R. a form at home",
             # initials without stops before a name in capitals: read as DNR, the safe
             # mistake (the crew reads the alert)
             "initials-in-capitals": "Key holder MR D N R SMITH",
             # a stop then a capitalised word is a sentence as often as initials
             "stops-before-a-capital": "D.N.R. Family aware",
             "sentence-stop": "Patient is D N R. Son has the form", "cyrillic": "DNA\u0421PR"}[kind]
    if kind == "issue":
        rec.put({"resourceType": "DetectedIssue", "status": "final",
                 "patient": {"reference": f"Patient/{rec.pid}"},
                 "detail": f"Signed {words} form seen at the patient's home"}, GP)
    else:
        _flag(rec, f"{words} in place")
    top = plain(headline(document(http, by_nhs(rec.nhs))))
    assert "READ THE ALERT" in top and "NO EMERGENCY CARE PLAN RECORDED" not in top
    page = http.get(by_nhs(rec.nhs), headers=PAGE).text
    assert "READ THE ALERT" in page


def test_stacked_combining_marks_cannot_paint_over_the_cpr_box(http: TestClient) -> None:
    from fhir_gateway.summary.terms import escaped

    marks = "\u0300\u0301\u0302\u0303"
    rec = Record(http, name=[{"family": "Example", "given": ["A" + marks * 13 + "nn"]}])
    page = http.get(by_nhs(rec.nhs), headers=PAGE).text
    assert f"A{marks}nn" in page  # four marks on a letter, no more
    # a joiner does not start the count again
    assert escaped("A" + (marks + "\u200d") * 13 + "x") == "A" + marks + "\u200dx"


@pytest.mark.parametrize("text", ["Key holder: neighbour Dr D.N.R. Patel",
                                  "Carer Mrs C. P. R. Evans visits daily",
                                  "Plan A B C agreed", "Flat 3 b Road", "p.r.n. dose",
                                  "Just in case: midazolam 2.5 mg s.c. p.r.n. for agitation",
                                  "morphine s/c p/r"])
def test_titled_initials_and_other_abbreviations_are_not_a_cpr_alert(
        http: TestClient, text: str) -> None:
    rec = Record(http)
    _flag(rec, text)
    assert "NO EMERGENCY CARE PLAN RECORDED" in headline(document(http, by_nhs(rec.nhs)))


@pytest.mark.parametrize("name", [
    "\u062d\u0633\u0646\u200c\u0632\u0627\u062f\u0647",  # Persian, with its ZWNJ
    "\u0936\u094d\u200d\u0930\u0940",  # Sinhala-style ZWJ conjunct
    "\u092b\u093c\u0948\u0902\u0938\u0940",  # Hindi: three marks on one letter
    "\u05d9\u05b4\u05e9\u05bc\u05b8\u05c2\u05db\u05b8\u05e8",  # pointed Hebrew
    "Si\u00e2n \U0001F469\u200d\u2695\ufe0f"])  # Welsh, and an emoji ZWJ sequence
def test_names_in_other_scripts_are_shown_as_written(http: TestClient, name: str) -> None:
    """The first rules for partner text dropped every format character and kept two
    marks: Persian, Sinhala, Hindi and Hebrew names and emoji came out changed."""
    rec = Record(http, name=[{"family": name, "given": ["Ann"]}])
    assert name in http.get(by_nhs(rec.nhs), headers=PAGE).text


def test_an_alert_about_something_else_changes_nothing(http: TestClient) -> None:
    rec = Record(http)
    _flag(rec, "Key safe at the back door: code with the district nurses")
    assert "NO EMERGENCY CARE PLAN RECORDED" in headline(document(http, by_nhs(rec.nhs)))


# -- 5. contact points: what each is, and old ones never look current ---------------------


def test_contact_points_say_what_they_are_and_old_ones_are_not_current(
        http: TestClient) -> None:
    rec = Record(http)
    rec.put({"resourceType": "RelatedPerson", "active": True,
             "patient": {"reference": f"Patient/{rec.pid}"}, "name": [{"text": "Sam"}],
             "relationship": [{"text": "son"}],
             "telecom": [{"system": "phone", "value": "01632 960000", "use": "old"},
                         {"system": "phone", "value": "01632 960001",
                          "period": {"end": "2020-01-01"}},
                         {"system": "email", "value": "sam@example.org"},
                         {"system": "phone", "value": "07700 900111", "use": "mobile"}]},
            HOSPICE)
    said = lines(document(http, by_nhs(rec.nhs)).text("contacts"))
    assert "Email sam@example.org" in said
    assert not any("Phone sam@example.org" in x for x in said)
    assert any(x.startswith("Phone 07700 900111") for x in said)
    for old in ("01632 960000", "01632 960001"):
        (line,) = [x for x in said if old in x]
        assert line.startswith("Not current"), line


def test_a_care_team_with_no_current_phone_has_no_24_hour_number(http: TestClient) -> None:
    rec = Record(http)
    rec.put({"resourceType": "CareTeam", "status": "active", "name": "District nurses",
             "subject": {"reference": f"Patient/{rec.pid}"},
             "telecom": [{"system": "email", "value": "nurses@example.org"},
                         {"system": "phone", "value": "0300 123 4567", "use": "old"}]}, GP)
    text = plain(document(http, by_nhs(rec.nhs)).text("team"))
    assert "No care team phone number recorded" in text
    assert "Email nurses@example.org" in text and "Phone nurses@example.org" not in text


# -- 6. a legal finding whose value does not affirm it is not held ------------------------


@pytest.mark.parametrize("code", ["816301000000100", "816361000000101"])
def test_a_legal_finding_valued_false_is_not_shown_as_held(http: TestClient,
                                                            code: str) -> None:
    rec = Record(http)
    rec.put({"resourceType": "Observation", "status": "final",
             "subject": {"reference": f"Patient/{rec.pid}"},
             "code": {"coding": [{"system": SCT, "code": code, "display": "Has it"}]},
             "effectiveDateTime": "2026-02-01", "valueBoolean": False}, GP)
    said = lines(document(http, by_nhs(rec.nhs)).text("legal"))
    assert not any(x.startswith("Has it") for x in said), said
    assert any("not understood" in x and "value: false" in x for x in said), said


def test_a_legal_finding_valued_true_is_held(http: TestClient) -> None:
    rec = Record(http)
    rec.put({"resourceType": "Observation", "status": "final",
             "subject": {"reference": f"Patient/{rec.pid}"},
             "code": {"coding": [{"system": SCT, "code": "816301000000100",
                                  "display": "Has ADRT"}]},
             "effectiveDateTime": "2026-02-01", "valueBoolean": True}, GP)
    said = lines(document(http, by_nhs(rec.nhs)).text("legal"))
    assert any(x.startswith("Has ADRT") for x in said), said


# -- a third review of the fixes above --------------------------------------------------


def cpr_flag(rec: Record, text: str, partner: Any = GP) -> None:
    rec.put({"resourceType": "Flag", "status": "active",
             "subject": {"reference": f"Patient/{rec.pid}"}, "code": {"text": text},
             "period": {"start": "2026-04-01"}}, partner)


@pytest.mark.parametrize("text", ["uDNACPR in place - form in blue folder by the bed",
                                  "DNACPRs signed, see folder", "NFR - form at home",
                                  "ReSPECT form at home"])
def test_how_alerts_write_a_cpr_decision_is_recognised(http: TestClient, text: str) -> None:
    """The unified DNACPR form, a plural, "not for resuscitation" and a ReSPECT form in an
    alert's words were missed: the crew read "NO EMERGENCY CARE PLAN RECORDED"."""
    rec = Record(http, pid="flagged", nhs=valid_nhs(700))
    cpr_flag(rec, text)
    doc = document(http, by_nhs(rec.nhs))
    assert plain(headline(doc)).startswith("NO CODED CPR DECISION FOUND: READ THE ALERT")
    page = plain(http.get(by_nhs(rec.nhs), headers=PAGE).text)
    assert "NO EMERGENCY CARE PLAN" not in page and text in page


def test_the_english_word_respect_is_no_form(http: TestClient) -> None:
    rec = Record(http, pid="worded", nhs=valid_nhs(710))
    cpr_flag(rec, "Please respect her wish for quiet visits")
    assert plain(headline(document(http, by_nhs(rec.nhs)))).startswith(
        "NO EMERGENCY CARE PLAN RECORDED")


def test_an_alert_beside_a_coded_decision_is_in_the_cpr_box(http: TestClient) -> None:
    """A GP alert "DNACPR signed" beside the hospital's coded "for CPR" was shown only
    far below, under Alerts; the CPR box said "for attempted CPR" alone."""
    rec = Record(http)
    rec.cpr("attempt", "2026-01-10", ACUTE)
    cpr_flag(rec, "DNACPR signed 20 May 2026 - original form in blue folder", GP)
    doc = document(http, by_nhs(rec.nhs))
    cpr = plain(doc.text("cpr"))
    assert plain(headline(doc)).startswith("FOR ATTEMPTED CPR")  # the coded decision
    assert "DNACPR signed 20 May 2026" in cpr and "read it before acting" in cpr


def test_a_number_sent_without_a_system_is_one_to_ring(http: TestClient) -> None:
    rec = Record(http)
    for path, body in (("RelatedPerson/rp1", {
            "resourceType": "RelatedPerson", "id": "rp1", "active": True,
            "patient": {"reference": f"Patient/{rec.pid}"}, "name": [{"text": "Sam Example"}],
            "relationship": [{"text": "son"}],
            "telecom": [{"value": "07700 900111", "use": "mobile"}]}),
            ("CareTeam/ct1", {
                "resourceType": "CareTeam", "id": "ct1", "status": "active",
                "name": "Hospice at home (24h)", "subject": {"reference": f"Patient/{rec.pid}"},
                "telecom": [{"value": "0300 123 4567", "use": "work"}]})):
        assert http.put(f"/fhir/{path}", headers=FHIR_JSON, json=body).status_code == 201
    doc = document(http, by_nhs(rec.nhs))
    contacts, team = plain(doc.text("contacts")), plain(doc.text("team"))
    assert "Number 07700 900111 (mobile)" in contacts
    assert "No current phone number" not in contacts
    assert "Number 0300 123 4567 (work)" in team and "No care team phone" not in team
    # a work number is not said to answer at night
    assert "does not say which of these numbers answer 24 hours" in team
