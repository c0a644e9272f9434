"""_summary (R4 3.1.1.5.8) and _elements (3.1.1.5.9): a subset of each match, tagged
SUBSETTED; _summary=count returns the total and no entries; _summary=false the whole."""

from __future__ import annotations

from typing import Any

from eol_search_kit import (
    LOINC,
    NOT_FOR_CPR,
    SUBSETTED,
    bundle,
    create,
    entries,
    patient,
    ref,
    resus_status,
)
from fastapi.testclient import TestClient

NARRATIVE = {"status": "generated",
             "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Grace Okafor</div>"}


def seed_patient(client: TestClient) -> dict[str, Any]:
    return create(client, {
        "resourceType": "Patient", "text": NARRATIVE,
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
        "active": True, "name": [{"family": "Okafor", "given": ["Grace"]}],
        "gender": "female", "birthDate": "1938-03-14", "maritalStatus": {"text": "Widowed"},
        "contact": [{"name": {"family": "Okafor", "given": ["Adaeze"]},
                     "telecom": [{"system": "phone", "value": "07700 900456"}]}],
        "communication": [{"language": {"text": "Igbo"}, "preferred": True}]})


def only(b: dict[str, Any]) -> dict[str, Any]:
    (entry,) = entries(b, "match")
    return entry["resource"]


def subsetted(resource: dict[str, Any]) -> bool:
    return any((t.get("system"), t.get("code")) == SUBSETTED
               for t in resource.get("meta", {}).get("tag", []))


def test_summary_true_keeps_summary_elements(client: TestClient) -> None:
    stored = seed_patient(client)
    r = only(bundle(client, "Patient", {"_id": stored["id"], "_summary": "true"}))
    assert set(r) == {"resourceType", "id", "meta", "identifier", "active", "name", "gender",
                      "birthDate"}
    assert subsetted(r)
    assert r["meta"]["versionId"] == stored["meta"]["versionId"]
    assert r["meta"]["lastUpdated"] == stored["meta"]["lastUpdated"]


def test_summary_text_and_data(client: TestClient) -> None:
    stored = seed_patient(client)
    r = only(bundle(client, "Patient", {"_id": stored["id"], "_summary": "text"}))
    assert set(r) == {"resourceType", "id", "meta", "text"} and subsetted(r)
    r = only(bundle(client, "Patient", {"_id": stored["id"], "_summary": "data"}))
    assert set(r) == set(stored) - {"text"} and subsetted(r)
    r = only(bundle(client, "Patient", {"_id": stored["id"], "_summary": "false"}))
    assert r == stored and not subsetted(r)


def test_summary_text_keeps_top_level_mandatory_elements(client: TestClient) -> None:
    # R4 3.1.1.5.8: _summary=text returns "only the text element, the id element, the meta
    # element, and only top-level mandatory elements": Observation.status and .code (1..1)
    grace = patient(client, "Okafor", "Grace")
    obs = create(client, {"resourceType": "Observation", "status": "final", "text": NARRATIVE,
                          "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
                          "subject": ref("Patient", grace),
                          "valueQuantity": {"value": 52.3, "unit": "kg"}})
    r = only(bundle(client, "Observation", {"_id": obs["id"], "_summary": "text"}))
    assert set(r) == {"resourceType", "id", "meta", "text", "status", "code"}


def test_elements_keeps_listed_and_mandatory_elements(client: TestClient) -> None:
    stored = seed_patient(client)
    r = only(bundle(client, "Patient", {"_id": stored["id"], "_elements": "name,birthDate"}))
    assert set(r) == {"resourceType", "id", "meta", "name", "birthDate"} and subsetted(r)
    assert r["name"] == stored["name"]
    r = only(bundle(client, "Patient", {"_id": stored["id"], "_elements": "contact"}))
    assert set(r) == {"resourceType", "id", "meta", "contact"}


def test_elements_choice_type_by_its_base_name(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    obs = resus_status(client, grace, NOT_FOR_CPR, "2026-05-10T09:30:00Z")
    r = only(bundle(client, "Observation", {"_id": obs, "_elements": "value,status,code"}))
    assert set(r) == {"resourceType", "id", "meta", "status", "code", "valueCodeableConcept"}
    assert subsetted(r)


def test_elements_adds_mandatory_elements_not_asked_for(client: TestClient) -> None:
    # R4 3.1.1.5.9: "Servers SHOULD always return mandatory elements whether they are
    # requested or not" (and fhir/subsetting.py says it does): Observation.code is 1..1
    grace = patient(client, "Okafor", "Grace")
    obs = resus_status(client, grace, NOT_FOR_CPR, "2026-05-10T09:30:00Z")
    r = only(bundle(client, "Observation", {"_id": obs, "_elements": "subject"}))
    assert set(r) == {"resourceType", "id", "meta", "status", "code", "subject"}
