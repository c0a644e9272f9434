"""An A40 merge re-points the merged-away Patient's resources to the survivor. Those new
versions change no clinical content, so their Provenance must say so (activity "merge")
and stay apart from the Provenance of what the merge message itself wrote: readers credit
each fact to the partner that authored it, not to the hospital that merged the records."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from fhir_gateway import jsonio
from fhir_gateway.errors import Conflict
from fhir_gateway.fhir.repository import Repository
from fhir_gateway.ingest.model import (
    NHS_NUMBER_SYSTEM,
    PATIENT_REFERENCE,
    BusinessId,
    MappedRecord,
    PersonKey,
    SourceRef,
)
from fhir_gateway.pipeline.loader import Loader
from fhir_gateway.pipeline.merge import REPOINT_ACTIVITY, is_repoint
from fhir_gateway.store.base import StoreEngine
from fhir_gateway.store.query import IndexQuery
from fhir_gateway.validation import default_validator

_clock = itertools.count()
ODS = {"acute": "RXA", "gp": "Y90001"}


def clock() -> str:
    return f"2026-11-22T11:{next(_clock) % 60:02d}:00.000000Z"


def person(nhs: str, local: str, partner: str) -> PersonKey:
    return PersonKey(nhs_number=nhs, local_system=f"https://{partner}.example/Id/person",
                     local_id=local, family="Okafor", given="Grace", birth_date="1938-03-14",
                     postcode="DY1 4DX", gender="female")


def record(p: PersonKey, partner: str, rid: str, *resources: dict[str, Any],
           **kw: Any) -> MappedRecord:
    ids = [{"system": NHS_NUMBER_SYSTEM, "value": p.nhs_number},
           {"system": p.local_system, "value": p.local_id}]
    ids = [i for i in ids if i["value"] is not None]  # a JSON null is no identifier
    keys = tuple(BusinessId(r["resourceType"], r["identifier"][0]["system"],
                            r["identifier"][0]["value"]) for r in resources)
    source = SourceRef(partner=partner, ods_code=ODS[partner],
                       partner_name=f"{partner} partner", file=f"{partner}.dat",
                       position="line 2", record_id=rid, event_time=None,
                       mapping_version="1", raw=f"raw {rid}")
    return MappedRecord(source=source, person=p, patient={
        "resourceType": "Patient", "identifier": ids,
        "name": [{"family": p.family, "given": [p.given]}], "birthDate": p.birth_date,
        "gender": p.gender}, resources=resources, keys=keys, **kw)


def dnacpr() -> dict[str, Any]:
    sct = "http://snomed.info/sct"
    return {"resourceType": "Observation", "status": "final",
            "identifier": [{"system": "https://gp.example/Id/cpr", "value": "D1"}],
            "code": {"coding": [{"system": sct, "code": "304251008"}]},
            "subject": {"reference": PATIENT_REFERENCE}, "effectiveDateTime": "2026-02-11",
            "valueCodeableConcept": {"coding": [{"system": sct, "code": "450476008"}]}}


def all_of(repo: Repository, rtype: str) -> list[dict[str, Any]]:
    return [jsonio.loads_trusted(r.body) for r in repo.find(IndexQuery(rtype=rtype)).rows]


@pytest.fixture
def merged(engine: StoreEngine) -> Loader:
    loader = Loader(Repository(engine), clock=clock)
    old = person("9000000009", "G1", "gp")
    loader.ingest([record(old, "gp", "r1", dnacpr())])
    survivor = person("9434765919", "RXA-NEW", "acute")
    summary = loader.ingest([record(survivor, "acute", "m2", event="A40", merge_from=old)])
    assert summary.rejected == 0, summary.rejections
    return loader


def test_repointed_versions_have_a_merge_provenance_of_their_own(merged: Loader) -> None:
    (obs,) = all_of(merged.repo, "Observation")
    survivor = next(p for p in all_of(merged.repo, "Patient") if p.get("active") is not False)
    assert obs["subject"]["reference"] == f"Patient/{survivor['id']}"
    current = f"Observation/{obs['id']}/_history/{obs['meta']['versionId']}"
    first = f"Observation/{obs['id']}/_history/1"
    provs = all_of(merged.repo, "Provenance")
    naming = {t["reference"]: p for p in provs for t in p["target"]}
    # the re-pointed version: credited to the merge, marked as one, sent by the hospital
    repoint = naming[current]
    assert is_repoint(repoint)
    assert repoint["activity"]["coding"][0] == REPOINT_ACTIVITY
    assert repoint["agent"][0]["who"]["identifier"]["value"] == "RXA"
    assert {t["reference"].split("/")[0] for t in repoint["target"]} == {"Observation"}
    # the content's version: still the GP's, and not a merge
    assert naming[first]["agent"][0]["who"]["identifier"]["value"] == "Y90001"
    assert not is_repoint(naming[first])
    # what the A40 itself wrote (the two Patients) is in an ordinary Provenance
    own = [p for p in provs if not is_repoint(p)
           and p["agent"][0]["who"]["identifier"]["value"] == "RXA"]
    assert len(own) == 1
    assert {t["reference"].split("/")[0] for t in own[0]["target"]} == {"Patient"}


def test_the_merge_provenance_meets_the_provenance_profile(merged: Loader) -> None:
    repoint = next(p for p in all_of(merged.repo, "Provenance") if is_repoint(p))
    errors = [i for i in default_validator().validate(repoint)
              if i.severity in ("error", "fatal")]
    assert errors == []


def test_a_merge_redelivered_writes_no_second_merge_provenance(merged: Loader) -> None:
    old = person("9000000009", "G1", "gp")
    survivor = person("9434765919", "RXA-NEW", "acute")
    merged.ingest([record(survivor, "acute", "m2", event="A40", merge_from=old)])
    assert len([p for p in all_of(merged.repo, "Provenance") if is_repoint(p)]) == 1


def test_a_record_for_a_merged_away_nhs_number_goes_to_the_survivor(
        merged: Loader) -> None:
    """The A40 took NHS number 9000000009 off the merged-away record. A later record with
    only that number must not become a second Patient for the person (nor fail as a busy
    store): the number leads to the survivor, as it led to the merged record before the
    merge, and the survivor keeps its own NHS number. (It was held, and no reviewer's
    choice could place it.)"""
    repo = merged.repo
    survivor = next(p for p in all_of(repo, "Patient")
                    if p.get("link", [{}])[0].get("type") == "replaces")
    late = PersonKey(nhs_number="9000000009", local_system=None, local_id=None,
                     family="Okafor", given="Grace", birth_date="1938-03-14",
                     postcode="DY1 4DX", gender="female")
    patients = len(all_of(repo, "Patient"))
    summary = merged.ingest([record(late, "gp", "r9")])
    assert (summary.held, summary.rejected) == (0, 0), summary
    assert summary.patients == {survivor["id"]}
    assert len(all_of(repo, "Patient")) == patients
    (now,) = [p for p in all_of(repo, "Patient") if p["id"] == survivor["id"]]
    assert [i["value"] for i in now["identifier"] if i.get("system") == NHS_NUMBER_SYSTEM] \
        == ["9434765919"]


def test_a_reviewer_cannot_make_a_new_patient_for_a_merged_away_nhs_number(
        merged: Loader) -> None:
    """A record for the merged-away number held for another reason (its birth date): a
    new Patient would split the person the A40 joined, so it is refused naming the
    survivor (it once failed as "store busy", then split them), and attaching it there
    works."""
    survivor = next(p for p in all_of(merged.repo, "Patient")
                    if p.get("link", [{}])[0].get("type") == "replaces")
    late = PersonKey(nhs_number="9000000009", local_system=None, local_id=None,
                     family="Okafor", given="Grace", birth_date="1938-04-14",
                     postcode="DY1 4DX", gender="female")
    merged.ingest([record(late, "gp", "r9")])
    (key, held), = merged.list_held()
    assert held["candidates"] == [survivor["id"]]
    with pytest.raises(Conflict, match=f"--patient {survivor['id']}"):
        merged.resolve_held(key)  # the reviewer: a new Patient
    settled = merged.resolve_held(key, patient_id=survivor["id"])
    assert (settled.created, settled.rejected) == (0, 0), settled
    holders = [p for p in all_of(merged.repo, "Patient")
               if {"system": NHS_NUMBER_SYSTEM, "value": "9000000009"} in p.get("identifier", [])]
    assert holders == [] and merged.list_held() == []


def test_a_merge_leaves_the_gateways_conflict_issue_to_the_gateway(engine: StoreEngine) -> None:
    """The merged-away person's stored CPR-conflict issue is the gateway's, not a partner
    fact: the merge does not re-point it (its Provenance would credit the hospital with
    it); the issue goes with the merged-away record, and the survivor gets its own."""
    from fhir_gateway.fhir.derivations import is_derived

    loader = Loader(Repository(engine), clock=clock)
    old = person("9000000009", "G1", "gp")
    loader.ingest([record(old, "gp", "r1", dnacpr())])
    attempt = {**dnacpr(), "identifier": [{"system": "https://acute.example/Id/cpr",
                                          "value": "A1"}],
               "effectiveDateTime": "2026-02-12", "valueCodeableConcept": {"coding": [
                   {"system": "http://snomed.info/sct", "code": "450475007"}]}}
    loader.ingest([record(person("9000000009", "A-OLD", "acute"), "acute", "a1", attempt)])
    [before] = all_of(loader.repo, "DetectedIssue")
    loser = before["patient"]["reference"]
    survivor = person("9434765919", "RXA-NEW", "acute")
    summary = loader.ingest([record(survivor, "acute", "m2", event="A40", merge_from=old)])
    assert summary.rejected == 0, summary.rejections
    [after] = all_of(loader.repo, "DetectedIssue")
    assert after["patient"]["reference"] != loser and is_derived(after)
    assert after["id"] != before["id"]
    history = loader.repo.history(rtype="DetectedIssue", rid=before["id"]).versions
    assert all(loser in (v.body or loser) for v in history)  # never re-pointed
    targets = [t["reference"] for p in all_of(loader.repo, "Provenance")
               for t in p.get("target", [])]
    assert not any(t.startswith("DetectedIssue/") for t in targets)
