"""Identity, merging, idempotency and provenance of the ingestion pipeline, on both engines.

Records are built by hand here (the mapping has its own tests in tests/ingest); this file
proves what happens after mapping.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest

from fhir_gateway import jsonio
from fhir_gateway.fhir.repository import Repository
from fhir_gateway.ingest.model import (
    NHS_NUMBER_SYSTEM,
    PATIENT_REFERENCE,
    BusinessId,
    ItemSet,
    MappedRecord,
    PersonKey,
    Rejection,
    SourceRef,
)
from fhir_gateway.pipeline.loader import Loader
from fhir_gateway.store.base import StoreEngine
from fhir_gateway.store.query import IndexQuery

_clock = itertools.count()


def clock() -> str:
    return f"2026-11-22T10:{next(_clock) % 60:02d}:00.000000Z"


def source(partner: str, record_id: str, event_time: str | None = None) -> SourceRef:
    return SourceRef(partner=partner, ods_code={"acute": "RXA", "gp": "Y90001"}.get(
        partner, "XX1"), partner_name=f"{partner} partner", file=f"{partner}.dat",
        position="line 2", record_id=record_id, event_time=event_time,
        mapping_version="1", raw=f"raw {record_id}")


def person(nhs: str | None = "9434765919", local: str | None = "L1", partner: str = "gp",
           **extra: Any) -> PersonKey:
    return PersonKey(nhs_number=nhs, local_system=f"https://{partner}.example/Id/person",
                     local_id=local, family="Okafor", given="Grace", birth_date="1938-03-14",
                     postcode="DY1 4DX", gender="female", **extra)


def patient_of(p: PersonKey, **extra: Any) -> dict[str, Any]:
    ids = [{"system": p.local_system, "value": p.local_id}] if p.local_id else []
    if p.nhs_number:
        ids.insert(0, {"system": NHS_NUMBER_SYSTEM, "value": p.nhs_number})
    return {"resourceType": "Patient", "identifier": ids,
            "name": [{"family": p.family, "given": [p.given]}], "birthDate": p.birth_date,
            "gender": p.gender, "address": [{"postalCode": p.postcode}], **extra}


def encounter(visit: str, status: str, start: str, end: str | None = None) -> dict[str, Any]:
    period = {"start": start, **({"end": end} if end else {})}
    return {"resourceType": "Encounter",
            "identifier": [{"system": "https://acute.example/Id/visit", "value": visit}],
            "status": status, "class": {"code": "IMP"},
            "subject": {"reference": PATIENT_REFERENCE}, "period": period}


def record(p: PersonKey, partner: str, rid: str, *resources: dict[str, Any],
           event_time: str | None = None, **kw: Any) -> MappedRecord:
    keys = tuple(BusinessId(r["resourceType"], r["identifier"][0]["system"],
                            r["identifier"][0]["value"]) for r in resources)
    return MappedRecord(source=source(partner, rid, event_time), person=p,
                        patient=patient_of(p), resources=resources, keys=keys, **kw)


def all_of(repo: Repository, rtype: str) -> list[dict[str, Any]]:
    rows = repo.find(IndexQuery(rtype=rtype)).rows
    return [jsonio.loads_trusted(r.body) for r in rows]


@pytest.fixture
def loader(engine: StoreEngine) -> Loader:
    return Loader(Repository(engine), clock=clock)


def test_nhs_number_links_partners_and_collects_local_ids(loader: Loader) -> None:
    gp = person(local="9434765919", partner="gp")
    acute = person(local="RXA1", partner="acute")
    loader.ingest([record(gp, "gp", "r1")])
    loader.ingest([record(acute, "acute", "m1",
                          encounter("V1", "in-progress", "2026-05-01T10:00:00+01:00"),
                          event_time="2026-05-01T10:00:00+01:00")])
    patients = all_of(loader.repo, "Patient")
    assert len(patients) == 1
    values = {(i["system"], i["value"]) for i in patients[0]["identifier"]}
    assert values == {(NHS_NUMBER_SYSTEM, "9434765919"),
                      ("https://gp.example/Id/person", "9434765919"),
                      ("https://acute.example/Id/person", "RXA1")}
    enc = all_of(loader.repo, "Encounter")
    assert enc[0]["subject"]["reference"] == f"Patient/{patients[0]['id']}"


def test_redelivery_changes_nothing(loader: Loader) -> None:
    rec = record(person(), "acute", "m1", encounter("V1", "in-progress", "2026-05-01"),
                 event_time="2026-05-01T10:00:00+01:00")
    first = loader.ingest([rec])
    assert (first.created, first.updated, first.unchanged) == (2, 0, 0)
    again = loader.ingest([rec])
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    assert len(all_of(loader.repo, "Provenance")) == 1
    history = loader.repo.history(rtype="Encounter").versions
    assert len(history) == 1


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)])
def test_one_encounter_per_visit_whatever_the_order(loader: Loader,
                                                    order: tuple[int, ...]) -> None:
    p = person(partner="acute", local="RXA1")
    messages = [
        record(p, "acute", "A01", encounter("V1", "in-progress", "2026-05-01T10:00:00Z"),
               event_time="2026-05-01T10:00:00Z", event="A01"),
        record(p, "acute", "A08", encounter("V1", "in-progress", "2026-05-01T10:00:00Z"),
               event_time="2026-05-02T09:00:00Z", event="A08"),
        record(p, "acute", "A03", encounter("V1", "finished", "2026-05-01T10:00:00Z",
                                            "2026-05-03T12:00:00Z"),
               event_time="2026-05-03T12:00:00Z", event="A03"),
    ]
    loader.ingest([messages[i] for i in order])
    encounters = all_of(loader.repo, "Encounter")
    assert len(encounters) == 1
    assert encounters[0]["status"] == "finished"
    assert encounters[0]["period"] == {"start": "2026-05-01T10:00:00Z",
                                       "end": "2026-05-03T12:00:00Z"}


def test_no_nhs_number_matches_local_id_then_demographics(loader: Loader) -> None:
    loader.ingest([record(person(partner="gp", local="G1"), "gp", "r1")])
    council = person(nhs=None, local="SC1", partner="socialcare")
    summary = loader.ingest([record(council, "socialcare", "s1")])
    assert summary.held == 0
    patients = all_of(loader.repo, "Patient")
    assert len(patients) == 1  # matched on name + birth date + postcode
    assert ("https://socialcare.example/Id/person", "SC1") in {
        (i["system"], i["value"]) for i in patients[0]["identifier"]}
    again = loader.ingest([record(council, "socialcare", "s2")])  # now by local id
    assert again.held == 0 and len(all_of(loader.repo, "Patient")) == 1


def test_demographic_match_takes_the_postcode_as_written_anywhere(loader: Loader) -> None:
    # The stored postcode is written loosely (lower case, two spaces); the council's is
    # tidy. The same person; a neighbour one postcode away with the same name and birth
    # date is not them.
    gp = person(partner="gp", local="G1")
    loose = MappedRecord(source=source("gp", "r1"), person=gp,
                         patient={**patient_of(gp), "address": [{"postalCode": "dy1  4dx"}]},
                         resources=(), keys=())
    loader.ingest([loose])
    council = person(nhs=None, local="SC1", partner="socialcare")
    assert loader.ingest([record(council, "socialcare", "s1")]).held == 0
    neighbour = PersonKey(nhs_number=None, local_system="https://socialcare.example/Id/person",
                          local_id="SC2", family="Okafor", given="Grace",
                          birth_date="1938-03-14", postcode="DY1 4DY", gender="female")
    summary = loader.ingest([record(neighbour, "socialcare", "s2")])
    assert summary.held == 1
    (patient,) = all_of(loader.repo, "Patient")
    assert ("https://socialcare.example/Id/person", "SC1") in {
        (i["system"], i["value"]) for i in patient["identifier"]}


def test_unsure_identity_is_held_then_retried_and_resolvable(loader: Loader) -> None:
    council = person(nhs=None, local="SC9", partner="socialcare")
    held = loader.ingest([record(council, "socialcare", "s1")])
    assert held.held == 1 and all_of(loader.repo, "Patient") == []
    assert "no Patient with this name" in loader.list_held()[0][1]["reason"]
    # The GP register arrives later: the held row now matches and is applied.
    after = loader.ingest([record(person(partner="gp", local="G1"), "gp", "r1")])
    assert after.held == 0 and loader.list_held() == []
    assert len(all_of(loader.repo, "Patient")) == 1


def test_a_held_records_provenance_says_when_the_partner_sent_it(loader: Loader) -> None:
    """Applied later (by a retry, or a reviewer), the record was still received when the
    partner sent it: Provenance.recorded is that time, not the time it was applied."""
    loader.ingest([record(person(nhs=None, local="SC9", partner="socialcare"),
                          "socialcare", "s1")])
    other = dataclasses.replace(person(nhs=None, local="SC8", partner="socialcare"),
                                family="Ndlovu", given="Ann")
    loader.ingest([record(other, "socialcare", "s2")])
    received = {h["record"]["source"]["record_id"]: h["received"]
                for _, h in loader.list_held()}
    loader.ingest([record(person(partner="gp", local="G1"), "gp", "r1")])  # s1 matches now
    (key, _), = loader.list_held()
    loader.resolve_held(key)  # s2: a reviewer makes a new Patient
    recorded = {}
    for prov in all_of(loader.repo, "Provenance"):
        text = jsonio.dumps(prov)
        for rid in ("s1", "s2"):
            if f'"{rid}"' in text:
                recorded.setdefault(rid, set()).add(prov["recorded"])
    assert recorded == {"s1": {received["s1"]}, "s2": {received["s2"]}}


def test_two_candidates_are_held_never_merged_by_guess(loader: Loader) -> None:
    loader.ingest([record(person(nhs="9434765919", local="G1"), "gp", "r1")])
    loader.ingest([record(person(nhs="9000000009", local="G2"), "gp", "r2")])  # same name
    summary = loader.ingest([record(person(nhs=None, local="SC1", partner="socialcare"),
                                    "socialcare", "s1")])
    assert summary.held == 1
    key, held = loader.list_held()[0]
    assert "2 Patients match" in held["reason"] and len(held["candidates"]) == 2
    settled = loader.resolve_held(key, patient_id=held["candidates"][0])
    assert settled.held == 0 and loader.list_held() == []
    assert len(all_of(loader.repo, "Patient")) == 2


def test_held_record_can_create_a_new_patient(loader: Loader) -> None:
    loader.ingest([record(person(nhs=None, local="SC1", partner="socialcare"),
                          "socialcare", "s1")])
    key, _ = loader.list_held()[0]
    loader.resolve_held(key)
    assert len(all_of(loader.repo, "Patient")) == 1 and loader.list_held() == []


def test_rejections_are_kept_with_raw_text(loader: Loader) -> None:
    bad = Rejection(source=source("gp", "row9"), field="NHS Number",
                    reason="gp gp.dat line 2: NHS Number 943 476 5918 fails Modulus 11")
    summary = loader.ingest([bad, record(person(), "gp", "r1")])
    assert (summary.read, summary.rejected, summary.created) == (2, 1, 1)
    kept = loader.list_rejected()
    assert kept[0][1]["raw"] == "raw row9" and kept[0][1]["field"] == "NHS Number"


def test_a_record_delivered_again_keeps_when_it_first_came(loader: Loader) -> None:
    """Each day's extract repeats a line still rejected or held: the review item's
    `received` was the latest delivery's, so a record waiting for weeks looked new. Applied
    later, it counts as received when it last came (its latest delivery is the partner's
    latest word)."""
    ticks = itertools.count()  # its own clock: the module's wraps at 60
    loader = Loader(loader.repo, clock=lambda: f"2026-11-22T11:{next(ticks):02d}:00.000000Z")
    bad = Rejection(source=source("gp", "row9"), field="NHS Number", reason="bad")
    unsure = record(person(nhs=None, local="SC9", partner="socialcare"), "socialcare", "s1")
    loader.ingest([bad, unsure])
    (_, rejected), = loader.list_rejected()
    (_, held), = loader.list_held()
    assert "last_received" not in rejected and "last_received" not in held
    loader.ingest([bad, unsure])
    loader.ingest([bad, unsure])
    (_, rejected_again), = loader.list_rejected()
    (_, held_again), = loader.list_held()
    for first, again in ((rejected, rejected_again), (held, held_again)):
        assert again["received"] == first["received"]
        assert again["last_received"] > first["received"]
    loader.ingest([record(person(partner="gp", local="G1"), "gp", "r1")])  # s1 matches now
    assert loader.list_held() == []
    recorded = {p["recorded"] for p in all_of(loader.repo, "Provenance")
                if '"s1"' in jsonio.dumps(p)}
    assert recorded == {held_again["last_received"]}


def test_resource_meeting_no_profile_rejects_the_whole_record(loader: Loader) -> None:
    summary = loader.ingest([record(person(), "acute", "m1",
                                    encounter("V1", "bogus", "2026-05-01"))])
    assert summary.rejected == 1
    assert "Encounter.status" in summary.rejections[0]["field"]
    assert "acute acute.dat line 2" in summary.rejections[0]["reason"]
    assert all_of(loader.repo, "Patient") == []  # nothing partly written
    assert all_of(loader.repo, "Encounter") == []


def test_stored_resources_carry_the_profile_they_meet(loader: Loader) -> None:
    loader.ingest([record(person(), "acute", "m1", encounter("V1", "finished", "2026-05-01"),
                          event_time="2026-05-01T10:00:00Z")])
    base = "https://fhir.shared-care-record.example/StructureDefinition/"
    for rtype, profile in (("Patient", "SCR-Patient"), ("Encounter", "SCR-Encounter"),
                           ("Provenance", "SCR-Provenance")):
        assert all_of(loader.repo, rtype)[0]["meta"]["profile"] == [base + profile]


def test_retracted_fact_is_no_longer_current(loader: Loader) -> None:
    obs = {"resourceType": "Observation", "status": "final",
           "identifier": [{"system": "https://gp.example/Id/cpr", "value": "G1"}],
           "code": {"coding": [{"system": "http://snomed.info/sct", "code": "304251008"}]},
           "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct",
                                                "code": "450476008"}]},
           "effectiveDateTime": "2026-02-11", "subject": {"reference": PATIENT_REFERENCE}}
    loader.ingest([record(person(), "gp", "r1", obs)])
    assert len(all_of(loader.repo, "Observation")) == 1
    loader.ingest([record(person(), "gp", "r1b",
                          retracted=(BusinessId("Observation", "https://gp.example/Id/cpr",
                                                "G1"),))])
    assert all_of(loader.repo, "Observation") == []


CONTACTS = "https://hospice.example/Id/contact"


def contact(name: str) -> dict[str, Any]:
    return {"resourceType": "RelatedPerson", "active": True,
            "identifier": [{"system": CONTACTS, "value": f"H1/{name}"}],
            "patient": {"reference": PATIENT_REFERENCE}, "name": [{"text": name}],
            "relationship": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "C"}]}]}


def form(rid: str, when: str, *names: str) -> MappedRecord:
    """A hospice record (same source record id each time) listing its contacts in full."""
    items = tuple(contact(n) for n in names)
    keys = tuple(BusinessId("RelatedPerson", CONTACTS, f"H1/{n}") for n in names)
    return record(person(partner="hospice"), "hospice", rid, *items, event_time=when,
                  item_sets=(ItemSet("contacts", "RelatedPerson", CONTACTS, keys),))


def contacts_of(repo: Repository) -> set[str]:
    return {r["name"][0]["text"] for r in all_of(repo, "RelatedPerson")}


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_a_list_stated_in_full_ends_the_same_whatever_the_order(
        engine: StoreEngine, order: tuple[int, ...]) -> None:
    # Jan: Peter and Ann; March: Ann only (Peter taken off); May: Ann and Raj.
    forms = [form("H1", "2026-01-01T10:00:00Z", "Peter", "Ann"),
             form("H1", "2026-03-01T10:00:00Z", "Ann"),
             form("H1", "2026-05-01T10:00:00Z", "Ann", "Raj")]
    loader = Loader(Repository(engine), clock=clock)
    for i in order:
        result = loader.ingest([forms[i]])
        assert result.rejected == result.held == 0, (result.rejections, result.holds)
    assert contacts_of(loader.repo) == {"Ann", "Raj"}


def test_two_lists_of_one_system_are_kept_apart(loader: Loader) -> None:
    # two rules (the form's contacts, a next-of-kin list) writing one identifier system
    def both() -> MappedRecord:
        peter, ann = (BusinessId("RelatedPerson", CONTACTS, f"H1/{n}") for n in ("Peter", "Ann"))
        return record(person(partner="hospice"), "hospice", "H1", contact("Peter"),
                      contact("Ann"), item_sets=(
                          ItemSet("contacts", "RelatedPerson", CONTACTS, (peter,)),
                          ItemSet("next-of-kin", "RelatedPerson", CONTACTS, (ann,))))
    first = loader.ingest([both()])
    again = loader.ingest([both()])
    assert contacts_of(loader.repo) == {"Peter", "Ann"}
    assert first.created == 3 and (again.created, again.updated) == (0, 0)


def test_a_list_is_kept_per_source_record(loader: Loader) -> None:
    # another record of the same partner (another client id) does not shrink this one's
    loader.ingest([form("H1", "2026-01-01T10:00:00Z", "Peter")])
    other = record(person(partner="hospice"), "hospice", "H2", event_time="2026-02-01T10:00:00Z",
                   item_sets=(ItemSet("contacts", "RelatedPerson", CONTACTS, ()),))
    loader.ingest([other])
    assert contacts_of(loader.repo) == {"Peter"}
    loader.ingest([form("H1", "2026-03-01T10:00:00Z")])
    assert contacts_of(loader.repo) == set()


def test_provenance_names_partner_record_and_targets(loader: Loader) -> None:
    loader.ingest([record(person(), "acute", "MSG1", encounter("V1", "finished", "2026-05-01"),
                          event_time="2026-05-01T10:00:00Z")])
    prov = all_of(loader.repo, "Provenance")[0]
    assert prov["agent"][0]["who"]["identifier"]["value"] == "RXA"
    assert prov["entity"][0]["what"]["identifier"]["value"] == "MSG1"
    assert "acute.dat" in prov["entity"][0]["what"]["display"]
    assert prov["occurredDateTime"] == "2026-05-01T10:00:00Z"
    targets = {t["reference"].split("/")[0] for t in prov["target"]}
    assert targets == {"Patient", "Encounter"}


def test_a40_merges_patients(loader: Loader) -> None:
    old = person(nhs="9000000009", local="RXA-OLD", partner="acute")
    loader.ingest([record(old, "acute", "m1", encounter("V9", "finished", "2026-01-01"))])
    survivor = person(nhs="9434765919", local="RXA-NEW", partner="acute")
    loader.ingest([record(survivor, "acute", "m2", event="A40", merge_from=old)])
    patients = {p["id"]: p for p in all_of(loader.repo, "Patient")}
    loser = next(p for p in patients.values() if p.get("active") is False)
    keep = next(p for p in patients.values() if p.get("active") is not False)
    assert loser["link"][0]["other"]["reference"] == f"Patient/{keep['id']}"
    enc = all_of(loader.repo, "Encounter")[0]
    assert enc["subject"]["reference"] == f"Patient/{keep['id']}"


# -- batches: many records per transaction, one savepoint each ----------------------------


def _other(nhs: str, local: str) -> PersonKey:
    return PersonKey(nhs_number=nhs, local_system="https://acute.example/Id/person",
                     local_id=local, family="Adeyemi", given="Tunde",
                     birth_date="1941-07-02", postcode="DY2 8PA", gender="male")


def test_bad_record_inside_a_batch_is_undone_alone(engine: StoreEngine) -> None:
    # The bad record's Patient is written before its Encounter fails its profile: the
    # savepoint must take the Patient back while the records around it are kept.
    loader = Loader(Repository(engine), clock=clock, batch_records=10)
    summary = loader.ingest([
        record(_other("9434765803", "A1"), "acute", "m1",
               encounter("V1", "finished", "2026-05-01")),
        record(person(), "acute", "m2", encounter("V2", "bogus", "2026-05-01")),
        record(_other("9434765811", "A3"), "acute", "m3",
               encounter("V3", "finished", "2026-05-02")),
    ])
    assert (summary.read, summary.rejected) == (3, 1)
    assert summary.rejections[0]["reason"].startswith("acute acute.dat line 2")
    nhs = sorted(i["value"] for p in all_of(loader.repo, "Patient") for i in p["identifier"]
                 if i["system"] == NHS_NUMBER_SYSTEM)
    assert nhs == ["9434765803", "9434765811"]
    visits = sorted(e["identifier"][0]["value"] for e in all_of(loader.repo, "Encounter"))
    assert visits == ["V1", "V3"]
    assert len(all_of(loader.repo, "Provenance")) == 2
    assert len(loader.list_rejected()) == 1


def test_failure_mid_batch_keeps_the_records_before_it(engine: StoreEngine) -> None:
    # A mapped record that breaks the loader's own contract (a key per resource) is not
    # bad input but a fault: it propagates. The records before it in the batch are
    # complete and committed; nothing of it, nor of the records after it, is written.
    loader = Loader(Repository(engine), clock=clock, batch_records=10)
    good = record(_other("9434765803", "A1"), "acute", "m1",
                  encounter("V1", "finished", "2026-05-01"))
    broken = MappedRecord(source=source("acute", "m2"), person=person(),
                          patient=patient_of(person()),
                          resources=(encounter("V2", "finished", "2026-05-01"),), keys=())
    after = record(_other("9434765811", "A3"), "acute", "m3",
                   encounter("V3", "finished", "2026-05-02"))
    with pytest.raises(ValueError):
        loader.ingest([good, broken, after])
    patients = all_of(loader.repo, "Patient")
    assert [p["identifier"][0]["value"] for p in patients] == ["9434765803"]
    assert [e["identifier"][0]["value"] for e in all_of(loader.repo, "Encounter")] == ["V1"]


@pytest.mark.parametrize("batch_records", [1, 2, 50])
def test_batch_size_does_not_change_the_result(engine: StoreEngine,
                                               batch_records: int) -> None:
    loader = Loader(Repository(engine), clock=clock, batch_records=batch_records)
    council = person(nhs=None, local="C1", partner="socialcare")
    reported: list[int] = []
    summary = loader.ingest([
        record(council, "socialcare", "s1"),  # held: nobody to match yet
        record(person(), "acute", "m1", encounter("V1", "in-progress", "2026-05-01")),
        record(person(), "acute", "m2", encounter("V1", "finished", "2026-05-01",
                                                  "2026-05-03")),
        record(person(), "acute", "m2", encounter("V1", "finished", "2026-05-01",
                                                  "2026-05-03")),  # redelivered
        Rejection(source=source("gp", "row9"), field="NHS Number", reason="bad"),
    ], progress=reported.append)
    assert sum(reported) == 5
    assert (summary.read, summary.rejected, summary.held) == (5, 1, 0)
    assert len(all_of(loader.repo, "Patient")) == 1  # the held record matched at the end
    (enc,) = all_of(loader.repo, "Encounter")
    assert enc["status"] == "finished" and enc["period"]["end"] == "2026-05-03"
    assert loader.list_held() == []


def test_a_newer_record_saying_the_same_still_outranks_an_older_one(loader: Loader) -> None:
    # 1 Jan and 3 Jan say in progress (the 3 Jan message changes nothing); the 2 Jan one
    # saying finished, delivered last, is older than the newest word and must not win
    p = person(partner="acute")
    for when, status, rid in (("2026-01-01T10:00:00Z", "in-progress", "m1"),
                              ("2026-01-03T10:00:00Z", "in-progress", "m3"),
                              ("2026-01-02T10:00:00Z", "finished", "m2")):
        loader.ingest([record(p, "acute", rid, encounter("V1", status, "2026-01-01T09:00:00Z"),
                              event_time=when)])
    (stay,) = all_of(loader.repo, "Encounter")
    assert stay["status"] == "in-progress"
