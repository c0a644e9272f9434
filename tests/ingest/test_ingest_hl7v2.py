"""HL7 v2 ADT through the shipped acute mapping: every variation the feeds README lists."""

from __future__ import annotations

import pytest
from ingest_helpers import FEEDS, by_code, mapped, of_type, only, rejected, run

from fhir_gateway.ingest import Rejection

NHS = "9434765919"


def seg(name: str, fields: dict[int, str]) -> str:
    """A segment with the given fields (1-based); MSH-1/MSH-2 are passed as fields 1 and 2."""
    top = max(fields)
    if name == "MSH":
        return "MSH" + fields[1] + fields[1].join(fields.get(i, "") for i in range(2, top + 1))
    return name + "|" + "|".join(fields.get(i, "") for i in range(1, top + 1))


def adt(event: str, control: str, *, when: str = "202506172006", visit: str = "V1",
        pid3: str = f"{NHS}^^^NHS^NH~RXA1^^^RXA^MR", pv1: dict[int, str] | None = None,
        pid: dict[int, str] | None = None, extra: tuple[str, ...] = ()) -> list[str]:
    pv1_fields = {1: "1", 2: "I", 3: "WARD 7^BAY C^BED 1^RXA", 7: "C1^THOMPSON^A^^^DR",
                  10: "300", 19: visit, 44: "202506172006"}
    pv1_fields.update(pv1 or {})
    pid_fields = {1: "1", 3: pid3, 5: "HILL^DAVID^RAYMOND", 7: "19480905", 8: "M",
                  11: "185 Cradley Road^^Kingswinford^^DY6 2XB", 13: "01384 920299"}
    pid_fields.update(pid or {})
    return [
        seg("MSH", {1: "|", 2: "^~\\&", 3: "PAS", 4: "RXA", 5: "SCR", 6: "GATEWAY", 7: when,
                    9: f"ADT^{event}^ADT_A01", 10: control, 11: "P", 12: "2.4"}),
        seg("EVN", {1: event, 2: when}),
        seg("PID", {k: v for k, v in pid_fields.items() if v is not None}),
        "PD1|||^^Y90001",
        *extra,
        seg("PV1", {k: v for k, v in pv1_fields.items() if v is not None}),
    ]


def message(segments: list[str], sep: str = "\r") -> str:
    return sep.join(segments) + sep


def test_one_admission_maps_person_and_stay() -> None:
    record = only(run("acute", message(adt("A01", "M1")), "adt.hl7"))
    assert record.source.record_id == "M1"
    assert record.source.position == "message 1"
    assert record.source.event_time == "2025-06-17T20:06:00+01:00"
    assert record.event == "A01"
    assert record.person.nhs_number == NHS
    assert record.person.local_id == "RXA1"
    assert record.person.family == "HILL" and record.person.given == "DAVID"
    assert record.person.birth_date == "1948-09-05" and record.person.gender == "male"
    assert record.person.postcode == "DY6 2XB"
    [stay] = of_type(record, "Encounter")
    assert stay["identifier"][0] == {"system": "https://acute.example.nhs.uk/Id/visit-number",
                                     "value": "V1"}
    assert stay["status"] == "in-progress"
    assert stay["class"]["code"] == "IMP"
    assert stay["subject"] == {"reference": "urn:gateway:patient"}
    assert stay["period"] == {"start": "2025-06-17T20:06:00+01:00"}


def test_segment_separators_cr_lf_and_crlf_map_alike() -> None:
    results = {sep: only(run("acute", message(adt("A01", "M1"), sep))) for sep in
               ("\r", "\n", "\r\n")}
    first = results["\r"]
    for record in results.values():
        assert (record.patient, record.resources, record.person) == (
            first.patient, first.resources, first.person)


def test_several_messages_with_lf_separators_are_numbered() -> None:
    text = message(adt("A01", "M1"), "\n") + message(adt("A03", "M2", pv1={45: "202506201000"}),
                                                     "\n")
    results = run("acute", text)
    assert [r.source.position for r in results] == ["message 1", "message 2"]
    assert [r.event for r in mapped(results)] == ["A01", "A03"]


def test_mllp_framed_messages() -> None:
    framed = b"".join(b"\x0b" + message(adt("A01", f"M{i}", visit=f"V{i}")).encode() + b"\x1c\r"
                      for i in (1, 2, 3))
    results = run("acute", framed, "feed.mllp")
    assert [r.source.record_id for r in mapped(results)] == ["M1", "M2", "M3"]
    assert not rejected(results)
    assert "\x0b" not in results[0].source.raw and "\x1c" not in results[0].source.raw


def test_custom_encoding_characters_from_msh2() -> None:
    standard = only(run("acute", message(adt("A01", "M1"))))
    # component $, repetition *, escape \, subcomponent # ; and then a different field separator
    custom = message([
        "MSH|$*\\#|PAS|RXA|SCR|GATEWAY|202506172006||ADT$A01$ADT_A01|M1|P|2.4",
        "EVN|A01|202506172006",
        f"PID|1||{NHS}$$$NHS$NH*RXA1$$$RXA$MR||HILL$DAVID$RAYMOND||19480905|M|||"
        "185 Cradley Road$$Kingswinford$$DY6 2XB||01384 920299",
        "PD1|||$$Y90001",
        "PV1|1|I|WARD 7$BAY C$BED 1$RXA||||C1$THOMPSON$A$$$DR|||300|||||||||V1"
        + "|" * 25 + "202506172006",
    ])
    other_field_sep = message([s.replace("|", "!") for s in adt("A01", "M1")])
    for text in (custom, other_field_sep):
        record = only(run("acute", text))
        assert (record.patient, record.resources) == (standard.patient, standard.resources)


def test_repeated_and_empty_fields() -> None:
    record = only(run("acute", message(adt(
        "A01", "M1",
        # an empty repetition first, the MRN before the NHS number
        pid3=f"~RXA1^^^RXA^MR~{NHS}^^^NHS^NH",
        pid={5: "HILL^DAVID^", 11: "", 13: "07700 900001~01384 920299", 7: "19480905"},
        pv1={3: "", 7: ""},
    ))))
    assert record.person.nhs_number == NHS and record.person.local_id == "RXA1"
    assert record.patient["name"] == [{"use": "official", "family": "HILL", "given": ["DAVID"]}]
    assert "address" not in record.patient
    assert record.patient["telecom"][0]["value"] == "07700 900001"  # the first repetition
    [stay] = of_type(record, "Encounter")
    assert "location" not in stay and "participant" not in stay


def test_hl7_null_and_escape_sequences() -> None:
    record = only(run("acute", message(adt(
        "A01", "M1", pid={5: "O\\T\\NEILL^MARY", 13: '""'}))))
    assert record.patient["name"][0]["family"] == "O&NEILL"
    assert "telecom" not in record.patient


@pytest.mark.parametrize(("family", "stored"), [
    ("\\H\\SMITH\\N\\", "SMITH"),            # highlighting is for formatted text
    ("CL\\XC389\\MENT", "CLÉMENT"),            # hex bytes are the feed's UTF-8
    ("CL\\XC3\\\\X89\\MENT", "CLÉMENT"),    # one character over two sequences
    ("SMITH\\.br\\JONES", "SMITH JONES"),      # no line break inside a name
    ("O\\F\\NEILL", "O|NEILL"),
])
def test_escape_sequences_in_data_fields(family: str, stored: str) -> None:
    record = only(run("acute", message(adt("A01", "M1", pid={5: f"{family}^MARY"}))))
    assert record.patient["name"][0]["family"] == stored


@pytest.mark.parametrize(("family", "refused"), [
    ("O\\X00\\BRIEN", "U+0000"), ("O\\X1B\\BRIEN", "U+001B"), ("O\\X7F\\BRIEN", "U+007F"),
    ("O\\X0D\\BRIEN", None), ("O\\X0D0A\\BRIEN", None), ("O\\X09\\BRIEN", None),
])
def test_hex_escaped_control_characters_never_reach_a_name(family: str,
                                                           refused: str | None) -> None:
    [result] = run("acute", message(adt("A01", "M1", pid={5: f"{family}^MARY"})))
    if refused is None:  # a line break or tab reads as a space, as \\.br\\ does
        assert not isinstance(result, Rejection), result
        assert result.patient["name"][0]["family"] in ("O BRIEN", "O  BRIEN")
    else:
        assert isinstance(result, Rejection) and result.field.startswith("PID-5")
        assert refused in result.reason


def test_hex_escape_bytes_that_are_not_utf8_reject_the_message_naming_the_field() -> None:
    [bad] = run("acute", message(adt("A01", "M1", pid={5: "CL\\XC9\\MENT^MARY"})))
    assert isinstance(bad, Rejection)
    assert bad.field.startswith("PID-5") and "C9" in bad.reason


@pytest.mark.parametrize(("died", "refused"), [
    ("20621120", True),                  # a slip for 2026: would say the person died
    ("20261123003000+0100", False),      # 23:30 UTC on the 22nd: the 22nd in London
    ("20261123010000", True),            # local time, the 23rd: tomorrow
])
def test_a_date_of_death_after_today_is_refused(died: str, refused: bool) -> None:
    [result] = run("acute", message(adt("A08", "M1", pid={29: died, 30: "Y"})))
    assert isinstance(result, Rejection) is refused, result
    if refused:
        assert isinstance(result, Rejection) and result.field == "PID-29"
        assert "after today" in result.reason


def test_nhs_number_type_hn_variant() -> None:
    record = only(run("acute", message(adt("A01", "M1", pid3=f"{NHS}^^^NHS^HN~RXA1^^^RXA^MR"))))
    assert record.person.nhs_number == NHS


def test_emergency_admission_with_mrn_only() -> None:
    record = only(run("acute", message(adt("A01", "M1", pid3="RXA1^^^RXA^MR",
                                           pv1={2: "E"}))))
    assert record.person.nhs_number is None and record.person.local_id == "RXA1"
    assert of_type(record, "Encounter")[0]["class"]["code"] == "EMER"


def test_truncated_message_is_rejected_and_the_rest_of_the_file_loads() -> None:
    truncated = adt("A01", "BAD2")[:2]
    truncated[1] = "EVN|A01|2026100"
    text = message(adt("A01", "M1")) + message(truncated) + message(
        adt("A01", "M3", visit="V3"))
    results = run("acute", text, "adt.hl7")
    assert [type(r).__name__ for r in results] == ["MappedRecord", "Rejection", "MappedRecord"]
    bad = results[1]
    assert bad.field == "PID"
    assert bad.source.record_id == "BAD2"
    for part in ("acute", "adt.hl7", "message 2", "PID", "truncated"):
        assert part in bad.reason
    assert bad.source.raw.startswith("MSH|") and "EVN|A01|2026100" in bad.source.raw


def test_message_cut_off_inside_msh_is_rejected() -> None:
    results = run("acute", "MSH|^~\r" + message(adt("A01", "M2")))
    assert rejected(results)[0].field == "MSH"
    assert mapped(results)[0].source.record_id == "M2"


def test_bad_nhs_number_in_pid3_rejects_the_message_naming_the_field() -> None:
    [bad] = run("acute", message(adt("A01", "M1", pid3="9434765918^^^NHS^NH~RXA1^^^RXA^MR")),
                "adt.hl7")
    assert "PID-3" in bad.field
    assert "check digit" in bad.reason and "message 1" in bad.reason


def test_impossible_event_time_is_rejected_naming_evn2() -> None:
    segments = adt("A01", "M1")
    segments[1] = "EVN|A01|20261399"
    [bad] = run("acute", message(segments))
    assert bad.field == "EVN-2"


def test_unknown_patient_class_rejects_naming_pv1_2() -> None:
    [bad] = run("acute", message(adt("A01", "M1", pv1={2: "Z"})))
    assert bad.field == "PV1-2"
    assert "hl7v2-patient-class" in bad.reason


def test_segments_before_the_first_msh_and_batch_envelopes() -> None:
    text = ("FHS|^~\\&|PAS\rBHS|^~\\&|PAS\r" + "EVN|A01|202506172006\r"
            + message(adt("A01", "M1")) + "BTS|1\rFTS|1\r")
    results = run("acute", text)
    assert rejected(results)[0].source.position == "before message 1"
    assert [r.source.record_id for r in mapped(results)] == ["M1"]
    assert "BTS" not in mapped(results)[0].source.raw


def test_undecodable_bytes_reject_only_their_message() -> None:
    good = message(adt("A01", "M1")).encode()
    bad = message(adt("A01", "M2", pid={5: "HILL^DAV\xffID"})).encode("latin-1")
    results = run("acute", good + bad + message(adt("A01", "M3")).encode())
    assert [type(r).__name__ for r in results] == ["MappedRecord", "Rejection", "MappedRecord"]
    assert "not valid utf-8" in results[1].reason
    assert results[1].field == "PID"  # the segment holding them, not the header


def test_a08_updates_the_person_only() -> None:
    record = only(run("acute", message(adt("A08", "M1", pv1={44: None}, pid={13: "07700 900167"}))))
    assert record.event == "A08"
    assert record.resources == ()
    assert record.patient["telecom"][0]["value"] == "07700 900167"


def test_discharge_before_admission_out_of_order() -> None:
    """Each message maps on its own; the same visit number gives the same business
    identifier, and event_time says which is newer."""
    discharge = message(adt("A03", "M2", when="202506201000",
                            pv1={36: "01", 45: "202506201000"}))
    admit = message(adt("A01", "M1"))
    first, second = mapped(run("acute", discharge + admit))
    assert first.keys == second.keys
    [finished] = of_type(first, "Encounter")
    [started] = of_type(second, "Encounter")
    assert finished["status"] == "finished"
    assert finished["period"] == {"start": "2025-06-17T20:06:00+01:00",
                                  "end": "2025-06-20T10:00:00+01:00"}
    assert finished["hospitalization"]["dischargeDisposition"]["coding"][0]["code"] == "home"
    assert started["status"] == "in-progress"
    assert first.source.event_time > second.source.event_time


def test_death_in_hospital() -> None:
    record = only(run("acute", message(adt(
        "A03", "M1", when="202607170043",
        pid={29: "202607170043", 30: "Y"}, pv1={36: "20", 45: "202607170043"}))))
    assert record.patient["deceasedDateTime"] == "2026-07-17T00:43:00+01:00"
    [place] = by_code(record, "place-of-death")
    assert place["valueCodeableConcept"]["coding"][0]["code"] == "10"
    assert place["effectiveDateTime"] == "2026-07-17T00:43:00+01:00"
    assert place["encounter"]["identifier"]["value"] == "V1"


def test_death_indicator_without_a_date() -> None:
    record = only(run("acute", message(adt("A08", "M1", pid={30: "Y"}))))
    assert record.patient["deceasedBoolean"] is True
    assert "deceasedDateTime" not in record.patient


def test_death_indicator_n_says_not_deceased() -> None:
    # a death recorded in error is corrected by a message saying PID-30 "N"; a date of
    # death sent beside it is not believed over the indicator
    for pid in ({30: "N"}, {29: "202607170043", 30: "N"}, {30: "n"}):
        record = only(run("acute", message(adt("A08", "M1", pid=pid))))
        assert record.patient["deceasedBoolean"] is False, pid
        assert "deceasedDateTime" not in record.patient, pid
    # no indicator says nothing either way
    record = only(run("acute", message(adt("A08", "M1"))))
    assert "deceasedBoolean" not in record.patient
    assert "deceasedDateTime" not in record.patient


def test_a40_merge_names_the_identifiers_merged_away() -> None:
    segments = adt("A40", "M9", pv1={44: None}, extra=("MRG|RXA2^^^RXA^MR~9000000009^^^NHS^NH",))
    segments[0] = segments[0].replace("ADT^A40^ADT_A01", "ADT^A40^ADT_A39")
    record = only(run("acute", message(segments)))
    assert record.event == "A40"
    assert record.person.local_id == "RXA1"
    assert record.merge_from is not None
    assert record.merge_from.local_id == "RXA2"
    assert record.merge_from.nhs_number == "9000000009"
    assert record.resources == ()


def test_a40_without_mrg_is_rejected() -> None:
    [bad] = run("acute", message(adt("A40", "M9", pv1={44: None})))
    assert "MRG-1" in bad.field


def test_redelivered_message_maps_identically() -> None:
    [again] = run("acute", (FEEDS / "acute" / "adt-redelivered.hl7").read_bytes(),
                  "adt-redelivered.hl7")
    original = next(r for r in run("acute", (FEEDS / "acute" / "adt.hl7").read_bytes())
                    if r.source.record_id == again.source.record_id)
    assert (again.person, again.patient, again.resources, again.keys, again.event) == (
        original.person, original.patient, original.resources, original.keys, original.event)
    assert again.source.event_time == original.source.event_time


def test_two_different_nhs_numbers_for_one_person_are_rejected() -> None:
    """PID-3 naming two NHS numbers was stored with the first, silently."""
    pid3 = f"{NHS}^^^NHS^NH~4010232137^^^NHS^NH~RXA1^^^RXA^MR"
    [rejection] = rejected(run("acute", message(adt("A01", "M1", pid3=pid3)), "adt.hl7"))
    assert rejection.field.startswith("PID-3")
    assert "2 different values" in rejection.reason and "4010232137" in rejection.reason


def test_the_same_nhs_number_twice_is_one() -> None:
    pid3 = f"{NHS}^^^NHS^NH~{NHS}^^^NHS^HN~RXA1^^^RXA^MR"
    assert only(run("acute", message(adt("A01", "M1", pid3=pid3)))).person.nhs_number == NHS


@pytest.mark.parametrize(("died", "refused"), [
    ("19400101", True),   # a mistyped year: born 5 Sep 1948
    ("19480904", True),   # the day before birth
    ("19480905", False),  # died the day they were born
    ("194809", False),    # a month of death: the same month as birth, at that precision
])
def test_a_date_of_death_before_the_birth_date_is_refused(died: str, refused: bool) -> None:
    [result] = run("acute", message(adt("A08", "M1", pid={29: died, 30: "Y"})))
    assert isinstance(result, Rejection) is refused, result
    if refused:
        assert isinstance(result, Rejection) and result.field == "PID-29"
        assert "before the birth date 1948-09-05" in result.reason


def test_a_birth_date_after_today_is_rejected() -> None:
    [rejection] = rejected(run("acute", message(adt("A01", "M1", pid={7: "20991103"}))))
    assert rejection.field == "PID-7" and "after today" in rejection.reason


def test_another_organisations_old_mrn_beside_this_trusts_is_not_a_conflict() -> None:
    """PID-3 may carry a number another organisation gave (after a merger): only this
    trust's own (assigning authority RXA) is its MRN; one NHS number printed two ways is
    one number. Both were rejected as two values by the first version of that check."""
    pid3 = f"{NHS}^^^NHS^NH~943 476 5919^^^NHS^NH~RXA1^^^RXA^MR~OLD9^^^RXB^MR"
    record = only(run("acute", message(adt("A03", "M1", pid3=pid3))))
    assert record.person.local_id == "RXA1" and record.person.nhs_number == NHS
