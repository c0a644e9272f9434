"""The emergency summary follows a merged-away Patient's `link` (replaced-by) written as
`Patient/x` or a version of it (which answered 404 "no record is known"). A link written
any other way (an absolute URL, an identifier) is followed by neither ingestion nor the
summary, so they agree where the record is; the summary says the record was merged and
never summarises it in the survivor's place (it did: "no emergency care plan recorded"
while the survivor held a DNACPR)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

NHS = "https://fhir.nhs.uk/Id/nhs-number"
SCT = "http://snomed.info/sct"


def merged(client: TestClient, link: str | dict[str, Any]) -> None:
    client.put("/fhir/Patient/new", json={"resourceType": "Patient", "id": "new",
                                          "name": [{"family": "Survivor"}]})
    client.post("/fhir/Observation", json={
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": SCT, "code": "304251008"}]},
        "valueCodeableConcept": {"coding": [{"system": SCT, "code": "450476008"}]},
        "subject": {"reference": "Patient/new"}, "effectiveDateTime": "2026-01-10"})
    r = client.put("/fhir/Patient/old", json={
        "resourceType": "Patient", "id": "old", "active": False,
        "identifier": [{"system": NHS, "value": "9434765919"}],
        "name": [{"family": "Survivor"}],
        "link": [{"type": "replaced-by",
                  "other": {"reference": link} if isinstance(link, str) else link}]})
    assert r.status_code in (200, 201), r.text


@pytest.mark.parametrize("link", ["Patient/new", "Patient/new/_history/1"])
def test_the_survivor_is_summarised_whatever_the_links_form(client: TestClient,
                                                            link: str) -> None:
    merged(client, link)
    r = client.get(f"/fhir/Patient/$emergency-summary?identifier={NHS}|9434765919")
    assert r.status_code == 200, r.text
    document = r.json()
    composition = document["entry"][0]["resource"]
    assert composition["subject"]["reference"].endswith("/Patient/new")
    assert "NOT FOR ATTEMPTED" in composition["section"][0]["text"]["div"].upper()


@pytest.mark.parametrize("link", [
    "https://elsewhere.example/fhir/Patient/new", "http://gateway.test/fhir/Patient/new",
    {"identifier": {"system": NHS, "value": "9990000018"}}])
def test_a_link_no_one_follows_is_said_not_summarised_past(
        client: TestClient, link: str | dict[str, Any]) -> None:
    merged(client, link)
    r = client.get(f"/fhir/Patient/$emergency-summary?identifier={NHS}|9434765919")
    assert r.status_code == 409, r.text
    assert "cannot follow" in r.json()["issue"][0]["diagnostics"]


def test_a_merged_away_record_keeping_the_number_is_not_a_second_holder(
        client: TestClient) -> None:
    """The merged-away record kept its NHS number and the survivor was given it too: the
    summary counted two records holding the number and refused (409), showing no DNACPR."""
    merged(client, "Patient/new")
    r = client.put("/fhir/Patient/new", json={
        "resourceType": "Patient", "id": "new", "name": [{"family": "Survivor"}],
        "identifier": [{"system": NHS, "value": "9434765919"}]})
    assert r.status_code == 200, r.text
    s = client.get(f"/fhir/Patient/$emergency-summary?identifier={NHS}|9434765919")
    assert s.status_code == 200, s.text
    composition = s.json()["entry"][0]["resource"]
    assert composition["subject"]["reference"].endswith("/Patient/new")
    assert "NOT FOR ATTEMPTED" in composition["section"][0]["text"]["div"].upper()
