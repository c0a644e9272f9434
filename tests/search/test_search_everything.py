"""Patient/{id}/$everything (R4 Patient-everything operation): the Patient and every
resource in its Patient compartment (R4 CompartmentDefinition/patient), whichever partner
sent it, and nothing of any other patient; paged with _count, narrowed by _since
(resources updated since an instant) and _type (resource types to return)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from eol_search_kit import (
    BASE,
    CONSENT_CATEGORY,
    CONSENT_SCOPE,
    NOT_FOR_CPR,
    SCT,
    concept,
    create,
    get_page,
    keyed,
    next_link,
    patient,
    put,
    ref,
    resus_status,
)
from fastapi.testclient import TestClient

GP = "https://fhir.gp.example/B86071"
HOSPICE = "https://fhir.hospice.example/NHD01"
AMBULANCE = "https://fhir.yas.example/RX8"
ACUTE = "https://fhir.leedsth.example/RR8"


def from_partner(source: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {**resource, "meta": {"source": source}}


def record_of(client: TestClient, pid: str) -> dict[str, dict[str, Any]]:
    """One resource of each compartment type, from four partners."""
    subject = ref("Patient", pid)
    made = {
        "encounter": create(client, from_partner(HOSPICE, {
            "resourceType": "Encounter", "status": "in-progress", "class": {"code": "IMP"},
            "subject": subject, "period": {"start": "2026-05-12T08:00:00+01:00"}})),
        "careplan": create(client, from_partner(GP, {
            "resourceType": "CarePlan", "status": "active", "intent": "plan",
            "subject": subject})),
        "consent": create(client, from_partner(GP, {
            "resourceType": "Consent", "status": "active",
            "scope": concept(CONSENT_SCOPE, "adr"),
            "category": [concept(CONSENT_CATEGORY, "dnr")], "patient": subject})),
        "condition": create(client, from_partner(ACUTE, {
            "resourceType": "Condition", "subject": subject,
            "code": concept(SCT, "254637007")})),
        "relatedperson": create(client, from_partner(GP, {
            "resourceType": "RelatedPerson", "patient": subject,
            "name": [{"family": "Okafor", "given": ["Adaeze"]}]})),
        "provenance": create(client, from_partner(GP, {
            "resourceType": "Provenance", "target": [subject],
            "recorded": "2026-05-10T09:31:00Z", "agent": [{"who": {"display": "GP"}}]})),
        "auditevent": create(client, from_partner(AMBULANCE, {
            "resourceType": "AuditEvent", "recorded": "2026-05-14T02:10:00Z",
            "type": {"system": "http://dicom.nema.org/resources/ontology/DCM",
                     "code": "110110"},
            "agent": [{"requestor": True, "who": {"display": "Paramedic"}}],
            "source": {"observer": {"display": "gateway"}},
            "entity": [{"what": subject}]})),
        "detectedissue": create(client, from_partner(ACUTE, {
            "resourceType": "DetectedIssue", "status": "final", "patient": subject})),
        "documentreference": create(client, from_partner(HOSPICE, {
            "resourceType": "DocumentReference", "status": "current", "subject": subject,
            "content": [{"attachment": {"contentType": "application/pdf"}}]})),
        "flag": create(client, from_partner(AMBULANCE, {
            "resourceType": "Flag", "status": "active",
            "code": concept(SCT, NOT_FOR_CPR), "subject": subject,
            "period": {"start": "2026-05-10"}})),
        "riskassessment": create(client, from_partner(HOSPICE, {
            "resourceType": "RiskAssessment", "status": "final", "subject": subject,
            "prediction": [{"probabilityDecimal": 0.82}]})),
    }
    obs = resus_status(client, pid, NOT_FOR_CPR, "2026-05-10T09:30:00+01:00",
                       meta={"source": AMBULANCE})
    made["observation"] = {"resourceType": "Observation", "id": obs}
    return made


def keys(resources: dict[str, dict[str, Any]]) -> set[str]:
    return {f"{r['resourceType']}/{r['id']}" for r in resources.values()}


def everything(client: TestClient, pid: str,
               params: list[tuple[str, str]] | None = None) -> tuple[list[str], int]:
    """Follow every page of $everything: the Type/id of every entry in order, and pages."""
    r = client.get(f"/fhir/Patient/{pid}/$everything", params=params)
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["resourceType"] == "Bundle" and b["type"] == "searchset"
    seen: list[str] = []
    pages = 0
    while True:
        pages += 1
        seen += [f"{e['resource']['resourceType']}/{e['resource']['id']}"
                 for e in b.get("entry", [])]
        url = next_link(b)
        if not url:
            return seen, pages
        b = get_page(client, url)


def test_everything_is_the_whole_compartment_and_nothing_else(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace", "9434765919")
    tom = patient(client, "O'Neill", "Tom", "9000000009")
    hers = record_of(client, grace)
    his = record_of(client, tom)
    seen, _ = everything(client, grace)
    assert len(seen) == len(set(seen))
    assert set(seen) == keys(hers) | {f"Patient/{grace}"}
    seen, _ = everything(client, tom)
    assert set(seen) == keys(his) | {f"Patient/{tom}"}


def test_everything_leaves_out_another_servers_patient_with_the_same_id(
        client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    own = resus_status(client, grace, NOT_FOR_CPR, "2026-05-10T09:30:00+01:00")
    resus_status(client, grace, NOT_FOR_CPR, "2026-05-11T09:30:00+01:00",
                 subject={"reference": f"https://fhir.other-trust.example/R4/Patient/{grace}"})
    absolute = resus_status(client, grace, NOT_FOR_CPR, "2026-05-12T09:30:00+01:00",
                            subject={"reference": f"{BASE}/Patient/{grace}"})
    seen, _ = everything(client, grace)
    assert set(seen) == {f"Patient/{grace}", f"Observation/{own}", f"Observation/{absolute}"}


def test_everything_paged_with_count(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    hers = record_of(client, grace)
    record_of(client, patient(client, "O'Neill", "Tom"))
    r = client.get(f"/fhir/Patient/{grace}/$everything", params={"_count": "5"})
    assert len(r.json()["entry"]) == 5
    seen, pages = everything(client, grace, [("_count", "5")])
    assert pages == 3  # 13 resources: 5 + 5 + 3
    assert len(seen) == len(set(seen)) == 13
    assert set(seen) == keys(hers) | {f"Patient/{grace}"}


def test_everything_type(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    hers = record_of(client, grace)
    record_of(client, patient(client, "O'Neill", "Tom"))
    seen, _ = everything(client, grace, [("_type", "Observation,Flag")])
    assert set(seen) == {f"Observation/{hers['observation']['id']}",
                         f"Flag/{hers['flag']['id']}"}
    seen, _ = everything(client, grace, [("_type", "Patient")])
    assert seen == [f"Patient/{grace}"]
    r = client.get(f"/fhir/Patient/{grace}/$everything", params={"_type": "Observation,Nope"})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


def test_everything_since(client: TestClient) -> None:
    grace_stored = create(client, {"resourceType": "Patient", "name": [{"family": "Okafor"}]})
    grace = grace_stored["id"]
    hers = record_of(client, grace)
    record_of(client, patient(client, "O'Neill", "Tom"))
    # an instant strictly between the care plan's write and the next one
    cut = datetime.strptime(hers["careplan"]["meta"]["lastUpdated"], "%Y-%m-%dT%H:%M:%S.%fZ")
    since = (cut + timedelta(microseconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert hers["consent"]["meta"]["lastUpdated"] > since
    changed = put(client, {**grace_stored, "gender": "female"})  # the patient, updated now
    seen, _ = everything(client, grace, [("_since", since)])
    later = {k: v for k, v in hers.items() if k not in ("encounter", "careplan")}
    assert set(seen) == keys(later) | {f"Patient/{changed['id']}"}
    seen, _ = everything(client, grace, [("_since", "2099-01-01T00:00:00Z")])
    assert seen == []


def test_everything_of_an_unknown_patient_and_after_a_delete(client: TestClient) -> None:
    r = client.get("/fhir/Patient/no-such-patient/$everything")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"
    grace = patient(client, "Okafor", "Grace")
    kept = resus_status(client, grace, NOT_FOR_CPR, "2026-05-10T09:30:00+01:00")
    gone = resus_status(client, grace, NOT_FOR_CPR, "2026-05-11T09:30:00+01:00")
    assert client.delete(f"/fhir/Observation/{gone}").status_code in (200, 204)
    seen, _ = everything(client, grace)
    assert set(seen) == {f"Patient/{grace}", f"Observation/{kept}"}
    b = client.get(f"/fhir/Patient/{grace}/$everything").json()
    assert keyed(b, "match") == {f"Patient/{grace}", f"Observation/{kept}"}
