"""Review 18 of search and the stores: a criterion of hundreds of references (a page's
`_revinclude`, the summary's Provenance read) is one query SQLite accepts; `_sort` keys
are bounded; a reference type modifier that names no target type is refused."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from fhir_gateway.fhir.repository import Repository

NHS = "https://fhir.nhs.uk/Id/nhs-number"
MANY = 600  # SQLite's expression depth limit (1,000) fell at about 500 OR-ed references


def _repository(client: TestClient) -> Repository:
    return client.app.state.fhir_router.repository


def test_a_revinclude_of_hundreds_of_resources_is_answered(client: TestClient) -> None:
    repo = _repository(client)
    for i in range(MANY):
        repo.update({"resourceType": "Patient", "id": f"p{i}"}, rtype="Patient", rid=f"p{i}")
        repo.update({"resourceType": "Encounter", "id": f"e{i}", "status": "finished",
                     "class": {"code": "AMB"}, "subject": {"reference": f"Patient/p{i}"}},
                    rtype="Encounter", rid=f"e{i}")
    found = client.get(f"/fhir/Patient?_count={MANY}&_revinclude=Encounter:subject")
    assert found.status_code == 200, found.text
    modes = [e["search"]["mode"] for e in found.json()["entry"]]
    assert modes.count("match") == MANY and modes.count("include") == MANY


def test_the_summary_of_a_record_with_hundreds_of_alerts_is_answered(
        client: TestClient) -> None:
    repo = _repository(client)
    repo.update({"resourceType": "Patient", "id": "p1",
                 "identifier": [{"system": NHS, "value": "9434765919"}]},
                rtype="Patient", rid="p1")
    for i in range(MANY):  # no Provenance in the compartment: each is looked up
        repo.update({"resourceType": "Flag", "id": f"f{i}", "status": "active",
                     "code": {"text": f"Alert {i}"}, "subject": {"reference": "Patient/p1"}},
                    rtype="Flag", rid=f"f{i}")
    summary = client.get("/fhir/Patient/p1/$emergency-summary")
    assert summary.status_code == 200, summary.text
    assert "Alert 599" in summary.text


def test_a_repeated_sort_key_adds_nothing_and_distinct_keys_are_bounded(
        client: TestClient) -> None:
    repo = _repository(client)
    for i, born in enumerate(("1950-01-01", "1940-01-01", "1960-01-01")):
        repo.update({"resourceType": "Patient", "id": f"p{i}", "birthDate": born,
                     "name": [{"family": f"F{i}"}]}, rtype="Patient", rid=f"p{i}")
    keys = ",".join(["birthdate", "-birthdate", "family"] * 60)
    first = client.get(f"/fhir/Patient?_sort={keys}&_count=1")
    assert first.status_code == 200, first.text
    ids = [first.json()["entry"][0]["resource"]["id"]]
    link = next(x["url"] for x in first.json()["link"] if x["relation"] == "next")
    while link:
        page = client.get(link).json()
        ids += [e["resource"]["id"] for e in page.get("entry", [])]
        link = next((x["url"] for x in page["link"] if x["relation"] == "next"), None)
    assert ids == ["p1", "p0", "p2"]  # birthdate ascending: the repeats said nothing
    six = client.get("/fhir/Patient?_sort=birthdate,family,given,gender,address,_id")
    assert six.status_code == 400, six.text
    assert six.json()["issue"][0]["code"] == "too-costly"


@pytest.mark.parametrize("query", [
    "Patient?general-practitioner:Foo=g1",
    "Patient?general-practitioner:Observation=g1",
    "Patient?_has:Observation:subject:subject:Patient.name=ahmed",
])
def test_a_type_modifier_naming_no_target_type_is_refused(client: TestClient,
                                                          query: str) -> None:
    refused = client.get(f"/fhir/{query}")
    assert refused.status_code == 400, refused.text


def test_a_type_modifier_naming_a_target_type_still_works(client: TestClient) -> None:
    repo = _repository(client)
    repo.update({"resourceType": "Patient", "id": "p1",
                 "generalPractitioner": [{"reference": "Practitioner/g1"}]},
                rtype="Patient", rid="p1")
    found = client.get("/fhir/Patient?general-practitioner:Practitioner=g1").json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["p1"]
