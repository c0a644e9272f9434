"""What a CPR decision must hold for a crew to be told it (profiles/input/fsh): one
decision, never both (scr-cpr-1), about a stored Patient the summary can find
(scr-subj-1). Each was accepted before, and the summary then said FOR ATTEMPTED CPR, or
nothing at all, for a record holding a DNACPR."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

CPR = "https://fhir.shared-care-record.example/StructureDefinition/SCR-CPRDecision"
PLACE = "https://fhir.shared-care-record.example/StructureDefinition/SCR-PreferredPlace"
SCT = "http://snomed.info/sct"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
NOT_FOR_CPR = {"system": SCT, "code": "450476008"}
FOR_CPR = {"system": SCT, "code": "450475007"}


def decision(value: list[dict[str, str]], subject: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Observation", "meta": {"profile": [CPR]}, "status": "final",
            "code": {"coding": [{"system": SCT, "code": "304251008"}]}, "subject": subject,
            "effectiveDateTime": "2026-01-10", "valueCodeableConcept": {"coding": value}}


@pytest.fixture
def patient(client: TestClient) -> str:
    made = client.post("/fhir/Patient", json={
        "resourceType": "Patient", "identifier": [{"system": NHS, "value": "9434765919"}]})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def test_a_decision_for_and_not_for_cpr_at_once_is_refused(client: TestClient,
                                                           patient: str) -> None:
    answer = client.post("/fhir/Observation", json=decision(
        [FOR_CPR, NOT_FOR_CPR], {"reference": f"Patient/{patient}"}))
    assert answer.status_code == 422, answer.text
    assert "(scr-cpr-1)" in answer.text
    # one decision, however many codings say it, is fine
    one = client.post("/fhir/Observation", json=decision(
        [NOT_FOR_CPR, dict(NOT_FOR_CPR)], {"reference": f"Patient/{patient}"}))
    assert one.status_code == 201, one.text


@pytest.mark.parametrize("subject", [
    {"reference": "#p1"},
    {"identifier": {"system": NHS, "value": "9434765919"}},
    {"display": "Ann Example"},
])
def test_a_decision_must_be_about_a_stored_patient(client: TestClient, patient: str,
                                                   subject: dict[str, Any]) -> None:
    body = decision([NOT_FOR_CPR], subject)
    if subject.get("reference") == "#p1":
        body["contained"] = [{"resourceType": "Patient", "id": "p1",
                              "identifier": [{"system": NHS, "value": "9434765919"}]}]
    answer = client.post("/fhir/Observation", json=body)
    assert answer.status_code == 422, answer.text
    assert "(scr-subj-1)" in answer.text
    checked = client.post("/fhir/Observation/$validate", json=body)
    assert "(scr-subj-1)" in checked.text


def test_a_preferred_place_must_be_about_a_stored_patient(client: TestClient) -> None:
    place = {"resourceType": "Observation", "meta": {"profile": [PLACE]}, "status": "final",
             "code": {"coding": [{"system": "https://fhir.shared-care-record.example/"
                                  "CodeSystem/end-of-life-observation",
                                  "code": "preferred-place-of-death"}]},
             "subject": {"identifier": {"system": NHS, "value": "9434765919"}},
             "valueCodeableConcept": {"coding": [{
                 "system": "https://fhir.shared-care-record.example/CodeSystem/"
                           "death-location-type",
                 "code": "20"}]}}
    answer = client.post("/fhir/Observation", json=place)
    assert answer.status_code == 422, answer.text
    assert "(scr-subj-1)" in answer.text
