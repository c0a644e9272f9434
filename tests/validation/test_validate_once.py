"""Validation runs once on the ingestion path, and the write path's check stays the guarantee.

`Repository.check_profiles` gives a ProfileChecked for the exact content it passed; a write
handed that proof skips its own check only for that same content from that same
repository. The counting check below wraps the real validator (it changes no result).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from fhir_gateway.errors import Issue, Unprocessable
from fhir_gateway.fhir.repository import ProfileChecked, Repository
from fhir_gateway.ingest.model import (
    NHS_NUMBER_SYSTEM,
    PATIENT_REFERENCE,
    BusinessId,
    MappedRecord,
    PersonKey,
    SourceRef,
)
from fhir_gateway.pipeline.loader import Loader
from fhir_gateway.store.sqlite import SqliteEngine
from fhir_gateway.validation import default_validator
from validation_kit import example


class CountingCheck:
    """The gateway's profile check, counting the resources it is asked about."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, resource: dict[str, Any]) -> list[Issue]:
        self.seen.append(resource.get("resourceType", "?"))
        return default_validator().validate(resource)


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    return Repository(SqliteEngine(tmp_path / "s.sqlite3"), profiles=CountingCheck())


def _counted(repo: Repository) -> list[str]:
    assert isinstance(repo.profiles, CountingCheck)
    return repo.profiles.seen


def test_proof_skips_the_second_check_of_the_same_content(repo: Repository) -> None:
    enc = example("Encounter-scr")
    errors, checked = repo.check_profiles(enc)
    assert errors == [] and isinstance(checked, ProfileChecked)
    repo.create(enc, checked=checked)
    assert _counted(repo) == ["Encounter"]


def test_proof_for_other_content_does_not_let_a_bad_resource_in(repo: Repository) -> None:
    good = example("Encounter-scr")
    _, checked = repo.check_profiles(good)
    bad = {**copy.deepcopy(good), "status": "bogus"}
    with pytest.raises(Unprocessable):
        repo.create(bad, checked=checked)
    # The same resource changed after it was checked is checked again, too.
    good["status"] = "bogus"
    with pytest.raises(Unprocessable):
        repo.create(good, checked=checked)


def test_any_change_of_type_after_the_check_means_checking_again(repo: Repository) -> None:
    # The same JSON text, but not the same Python value: the proof is not taken.
    enc = example("Encounter-scr")
    _, checked = repo.check_profiles(enc)
    enc["identifier"] = tuple(enc["identifier"])
    with pytest.raises(Unprocessable):  # the validator does not take a tuple for a list
        repo.create(enc, checked=checked)
    assert _counted(repo) == ["Encounter", "Encounter"]


def test_proof_from_another_repository_is_not_taken(repo: Repository, tmp_path: Path) -> None:
    other = Repository(SqliteEngine(tmp_path / "other.sqlite3"))
    enc = example("Encounter-scr")
    _, checked = other.check_profiles(enc)
    repo.create(enc, checked=checked)
    assert _counted(repo) == ["Encounter"]  # checked by this repository's own write


def test_failed_check_gives_no_proof(repo: Repository) -> None:
    errors, checked = repo.check_profiles({**example("Encounter-scr"), "status": "bogus"})
    assert errors and checked is None


def test_ingestion_checks_each_written_resource_once(repo: Repository) -> None:
    source = SourceRef(partner="acute", ods_code="RXA", partner_name="acute partner",
                       file="adt.hl7", position="message 1", record_id="m1",
                       event_time="2026-05-01T10:00:00Z", mapping_version="1", raw="raw")
    person = PersonKey(nhs_number="9434765919", local_system="https://acute.example/Id/mrn",
                       local_id="M1", family="Okafor", given="Grace",
                       birth_date="1938-03-14", postcode="DY1 4DX", gender="female")
    patient = {"resourceType": "Patient",
               "identifier": [{"system": NHS_NUMBER_SYSTEM, "value": "9434765919"},
                              {"system": "https://acute.example/Id/mrn", "value": "M1"}],
               "name": [{"family": "Okafor", "given": ["Grace"]}], "gender": "female",
               "birthDate": "1938-03-14", "address": [{"postalCode": "DY1 4DX"}]}
    enc = {"resourceType": "Encounter",
           "identifier": [{"system": "https://acute.example/Id/visit", "value": "V1"}],
           "status": "finished", "class": {"code": "IMP"},
           "subject": {"reference": PATIENT_REFERENCE}, "period": {"start": "2026-05-01"}}
    record = MappedRecord(source=source, person=person, patient=patient, resources=(enc,),
                          keys=(BusinessId("Encounter", "https://acute.example/Id/visit",
                                           "V1"),))
    summary = Loader(repo).ingest([record])
    assert (summary.created, summary.rejected) == (2, 0)
    # Patient, Encounter, Provenance: each profile candidate checked once, none again.
    assert sorted(_counted(repo)) == ["Encounter", "Patient", "Provenance"]
