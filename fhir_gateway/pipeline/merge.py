"""Merging what a record says into what the shared record holds, order-independently.

Each top-level element of a stored resource remembers the source stamp of the record that
set it: (event time, partner, record id). An incoming element replaces the stored one only
when its stamp is not older, so an A01 delivered after its A03 cannot reopen a finished
Encounter, and the same records in any order give the same resource. Elements a record
lacks are unknown to it, not removed (an A08 that omits the death fields keeps them).
Identifiers are a union: every partner's local id stays on the Patient.
"""

from __future__ import annotations

from typing import Any

from .. import jsonio
from ..ingest.model import NHS_NUMBER_SYSTEM
from ..search.values import BadDate, date_range

#: Elements the gateway owns, never merged from a partner record.
SERVER_ELEMENTS = frozenset({"resourceType", "id", "meta", "text"})
Stamp = str
#: `Provenance.activity` of the versions an A40 merge made by only re-pointing a resource
#: from the merged-away Patient to the survivor (ISO 21089 record lifecycle "merge", as
#: FHIR R5's Patient $merge records it). The partner that sent the merge is its agent, but
#: it did not author the content: whoever wrote the version before did, and readers of
#: Provenance (the emergency summary) credit the fact to them.
REPOINT_ACTIVITY = {"system": "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle",
                    "code": "merge", "display": "Merge Record Lifecycle Event"}


def is_repoint(provenance: dict[str, Any]) -> bool:
    """Whether a Provenance records only a merge's re-pointing (`REPOINT_ACTIVITY`)."""
    activity = provenance.get("activity")
    codings = activity.get("coding") if isinstance(activity, dict) else None
    return any(isinstance(c, dict) and c.get("system") == REPOINT_ACTIVITY["system"]
               and c.get("code") == REPOINT_ACTIVITY["code"] for c in codings or [])


def stamp(event_time: str | None, partner: str, record_id: str | None) -> Stamp:
    """Comparable source stamp; a record without an event time sorts before any with one.
    The event time as a UTC instant of fixed width: senders mix offsets (10:30+01:00 and
    09:45+00:00), and compared as written the older message would win."""
    when = ""
    if event_time:
        try:
            when = date_range(event_time)[0]
        except BadDate:
            when = event_time
    return f"{when}\x1f{partner}\x1f{record_id or ''}"


def _same(a: Any, b: Any) -> bool:
    return jsonio.canonical(a) == jsonio.canonical(b)


def merge(stored: dict[str, Any] | None, incoming: dict[str, Any],
          times: dict[str, Stamp], new_stamp: Stamp) -> tuple[dict[str, Any], dict[str, Stamp]]:
    """The merged resource and the element stamps to keep. `stored` may be None (new)."""
    result = dict(stored or {})
    kept = dict(times)
    for key, value in incoming.items():
        if key in SERVER_ELEMENTS:
            if stored is None and key != "id":
                result[key] = value
            continue
        if key == "identifier":
            result[key] = _union(result.get(key) or [], value)
            continue
        base = _choice_base(key)
        if base != key:  # deceasedBoolean vs deceasedDateTime: one element, one stamp
            previous = [k for k in result if _choice_base(k) == base and k != key]
        else:
            previous = []
        date_of_death = _date_of_death(result, key, value) if base == "deceased" else None
        if date_of_death is not None:
            # "deceased: true" and a date of death say the same, and the date says more:
            # whichever partner's came last, and in whatever order, the date is kept
            for old in previous:
                result.pop(old, None)
            result["deceasedDateTime"] = date_of_death
            kept[base] = max(kept.get(base, ""), new_stamp)
        elif kept.get(base, "") <= new_stamp:
            for old in previous:
                result.pop(old, None)
            result[key] = value
            kept[base] = new_stamp
    return result, kept


def _date_of_death(result: dict[str, Any], key: str, value: Any) -> str | None:
    """The date of death to keep when one partner says only "deceased: true" and another
    gives the date; None otherwise (then the newer stamp decides, as for any element)."""
    if key == "deceasedBoolean" and value is True and \
            isinstance(result.get("deceasedDateTime"), str):
        return result["deceasedDateTime"]
    if key == "deceasedDateTime" and isinstance(value, str) and \
            result.get("deceasedBoolean") is True:
        return value
    return None


def _union(stored: list[Any], incoming: list[Any]) -> list[Any]:
    """Every identifier once, NHS number first, then by system and value: the same list
    whatever order the partners' records arrived in."""
    out = list(stored)
    seen = {(i.get("system"), i.get("value")) for i in stored if isinstance(i, dict)}
    for ident in incoming:
        key = (ident.get("system"), ident.get("value")) if isinstance(ident, dict) else None
        if key not in seen:
            out.append(ident)
            seen.add(key)
    return sorted(out, key=lambda i: (i.get("system") != NHS_NUMBER_SYSTEM,
                                      str(i.get("system")), str(i.get("value"))))


_CHOICES = ("deceased", "multipleBirth", "effective", "value", "onset", "occurred",
            "abatement", "performed", "timing", "born", "age")


def _choice_base(key: str) -> str:
    for base in _CHOICES:
        if key.startswith(base) and len(key) > len(base) and key[len(base)].isupper():
            return base
    return key


def changed(before: dict[str, Any] | None, after: dict[str, Any]) -> bool:
    if before is None:
        return True
    strip = ("meta", "id")
    return not _same({k: v for k, v in before.items() if k not in strip},
                     {k: v for k, v in after.items() if k not in strip})
