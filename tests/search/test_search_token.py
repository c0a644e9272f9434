"""Token search (R4 3.1.1.4.10) on Identifier, Coding, CodeableConcept, code, boolean and
ContactPoint, with :not, :missing, :text and :of-type (3.1.1.4.4), OR (`,`) and AND
(repeats, 3.1.1.4.17). Each case asserts the exact set of matching ids on both engines."""

from __future__ import annotations

from eol_search_kit import (
    ACT_CODE,
    CONDITION_CLINICAL,
    CONFIDENTIALITY,
    CONSENT_CATEGORY,
    CONSENT_SCOPE,
    FOR_CPR,
    LOINC,
    NHS,
    NOT_FOR_CPR,
    ODS,
    RESUS_STATUS,
    ROLE_CODE,
    SCT,
    V2_0203,
    care_plan,
    concept,
    consent,
    encounter,
    ids,
    make,
    organization,
    patient,
    ref,
    resus_status,
)
from fastapi.testclient import TestClient

MRN = "https://leedsth.nhs.uk/Id/hospital-number"


def seed_identifiers(client: TestClient) -> dict[str, str]:
    mr_type = {"coding": [{"system": V2_0203, "code": "MR"}], "text": "Hospital number"}
    return {
        "grace": make(client, {"resourceType": "Patient", "identifier": [
            {"system": NHS, "value": "9434765919"},
            {"system": MRN, "value": "RR8-100234", "type": mr_type}]}),
        "tom": make(client, {"resourceType": "Patient", "identifier": [
            {"system": NHS, "value": "9000000009"}]}),
        # a legacy feed sent the number without saying what it is
        "legacy": make(client, {"resourceType": "Patient", "identifier": [
            {"value": "9434765919"}]}),
        "none": make(client, {"resourceType": "Patient", "gender": "unknown"}),
    }


def test_identifier_system_and_value_forms(client: TestClient) -> None:
    p = seed_identifiers(client)
    assert ids(client, "Patient", {"identifier": f"{NHS}|9434765919"}) == {p["grace"]}
    assert ids(client, "Patient", {"identifier": "9434765919"}) == {p["grace"], p["legacy"]}
    assert ids(client, "Patient", {"identifier": "|9434765919"}) == {p["legacy"]}
    assert ids(client, "Patient", {"identifier": f"{NHS}|"}) == {p["grace"], p["tom"]}
    assert ids(client, "Patient", {"identifier": f"{MRN}|RR8-100234"}) == {p["grace"]}
    assert ids(client, "Patient", {"identifier": f"{NHS}|RR8-100234"}) == set()
    assert ids(client, "Patient", {"identifier": f"{NHS}|9434765"}) == set()  # no prefixes


def test_identifier_or_and_and(client: TestClient) -> None:
    p = seed_identifiers(client)
    assert ids(client, "Patient", {"identifier": f"{NHS}|9434765919,{NHS}|9000000009"}) \
        == {p["grace"], p["tom"]}
    assert ids(client, "Patient", [("identifier", f"{NHS}|"), ("identifier", f"{MRN}|")]) \
        == {p["grace"]}
    assert ids(client, "Patient", [("identifier", f"{NHS}|9000000009"),
                                   ("identifier", f"{MRN}|")]) == set()


def test_identifier_missing_and_not(client: TestClient) -> None:
    p = seed_identifiers(client)
    assert ids(client, "Patient", {"identifier:missing": "true"}) == {p["none"]}
    assert ids(client, "Patient", {"identifier:missing": "false"}) \
        == {p["grace"], p["tom"], p["legacy"]}
    # :not keeps resources with no value at all (3.1.1.4.10, modifiers table)
    assert ids(client, "Patient", {"identifier:not": f"{NHS}|9434765919"}) \
        == {p["tom"], p["legacy"], p["none"]}
    assert ids(client, "Patient", {"identifier:not": "9434765919"}) == {p["tom"], p["none"]}


def test_identifier_of_type_and_text(client: TestClient) -> None:
    p = seed_identifiers(client)
    assert ids(client, "Patient", {"identifier:of-type": f"{V2_0203}|MR|RR8-100234"}) \
        == {p["grace"]}
    assert ids(client, "Patient", {"identifier:of-type": f"{V2_0203}|MR|9434765919"}) == set()
    assert ids(client, "Patient", {"identifier:of-type": f"{V2_0203}|NH|RR8-100234"}) == set()
    # :text searches Identifier.type.text as a string search (case-insensitive)
    assert ids(client, "Patient", {"identifier:text": "hospital"}) == {p["grace"]}
    assert ids(client, "Patient", {"identifier:text": "HOSPITAL NUMBER"}) == {p["grace"]}
    assert ids(client, "Patient", {"identifier:text": "nhs"}) == set()


def test_codeable_concept_resuscitation_status(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace", "9434765919")
    tom = patient(client, "O'Neill", "Tom", "9000000009")
    dnacpr = resus_status(client, grace, NOT_FOR_CPR, "2026-05-10T09:30:00+01:00")
    for_cpr = resus_status(client, tom, FOR_CPR, "2026-04-02T14:00:00+01:00")
    pain = make(client, {"resourceType": "Observation", "status": "final",
                         "code": concept(LOINC, "72514-3", "Pain severity"),
                         "subject": ref("Patient", grace), "valueInteger": 4})
    status = f"{SCT}|{RESUS_STATUS}"
    assert ids(client, "Observation", {"code": status}) == {dnacpr, for_cpr}
    assert ids(client, "Observation", {"code": RESUS_STATUS}) == {dnacpr, for_cpr}
    assert ids(client, "Observation", {"code": f"|{RESUS_STATUS}"}) == set()
    assert ids(client, "Observation", {"code": f"{SCT}|"}) == {dnacpr, for_cpr}
    assert ids(client, "Observation", {"code": f"{LOINC}|{RESUS_STATUS}"}) == set()
    assert ids(client, "Observation", {"code:not": status}) == {pain}
    assert ids(client, "Observation", {"value-concept": f"{SCT}|{NOT_FOR_CPR}"}) == {dnacpr}
    assert ids(client, "Observation", {"value-concept": f"{NOT_FOR_CPR},{FOR_CPR}"}) \
        == {dnacpr, for_cpr}
    assert ids(client, "Observation", {"value-concept:missing": "true"}) == {pain}
    assert ids(client, "Observation", {"value-concept:missing": "false"}) == {dnacpr, for_cpr}
    # :not applies to the whole set, and keeps resources without a value
    assert ids(client, "Observation", {"value-concept:not": NOT_FOR_CPR}) == {for_cpr, pain}
    assert ids(client, "Observation", [("code", status),
                                       ("value-concept", NOT_FOR_CPR)]) == {dnacpr}


def test_text_modifier_on_coding_display(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    mnd = make(client, {"resourceType": "Condition", "subject": ref("Patient", grace),
                        "code": concept(SCT, "37340000", "Motor neurone disease")})
    frailty = make(client, {"resourceType": "Condition", "subject": ref("Patient", grace),
                            "code": {"text": "Severe frailty"}})
    assert ids(client, "Condition", {"code:text": "motor neur"}) == {mnd}
    assert ids(client, "Condition", {"code:text": "MOTOR NEURONE DISEASE"}) == {mnd}
    assert ids(client, "Condition", {"code:text": "severe"}) == {frailty}
    assert ids(client, "Condition", {"code:text": "motor,severe"}) == {mnd, frailty}
    assert ids(client, "Condition", {"code:text": "37340000"}) == set()  # text, not code


def test_text_modifier_searches_codeable_concept_text_beside_displays(
        client: TestClient) -> None:
    # R4 3.1.1.4.10 (:text): "searches text associated with the code/value - either
    # CodeableConcept.text, Coding.display, or Identifier.type.text"
    grace = patient(client, "Okafor", "Grace")
    cancer = make(client, {"resourceType": "Condition", "subject": ref("Patient", grace),
                           "code": concept(SCT, "94082003", "Secondary malignant neoplasm",
                                           text="Metastatic carcinoma of pancreas")})
    assert ids(client, "Condition", {"code:text": "secondary malignant"}) == {cancer}
    assert ids(client, "Condition", {"code:text": "metastatic carcinoma"}) == {cancer}


def test_coding_token_encounter_class_and_code_status(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    home = encounter(client, grace, {"start": "2026-05-01T10:00:00+01:00"}, "HH")
    ward = encounter(client, grace, {"start": "2026-05-03T22:10:00+01:00"}, "IMP",
                     status="in-progress")
    ed = encounter(client, grace, {"start": "2026-05-02T03:00:00+01:00"}, "EMER")
    assert ids(client, "Encounter", {"class": f"{ACT_CODE}|HH"}) == {home}
    assert ids(client, "Encounter", {"class": "HH,IMP"}) == {home, ward}
    assert ids(client, "Encounter", {"class": "|HH"}) == set()
    assert ids(client, "Encounter", {"class": f"{ACT_CODE}|"}) == {home, ward, ed}
    assert ids(client, "Encounter", {"class:not": f"{ACT_CODE}|HH"}) == {ward, ed}
    assert ids(client, "Encounter", {"status": "finished"}) == {home, ed}
    assert ids(client, "Encounter", {"status:not": "finished"}) == {ward}
    assert ids(client, "Encounter", [("status", "finished"), ("class", "EMER")]) == {ed}


def test_code_tokens_care_plan_and_consent(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    active = care_plan(client, grace, "active")
    done = care_plan(client, grace, "completed")
    revoked = care_plan(client, grace, "revoked")
    assert ids(client, "CarePlan", {"status": "active"}) == {active}
    assert ids(client, "CarePlan", {"status": "active,completed"}) == {active, done}
    assert ids(client, "CarePlan", {"status:not": "active"}) == {done, revoked}
    assert ids(client, "CarePlan", {"intent": "plan"}) == {active, done, revoked}
    assert ids(client, "CarePlan", {"category": f"{SCT}|736373009"}) == {active, done, revoked}

    privacy = consent(client, grace, "patient-privacy", "npp")
    adrt = consent(client, grace, "adr", "dnr", status="inactive")
    acd = consent(client, grace, "adr", "acd")
    assert ids(client, "Consent", {"scope": f"{CONSENT_SCOPE}|adr"}) == {adrt, acd}
    assert ids(client, "Consent", {"scope": "patient-privacy"}) == {privacy}
    assert ids(client, "Consent", {"category": f"{CONSENT_CATEGORY}|dnr"}) == {adrt}
    assert ids(client, "Consent", [("scope", "adr"), ("status", "active")]) == {acd}
    assert ids(client, "Consent", {"status:not": "active"}) == {adrt}


def test_boolean_active(client: TestClient) -> None:
    on = make(client, {"resourceType": "Patient", "active": True})
    off = make(client, {"resourceType": "Patient", "active": False})
    unknown = make(client, {"resourceType": "Patient", "gender": "female"})
    assert ids(client, "Patient", {"active": "true"}) == {on}
    assert ids(client, "Patient", {"active": "false"}) == {off}
    assert ids(client, "Patient", {"active:missing": "true"}) == {unknown}
    assert ids(client, "Patient", {"active:not": "true"}) == {off, unknown}
    hospice = organization(client, "NHD01", "Wheatfields Hospice")
    closed = organization(client, "Y99999", "Closed Practice", active=False)
    assert ids(client, "Organization", {"active": "true"}) == {hospice}
    assert ids(client, "Organization", {"active": "false"}) == {closed}


def test_boolean_deceased_follows_its_r4_expression(client: TestClient) -> None:
    # deceased: "Patient.deceased.exists() and Patient.deceased != false"
    died = make(client, {"resourceType": "Patient", "deceasedDateTime":
                         "2026-05-14T03:20:00+01:00"})
    dead = make(client, {"resourceType": "Patient", "deceasedBoolean": True})
    alive = make(client, {"resourceType": "Patient", "deceasedBoolean": False})
    unsaid = make(client, {"resourceType": "Patient", "gender": "male"})
    assert ids(client, "Patient", {"deceased": "true"}) == {died, dead}
    assert ids(client, "Patient", {"deceased": "false"}) == {alive, unsaid}
    assert ids(client, "Patient", {"deceased:not": "true"}) == {alive, unsaid}


def test_contact_point_telecom_phone_email(client: TestClient) -> None:
    grace = make(client, {"resourceType": "Patient", "telecom": [
        {"system": "phone", "value": "0113 496 0000", "use": "home"},
        {"system": "phone", "value": "07700 900123", "use": "mobile"},
        {"system": "email", "value": "grace.okafor@example.org"}]})
    tom = make(client, {"resourceType": "Patient", "telecom": [
        {"system": "phone", "value": "01492 860000"}]})
    none = make(client, {"resourceType": "Patient", "gender": "male"})
    assert ids(client, "Patient", {"phone": "07700 900123"}) == {grace}
    assert ids(client, "Patient", {"phone": "0113 496 0000,01492 860000"}) == {grace, tom}
    assert ids(client, "Patient", {"email": "grace.okafor@example.org"}) == {grace}
    assert ids(client, "Patient", {"email": "07700 900123"}) == set()
    assert ids(client, "Patient", {"phone": "grace.okafor@example.org"}) == set()
    assert ids(client, "Patient", {"telecom": "grace.okafor@example.org"}) == {grace}
    assert ids(client, "Patient", {"telecom:missing": "true"}) == {none}
    assert ids(client, "Patient", {"email:missing": "true"}) == {tom, none}
    daughter = make(client, {"resourceType": "RelatedPerson", "patient": ref("Patient", grace),
                             "relationship": [concept(ROLE_CODE, "DAU", "daughter")],
                             "telecom": [{"system": "phone", "value": "07700 900456"}]})
    assert ids(client, "RelatedPerson", {"phone": "07700 900456"}) == {daughter}
    assert ids(client, "RelatedPerson", {"relationship": f"{ROLE_CODE}|DAU"}) == {daughter}
    assert ids(client, "RelatedPerson", {"relationship": f"{ROLE_CODE}|WIFE"}) == set()


def test_tokens_on_organization_practitioner_and_related_person(client: TestClient) -> None:
    trust = organization(client, "RR8", "Leeds Teaching Hospitals NHS Trust",
                         type=[concept("http://terminology.hl7.org/CodeSystem/organization-type",
                                       "prov")])
    hospice = organization(client, "NHD01", "Wheatfields Hospice")
    assert ids(client, "Organization", {"identifier": f"{ODS}|RR8"}) == {trust}
    assert ids(client, "Organization", {"identifier": f"{ODS}|RR8,{ODS}|NHD01"}) \
        == {trust, hospice}
    assert ids(client, "Organization", {"type": "prov"}) == {trust}
    assert ids(client, "Organization", {"type:missing": "true"}) == {hospice}
    gp = make(client, {"resourceType": "Practitioner", "gender": "female", "identifier": [
        {"system": "https://fhir.hl7.org.uk/Id/gmc-number", "value": "7012345"}]})
    nurse = make(client, {"resourceType": "Practitioner", "gender": "male", "identifier": [
        {"system": "https://fhir.hl7.org.uk/Id/nmc-number", "value": "98C1234E"}]})
    assert ids(client, "Practitioner", {"identifier": "7012345"}) == {gp}
    assert ids(client, "Practitioner",
               {"identifier": "https://fhir.hl7.org.uk/Id/nmc-number|"}) == {nurse}
    assert ids(client, "Practitioner", {"gender": "male"}) == {nurse}
    grace = patient(client, "Okafor", "Grace")
    wife = make(client, {"resourceType": "RelatedPerson", "patient": ref("Patient", grace),
                         "active": True, "relationship": [concept(ROLE_CODE, "WIFE")]})
    lpa = make(client, {"resourceType": "RelatedPerson", "patient": ref("Patient", grace),
                        "active": False, "relationship": [
                            concept("http://terminology.hl7.org/CodeSystem/v2-0131", "C")]})
    assert ids(client, "RelatedPerson", {"relationship": "WIFE,C"}) == {wife, lpa}
    assert ids(client, "RelatedPerson", {"active": "false"}) == {lpa}


def test_tokens_on_condition_document_reference_and_audit(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    active = make(client, {"resourceType": "Condition", "subject": ref("Patient", grace),
                           "clinicalStatus": concept(CONDITION_CLINICAL, "active"),
                           "code": concept(SCT, "254637007")})
    remission = make(client, {"resourceType": "Condition", "subject": ref("Patient", grace),
                              "clinicalStatus": concept(CONDITION_CLINICAL, "remission"),
                              "code": concept(SCT, "93655004")})
    assert ids(client, "Condition", {"clinical-status": f"{CONDITION_CLINICAL}|active"}) \
        == {active}
    assert ids(client, "Condition", {"clinical-status:not": "active"}) == {remission}
    assert ids(client, "Condition", {"verification-status:missing": "true"}) \
        == {active, remission}

    respect = make(client, {
        "resourceType": "DocumentReference", "status": "current",
        "type": concept(LOINC, "42348-3", "Advance directives"),
        "securityLabel": [concept(CONFIDENTIALITY, "R")],
        "subject": ref("Patient", grace),
        "content": [{"attachment": {"contentType": "application/pdf"}}]})
    old = make(client, {
        "resourceType": "DocumentReference", "status": "superseded",
        "type": concept(LOINC, "42348-3"),
        "subject": ref("Patient", grace),
        "content": [{"attachment": {"contentType": "text/plain"}}]})
    assert ids(client, "DocumentReference", {"type": f"{LOINC}|42348-3"}) == {respect, old}
    assert ids(client, "DocumentReference", {"status": "current"}) == {respect}
    assert ids(client, "DocumentReference", {"security-label": f"{CONFIDENTIALITY}|R"}) \
        == {respect}
    assert ids(client, "DocumentReference", {"contenttype": "application/pdf"}) == {respect}

    dcm = "http://dicom.nema.org/resources/ontology/DCM"
    read = make(client, {"resourceType": "AuditEvent", "type": {"system": dcm, "code": "110110"},
                         "action": "R", "outcome": "0", "recorded": "2026-05-10T09:31:00Z",
                         "agent": [{"requestor": True, "who": {"display": "Dr Ahmed"}}],
                         "source": {"site": "YAS", "observer": {"display": "gateway"}}})
    failed = make(client, {"resourceType": "AuditEvent", "type": {"system": dcm,
                                                                  "code": "110110"},
                           "action": "U", "outcome": "8", "recorded": "2026-05-10T09:32:00Z",
                           "agent": [{"requestor": True, "who": {"display": "feed"}}],
                           "source": {"observer": {"display": "gateway"}}})
    assert ids(client, "AuditEvent", {"type": f"{dcm}|110110"}) == {read, failed}
    assert ids(client, "AuditEvent", {"action": "R"}) == {read}
    assert ids(client, "AuditEvent", {"outcome:not": "0"}) == {failed}
    assert ids(client, "AuditEvent", {"site": "YAS"}) == {read}
