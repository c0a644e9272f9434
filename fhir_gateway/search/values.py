"""Turning FHIR values into the typed index values and ranges search compares.

Dates become inclusive UTC ranges in fixed-width text, so `2026-05` is
[2026-05-01T00:00:00.000000, 2026-05-31T23:59:59.999999] and string comparison is time
comparison. A date or dateTime without a zone is taken as UTC (R4 leaves this to the
server; the README says so). A number is the double nearest its decimal value, so
values equal as decimals (2.1, 2.10) are equal and order is kept; a search number may
stand for the range its written precision implies (`1.5` is [1.45, 1.55)), as R4 3.1.1.4.2
asks.
"""

from __future__ import annotations

import calendar
import math
import re
import unicodedata
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache

MIN_INSTANT = "0001-01-01T00:00:00.000000"
MAX_INSTANT = "9999-12-31T23:59:59.999999"

#: ASCII digits only (`\d` takes any script's: full-width ones too), and R4's offsets
#: (-14:00 to +14:00)
_DATE = re.compile(
    r"(?P<y>[0-9]{4})(?:-(?P<m>[0-9]{2})(?:-(?P<d>[0-9]{2})"
    r"(?:T(?P<H>[0-9]{2})(?::(?P<M>[0-9]{2})(?::(?P<S>[0-9]{2})(?:\.(?P<f>[0-9]+))?)?)?"
    r"(?P<tz>Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00))?)?)?)?"
)


class BadDate(ValueError):
    """Text that is not a FHIR date, dateTime or instant."""


def _fmt(dt: datetime) -> str:
    # not strftime: its %Y does not pad years before 1000, which then sort after 2026
    return (f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:"
            f"{dt.second:02d}.{dt.microsecond:06d}")


def date_range(text: str) -> tuple[str, str]:
    """The inclusive UTC range a FHIR date/dateTime/instant (any precision) stands for."""
    if type(text) is str:  # anything else fails (or not) exactly as before, uncached
        return _cached_date_range(text)
    return _date_range(text)


def _date_range(text: str) -> tuple[str, str]:
    if not isinstance(text, str):  # a JSON number where FHIR JSON has a string
        raise BadDate(f"{text!r} is not a FHIR date or dateTime (a JSON string)")
    m = _DATE.fullmatch(text.strip())
    if not m:
        raise BadDate(f"{text!r} is not a FHIR date or dateTime")
    g = m.groupdict()
    try:
        year = int(g["y"])
        if g["m"] is None:
            lo, hi = datetime(year, 1, 1), datetime(year, 12, 31, 23, 59, 59, 999999)
        elif g["d"] is None:
            month = int(g["m"])
            last = calendar.monthrange(year, month)[1]
            lo = datetime(year, month, 1)
            hi = datetime(year, month, last, 23, 59, 59, 999999)
        elif g["H"] is None:
            day = datetime(year, int(g["m"]), int(g["d"]))
            lo, hi = day, day.replace(hour=23, minute=59, second=59, microsecond=999999)
        else:
            base = datetime(year, int(g["m"]), int(g["d"]), int(g["H"]), int(g["M"] or 0))
            if g["S"] is None:
                lo, hi = base, base + timedelta(seconds=59, microseconds=999999)
            elif g["f"] is None:
                lo = base.replace(second=int(g["S"]))
                hi = lo + timedelta(microseconds=999999)
            else:
                digits = g["f"][:6]
                lo = base.replace(second=int(g["S"]), microsecond=int(digits.ljust(6, "0")))
                span = 10 ** (6 - len(digits)) - 1 if len(g["f"]) < 6 else 0
                hi = lo + timedelta(microseconds=span)
            tz = g["tz"]
            if tz and tz != "Z":
                sign = 1 if tz[0] == "+" else -1
                offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])) * sign
                lo, hi = lo - offset, hi - offset
    except (ValueError, OverflowError) as exc:  # 31 April, hour 25, year 9999 + 1 hour ...
        raise BadDate(f"{text!r} is not a real date: {exc}") from exc
    return _fmt(lo), _fmt(hi)


#: Ingestion indexes the same dates again and again (a person's birth date on every
#: version, a stay's start on each message of it); errors are not cached (lru_cache).
_cached_date_range = lru_cache(maxsize=16384)(_date_range)

_WHOLE = re.compile(r"[0-9]{1,18}")


def whole_number(text: str) -> int | None:
    """`text` as a whole number when it is 1-18 ASCII digits, else None. Not `isdigit`:
    that accepts superscripts and other scripts' digits `int` cannot read, and 18 digits
    keep every value inside the stores' signed 64-bit integers."""
    return int(text) if _WHOLE.fullmatch(text) else None


def now_instant() -> str:
    """Now as a FHIR instant (UTC, microseconds): what meta.lastUpdated records."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def _decimal(value: object) -> Decimal:
    try:
        d = Decimal(str(value))
    except ArithmeticError as exc:  # InvalidOperation, and the context's other signals
        raise ValueError(f"{value!r} is not a number") from exc
    if not d.is_finite() or not math.isfinite(float(d)):
        raise ValueError(f"{value!r} is not a finite number a double can hold")
    return d


def number_value(value: object) -> float:
    """A decimal as the double nearest it (correctly rounded, so the order of decimals is
    kept and equal decimals, however written, are equal): what the index stores and what
    gt lt ge le sa eb compare with."""
    return float(_decimal(value))


def number_range(value: object) -> tuple[float, float]:
    """The half-open range a decimal's written precision implies: 1.5 -> [1.45, 1.55)."""
    d = _decimal(value)
    exponent = d.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    try:
        half = Decimal(5).scaleb(exponent - 1)
        return float(d - half), float(d + half)
    except ArithmeticError as exc:  # 0e999999999: a precision past the decimal context
        raise ValueError(f"{value!r} has an exponent out of range") from exc


#: control characters read as spaces: a partner's stray NUL must not reach a LIKE pattern
#: (SQLite's LIKE ends at NUL) through an identity lookup, nor be a matching key
_CONTROLS_AS_SPACE = str.maketrans({c: " " for c in (*range(32), 127)})


def normalize(text: str) -> str:
    """Case- and accent-insensitive form used by string search (R4 3.1.1.4.8); control
    characters count as spaces, as tab and line breaks always did."""
    if text.isascii():  # NFKD leaves ASCII as it is, and it has no combining marks
        return " ".join(text.translate(_CONTROLS_AS_SPACE).casefold().split())
    decomposed = unicodedata.normalize("NFKD", text.translate(_CONTROLS_AS_SPACE))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())
