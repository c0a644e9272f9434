"""Damaged input that must cost one record, never its neighbours: an HL7 v2 message cut off
with the next message run straight on, a message repeating a segment ADT holds once, and a
CSV row with an unbalanced quote."""

from __future__ import annotations

import pytest
from ingest_helpers import mapped, of_type, rejected, run

from fhir_gateway.ingest import MappedRecord, Rejection

SMITH_NHS = "9434765919"
JONES_NHS = "4010232145"
BROWN_NHS = "4010232137"


def adt_segments(control: str, family: str, nhs: str, visit: str, *,
                 pid6: str = "") -> list[str]:
    """An A01 admission with the standard separators (`|^~\\&`)."""
    return [
        f"MSH|^~\\&|PAS|RXA|SCR|GATEWAY|202601011000||ADT^A01^ADT_A01|{control}|P|2.4",
        "EVN|A01|202601011000",
        f"PID|1||{nhs}^^^NHS^NH~{control}-MRN^^^RXA^MR||{family}^ANN|{pid6}|19411103|F|||"
        "1 High St^^Dudley^^DY1 1AA",
        "PD1|||^^Y90001",
        f"PV1|1|I|W1^^^RXA||||||||||||||||{visit}",
    ]


def adt_message(control: str, family: str, nhs: str, visit: str, *, sep: str = "\r",
                pid6: str = "") -> str:
    return sep.join(adt_segments(control, family, nhs, visit, pid6=pid6)) + sep


def cut_inside(message: str, segment_text: str) -> str:
    """`message` cut just after `segment_text`, without its segment terminator."""
    return message[:message.index(segment_text) + len(segment_text)]


def visits(record: MappedRecord) -> list[str]:
    return [e["identifier"][0]["value"] for e in of_type(record, "Encounter")]


# --- HL7 v2: a truncated message followed straight on by the next one -------------------

def test_message_cut_inside_a_segment_is_rejected_and_the_next_message_is_its_own() -> None:
    smith = cut_inside(adt_message("C1", "SMITH", SMITH_NHS, "V-SMITH"), "PD1|||^^Y9")
    jones = adt_message("C2", "JONES", JONES_NHS, "V-JONES")
    results = run("acute", smith + jones, "adt.hl7")

    assert [type(r) for r in results] == [Rejection, MappedRecord]
    bad, good = results
    assert bad.source.position == "message 1"
    assert bad.source.record_id == "C1"
    assert bad.source.raw == smith  # kept for review exactly as sent, without Jones's message
    assert bad.field == "PD1"
    for part in ("acute", "adt.hl7", "message 1", "truncated", "PD1"):
        assert part in bad.reason

    assert good.source.position == "message 2"
    assert good.source.record_id == "C2"
    assert good.source.raw == jones
    assert good.person.family == "JONES" and good.person.nhs_number == JONES_NHS
    assert visits(good) == ["V-JONES"]  # Jones's visit is Jones's, never Smith's


@pytest.mark.parametrize("sep", ["\r", "\n", "\r\n"])
def test_later_messages_keep_their_numbers_after_a_cut_message(sep: str) -> None:
    first = adt_message("C1", "SMITH", SMITH_NHS, "V1", sep=sep)
    cut = cut_inside(adt_message("C2", "JONES", JONES_NHS, "V2", sep=sep), "PV1|1|I|W1")
    third = adt_message("C3", "BROWN", BROWN_NHS, "V3", sep=sep)
    results = run("acute", first + cut + third, "adt.hl7")

    assert [(type(r), r.source.position, r.source.record_id) for r in results] == [
        (MappedRecord, "message 1", "C1"),
        (Rejection, "message 2", "C2"),
        (MappedRecord, "message 3", "C3"),
    ]
    assert results[1].field == "PV1" and "truncated" in results[1].reason
    assert visits(results[0]) == ["V1"] and visits(results[2]) == ["V3"]


def test_message_cut_inside_its_msh_is_rejected_and_the_next_message_loads() -> None:
    cut = "MSH|^~\\&|PAS|RXA|SCR|GAT"
    jones = adt_message("C2", "JONES", JONES_NHS, "V-JONES")
    results = run("acute", cut + jones, "adt.hl7")

    assert [type(r) for r in results] == [Rejection, MappedRecord]
    assert results[0].source.raw == cut
    assert "message 1" in results[0].reason and "truncated" in results[0].reason
    assert results[1].source.position == "message 2" and visits(results[1]) == ["V-JONES"]


def test_escaped_msh_text_inside_a_field_is_data_not_a_message() -> None:
    # HL7 escapes the field separator as \F\: "MSH|^~\&" sent as data cannot hold the real one.
    escaped = "MSH\\F\\\\S\\\\R\\\\E\\\\T\\"
    results = run("acute", adt_message("C1", "SMITH", SMITH_NHS, "V1", pid6=escaped))
    [record] = results
    assert isinstance(record, MappedRecord) and visits(record) == ["V1"]
    assert escaped in record.source.raw


def test_msh_text_with_other_separators_is_data_not_a_message() -> None:
    # This message separates fields with "!", so "MSH|^~\&|" in PID-6 is ordinary text.
    segments = [s.replace("|", "!") for s in adt_segments("C1", "SMITH", SMITH_NHS, "V1")]
    segments[2] = segments[2].replace("!SMITH^ANN!!", "!SMITH^ANN!MSH|^~\\&|PAS!")
    results = run("acute", "\r".join(segments) + "\r")
    [record] = results
    assert isinstance(record, MappedRecord) and visits(record) == ["V1"]
    assert "MSH|^~\\&|PAS" in record.source.raw


# --- HL7 v2: a segment ADT holds once, sent twice ---------------------------------------

@pytest.mark.parametrize("segment", ["EVN", "PID", "PD1", "PV1"])
def test_a_message_repeating_a_single_segment_is_rejected_as_damaged(segment: str) -> None:
    smith = adt_segments("C1", "SMITH", SMITH_NHS, "V-SMITH")
    jones = adt_segments("C2", "JONES", JONES_NHS, "V-JONES")
    # Jones's segment lands inside Smith's message (e.g. a lost MSH between them).
    index = next(i for i, s in enumerate(jones) if s.startswith(segment))
    damaged = [*smith, jones[index]]
    text = "\r".join(damaged) + "\r" + adt_message("C3", "BROWN", BROWN_NHS, "V3")
    results = run("acute", text, "adt.hl7")

    assert [(type(r), r.source.position) for r in results] == [
        (Rejection, "message 1"), (MappedRecord, "message 2")]
    bad = results[0]
    assert bad.field == segment
    assert bad.source.record_id == "C1"
    for part in ("adt.hl7", "message 1", f"2 {segment} segments", "damaged"):
        assert part in bad.reason
    assert visits(results[1]) == ["V3"]


def test_the_pid_and_pv1_of_two_run_together_messages_are_never_mixed() -> None:
    smith = adt_segments("C1", "SMITH", SMITH_NHS, "V-SMITH")
    jones = adt_segments("C2", "JONES", JONES_NHS, "V-JONES")
    # Smith's message lost its PV1 and Jones's lost its MSH and EVN.
    results = run("acute", "\r".join(smith[:4] + jones[2:]) + "\r", "adt.hl7")
    [bad] = results
    assert isinstance(bad, Rejection) and bad.field == "PID"
    assert not mapped(results)


# --- CSV: an unbalanced quote -----------------------------------------------------------

SC_HEADER = ("Person ID,Title,First Name,Last Name,DOB,Postcode,NHS No (if known),Service,"
             "Service Start,Service End,Provider,Key Worker")
SC_NHS = ["9434765919", "4010232145", "4010232137", "4010232153", "4010232161",
          "4010232188", "4010232196"]


def service_rows() -> list[str]:
    return [f"SC{i},Mr,John{i},Smith,1940-01-0{i + 1},DY1 1AA,{nhs},Home care,2025-01-01,,"
            "Dudley Homecare Ltd,A" for i, nhs in enumerate(SC_NHS)]


def test_a_stray_quote_rejects_only_its_line_and_the_rest_of_the_file_loads() -> None:
    rows = service_rows()
    rows[1] = rows[1].replace("Dudley Homecare Ltd", '"Dudley Homecare Ltd')
    results = run("socialcare", "\n".join([SC_HEADER, *rows]) + "\n", "services.csv")

    [bad] = rejected(results)
    assert bad.source.position == "line 3"
    assert bad.source.raw == rows[1] + "\n"  # that line alone, not the rest of the file
    assert bad.field == "row"
    for part in ("services.csv", "line 3", "unbalanced quote"):
        assert part in bad.reason
    good = mapped(results)
    assert [r.source.position for r in good] == ["line 2", "line 4", "line 5", "line 6",
                                                 "line 7", "line 8"]
    assert [r.person.given for r in good] == ["John0", "John2", "John3", "John4", "John5",
                                              "John6"]


def test_a_stray_quote_after_a_quoted_line_break_keeps_line_numbers_right() -> None:
    rows = service_rows()[:4]
    rows[0] = rows[0].replace("Dudley Homecare Ltd", '"Dudley Homecare Ltd\nUnit 4"')
    rows[2] = rows[2].replace("Home care", '"Home care')
    results = run("socialcare", "\r\n".join([SC_HEADER, *rows]) + "\r\n", "services.csv")

    assert [(type(r), r.source.position) for r in results] == [
        (MappedRecord, "line 2"),  # spans lines 2 and 3: a quoted line break is fine
        (MappedRecord, "line 4"),
        (Rejection, "line 5"),
        (MappedRecord, "line 6"),
    ]
    assert "unbalanced quote" in results[2].reason and "line 5" in results[2].reason
    assert results[0].source.raw.count("\n") == 2


def test_a_stray_quote_in_the_last_row_names_the_quote() -> None:
    rows = service_rows()[:3]
    rows[2] = rows[2].replace("Dudley Homecare Ltd", '"Dudley Homecare Ltd')
    results = run("socialcare", "\n".join([SC_HEADER, *rows]) + "\n", "services.csv")

    assert [r.source.position for r in mapped(results)] == ["line 2", "line 3"]
    [bad] = rejected(results)
    assert bad.source.position == "line 4" and "unbalanced quote" in bad.reason


@pytest.mark.parametrize("control", ["\x00", "\x07", "\x1b"])
def test_a_control_character_in_a_cell_rejects_only_its_row_naming_the_column(
        control: str) -> None:
    """A GP surname `WH<NUL>ITE` was stored as sent: not FHIR text, and not found by
    `family=WHITE`. Tab, CR and LF stay text (a care plan's lines)."""
    rows = service_rows()
    rows[1] = rows[1].replace("Dudley Homecare Ltd", f"Dudley{control}Homecare Ltd")
    results = run("socialcare", "\n".join([SC_HEADER, *rows]) + "\n", "services.csv")
    [bad] = rejected(results)
    assert bad.source.position == "line 3" and bad.field == "Provider"
    assert f"U+{ord(control):04X}" in bad.reason and "services.csv" in bad.reason
    assert len(mapped(results)) == len(rows) - 1


def test_a_control_character_in_a_json_line_rejects_only_that_line() -> None:
    line = {"clientId": "H1", "name": {"first": "Jo\u0000hn", "last": "Smith"},
            "dob": "1940-01-01", "gender": "male", "admissions": []}
    good = {**line, "clientId": "H2", "name": {"first": "Mary", "last": "Smith"}}
    import json

    results = run("hospice", json.dumps(line) + "\n" + json.dumps(good) + "\n", "h.jsonl")
    [bad] = rejected(results)
    assert bad.field == "name.first" and "U+0000" in bad.reason
    assert [r.source.position for r in mapped(results)] == ["line 2"]


def test_a_control_character_in_a_column_no_one_reads_rejects_nothing() -> None:
    """Checked where the mapping makes FHIR text, not in every cell: a record (a DNACPR
    with it) was rejected for a column the gateway never reads."""
    rows = [f"{row},memo\x01text" for row in service_rows()]
    results = run("socialcare", "\n".join([SC_HEADER + ",Practice Memo", *rows]) + "\n",
                  "services.csv")
    assert rejected(results) == []
    assert len(mapped(results)) == len(rows)


def test_a_vertical_tab_in_free_text_is_a_line_break() -> None:
    rows = service_rows()
    rows[0] = rows[0].replace("Dudley Homecare Ltd", "Dudley\x0bHomecare Ltd")
    results = run("socialcare", "\n".join([SC_HEADER, *rows]) + "\n", "services.csv")
    assert rejected(results) == []
    (plan,) = mapped(results)[0].resources
    assert plan["activity"][0]["detail"]["performer"][0]["display"] == "Dudley\nHomecare Ltd"


def test_a_raw_control_character_in_an_hl7_field_is_rejected() -> None:
    results = run("acute", adt_message("C1", "HI\x01LL", SMITH_NHS, "V1")
                  + adt_message("C2", "JONES", JONES_NHS, "V2"), "adt.hl7")
    [bad] = rejected(results)
    assert "U+0001" in bad.reason and "message 1" in bad.reason
    assert [r.person.family for r in mapped(results)] == ["JONES"]


@pytest.mark.parametrize(("codec", "said"), [
    ("utf-16", "UTF-16"), ("utf-16-le", "UTF-16"), ("utf-16-be", "UTF-16"),
    ("utf-32", "UTF-32")])
def test_a_file_saved_as_utf16_is_rejected_as_such_not_row_by_row(codec: str,
                                                                   said: str) -> None:
    """A spreadsheet's "Unicode text" export: read as UTF-8 every row was rejected for a
    missing column, sending the partner after the wrong fault. One rejection now says what
    the file is, keeping its text readable for review."""
    text = "\n".join([SC_HEADER, *service_rows()]) + "\n"
    results = run("socialcare", text.encode(codec), "services.csv")
    [bad] = results
    assert isinstance(bad, Rejection)
    assert bad.source.position == "whole file" and bad.field == "file"
    assert f"the file is {said} text, not utf-8" in bad.reason
    assert "services.csv" in bad.reason
    assert bad.source.raw.lstrip("\ufeff").startswith(SC_HEADER.split(",")[0])


def test_only_wide_text_the_mapping_did_not_declare_is_refused() -> None:
    from fhir_gateway.ingest.source import foreign_encoding

    wide = ("Person ID,Name\n1,Ann\n").encode("utf-16")
    assert foreign_encoding(wide, "utf-16") is None
    assert foreign_encoding(wide, "utf-8") is not None
    # plain text with no NULs, accented or not, is never taken for UTF-16
    assert foreign_encoding("Zoë,Ćwik\n".encode(), "utf-8") is None
    assert foreign_encoding("Zoë,Ćwik\n".encode("cp1252", "replace"), "cp1252") is None
    # nor is a binary file (a spreadsheet's zip) sent by mistake
    assert foreign_encoding(b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(40) + b"xl/", "utf-8") \
        is None


GP_HEADER = ("NHS Number,Surname,Forename,Date of Birth,Sex,Practice Code,Usual GP,"
             "Palliative Register Date,GSF Code,Preferred Place of Death,PPD Recorded,DNACPR,"
             "DNACPR Date,Care Plan Summary,Last Reviewed,Date of Death,Place of Death")


@pytest.mark.parametrize("partner", ["gp", "socialcare"])
@pytest.mark.parametrize("data", [b"\x00" * 4096, b"\x00", b"PK\x03\x04 not a csv\n",
                                  b"Name,Date of birth\n"])
def test_a_csv_file_with_no_rows_under_a_foreign_header_is_rejected(
        partner: str, data: bytes) -> None:
    """A NUL-filled file (a failed copy), or another file sent by mistake, has no rows
    under its first line, so no row said the header was wrong: it was answered `read 0`
    and nothing was kept. Its first line is now rejected, kept raw for review."""
    [bad] = run(partner, data, "extract.csv")
    assert isinstance(bad, Rejection)
    assert bad.source.position == "line 1" and bad.field == "header"
    assert "has no column" in bad.reason and "this is not the partner's extract" in bad.reason
    assert "extract.csv" in bad.reason and bad.source.raw == data.decode()


def test_a_large_nul_filled_copy_is_kept_whole_saying_what_it_holds() -> None:
    """Past the csv module's field limit the header cannot be parsed at all: its message
    ("field larger than field limit") said nothing a partner could act on, and only the
    first line was kept."""
    data = b"\x00" * 200_000 + b"\n" + b"\x00" * 10
    [bad] = run("gp", data, "register.csv")
    assert isinstance(bad, Rejection) and bad.field == "header"
    assert "control character U+0000" in bad.reason and "damaged copy" in bad.reason
    assert bad.source.raw == data.decode()


@pytest.mark.parametrize("blankish", ["\u00a0" * 50, "\x1c\x1d\x1e\x1f" * 10, "\u3000\n"])
def test_a_file_of_characters_no_spreadsheet_writes_is_not_an_empty_extract(
        blankish: str) -> None:
    [bad] = run("socialcare", blankish.encode(), "services.csv")
    assert isinstance(bad, Rejection) and bad.field == "header"
    assert bad.source.raw == blankish


def test_a_file_sent_without_its_header_keeps_its_first_record() -> None:
    """The first row was taken for the header: every other row was rejected and kept, but
    the first one (a person's record) was neither counted nor kept."""
    rows = service_rows()
    results = run("socialcare", "\n".join(rows) + "\n", "services.csv")
    assert len(results) == len(rows) and not mapped(results)
    first = results[0]
    assert first.field == "header" and first.source.raw == rows[0] + "\n"
    assert "sent without its header (then this line is a record)" in first.reason
    assert [r.source.position for r in results] == [f"line {i}" for i in
                                                    range(1, len(rows) + 1)]


def test_a_stray_quote_in_the_header_does_not_swallow_the_rows() -> None:
    """Read as a quoted value, the header ran on to the end of the file: every row became
    part of it and none was loaded or kept."""
    header = SC_HEADER.rsplit(",", 1)[0] + ',"Key Worker'
    results = run("socialcare", "\n".join([header, *service_rows()]) + "\n", "services.csv")
    assert len(mapped(results)) == len(service_rows()) and not rejected(results)


def test_a_quoted_header_name_may_wrap_over_two_lines() -> None:
    header = SC_HEADER.replace("Key Worker", '"Key\nWorker"')
    results = run("socialcare", "\n".join([header, *service_rows()]) + "\n", "services.csv")
    assert not rejected(results) and len(mapped(results)) == len(service_rows())


@pytest.mark.parametrize(("partner", "header"), [("gp", GP_HEADER), ("socialcare", SC_HEADER)])
def test_the_mappings_own_header_with_no_rows_is_an_empty_extract(partner: str,
                                                                   header: str) -> None:
    assert run(partner, header + "\n\n", "extract.csv") == []
    assert run(partner, "\n \n", "extract.csv") == []  # blank: nothing to read


def test_a_stray_quote_in_a_column_no_one_reads_does_not_swallow_the_rows() -> None:
    """With no mapped column missing, the header run on over every row was taken as it
    was: the file was answered `read 0` and nothing was kept."""
    header = SC_HEADER + ',"Notes'
    rows = [row + ",n" for row in service_rows()]
    results = run("socialcare", "\n".join([header, *rows]) + "\n", "services.csv")
    assert len(mapped(results)) == len(rows) and not rejected(results)


@pytest.mark.parametrize("above", [",,,,,,", ";;;", " , ,"])
def test_a_row_of_delimiters_above_the_header_is_blank(above: str) -> None:
    results = run("socialcare", "\n".join([above, SC_HEADER, *service_rows()]) + "\n",
                  "services.csv")
    assert len(mapped(results)) == len(service_rows()) and not rejected(results)
    assert mapped(results)[0].source.position == "line 3"
