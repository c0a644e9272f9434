"""Identity: one Patient per person, or a reason to hold the record for review.

Rules (in order):
1. An NHS number (already Modulus 11 checked by the mapping) links records: the Patient
   holding it, unless the record gives another birth date and nothing else (the
   partner's local id) says it is the same person: a mistyped number that still passes
   the check would otherwise put one person's record, and their name, on another's.
   If none holds it yet but the partner's local id is known, that Patient is the person
   (the NHS number is added); otherwise a new Patient is made.
2. Without an NHS number: a local identifier seen before.
3. Else normalised family name + first given name + birth date + postcode, and only when
   exactly one Patient matches all four and it holds no other id of this partner's (a
   partner that gave someone a second id says they are someone else).
Anything short of one confident match is held for review: never merged by guess, never
dropped. Two Patients holding one NHS number is itself a reason to hold, and so is an NHS
number no Patient holds any more though one was made for it: a new Patient would be a
second record for someone the partnership has already said is one person. When an HL7
A40 took it off the record merged away, it leads to the survivor instead, unless the
record's local id or birth date points elsewhere (then held).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .. import jsonio
from ..fhir.repository import Repository
from ..ingest.model import NHS_NUMBER_SYSTEM, PersonKey
from ..references import literal_reference
from ..search.values import date_range, normalize
from ..store.base import StoredVersion, StoreSession
from ..store.query import (
    Criterion,
    IndexQuery,
    RangePredicate,
    StringPredicate,
    TokenPredicate,
)

#: the records (`StoreSession.record_*`) of which Patient was made for an NHS number
NHS_CLAIMS = "person-nhs"
#: records: an NHS number and birth date a reviewer attached to a Patient whose birth date
#: differs (`accept_birth_date`), so the same record's next delivery is not held again
ACCEPTED_BIRTH_DATES = "person-born"


@dataclass(frozen=True, slots=True)
class Resolved:
    """The Patient a record belongs to (None: make a new one)."""

    patient: StoredVersion | None
    how: str  # nhs-number | local-id | demographics | new


@dataclass(frozen=True, slots=True)
class Held:
    """Why a record cannot be given a person yet."""

    reason: str
    candidates: tuple[str, ...] = ()


#: merges followed from a merged-away Patient to the one that holds its record now
MAX_MERGE_HOPS = 10


def accept_birth_date(s: StoreSession, person: PersonKey, patient_id: str) -> None:
    """A reviewer attached `person` to `patient_id`: its birth date is accepted there."""
    if person.nhs_number and person.birth_date:
        s.record_put(ACCEPTED_BIRTH_DATES, f"{person.nhs_number}|{person.birth_date}",
                     {"patient": patient_id})
        renew_key_tokens(s, {id_key(NHS_NUMBER_SYSTEM, person.nhs_number)})


# -- identity keys: when a held record could resolve otherwise -------------------------
#
# `resolve` reads Patients by identifier (a local id, an NHS number, the ids an A40 merges
# away), by postcode (the demographic match), and by id (the candidates a hold names), and
# the NHS-number claims and accepted birth dates kept beside them. Each of those is an
# identity key. Every write that could change what a lookup by a key finds gives the key a
# new token (a Patient's keys before and after the write, by `IdentityKeyTokens`; a claim
# or an accepted birth date, by `renew_key_tokens`), in the writing transaction. A held
# record keeps the tokens of its keys as they were when it was judged: while they are the
# same, nothing its resolution reads has changed, and judging it again would only say the
# same (the retry after every run skips it). The Patients a judgement reaches by id (along
# a merge chain, from a claim) are watched by their own `pt:` keys (`judging`).

#: system records: the current token of each identity key (`id:`, `pc:`, `pt:`)
KEY_TOKENS = "person-key"


def id_key(system: str, value: object) -> str:
    # folded: the key is coarser than the token search (never finer), so no change is missed
    return f"id:{system}|{str(value).casefold()}"


def person_keys(people: Iterable[PersonKey | None], candidates: Iterable[str]) -> set[str]:
    """The identity keys resolving `people` (a record's person, and the person an A40
    merges away) reads, and those of the Patients its hold names."""
    keys = {f"pt:{rid}" for rid in candidates}
    for person in people:
        if person is None:
            continue
        if person.local_system and person.local_id:
            keys.add(id_key(person.local_system, person.local_id))
        if person.nhs_number:
            keys.add(id_key(NHS_NUMBER_SYSTEM, person.nhs_number))
        if person.postcode:
            keys.add(f"pc:{canonical_postcode(person.postcode)}")
    return keys


def patient_keys(patient: dict[str, Any]) -> set[str]:
    """The identity keys under which `patient` is found: its id, each identifier, each
    address's postcode."""
    keys = {f"pt:{patient['id']}"} if isinstance(patient.get("id"), str) else set()
    for ident in patient.get("identifier") or []:
        if isinstance(ident, dict) and isinstance(ident.get("system"), str) \
                and ident.get("value") is not None:
            keys.add(id_key(ident["system"], ident["value"]))
    keys.update(f"pc:{p}" for p in _postcodes(patient) if p)
    return keys


def key_tokens(s: StoreSession, keys: Iterable[str]) -> dict[str, str | None]:
    """The current token of each key (None: never renewed)."""
    out: dict[str, str | None] = {}
    for key in keys:
        found = s.record_get(KEY_TOKENS, key)
        out[key] = found.get("t") if isinstance(found, dict) else None
    return out


#: while a record is judged (`judging`): the tokens its judgement rests on
_JUDGING: ContextVar[dict[str, str | None] | None] = ContextVar("judging", default=None)


@contextmanager
def judging(s: StoreSession, keys: Iterable[str]) -> Iterator[dict[str, str | None]]:
    """The tokens a judgement made inside the block rests on: those of `keys` (the
    record's own, read now), and those of each Patient a merge chain, a claim or an A40
    leads it to by id (`current_patient`), each read before that Patient is. A Patient
    in the middle of a chain need not hold the record's keys (a link written over REST
    copies none; a merge drops the merged-away record's NHS number)."""
    tokens = key_tokens(s, keys)
    reset = _JUDGING.set(tokens)
    try:
        yield tokens
    finally:
        _JUDGING.reset(reset)


def current_patient(s: StoreSession, rid: str) -> StoredVersion | None:
    """Patient `rid` as `s` holds it now; inside `judging`, its token is noted first (so a
    write after the read renews a token already noted, never the reverse)."""
    tokens = _JUDGING.get()
    key = f"pt:{rid}"
    if tokens is not None and key not in tokens:
        tokens.update(key_tokens(s, (key,)))
    return s.current("Patient", rid)


def renew_key_tokens(s: StoreSession, keys: Iterable[str]) -> None:
    """Give each key a token never used before: what is found under it may have changed."""
    for key in sorted(keys):
        # random: a token used before for the key would hide this change; 64 bits suffice
        s.record_put(KEY_TOKENS, key, {"t": uuid.uuid4().hex[:16]})


def put_claim(s: StoreSession, nhs: str, claim: dict[str, Any], *,
              create_only: bool = False) -> bool:
    """Keep which Patient `nhs` was given to (`NHS_CLAIMS`; `record_put`'s answer), and
    renew the number's key: `resolve` reads the claim."""
    if not s.record_put(NHS_CLAIMS, nhs, claim, create_only=create_only):
        return False
    renew_key_tokens(s, {id_key(NHS_NUMBER_SYSTEM, nhs)})
    return True


class IdentityKeyTokens:
    """A derivation (`fhir.derivations`) that keeps no resource: it renews the identity
    keys of every Patient written, on every write path (ingestion, merges, reviews, REST,
    Bundles), just before the transaction commits."""

    watches = frozenset({"Patient"})

    def touched(self, before: dict[str, Any] | None, after: dict[str, Any] | None) -> set[str]:
        keys: set[str] = set()
        for patient in (before, after):
            if patient is not None:
                keys |= patient_keys(patient)
        return keys

    def bring_up_to_date(self, repository: Repository, session: StoreSession,
                         keys: set[str]) -> None:
        renew_key_tokens(session, keys)


def _accepted(s: StoreSession, person: PersonKey, patient_id: str) -> bool:
    found = s.record_get(ACCEPTED_BIRTH_DATES, f"{person.nhs_number}|{person.birth_date}")
    return isinstance(found, dict) and found.get("patient") == patient_id


def _born_otherwise(patient: StoredVersion, person: PersonKey) -> str | None:
    """The Patient's birth date when the record's contradicts it (dates of different
    precision agree when one is the start of the other: 1941 and 1941-11-03). Checked
    for each record an NHS number links, so the Patient is parsed only when its stored
    text (the gateway's compact JSON) does not already say the same date as its one
    `birthDate` (a contained resource could hold another)."""
    given = person.birth_date
    body = patient.body or "{}"
    if not given or (f'"birthDate":"{given}"' in body and body.count('"birthDate":') == 1):
        return None
    stored = jsonio.loads_trusted(body).get("birthDate")
    if not (isinstance(stored, str) and stored):
        return None
    return None if stored.startswith(given) or given.startswith(stored) else stored


def contradictions(patient: StoredVersion, person: PersonKey) -> list[str]:
    """What the Patient contradicts in the record's person: "birth date" (as
    `_born_otherwise` judges it), "family name" (the record's agrees with none of the
    Patient's names: `family_agrees`) and "sex" (one says male, the other female: a
    Patient with no birth date is otherwise Mary Taylor and Bob Taylor alike). Nothing is
    said where either side is silent, or says other or unknown."""
    out = ["birth date"] if _born_otherwise(patient, person) is not None else []
    body = jsonio.loads_trusted(patient.body or "{}")
    theirs = family_forms(person.family or "")
    names = body.get("name") or []
    ours = [family_forms(n["family"]) for n in names
            if isinstance(n, dict) and isinstance(n.get("family"), str)]
    ours = [f for f in ours if f[0]]
    if theirs[0] and ours and not any(family_agrees(theirs, f) for f in ours):
        out.append("family name")
    if {person.gender, body.get("gender")} == {"male", "female"}:
        out.append("sex")
    return out


_NAME_BREAKS = re.compile(r"[\W\d_]+")
#: name particles: a part of its own only with what follows (Al-Sayed is not Al-Hashimi)
_PARTICLES = frozenset({"al", "el", "ul", "bin", "ben", "ibn", "abu", "ap", "van", "von",
                        "der", "den", "ter", "de", "da", "di", "du", "del", "della", "dos",
                        "das", "le", "la", "les", "lo", "st", "saint", "mc", "mac", "o"})


def family_forms(family: str) -> tuple[str, frozenset[str]]:
    """A family name as partners' systems write it, compared as one: the whole name with
    case and accents folded and apostrophes, hyphens and spaces dropped (O'Brien, OBrien,
    O Brien), Mac as Mc (MacDonald, McDonald); and the parts a double-barrelled name is
    also known by alone (Smith-Jones: Smith, Jones), particles never alone."""
    parts = [p for p in _NAME_BREAKS.split(normalize(family)) if p]
    parts = ["mc" + p[3:] if p.startswith("mac") and len(p) > 4 else p for p in parts]
    alone = frozenset(p for p in parts if len(p) > 1 and p not in _PARTICLES) \
        if len(parts) > 1 else frozenset()
    return "".join(parts), alone


def family_agrees(a: tuple[str, frozenset[str]], b: tuple[str, frozenset[str]]) -> bool:
    """Two `family_forms` name one family: the same whole, or one is a part the other's
    double-barrelled name is known by alone (Smith and Smith-Jones; never Smith-Jones and
    Smith-Brown, nor Al-Sayed and Al-Hashimi)."""
    return a[0] == b[0] or a[0] in b[1] or b[0] in a[1]


def _other_local_id(patient: StoredVersion, person: PersonKey) -> str | None:
    """Another id of the record's partner (its `local_system`) the Patient holds."""
    if not (person.local_system and person.local_id):
        return None
    ids = jsonio.loads_trusted(patient.body or "{}").get("identifier") or []
    return next((i["value"] for i in ids if isinstance(i, dict)
                 and i.get("system") == person.local_system
                 and i.get("value") not in (None, person.local_id)), None)


def _by_identifier(repo: Repository, s: StoreSession, system: str, value: str,
                   follow: bool = True) -> list[StoredVersion]:
    query = IndexQuery(rtype="Patient", criteria=[
        Criterion("identifier", "token", [TokenPredicate(system, value)])], limit=3)
    rows = repo.find(query, session=s).rows
    return _survivors(s, rows) if follow else rows


def _survivors(s: StoreSession, found: list[StoredVersion]) -> list[StoredVersion]:
    """Each Patient found, or the one it was merged into (HL7 A40: `link` replaced-by),
    once each. A merge copies the merged-away record's local ids to the survivor and
    leaves the old record in place, so a lookup finds both: they are one person, the
    survivor's. (A chain too long, or a survivor gone, leaves the Patient found.)"""
    out: dict[str, StoredVersion] = {}
    for stored in found:
        current = stored
        for _hop in range(MAX_MERGE_HOPS):
            if "replaced-by" not in (current.body or ""):
                break  # the usual case: no merge, nothing to parse
            survivor = replaced_by(jsonio.loads_trusted(current.body or "{}"))
            nxt = current_patient(s, survivor) if survivor else None
            if nxt is None or nxt.body is None or nxt.rid == stored.rid:
                break
            current = nxt
        out.setdefault(current.rid, current)
    return list(out.values())


def canonical_postcode(text: str) -> str:
    """A postcode compared in one form (no spaces, upper case): partners write `DY1 4DX`,
    `dy14dx` or `DY14DX` for one address, and a community copy is stored as sent."""
    return "".join(text.split()).upper()


def _postcodes(patient: dict) -> set[str]:
    return {canonical_postcode(str(a.get("postalCode", "")))
            for a in patient.get("address") or [] if isinstance(a, dict)}


def _postcode_spellings(postcode: str) -> list[str]:
    """`postcode` as partners spell it, in the search index's form: spaced before its
    inward code (`dy1 4dx`) or not (`dy14dx`). (Searching by the outward code alone, which
    both start with, read every Patient of a district, some 10,000 in a real one: the
    100,000-person benchmark's council load slowed to a crawl.)"""
    compact = canonical_postcode(postcode)
    spaced = f"{compact[:-3]} {compact[-3:]}" if len(compact) >= 5 else compact
    return sorted({normalize(compact), normalize(spaced)})


def _demographic(repo: Repository, s: StoreSession, person: PersonKey,
                 follow: bool = True) -> list[StoredVersion]:
    if not (person.family and person.given and person.birth_date and person.postcode):
        return []
    lo, hi = date_range(person.birth_date)
    postcode = canonical_postcode(person.postcode)
    # The postcode comes first: the store drives the lookup from the first of the string
    # criteria, and a postcode holds a handful of people where a surname holds thousands.
    query = IndexQuery(rtype="Patient", criteria=[
        Criterion("address-postalcode", "string",
                  [StringPredicate("prefix", spelt)
                   for spelt in _postcode_spellings(person.postcode)]),
        Criterion("birthdate", "date", [RangePredicate("eq", lo, hi)]),
        Criterion("family", "string", [StringPredicate("prefix", normalize(person.family))]),
    ], limit=50)
    family, given = normalize(person.family), normalize(person.given)
    out = []
    for stored in repo.find(query, session=s).rows:
        patient = jsonio.loads_trusted(stored.body or "{}")
        names = patient.get("name") or []
        same_name = any(
            normalize(n.get("family") or "") == family
            and normalize(((n.get("given") or [""])[0]) or "") == given
            for n in names if isinstance(n, dict))
        if same_name and postcode in _postcodes(patient):
            out.append(stored)
    return _survivors(s, out) if follow else out


def claimed_patient(s: StoreSession, nhs: str) -> str | None:
    """The id of the Patient the pipeline made for `nhs` (kept after a merge took the
    number off it), or None when the number was never given to a Patient, or a reviewer
    took it off that Patient as wrong for them (`corrected_away`): then it leads nowhere,
    neither to that Patient nor through merges to another."""
    claim = s.record_get(NHS_CLAIMS, nhs) or {}
    rid = claim.get("patient")
    return rid if isinstance(rid, str) and "corrected_to" not in claim else None


def corrected_away(s: StoreSession, nhs: str) -> str | None:
    """The Patient a reviewer's NHS-number correction took `nhs` off (`review resolve
    --replace-nhs-number`), or None."""
    claim = s.record_get(NHS_CLAIMS, nhs) or {}
    rid = claim.get("patient")
    return rid if isinstance(rid, str) and "corrected_to" in claim else None


def corrected_from(s: StoreSession, nhs: str | None, patient_id: str) -> bool:
    """Whether a correction took `nhs` off Patient `patient_id`, or off a Patient an HL7
    A40 has since merged into it: the partnership said the number is not this person's,
    so a record giving it for them (their local id vouching) is filed without it."""
    rid = corrected_away(s, nhs) if nhs else None
    if rid is None:
        return False
    stored = current_patient(s, rid)
    return rid == patient_id or (stored is not None and _survivors(s, [stored])[0].rid
                                 == patient_id)


def merge_survivor(s: StoreSession, nhs: str) -> str | None:
    """The live Patient that `nhs`'s claim leads to through HL7 A40 merges (the record
    made for it was merged away, and so on): the partnership said that is the person.
    None when the claimed Patient was not merged, or the chain ends nowhere live, or a
    reviewer took the number off as wrong for that person (a correction, not one person's
    second number: see `_claimed`)."""
    rid = claimed_patient(s, nhs)
    stored = current_patient(s, rid) if rid else None
    if stored is None or stored.body is None or "replaced-by" not in stored.body:
        return None
    (last,) = _survivors(s, [stored])
    if last.rid == rid or replaced_by(jsonio.loads_trusted(last.body or "{}")) is not None:
        return None  # a chain too long or ending at a deleted Patient: not followed
    return last.rid


def _claimed(s: StoreSession, nhs: str) -> Held | None:
    """Held when a Patient was made for `nhs` but no longer holds it (see the module
    docstring); None when the number was never given to a Patient. Reached by every
    record whose number no Patient holds (a new person's first): the claim is read once."""
    claim = s.record_get(NHS_CLAIMS, nhs) or {}
    rid = claim.get("patient")
    if not isinstance(rid, str):
        return None
    stored = current_patient(s, rid)
    if "corrected_to" in claim:
        # a reviewer said the number was wrong for that person: a record still giving it
        # (and no local id of theirs) is someone's to check: theirs, not yet corrected, or
        # another person's. (The number that replaced it is not said: a feed may read
        # this reason without being allowed to see that person.)
        if stored is not None and stored.body is not None:  # merged since: the person's now
            rid = _survivors(s, [stored])[0].rid
        return Held(f"NHS number {nhs} was on Patient/{rid} until a reviewer "
                    "replaced it as wrong for that person: check whether this record is "
                    "theirs (attach it there: the old number is left off) or someone "
                    "else's", (rid,))
    body = jsonio.loads_trusted(stored.body) if stored and stored.body else {}
    survivor = replaced_by(body)
    if survivor is not None:
        return Held(f"NHS number {nhs} was on Patient/{rid}, merged into Patient/{survivor} "
                    f"by an HL7 A40, which {_nhs_held(s, survivor)}: check which record "
                    "this belongs to", (survivor,))
    return Held(f"NHS number {nhs} was given to Patient/{rid}, which no longer holds it",
                (rid,))


def _by_merge(s: StoreSession, person: PersonKey,
             local: list[StoredVersion]) -> Resolved | Held | None:
    """A record whose NHS number no live Patient holds, but whose claim leads through HL7
    A40 merges to a live survivor: that survivor, as the number led to the record made
    for it before the merge (the hospital said the two are one person; the result must
    not depend on whether the record came before the A40 or after). Held when the
    record's own local id is on another Patient, or its birth date disagrees unvouched,
    as for any NHS number. The survivor keeps its own NHS number (the loader does not
    add this one as a second); one with none takes it. None: no such merge."""
    nhs = person.nhs_number
    survivor = merge_survivor(s, nhs) if nhs else None
    stored = current_patient(s, survivor) if survivor else None
    if stored is None or stored.body is None:
        return None
    where = (f"NHS number {nhs} was on Patient/{claimed_patient(s, str(nhs))}, merged into "
             f"Patient/{survivor} by an HL7 A40, which {_nhs_held(s, str(survivor))}")
    if local and local[0].rid != survivor:
        return Held(f"{where}, but local id {person.local_id} is on Patient/{local[0].rid}",
                    (stored.rid, local[0].rid))
    vouched = local and person.local_system != NHS_NUMBER_SYSTEM
    born = None if vouched else _born_otherwise(stored, person)
    if born is not None and not _accepted(s, person, stored.rid):
        return Held(f"{where}, born {born}, but this record says born {person.birth_date}",
                    (stored.rid,))
    return Resolved(stored, "merged-nhs")


def _nhs_held(s: StoreSession, rid: str) -> str:
    """What Patient `rid` holds, in words: a hold's reason must not say "another NHS
    number" of a Patient that holds none."""
    stored = current_patient(s, rid)
    if stored is None or stored.body is None:
        return "is not there"
    numbers = [i.get("value") for i in jsonio.loads_trusted(stored.body).get("identifier")
               or [] if isinstance(i, dict) and i.get("system") == NHS_NUMBER_SYSTEM]
    return f"holds NHS number {', '.join(map(str, numbers))}" if numbers \
        else "holds no NHS number"


def replaced_by(patient: dict[str, Any]) -> str | None:
    """The id of the Patient `patient` was merged into (its `link` replaced-by), or None.
    The reference may name a version (`Patient/x/_history/2`: the Patient is the same).
    Any other form (an absolute URL, an identifier) is followed by nothing, ingestion and
    the summary alike, so they agree on where a person's record is: `merge_links` still
    shows the record was merged (the summary refuses to stand it in for the survivor)."""
    for ref in merge_links(patient):
        named = literal_reference(ref)
        if named is not None and named.relative and named.type == "Patient" \
                and named.has_fhir_id:
            return named.id
    return None


def merge_links(patient: dict[str, Any]) -> list[str]:
    """What `patient`'s `link`s of type replaced-by name, as written (a reference, else
    the identifier or display)."""
    out = []
    for link in patient.get("link") or []:
        if not isinstance(link, dict) or link.get("type") != "replaced-by":
            continue
        other = link.get("other")
        other = other if isinstance(other, dict) else {}
        ref = other.get("reference")
        ident = other.get("identifier") if isinstance(other.get("identifier"), dict) else {}
        out.append(ref if isinstance(ref, str) else
                   f"the record identified as {ident.get('system')}|{ident.get('value')}"
                   if ident else str(other.get("display") or "a record it does not name"))
    return out


def resolve(repo: Repository, s: StoreSession, person: PersonKey, *,
            follow_merges: bool = True) -> Resolved | Held:
    """The Patient `person` is (see the module docstring). `follow_merges=False`: the
    record itself, even one merged away (what an HL7 A40 names as merged away)."""
    follow = follow_merges
    local = (_by_identifier(repo, s, person.local_system, person.local_id, follow)
             if person.local_system and person.local_id else [])
    if len(local) > 1:
        return Held(f"{len(local)} Patients hold {person.local_system}|{person.local_id}",
                    tuple(p.rid for p in local))
    if person.nhs_number:
        by_nhs = _by_identifier(repo, s, NHS_NUMBER_SYSTEM, person.nhs_number, follow)
        if len(by_nhs) > 1:
            return Held(f"{len(by_nhs)} Patients hold NHS number {person.nhs_number}",
                        tuple(p.rid for p in by_nhs))
        if by_nhs:
            if local and local[0].rid != by_nhs[0].rid:
                return Held(f"NHS number {person.nhs_number} is on Patient/{by_nhs[0].rid} "
                            f"but local id {person.local_id} is on Patient/{local[0].rid}",
                            (by_nhs[0].rid, local[0].rid))
            # a partner's own id vouches, unless that id is the NHS number itself (the GP's)
            vouched = local and person.local_system != NHS_NUMBER_SYSTEM
            born = None if vouched else _born_otherwise(by_nhs[0], person)
            if born is not None and not _accepted(s, person, by_nhs[0].rid):
                return Held(f"NHS number {person.nhs_number} is on Patient/{by_nhs[0].rid}, "
                            f"born {born}, but this record says born {person.birth_date}",
                            (by_nhs[0].rid,))
            return Resolved(by_nhs[0], "nhs-number")
        # An NHS number a merge took off a record leads to the survivor, when nothing
        # else the record says points elsewhere; otherwise it is held whatever else
        # matches: the partnership said whose it is, and a local id must not carry it
        # elsewhere.
        if follow and (merged := _by_merge(s, person, local)) is not None:
            return merged
        if local and person.local_system != NHS_NUMBER_SYSTEM \
                and corrected_from(s, person.nhs_number, local[0].rid):
            # the partner's own id for the person, with the number a reviewer corrected
            # away from them: theirs, filed without it (the loader leaves it off), unless
            # the birth date says otherwise: the number points away from them, so their
            # id alone (mistyped, reused) does not vouch here
            born = _born_otherwise(local[0], person)
            if born is not None and not _accepted(s, person, local[0].rid):
                return Held(f"NHS number {person.nhs_number} was taken off "
                            f"Patient/{local[0].rid} as wrong by a reviewer, and this record "
                            f"giving it with local id {person.local_id} says born "
                            f"{person.birth_date}, not {born}", (local[0].rid,))
            return Resolved(local[0], "corrected-nhs")
        claimed = _claimed(s, person.nhs_number)
        if claimed is not None:
            return claimed
        if local:
            nhs_there = [i for i in jsonio.loads_trusted(local[0].body or "{}").get(
                "identifier", []) if i.get("system") == NHS_NUMBER_SYSTEM]
            if nhs_there:
                return Held(f"local id {person.local_id} is on Patient/{local[0].rid}, which "
                            f"has another NHS number", (local[0].rid,))
            return Resolved(local[0], "local-id")
        return Resolved(None, "new")
    if local:
        return Resolved(local[0], "local-id")
    matches = _demographic(repo, s, person, follow)
    if len(matches) == 1:
        other = _other_local_id(matches[0], person)
        if other is not None:
            return Held(f"Patient/{matches[0].rid} matches name, birth date and postcode but "
                        f"holds {person.local_system}|{other}, not {person.local_id}",
                        (matches[0].rid,))
        return Resolved(matches[0], "demographics")
    if matches:
        return Held(f"{len(matches)} Patients match name, birth date and postcode",
                    tuple(p.rid for p in matches))
    missing = [n for n, v in (("family name", person.family), ("given name", person.given),
                              ("birth date", person.birth_date),
                              ("postcode", person.postcode)) if not v]
    if missing:
        return Held(f"no NHS number, no known local id, and no {', '.join(missing)} to match on")
    return Held("no NHS number, no known local id, and no Patient with this name, birth date "
                "and postcode")
