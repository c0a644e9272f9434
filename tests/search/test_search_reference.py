"""Reference search (R4 3.1.1.4.12): `Type/id`, `id`, absolute URL, the `:[type]`
modifier, `:identifier` (a token search on Reference.identifier) and `:missing`.

R4: "A relative reference resolving to the same value as a specified absolute URL, or
vice versa, qualifies as a match" (with the server base http://gateway.test/fhir here);
a `[type]/[id]` or `[id]` value is "a local reference (i.e. a relative reference)", so a
reference to another server's Patient with the same id is a different patient."""

from __future__ import annotations

from eol_search_kit import (
    BASE,
    NHS,
    NOT_FOR_CPR,
    ODS,
    concept,
    flag,
    ids,
    make,
    organization,
    patient,
    practitioner,
    provenance,
    ref,
    refused,
    resus_status,
)
from fastapi.testclient import TestClient


def test_type_id_id_and_type_modifier(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace", "9434765919")
    tom = patient(client, "O'Neill", "Tom", "9000000009")
    hers = resus_status(client, grace, NOT_FOR_CPR, "2026-05-10T09:30:00+01:00")
    his = resus_status(client, tom, NOT_FOR_CPR, "2026-04-02T14:00:00+01:00")
    assert ids(client, "Observation", {"subject": f"Patient/{grace}"}) == {hers}
    assert ids(client, "Observation", {"subject": grace}) == {hers}
    assert ids(client, "Observation", {"subject:Patient": grace}) == {hers}
    assert ids(client, "Observation", {"subject:Group": grace}) == set()
    assert ids(client, "Observation", {"subject": f"Group/{grace}"}) == set()
    assert ids(client, "Observation", {"patient": grace}) == {hers}
    assert ids(client, "Observation", {"patient": f"Patient/{tom}"}) == {his}
    assert ids(client, "Observation", {"patient": f"{grace},Patient/{tom}"}) == {hers, his}
    assert ids(client, "Observation", {"subject": "Patient/no-such-patient"}) == set()
    assert ids(client, "Observation", [("patient", grace), ("patient", tom)]) == set()


def test_reference_missing(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    hospice_stay = make(client, {"resourceType": "Encounter", "status": "in-progress",
                                 "class": {"code": "IMP"}, "subject": ref("Patient", grace)})
    with_encounter = flag(client, grace, {"start": "2026-05-10"},
                          encounter=ref("Encounter", hospice_stay))
    without = flag(client, grace, {"start": "2026-05-11"})
    assert ids(client, "Flag", {"encounter:missing": "true"}) == {without}
    assert ids(client, "Flag", {"encounter:missing": "false"}) == {with_encounter}
    assert ids(client, "Flag", {"encounter": hospice_stay}) == {with_encounter}
    assert ids(client, "Flag", {"subject:missing": "false"}) == {with_encounter, without}


def test_identifier_modifier_is_a_token_search(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace", "9434765919")
    nhs_only = resus_status(client, grace, NOT_FOR_CPR, "2026-05-10T09:30:00+01:00",
                            subject={"identifier": {"system": NHS, "value": "9434765919"}})
    both = resus_status(client, grace, NOT_FOR_CPR, "2026-05-11T09:30:00+01:00",
                        subject={"reference": f"Patient/{grace}",
                                 "identifier": {"system": NHS, "value": "9434765919"}})
    literal = resus_status(client, grace, NOT_FOR_CPR, "2026-05-12T09:30:00+01:00")
    assert ids(client, "Observation", {"subject:identifier": f"{NHS}|9434765919"}) \
        == {nhs_only, both}
    assert ids(client, "Observation", {"subject:identifier": "9434765919"}) == {nhs_only, both}
    assert ids(client, "Observation", {"subject:identifier": f"{NHS}|9000000009"}) == set()
    assert ids(client, "Observation", {"subject:identifier": f"{ODS}|9434765919"}) == set()
    assert ids(client, "Observation", {"subject": grace}) == {both, literal}


def test_references_across_resource_types(client: TestClient) -> None:
    trust = organization(client, "RR8", "Leeds Teaching Hospitals NHS Trust")
    ward = organization(client, "RR8-W12", "Ward 12 (Oncology)", partOf=ref("Organization",
                                                                            trust))
    gp = practitioner(client, "Ahmed", "Yasmin", "7012345")
    grace = patient(client, "Okafor", "Grace", generalPractitioner=[ref("Practitioner", gp)],
                    managingOrganization=ref("Organization", trust))
    tom = patient(client, "O'Neill", "Tom")
    assert ids(client, "Organization", {"partof": trust}) == {ward}
    assert ids(client, "Patient", {"general-practitioner": f"Practitioner/{gp}"}) == {grace}
    assert ids(client, "Patient", {"general-practitioner:Organization": gp}) == set()
    assert ids(client, "Patient", {"organization": trust}) == {grace}
    assert ids(client, "Patient", {"general-practitioner:missing": "true"}) == {tom}

    wife = make(client, {"resourceType": "RelatedPerson", "patient": ref("Patient", grace)})
    assert ids(client, "RelatedPerson", {"patient": grace}) == {wife}
    assert ids(client, "RelatedPerson", {"patient": tom}) == set()

    plan = make(client, {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                         "subject": ref("Patient", grace),
                         "activity": [{"detail": {"status": "in-progress",
                                                  "performer": [ref("Organization", trust)]}}]})
    adrt = make(client, {"resourceType": "Consent", "status": "active",
                         "scope": concept("http://terminology.hl7.org/CodeSystem/consentscope",
                                          "adr"),
                         "category": [concept("http://loinc.org", "59284-0")],
                         "patient": ref("Patient", grace),
                         "performer": [ref("Patient", grace)],
                         "organization": [ref("Organization", trust)]})
    assert ids(client, "CarePlan", {"subject": f"Patient/{grace}"}) == {plan}
    assert ids(client, "CarePlan", {"performer": f"Organization/{trust}"}) == {plan}
    assert ids(client, "Consent", {"patient": grace}) == {adrt}
    assert ids(client, "Consent", {"consentor": f"Patient/{grace}"}) == {adrt}
    assert ids(client, "Consent", {"organization": trust}) == {adrt}

    prov = provenance(client, [f"CarePlan/{plan}", f"Consent/{adrt}"],
                      "2026-05-10T09:45:00Z",
                      agent=[{"who": ref("Practitioner", gp)}])
    assert ids(client, "Provenance", {"target": f"CarePlan/{plan}"}) == {prov}
    assert ids(client, "Provenance", {"target": f"Consent/{adrt},Patient/{tom}"}) == {prov}
    assert ids(client, "Provenance", {"agent": f"Practitioner/{gp}"}) == {prov}
    assert ids(client, "Provenance", {"target:CarePlan": plan}) == {prov}
    assert ids(client, "Provenance", {"target:Consent": plan}) == set()

    doc = make(client, {"resourceType": "DocumentReference", "status": "current",
                        "subject": ref("Patient", grace), "custodian": ref("Organization", trust),
                        "author": [ref("Practitioner", gp)],
                        "content": [{"attachment": {"contentType": "application/pdf"}}]})
    assert ids(client, "DocumentReference", {"custodian": trust}) == {doc}
    assert ids(client, "DocumentReference", {"author": f"Practitioner/{gp}"}) == {doc}
    assert ids(client, "DocumentReference", {"patient": grace}) == {doc}

    issue = make(client, {"resourceType": "DetectedIssue", "status": "final",
                          "patient": ref("Patient", grace),
                          "implicated": [ref("CarePlan", plan), ref("Consent", adrt)]})
    assert ids(client, "DetectedIssue", {"implicated": f"Consent/{adrt}"}) == {issue}
    assert ids(client, "DetectedIssue", {"patient": tom}) == set()


def test_absolute_url_at_this_server_matches_relative_references(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    relative = resus_status(client, grace, NOT_FOR_CPR, "2026-05-10T09:30:00+01:00")
    absolute = resus_status(client, grace, NOT_FOR_CPR, "2026-05-11T09:30:00+01:00",
                            subject={"reference": f"{BASE}/Patient/{grace}"})
    # searching by Type/id finds the absolute reference to this server too
    assert ids(client, "Observation", {"subject": f"Patient/{grace}"}) == {relative, absolute}
    # and searching by the absolute URL finds both spellings
    assert ids(client, "Observation", {"subject": f"{BASE}/Patient/{grace}"}) \
        == {relative, absolute}


def test_only_a_leading_base_is_taken_as_this_server(client: TestClient) -> None:
    """Each of several values may be an absolute URL at this server; a base inside an
    identifier's system (`:identifier`) is part of that system, not stripped."""
    grace = patient(client, "Okafor", "Grace")
    tom = patient(client, "Okafor", "Tom")
    g = resus_status(client, grace, NOT_FOR_CPR, "2026-05-10T09:30:00+01:00")
    t = resus_status(client, tom, NOT_FOR_CPR, "2026-05-11T09:30:00+01:00")
    assert ids(client, "Observation", {
        "subject": f"{BASE}/Patient/{grace},{BASE}/Patient/{tom}"}) == {g, t}
    system = f"{BASE}/ids"
    tagged = resus_status(client, grace, NOT_FOR_CPR, "2026-05-12T09:30:00+01:00",
                          subject={"identifier": {"system": system, "value": "X1"}})
    assert ids(client, "Observation", {"subject:identifier": f"{system}|X1"}) == {tagged}
    assert ids(client, "Observation", {"subject:identifier": "ids|X1"}) == set()


def test_reference_to_another_server_is_not_a_local_patient(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    here = resus_status(client, grace, NOT_FOR_CPR, "2026-05-10T09:30:00+01:00")
    elsewhere_url = f"https://fhir.other-trust.example/R4/Patient/{grace}"
    elsewhere = resus_status(client, grace, NOT_FOR_CPR, "2026-05-11T09:30:00+01:00",
                             subject={"reference": elsewhere_url})
    assert ids(client, "Observation", {"subject": elsewhere_url}) == {elsewhere}
    # same id, but another server's patient: not Patient/{grace} on this server
    assert ids(client, "Observation", {"patient": grace}) == {here}
    assert ids(client, "Observation", {"subject": f"Patient/{grace}"}) == {here}


def test_malformed_references_are_refused(client: TestClient) -> None:
    patient(client, "Okafor", "Grace")
    for value in ["Patient/", "Patient/a/b", "patient id with spaces", "Patient/" + "x" * 65]:
        assert "subject" in refused(client, "Observation", {"subject": value}), value
    # a :[type] modifier that contradicts the value, or names a type the parameter cannot
    # point to, cannot match anything meaningful
    refused(client, "Observation", {"subject:Patient": "Group/g1"})


def test_a_reference_given_by_identifier_only_is_not_missing(client: TestClient) -> None:
    # R4 3.1.1.4.3: :missing=true is a resource without the element; a subject given by
    # NHS number only is there (and found by :identifier), just not a literal reference
    grace = patient(client, "Okafor", "Grace", "9434765919")
    by_number = resus_status(client, grace, NOT_FOR_CPR, "2026-05-10T09:30:00+01:00",
                             subject={"identifier": {"system": NHS, "value": "9434765919"}})
    literal = resus_status(client, grace, NOT_FOR_CPR, "2026-05-11T09:30:00+01:00")
    unlinked = make(client, {"resourceType": "Observation", "status": "final",
                             "code": concept("http://snomed.info/sct", "304251008")})
    assert ids(client, "Observation", {"subject:missing": "true"}) == {unlinked}
    assert ids(client, "Observation", {"subject:missing": "false"}) == {by_number, literal}
    # ...and is still matched by no literal reference search
    assert ids(client, "Observation", {"subject": grace}) == {literal}
    assert ids(client, "Observation", {"subject:Patient.family": "okafor"}) == {literal}
    assert ids(client, "Observation", {"subject:identifier": f"{NHS}|9434765919"}) \
        == {by_number}
    assert ids(client, "Patient", {"_has:Observation:subject:code": "304251008"}) == {grace}
