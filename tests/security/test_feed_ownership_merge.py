"""A feed owns (may read back, change, delete) only what it wrote over the REST API. When
ingest merges another partner's record into such a resource, the resource holds that
partner's facts too and belongs to no single feed any more."""

from __future__ import annotations

import json

from fhir_gateway.store.query import IndexQuery
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


N1, N2 = "9434765919", "7731322815"


def _hospice_client_h77() -> bytes:
    line = {"clientId": "H77", "nhsNumber": N2,
            "name": {"first": "John", "last": "Smith"}, "dob": "1940-01-01",
            "gender": "male", "address": {"line": "9 Hospice Lane", "town": "Dudley",
                                          "postcode": "DY1 4DX"},
            "admissions": [], "respect": None}
    return (json.dumps(line) + "\n").encode()


def _a40() -> bytes:
    when = "20261120090000+0000"
    return ("\r".join([
        f"MSH|^~\\&|PAS|RXA|SCR|GATEWAY|{when}||ADT^A40^ADT_A39|M40|P|2.4",
        f"EVN|A40|{when}",
        f"PID|1||{N1}^^^NHS^NH~RXA1^^^RXA^MR||SMITH^JOHN||19400101|M",
        f"MRG|{N2}^^^NHS^NH",
    ]) + "\r").encode()


def test_a_feeds_patient_that_an_a40_merges_another_partners_record_into_is_released(
        gw: Gateway) -> None:
    """The A40 is the feed's own partner's, but the record it merges away holds the
    hospice's client id and address: the survivor holds them now, so it is no one
    feed's to read back or change."""
    acute = gw.login("acute-feed", "feed", partner="acute", org="RXA", scope="system/*.cruds")
    hospice = gw.login("hsp-feed", "feed", partner="hospice", org="X9H01",
                       scope="system/*.cruds")
    made = gw.http.post("/fhir/Patient", headers={**acute, **FHIR_JSON}, json={
        "resourceType": "Patient", "name": [{"family": "Smith", "given": ["John"]}],
        "birthDate": "1940-01-01", "identifier": [{"system": NHS, "value": N1}]})
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    for partner, headers, body, kind in (
            ("hospice", hospice, _hospice_client_h77(), "application/x-ndjson"),
            ("acute", acute, _a40(), "application/hl7-v2")):
        loaded = gw.http.post(f"/ingest/{partner}", content=body,
                              headers={**headers, "Content-Type": kind})
        assert loaded.status_code == 200 and loaded.json()["rejected"] == 0, loaded.text
    survivor = json.loads(gw.repository.read("Patient", pid).body or "{}")
    assert "H77" in json.dumps(survivor)  # the merge happened
    assert "tag" not in survivor.get("meta", {}), survivor["meta"]
    assert gw.http.get(f"/fhir/Patient/{pid}", headers=acute).status_code == 404


CPR_KEY = "https://fhir.shared-care-record.example/Id/hospice/cpr-decision"


def _hospice_form(cpr: str | None, completed: str = "2026-01-05") -> bytes:
    line = json.loads(_hospice_client())
    line["respect"] = [] if cpr is None else [{
        "formId": "RSP-H1", "version": "3", "completedOn": completed, "cpr": cpr,
        "careFocus": "comfort", "preferredPlaceOfCare": "home", "recommendations": "x",
        "capacity": "has-capacity", "contacts": [],
        "clinician": {"name": "Dr A", "gmc": "1234567"}}]
    return (json.dumps(line) + "\n").encode()


def test_another_feeds_resource_with_the_same_business_key_is_left_alone(
        gw: Gateway) -> None:
    """Ingest found "its" resource by business identifier among every resource: an
    Observation another partner's feed wrote over REST with the hospice's CPR key was
    merged into (taken from that feed), then blocked the hospice's next form ("2
    Observation resources hold ...": the crew kept seeing the old decision), and was
    deleted when the hospice withdrew its form."""
    acute = gw.login("acute-feed", "feed", partner="acute", org="RXA", scope="system/*.cruds")
    hospice = gw.login("hsp-feed", "feed", partner="hospice", org="X9H01",
                       scope="system/*.cruds")
    ndjson = {**hospice, "Content-Type": "application/x-ndjson"}
    assert gw.http.post("/ingest/hospice", content=_hospice_client(),
                        headers=ndjson).status_code == 200
    (patient,) = gw.repository.find(IndexQuery(rtype="Patient")).rows
    pid = patient.rid
    theirs = gw.http.post("/fhir/Observation", headers={**acute, **FHIR_JSON}, json={
        "resourceType": "Observation", "status": "final",
        "identifier": [{"system": CPR_KEY, "value": "H1"}],
        "code": {"text": "a note"}, "subject": {"reference": f"Patient/{pid}"}})
    assert theirs.status_code == 201, theirs.text
    oid = theirs.json()["id"]

    def hospice_cpr() -> list[str]:
        rows = gw.repository.find(IndexQuery(rtype="Observation")).rows
        return [o["valueCodeableConcept"]["coding"][0]["code"] for r in rows
                if (o := json.loads(r.body or "{}")).get("id") != oid
                and "304251008" in json.dumps(o.get("code"))]

    for cpr, completed in (("not-attempt", "2026-01-05"), ("attempt", "2026-02-01")):
        loaded = gw.http.post("/ingest/hospice", content=_hospice_form(cpr, completed),
                              headers=ndjson)
        assert loaded.status_code == 200 and loaded.json()["rejected"] == 0, loaded.text
        assert hospice_cpr() == [{"not-attempt": "450476008", "attempt": "450475007"}[cpr]]
        mine = gw.http.get(f"/fhir/Observation/{oid}", headers=acute)
        assert mine.status_code == 200 and mine.json()["code"] == {"text": "a note"}
    withdrawn = gw.http.post("/ingest/hospice", content=_hospice_form(None), headers=ndjson)
    assert withdrawn.status_code == 200, withdrawn.text
    assert hospice_cpr() == []
    assert gw.http.get(f"/fhir/Observation/{oid}", headers=acute).status_code == 200
