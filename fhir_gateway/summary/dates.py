"""Dates as the summary reads them: sortable instants, the span a partial date covers, and
London days (the crews' and partners' calendar).

A date that cannot be read is never an error: each helper answers "" / None and the
summary says the date cannot be read. That includes dates FHIR allows but the calendar
cannot hold once moved to London time (0001-01-01T00:00:00Z falls before year 1 there;
9999-12-31T23:59:59-12:00 is in year 10000 in UTC): one such date in one partner's record
must never stop the crew's summary.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime
from functools import lru_cache

from ..search.values import date_range
from .terms import LONDON

#: how a date the summary cannot read is said, beside its text
UNREADABLE_DATE = "date cannot be read"

Moment = tuple[str, str]  # (London calendar date, UTC instant): sorts as time does


@lru_cache(maxsize=8192)
def sortable(value: str | None) -> str:
    """A date or dateTime as a UTC instant text that sorts; "" when absent or invalid."""
    if not value:
        return ""
    try:
        return date_range(str(value))[0]
    except (ValueError, TypeError):
        return ""


@lru_cache(maxsize=8192)
def span(value: str | None) -> tuple[Moment, Moment] | None:
    """The earliest and latest moment a date or dateTime may mean, comparable with any
    other's; None when absent or unreadable. A dateTime is one moment; a date ("2026",
    "2026-02", "2026-02-01") is all of its London period, so it is neither before nor
    after a time within it: compared at the coarser precision of the two."""
    if not sortable(value):
        return None
    text = str(value).strip()  # as sortable reads it
    if len(text) <= 10:
        # ("2026-02", "") sorts before ("2026-02-15", ...) and ("2026-02\uffff", "")
        # after: the month holds every day and time in it
        return (text, ""), (text + "\uffff", "")
    try:
        moment = (london_day(text).isoformat(), sortable(text))
    except ValueError:  # what date_range reads but fromisoformat does not: unordered
        return None
    return moment, moment


def london_day(text: str) -> date:
    """The London calendar day of a dateTime; ValueError when it cannot be read or falls
    outside the calendar in London time."""
    return london_moment(text).date()


def london_moment(text: str) -> datetime:
    """A dateTime in London time (as given when it has no zone); ValueError when it cannot
    be read or falls outside the calendar in London time."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        return moment
    try:
        return moment.astimezone(LONDON)
    except OverflowError as exc:
        raise ValueError(f"{text!r} is outside the calendar in London time") from exc


@lru_cache(maxsize=8192)
def review_day(review: str | None) -> date | None:
    """The last London day a review date allows: a dateTime's London date; a partial
    date ("2026-06", "2026") the last day of its period; None when unreadable."""
    if not review or not sortable(review):
        return None
    text = str(review)
    try:
        if len(text) > 10:
            return london_day(text)
        if len(text) == 10:
            return date.fromisoformat(text)
        if len(text) == 7:
            year, month = int(text[:4]), int(text[5:7])
            return date(year, month, calendar.monthrange(year, month)[1])
        if len(text) == 4:
            return date(int(text), 12, 31)
    except ValueError:
        return None
    return None


def has_passed(review: str | None, today: date) -> bool:
    """Whether the review date has passed (a review due today is still current; one that
    cannot be read is not taken as passed: the fact says it cannot be read)."""
    last = review_day(review)
    return last is not None and last < today


def after(value: str | None, today: date) -> bool:
    """Whether a date or dateTime begins after `today` (Europe/London)."""
    moments = span(value)
    return moments is not None and moments[0][0][:10] > today.isoformat()


def day(value: str | None) -> str:
    """'2026-07-22...' -> '22 Jul 2026' (a dateTime in London time), '2026-07' -> 'Jul
    2026', '2026' as it is; '' when absent; a date that cannot be read (or falls outside
    the calendar in London time) is given as sent, saying so."""
    if not value:
        return ""
    text = str(value)
    try:
        if len(text) > 10:
            moment = london_moment(text)
            return f"{moment.day} {moment:%b %Y}"
        if len(text) == 10:
            parsed = datetime.strptime(text, "%Y-%m-%d")
            return f"{parsed.day} {parsed:%b %Y}"
        if len(text) == 7:  # a partial date says only the month: so do we
            return f"{datetime.strptime(text, '%Y-%m'):%b %Y}"
        if len(text) == 4 and text.isascii() and text.isdigit():
            return text
    except ValueError:
        pass
    return f"{text} ({UNREADABLE_DATE})"
