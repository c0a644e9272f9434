"""Chained parameters (R4 3.1.1.4.15) one level deep, and reverse chaining with `_has`
(3.1.1.4.16) one level deep. A chain through a reference that can point to several types
which all define the inner parameter is ambiguous and refused with 400 ("Servers SHOULD
reject a search where the logical id refers to more than one matching resource across
different types"); a type modifier (`subject:Patient.`) resolves it."""

from __future__ import annotations

from eol_search_kit import (
    FOR_CPR,
    NHS,
    NOT_FOR_CPR,
    ODS,
    care_plan,
    encounter,
    flag,
    ids,
    organization,
    patient,
    ref,
    refused,
    resus_status,
)
from fastapi.testclient import TestClient


def seed(client: TestClient) -> dict[str, str]:
    s = {
        "grace": patient(client, "Okafor", "Grace", "9434765919", birthDate="1938-03-14"),
        "tom": patient(client, "O'Neill", "Tom", "9000000009", birthDate="1941-11"),
        "ann": patient(client, "Brennan", "Ann", "9449304424", birthDate="1952-06-30"),
    }
    s["grace_dnacpr"] = resus_status(client, s["grace"], NOT_FOR_CPR, "2026-05-10T09:30:00Z")
    s["tom_cpr"] = resus_status(client, s["tom"], FOR_CPR, "2026-04-02T14:00:00Z")
    s["tom_dnacpr"] = resus_status(client, s["tom"], NOT_FOR_CPR, "2026-05-01T11:00:00Z")
    return s


def test_chain_with_type_modifier(client: TestClient) -> None:
    s = seed(client)
    assert ids(client, "Observation", {"subject:Patient.identifier": f"{NHS}|9434765919"}) \
        == {s["grace_dnacpr"]}
    assert ids(client, "Observation", {"subject:Patient.identifier": f"{NHS}|9000000009"}) \
        == {s["tom_cpr"], s["tom_dnacpr"]}
    assert ids(client, "Observation", {"subject:Patient.identifier": f"{NHS}|9449304424"}) \
        == set()
    assert ids(client, "Observation", {"subject:Patient.family": "o'ne"}) \
        == {s["tom_cpr"], s["tom_dnacpr"]}
    assert ids(client, "Observation", {"subject:Patient.name:exact": "Okafor"}) \
        == {s["grace_dnacpr"]}


def test_chain_without_modifier_when_one_target_type_fits(client: TestClient) -> None:
    s = seed(client)
    # only Patient (of Observation.subject's targets) has `birthdate`
    assert ids(client, "Observation", {"subject.birthdate": "lt1940"}) == {s["grace_dnacpr"]}
    assert ids(client, "Observation", {"patient.birthdate": "1941"}) \
        == {s["tom_cpr"], s["tom_dnacpr"]}
    assert ids(client, "Observation", {"patient.birthdate": "ge1950"}) == set()
    assert ids(client, "Observation", {"patient.birthdate": "1938,1941"}) \
        == {s["grace_dnacpr"], s["tom_cpr"], s["tom_dnacpr"]}


def test_chain_and_with_other_criteria(client: TestClient) -> None:
    s = seed(client)
    assert ids(client, "Observation", [("subject:Patient.identifier", f"{NHS}|9000000009"),
                                       ("value-concept", NOT_FOR_CPR)]) == {s["tom_dnacpr"]}
    # two chains are evaluated independently (3.1.1.4.15)
    assert ids(client, "Observation", [("patient.birthdate", "lt1945"),
                                       ("subject:Patient.family", "okafor")]) \
        == {s["grace_dnacpr"]}


def test_ambiguous_chain_is_refused(client: TestClient) -> None:
    seed(client)
    # Observation.subject may be a Group, Device, Patient or Location: all have identifier
    diagnostics = refused(client, "Observation", {"subject.identifier": f"{NHS}|9434765919"})
    assert "subject" in diagnostics
    refused(client, "Observation", {"subject:Organization.name": "leeds"})  # not a target
    refused(client, "Observation", {"subject:Patient.no-such-param": "x"})
    refused(client, "Observation", {"code.identifier": "x"})  # a token does not chain
    refused(client, "Observation", {"subject:Patient.organization.name": "x"})  # two levels


def test_chain_on_patient_parameter_needs_no_type(client: TestClient) -> None:
    # R4 3.1.1.4.12: the `patient` parameter "is limited to only include references of
    # type Patient. When using the patient search parameter, there is no need to specify
    # ':Patient' as a modifier" - so patient.identifier is not ambiguous.
    s = seed(client)
    assert ids(client, "Observation", {"patient.identifier": f"{NHS}|9434765919"}) \
        == {s["grace_dnacpr"]}


def test_chain_on_other_types(client: TestClient) -> None:
    s = seed(client)
    hospice = organization(client, "NHD01", "Wheatfields Hospice")
    trust = organization(client, "RR8", "Leeds Teaching Hospitals NHS Trust")
    stay = encounter(client, s["grace"], {"start": "2026-05-12T08:00:00+01:00"}, "IMP",
                     serviceProvider=ref("Organization", hospice))
    visit = encounter(client, s["tom"], {"start": "2026-05-01T10:00:00+01:00"}, "HH",
                      serviceProvider=ref("Organization", trust))
    assert ids(client, "Encounter", {"service-provider.identifier": f"{ODS}|NHD01"}) == {stay}
    assert ids(client, "Encounter", {"service-provider.name": "leeds"}) == {visit}
    plan = care_plan(client, s["grace"], "active", encounter=ref("Encounter", stay))
    assert ids(client, "CarePlan", {"encounter.class": "IMP"}) == {plan}
    assert ids(client, "CarePlan", {"encounter.class": "HH"}) == set()
    alert = flag(client, s["tom"], {"start": "2026-05-01"})
    assert ids(client, "Flag", {"subject:Patient.birthdate": "1941-11"}) == {alert}


def test_has_one_level(client: TestClient) -> None:
    s = seed(client)
    dnacpr = "_has:Observation:patient:value-concept"
    assert ids(client, "Patient", {dnacpr: NOT_FOR_CPR}) == {s["grace"], s["tom"]}
    assert ids(client, "Patient", {dnacpr: FOR_CPR}) == {s["tom"]}
    assert ids(client, "Patient", {dnacpr: f"{FOR_CPR},{NOT_FOR_CPR}"}) \
        == {s["grace"], s["tom"]}
    assert ids(client, "Patient", {"_has:Observation:subject:date": "2026-05"}) \
        == {s["grace"], s["tom"]}
    assert ids(client, "Patient", {"_has:Observation:subject:date": "2026-04"}) == {s["tom"]}
    assert ids(client, "Patient", {"_has:Observation:patient:code": "no-such-code"}) == set()


def test_has_repeats_are_independent_and(client: TestClient) -> None:
    s = seed(client)
    has = "_has:Observation:patient:value-concept"
    # each _has is processed independently (3.1.1.4.16): Tom has both decisions recorded
    assert ids(client, "Patient", [(has, FOR_CPR), (has, NOT_FOR_CPR)]) == {s["tom"]}
    assert ids(client, "Patient", [(has, NOT_FOR_CPR), ("birthdate", "lt1940")]) \
        == {s["grace"]}
    care_plan(client, s["ann"], "active")
    care_plan(client, s["grace"], "completed")
    assert ids(client, "Patient", {"_has:CarePlan:subject:status": "active"}) == {s["ann"]}
    assert ids(client, "Patient", [("_has:CarePlan:subject:status", "active,completed"),
                                   (has, NOT_FOR_CPR)]) == {s["grace"]}


def test_has_refuses_what_it_cannot_do(client: TestClient) -> None:
    seed(client)
    refused(client, "Patient", {"_has:Observation:patient": "x"})  # no inner parameter
    refused(client, "Patient", {"_has:NoSuchType:patient:code": "x"})
    refused(client, "Patient", {"_has:Observation:code:code": "x"})  # not a reference
    refused(client, "Patient", {"_has:Observation:patient:no-such-param": "x"})
    refused(client, "Patient", {"_has:Observation:encounter:code": "x"})  # not to Patient
    refused(client, "Patient",
            {"_has:Observation:patient:_has:AuditEvent:entity:agent": "x"})  # two levels
