"""The sample feeds, mapped with the shipped mappings, hold what expected.json says.

Identity resolution is a later stage, so people are found here the way it will start:
records whose NHS number is the person's, or whose partner-local identifier is the one
expected.json gives for that partner. Everything asserted is what the mapping alone shows.
"""

from __future__ import annotations

import json
from collections import defaultdict
from functools import cache
from typing import Any

import pytest
from ingest_helpers import FEEDS, TODAY, assert_valid_r4

from fhir_gateway.ingest import BusinessId, MappedRecord, Rejection, map_file
from fhir_gateway.ingest.spec import load_mapping

EXPECTED = json.loads((FEEDS / "expected.json").read_text())
FILES = {
    "acute": ["acute/adt.hl7"],
    "gp": ["gp/palliative_register.csv"],
    "hospice": ["hospice/clients.jsonl"],
    "socialcare": ["socialcare/services.csv"],
    "community": sorted(f"community/{p.name}" for p in (FEEDS / "community").glob("*.json")),
}
PLACES = {"10": "hospital", "21": "home", "30": "hospice", "40": "care-home"}
CPR = {"450476008": "not-attempt", "450475007": "attempt"}


@cache
def all_results() -> tuple[list[MappedRecord], list[Rejection]]:
    records: list[MappedRecord] = []
    rejections: list[Rejection] = []
    for partner, files in FILES.items():
        for name in files:
            for result in map_file(partner, name, (FEEDS / name).read_bytes(), today=TODAY):
                (records if isinstance(result, MappedRecord) else rejections).append(result)
    return records, rejections


def records_of(person: dict[str, Any]) -> list[MappedRecord]:
    return [r for r in all_results()[0]
            if r.person.nhs_number == person["nhs"]
            or (r.person.local_id is not None
                and r.person.local_id == person["local_ids"].get(r.source.partner))]


def current(records: list[MappedRecord]) -> dict[BusinessId, tuple[MappedRecord, dict]]:
    """Each business identifier's resource as the last record in file order left it."""
    out: dict[BusinessId, tuple[MappedRecord, dict]] = {}
    for record in records:
        for key in record.retracted:
            out.pop(key, None)
        for key, resource in zip(record.keys, record.resources, strict=True):
            out[key] = (record, resource)
    return out


def observations(facts: dict, code: str) -> list[tuple[str, dict]]:
    return [(record.source.partner, res) for record, res in facts.values()
            if res["resourceType"] == "Observation"
            and res["code"]["coding"][0]["code"] == code]


@pytest.mark.parametrize("key", sorted(EXPECTED["people"]))
def test_each_person_in_expected_json(key: str) -> None:
    person = EXPECTED["people"][key]
    records = records_of(person)
    facts = current(records)

    assert {r.source.partner for r in records} == set(person["partners"])
    for partner, local_id in person["local_ids"].items():
        assert any(r.source.partner == partner and r.person.local_id == local_id
                   for r in records), (partner, local_id)
    for record in records:
        if record.person.nhs_number is not None:
            assert record.person.nhs_number == person["nhs"]
        assert record.person.family.casefold() == person["family"].casefold()
        assert record.person.given.casefold() == person["given"].casefold()
        assert record.person.birth_date == person["birthDate"]
        assert record.person.gender in (None, person["gender"])

    cpr = sorted((partner, res["effectiveDateTime"][:10],
                  CPR[res["valueCodeableConcept"]["coding"][0]["code"]])
                 for partner, res in observations(facts, "304251008"))
    assert cpr == sorted((c["source"], c["date"], c["decision"]) for c in person["cpr"])
    newest_per_partner: dict[str, tuple[str, str]] = {}
    for partner, date, decision in cpr:
        newest_per_partner[partner] = max(newest_per_partner.get(partner, ("", "")),
                                          (date, decision))
    latest = max(newest_per_partner.values(), default=(None, None))[1]
    assert latest == person["cpr_latest"]
    assert (len({d for _, d in newest_per_partner.values()}) > 1) == person["cpr_conflict"]

    places = [(res["effectiveDateTime"][:10], partner,
               PLACES[res["valueCodeableConcept"]["coding"][0]["code"]])
              for code in ("preferred-place-of-death", "preferred-place-of-care")
              for partner, res in observations(facts, code)]
    expected_ppd = person["ppd"]
    assert (max(places) if places else None) == (
        (expected_ppd["date"], expected_ppd["source"], expected_ppd["value"])
        if expected_ppd else None)

    deaths = {r.patient["deceasedDateTime"][:10] for r in records
              if "deceasedDateTime" in r.patient}
    assert deaths == ({person["deceased"]} if person["deceased"] else set())
    death_places = {PLACES[res["valueCodeableConcept"]["coding"][0]["code"]]
                    for _, res in observations(facts, "place-of-death")}
    assert death_places == ({person["death_place"]} if person["death_place"] else set())

    kinds = defaultdict(int)
    for key_ in facts:
        kinds[key_.resource_type] += 1
    assert kinds["Encounter"] == person["encounters"]
    assert kinds["CarePlan"] == person["careplans"]


def test_the_bad_records_are_rejected_with_reasons() -> None:
    rejections = all_results()[1]
    got = sorted((r.source.partner, r.source.position, r.field) for r in rejections)
    assert got == [
        ("acute", "message 135", "PID"),                 # truncated message, no PID
        ("gp", "line 34", "NHS Number"),                 # check digit
        ("gp", "line 35", "Date of Birth"),              # 31/02/1940
        ("hospice", "line 12", "nhsNumber, dob"),        # bad NHS number and date
    ]
    assert sorted(r.source.partner for r in rejections) == sorted(
        b["partner"] for b in EXPECTED["bad"])
    for r in rejections:
        for part in (r.source.partner, r.source.file, r.source.position, *r.field.split(", ")):
            assert part in r.reason, (part, r.reason)
        assert r.source.raw.strip()
    truncated = next(r for r in rejections if r.source.partner == "acute")
    assert truncated.source.record_id == "BAD2"
    assert "8493407225" in next(r.reason for r in rejections if r.field == "NHS Number")
    assert "31/02/1940" in next(r.reason for r in rejections if r.field == "Date of Birth")


def test_every_mapped_resource_is_valid_r4() -> None:
    records = all_results()[0]
    assert len(records) > 200
    for record in records:
        assert_valid_r4(record.patient)
        assert "id" not in record.patient
        for key, resource in zip(record.keys, record.resources, strict=True):
            assert_valid_r4(resource)
            assert "id" not in resource
            assert resource["identifier"][0] == key.identifier()
            assert resource["resourceType"] == key.resource_type


def test_every_record_names_its_source() -> None:
    for record in all_results()[0]:
        source = record.source
        assert source.record_id and source.raw
        assert source.mapping_version == load_mapping(source.partner).version
        assert source.ods_code and source.partner_name
        if source.partner == "acute":
            assert source.event_time and record.event in ("A01", "A03", "A08")


def test_one_encounter_per_visit_number_across_events() -> None:
    visits: dict[str, set[str]] = defaultdict(set)
    for record in all_results()[0]:
        if record.source.partner == "acute":
            for key in record.keys:
                if key.resource_type == "Encounter":
                    visits[key.value].add(record.event or "")
    assert visits and all(events <= {"A01", "A03"} for events in visits.values())
    assert sum(1 for events in visits.values() if events == {"A01", "A03"}) > 40


def test_mapping_is_deterministic() -> None:
    name = FILES["gp"][0]
    data = (FEEDS / name).read_bytes()
    first = list(map_file("gp", name, data, today=TODAY))
    second = list(map_file("gp", name, data, today=TODAY))
    assert first == second
