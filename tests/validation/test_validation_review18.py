"""Review 18 of validation: a primitive's extensions do not change its value (a CPR
decision with both codes, one extended, passed scr-cpr-1; valid resources with `_field`
extensions were refused); JSON null is no element; a reference no reader can follow is
not taken for one of the right type; obs-7 gives fhirpathpy's answer without its
quadratic cost."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_gateway.validation import default_validator
from validation_kit import example

SCT = "http://snomed.info/sct"
FOR_CPR = {"system": SCT, "code": "450475007"}
EXTENSION = {"extension": [{"url": "http://example.org/e", "valueString": "x"}]}


def errors(resource: dict[str, Any]) -> list[tuple[str, tuple[str, ...], str]]:
    return [(i.code, tuple(i.expression), i.diagnostics)
            for i in default_validator().validate(resource) if i.severity == "error"]


@pytest.mark.parametrize("extended", ["_code", "_system"])
def test_a_decision_for_and_not_for_cpr_is_refused_whatever_extends_a_code(
        extended: str) -> None:
    cpr = example("Observation-cpr")
    cpr["valueCodeableConcept"]["coding"].append({**FOR_CPR, extended: EXTENSION})
    assert any("(scr-cpr-1)" in said for _, _, said in errors(cpr)), errors(cpr)


@pytest.mark.parametrize(("name", "extend"), [
    ("Observation-cpr", lambda r: r["subject"].update(_reference=EXTENSION)),
    ("Provenance-scr", lambda r: r["agent"][0]["who"]["identifier"].update(_system={"id": "s"})),
    ("Provenance-scr", lambda r: r["entity"][0].update(_role={"id": "r"})),
])
def test_a_valid_resource_stays_valid_with_an_extension_beside_a_primitive(
        name: str, extend: Any) -> None:
    resource = example(name)
    assert errors(resource) == []
    extend(resource)
    assert errors(resource) == []


@pytest.mark.parametrize(("name", "change", "where"), [
    ("Observation-cpr", lambda r: r.update(code=None), "Observation.code"),
    ("Observation-cpr", lambda r: r.update(valueCodeableConcept=None), "Observation.value"),
    ("Patient-scr", lambda r: r["identifier"][0].update(value=None),
     "Patient.identifier[0].value"),
])
def test_json_null_does_not_fill_a_required_element(name: str, change: Any,
                                                    where: str) -> None:
    resource = example(name)
    change(resource)
    assert where in {path for _, paths, _ in errors(resource) for path in paths}, \
        errors(resource)


@pytest.mark.parametrize("subject", [
    "Group/g1#p1", f"Group/{'a' * 65}", "\uff30atient/p1", "Patient/p 1",
])
def test_a_reference_that_cannot_be_read_is_not_taken_for_the_right_type(
        subject: str) -> None:
    cpr = example("Observation-cpr")
    cpr["subject"] = {"reference": subject}
    assert ("invalid", ("Observation.subject",)) in {(c, e) for c, e, _ in errors(cpr)}, \
        errors(cpr)


def test_a_contained_or_absolute_reference_is_still_read() -> None:
    cpr = example("Observation-cpr")
    cpr["subject"] = {"reference": "https://example.org/fhir/Patient/p1"}
    assert not [e for e in errors(cpr) if e[1] == ("Observation.subject",)]


def test_obs_7_refuses_a_component_coded_as_the_observation_with_many_codings() -> None:
    """Thousands of codings on both sides: fhirpathpy compared every pair (minutes, with
    the store's write lock held); the answer is the same, found at once."""
    cpr = example("Observation-cpr")
    cpr["code"]["coding"] += [{"system": "urn:a", "code": f"a{i}"} for i in range(3000)]
    cpr["component"] = [{"code": {"coding": [
        {"system": "urn:b", "code": f"b{i}"} for i in range(3000)]}}]
    assert not any("(obs-7)" in said for _, _, said in errors(cpr))
    cpr["component"][0]["code"]["coding"].append({"system": "urn:a", "code": "a2999"})
    assert any("(obs-7)" in said for _, _, said in errors(cpr))
