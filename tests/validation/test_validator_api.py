"""ProfileValidator's contract: what it knows, what it says about unknown profiles."""

from __future__ import annotations

import copy

from fhir_gateway.errors import operation_outcome
from fhir_gateway.validation import ProfileValidator, default_validator
from validation_kit import BASE, example

US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"


def test_profiles_for_each_type(validator: ProfileValidator) -> None:
    assert validator.profiles_for("Observation") == [
        BASE + "SCR-CPRDecision", BASE + "SCR-EndOfLifeStatus", BASE + "SCR-PlaceOfDeath",
        BASE + "SCR-PreferredPlace"]
    assert validator.profiles_for("Consent") == [
        BASE + "SCR-AdvanceDirective", BASE + "SCR-ConsentToShare"]
    for rtype in ("Patient", "Encounter", "CarePlan", "RelatedPerson", "Provenance",
                  "AuditEvent", "DetectedIssue"):
        assert validator.profiles_for(rtype) == [BASE + f"SCR-{rtype}"]
    assert validator.profiles_for("Flag") == []
    assert len(validator.profiles()) == 13


def test_known(validator: ProfileValidator) -> None:
    assert validator.known(BASE + "SCR-Patient")
    assert validator.known(BASE + "SCR-Patient|0.1.0")
    assert not validator.known("https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient")
    assert not validator.known(US_CORE)


def test_no_profile_named_means_no_profile_issues(validator: ProfileValidator) -> None:
    patient = example("Patient-scr")
    del patient["meta"]
    del patient["identifier"]  # would fail SCR-Patient
    assert validator.validate(patient) == []
    assert [i.code for i in validator.validate(patient, profile=BASE + "SCR-Patient")
            if i.severity == "error"] == ["required"]
    # (an NHS number is checked whatever the profile: tests/validation/test_nhs_number.py)


def test_unknown_profile_is_a_warning_not_a_rejection(validator: ProfileValidator) -> None:
    patient = example("Patient-scr")
    patient["meta"]["profile"] = [US_CORE]
    (issue,) = validator.validate(patient)
    assert (issue.severity, issue.code) == ("warning", "not-supported")
    assert issue.expression == ("Patient.meta.profile[0]",)
    assert US_CORE in issue.diagnostics


def test_known_and_unknown_profiles_together(validator: ProfileValidator) -> None:
    patient = example("Patient-scr")
    patient["meta"]["profile"] = [US_CORE, BASE + "SCR-Patient"]
    del patient["identifier"]
    issues = validator.validate(patient)
    assert [(i.severity, i.code, i.expression) for i in issues] == [
        ("warning", "not-supported", ("Patient.meta.profile[0]",)),
        ("error", "required", ("Patient.identifier",)),
    ]


def test_explicit_profile_must_be_known(validator: ProfileValidator) -> None:
    (issue,) = validator.validate(example("Patient-scr"), profile=US_CORE)
    assert (issue.severity, issue.code) == ("error", "not-supported")


def test_profile_for_another_type(validator: ProfileValidator) -> None:
    encounter = example("Encounter-scr")
    issues = validator.validate(encounter, profile=BASE + "SCR-Patient")
    assert [(i.code, i.expression) for i in issues if i.severity == "error"] == [
        ("invalid", ("Encounter",))]
    encounter["meta"]["profile"].append(BASE + "SCR-Patient")
    assert [i.code for i in validator.validate(encounter) if i.severity == "error"] == [
        "invalid"]


def test_not_a_resource(validator: ProfileValidator) -> None:
    (issue,) = validator.validate({"id": "x"})
    assert (issue.code, issue.expression) == ("structure", ("resourceType",))


def test_the_same_problem_is_reported_once(validator: ProfileValidator) -> None:
    obs = example("Observation-cpr")
    obs["meta"]["profile"] = [BASE + "SCR-CPRDecision", BASE + "SCR-CPRDecision|0.1.0"]
    del obs["valueCodeableConcept"]
    issues = validator.validate(obs, profile=BASE + "SCR-CPRDecision")
    assert [i.expression for i in issues if i.severity == "error"] == [
        ("Observation.value",)]


def test_input_is_not_changed(validator: ProfileValidator) -> None:
    for name in ("Patient-scr", "Observation-cpr", "Consent-advance-directive"):
        resource = example(name)
        before = copy.deepcopy(resource)
        validator.validate(resource)
        assert resource == before


def test_operation_outcome(validator: ProfileValidator) -> None:
    obs = example("Observation-cpr")
    obs["status"] = "done"
    outcome = operation_outcome(validator.validate(obs))
    assert outcome["resourceType"] == "OperationOutcome"
    assert {"severity": "error", "code": "code-invalid",
            "diagnostics": outcome["issue"][0]["diagnostics"],
            "expression": ["Observation.status"]} in outcome["issue"]


def test_default_validator_is_built_once() -> None:
    assert default_validator() is default_validator()


def test_what_is_not_checked_is_said(validator: ProfileValidator) -> None:
    assert validator.unsupported_invariants() == {}
    unchecked = {vs for per in validator.unchecked_bindings().values() for vs in per.values()}
    assert unchecked == {"http://hl7.org/fhir/ValueSet/all-languages",
                         "http://hl7.org/fhir/ValueSet/observation-triggeredbytype"}
