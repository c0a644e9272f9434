"""One reading of `[base/]Type/id[/_history/version]` for every part of the gateway."""

from __future__ import annotations

import pytest

from fhir_gateway.references import LiteralReference, literal_reference


@pytest.mark.parametrize(("ref", "parts"), [
    ("Patient/123", (None, "Patient", "123", None)),
    ("Patient/123/_history/2", (None, "Patient", "123", "2")),
    ("https://gw.example/fhir/Encounter/E.1",
     ("https://gw.example/fhir", "Encounter", "E.1", None)),
    ("https://gw.example/fhir/Patient/p/_history/7",
     ("https://gw.example/fhir", "Patient", "p", "7")),
    # an id the partner wrote that is not a FHIR id is still its id (looked up, not trusted)
    ("Encounter/visit_7", (None, "Encounter", "visit_7", None)),
    # a version that is itself a capitalised pair is a version, not another reference
    ("Patient/1/_history/Version2", (None, "Patient", "1", "Version2")),
])
def test_a_literal_reference_is_read_into_its_parts(ref: str, parts: tuple[object, ...]) -> None:
    assert literal_reference(ref) == LiteralReference(*parts)


@pytest.mark.parametrize("ref", [
    "#contained", "urn:uuid:6a0e0e0c-0000-4000-8000-000000000001", "Patient?identifier=s|v",
    "Patient", "patient/1", "Patient/", "Patient//1", "123", "", None, 42,
    {"reference": "Patient/1"},
])
def test_anything_else_is_not_a_literal_reference(ref: object) -> None:
    assert literal_reference(ref) is None


def test_a_path_from_the_root_is_not_relative() -> None:
    """`/Patient/1` names a Patient (consent counts it, cautiously), but not one this
    server's index takes as its own `Patient/1`."""
    named = literal_reference("/Patient/1")
    assert named == LiteralReference("", "Patient", "1", None)
    assert not named.relative


def test_history_is_never_taken_for_the_type_or_the_id() -> None:
    named = literal_reference("http://x.example/fhir/Observation/o1/_history/3")
    assert named is not None
    assert (named.type, named.id, named.version) == ("Observation", "o1", "3")
    assert not named.relative
    assert named.unversioned == "http://x.example/fhir/Observation/o1"
    relative = literal_reference("Observation/o1/_history/3")
    assert relative is not None and relative.relative
    assert relative.unversioned == "Observation/o1"
