"""Shared helpers of the search conformance suite (tests/search/test_search_*.py).

Every search goes through HTTP on the `client` fixture (SQLite file and mongomock), with
its parameters URL-encoded by the client, so values reach the gateway exactly as written.
Helpers assert the status they expect and hand back ids, so tests compare exact sets
(or, with `_sort`, exact lists) of ids.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from gatewaykit import FHIR_JSON

BASE = "http://gateway.test/fhir"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
GMC = "https://fhir.hl7.org.uk/Id/gmc-number"
SCT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_CATEGORY = "http://terminology.hl7.org/CodeSystem/consentcategorycodes"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
SUBSETTED = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "SUBSETTED")
RESUS_STATUS = "304251008"  # SNOMED CT: Resuscitation status
NOT_FOR_CPR = "450476008"  # SNOMED CT: Not for attempted cardiopulmonary resuscitation
FOR_CPR = "450475007"  # SNOMED CT: For attempted cardiopulmonary resuscitation
LENIENT = {"Prefer": "handling=lenient"}
STRICT = {"Prefer": "handling=strict"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}

Params = list[tuple[str, str]] | dict[str, str]


def create(client: TestClient, resource: dict[str, Any]) -> dict[str, Any]:
    """POST a resource; the stored resource as the server returned it (id, meta)."""
    r = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    return r.json()


def make(client: TestClient, resource: dict[str, Any]) -> str:
    """POST a resource; its server-assigned id."""
    return create(client, resource)["id"]


def put(client: TestClient, resource: dict[str, Any]) -> dict[str, Any]:
    """PUT a new version of a stored resource; the stored version."""
    r = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", json=resource,
                   headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    return r.json()


def bundle(client: TestClient, rtype: str, params: Params | None = None,
           headers: dict[str, str] | None = None) -> dict[str, Any]:
    """GET [base]/rtype?params: the searchset Bundle (asserts 200)."""
    r = client.get(f"/fhir/{rtype}", params=params, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset", body
    return body


def entries(b: dict[str, Any], mode: str) -> list[dict[str, Any]]:
    return [e for e in b.get("entry", []) if e["search"]["mode"] == mode]


def listed(b: dict[str, Any], mode: str = "match") -> list[str]:
    """Ids of the entries in `mode`, in Bundle order."""
    return [e["resource"]["id"] for e in entries(b, mode)]


def keyed(b: dict[str, Any], mode: str) -> set[str]:
    """`Type/id` of the entries in `mode`."""
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in entries(b, mode)}


def ids(client: TestClient, rtype: str, params: Params | None = None,
        headers: dict[str, str] | None = None) -> set[str]:
    """The ids a search matches (mode=match); a Bundle never repeats an entry."""
    found = listed(bundle(client, rtype, params, headers))
    assert len(found) == len(set(found)), found
    return set(found)


def ordered(client: TestClient, rtype: str, params: Params) -> list[str]:
    """The ids a search matches, in the order returned."""
    return listed(bundle(client, rtype, params))


def refused(client: TestClient, rtype: str, params: Params,
            headers: dict[str, str] | None = None) -> str:
    """GET that must fail with 400 and an OperationOutcome; its diagnostics, joined."""
    r = client.get(f"/fhir/{rtype}", params=params, headers=headers)
    assert r.status_code == 400, (params, r.status_code, r.text)
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome", outcome
    assert all(i["severity"] in ("error", "fatal") for i in outcome["issue"]), outcome
    return " ".join(i.get("diagnostics", "") for i in outcome["issue"])


def next_link(b: dict[str, Any]) -> str | None:
    """The `next` link, relative to the test client's base, or None on the last page."""
    links = [link["url"] for link in b.get("link", []) if link["relation"] == "next"]
    assert len(links) <= 1, links
    return links[0].removeprefix("http://gateway.test") if links else None


def self_link(b: dict[str, Any]) -> str:
    links = [link["url"] for link in b.get("link", []) if link["relation"] == "self"]
    assert len(links) == 1, b.get("link")
    return links[0]


def get_page(client: TestClient, url: str) -> dict[str, Any]:
    r = client.get(url)
    assert r.status_code == 200, r.text
    return r.json()


def ref(rtype: str, rid: str, **extra: Any) -> dict[str, Any]:
    return {"reference": f"{rtype}/{rid}", **extra}


def concept(system: str, code: str, display: str | None = None,
            text: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": system, "code": code}
    if display:
        coding["display"] = display
    out: dict[str, Any] = {"coding": [coding]}
    if text:
        out["text"] = text
    return out


# -- realistic seed resources --------------------------------------------------------------


def patient(client: TestClient, family: str, given: str, nhs: str | None = None,
            **extra: Any) -> str:
    resource: dict[str, Any] = {"resourceType": "Patient",
                                "name": [{"family": family, "given": [given]}], **extra}
    if nhs:
        resource["identifier"] = [{"system": NHS, "value": nhs}, *extra.get("identifier", [])]
    return make(client, resource)


def resus_status(client: TestClient, patient_id: str, decision: str, when: str,
                 **extra: Any) -> str:
    """An Observation recording a resuscitation decision (SNOMED 304251008)."""
    return make(client, {
        "resourceType": "Observation", "status": extra.pop("status", "final"),
        "code": concept(SCT, RESUS_STATUS, "Resuscitation status"),
        "valueCodeableConcept": concept(SCT, decision),
        "subject": ref("Patient", patient_id), "effectiveDateTime": when, **extra})


def organization(client: TestClient, ods: str, name: str, **extra: Any) -> str:
    return make(client, {"resourceType": "Organization", "active": True, "name": name,
                         "identifier": [{"system": ODS, "value": ods}], **extra})


def practitioner(client: TestClient, family: str, given: str, gmc: str,
                 **extra: Any) -> str:
    return make(client, {"resourceType": "Practitioner",
                         "identifier": [{"system": GMC, "value": gmc}],
                         "name": [{"family": family, "given": [given], "prefix": ["Dr"]}],
                         **extra})


def flag(client: TestClient, patient_id: str, period: dict[str, str], **extra: Any) -> str:
    """A DNACPR alert Flag over `period`."""
    return make(client, {"resourceType": "Flag", "status": extra.pop("status", "active"),
                         "code": concept(SCT, NOT_FOR_CPR, "Not for attempted CPR"),
                         "subject": ref("Patient", patient_id), "period": period, **extra})


def encounter(client: TestClient, patient_id: str, period: dict[str, str],
              cls: str = "HH", **extra: Any) -> str:
    return make(client, {"resourceType": "Encounter", "status": extra.pop("status", "finished"),
                         "class": {"system": ACT_CODE, "code": cls},
                         "subject": ref("Patient", patient_id), "period": period, **extra})


def care_plan(client: TestClient, patient_id: str, status: str,
              period: dict[str, str] | None = None, **extra: Any) -> str:
    resource: dict[str, Any] = {
        "resourceType": "CarePlan", "status": status, "intent": "plan",
        "category": [concept(SCT, "736373009", "End of life care plan")],
        "subject": ref("Patient", patient_id), **extra}
    if period:
        resource["period"] = period
    return make(client, resource)


def consent(client: TestClient, patient_id: str, scope: str, category: str,
            **extra: Any) -> str:
    return make(client, {"resourceType": "Consent", "status": extra.pop("status", "active"),
                         "scope": concept(CONSENT_SCOPE, scope),
                         "category": [concept(CONSENT_CATEGORY, category)],
                         "patient": ref("Patient", patient_id), **extra})


def provenance(client: TestClient, targets: list[str], recorded: str, **extra: Any) -> str:
    return make(client, {"resourceType": "Provenance",
                         "target": [{"reference": t} for t in targets],
                         "recorded": recorded,
                         "agent": extra.pop("agent", [{"who": {"display": "EPaCCS feed"}}]),
                         **extra})
