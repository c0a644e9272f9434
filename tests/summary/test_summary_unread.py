"""A current record the summary reads by its codes alone, coded in a way it does not know,
that says CPR in words (a plan under a partner's local category, "DNR" under a local
code): it was dropped unseen, and the summary said no emergency care plan was recorded.
It is an alert now, and the headline sends the crew to it."""

from __future__ import annotations

import html
from typing import Any

import pytest
from fastapi.testclient import TestClient
from summary_kit import GP, HOSPICE, Record, by_nhs, document, headline

ALERT_WORDS = "NO CODED CPR DECISION FOUND: READ THE ALERT"
NO_PLAN = "NO EMERGENCY CARE PLAN RECORDED"
LOCAL = "https://partner.example/CodeSystem/local"

PLAN: dict[str, Any] = {
    "resourceType": "CarePlan", "status": "active", "intent": "plan",
    "created": "2026-10-01",
    "category": [{"coding": [{"system": LOCAL, "code": "EOL"}], "text": "End of life plan"}],
    "description": "Not for CPR - DNACPR form kept at home"}
OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation", "status": "final", "effectiveDateTime": "2026-10-02",
    "code": {"coding": [{"system": LOCAL, "code": "RS"}], "text": "Resus status"},
    "valueString": "DNR"}
CONSENT: dict[str, Any] = {
    "resourceType": "Consent", "status": "active", "dateTime": "2026-10-03",
    "scope": {"coding": [{"system": LOCAL, "code": "treat"}], "text": "Treatment"},
    "category": [{"text": "Do not attempt resuscitation directive"}]}


def _about(resource: dict[str, Any], rec: Record) -> dict[str, Any]:
    subject = "patient" if resource["resourceType"] == "Consent" else "subject"
    return {**resource, subject: {"reference": f"Patient/{rec.pid}"}}


@pytest.mark.parametrize(("resource", "words"), [
    (PLAN, "Not for CPR - DNACPR form kept at home"),
    (OBSERVATION, "DNR"),
    (CONSENT, "Do not attempt resuscitation directive"),
])
def test_a_record_coded_locally_that_says_cpr_sends_the_crew_to_it(
        http: TestClient, resource: dict[str, Any], words: str) -> None:
    rec = Record(http)
    rec.put(_about(resource, rec), HOSPICE)
    doc = document(http, by_nhs(rec.nhs))
    assert ALERT_WORDS in headline(doc) and NO_PLAN not in headline(doc)
    assert words in html.unescape(doc.text("cpr"))
    assert words in html.unescape(doc.text("alerts"))
    assert "codes the summary does not read" in html.unescape(doc.text("alerts"))
    assert [c["resourceType"] for c in doc.cited("alerts")] == [resource["resourceType"]]


@pytest.mark.parametrize("resource", [
    {**PLAN, "status": "completed"},  # no longer current
    {**PLAN, "description": "Comfort care at home"},  # says nothing of CPR
    {**OBSERVATION, "status": "entered-in-error"},
    {**CONSENT, "status": "inactive"},
])
def test_one_not_current_or_not_saying_cpr_changes_nothing(
        http: TestClient, resource: dict[str, Any]) -> None:
    rec = Record(http)
    rec.put(_about(resource, rec), GP)
    doc = document(http, by_nhs(rec.nhs))
    assert NO_PLAN in headline(doc)
    assert "codes the summary does not read" not in html.unescape(doc.text("alerts"))


def test_beside_a_coded_decision_it_is_pointed_to_not_chosen(http: TestClient) -> None:
    rec = Record(http)
    rec.cpr("attempt", "2026-09-01", GP)
    rec.put(_about(PLAN, rec), HOSPICE)
    doc = document(http, by_nhs(rec.nhs))
    assert "FOR ATTEMPTED CPR" in headline(doc)
    assert "An alert also mentions CPR" in headline(doc)
    assert "DNACPR form kept at home" in html.unescape(doc.text("cpr"))
