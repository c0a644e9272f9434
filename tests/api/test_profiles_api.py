"""Profiles over the API: 422 with every issue, $validate, supportedProfile, and the
conformance resources readable and searchable."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from fhir_gateway.fhir.conformance import publish
from fhir_gateway.fhir.repository import Repository
from fhir_gateway.store.base import StoreEngine
from gatewaykit import FHIR_JSON

EXAMPLES = Path(__file__).resolve().parents[1] / "validation" / "examples"
BASE = "https://fhir.shared-care-record.example/StructureDefinition/"


def example(name: str) -> dict[str, Any]:
    body = json.loads((EXAMPLES / f"{name}.json").read_text())
    body.pop("id", None)
    return body


def broken_cpr() -> dict[str, Any]:
    cpr = example("Observation-cpr")
    cpr["valueCodeableConcept"]["coding"][0]["code"] = "385432009"  # not a CPR decision
    cpr["effectivePeriod"] = {"start": cpr.pop("effectiveDateTime")}  # a date only
    return cpr


def test_write_breaking_a_named_profile_is_422_with_every_issue(client: TestClient) -> None:
    r = client.post("/fhir/Observation", json=broken_cpr(), headers=FHIR_JSON)
    assert r.status_code == 422
    issues = r.json()["issue"]
    paths = {e for i in issues for e in i.get("expression", [])}
    assert any(p.startswith("Observation.effective") for p in paths), issues
    assert any(p.startswith("Observation.value") for p in paths), issues
    assert len(client.get("/fhir/Observation/_history").json()["entry"]) == 0
    ok = client.post("/fhir/Observation", json=example("Observation-cpr"), headers=FHIR_JSON)
    assert ok.status_code == 201, ok.text


def test_bad_nhs_number_under_the_patient_profile(client: TestClient) -> None:
    patient = example("Patient-scr")
    nhs = next(i for i in patient["identifier"]
               if i["system"] == "https://fhir.nhs.uk/Id/nhs-number")
    nhs["value"] = "9434765918"  # wrong check digit
    r = client.post("/fhir/Patient", json=patient, headers=FHIR_JSON)
    assert r.status_code == 422
    assert any("Patient.identifier" in e for i in r.json()["issue"]
               for e in i.get("expression", []))


def test_unknown_profile_is_a_warning_not_a_rejection(client: TestClient) -> None:
    body = {"resourceType": "Patient", "meta": {"profile": [
        "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]}}
    assert client.post("/fhir/Patient", json=body, headers=FHIR_JSON).status_code == 201
    out = client.post("/fhir/Patient/$validate", json=body, headers=FHIR_JSON).json()
    assert errors(out) == []
    assert any("us-core-patient" in i["diagnostics"] for i in out["issue"])


def errors(outcome: dict[str, Any]) -> list[dict[str, Any]]:
    return [i for i in outcome["issue"] if i["severity"] in ("error", "fatal")]


def test_validate_type_and_instance_level(client: TestClient) -> None:
    bad = client.post("/fhir/Observation/$validate", json=broken_cpr(), headers=FHIR_JSON)
    assert bad.status_code == 200
    assert all(i["severity"] in ("error", "warning") for i in bad.json()["issue"])
    assert len([i for i in bad.json()["issue"] if i["severity"] == "error"]) >= 2
    good = client.post("/fhir/Observation/$validate", json=example("Observation-cpr"),
                       headers=FHIR_JSON).json()
    assert errors(good) == []  # (dom-6, "should have narrative", stays a warning)
    # a profile named as a parameter, inside Parameters
    plain = example("Observation-cpr")
    plain.pop("meta")
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": broken_cpr() | {"meta": {}}},
        {"name": "profile", "valueUri": BASE + "SCR-CPRDecision"}]}
    named = client.post("/fhir/Observation/$validate", json=params, headers=FHIR_JSON).json()
    assert any(i["severity"] == "error" for i in named["issue"])
    # instance level: the stored resource
    rid = client.post("/fhir/Observation", json=plain, headers=FHIR_JSON).json()["id"]
    stored = client.get(f"/fhir/Observation/{rid}/$validate?profile={BASE}SCR-CPRDecision")
    assert stored.status_code == 200 and errors(stored.json()) == []
    structure = client.post("/fhir/Observation/$validate",
                            json={"resourceType": "Observation", "status": 5},
                            headers=FHIR_JSON).json()
    assert any(i["code"] in ("structure", "value", "required") for i in structure["issue"])


def test_capability_names_supported_profiles(client: TestClient) -> None:
    cs = client.get("/fhir/metadata").json()
    by_type = {r["type"]: r for r in cs["rest"][0]["resource"]}
    assert BASE + "SCR-CPRDecision" in by_type["Observation"]["supportedProfile"]
    assert by_type["Patient"]["supportedProfile"] == [BASE + "SCR-Patient"]
    assert {"validate", "everything"} <= {o["name"] for o in by_type["Patient"]["operation"]}


def test_conformance_resources_are_published_readable_and_searchable(
        client: TestClient, engine: StoreEngine) -> None:
    # The app published them at start-up; publishing again changes nothing.
    assert publish(Repository(engine)) == 0
    sd = client.get("/fhir/StructureDefinition?url=" + BASE + "SCR-CPRDecision").json()
    assert [e["resource"]["id"] for e in sd["entry"]] == ["SCR-CPRDecision"]
    assert sd["entry"][0]["resource"]["snapshot"]["element"]
    vs = client.get("/fhir/ValueSet?name=SCRCPRDecisionValue").json()
    assert len(vs["entry"]) == 1
    cm = client.get("/fhir/ConceptMap?_count=100").json()
    assert len(cm["entry"]) >= 10
    cs = client.get("/fhir/CodeSystem/death-location-type")
    assert cs.status_code == 200
    assert copy.deepcopy(cs.json())["url"].endswith("death-location-type")


def test_the_emergency_summary_operation_definition_is_published_and_cited(
        client: TestClient) -> None:
    """The CapabilityStatement's `definition` for $emergency-summary resolves to a valid
    R4 OperationDefinition the gateway serves, describing what the operation does."""
    from fhir.resources.R4B.operationdefinition import OperationDefinition

    cs = client.get("/fhir/metadata").json()
    patient = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Patient")
    (op,) = [o for o in patient["operation"] if o["name"] == "emergency-summary"]
    found = client.get("/fhir/OperationDefinition", params={"url": op["definition"]}).json()
    (entry,) = found["entry"]
    definition = entry["resource"]
    OperationDefinition.model_validate({k: v for k, v in definition.items() if k != "meta"})
    assert (definition["code"], definition["resource"], definition["type"],
            definition["instance"], definition["affectsState"]) == \
        ("emergency-summary", ["Patient"], True, True, False)
    assert {p["name"]: p["use"] for p in definition["parameter"]} == \
        {"identifier": "in", "return": "out"}


def test_the_review_date_extension_is_defined_and_sliced_on_cpr_decisions(
        client: TestClient) -> None:
    """The review date the emergency summary reads on a CPR decision has a published
    definition, and the CPR decision profile names it."""
    from fhir_gateway.summary.terms import REVIEW_DATE_EXTENSION

    found = client.get("/fhir/StructureDefinition", params={"url": REVIEW_DATE_EXTENSION})
    (entry,) = found.json()["entry"]
    assert entry["resource"]["type"] == "Extension"
    assert [c["expression"] for c in entry["resource"]["context"]] == ["Observation"]
    cpr = client.get("/fhir/StructureDefinition/SCR-CPRDecision").json()
    slices = [e for e in cpr["differential"]["element"]
              if e.get("sliceName") == "reviewDate"]
    assert slices and slices[0]["type"][0]["profile"] == [REVIEW_DATE_EXTENSION]


def test_validate_with_malformed_parameters_is_400_not_500(client: TestClient) -> None:
    for body, where in (({"resourceType": "Parameters", "parameter": 5}, "parameter"),
                        ({"resourceType": "Parameters", "parameter": [
                            {"name": "profile", "valueUri": 5}]}, "profile")):
        resp = client.post("/fhir/Patient/$validate", json=body, headers=FHIR_JSON)
        assert resp.status_code == 400, resp.text
        assert resp.json()["issue"][0]["expression"] == [where]
