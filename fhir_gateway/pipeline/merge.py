"""Merging what a record says into what the shared record holds, order-independently.

Each top-level element of a stored resource remembers the source stamp of the record that
set it: (event time, partner, record id). An incoming element replaces the stored one only
when its stamp is not older, so an A01 delivered after its A03 cannot reopen a finished
Encounter, and the same records in any order give the same resource. Elements a record
lacks are unknown to it, not removed (an A08 that omits the death fields keeps them),
unless its mapping lists them as cleared (`MappedRecord.cleared`: an A13's, or, for a
record without an event time, every element of the resource it restates and leaves out).
Identifiers are a union: every partner's local id stays on the Patient.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from .. import jsonio
from ..ingest.model import NHS_NUMBER_SYSTEM, PARTNER_TAG_SYSTEM
from ..search.values import BadDate, date_range
from .provenance import ODS_SYSTEM

#: Elements the gateway owns, never merged from a partner record.
SERVER_ELEMENTS = frozenset({"resourceType", "id", "meta", "text"})
Stamp = str
#: Prefix of the stamp of an element set by a partner whose word settles it (a mapping's
#: `person.authoritative`): it sorts after every stamp (times are digits, un-timed stamps
#: start with \x1f), so no other partner's record outranks it, however new.
AUTHORITY = "\x7f"
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
    09:45+00:00), and compared as written the older message would win.

    Without an event time, one partner's records are ordered by record id (fixed, so a
    file delivered again changes nothing even where two of its rows set one element), and
    the mappings normalise record ids so one record's id stays the same from extract to
    extract. Those ids start with `~`, after every id of the stamps stored before they
    were normalised (`943 476 5919`, a fresh `urn:uuid:` per extract): a record stored
    then must not outrank every later delivery of itself."""
    if not event_time:
        return f"\x1f{partner}\x1f~{record_id or ''}"
    try:
        when = date_range(event_time)[0]
    except BadDate:
        when = event_time
    return f"{when}\x1f{partner}\x1f{record_id or ''}"


def _same(a: Any, b: Any) -> bool:
    return jsonio.canonical(a) == jsonio.canonical(b)


def merge(stored: dict[str, Any] | None, incoming: dict[str, Any],
          times: dict[str, Stamp], new_stamp: Stamp, *,
          authoritative: Collection[str] = (),
          cleared: Collection[str] = ()) -> tuple[dict[str, Any], dict[str, Stamp]]:
    """The merged resource and the element stamps to keep. `stored` may be None (new).

    An element in `authoritative` (the record's partner settles it: `AUTHORITY`) is stamped
    so that it outranks every other partner's word on it, newer or not; among records of
    partners with that authority, times decide as usual.

    From a record with an event time (a message saying what happened, as HL7 ADT does), a
    `period`'s start and end are two elements, each with its own stamp: a discharge that
    leaves out the admission time does not unsay it, in either order. A record without
    one (an extract row restating the current state) gives the period whole: a register
    row without a date of death says the plan has no end.
    `cleared` elements (`name` or `name.part`) are removed unless a newer record set
    them: the record says they no longer hold (an A13 cancelling a discharge takes back
    the stay's end, which the A13 leaves out).

    A Patient's identifiers are the union of every partner's (each partner's local id
    links its records to the person); any other resource's are, system by system, the
    newest record's, like its other elements, so a replaced form's id does not find the
    form that replaced it (an identifier under a system the record does not write stays)."""
    result = dict(stored or {})
    kept = dict(times)
    # `identifier|<system>`: the record restates the resource without its identifier
    # under that system (a new form without a form id): the stored one goes too
    unsaid = {p.partition("|")[2] for p in cleared if p.startswith("identifier|")}
    cleared = [p for p in cleared if not p.startswith("identifier|")]
    if stored is not None:
        release(result, _partner_of(new_stamp))
    for key, value in incoming.items():
        if key in SERVER_ELEMENTS:
            if stored is None and key != "id":
                result[key] = value
            continue
        if key == "identifier":
            if incoming.get("resourceType") == "Patient":
                result[key] = _union(result.get(key) or [], value)
                continue
            written = {i.get("system") for i in value if isinstance(i, dict)} | unsaid
            value = [*value, *(i for i in result.get(key) or []
                               if isinstance(i, dict) and i.get("system") not in written)]
        base = _choice_base(key)
        if base == "deceased":
            _say_deceased(result, kept, key, value, new_stamp)
            continue
        if base != key:  # e.g. effectiveDateTime vs effectivePeriod: one element, one stamp
            previous = [k for k in result if _choice_base(k) == base and k != key]
        else:
            previous = []
        stamp_ = AUTHORITY + new_stamp if base in authoritative else new_stamp
        if key in _PARTWISE and isinstance(value, dict) and _time_of(new_stamp):
            _merge_parts(result, kept, key, value, stamp_)
            continue
        if kept.get(base, "") <= stamp_:
            for old in previous:
                result.pop(old, None)
            result[key] = value
            kept[base] = stamp_
    for path in cleared:
        _clear(result, kept, path, new_stamp)
    return result, kept


#: elements a record with an event time merges part by part, each part with its own stamp
#: (`period.start`): a message giving one part says nothing of the other
_PARTWISE = frozenset({"period"})


def _merge_parts(result: dict[str, Any], kept: dict[str, Stamp], key: str,
                 value: dict[str, Any], stamp_: Stamp) -> None:
    merged = dict(result.get(key) or {}) if isinstance(result.get(key), dict) else {}
    for part, part_value in value.items():
        # a part stored before parts had stamps of their own has the element's stamp
        if kept.get(f"{key}.{part}", kept.get(key, "")) <= stamp_:
            merged[part] = part_value
            kept[f"{key}.{part}"] = stamp_
    if merged:
        result[key] = merged


def _clear(result: dict[str, Any], kept: dict[str, Stamp], path: str, new_stamp: Stamp) -> None:
    """Remove `path` (`name` or `name.part`) unless a newer record set it; the stamp stays,
    so an older record does not bring it back."""
    base, _, part = path.partition(".")
    stamp_key = path if base in _PARTWISE else base
    if kept.get(stamp_key, kept.get(base, "")) > new_stamp:
        return
    kept[stamp_key] = new_stamp
    if not part:
        result.pop(base, None)
        return
    value = result.get(base)
    if isinstance(value, dict) and part in value:
        rest = {k: v for k, v in value.items() if k != part}
        if rest:
            result[base] = rest
        else:
            result.pop(base)


def owners(resource: dict[str, Any]) -> set[str]:
    """The partners whose feed wrote `resource` over the REST API (its partner tags)."""
    meta = resource.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    return {str(t.get("code")) for t in tags or [] if isinstance(t, dict)
            and t.get("system") == PARTNER_TAG_SYSTEM} if isinstance(tags, list) else set()


def keeps_its_owner(survivor: dict[str, Any], merged_away: dict[str, Any],
                    merged_away_times: dict[str, Stamp]) -> bool:
    """Whether an A40 merge may leave the survivor its owner's: only when the record
    merged into it is that same feed's and holds no other partner's word."""
    mine = owners(survivor)
    return owners(merged_away) == mine and stamped_by(merged_away_times) <= mine


def stamped_by(times: dict[str, Stamp] | None) -> set[str]:
    """The partners whose ingested records set an element of a resource (its stamps)."""
    return {_partner_of(str(v).partition("\t")[0]) for v in (times or {}).values()}


def release(result: dict[str, Any], partner: str | None = None) -> None:
    """A resource one feed wrote over the REST API carries its partner (and ODS) tag, which
    lets that feed read and change it. Once another partner's record is merged into it, it
    holds that partner's facts too, so it belongs to no single feed any more (`partner`
    None: whoever the owner is)."""
    held = owners(result)
    if not held or (partner is not None and held <= {partner}):
        return
    meta = result["meta"]
    kept = [t for t in meta["tag"] if not (isinstance(t, dict) and t.get("system") in (
        PARTNER_TAG_SYSTEM, ODS_SYSTEM))]
    result["meta"] = {k: v for k, v in meta.items() if k != "tag"} | (
        {"tag": kept} if kept else {})


#: System records (kind) of each resource's element stamps, keyed "Type/id".
ELEMENT_STAMPS = "etimes"
#: Prefix of the element stamps holding what each partner said of a death:
#: `deceased@<partner>@<kind>` -> "<stamp>\t<value as JSON>", kind date | true | false.
SAID_DECEASED = "deceased@"
_ELEMENT = {"date": "deceasedDateTime", "true": "deceasedBoolean", "false": "deceasedBoolean"}
#: Who said it, for a death stored before statements were kept per partner: its stamp
#: need not name the partner that gave the date, so no partner's "not deceased" withdraws it.
UNATTRIBUTED = ""

Said = dict[str, dict[str, tuple[Stamp, Any]]]  # partner -> kind -> (newest stamp, value)


def _partner_of(stamp_: Stamp) -> str:
    parts = stamp_.split("\x1f")
    return parts[1] if len(parts) > 2 else ""


def newest_stamp(times: dict[str, Stamp] | None) -> Stamp:
    """The newest source stamp among a resource's element stamps ("" when none)."""
    return max((str(v).partition("\t")[0] for v in (times or {}).values()), default="")


def when_and_who(stamp_: Stamp) -> tuple[str, str]:
    """A stamp's event time ("" for a record without one) and partner."""
    bare = stamp_.partition("\t")[0]
    return _time_of(bare), _partner_of(bare)


def renamed_record(times: dict[str, Stamp], old: str, new: str) -> dict[str, Stamp]:
    """`times` with the stamps of record id `old` (an un-timed partner's) given record id
    `new`: a partner whose record id is the NHS number (the GP register) orders its
    records by it, so after a correction its next records (the new number) must still
    be judged against what it said under the old one as the same record's."""
    def renamed(value: Stamp) -> Stamp:
        bare, tab, rest = str(value).partition("\t")
        if bare.endswith(f"\x1f~{old}") and not _time_of(bare):
            bare = bare[: -len(old)] + new
        return bare + tab + rest
    return {k: renamed(v) for k, v in times.items()}


def _time_of(stamp_: Stamp) -> str:
    """A stamp's event time as a UTC instant ("" for a record without one)."""
    return stamp_.split("\x1f", 1)[0]


def _kind(key: str, value: Any) -> str | None:
    if key == "deceasedDateTime" and isinstance(value, str):
        return "date"
    if key == "deceasedBoolean" and isinstance(value, bool):
        return "true" if value else "false"
    return None


def _say_deceased(result: dict[str, Any], kept: dict[str, Stamp], key: str, value: Any,
                  new_stamp: Stamp, partner: str | None = None, *,
                  restated: bool = True) -> None:
    """Keep, per partner, its newest date of death, newest "deceased: true" and newest
    "not deceased", and derive `deceased[x]` from them all: the same messages in any
    order, or any of them again, give the same answer. A partner's word is its newest
    statement, and a "true" carries that partner's newest date unless a "not deceased"
    came after the date. Any partner's death stands: one partner's "not deceased" (HL7
    PID-30 N) withdraws only what that partner said, and a disagreement is shown by the
    summary, never settled by the later message. A date says more than "true"; of
    several partners' dates, the newest said.

    `restated`: a record of a partner without event times delivered again (the same
    stamp: such a partner stamps each delivery of one record alike) says what that record
    says now, replacing what it said before, as it does for every other element: a
    corrected date of death, or "not deceased" after a death recorded in error, is that
    record's word. (An A40's fold passes False: two copies of one record's word, neither
    known to be the later.) A file stating one record twice, differently, so makes new
    versions on each delivery, the last word standing, as other elements already did."""
    kind = _kind(key, value)
    if kind is None:
        return
    said = _statements(result, kept)
    mine = said.setdefault(_partner_of(new_stamp) if partner is None else partner, {})
    before = mine.get(kind)
    if before is not None and before[0] > new_stamp:
        return  # something newer of this kind
    # Only an un-timed stamp stands for "this record, whenever delivered": a timed one
    # (an HL7 message) names one message, whose kinds ("true" and a date) add up.
    restated = restated and not _time_of(new_stamp)
    if before is not None and before[0] == new_stamp:
        others = [k for k, (when, _) in mine.items() if when == new_stamp and k != kind]
        if not restated or (_same(before[1], value) and not others):
            return  # said before: the same record again
    if restated:
        for k in [k for k, (when, _) in mine.items() if when == new_stamp]:
            del mine[k]  # this record's earlier word
    mine[kind] = (new_stamp, value)
    for name in [n for n in kept if n.startswith(SAID_DECEASED)]:
        del kept[name]
    for who, kinds in said.items():
        for k, (when, v) in kinds.items():
            kept[f"{SAID_DECEASED}{who}@{k}"] = f"{when}\t{jsonio.canonical(v)}"
    answers = [_answer(kinds) for kinds in said.values() if kinds]
    for old in [k for k in result if _choice_base(k) == "deceased"]:
        result.pop(old)
    dates = sorted((a for a in answers if a[1] == "deceasedDateTime"), reverse=True)
    if dates:
        result["deceasedDateTime"] = dates[0][2]
    elif any(a[1] == "deceasedBoolean" and a[2] is True for a in answers):
        result["deceasedBoolean"] = True
    else:
        result["deceasedBoolean"] = False  # everyone who spoke: not deceased
    kept["deceased"] = max(a[0] for a in answers)


def _answer(kinds: dict[str, tuple[Stamp, Any]]) -> tuple[Stamp, str, Any]:
    """One partner's word on a death, from its newest statement of each kind."""
    kind, (when, value) = max(kinds.items(), key=lambda kv: kv[1][0])
    date = kinds.get("date")
    if kind == "true" and date is not None and \
            ("false" not in kinds or date[0] > kinds["false"][0]):
        return when, "deceasedDateTime", date[1]
    return when, _ELEMENT[kind], value


def fold_deceased(survivor: dict[str, Any], survivor_times: dict[str, Stamp],
                  merged_away: dict[str, Any], merged_away_times: dict[str, Stamp]) -> None:
    """An A40 merge: what partners said of a death on the record merged away counts on
    the survivor too (a death recorded on a duplicate must not vanish with it). Changes
    `survivor` and `survivor_times` in place."""
    for partner, kinds in _statements(merged_away, merged_away_times).items():
        for kind, (when, value) in kinds.items():
            _say_deceased(survivor, survivor_times, _ELEMENT[kind], value, when, partner,
                          restated=False)


#: what an A40 merge sets itself on the survivor (`fold_newer` leaves them alone)
_MERGE_SET = frozenset({"identifier", "link", "active"})


def fold_newer(survivor: dict[str, Any], survivor_times: dict[str, Stamp],
               merged_away: dict[str, Any], merged_away_times: dict[str, Stamp]) -> None:
    """An A40 merge: each element the record merged away holds from a newer record than
    the survivor's (or the survivor lacks) moves over with its stamp, as it would have
    had that record arrived after the merge (then it is filed on the survivor): so the
    order messages arrive in does not decide the merged record. Deaths: `fold_deceased`.
    Changes `survivor` and `survivor_times` in place."""
    for key, value in merged_away.items():
        base = _choice_base(key)
        if key in SERVER_ELEMENTS or key in _MERGE_SET or base == "deceased":
            continue
        said = merged_away_times.get(base)
        if said is None or survivor_times.get(base, "") >= said:
            continue
        for other in [k for k in survivor if k != key and _choice_base(k) == base]:
            survivor.pop(other)  # effectiveDateTime replaced by effectivePeriod: one element
        survivor[key] = value
        survivor_times[base] = said


def deceased_statements(patient: dict[str, Any], times: dict[str, Stamp]
                        ) -> dict[str, tuple[Stamp, str, Any]]:
    """Each partner's word on the death of `patient`, from its element stamps `times`:
    partner -> (stamp, element name, value). `UNATTRIBUTED` holds a death stored before
    statements were kept per partner."""
    return {who: _answer(kinds) for who, kinds in _statements(patient, times).items()
            if kinds}


def said_not_deceased(patient: dict[str, Any], times: dict[str, Stamp],
                      since: str | None = None) -> list[str]:
    """The partners whose word is that `patient` has not died, leaving out those that
    said so before `since` (the date of a death recorded: a hospital says "not deceased"
    on every message while the person lives). A statement without a time counts."""
    try:
        start = date_range(since)[0] if since else ""
    except BadDate:
        start = ""
    return sorted(who for who, (said, k, v) in deceased_statements(patient, times).items()
                  if k == "deceasedBoolean" and v is False
                  and not (start and "" < _time_of(said) < start))


def _statements(result: dict[str, Any], kept: dict[str, Stamp]) -> Said:
    said: Said = {}
    for name, entry in kept.items():
        if not name.startswith(SAID_DECEASED):
            continue
        when, _, text = entry.partition("\t")
        value = jsonio.loads_trusted(text)
        who, _, kind = name[len(SAID_DECEASED):].rpartition("@")
        if kind in _ELEMENT:
            said.setdefault(who, {})[kind] = (when, value)
    if not said and "deceased" in kept:
        # stored before statements were kept per partner: a "not deceased" is the
        # stamp's partner's; a death may have come from another (the older code kept
        # the newer stamp beside another partner's date), so it is no one's to withdraw
        for k in [k for k in result if _choice_base(k) == "deceased"]:
            kind = _kind(k, result[k])
            if kind is not None:
                who = _partner_of(kept["deceased"]) if kind == "false" else UNATTRIBUTED
                said.setdefault(who, {})[kind] = (kept["deceased"], result[k])
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
