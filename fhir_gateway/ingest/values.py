"""Source values made into FHIR values: dates, date-times, NHS numbers, postcodes.

Every function takes the source text and returns the FHIR form, or raises `FieldError`-free
`ValueError` with a sentence saying what is wrong; the engine adds which field it was.

Date formats are named as an analyst writes them in a mapping: `dd/mm/yyyy`, `yyyy-mm-dd`,
`dd-Mon-yyyy` (English month abbreviation), `yyyymmdd`, and `hl7-dtm` (an HL7 v2 DTM,
whose time part is ignored where a date is wanted). Date-times without an offset are local
time in the mapping's time zone (e.g. Europe/London, so summer times get +01:00): FHIR
requires an offset whenever a time is given (R4 2.24.0.1, dateTime).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..validation.nhs_number import is_placeholder_nhs_number, is_valid_nhs_number

_MONTHS = {
    name: i for i, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        start=1,
    )
}
_TOKENS = re.compile(r"yyyy|mm|dd|Mon")
HL7_DTM = "hl7-dtm"

_HL7_DTM = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,4}))?)?)?)?)?)?"
    r"([+-]\d{4})?"
)
_ISO = re.compile(
    r"(\d{4})(?:-(\d{2})(?:-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?"
)
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


@cache
def date_pattern(fmt: str) -> re.Pattern[str]:
    """The regular expression for a date format such as `dd/mm/yyyy`."""
    if fmt == HL7_DTM:
        return _HL7_DTM
    separated = bool(re.sub(_TOKENS, "", fmt))
    out, pos = [], 0
    for m in _TOKENS.finditer(fmt):
        out.append(re.escape(fmt[pos:m.start()]))
        token = m.group()
        if token == "yyyy":
            out.append(r"(?P<y>\d{4})")
        elif token == "Mon":
            out.append(r"(?P<mon>[A-Za-z]{3})")
        else:
            name = "m" if token == "mm" else "d"
            out.append(rf"(?P<{name}>\d{{1,2}})" if separated else rf"(?P<{name}>\d{{2}})")
        pos = m.end()
    out.append(re.escape(fmt[pos:]))
    pattern = "".join(out)
    if not all(f"(?P<{g}>" in pattern for g in ("y", "d")) or (
        "(?P<m>" not in pattern and "(?P<mon>" not in pattern
    ):
        raise ValueError(f"date format {fmt!r} needs a day, a month and a four-digit year")
    return re.compile(pattern)


def check_date_format(fmt: str) -> None:
    """Raise ValueError when `fmt` is not a date format this module understands."""
    date_pattern(fmt)


@cache
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def _real_date(y: int, m: int, d: int, text: str) -> dt.date:
    try:
        return dt.date(y, m, d)
    except ValueError:
        raise ValueError(f"{text!r} is not a real date") from None


def _match_date(text: str, formats: Sequence[str]) -> tuple[dt.date, str] | None:
    """(date, the rest of the text) for the first format matching the start of `text`."""
    for fmt in formats:
        if fmt == HL7_DTM:
            m = _HL7_DTM.fullmatch(text)
            if m and m.group(3):
                return _real_date(int(m[1]), int(m[2]), int(m[3]), text), ""
            continue
        m = date_pattern(fmt).match(text)
        if not m:
            continue
        if m.groupdict().get("mon") is not None:
            month = _MONTHS.get(m["mon"].lower())
            if month is None:
                raise ValueError(f"{text!r} has an unknown month {m['mon']!r}")
        else:
            month = int(m["m"])
        return _real_date(int(m["y"]), month, int(m["d"]), text), text[m.end():]
    return None


def parse_date(text: str, formats: Sequence[str]) -> str:
    """A FHIR date (YYYY-MM-DD) from `text` in one of `formats`."""
    text = text.strip()
    found = _match_date(text, formats)
    if found is None or found[1].strip():
        raise ValueError(f"{text!r} is not a date in the form {' or '.join(formats)}")
    _plausible_year(found[0].year, text)
    return found[0].isoformat()


#: no date in a living person's care record comes before this year; an earlier one is a
#: slip (a year typed as 0026 or 1026), which would otherwise sort or print as another
EARLIEST_YEAR = 1900


def _plausible_year(year: int, text: str) -> None:
    if year < EARLIEST_YEAR:
        raise ValueError(f"{text!r} is before {EARLIEST_YEAR}: a slip of the year?")


def _offset(local: dt.datetime, tz: str) -> str:
    delta = local.replace(tzinfo=zone(tz)).utcoffset() or dt.timedelta(0)
    minutes = int(delta.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _fhir_datetime(
    parts: Sequence[int | None], fraction: str | None, offset: str | None, tz: str, text: str
) -> str:
    y, mo, d, h, mi, s = parts
    _plausible_year(y or 0, text)
    if mo is None:
        return f"{y:04d}"
    if d is None:
        if not 1 <= mo <= 12:
            raise ValueError(f"{text!r} is not a real month")
        return f"{y:04d}-{mo:02d}"
    day = _real_date(y, mo, d, text)
    if h is None:
        return day.isoformat()
    try:
        local = dt.datetime(y, mo, d, h, mi or 0, s or 0)
    except ValueError:
        raise ValueError(f"{text!r} is not a real time") from None
    if offset is None:
        offset = _offset(local, tz)
    elif offset != "Z" and ":" not in offset:
        offset = f"{offset[:3]}:{offset[3:]}"
    if offset != "Z" and (int(offset[1:3]) > 14 or int(offset[4:6]) > 59):
        raise ValueError(f"{text!r} has an impossible time zone offset")
    frac = f".{fraction}" if fraction else ""
    return f"{local.strftime('%Y-%m-%dT%H:%M:%S')}{frac}{offset}"


def parse_datetime(text: str, *, tz: str, date_formats: Sequence[str] = ()) -> str:
    """A FHIR dateTime from an HL7 v2 DTM, an ISO 8601 date-time, or a date in one of
    `date_formats` optionally followed by ` HH:MM[:SS]`. Precision is kept (a date stays a
    date); a time without an offset is local time in `tz`."""
    text = text.strip()
    m = _HL7_DTM.fullmatch(text)
    if m:
        nums = [int(g) if g else None for g in m.groups()[:6]]
        return _fhir_datetime(nums, m[7], m[8], tz, text)
    m = _ISO.fullmatch(text)
    if m:
        nums = [int(g) if g else None for g in m.groups()[:6]]
        return _fhir_datetime(nums, m[7], m[8], tz, text)
    found = _match_date(text, [f for f in date_formats if f != HL7_DTM])
    if found is not None:
        day, rest = found
        rest = rest.strip()
        if not rest:
            return day.isoformat()
        t = _TIME.fullmatch(rest)
        if t:
            parts = [day.year, day.month, day.day, int(t[1]), int(t[2]),
                     int(t[3]) if t[3] else None]
            return _fhir_datetime(parts, None, None, tz, text)
    raise ValueError(f"{text!r} is not a date/time this mapping understands")


def nhs_number(text: str) -> str:
    """Ten digits passing the Modulus 11 check (DOMAIN.md), from text that may hold spaces
    or hyphens ("943 476 5919"), and not a placeholder (linking by `0000000000` would make
    one Patient of everyone sent with it); ValueError saying what is wrong otherwise."""
    digits = re.sub(r"[\s-]", "", text)
    if not re.fullmatch(r"[0-9]{10}", digits):
        raise ValueError(f"{text!r} is not a 10-digit NHS number")
    if not is_valid_nhs_number(digits):
        raise ValueError(f"{text!r} fails the NHS number check digit (Modulus 11)")
    if is_placeholder_nhs_number(digits):
        raise ValueError(f"{text!r} is a placeholder (one digit ten times), not an NHS number")
    return digits


#: a UK postcode written without spaces: outward code (area, district), inward code
_POSTCODE = re.compile(r"([A-Z]{1,2}[0-9][A-Z0-9]?)([0-9][A-Z]{2})")


def uk_postcode(text: str) -> str | None:
    """The postcode in its one written form ("dy1 4dx" -> "DY1 4DX"), or None when the text
    is not shaped like a UK postcode ("UNKNOWN", "NFA", "DY1")."""
    compact = re.sub(r"\s+", "", text).upper()
    match = _POSTCODE.fullmatch(compact)
    return f"{match[1]} {match[2]}" if match else None


def postcode(text: str) -> str:
    """A postcode normalised (`uk_postcode`); any other text as sent, runs of spaces made
    one: reshaping it ("UNKNOWN" -> "UNKN OWN") would make it look like a postcode."""
    return uk_postcode(text) or " ".join(text.split())
