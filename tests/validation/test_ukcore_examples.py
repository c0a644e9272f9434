"""UK Core's own examples (../shared/ukcore/examples) against the gateway's profiles.

As they stand (naming UK Core profiles only) they are accepted: no errors, one warning per
UK Core profile they name (the gateway does not hold resources to UK Core itself). Held
to the gateway's profile for their type, most are accepted; the rest break a rule the
shared record adds on purpose, listed below with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_gateway.validation import ProfileValidator
from validation_kit import BASE, UKCORE

TYPES = {"Patient", "Encounter", "CarePlan", "Observation", "Consent", "RelatedPerson",
         "Provenance", "AuditEvent", "DetectedIssue"}
#: The gateway profile a resource of each type is held to here (Observation: see below).
GENERAL = {
    "Patient": "SCR-Patient", "Encounter": "SCR-Encounter", "CarePlan": "SCR-CarePlan",
    "RelatedPerson": "SCR-RelatedPerson", "Provenance": "SCR-Provenance",
    "AuditEvent": "SCR-AuditEvent", "Consent": "SCR-ConsentToShare",
}


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


EXAMPLES = sorted(p for p in (UKCORE / "examples").glob("*.json")
                  if _load(p).get("resourceType") in TYPES)

NO_IDENTIFIER = [("required", "Patient.identifier")]
NO_VISIT = [("required", "Encounter.identifier"), ("required", "Encounter.subject")]
#: file -> (the errors, why): where a UK Core example breaks a rule of the shared record.
STRICTER: dict[str, tuple[list[tuple[str, str]], str]] = {
    **{f"Extension-UKCore-{n}-Example.json": (NO_IDENTIFIER, "a snippet showing one "
       "extension, with no identifier: every Patient in the shared record comes from a "
       "partner and carries at least that partner's identifier")
       for n in ("AddressKey", "BirthPlace", "BirthSex", "BirthTime", "CadavericDonor",
                 "ContactPreference", "ContactRank", "CopyCorrespondenceIndicator",
                 "DeathNotificationStatus", "EthnicCategory", "InterpreterRequired",
                 "MedicalApplianceSupplier", "NHSNumberUnavailableReason",
                 "OtherContactSystem", "OverseasVisitorChargingCategory",
                 "PreferredDispenserOrganization", "ResidentialStatus")},
    **{f"UKCore-Patient-Sn-{n}-Example.json": (NO_IDENTIFIER, "a snippet with no identifier")
       for n in ("Makaton", "MultipleLanguages", "Photo", "SingleLanguage")},
    **{f"Extension-UKCore-{n}-Example.json": (NO_VISIT, "a snippet showing one extension: "
       "the shared record needs the partner's visit identifier and the patient")
       for n in ("AdmissionMethod", "DischargeMethod", "EmergencyCareDischargeStatus",
                 "LegalStatus", "OutcomeOfAttendance")},
    "Extension-UKCore-NHSNumberVerificationStatus-Example.json": (
        [("invariant", "Patient.identifier[0]")],
        "the identifier holds only the verification status extension, no system or "
        "value (scr-id-1)"),
    "Extension-UKCore-EffectivePeriod-Example.json": (
        [("required", "RelatedPerson.relationship"), ("invariant", "RelatedPerson")],
        "a RelatedPerson snippet with no relationship, name or telecom: the record needs "
        "to know who they are to the patient and how to reach them (scr-rp-1)"),
    "UKCore-Patient-BabyPatient-Example.json": (
        [("value", "Patient.identifier[0].value")],
        "its NHS number 9912003890 fails the Modulus 11 check (the check digit is 6)"),
    "UKCore-CarePlan-WellnessPlan-Example.json": (
        [("invariant", "CarePlan.identifier[0]")],
        "its identifier has a value but no system, so no one can tell whose it is"),
    "UKCore-Provenance-RARecordConsent-Example.json": (
        [("invariant", "Provenance"), ("invariant", "Provenance"),
         ("invalid", "Provenance.agent[0].onBehalfOf")],
        "it names no partner by ODS code (scr-prov-1) and no source record (scr-prov-2), "
        "which is what the shared record's Provenance is for, and its onBehalfOf reference "
        "(`Organization/https://...`) names no Organization a reader can follow"),
}


def _errors(issues: list[Any]) -> list[tuple[str, str]]:
    return sorted((i.code, i.expression[0]) for i in issues if i.severity == "error")


def test_the_examples_are_there() -> None:
    names = {p.name for p in EXAMPLES}
    assert len(names) > 60
    assert set(STRICTER) <= names


#: file -> the errors it has with no profile named: an NHS number is held to its check
#: digit wherever it is (scr-nhs-1), or it would be stored and found by no search
UNPROFILED_ERRORS = {"UKCore-Patient-BabyPatient-Example.json": [
    ("value", "Patient.identifier[0].value")]}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_accepted_as_they_stand(validator: ProfileValidator, path: Path) -> None:
    resource = _load(path)
    issues = validator.validate(resource)
    assert _errors(issues) == UNPROFILED_ERRORS.get(path.name, [])
    named = resource.get("meta", {}).get("profile", [])
    warnings = [i for i in issues if i.code == "not-supported"]
    assert len(warnings) == len(named)
    assert all(i.severity == "warning" for i in warnings)


@pytest.mark.parametrize("path", [p for p in EXAMPLES if _load(p)["resourceType"] in GENERAL],
                         ids=lambda p: p.name)
def test_against_the_gateway_profile(validator: ProfileValidator, path: Path) -> None:
    resource = _load(path)
    profile = BASE + GENERAL[resource["resourceType"]]
    expected = sorted(STRICTER.get(path.name, ([], ""))[0])
    assert _errors(validator.validate(resource, profile=profile)) == expected


def test_accepted_ones_include_each_kind(validator: ProfileValidator) -> None:
    accepted = {_load(p)["resourceType"] for p in EXAMPLES
                if _load(p)["resourceType"] in GENERAL and p.name not in STRICTER}
    assert accepted == {"Patient", "Encounter", "RelatedPerson", "AuditEvent", "Consent"}


@pytest.mark.parametrize("path", [p for p in EXAMPLES if _load(p)["resourceType"] ==
                                  "Observation"], ids=lambda p: p.name)
def test_observations_are_not_mistaken_for_a_cpr_decision(validator: ProfileValidator,
                                                          path: Path) -> None:
    """UK Core's Observations are vital signs, lab results and findings, none of them a
    fact the shared record profiles; held to SCR-CPRDecision each fails on its code."""
    errors = _errors(validator.validate(_load(path), profile=BASE + "SCR-CPRDecision"))
    assert ("value", "Observation.code") in errors
