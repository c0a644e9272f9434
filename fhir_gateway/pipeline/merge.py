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
        if base == "deceased":
            _say_deceased(result, kept, key, value, new_stamp)
            continue
        if base != key:  # e.g. effectiveDateTime vs effectivePeriod: one element, one stamp
            previous = [k for k in result if _choice_base(k) == base and k != key]
        else:
            previous = []
        if kept.get(base, "") <= new_stamp:
            for old in previous:
                result.pop(old, None)
            result[key] = value
            kept[base] = new_stamp
    return result, kept


#: Prefix of the element stamps holding what each partner last said of a death.
SAID_DECEASED = "deceased@"


def _partner_of(stamp_: Stamp) -> str:
    parts = stamp_.split("\x1f")
    return parts[1] if len(parts) > 2 else ""


def _say_deceased(result: dict[str, Any], kept: dict[str, Stamp], key: str, value: Any,
                  new_stamp: Stamp) -> None:
    """Keep each partner's newest statement of death (`deceased@<partner>`: the stamp, a
    tab, the element as JSON), and derive `deceased[x]` from them all, so any order of
    records gives the same answer. A partner's "not deceased" (HL7 PID-30 N) corrects only
    what that partner said: a death another partner recorded is kept, as a disagreement
    is never settled by the later message. A date of death says more than "deceased:
    true" and is kept over it whichever came last; of several dates, the newest said."""
    said = _said_deceased(result, kept)
    partner = _partner_of(new_stamp)
    if partner in said and said[partner][0] > new_stamp:
        return  # this partner has said something newer
    said[partner] = (new_stamp, key, value)
    for name, (when, k, v) in said.items():
        kept[SAID_DECEASED + name] = f"{when}\t{jsonio.canonical({k: v})}"
    for old in [k for k in result if _choice_base(k) == "deceased"]:
        result.pop(old)
    statements = sorted(said.values(), key=lambda s: s[0], reverse=True)
    dates = [v for _, k, v in statements if k == "deceasedDateTime" and isinstance(v, str)]
    if dates:
        result["deceasedDateTime"] = dates[0]
    elif any(k == "deceasedBoolean" and v is True for _, k, v in statements):
        result["deceasedBoolean"] = True
    else:
        result[statements[0][1]] = statements[0][2]  # everyone who spoke: not deceased
    kept["deceased"] = statements[0][0]


def fold_deceased(survivor: dict[str, Any], survivor_times: dict[str, Stamp],
                  merged_away: dict[str, Any], merged_away_times: dict[str, Stamp]) -> None:
    """An A40 merge: what partners said of a death on the record merged away counts on
    the survivor too (a death recorded on a duplicate must not vanish with it). Changes
    `survivor` and `survivor_times` in place."""
    for partner, (when, key, value) in _said_deceased(merged_away, merged_away_times).items():
        if partner:
            _say_deceased(survivor, survivor_times, key, value, when)


def _said_deceased(result: dict[str, Any], kept: dict[str, Stamp]
                   ) -> dict[str, tuple[Stamp, str, Any]]:
    said: dict[str, tuple[Stamp, str, Any]] = {}
    for name, entry in kept.items():
        if name.startswith(SAID_DECEASED):
            when, _, element = entry.partition("\t")
            ((k, v),) = jsonio.loads_trusted(element).items()
            said[name[len(SAID_DECEASED):]] = (when, k, v)
    if not said and "deceased" in kept:
        # stored before statements were kept per partner: what the record holds is what
        # the partner of its stamp said
        for k in [k for k in result if _choice_base(k) == "deceased"]:
            said[_partner_of(kept["deceased"])] = (kept["deceased"], k, result[k])
    return said


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
