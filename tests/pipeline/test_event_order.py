"""Messages delivered out of order end as in order, whatever offsets their senders wrote.

The pipeline keeps, per element, the source stamp of the message that set it; an older
message does not overwrite a newer one's elements. Stamps compared event times as written,
so an admission at 10:00+01:00 (09:00 UTC) counted as newer than a discharge at
09:30+00:00, and re-opened the finished stay."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

import pytest

from fhir_gateway import jsonio
from fhir_gateway.fhir.repository import Repository
from fhir_gateway.pipeline.merge import stamp
from fhir_gateway.pipeline.service import IngestService
from fhir_gateway.store.base import StoreEngine
from fhir_gateway.store.query import IndexQuery


def adt(control: str, event: str, when: str, *, admitted: str = "", discharged: str = "",
        disposition: str | None = None, address: str = "", phone: str = "",
        practice: str = "") -> bytes:
    """An ADT message about one person (NHS 9434765919, MRN RXA1) and visit V1: PV1-44
    `admitted`, PV1-45 `discharged`, PV1-36 `disposition` (01 when discharged), PID-11,
    PID-13 and PD1-3 as given; a field left empty says nothing."""
    if disposition is None:
        disposition = "01" if discharged else ""
    segments = [
        f"MSH|^~\\&|PAS|RXA|SCR|GATEWAY|{when}||ADT^{event}^ADT_{event}|{control}|P|2.4",
        f"EVN|{event}|{when}",
        f"PID|1||9434765919^^^NHS^NH~RXA1^^^RXA^MR||SMITH^ANN||19411103|F|||{address}||{phone}",
        *([f"PD1|||OLD SURGERY^^{practice}"] if practice else []),
        "PV1|1|I|WARD 7^BAY C^BED 1^RXA||||C1^THOMPSON^A^^^DR|||300|||||||||V1"
        + "|" * 17 + disposition + "||||||||" + admitted + "|" + discharged,
    ]
    return "\r".join(segments).encode() + b"\r"


def message(control: str, event: str, when: str, discharged: str = "") -> bytes:
    return adt(control, event, when, admitted="20260701090000+0000", discharged=discharged)


def ingested(engine: StoreEngine, rtype: str, *messages: bytes) -> list[dict[str, Any]]:
    """The `rtype` resources once `messages` are loaded, each as one acute file."""
    service = IngestService(Repository(engine))
    for i, data in enumerate(messages):
        summary = service.ingest("acute", f"m{i}.hl7", data, today=dt.date(2026, 11, 22))
        assert summary.rejected == 0, summary.rejections
    return [jsonio.loads_trusted(r.body or "{}")
            for r in Repository(engine).find(IndexQuery(rtype=rtype)).rows]


def the_stay(engine: StoreEngine, *messages: bytes) -> dict[str, Any]:
    (stay,) = ingested(engine, "Encounter", *messages)
    return stay


@pytest.mark.parametrize("admitted", ["20260701100000+0100", "20260701090000+0000"])
def test_a_late_admission_does_not_reopen_a_discharge(engine: StoreEngine,
                                                      admitted: str) -> None:
    # discharged 09:30 UTC (written +0000); admitted 09:00 UTC, written either way
    stay = the_stay(engine,
                    message("M2", "A03", "20260701093000+0000", "20260701093000+0000"),
                    message("M1", "A01", admitted))
    assert stay["status"] == "finished"
    assert stay["period"]["end"] == "2026-07-01T09:30:00+00:00"


ADMITTED, DISCHARGED = "20260701090000+0000", "20260703120000+0000"
A01 = adt("M1", "A01", "20260701090000+0000", admitted=ADMITTED)
A03_END_ONLY = adt("M2", "A03", "20260703120000+0000", discharged=DISCHARGED)
A13_BARE = adt("M3", "A13", "20260703130000+0000")


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_a_discharge_that_leaves_out_the_admission_time_keeps_it(
        engine: StoreEngine, order: tuple[int, ...]) -> None:
    stay = the_stay(engine, *[(A01, A03_END_ONLY)[i] for i in order])
    assert stay["status"] == "finished"
    assert stay["period"] == {"start": "2026-07-01T09:00:00+00:00",
                              "end": "2026-07-03T12:00:00+00:00"}


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_a_cancelled_discharge_takes_back_the_end_in_any_order(
        engine: StoreEngine, order: tuple[int, ...]) -> None:
    """A13 carrying neither PV1-44 nor PV1-45: the stay is open again, with no end and no
    discharge disposition (it kept both: a message leaving an element out says nothing
    of it), whatever order the three messages arrive in."""
    stay = the_stay(engine, *[(A01, A03_END_ONLY, A13_BARE)[i] for i in order])
    assert stay["status"] == "in-progress"
    assert stay["period"] == {"start": "2026-07-01T09:00:00+00:00"}
    assert "dischargeDisposition" not in stay.get("hospitalization", {})


def test_a_stay_that_would_end_before_it_starts_is_held_back_for_review(
        engine: StoreEngine) -> None:
    """27 October 2024: the clocks went back at 02:00. Admitted 01:50 (summer time) and
    discharged 01:20 half an hour later (winter time), both sent without an offset:
    read as summer time, the discharge ends the stay before it began (FHIR per-1). The
    discharge is rejected with the reason and kept for review; the stay stays open."""
    service = IngestService(Repository(engine))
    messages = (adt("M1", "A01", "202410270150", admitted="202410270150"),
                adt("M2", "A03", "202410270120", discharged="202410270120"))
    summaries = [service.ingest("acute", f"m{i}.hl7", data, today=dt.date(2026, 11, 22))
                 for i, data in enumerate(messages)]
    assert summaries[1].rejected == 1
    assert "would end (2024-10-27T01:20:00+01:00) before it starts" in \
        summaries[1].rejections[0]["reason"]
    (row,) = Repository(engine).find(IndexQuery(rtype="Encounter")).rows
    stay = jsonio.loads_trusted(row.body or "{}")
    assert stay["status"] == "in-progress"
    assert stay["period"] == {"start": "2024-10-27T01:50:00+01:00"}


def test_an_extract_row_restates_the_period_whole(engine: StoreEngine) -> None:
    """A register row is the current state, not a message of what changed: once a row
    comes without the date of death its earlier row gave, the plan has no end."""
    service = IngestService(Repository(engine))
    died = GP_APRIL.format(nhs="9434765919").replace(",,\n", ",05/04/2026,\n")
    for name, row in (("died.csv", died), ("corrected.csv", GP_APRIL.format(nhs="9434765919"))):
        summary = service.ingest("gp", name, (GP_HEADER + row).encode(),
                                 today=dt.date(2026, 11, 22))
        assert summary.rejected == 0, summary.rejections
    (plan,) = [jsonio.loads_trusted(r.body or "{}")
               for r in Repository(engine).find(IndexQuery(rtype="CarePlan")).rows]
    assert plan["status"] == "active" and plan["period"] == {"start": "2025-11-29"}


def a08(control: str, when: str, phone: str, address: str) -> bytes:
    return adt(control, "A08", when, phone=phone, address=address)


HOME = "1 HIGH ST^^DUDLEY^^DY1 4DX"


def the_patient(engine: StoreEngine, *messages: bytes) -> dict[str, Any]:
    (patient,) = ingested(engine, "Patient", *messages)
    return patient


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_the_hl7_null_deletes_a_phone_number_and_address_in_any_order(
        engine: StoreEngine, order: tuple[int, ...]) -> None:
    """`""` says "delete the value" (HL7 v2 2.5.3); an empty field says nothing. A number
    the hospital removed must not stay on the record for a crew to ring."""
    messages = (a08("U1", "20260701090000+0000", "01384 920299", HOME),
                a08("U2", "20260702090000+0000", '""', '""'),
                a08("U3", "20260630090000+0000", "01384 111111", HOME))  # older still
    patient = the_patient(engine, *[messages[i] for i in order])
    assert "telecom" not in patient and "address" not in patient, patient
    assert patient["name"][0]["family"] == "SMITH"  # the rest stays


def test_an_empty_field_deletes_nothing(engine: StoreEngine) -> None:
    patient = the_patient(engine, a08("U1", "20260701090000+0000", "01384 920299", HOME),
                          a08("U2", "20260702090000+0000", "", ""))
    assert patient["telecom"][0]["value"] == "01384 920299"
    assert patient["address"][0]["postalCode"] == "DY1 4DX"


def test_stamps_compare_instants_not_text() -> None:
    assert stamp("2026-07-01T10:00:00+01:00", "acute", "M1") < \
        stamp("2026-07-01T09:30:00+00:00", "acute", "M2")
    assert stamp(None, "acute", "M1") < stamp("2026-07-01", "acute", "M0")


GP_HEADER = ("NHS Number,Surname,Forename,Date of Birth,Sex,Practice Code,Usual GP,"
             "Palliative Register Date,GSF Code,Preferred Place of Death,PPD Recorded,DNACPR,"
             "DNACPR Date,Care Plan Summary,Last Reviewed,Date of Death,Place of Death\n")
GP_JANUARY = ("{nhs},SMITH,Ann,03/11/1941,F,Y90028,Dr Clarke,29/11/2025,Blue,Hospital,"
              "25/12/2025,Y,11/02/2026,Old plan,11/03/2026,,\n")
GP_APRIL = ("{nhs},SMITH,Ann,03/11/1941,F,Y90099,Dr Patel,29/11/2025,Red,Home,01/04/2026,"
            "Y,01/04/2026,New plan: last days,01/04/2026,,\n")


@pytest.mark.parametrize(("january", "april"), [("9434765919", "943 476 5919"),
                                                ("943 476 5919", "9434765919"),
                                                ("943 476 5919", "943 476 5919")])
def test_a_later_extract_without_event_times_updates_however_the_id_is_printed(
        engine: StoreEngine, january: str, april: str) -> None:
    """The GP register has no event time. Stamps compared the record ids instead, the NHS
    number as printed, so April's extract printed with spaces lost to January's without:
    reported as "unchanged", the practice, prognosis and plan stayed January's."""
    service = IngestService(Repository(engine))
    service.ingest("gp", "jan.csv", (GP_HEADER + GP_JANUARY.format(nhs=january)).encode(),
                   today=dt.date(2026, 11, 22))
    summary = service.ingest("gp", "apr.csv",
                             (GP_HEADER + GP_APRIL.format(nhs=april)).encode(),
                             today=dt.date(2026, 11, 22))
    assert summary.rejected == 0 and summary.unchanged == 0, summary
    repo = Repository(engine)
    (patient,) = [jsonio.loads_trusted(r.body or "{}")
                  for r in repo.find(IndexQuery(rtype="Patient")).rows]
    assert patient["generalPractitioner"][0]["identifier"]["value"] == "Y90099"
    plans = [jsonio.loads_trusted(r.body or "{}").get("description")
             for r in repo.find(IndexQuery(rtype="CarePlan")).rows]
    assert plans == ["New plan: last days"]


def a08_with_practice(practice: str) -> bytes:
    # newer than any GP register row here
    return adt("U1", "A08", "20261120090000+0000", practice=practice)


@pytest.mark.parametrize("gp_first", [True, False])
def test_the_gp_registers_practice_is_not_outranked_by_a_hospitals_copy(
        engine: StoreEngine, gp_first: bool) -> None:
    """The register has no event times, so every timed hospital message outranked it: a
    PAS still holding the person's old practice (PD1-3) replaced the practice the GP
    register says they are registered with, the practice the summary tells a crew."""
    service = IngestService(Repository(engine))
    loads = [("gp", "apr.csv", (GP_HEADER + GP_APRIL.format(nhs="9434765919")).encode()),
             ("acute", "a08.hl7", a08_with_practice("Y90001"))]
    for partner, name, data in loads if gp_first else reversed(loads):
        summary = service.ingest(partner, name, data, today=dt.date(2026, 11, 22))
        assert summary.rejected == 0, summary.rejections
    (patient,) = [jsonio.loads_trusted(r.body or "{}")
                  for r in Repository(engine).find(IndexQuery(rtype="Patient")).rows]
    assert [g["identifier"]["value"] for g in patient["generalPractitioner"]] == ["Y90099"]


def test_stamps_without_event_times_outrank_those_stored_before_ids_were_normalised() -> None:
    stored_before = "\x1fcommunity\x1furn:uuid:enc-CMT1-E0"  # as kept until mapping 1.1.0
    now = stamp(None, "community", "Encounter/CMT1-E0")
    assert stored_before < now < stamp("2020-01-01", "community", "x")
    # one partner's records without event times: by record id, whatever the delivery
    assert stamp(None, "gp", "9434765919") == stamp(None, "gp", "9434765919")


def community_extract(pat_uuid: str, enc_uuid: str, status: str, end: str | None) -> bytes:
    return jsonio.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": f"urn:uuid:{pat_uuid}", "resource": {
            "resourceType": "Patient", "id": "CMT1",
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"},
                           {"system": "https://community.example.nhs.uk/Id/patient",
                            "value": "CMT1"}],
            "name": [{"family": "Smith", "given": ["Ann"]}], "gender": "female",
            "birthDate": "1941-11-03"}},
        {"fullUrl": f"urn:uuid:{enc_uuid}", "resource": {
            "resourceType": "Encounter", "id": "CMT1-E0", "status": status,
            "class": {"system": "http://hl7.org/fhir/v3/ActCode", "code": "HH"},
            "subject": {"reference": f"urn:uuid:{pat_uuid}"},
            "period": {"start": "2026-01-27T09:47", **({"end": end} if end else {})}}}]}
    ).encode()


COUNCIL_HEADER = ("Person ID,Title,First Name,Last Name,DOB,Postcode,NHS No (if known),Service,"
                  "Service Start,Service End,Provider,Key Worker\n")


@pytest.mark.parametrize(("partner", "first", "second", "rtype", "check"), [
    # a fresh urn:uuid fullUrl per extract (as urn:uuid entries normally are)
    ("community",
     community_extract("f1a2b3c4-0000-4000-8000-000000000001",
                       "e9d8c7b6-0000-4000-8000-000000000002", "in-progress", None),
     community_extract("0a1b2c3d-0000-4000-8000-000000000003",
                       "1c2d3e4f-0000-4000-8000-000000000004", "finished", "2026-01-27T10:32"),
     "Encounter", lambda r: r["status"] == "finished" and "end" in r["period"]),
    # the service start written yyyy-mm-dd, then dd/mm/yyyy (both documented)
    ("socialcare",
     (COUNCIL_HEADER + "SC1,Mr,John,Smith,1940-01-01,DY1 1AA,9434765919,Home care,2025-07-08,,"
      "Dudley Homecare Ltd,A\n").encode(),
     (COUNCIL_HEADER + "SC1,Mr,John,Smith,1940-01-01,DY1 1AA,9434765919,Home care,08/07/2025,"
      "20/01/2026,Dudley Homecare Ltd,A\n").encode(),
     "CarePlan", lambda r: r["period"].get("end") == "2026-01-20"),
])
def test_a_later_extract_updates_the_record_it_restates(engine: StoreEngine, partner: str,
                                                        first: bytes, second: bytes,
                                                        rtype: str, check: Any) -> None:
    service = IngestService(Repository(engine))
    service.ingest(partner, "first", first, today=dt.date(2026, 11, 22))
    summary = service.ingest(partner, "second", second, today=dt.date(2026, 11, 22))
    assert summary.rejected == 0 and summary.updated >= 1, summary
    (row,) = Repository(engine).find(IndexQuery(rtype=rtype)).rows
    assert check(jsonio.loads_trusted(row.body or "{}"))


def stay_message(control: str, event: str, when: str, disposition: str = "",
                 discharged: str = "") -> bytes:
    return adt(control, event, when, admitted="202601011000", discharged=discharged,
               disposition=disposition, address="1 High St^^Dudley^^DY1 1AA")


ADMITTED = stay_message("M1", "A01", "202601011000")
DIED = stay_message("M2", "A03", "202601051000", "20", "202601051000")
CANCELLED = stay_message("M3", "A13", "202601051030")  # the discharge, cancelled after it


def places_of_death(engine: StoreEngine, *messages: bytes) -> list[str]:
    return [o["valueCodeableConcept"]["text"] for o in ingested(engine, "Observation",
                                                                 *messages)]


@pytest.mark.parametrize("order", [(ADMITTED, DIED, CANCELLED), (ADMITTED, CANCELLED, DIED),
                                   (CANCELLED, DIED, ADMITTED)])
def test_a_cancelled_discharge_takes_back_the_place_of_death(engine: StoreEngine,
                                                             order: tuple[bytes, ...]) -> None:
    """A13 reopened the stay but "died in hospital" stayed on the record (and on a crew's
    summary); delivered before the discharge it cancels, the late A03 brought it back."""
    assert places_of_death(engine, *order) == []


def test_a_cancellation_older_than_the_death_leaves_it(engine: StoreEngine) -> None:
    # cancelled an earlier discharge at 09:00; the patient then died at 10:00 (the A03 is
    # newer), whichever arrives first
    earlier = stay_message("M0", "A13", "202601050900")
    assert places_of_death(engine, ADMITTED, DIED, earlier) == [
        "Died in hospital (discharge disposition 20)"]


def test_the_hl7_null_in_one_part_of_a_stay_deletes_that_part_only(
        engine: StoreEngine) -> None:
    """PV1-44 `""` with PV1-45 empty deletes the admission time and says nothing of the
    discharge; PV1-45 `""` with PV1-44 given deletes the discharge time. Nulls were read
    per element, while the stay's period is kept part by part: the first deleted a
    discharge the message never mentioned, the second deleted nothing."""
    admit, discharge = "20260701090000+0000", "20260705120000+0000"
    finished = (adt("M1", "A01", "20260701090000+0000", admitted=admit),
                adt("M2", "A03", "20260705120000+0000", admitted=admit, discharged=discharge))
    first = the_stay(engine, *finished,
                     adt("M3", "A02", "20260706090000+0000", admitted='""'))
    assert first["period"] == {"end": "2026-07-05T12:00:00+00:00"}, first
    second = the_stay(engine, adt("M4", "A02", "20260707090000+0000", admitted=admit,
                                  discharged='""'))
    assert second["period"] == {"start": "2026-07-01T09:00:00+00:00"}, second
