"""Source values to FHIR values: NHS numbers, the three date formats, local times, postcodes."""

from __future__ import annotations

import pytest

from fhir_gateway.ingest import values


@pytest.mark.parametrize("text", ["9434765919", "943 476 5919", "943-476-5919", " 9434765919 "])
def test_nhs_number_accepts_the_printed_forms(text: str) -> None:
    assert values.nhs_number(text) == "9434765919"


@pytest.mark.parametrize(("text", "why"), [
    ("9434765918", "check digit"),      # wrong check digit
    ("8493407225", "check digit"),      # the sample's bad GP row
    ("1234567891", "check digit"),      # remainder 1: the check would be 10, never issued
    ("1234567890", "check digit"),
    ("12345", "10-digit"),
    ("94347659190", "10-digit"),
    ("943476591X", "10-digit"),
])
def test_nhs_number_rejects_with_a_reason(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        values.nhs_number(text)


def test_nhs_number_check_digit_eleven_means_zero() -> None:
    # 1,0,0,0,0,0,0,6,0 weighted 10..2 sums to 22 = 2 * 11: 11 - 0 = 11, written 0.
    assert values.nhs_number("1000000060") == "1000000060"


@pytest.mark.parametrize(("text", "formats"), [
    ("03/11/1961", ["dd/mm/yyyy"]),
    ("3/11/1961", ["dd/mm/yyyy"]),
    ("1961-11-03", ["yyyy-mm-dd"]),
    ("03-Nov-1961", ["dd-Mon-yyyy"]),
    ("03-nov-1961", ["dd-Mon-yyyy"]),
    ("19611103", ["yyyymmdd"]),
    ("19611103", ["hl7-dtm"]),
    ("196111031230", ["hl7-dtm"]),
    ("03-Nov-1961", ["dd/mm/yyyy", "yyyy-mm-dd", "dd-Mon-yyyy"]),
    ("1961-11-03", ["dd/mm/yyyy", "yyyy-mm-dd", "dd-Mon-yyyy"]),
])
def test_the_date_formats(text: str, formats: list[str]) -> None:
    assert values.parse_date(text, formats) == "1961-11-03"


@pytest.mark.parametrize(("text", "why"), [
    ("31/02/1940", "not a real date"),
    ("29/02/2023", "not a real date"),
    ("00/01/2020", "not a real date"),
    ("03-Foo-1961", "unknown month"),
    ("1961-11-03", "not a date in the form dd/mm/yyyy"),
    ("not-a-date", "not a date"),
    ("03/11/1961 extra", "not a date"),
    ("11/02/0026", "before 1900: a slip of the year"),  # would sort after 2026
    ("11/02/1026", "before 1900"),
])
def test_impossible_or_foreign_dates_are_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        values.parse_date(text, ["dd/mm/yyyy"] if "/" in text or "Foo" not in text else
                          ["dd-Mon-yyyy"])


def test_a_leap_day_is_a_real_date() -> None:
    assert values.parse_date("29/02/2024", ["dd/mm/yyyy"]) == "2024-02-29"


def test_an_unknown_date_format_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a day, a month"):
        values.check_date_format("mm/yyyy")


@pytest.mark.parametrize(("text", "expected"), [
    # HL7 DTM at each precision; local UK time gets its offset (GMT in winter, BST in summer)
    ("2026", "2026"),
    ("202607", "2026-07"),
    ("20260717", "2026-07-17"),
    ("2026071700", "2026-07-17T00:00:00+01:00"),
    ("202607170043", "2026-07-17T00:43:00+01:00"),
    ("20260117004312", "2026-01-17T00:43:12+00:00"),
    ("20260117004312.25", "2026-01-17T00:43:12.25+00:00"),
    ("202601170043+0200", "2026-01-17T00:43:00+02:00"),
    # ISO forms, with and without seconds and offset
    ("2026-02-26T08:48", "2026-02-26T08:48:00+00:00"),
    ("2026-06-26T08:48:30", "2026-06-26T08:48:30+01:00"),
    ("2026-06-26T08:48:30Z", "2026-06-26T08:48:30Z"),
    ("2026-06-26T08:48:30-05:00", "2026-06-26T08:48:30-05:00"),
    ("2026-06-26", "2026-06-26"),
    # a date in a declared format with a time after it
    ("26/06/2026 08:48", "2026-06-26T08:48:00+01:00"),
])
def test_datetimes(text: str, expected: str) -> None:
    assert values.parse_datetime(text, tz="Europe/London", date_formats=["dd/mm/yyyy"]) == expected


@pytest.mark.parametrize("text", ["2026100", "20261301", "2026-02-30T10:00", "202602262500",
                                  "yesterday", "2026-02-26T08:48+99:00", "00260211",
                                  "0026-02-11T10:00"])
def test_impossible_datetimes_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        values.parse_datetime(text, tz="Europe/London")


@pytest.mark.parametrize(("text", "expected"), [
    ("dy1 4dx", "DY1 4DX"), ("DY14DX", "DY1 4DX"), ("  b63   8ee ", "B63 8EE"),
    ("SW1A1AA", "SW1A 1AA"), ("N1 9GU", "N1 9GU"),
])
def test_postcodes_are_normalised(text: str, expected: str) -> None:
    assert values.postcode(text) == expected


@pytest.mark.parametrize("text", ["UNKNOWN", "NFA", "DY1", "no fixed  abode", "12345"])
def test_text_that_is_not_a_postcode_is_kept_as_sent_and_matches_no_one(text: str) -> None:
    assert values.postcode(text) == " ".join(text.split())
    assert values.uk_postcode(text) is None
