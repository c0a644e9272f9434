"""A feed owns (may read back, change, delete) only what it wrote over the REST API. When
ingest merges another partner's record into such a resource, the resource holds that
partner's facts too and belongs to no single feed any more."""

from __future__ import annotations

import json

from security_kit import NHS, Gateway

FHIR_JSON = {"Content-Type": "application/fhir+json"}
NHS_NUMBER = "9434765919"


def _hospice_client() -> bytes:
    line = {"clientId": "H1", "nhsNumber": NHS_NUMBER,
            "name": {"first": "John", "last": "Smith"}, "dob": "1940-01-01",
            "gender": "male", "address": {"line": "1 High St", "town": "Dudley",
                                          "postcode": "DY1 4DX"},
            "admissions": [], "respect": None}
    return (json.dumps(line) + "\n").encode()


def test_a_feeds_patient_merged_with_another_partners_record_is_no_longer_its_own(
        gw: Gateway) -> None:
    gp = gw.login("gp-feed", "feed", partner="gp", org="B86001", scope="system/*.cruds")
    hospice = gw.login("hsp-feed", "feed", partner="hospice", org="RH1",
                       scope="system/*.cruds")
    made = gw.http.post("/fhir/Patient", headers={**gp, **FHIR_JSON}, json={
        "resourceType": "Patient", "name": [{"family": "Smith"}],
        "identifier": [{"system": NHS, "value": NHS_NUMBER}]})
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    loaded = gw.http.post("/ingest/hospice", content=_hospice_client(),
                          headers={**hospice, "Content-Type": "application/x-ndjson"})
    assert loaded.status_code == 200, loaded.text
    merged = json.loads(gw.repository.read("Patient", pid).body or "{}")
    assert any("hospice" in i.get("system", "") for i in merged["identifier"]), merged
    assert "tag" not in merged.get("meta", {}), merged["meta"]
    # the hospice's client id and demographics are not the GP feed's to read or change
    assert gw.http.get(f"/fhir/Patient/{pid}", headers=gp).status_code == 404
    assert gw.http.delete(f"/fhir/Patient/{pid}", headers=gp).status_code == 404
    # what the feed itself wrote stays its own
    assert gw.http.get(f"/fhir/Patient/{pid}/_history/1", headers=gp).status_code == 200
