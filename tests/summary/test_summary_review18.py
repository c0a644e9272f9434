"""Review 18 of the emergency summary: the words that send the crew to "read the alert"
are on the page; "Record last fed" is what partners fed, not the gateway's own refresh;
places written as text; ended numbers dated as every date; a relationship's end is not
a review date."""

from __future__ import annotations

import datetime as dt
import html
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from summary_kit import GP, HOSPICE, NHS, SCT, Record, by_nhs, document, headline, valid_nhs

from fhir_gateway.fhir.repository import Repository
from fhir_gateway.summary.conflicts import refresh_all

PAGE = {"Accept": "text/html"}
ALERT_WORDS = "NO CODED CPR DECISION FOUND: READ THE ALERT"


def page(http: TestClient, nhs: str) -> str:
    resp = http.get(by_nhs(nhs), headers=PAGE)
    assert resp.status_code == 200, resp.text
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", resp.text)))


@pytest.mark.parametrize(("resource", "words"), [
    ({"resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-05-01",
      "code": {"coding": [{"system": SCT, "code": "511401000000102", "display": "Prognosis"}]},
      "valueString": "DNACPR form signed by GP 1/5/26, original at home"},
     "DNACPR form signed by GP 1/5/26, original at home"),
    ({"resourceType": "Flag", "status": "active",
      "code": {"coding": [{"system": SCT, "code": "1000000", "display": "End of life care"}],
               "text": "DNACPR in place - form in blue folder"}},
     "DNACPR in place - form in blue folder"),
    ({"resourceType": "DetectedIssue", "status": "final",
      "code": {"text": "DNACPR form seen at home"}, "detail": "Please see the record"},
     "DNACPR form seen at home"),
    # said only in what was done about the issue, or in its evidence (session 17's list)
    ({"resourceType": "DetectedIssue", "status": "final", "detail": "Form at home",
      "mitigation": [{"action": {"text": "Copy of DNACPR form given to the family"}}]},
     "Copy of DNACPR form given to the family"),
    ({"resourceType": "DetectedIssue", "status": "final", "detail": "Form at home",
      "evidence": [{"code": [{"coding": [{"system": "urn:local", "code": "E2",
                                          "display": "Signed ReSPECT form: not for CPR"}]}]}]},
     "Signed ReSPECT form: not for CPR"),
])
def test_the_alert_the_headline_points_at_shows_the_words_that_say_cpr(
        http: TestClient, resource: dict[str, Any], words: str) -> None:
    rec = Record(http)
    subject = "patient" if resource["resourceType"] == "DetectedIssue" else "subject"
    rec.put({**resource, subject: {"reference": f"Patient/{rec.pid}"}}, GP)
    doc = document(http, by_nhs(rec.nhs))
    assert ALERT_WORDS in headline(doc)
    assert words in html.unescape(doc.text("alerts"))
    assert words in html.unescape(doc.text("cpr"))
    assert words in page(http, rec.nhs)


@pytest.mark.parametrize(("resource", "words"), [
    ({"resourceType": "Flag", "status": "active",
      "code": {"coding": [{"system": "urn:local", "code": "D1", "display": "DNACPR"}],
               "text": "DNACPR withdrawn 01/05/2026 - now for full resuscitation"}},
     "DNACPR withdrawn 01/05/2026 - now for full resuscitation"),
    ({"resourceType": "DetectedIssue", "status": "final", "detail": "DNACPR form seen at home",
      "code": {"text": "DNACPR rescinded by consultant 20/05/2026: for CPR"}},
     "DNACPR rescinded by consultant 20/05/2026: for CPR"),
    # a text whose letters the line holds, saying something else
    ({"resourceType": "Flag", "status": "active",
      "code": {"coding": [{"system": "urn:local", "code": "N1", "display": "Not for CPR"}],
               "text": "for CPR"}}, "Says: for CPR"),
    ({"resourceType": "Flag", "status": "active",
      "code": {"coding": [{"system": "urn:local", "code": "W1",
                           "display": "DNACPR withdrawn - now for full resuscitation"}],
               "text": "DNACPR"}}, "Says: DNACPR"),
])
def test_an_alert_whose_line_says_cpr_still_shows_the_other_words_that_do(
        http: TestClient, resource: dict[str, Any], words: str) -> None:
    rec = Record(http)
    subject = "patient" if resource["resourceType"] == "DetectedIssue" else "subject"
    rec.put({**resource, subject: {"reference": f"Patient/{rec.pid}"}}, GP)
    assert words in page(http, rec.nhs)


def test_an_alert_whose_own_line_says_cpr_is_not_repeated(http: TestClient) -> None:
    rec = Record(http)
    rec.put({"resourceType": "Flag", "status": "active",
             "subject": {"reference": f"Patient/{rec.pid}"},
             "code": {"text": "DNACPR in place"}}, GP)
    alerts = html.unescape(document(http, by_nhs(rec.nhs)).text("alerts"))
    assert "DNACPR in place" in alerts and "Says:" not in alerts


def _written(repo: Repository, resource: dict[str, Any], partner: tuple[str, str],
             when: str) -> None:
    body = repo.update(resource, rtype=resource["resourceType"], rid=resource["id"])
    version = body.stored.version
    repo.create({"resourceType": "Provenance", "recorded": when, "target": [
        {"reference": f"{resource['resourceType']}/{resource['id']}/_history/{version}"}],
        "agent": [{"who": {"identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code",
                                          "value": partner[0]}, "display": partner[1]}}]})


def test_the_gateways_own_conflict_refresh_does_not_move_record_last_fed(
        http: TestClient) -> None:
    """A store loaded before the stored conflict issue existed, then refreshed (as after an
    upgrade): the issue written now is the gateway's, not a partner's delivery."""
    repo = http.app.state.fhir_router.repository
    fed = "2026-05-01T09:00:00.000000Z"
    before = Repository(repo.engine, derivations=(), clock=lambda: fed)
    nhs = valid_nhs(500)
    _written(before, {"resourceType": "Patient", "id": "lf", "name": [{"family": "Stale"}],
                      "identifier": [{"system": NHS, "value": nhs}]}, GP, "2026-05-01T09:00:00Z")
    for rid, code, who in (("lf-gp", "450476008", GP), ("lf-hos", "450475007", HOSPICE)):
        _written(before, {"resourceType": "Observation", "id": rid, "status": "final",
                          "subject": {"reference": "Patient/lf"}, "effectiveDateTime": "2026-04-30",
                          "code": {"coding": [{"system": SCT, "code": "304251008"}]},
                          "valueCodeableConcept": {"coding": [{"system": SCT, "code": code}]}},
                 who, "2026-05-01T09:00:00Z")
    said = "Record last fed 1 May 2026 10:00 BST."
    assert said in page(http, nhs)
    assert refresh_all(repo, today=lambda: dt.date(2026, 6, 1)).created == 1
    assert said in page(http, nhs)


@pytest.mark.parametrize(("code", "shown"), [
    ("preferred-place-of-death", "Preferred place of death: Home, with family"),
    ("place-of-death", "Place of death: Home, with family"),
])
def test_a_place_written_as_text_is_shown_in_the_partners_words(
        http: TestClient, code: str, shown: str) -> None:
    from fhir_gateway.summary import terms as t

    rec = Record(http)
    rec.put({"resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-05-01",
             "subject": {"reference": f"Patient/{rec.pid}"},
             "code": {"coding": [{"system": t.EOL_OBSERVATION, "code": code}]},
             "valueString": "Home, with family"}, GP)
    assert shown in page(http, rec.nhs)


def test_an_ended_number_is_dated_on_the_london_day(http: TestClient) -> None:
    rec = Record(http)
    rec.put({"resourceType": "RelatedPerson", "active": True,
             "patient": {"reference": f"Patient/{rec.pid}"}, "name": [{"text": "Jo Daughter"}],
             "telecom": [{"system": "phone", "value": "07700 900001",
                          "period": {"end": "2026-05-30T23:30:00Z"}},
                         {"system": "phone", "value": "07700 900002"}]}, GP)
    shown = page(http, rec.nhs)
    assert "Not current (ended 31 May 2026): Phone 07700 900001" in shown


def test_a_relationship_that_ends_later_is_not_a_review_date(http: TestClient) -> None:
    rec = Record(http)
    rec.put({"resourceType": "RelatedPerson", "active": True,
             "patient": {"reference": f"Patient/{rec.pid}"}, "name": [{"text": "Lee Attorney"}],
             "relationship": [{"coding": [{
                 "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                 "code": "HPOWATT"}]}],
             "telecom": [{"system": "phone", "value": "07700 900003"}],
             "period": {"start": "2025-01-01", "end": "2027-03-31"}}, GP)
    shown = page(http, rec.nhs)
    assert "relationship ends 31 Mar 2027" in shown
    assert "review by 31 Mar 2027" not in shown
