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
    # whitespace around it is not part of it; an empty version still names the resource
    ("Patient/p1\n", (None, "Patient", "p1", None)),
    ("Patient/p1/_history/", (None, "Patient", "p1", "")),
])
def test_a_literal_reference_is_read_into_its_parts(ref: str, parts: tuple[object, ...]) -> None:
    assert literal_reference(ref) == LiteralReference(*parts)


@pytest.mark.parametrize("ref", [
    "#contained", "urn:uuid:6a0e0e0c-0000-4000-8000-000000000001", "Patient?identifier=s|v",
    "Patient", "patient/1", "Patient/", "Patient//1", "Patient/a b", "123", "", None, 42,
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


@pytest.mark.parametrize("written", ["Patient/hid/_history/", "Patient/hid\n", " Patient/hid ",
                                     "https://hospice.example/fhir/Patient/hid/_history/",
                                     "Patient/hid/_history/3"])
def test_consent_counts_every_way_a_reference_names_the_patient(written: str) -> None:
    """A deny Consent hides what names its patient: a stray newline or an empty version
    must not move a resource out of its reach (the first shared reader did)."""
    from fhir_gateway.security.consent import local_refs, reference_ids

    assert reference_ids([{"reference": written}], "Patient") == ["hid"]
    assert local_refs([{"reference": written}]) == [("Patient", "hid")]


@pytest.mark.parametrize(("written", "indexed"), [
    ("Patient/p1\n", ("Patient", "p1")),  # as the index read it before: stays in p1's record
    ("Patient/p1/_history/", ("Patient", "p1")),
    ("Patient/p1/_history/4", ("Patient", "p1")),
    ("Patient/not_an_id", (None, None)),  # no Patient here can have that id
    ("Patient/a b", (None, None)),
    ("https://elsewhere.example/fhir/Patient/p1", (None, None)),  # another server's
])
def test_the_index_takes_local_references_to_ids_this_server_could_hold(
        written: str, indexed: tuple[str | None, str | None]) -> None:
    from fhir_gateway.search.extract import _references

    (value,) = list(_references({"reference": written}))
    assert (value.target_type, value.target_id) == indexed


@pytest.mark.parametrize(("link", "survivor"), [
    ("Patient/new", "new"), ("Patient/new/_history/2", "new"), ("Patient/new ", "new"),
    # an id no Patient can have is not followed: the summary says it cannot follow it
    # (409), never "no record is known" for a person whose record was merged
    ("Patient/new_1", None), ("https://x.example/fhir/Patient/new", None),
])
def test_a_merge_link_is_followed_only_to_an_id_a_patient_can_have(
        link: str, survivor: str | None) -> None:
    from fhir_gateway.pipeline.identity import replaced_by

    patient = {"resourceType": "Patient", "link": [{"type": "replaced-by",
                                                    "other": {"reference": link}}]}
    assert replaced_by(patient) == survivor


def test_a_plan_replacing_another_by_an_empty_version_still_replaces_it() -> None:
    from fhir_gateway.summary.facts import _replaces

    plan = {"resourceType": "CarePlan", "replaces": [
        {"reference": "CarePlan/old-1/_history/"}, {"reference": "CarePlan/old-2/_history/1"},
        {"reference": "CarePlan/old-3"}]}
    assert _replaces(plan) == ["CarePlan/old-1", "CarePlan/old-2", "CarePlan/old-3"]
