"""The emergency summary follows a merged-away Patient's `link` (replaced-by) however R4
lets it be written: `Patient/x`, a version of it, or this server's absolute URL. A
versioned reference answered 404 "no record is known" and an absolute one summarised
the merged-away record ("no emergency care plan recorded") while the survivor held a
DNACPR. A link to another server's record is said, never summarised past."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

NHS = "https://fhir.nhs.uk/Id/nhs-number"
SCT = "http://snomed.info/sct"


def merged(client: TestClient, link: str) -> None:
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
        "link": [{"type": "replaced-by", "other": {"reference": link}}]})
    assert r.status_code in (200, 201), r.text


@pytest.mark.parametrize("link", ["Patient/new", "Patient/new/_history/1",
                                  "http://gateway.test/fhir/Patient/new"])
def test_the_survivor_is_summarised_whatever_the_links_form(client: TestClient,
                                                            link: str) -> None:
    merged(client, link)
    r = client.get(f"/fhir/Patient/$emergency-summary?identifier={NHS}|9434765919")
    assert r.status_code == 200, r.text
    document = r.json()
    composition = document["entry"][0]["resource"]
    assert composition["subject"]["reference"].endswith("/Patient/new")
    assert "NOT FOR ATTEMPTED" in composition["section"][0]["text"]["div"].upper()


def test_a_link_to_another_servers_record_is_said_not_summarised_past(
        client: TestClient) -> None:
    merged(client, "https://elsewhere.example/fhir/Patient/new")
    r = client.get(f"/fhir/Patient/$emergency-summary?identifier={NHS}|9434765919")
    assert r.status_code == 409, r.text
    assert "cannot follow" in r.json()["issue"][0]["diagnostics"]
