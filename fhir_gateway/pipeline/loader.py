"""The ingestion run: map a partner file, resolve identity, merge, validate, store, cite.

Each record is applied all or nothing: everything it implies (Patient, resources,
retractions, Provenance) is written, or nothing is. Records share a store transaction in
batches (one commit, so one fsync, per batch) and each has a savepoint of its own, so a
failing record is undone alone; nothing is reported before its batch commits. A record
that cannot be applied is rejected with a reason naming partner, file, position and
field, and kept with its raw text for review (system records, kind "rejected"); a record
whose person cannot be confidently identified is held (kind "held") and retried after
every run, so the order in which partners' files arrive does not change the result.
Redelivered records change nothing: merging equal content is a no-op and no Provenance
is written for it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import jsonio
from ..errors import BadRequest, Conflict, GatewayError, Issue, NotFound, Unprocessable
from ..fhir.derivations import DERIVED_TAG_SYSTEM, is_derived
from ..fhir.repository import ProfileChecked, Repository, WriteResult, new_id
from ..ingest.model import (
    NHS_NUMBER_SYSTEM,
    PARTNER_TAG_SYSTEM,
    PATIENT_REFERENCE,
    BusinessId,
    ItemSet,
    MappedRecord,
    PersonKey,
    Rejection,
    SourceRef,
)
from ..search.values import BadDate, date_range, now_instant
from ..store.base import StoredVersion, StoreSession, StoreUnavailable, VersionConflict
from ..store.query import Criterion, IndexQuery, SortKey, TokenPredicate
from ..validation import ProfileValidator, default_validator
from .identity import (
    Held,
    IdentityKeyTokens,
    Resolved,
    accept_birth_date,
    contradictions,
    corrected_from,
    current_patient,
    id_key,
    judging,
    key_tokens,
    merge_survivor,
    person_keys,
    put_claim,
    renew_key_tokens,
    replaced_by,
    resolve,
)
from .merge import (
    ELEMENT_STAMPS,
    REPOINT_ACTIVITY,
    changed,
    fold_deceased,
    fold_newer,
    keeps_its_owner,
    merge,
    newest_stamp,
    owners,
    release,
    renamed_record,
    stamp,
    stamped_by,
    when_and_who,
)
from .provenance import LAST_FED, SOURCE_RECORD_SYSTEM, provenance

log = logging.getLogger("fhir_gateway.pipeline")

MAX_ATTEMPTS = 10
#: in a held record: the tokens of its identity keys when it was last judged (`identity`)
JUDGED_ON = "judged_on"
#: held records rewritten (judged again, unchanged) per transaction, bounding the lock
REWRITES_PER_TRANSACTION = 500
#: passes of the held-record retry after a run (`Loader._retry_held_into`)
MAX_RETRY_PASSES = 3
#: system records: a local id an HL7 A40 gave its survivor when the record it merged away
#: was known only by held records (`KnownOnlyHeld`): "system|value" -> {"patient": id}
A40_TAKEN = "a40-taken"
#: The reason a record is rejected when the store stayed busy through every attempt: not
#: a fault of the record (an MLLP listener answers AR, "resend later", for it).
STORE_BUSY = "the store stayed busy; try again"
#: Records per store transaction, and the longest a transaction stays open (other
#: writers, e.g. the REST API, wait for it).
BATCH_RECORDS = 200
BATCH_SECONDS = 0.5
#: System records holding the lists records state in full (`Loader._item_sets`).
ITEM_SETS = "item-sets"
#: System records: the stamp of the record that retracted a business id (`_retract`).
RETRACTIONS = "retractions"

#: The element stamp (in a Patient's `ELEMENT_STAMPS`) of the record that last set its NHS
#: number: a correction from an older record than that is refused (`Loader._corrected`).
NHS_STAMP = "identifier@nhs-number"
#: System records (kind) of held records a reviewer discarded, kept with who, when and why.
DISCARDED = "discarded"


def committed_before(error: BaseException) -> Summary | None:
    """What a failed `Loader.ingest` had committed before `error` (or an error raised from
    it): its records are stored, and whoever audits the run must name their Patients."""
    seen: BaseException | None = error
    for _ in range(8):  # a short chain of `raise ... from`
        if seen is None:
            return None
        committed = getattr(seen, "committed", None)
        if isinstance(committed, Summary):
            return committed
        seen = seen.__cause__ or seen.__context__
    return None


@dataclass(frozen=True, slots=True)
class KnownOnlyHeld:
    """What an HL7 A40 merges away is known only by records of its partner held for review
    (an emergency admission under a temporary MRN, no confident match): no Patient to
    merge away, but the survivor takes its local id (`identifier`, as the held record
    maps it), as a merge gives it the ids of the record merged away, and the held records
    then follow it there when retried. Without this the A40 waited for a Patient of that
    id, and the held records for a reviewer: each for the other."""

    identifier: dict[str, Any]


@dataclass(slots=True)
class Summary:
    """What a run did. Counts are resources (Patients included, Provenance not)."""

    read: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    held: int = 0
    rejections: list[dict[str, Any]] = field(default_factory=list)
    holds: list[dict[str, Any]] = field(default_factory=list)
    #: what records stored this run say was kept incompletely (a local term with no
    #: standard code, an undated decision, an identifier left off): one entry each
    warnings: list[dict[str, Any]] = field(default_factory=list)
    #: the share of the counts, rejections and warnings above that came from retrying
    #: the run's own partner's records held in earlier runs (set by `Loader.ingest`; an
    #: MLLP ACK speaks for its message, not for these)
    retried: Summary | None = None
    #: other partners' held records this run's retry applied, per partner: bare counts,
    #: naming no record. Never in `counts()`/`to_json()`: a feed's answer must not tell
    #: it of another partner's held record, nor that the person it sent is known to
    #: another partner (the review queue hides them from it too).
    others: dict[str, dict[str, int]] = field(default_factory=dict)
    #: the Patients this run's records were applied to (and merged away by an A40): what
    #: the ingest's AuditEvent names. Never in `counts()`/`to_json()`.
    patients: set[str] = field(default_factory=set)
    #: the Patients other partners' held records (in `others`) were applied to, per
    #: partner: for the auditors' trail only (`audit.events.held_retry_events`), never in
    #: an answer to the feed.
    others_patients: dict[str, set[str]] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in
                ("read", "created", "updated", "unchanged", "rejected", "held")}

    def to_json(self) -> dict[str, Any]:
        """What `ingest --json` prints and `POST /ingest/{partner}` answers."""
        return {**self.counts(), "rejections": self.rejections, "warnings": self.warnings}

    def add(self, other: Summary) -> None:
        for key in ("created", "updated", "unchanged", "rejected", "held"):
            setattr(self, key, getattr(self, key) + getattr(other, key))
        self.rejections += other.rejections
        self.holds += other.holds
        self.warnings += other.warnings
        self.patients |= other.patients
        for partner, patients in other.others_patients.items():
            self.others_patients.setdefault(partner, set()).update(patients)
        for partner, counts in other.others.items():
            mine = self.others.setdefault(partner, dict.fromkeys(counts, 0))
            for key, n in counts.items():
                mine[key] = mine.get(key, 0) + n

    def bare_counts(self, retried: int) -> dict[str, int]:
        """What `others` keeps of another partner's retried records: numbers only."""
        return {"retried": retried, "created": self.created, "updated": self.updated,
                "unchanged": self.unchanged, "rejected": self.rejected,
                "warnings": len(self.warnings)}


class RecordRejected(Exception):
    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field_name
        self.reason = reason


# -- keeping records for review -------------------------------------------------------


def record_key(source: SourceRef) -> str:
    """A held record's key: partner, record id and a hash of the record's text. Record ids
    repeat (a PAS reusing an MSH-10 control id; a hospice line per client in each day's
    extract): keyed by id alone, one acknowledged hold was overwritten, or deleted by
    another record applied under its id. The same record again has the same key."""
    digest = hashlib.sha256(_text(source.raw).encode()).hexdigest()
    if not source.record_id:
        return f"{source.partner}/{digest[:16]}"
    return f"{source.partner}/{source.record_id}/{digest[:12]}"


def _note_fed(s: StoreSession, patient: str, partner: str, received: str) -> None:
    """A record that changed nothing still fed the person's record: the crew's summary
    says when the record was last fed, and a daily extract confirming it unchanged counts
    (no Provenance says so). Received times are UTC instants of one width (the clock's)."""
    key = f"Patient/{patient}"
    fed = s.record_get(LAST_FED, key) or {}
    if not isinstance(fed.get(partner), str) or fed[partner] < received:
        s.record_put(LAST_FED, key, {**fed, partner: received})


#: on a held record: when a record of its partner and id, without event times, was
#: applied after it came (that record restated what the id says now)
RESTATED_AFTER = "restated_after"
_HOLDS_PAGE = 16


def _supersede_older_holds(s: StoreSession, source: SourceRef, received: str) -> None:
    """A record without an event time restates what its id says, whether it changed
    anything or not. Each record of the same partner and id held from before it is marked
    superseded now, saying so on the review queue: a retry must not apply it over this
    one, and a reviewer must not attach it unwarned (a January ReSPECT form over June's).
    A record that changed nothing writes no Provenance, so `_applied_since` alone would
    not see it."""
    if not source.record_id:
        return
    # held keys are `partner/record id/digest`: one range of keys, usually empty
    prefix = f"{source.partner}/{source.record_id}/"
    after, found = prefix, []
    while rows := s.record_list("held", after=after, before=prefix[:-1] + "0",
                                limit=_HOLDS_PAGE):
        found += rows
        after = rows[-1][0]
    legacy = _legacy_key(source)
    held = s.record_get("held", legacy) if legacy else None
    if legacy and held is not None:
        found.append((legacy, held))
    for key, held in found:
        came = held.get("last_received") or held.get("received")
        if held["record"]["source"].get("record_id") != source.record_id \
                or not isinstance(came, str) or came >= received \
                or str(held.get(RESTATED_AFTER) or "") >= received:
            continue
        s.record_put("held", key, {**held, RESTATED_AFTER: received,
                                   "reason": _superseded_reason(received)})


def _superseded_reason(newer: str) -> str:
    return (f"a newer record with the same id, received {newer}, was applied after this "
            "one was held: applied now, this one would bring back what that record "
            "changed. Discard it (fhir-gateway review discard KEY --reason ...) unless it "
            "is the one that should stand (then say so: --despite-newer)")


def _superseded_refusal(key: str, newer: str) -> Conflict:
    return Conflict(f"held record {key!r}: a newer record with the same id, received "
                    f"{newer}, was applied after it was held; settled now, it would bring "
                    "back what that record changed. Discard it, or, if it is the one that "
                    "should stand, say so (--despite-newer, or \"despiteNewer\": true over "
                    "HTTP)")


def _watched(record: MappedRecord, candidates: Iterable[str]) -> set[str]:
    """The identity keys a held record's resolution reads (`identity.person_keys`)."""
    return person_keys((record.person, record.merge_from), candidates)


def _records(s: StoreSession, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every system record of `kind` in `s`, in key order, a page at a time."""
    after = None
    while True:
        page = s.record_list(kind, after=after, limit=1000)
        yield from page
        if len(page) < 1000:
            return
        after = page[-1][0]


def _keep_for_review(s: StoreSession, kind: str, key: str, value: dict[str, Any]) -> None:
    """Put a held or rejected record on the review queue. The same record delivered again
    (each day's extract repeats a line) keeps when it first came, so the queue shows how
    long it has waited, and says when it came last (`last_received`)."""
    before = s.record_get(kind, key)
    first = before.get("received") if isinstance(before, dict) else None
    if isinstance(first, str) and first != value["received"]:
        value = {**value, "received": first, "last_received": value["received"]}
    s.record_put(kind, key, value)


def _text(raw: str) -> str:
    """A record's text as compared for its hold: one message resent with other line ends
    (CR, CRLF, LF) is the same record, held once."""
    return "\n".join(raw.splitlines())


def _held_now(s: StoreSession, key: str, source: SourceRef) -> dict[str, Any] | None:
    """The record's hold if it is still on the review queue (under its key, or the key an
    older gateway kept it under), else None."""
    for where in (key, _legacy_key(source)):
        held = s.record_get("held", where) if where else None
        if held is not None and _same_record(held, source):
            return held
    return None


def _same_record(held: dict[str, Any], source: SourceRef) -> bool:
    return _text(held["record"]["source"]["raw"]) == _text(source.raw)


def _legacy_key(source: SourceRef) -> str | None:
    """The key holds had before the text's hash was part of it."""
    return f"{source.partner}/{source.record_id}" if source.record_id else None


def to_json(record: MappedRecord) -> dict[str, Any]:
    return dataclasses.asdict(record)


def from_json(data: dict[str, Any]) -> MappedRecord:
    merge_from = data.get("merge_from")
    return MappedRecord(
        source=SourceRef(**data["source"]), person=PersonKey(**data["person"]),
        patient=data["patient"], resources=tuple(data["resources"]),
        keys=tuple(BusinessId(**k) for k in data["keys"]), event=data["event"],
        merge_from=PersonKey(**merge_from) if merge_from else None,
        retracted=tuple(BusinessId(**k) for k in data["retracted"]),
        # Held records kept before lists were stated in full have none.
        item_sets=tuple(ItemSet(i["rule"], i["resource_type"], i["system"],
                                tuple(BusinessId(**k) for k in i["keys"]))
                        for i in data.get("item_sets", ())),
        warnings=tuple(data["warnings"]),
        authoritative=tuple(data.get("authoritative", ())),
        cleared=tuple(tuple(c) for c in data.get("cleared", ())),
        patient_cleared=tuple(data.get("patient_cleared", ())),
        # (held records kept before session 21 have none)
        origins=tuple(data.get("origins", ())))


class Loader:
    def __init__(self, repository: Repository, *, profiles: ProfileValidator | None = None,
                 clock: Callable[[], str] = now_instant, batch_records: int = BATCH_RECORDS,
                 batch_seconds: float = BATCH_SECONDS) -> None:
        """`profiles`: offers the profiles a mapped resource may claim (partner data is
        always profiled); the repository's own profile check, run on every write, judges
        the claim, and a resource meeting none rejects its record."""
        self.repo = repository
        self.profiles = profiles or default_validator()
        self.clock = clock
        self.batch_records = max(1, batch_records)
        self.batch_seconds = batch_seconds
        # Without the store's identity-key tokens (a repository built without them), no
        # held record can be skipped as unchanged: every one is judged again.
        self.key_tokens = any(isinstance(d, IdentityKeyTokens)
                              for d in repository.pending.derivations)

    # -- runs ---------------------------------------------------------------------------

    def ingest(self, items: Iterable[MappedRecord | Rejection], *,
               progress: Callable[[int], None] | None = None) -> Summary:
        """Apply mapped records (from `ingest.map_file`), then retry every held record:
        one this run could not place may match a Patient this run created, and one held
        earlier may match now. `held` counts this run's records still held at the end.

        The summary is the answer to one partner's feed (`POST /ingest/{partner}`, the
        CLI, an MLLP ACK), so it counts and describes only that partner's records: this
        run's, then its own earlier-held records the retry applied (also in `retried`).
        Other partners' held records the retry applies are applied all the same, but
        their counts go to `others` (bare numbers, per partner, not in `to_json`) and to
        the operator's log (`fhir_gateway.pipeline`, INFO), never into the counts,
        rejections or warnings: the review queue never shows a feed another partner's
        held records, and its ingest answer must not either. The run's partner is that
        of the records it read (one partner per run: `map_file` maps one partner's file);
        a run that read nothing counts every retried record as another partner's.

        Records are applied in batches, one store transaction per batch and a savepoint
        per record: a record that fails is undone alone (and kept as rejected), and the
        batch commits (fsync) once instead of once per record. Nothing is reported (the
        summary, `progress`) before its batch has committed."""
        summary = Summary()
        try:
            return self._ingest(items, summary, progress)
        except Exception as exc:
            # Batches before the failure stay committed: the caller's audit record of the
            # failed run must still name the Patients they wrote (`committed_before`).
            exc.committed = summary  # type: ignore[attr-defined]
            raise

    def _ingest(self, items: Iterable[MappedRecord | Rejection], summary: Summary,
                progress: Callable[[int], None] | None) -> Summary:
        held_now: set[str] = set()
        partners: set[str] = set()
        pending = iter(items)
        while batch := list(itertools.islice(pending, self.batch_records)):
            summary.read += len(batch)
            partners.update(item.source.partner for item in batch)
            self._apply_batch(batch, summary, held_now, progress)
        applied: dict[str, set[str]] = {}
        retried: dict[str, Summary] = {}
        try:
            self._retry_held_into(applied, retried)
        finally:
            # also when the retry fails part way: what its committed batches wrote is
            # named by the failed run's audit record (`committed_before`)
            own = Summary()
            for partner, done in retried.items():
                done.held, done.holds = 0, []  # (held again: not this run's holds)
                if partner in partners:
                    own.add(done)
                    continue
                summary.others[partner] = done.bare_counts(len(applied[partner]))
                summary.others_patients[partner] = set(done.patients)
                log.info("retrying held records after a %s run applied %d of %s's: %s",
                         "/".join(sorted(partners)) or "empty", len(applied[partner]),
                         partner,
                         ", ".join(f"{k} {v}" for k, v in summary.others[partner].items()))
            summary.add(own)
            summary.retried = own
        with self.repo.engine.session(write=False) as s:  # (not every hold: only this run's)
            still = {key for key in held_now | {h["key"] for h in summary.holds}
                     if s.record_get("held", key) is not None}
        summary.held = len(held_now & still)
        summary.holds = [h for h in summary.holds if h["key"] in still]
        return summary

    def keep_rejected(self, source: SourceRef, field_name: str, reason: str) -> Summary:
        """Keep a record refused before it was mapped or loaded (say, an MLLP frame
        holding two messages, or one over the size limit) for review, like any rejected
        record, in a transaction of its own; nothing of it is loaded."""
        summary = Summary()
        self._reject(summary, source, field_name, reason)
        return summary

    def _apply_batch(self, batch: list[MappedRecord | Rejection], summary: Summary,
                     held_now: set[str], progress: Callable[[int], None] | None,
                     received: dict[str, str] | None = None) -> None:
        """Apply `batch` in as few transactions as the time limit allows; results are
        added to `summary` only after their transaction has committed. `received`: when
        each held record being retried was first received (record key -> time), so its
        Provenance says when the partner sent it, not when a retry applied it."""
        received = received or {}
        rest = batch
        while rest:
            done, done_held, applied = Summary(), set(), 0
            failure: Exception | None = None
            try:
                with self.repo.transaction() as s:
                    deadline = time.monotonic() + self.batch_seconds
                    for item in rest:
                        try:
                            self._apply_in(s, item, done, done_held, received)
                        except VersionConflict:
                            raise
                        except Exception as exc:
                            # Undone alone by its savepoint; the records before it are
                            # complete, so they commit, as one transaction each used to.
                            failure = exc
                            break
                        applied += 1
                        if time.monotonic() >= deadline:
                            break  # bound how long other writers wait for the store
            except VersionConflict:
                # Another writer got there first (MongoDB): nothing of this transaction
                # was kept; apply its records one per transaction, each with retries.
                done, done_held, applied, failure = Summary(), set(), 0, None
                for item in rest:
                    if isinstance(item, Rejection):
                        self._reject(done, item.source, item.field, item.reason)
                    else:
                        key = record_key(item.source)
                        self._count(done, done_held, item,
                                    self.apply(item, received=received.get(key),
                                               retry=key in received))
                    applied += 1
            summary.add(done)
            held_now |= done_held
            if progress and applied:
                progress(applied)
            if failure is not None:
                raise failure
            rest = rest[applied:]

    def _apply_in(self, s: StoreSession, item: MappedRecord | Rejection, done: Summary,
                  done_held: set[str], received: dict[str, str]) -> None:
        """One record inside a batch's transaction, in its own savepoint."""
        if isinstance(item, Rejection):
            self._reject(done, item.source, item.field, item.reason, session=s)
            return
        key = record_key(item.source)
        if key in received and not self._still_to_retry(s, item):
            return  # settled, discarded or superseded since the retry chose it
        try:
            with s.savepoint():
                when = received.get(key) or self.clock()
                outcome = self._attempt(s, item, when, None, False)
        except RecordRejected as exc:
            self._reject(done, item.source, exc.field, exc.reason, session=s)
            return
        self._count(done, done_held, item, outcome)

    @staticmethod
    def _count(done: Summary, done_held: set[str], item: MappedRecord,
               outcome: Summary) -> None:
        if outcome.held:
            done_held.add(record_key(item.source))
        done.add(outcome)

    def apply(self, record: MappedRecord, *, received: str | None = None,
              retry: bool = False) -> Summary:
        """One record in one transaction; `received`: when the partner sent it (default
        now); `retry`: a held record applied again, only if it is still held."""
        summary = Summary()
        received = received or self.clock()
        for _attempt in range(MAX_ATTEMPTS):
            try:
                with self.repo.transaction() as s:
                    if retry and not self._still_to_retry(s, record):
                        return summary
                    return self._attempt(s, record, received, None, False)
            except VersionConflict:
                continue
            except RecordRejected as exc:
                self._reject(summary, record.source, exc.field, exc.reason)
                return summary
        self._reject(summary, record.source, "-", STORE_BUSY)
        return summary

    def _settle_by_reviewer(self, key: str, record: MappedRecord, received: str,
                            patient_id: str | None, replace_nhs: bool = False,
                            despite_newer: bool = False) -> Summary:
        """A reviewer's choice for the record held as `key`, in one transaction that first
        checks it is still held: two reviewers (or a retried request) settling one record
        at once must not both apply it. What the store or the profiles refuse, and a
        record the choice leaves held, is said to the reviewer as an error; the hold
        stays as it was and nothing is filed as rejected (the record is not)."""
        for _attempt in range(MAX_ATTEMPTS):
            try:
                with self.repo.transaction() as s:
                    held = s.record_get("held", key)
                    if held is None or not _same_record(held, record.source):
                        raise Conflict(f"held record {key!r} was settled meanwhile; "
                                       "list the held records again")
                    newer = None if despite_newer else self._applied_since(
                        s, record, held.get("last_received") or held.get("received"), held)
                    if newer is not None:  # (asked here: a delivery may have come since)
                        raise _superseded_refusal(key, newer)
                    summary = self._attempt(s, record, received, patient_id,
                                            patient_id is None, replace_nhs)
                    if summary.held:
                        raise Conflict(f"held record {key!r} is still held: "
                                       f"{summary.holds[0]['reason']}")
                    s.record_delete("held", key)  # a hold kept under an older key too
                    return summary
            except VersionConflict:
                continue
            except RecordRejected as exc:
                raise Unprocessable(exc.reason, expression=None if exc.field == "-"
                                    else exc.field) from exc
        raise Conflict(STORE_BUSY)

    def _attempt(self, s: StoreSession, record: MappedRecord, received: str,
                 patient_id: str | None, create: bool, replace_nhs: bool = False) -> Summary:
        """Apply `record` in `s`: its writes, or its hold for review. Raises
        RecordRejected (the caller undoes its writes) or VersionConflict."""
        summary = Summary()
        try:
            with judging(s, ()) as chain:  # (the Patients it reaches by id, if it is held)
                outcome = self._apply(s, record, received, patient_id, create, replace_nhs)
        except StoreUnavailable:
            raise  # the store failing (busy: a 503) is no fault of the record: resend
        except GatewayError as exc:
            if patient_id is not None or create:
                raise  # a reviewer's choice the store refuses: said to the reviewer
            raise _refused(exc, record.source) from exc
        if isinstance(outcome, Held):
            self._settle_hold(s, record, legacy_only=True)  # listed once, under its key
            kept = {"reason": outcome.reason, "candidates": list(outcome.candidates),
                    "received": received, "record": to_json(record)}
            if self.key_tokens:
                # a record held under a local id is news to a held A40 merging that id
                # away (`KnownOnlyHeld`): renewed before this hold's own tokens are read
                person = record.person
                if person.local_system and person.local_id:
                    renew_key_tokens(s, {id_key(person.local_system, person.local_id)})
                kept[JUDGED_ON] = {**chain,
                                   **key_tokens(s, _watched(record, outcome.candidates))}
            _keep_for_review(s, "held", record_key(record.source), kept)
            summary.held += 1
            summary.holds.append({"key": record_key(record.source),
                                  "reason": outcome.reason,
                                  "position": record.source.position})
            return summary
        self._settle_hold(s, record)
        counts, summary.patients = outcome
        for key in ("created", "updated", "unchanged"):
            setattr(summary, key, counts[key])
        source = record.source
        summary.warnings = [{"partner": source.partner, "file": source.file,
                             "position": source.position, "record": source.record_id,
                             "warning": w} for w in record.warnings]
        return summary

    @staticmethod
    def _settle_hold(s: StoreSession, record: MappedRecord, *,
                     legacy_only: bool = False) -> None:
        """An applied record settles its own hold and no other: another record with the
        same id (an older extract delivered again, a reused control id) must not take a
        held record, say a new DNACPR, off the queue unseen. The hold's text is compared,
        since a hold stored before keys held the text's hash is keyed by id alone.
        `legacy_only`: the record is held again, under its key; its hold under the old
        key goes, so it is listed once."""
        keys = (_legacy_key(record.source),) if legacy_only else (
            record_key(record.source), _legacy_key(record.source))
        for key in keys:
            held = s.record_get("held", key) if key else None
            if held is not None and _same_record(held, record.source):
                s.record_delete("held", key)

    def retry_held(self) -> Summary:
        """Apply held records again: a Patient they could not find may exist now.
        Identity is looked up first in a read-only session; only a record whose person
        is now found, or whose reason for the hold changed, is applied again (a record
        still held for the same reason would rewrite its hold and change nothing else).
        The summary covers every partner's records: for the operator, not a feed."""
        applied: dict[str, set[str]] = {}
        retried: dict[str, Summary] = {}
        self._retry_held_into(applied, retried)
        summary = Summary()
        for done in retried.values():
            done.held, done.holds = 0, []
            summary.add(done)
        return summary

    def _retry_held_into(self, applied: dict[str, set[str]],
                         summaries: dict[str, Summary]) -> None:
        """`retry_held`, kept apart per partner in `applied` (the keys of each partner's
        held records applied again) and `summaries` (what that did, added as each batch
        commits; `ingest` answers a feed with its own). Passes repeat while one lets a
        record off the queue (at most MAX_RETRY_PASSES): a record applied may be what
        another waits for (an A40's survivor taking the MRN of held records), which would
        otherwise wait for the next run. A record is applied once per retry: one rejected
        stays held and is not tried again in a later pass."""
        for _pass in range(MAX_RETRY_PASSES):
            if not self._retry_pass(applied, summaries):
                break

    def _retry_pass(self, applied: dict[str, set[str]], summaries: dict[str, Summary]) -> bool:
        """One pass of `_retry_held_into`: whether a record it applied left the queue."""
        tried = set().union(*applied.values())
        ready: list[MappedRecord] = []
        received: dict[str, str] = {}  # this retry's own: runs may overlap (API, MLLP)
        # holds judged again that stay as they are (new tokens), or are restated
        rewrite: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        with self.repo.engine.session(write=False) as s:
            for key, held in self.list_held():
                if key in tried:
                    continue  # applied in an earlier pass and still held (rejected)
                judged_on = held.get(JUDGED_ON)
                if isinstance(judged_on, dict) and self.key_tokens \
                        and key_tokens(s, judged_on) == judged_on:
                    continue  # nothing its identity rests on has changed since it was held
                record = from_json(held["record"])
                # read before it is judged: a write meanwhile renews them, never the reverse
                with judging(s, _watched(record, held["candidates"])) as read:
                    found: Resolved | Held | StoredVersion | KnownOnlyHeld | None = resolve(
                        self.repo, s, record.person)
                    if isinstance(found, Resolved):
                        found = self._merged_away(s, record, found.patient.rid
                                                  if found.patient is not None else None)
                tokens = read if self.key_tokens else None
                if isinstance(found, Held) and found.reason == held["reason"] \
                        and list(found.candidates) == held["candidates"]:
                    if tokens is not None:
                        rewrite[key] = (held, {**held, JUDGED_ON: tokens})
                    continue
                # its latest delivery orders it among the partner's records (a form sent
                # again today is today's word), as when it was first applied
                last = held.get("last_received") or held.get("received")
                newer = self._applied_since(s, record, last, held)
                if newer is not None:
                    restated = {**held, RESTATED_AFTER: newer,
                                "reason": _superseded_reason(newer)}
                    if tokens is not None:
                        restated[JUDGED_ON] = tokens
                    if restated != held:
                        rewrite[key] = (held, restated)
                    continue
                ready.append(record)
                if isinstance(last, str):
                    received[record_key(record.source)] = last
        pending = list(rewrite.items())
        while pending:
            with self.repo.transaction() as s:
                for key, (held, new) in pending[:REWRITES_PER_TRANSACTION]:
                    if s.record_get("held", key) == held:  # not settled meanwhile
                        s.record_put("held", key, new)
            pending = pending[REWRITES_PER_TRANSACTION:]
        # by partner, and within one in the order the partner's records last came: of two
        # held records of one id, the one delivered later is applied last
        ready.sort(key=lambda r: (r.source.partner, received.get(record_key(r.source), ""),
                                  record_key(r.source)))
        groups: dict[str, list[MappedRecord | Rejection]] = {}
        for record in ready:
            groups.setdefault(record.source.partner, []).append(record)
        keys = set()
        for partner, records in groups.items():
            mine = {record_key(r.source) for r in records}
            applied.setdefault(partner, set()).update(mine)
            keys |= mine
            self._apply_batch(records, summaries.setdefault(partner, Summary()), set(),
                              None, received)
        with self.repo.engine.session(write=False) as s:
            return any(s.record_get("held", key) is None for key in keys)

    def _still_to_retry(self, s: StoreSession, record: MappedRecord) -> bool:
        """Asked again in the retry's write transaction: the retry chose its records in
        an earlier read, and a run overlapping it (an API or MLLP delivery) may since have
        settled the hold or applied a newer record of the same id (January's form must not
        be applied over June's that came in between)."""
        held = _held_now(s, record_key(record.source), record.source)
        if held is None:
            return False
        last = held.get("last_received") or held.get("received")
        return self._applied_since(s, record, last, held) is None

    def _applied_since(self, s: StoreSession, record: MappedRecord,
                       held_since: Any, held: dict[str, Any]) -> str | None:
        """When a record of the same partner and id, received after `record` last came
        (`held_since`), was applied (its Provenance's `recorded`, or, when it changed
        nothing, the hold's RESTATED_AFTER), for a partner without event times:
        that record restated what this one says, so applying this one by a retry would
        quietly bring back what it changed (a January ReSPECT form over June's)."""
        if record.source.event_time or not record.source.record_id \
                or not isinstance(held_since, str):
            return None
        restated = held.get(RESTATED_AFTER)
        if isinstance(restated, str) and restated > held_since:
            return restated
        query = IndexQuery(rtype="Provenance", criteria=[Criterion(
            "entity:identifier", "token",
            [TokenPredicate(f"{SOURCE_RECORD_SYSTEM}/{record.source.partner}",
                            record.source.record_id)])],
            sort=[SortKey("recorded", "date", descending=True)], limit=1)
        for row in self.repo.find(query, session=s).rows:
            recorded = jsonio.loads_trusted(row.body or "{}").get("recorded")
            if isinstance(recorded, str) and recorded > held_since:
                return recorded
        return None

    def list_held(self) -> list[tuple[str, dict[str, Any]]]:
        return self._list("held")

    def list_discarded(self) -> list[tuple[str, dict[str, Any]]]:
        return self._list(DISCARDED)

    def discard_held(self, key: str, *, reason: str, by: str) -> dict[str, Any]:
        """Take a held record off the queue without applying it: an older extract's line
        a newer one has since superseded, a test message. Attaching such a record would
        file what it says (a contact since taken off the form) on the person; discarding
        writes nothing to the shared record. The record is kept, with who discarded it,
        when and why (`list_discarded`), never deleted; delivered again, it is held again.
        One transaction that first checks the record is still held (else 404)."""
        reason = " ".join(reason.split())
        if not reason:
            raise BadRequest("say why the held record is discarded (--reason)")
        with self.repo.transaction() as s:
            held = s.record_get("held", key)
            if held is None:
                raise NotFound(f"no held record {key!r}")
            at = self.clock()
            entry = {**held, "discarded": {"reason": reason[:1000], "by": by, "at": at}}
            # keyed by the time too: the same record held and discarded again keeps both
            s.record_put(DISCARDED, f"{key}@{at}", entry)
            s.record_delete("held", key)
        return entry

    def list_rejected(self) -> list[tuple[str, dict[str, Any]]]:
        return self._list("rejected")

    def resolve_held(self, key: str, *, patient_id: str | None = None,
                     replace_nhs_number: bool = False,
                     despite_differences: bool = False, compare: bool = True,
                     despite_newer: bool = False) -> Summary:
        """Settle a held record: attach it to `patient_id`, or (None) make a new Patient.
        `replace_nhs_number`: the record corrects the person's NHS number (an A08 keeping
        the MRN but giving another number): the number on `patient_id` is taken off and
        the record's put in its place (see `_corrected`). An attachment to a Patient the
        hold did not offer as a candidate, whose birth date, family name or sex contradicts
        the record's, is refused unless `despite_differences`: a mistyped id would file
        this person's facts (a DNACPR among them) on someone else. `compare=False` (a
        reviewer who may not see that Patient): any Patient not offered is refused so,
        unless `despite_differences`, without comparing, so that the answer says nothing
        of the Patient. A hold a newer record of the same id has superseded (a January
        form after June's was applied) is refused unless `despite_newer`."""
        if replace_nhs_number and patient_id is None:
            raise BadRequest("replacing an NHS number needs the Patient to replace it on")
        with self.repo.engine.session(write=False) as s:
            held = s.record_get("held", key)
        if held is None:
            raise NotFound(f"no held record {key!r}")
        record = from_json(held["record"])
        if patient_id is not None:
            target = self.repo.read("Patient", patient_id)  # 404/410 if it is not there
            current = jsonio.loads_trusted(target.body or "{}")
            person = record.person
            offered = patient_id in (held.get("candidates") or [])
            unasked = not (offered or replace_nhs_number or despite_differences)
            if unasked and not compare:
                # before anything about the Patient is looked at (merged away too)
                raise Conflict(f"Patient/{patient_id} is not one of the held record's "
                               "candidates: check the Patient id; to attach the record to "
                               'it all the same, say so ("despiteDifferences": true)')
            survivor = replaced_by(current)
            if survivor is not None:
                # filed there, the record would sit on a record no crew's summary reads
                # (a candidate listed before an A40 merged it away)
                raise Conflict(f"Patient/{patient_id} was merged into Patient/{survivor}: "
                               f"attach the record to it (--patient {survivor})")
            differs = contradictions(target, person) if unasked else []
            if differs:
                said = ", ".join(f"{what} {value}" for what, value in (
                    ("born", person.birth_date), ("family name", person.family),
                    ("sex", person.gender)) if value)
                which = " and ".join([", ".join(differs[:-1]), differs[-1]] if differs[:-1]
                                     else differs)
                raise Conflict(f"Patient/{patient_id} is not one of the held record's "
                               f"candidates, and its {which} "
                               f"{'differ' if len(differs) > 1 else 'differs'} from the "
                               f"record's ({said}): check the Patient id; to attach the "
                               "record all the same, say so (--despite-differences, or "
                               '"despiteDifferences": true over HTTP)')
            if replace_nhs_number and not offered \
                    and not any(isinstance(i, dict) and i.get("system") == person.local_system
                                and i.get("value") == person.local_id for i in
                                current.get("identifier") or []):
                # a mistyped id would take another person's number off them
                raise Conflict(f"Patient/{patient_id} is not one of the held record's "
                               "candidates and does not hold its local id: an NHS number "
                               "is replaced only on the person the record is about")
        return self._settle_by_reviewer(key, record, held.get("last_received")
                                        or held.get("received") or self.clock(),
                                        patient_id, replace_nhs_number, despite_newer)

    def _refuse_second_patient(self, s: StoreSession, person: PersonKey) -> None:
        """A reviewer's "new Patient" for a record whose NHS number a live Patient holds
        would make two records of one person: refused, naming the Patient to attach it
        to. (A Patient merged away, which an A40 left holding the number, is not live.)"""
        if not person.nhs_number:
            return
        holders = self._by_key(s, BusinessId("Patient", NHS_NUMBER_SYSTEM, person.nhs_number),
                               limit=10)
        live = [row.rid for row in holders
                if row.body and replaced_by(jsonio.loads_trusted(row.body)) is None]
        if live:
            raise Conflict(f"NHS number {person.nhs_number} is on Patient/{live[0]}: attach "
                           f"the record to it (--patient {live[0]}) instead of making a "
                           "second Patient for the same person")
        # An A40 said the record made for this number is the survivor's person: a new
        # Patient would split them again.
        survivor = merge_survivor(s, person.nhs_number)
        if survivor is not None:
            raise Conflict(f"NHS number {person.nhs_number} is Patient/{survivor}'s (an HL7 "
                           f"A40 merged the record made for it into Patient/{survivor}): "
                           f"attach the record to it (--patient {survivor}) instead of "
                           "making a second Patient for the same person")

    def _refuse_other_holder(self, s: StoreSession, person: PersonKey,
                             patient_id: str, replacing: bool = False) -> None:
        """A reviewer's attachment of a record to `patient_id` would write its NHS number
        there: refused (naming the Patient to attach it to) when another live Patient
        holds that number, or an HL7 A40 merged the Patient made for it into another
        one. Either way the number would stand for two records, and every later record
        for it would be held and a crew's summary refused. Also refused when `patient_id`
        holds another number (two numbers the profile refuses), saying how a partner's
        correction is applied, unless `replacing` is that, or the record's number is one
        the gateway leaves off there (corrected away from it, or retired into it by an
        A40)."""
        nhs = person.nhs_number
        if not nhs:
            return
        holders = [row.rid for row in self._by_key(
            s, BusinessId("Patient", NHS_NUMBER_SYSTEM, nhs), limit=10)
            if row.body and replaced_by(jsonio.loads_trusted(row.body)) is None]
        if patient_id in holders:
            return
        if holders:
            raise Conflict(f"NHS number {nhs} is on Patient/{holders[0]}: attach the record "
                           f"to it (--patient {holders[0]}); on Patient/{patient_id} it "
                           "would make two Patients for the same person")
        survivor = merge_survivor(s, nhs)
        if survivor is not None and survivor != patient_id:
            raise Conflict(f"NHS number {nhs} is Patient/{survivor}'s (an HL7 A40 merged "
                           f"the record made for it into Patient/{survivor}): attach the "
                           f"record to it (--patient {survivor})")
        chosen = s.current("Patient", patient_id)
        if not replacing and chosen is not None and chosen.body \
                and _nhs_numbers(jsonio.loads_trusted(chosen.body)) \
                and not corrected_from(s, nhs, patient_id) \
                and survivor is None:  # (an A40's retired number is left off there)
            # (neither number is named: a feed reads this without seeing that Patient)
            raise Conflict(f"Patient/{patient_id} holds another NHS number than this "
                           "record's: if the partner corrected the person's number, the "
                           "operator applies it (fhir-gateway review resolve KEY --patient "
                           f"{patient_id} --replace-nhs-number)")

    def _list(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        with self.repo.engine.session(write=False) as s:
            return list(_records(s, kind))

    def _reject(self, summary: Summary, source: SourceRef, field_name: str,
                reason: str, *, session: StoreSession | None = None) -> None:
        summary.rejected += 1
        entry = {"partner": source.partner, "file": source.file, "position": source.position,
                 "field": field_name, "reason": reason}
        summary.rejections.append(entry)
        key = f"{source.partner}/{source.file}/{source.position}/" \
              f"{hashlib.sha256(source.raw.encode()).hexdigest()[:12]}"
        value = {**entry, "raw": source.raw, "received": self.clock()}
        if session is not None:
            _keep_for_review(session, "rejected", key, value)
            return
        with self.repo.transaction() as s:
            _keep_for_review(s, "rejected", key, value)

    # -- one record -----------------------------------------------------------------------

    def _apply(self, s: StoreSession, record: MappedRecord, received: str,
               patient_id: str | None, create: bool, replace_nhs: bool = False
               ) -> tuple[dict[str, int], set[str]] | Held:
        """The record's writes: counts, and the Patients written to (merged away too)."""
        # what a reviewer's NHS-number correction merges in, and the numbers it replaces
        copies: list[StoredVersion] = []
        replaced: list[str] = []
        if patient_id is not None:
            # in the write transaction: a Patient a feed gave the number meanwhile counts
            self._refuse_other_holder(s, record.person, patient_id, replace_nhs)
            found: Resolved | Held = Resolved(self.repo.read("Patient", patient_id, session=s),
                                              "reviewer")
            if replace_nhs:
                assert found.patient is not None  # read raises for an absent Patient
                corrected, copies, replaced = self._corrected(
                    s, found.patient, record.person,
                    stamp(record.source.event_time, record.source.partner,
                          record.source.record_id))
                found = Resolved(corrected, "reviewer")
        elif create:
            # in the write transaction: a Patient a feed made meanwhile counts too
            self._refuse_second_patient(s, record.person)
            found = Resolved(None, "reviewer")
        else:
            found = resolve(self.repo, s, record.person)
            if isinstance(found, Resolved) and found.how == "corrected-nhs":
                found = self._undoing_correction(s, record, found)
        if isinstance(found, Held):
            return found
        merged_away = self._merged_away(
            s, record, found.patient.rid if found.patient is not None else None)
        if isinstance(merged_away, Held):
            if found.how == "reviewer":
                # Said, not held again as if settled: a reviewer's choice names the
                # survivor, never the record an A40 merges away.
                raise Conflict(_unsettled_merge(merged_away))
            return merged_away
        takes: dict[str, Any] | None = None
        if isinstance(merged_away, KnownOnlyHeld):
            takes, merged_away = merged_away.identifier, None
        new_stamp = stamp(record.source.event_time, record.source.partner,
                          record.source.record_id)
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        written: list[tuple[str, str, int, bool]] = []
        count = _counted(counts, written)
        patient = self._patient(s, found.patient, record, new_stamp, count,
                                reviewed=found.how == "reviewer")
        if takes is not None:
            self._take_identifier(s, patient, takes, count)
        emptied: list[StoredVersion] = []
        if found.how == "reviewer":
            emptied = self._release_local_id(s, record, patient, count,
                                             merging={c.rid for c in copies})
            accept_birth_date(s, record.person, patient)
        repointed: list[tuple[str, str, int, bool]] = []
        if replaced and record.person.nhs_number:
            # before the record's own resources are written: one keyed by the new number
            # (a GP row's) would otherwise be a second beside the re-keyed one
            for rid in dict.fromkeys([patient, *(c.rid for c in copies)]):
                self._rekey(s, rid, replaced, record.person.nhs_number,
                            _counted(counts, repointed))
        pref = f"Patient/{patient}"
        left_out_later, left_out_now = self._item_sets(s, record, new_stamp)
        cleared = record.cleared or ((),) * len(record.resources)
        origins = record.origins or ("",) * len(record.resources)
        for resource, key, clear, origin in zip(record.resources, record.keys, cleared,
                                                origins, strict=True):
            if key not in left_out_later:
                self._upsert(s, record.source, key, _with_patient(resource, pref), new_stamp,
                             count, clear, origin)
        deleted: list[tuple[str, str, int, bool]] = []
        for key in (*record.retracted, *left_out_now):
            for stored in self._retractable(s, key, new_stamp, record.source.partner):
                result = self.repo.delete(key.resource_type, stored.rid, session=s)
                if result is not None and result.changed:
                    counts["updated"] += 1
                    deleted.append((key.resource_type, stored.rid, result.stored.version, False))
        # the A40's record, and every Patient the reviewer's attachment emptied (each
        # held only this record's local id: the reviewer said it is this person)
        # and the copy of the person a reviewer's NHS-number correction found under the
        # wrong number
        absorbed = list({gone.rid: gone for gone in (
            *([merged_away] if merged_away is not None else []), *emptied, *copies)
            if gone.rid != patient}.values())
        for gone in absorbed:
            self._merge_patients(s, gone, patient, count, _counted(counts, repointed))
        for targets, deletions in ((written, False), (deleted, True)):
            if targets:
                prov, checked = self._check(provenance(record.source, targets, received,
                                                       deleted=deletions), record.source)
                self.repo.create(prov, session=s, checked=checked)
        if repointed:
            # A Provenance of its own, marked as a merge: the re-pointed versions keep the
            # content their partners wrote, so they must not be credited to this partner.
            prov, checked = self._check(repoint_provenance(record.source, repointed,
                                                           received), record.source)
            self.repo.create(prov, session=s, checked=checked)
        if not (written or deleted or repointed or record.source.event_time):
            # (a timed message that changes nothing is a repeat, or older than what
            # stands: it confirms nothing)
            _note_fed(s, patient, record.source.partner, received)
        if not record.source.event_time:
            _supersede_older_holds(s, record.source, received)
        return counts, {patient, *(gone.rid for gone in absorbed)}

    def _check(self, resource: dict[str, Any], source: SourceRef,
               origin: str = "") -> tuple[dict[str, Any], ProfileChecked | None]:
        """The resource with `meta.profile` set to the gateway profile it meets, and the
        repository's proof that it passed (so the write does not check it again); a record
        whose resource meets none of its type's profiles is rejected, naming each problem
        and, where known, the resource's `origin` in the record (`respect.contacts[2]`).
        Each candidate is checked exactly as it would be stored (naming that profile)."""
        candidates = self.profiles.profiles_for(resource["resourceType"])
        best: list[Issue] | None = None
        for url in candidates:
            meta = dict(resource.get("meta") or {})
            meta["profile"] = [url]
            candidate = {**resource, "meta": meta}
            errors, checked = self.repo.check_profiles(candidate)
            if not errors:
                return candidate, checked
            if best is None or len(errors) < len(best):
                best = errors
        if best is None:
            return resource, None  # a type the gateway has no profile for (none today)
        where = _where(best) or resource["resourceType"]
        detail = "; ".join(i.diagnostics for i in best)
        made = f" made from {origin}" if origin else ""
        raise RecordRejected(f"{origin}: {where}" if origin else where,
                             f"{source.partner} {source.file} {source.position}: the mapped "
                             f"{resource['resourceType']}{made} meets none of its profiles: "
                             f"{detail}")

    def _patient(self, s: StoreSession, stored: StoredVersion | None, record: MappedRecord,
                 new_stamp: str, count: Callable[[WriteResult], None], *,
                 reviewed: bool = False) -> str:
        """The record's Patient, made or merged into. `reviewed`: a reviewer chose this
        (`review resolve`), so a new Patient takes the NHS number's claim even if one was
        made before (for a Patient that no longer holds the number; one an A40 merged
        away is refused before this, `_refuse_second_patient`)."""
        incoming = dict(record.patient)
        incoming["resourceType"] = "Patient"
        if stored is None:
            rid = new_id()
            nhs = record.person.nhs_number
            # A claim on the NHS number in the same transaction: two concurrent first
            # records for one person cannot both make a Patient (unique key, not a check).
            if nhs and not put_claim(s, nhs, {"patient": rid}, create_only=not reviewed):
                raise VersionConflict(f"NHS number {nhs} claimed concurrently")
            merged, times = merge(None, incoming, {}, new_stamp,
                                  authoritative=record.authoritative,
                                  cleared=record.patient_cleared)
            if _nhs_numbers(merged):
                times[NHS_STAMP] = new_stamp
            merged, checked = self._check({**merged, "id": rid}, record.source)
            count(self.repo.update(merged, rtype="Patient", rid=rid, session=s,
                                   checked=checked))
            s.record_put(ELEMENT_STAMPS, f"Patient/{rid}", times)
            return rid
        current = jsonio.loads_trusted(stored.body or "{}")
        nhs = record.person.nhs_number
        _drop_retired_nhs(s, incoming, current, stored.rid, nhs)
        if nhs and nhs not in _nhs_numbers(current) and corrected_from(s, nhs, stored.rid):
            # a reviewer took this number off the person as wrong (`_corrected`): a record
            # still giving it, filed here by its partner's own id or a reviewer, adds
            # its facts, not the number
            _leave_off_nhs(incoming, nhs)
            nhs = None
        times = s.record_get(ELEMENT_STAMPS, f"Patient/{stored.rid}") or {}
        merged, new_times = merge(current, incoming, times, new_stamp,
                                  authoritative=record.authoritative,
                                  cleared=record.patient_cleared)
        if _nhs_numbers(merged) != _nhs_numbers(current):
            new_times[NHS_STAMP] = new_stamp  # what set the number (`_corrected`)
        if nhs and not _nhs_numbers(current):
            put_claim(s, nhs, {"patient": stored.rid})
        merged, checked = self._check(merged, record.source)
        if changed(current, merged):
            count(self.repo.update(merged, rtype="Patient", rid=stored.rid, session=s,
                                   checked=checked))
        else:
            count(WriteResult(stored, created=False, changed=False))
        if new_times != times:
            # also when the content stays: a newer record saying the same must outrank
            # an older one that comes later (and each partner's word on a death is kept)
            s.record_put(ELEMENT_STAMPS, f"Patient/{stored.rid}", new_times)
        return stored.rid

    def _undoing_correction(self, s: StoreSession, record: MappedRecord,
                            found: Resolved) -> Resolved | Held:
        """`found` (filed without the corrected-away number), unless the record is the
        correcting partner's own and newer than its correction: then the partner's system
        gives the old number again (the correction undone there, or wrong), which filing
        it without the number would leave unsaid. Held for a reviewer, whose attachment
        files it as before. A partner without event times cannot be ordered: filed."""
        assert found.patient is not None
        when, who = when_and_who(stamp(record.source.event_time, record.source.partner,
                                       record.source.record_id))
        times = s.record_get(ELEMENT_STAMPS, f"Patient/{found.patient.rid}") or {}
        set_by = times.get(NHS_STAMP)
        if not (when and isinstance(set_by, str)):
            return found
        set_when, set_who = when_and_who(set_by)
        if set_who != who or not set_when or when <= set_when:
            return found  # another partner's, or delivered late: the correction stands
        return Held(f"NHS number {record.person.nhs_number} was replaced on "
                    f"Patient/{found.patient.rid} by a correction from this partner's own "
                    f"record of {set_when}, and this newer record gives it again: check "
                    "whether the partner undid the correction (attach the record there: "
                    "the old number is left off; or discard it)", (found.patient.rid,))

    def _merged_away(self, s: StoreSession, record: MappedRecord,
                     survivor: str | None) -> StoredVersion | Held | KnownOnlyHeld | None:
        """For an HL7 A40 (`merge_from`): the Patient it merges away into `survivor` (None
        when there is nothing to do: no A40, or this merge was applied before), or Held.
        The record is looked up itself, not followed through earlier merges: one merged
        into someone else is held, never the other record merged in its place. One that
        is not known yet (the A40 came first) is held and retried with the held records,
        so the merge is applied once it arrives; it is never dropped."""
        if record.merge_from is None:
            return None
        found = resolve(self.repo, s, record.merge_from, follow_merges=False)
        if isinstance(found, Held):
            if survivor is not None and survivor in found.candidates and all(
                    self._merged_into(s, rid) == survivor
                    for rid in found.candidates if rid != survivor):
                # applied before: its ids went to `survivor` with it (found on both) or
                # its NHS number did (claimed by the record merged into `survivor`)
                return None
            traced = self._traced_duplicate(s, record.merge_from, survivor)
            if traced is not None:
                return traced
            held = None if found.candidates else self._held_identifier(
                s, record.merge_from, record.source.partner)  # (no Patient found at all)
            if held is not None:
                return KnownOnlyHeld(held)
            return Held(f"HL7 A40: the record it merges away is not known for certain "
                        f"({found.reason}); held until it is", found.candidates)
        if found.patient is None:
            held = self._held_identifier(s, record.merge_from, record.source.partner)
            if held is not None:
                return KnownOnlyHeld(held)
            return Held("HL7 A40: the record it merges away is not known yet (the merge "
                        "came before it); held until it arrives")
        if found.patient.rid == survivor:
            return None
        merged_into = self._merged_into(s, found.patient.rid)
        if merged_into is not None:
            if merged_into == survivor:
                return None  # applied before
            return Held(f"HL7 A40: the record it merges away, Patient/{found.patient.rid}, "
                        f"was merged into Patient/{merged_into} before; check which record "
                        "this belongs to", (found.patient.rid, merged_into))
        merge_from = record.merge_from
        taken = s.record_get(A40_TAKEN, f"{merge_from.local_system}|{merge_from.local_id}")
        if isinstance(taken, dict) and taken.get("patient") == found.patient.rid:
            # Patient/X holds the id only because an earlier A40 gave it (its own record
            # merged away was held, not a Patient): X is not that record, and merging X
            # away would make two people one
            return Held(f"HL7 A40: local id {merge_from.local_id} was given to "
                        f"Patient/{found.patient.rid} by an earlier A40 merging it there; "
                        "check which record this belongs to", (found.patient.rid,))
        return found.patient

    @staticmethod
    def _held_identifier(s: StoreSession, person: PersonKey,
                         partner: str) -> dict[str, Any] | None:
        """The identifier, as mapped, of `person`'s local id on a record of `partner`'s
        held for review under that id, or None (no such record, no local id, or an NHS
        number too: a number no Patient holds would be recorded nowhere, and a record
        giving it later must still lead to the survivor, as after a merge). Read only for
        an A40 whose record to merge away no Patient holds: a rare message."""
        if not (person.local_system and person.local_id) or person.nhs_number:
            return None
        for _key, held in _records(s, "held"):
            record = held.get("record") or {}
            theirs = record.get("person") or {}
            if (record.get("source") or {}).get("partner") == partner \
                    and theirs.get("local_system") == person.local_system \
                    and theirs.get("local_id") == person.local_id:
                return next((i for i in (record.get("patient") or {}).get(
                    "identifier") or [] if isinstance(i, dict)
                    and i.get("system") == person.local_system
                    and i.get("value") == person.local_id),
                    {"system": person.local_system, "value": person.local_id})
        return None

    def _take_identifier(self, s: StoreSession, rid: str, identifier: dict[str, Any],
                         count: Callable[[WriteResult], None]) -> None:
        """Patient `rid` takes `identifier` (a `KnownOnlyHeld` A40's), if it lacks it."""
        stored = self.repo.read("Patient", rid, session=s)
        body = jsonio.loads_trusted(stored.body or "{}")
        idents = body.get("identifier") or []
        if any(i.get("system") == identifier.get("system")
               and i.get("value") == identifier.get("value")
               for i in idents if isinstance(i, dict)):
            return
        body["identifier"] = [*idents, identifier]
        count(self.repo.update(body, rtype="Patient", rid=rid, session=s))
        s.record_put(A40_TAKEN, f"{identifier.get('system')}|{identifier.get('value')}",
                     {"patient": rid})

    def _traced_duplicate(self, s: StoreSession, person: PersonKey,
                          survivor: str | None) -> StoredVersion | None:
        """An A40 merging a duplicate record (its local id on a live Patient with no NHS
        number, or the same one) into `survivor`, naming the NHS number the PAS has since
        traced for it, which is the survivor's own: the record merged away is the one its
        local id is on (the ids disagree only because the number was traced onto the
        survivor first). None (held) when that Patient holds another NHS number, the local
        id is on more than one Patient, or the number is on anyone but these two."""
        nhs, system, value = person.nhs_number, person.local_system, person.local_id
        if survivor is None or not (nhs and system and value) or system == NHS_NUMBER_SYSTEM:
            return None
        by_local = self._by_key(s, BusinessId("Patient", system, value), limit=3)
        if len(by_local) != 1 or by_local[0].rid == survivor or by_local[0].body is None:
            return None
        duplicate = by_local[0]
        body = jsonio.loads_trusted(duplicate.body or "{}")
        if replaced_by(body) is not None or any(
                i.get("system") == NHS_NUMBER_SYSTEM and i.get("value") != nhs
                for i in body.get("identifier") or [] if isinstance(i, dict)):
            return None
        holders = {row.rid for row in self._by_key(
            s, BusinessId("Patient", NHS_NUMBER_SYSTEM, nhs), limit=5)}
        if survivor not in holders or not holders <= {survivor, duplicate.rid}:
            return None
        return duplicate

    def _merged_into(self, s: StoreSession, rid: str) -> str | None:
        stored = current_patient(s, rid)
        return replaced_by(jsonio.loads_trusted(stored.body)) if stored and stored.body \
            else None

    def _release_local_id(self, s: StoreSession, record: MappedRecord, patient_id: str,
                          count: Callable[[WriteResult], None], *,
                          merging: Collection[str] = ()) -> list[StoredVersion]:
        """A reviewer attached `record` to `patient_id`: its partner's own identifier for
        the person is that Patient's from now on, so it comes off any other Patient that
        holds it. Left there, every later record carrying it would be held again ("2
        Patients hold ..."), the reviewer's decision undone by the next delivery. (Not for
        a partner whose own identifier is the NHS number: that is never moved here.)
        Returns the live Patients that held nothing else, not written: everything on them came
        by that identifier, so the reviewer said it is `patient_id`'s person and the caller
        merges it in (left with no identifier the profile refuses it, and the attachment
        with it: the hold could never be settled). Patients in `merging` are left as they
        are: the caller merges them in, and a merged-away record keeps its local ids."""
        system, value = record.person.local_system, record.person.local_id
        if not system or not value or system == NHS_NUMBER_SYSTEM:
            return []
        emptied: list[StoredVersion] = []
        for stored in self._by_key(s, BusinessId("Patient", system, value), limit=10):
            if stored.rid == patient_id or stored.rid in merging or stored.body is None:
                continue
            other = jsonio.loads_trusted(stored.body)
            kept = [i for i in other.get("identifier") or [] if not (
                isinstance(i, dict) and i.get("system") == system and i.get("value") == value)]
            if not kept and replaced_by(other) is None:
                emptied.append(stored)
                continue
            released, checked = self._check({**other, "identifier": kept}, record.source)
            count(self.repo.update(released, rtype="Patient", rid=stored.rid, session=s,
                                   checked=checked))
        return emptied

    def _corrected(self, s: StoreSession, patient: StoredVersion, person: PersonKey,
                   new_stamp: str) -> tuple[StoredVersion, list[StoredVersion], list[str]]:
        """A reviewer's NHS-number correction: the record's number is the person's, and
        `patient` is the person. Returns `patient` as it would be without the number the
        correction replaces (the record's own then goes on it, as on a Patient with none)
        and the Patients to merge into it: when `patient` holds no other number (the
        record's, or none), the copy of the person made under the wrong one (the live
        Patient holding the record's local id and another NHS number) is merged in, as an
        HL7 A40 would, keeping its local ids but not its number.
        Each replaced number's claim stays where it was and names the number that
        replaced it, so the number leads nowhere: a later record still giving it is held,
        saying so (one partner may still have the wrong number, or it may be someone
        else's), unless its partner's own id for the person vouches and its birth date
        agrees (`identity.resolve`): then it is filed here without the number. The third
        value: the numbers replaced.
        Refused when the record gives no NHS number, or there is no other number to
        replace (a plain attachment says that), or the record's number is one a correction
        took off this person (attaching files it without), or the number it would replace
        was set by a newer record than this one (an older message delivered late, held
        because the newer one had already given the right number)."""
        new = person.nhs_number
        if not new:
            raise Unprocessable("the held record gives no NHS number to put on "
                                f"Patient/{patient.rid}")
        if corrected_from(s, new, patient.rid):
            raise Conflict(f"NHS number {new} was taken off Patient/{patient.rid} as wrong by "
                           "an earlier correction: attach the record without "
                           "--replace-nhs-number (the old number is left off)")
        current = jsonio.loads_trusted(patient.body or "{}")
        idents = [i for i in current.get("identifier") or [] if isinstance(i, dict)]
        old = [i for i in idents if i.get("system") == NHS_NUMBER_SYSTEM and i.get("value") != new]
        copies: list[StoredVersion] = []
        if not old and person.local_system != NHS_NUMBER_SYSTEM and person.local_id:
            copies = [row for row in self._by_key(
                s, BusinessId("Patient", str(person.local_system), person.local_id), limit=10)
                if row.rid != patient.rid and row.body
                and replaced_by(jsonio.loads_trusted(row.body)) is None]
        if len(copies) > 1:
            raise Conflict(f"{len(copies)} Patients hold {person.local_system}|"
                           f"{person.local_id}: merge them first (an HL7 A40)")
        wrong = [i for row in copies for i in jsonio.loads_trusted(row.body or "{}").get(
            "identifier") or [] if isinstance(i, dict) and i.get("system") == NHS_NUMBER_SYSTEM]
        if not old and not wrong:
            raise Conflict(f"Patient/{patient.rid} holds no other NHS number to replace, nor "
                           f"does a Patient holding local id {person.local_id}: attach the "
                           "record without replacing one")
        when, who = when_and_who(new_stamp)
        for holder in [patient.rid, *(row.rid for row in copies)] if when else []:
            # Only event times order records across partners and messages: a correction
            # from a partner without them (hospice, council) is never judged "late".
            times = s.record_get(ELEMENT_STAMPS, f"Patient/{holder}") or {}
            set_by = times.get(NHS_STAMP)
            if not isinstance(set_by, str):  # a Patient stored before NHS_STAMP was kept:
                set_by = max((str(v) for v in times.values()  # the partner's newest word
                              if when_and_who(str(v))[1] == who), default="")
            set_when = when_and_who(set_by)[0]
            if set_when and set_when > when:
                raise Conflict(f"Patient/{holder}'s NHS number was set by a newer record than "
                               "this one: an older record cannot correct it (was this "
                               "message delivered late?)")
        for ident, holder in [*((i, patient.rid) for i in old),
                              *((i, copies[0].rid) for i in wrong)]:
            if isinstance(ident.get("value"), str):
                put_claim(s, ident["value"], {"patient": holder, "corrected_to": new})
        if old:
            current["identifier"] = [i for i in idents if i not in old]
            if not current["identifier"]:
                del current["identifier"]
            patient = dataclasses.replace(patient, body=jsonio.dumps(current))
        return patient, copies, [str(i.get("value")) for i in (*old, *wrong)]

    def _rekey(self, s: StoreSession, patient_id: str, replaced: list[str], new: str,
               repoint: Callable[[WriteResult], None]) -> None:
        """After a correction: a partner whose own key for the person is the NHS number
        (the GP register) keys their resources by it too (`gp/cpr-decision|<number>`).
        Left under the wrong number, they would be found by no later record of that
        partner's, now giving the right one: a DNACPR the GP withdraws would stay. Each
        identifier in the person's record whose value is a replaced number is given the
        new one, the content otherwise unchanged (credited as a merge's re-pointing, so
        the fact stays its author's). Their element stamps, and the Patient's, are
        renamed likewise (`merge.renamed_record`), since that partner orders its records
        by the number. Refused when a resource of the same type already holds the new key
        (the partner's corrected register wrote it): two would share it."""
        compartment = IndexQuery(rtype=None, compartment=patient_id)
        self._restamp(s, f"Patient/{patient_id}", replaced, new)
        for stored in self.repo.find(compartment, session=s).rows:
            name = f"{stored.rtype}/{stored.rid}"
            if stored.body is None or (stored.rtype == "Patient" and stored.rid == patient_id):
                continue
            self._restamp(s, name, replaced, new)  # (what the partner said under the old)
            if not any(n in stored.body for n in replaced):
                continue
            resource = jsonio.loads_trusted(stored.body)
            idents = resource.get("identifier")
            if stored.rtype == "Patient" or not isinstance(idents, list) \
                    or is_derived(resource) or owners(resource):
                continue  # (a feed's REST write keeps its keys: the feed wrote them)
            rekeyed = [{**i, "value": new} if isinstance(i, dict)
                       and i.get("system") != NHS_NUMBER_SYSTEM
                       and i.get("value") in replaced else i for i in idents]
            if rekeyed == idents:
                continue
            for ident in rekeyed:
                if ident in idents or not isinstance(ident, dict):
                    continue
                taken = [row.rid for row in self._by_key(s, BusinessId(
                    stored.rtype, str(ident.get("system")), new)) if row.rid != stored.rid]
                if taken:
                    # (the partner's corrected register already wrote its own under the
                    # new number: two resources would share the key, and every later
                    # record of the partner's for it would be rejected)
                    raise Conflict(f"{stored.rtype}/{taken[0]} already holds "
                                   f"{ident.get('system')}|{new}, which {name} would be "
                                   "given by this correction: settle the two first "
                                   "(delete the one that no longer holds)")
            repoint(self.repo.update({**resource, "identifier": rekeyed},
                                     rtype=stored.rtype, rid=stored.rid, session=s))

    @staticmethod
    def _restamp(s: StoreSession, name: str, replaced: list[str], new: str) -> None:
        times = s.record_get(ELEMENT_STAMPS, name)
        if not times:
            return
        renamed = times
        for old in replaced:
            renamed = renamed_record(renamed, old, new)
        if renamed != times:
            s.record_put(ELEMENT_STAMPS, name, renamed)

    def _item_sets(self, s: StoreSession, record: MappedRecord,
                   new_stamp: str) -> tuple[set[BusinessId], list[BusinessId]]:
        """For each list the record states in full (`ItemSet`, a ReSPECT form's contacts):
        the items the same source record gave before and leaves out now, to retract; and,
        for a record older than the list stored, its items that the newer record left out,
        not to be brought back. The list is kept per partner, rule and source record id,
        with the stamp of the record that stated it (system records, kind "item-sets")."""
        left_out_later: set[BusinessId] = set()
        left_out_now: list[BusinessId] = []
        for items in record.item_sets:
            name = "\x1f".join((record.source.partner, items.rule, items.resource_type,
                                items.system, record.source.record_id or ""))
            stored = s.record_get(ITEM_SETS, name)
            now = sorted({k.value for k in items.keys})
            if stored is not None and stored["stamp"] > new_stamp:
                left_out_later.update(k for k in items.keys if k.value not in stored["values"])
                continue
            before = stored["values"] if stored is not None else []
            left_out_now.extend(key for value in before if value not in now
                                if (key := BusinessId(items.resource_type, items.system,
                                                      value)) not in record.keys)
            if stored != {"stamp": new_stamp, "values": now}:
                s.record_put(ITEM_SETS, name, {"stamp": new_stamp, "values": now})
        return left_out_later, left_out_now

    def _retractable(self, s: StoreSession, key: BusinessId, new_stamp: str,
                     partner: str) -> list[StoredVersion]:
        """What a record retracting `key` deletes: the resources holding it that no newer
        record has said anything of (out of order, a discharge cancelled before a later
        discharge arrived must not delete what that discharge recorded). The retraction's
        stamp is kept, so an older record arriving later does not bring it back."""
        name = _retraction_name(key)
        kept = s.record_get(RETRACTIONS, name)
        if kept is None or kept.get("stamp", "") < new_stamp:
            s.record_put(RETRACTIONS, name, {"stamp": new_stamp})
        return [stored for stored in self._ingested_by_key(s, key, partner)
                if newest_stamp(s.record_get(ELEMENT_STAMPS,
                                              f"{key.resource_type}/{stored.rid}")) <= new_stamp]

    def _by_key(self, s: StoreSession, key: BusinessId, *,
                limit: int = 5) -> list[StoredVersion]:
        query = IndexQuery(rtype=key.resource_type, criteria=[
            Criterion("identifier", "token", [TokenPredicate(key.system, key.value)])],
            limit=limit)
        return self.repo.find(query, session=s).rows

    def _ingested_by_key(self, s: StoreSession, key: BusinessId,
                         partner: str) -> list[StoredVersion]:
        """The resources holding a record's business key that are the record's to change:
        not another partner's feed's, written over REST with the same identifier (by
        mistake or not). Merged into, blocked by or retracted with it, one partner's
        resource would have overwritten, held up or deleted another's CPR decision. One
        this partner's records have already written into stays its own (gateways before
        this rule merged into such resources and kept the feed's tag)."""
        return [row for row in self._by_key(s, key)
                if row.body is None or PARTNER_TAG_SYSTEM not in row.body
                or owners(jsonio.loads_trusted(row.body)) <= {partner}
                or partner in stamped_by(s.record_get(ELEMENT_STAMPS,
                                                      f"{key.resource_type}/{row.rid}"))]

    def _upsert(self, s: StoreSession, source: SourceRef, key: BusinessId,
                resource: dict[str, Any], new_stamp: str,
                count: Callable[[WriteResult], None], clear: tuple[str, ...] = (),
                origin: str = "") -> None:
        """Create or update the resource `key` names. `origin`: where in the source record
        it came from (`respect.contacts[2]`), named when it is refused."""
        resource = self._resolve_logical(s, resource)
        existing = self._ingested_by_key(s, key, source.partner)
        if len(existing) > 1:
            raise RecordRejected("identifier", f"{len(existing)} {key.resource_type} "
                                               f"resources hold {key.system}|{key.value}")
        if existing:
            stored = existing[0]
            current = jsonio.loads_trusted(stored.body or "{}")
            times = s.record_get(ELEMENT_STAMPS, f"{key.resource_type}/{stored.rid}") or {}
            merged, new_times = merge(current, resource, times, new_stamp, cleared=clear)
            _in_order(merged, source)
            if new_times != times:  # as for a Patient: also when the content stays
                s.record_put(ELEMENT_STAMPS, f"{key.resource_type}/{stored.rid}", new_times)
            merged, checked = self._check(merged, source, origin)
            if not changed(current, merged):
                count(WriteResult(stored, created=False, changed=False))
                return
            count(self.repo.update(merged, rtype=key.resource_type, rid=stored.rid,
                                   session=s, checked=checked))
            return
        retracted = s.record_get(RETRACTIONS, _retraction_name(key))
        if retracted is not None and retracted.get("stamp", "") > new_stamp:
            return  # a newer record retracted it: this older one does not bring it back
        # (what it clears is not there to clear, but the stamp keeps an older record
        # arriving later from setting it)
        merged, times = merge(None, resource, {}, new_stamp, cleared=clear)
        _in_order(merged, source)
        checked_resource, checked = self._check(merged, source, origin)
        result = self.repo.create(checked_resource, session=s, checked=checked)
        count(result)
        s.record_put(ELEMENT_STAMPS, f"{key.resource_type}/{result.stored.rid}", times)

    def _resolve_logical(self, s: StoreSession, resource: dict[str, Any]) -> dict[str, Any]:
        """Add a literal reference to logical ones (`{"type", "identifier"}`) we can find."""

        def walk(value: Any) -> Any:
            if isinstance(value, dict):
                if ("identifier" in value and "type" in value and "reference" not in value
                        and isinstance(value["identifier"], dict)):
                    ident = value["identifier"]
                    found = self._by_key(s, BusinessId(value["type"], ident.get("system", ""),
                                                       ident.get("value", "")))
                    if len(found) == 1:
                        return {**value, "reference": f"{value['type']}/{found[0].rid}"}
                return {k: walk(v) for k, v in value.items()}
            if isinstance(value, list):
                return [walk(v) for v in value]
            return value

        return walk(resource)

    def _merge_patients(self, s: StoreSession, merged_away: StoredVersion, survivor: str,
                        count: Callable[[WriteResult], None],
                        repoint: Callable[[WriteResult], None]) -> None:
        """HL7 A40: `merged_away` (from `_merged_away`) is merged into `survivor`. The two
        Patients' writes go to `count`; the resources only re-pointed to the survivor to
        `repoint`."""
        loser = merged_away.rid
        compartment = IndexQuery(rtype=None, compartment=loser)
        for stored in self.repo.find(compartment, session=s).rows:
            if stored.rtype == "Patient" or stored.body is None:
                continue
            if DERIVED_TAG_SYSTEM in stored.body and is_derived(jsonio.loads_trusted(stored.body)):
                continue  # the gateway's own (a derivation works the survivor's out anew)
            text = stored.body.replace(f'"Patient/{loser}"', f'"Patient/{survivor}"')
            if text != stored.body:
                repoint(self.repo.update(jsonio.loads_trusted(text), rtype=stored.rtype,
                                         rid=stored.rid, session=s))
        old_patient = jsonio.loads_trusted(merged_away.body or "{}")
        survivor_stored = self.repo.read("Patient", survivor, session=s)
        keep = jsonio.loads_trusted(survivor_stored.body or "{}")
        # The survivor keeps its own NHS number; the merged record's local ids move over.
        # A survivor with none (an MRN-only emergency record) takes the merged record's:
        # left on neither, the person could not be found by NHS number.
        own_nhs = any(i.get("system") == NHS_NUMBER_SYSTEM for i in keep.get("identifier", []))
        keep["identifier"] = keep.get("identifier", []) + [
            i for i in old_patient.get("identifier", [])
            if i not in keep.get("identifier", []) and (
                not own_nhs or i.get("system") != NHS_NUMBER_SYSTEM)]
        for moved in old_patient.get("identifier", []) if not own_nhs else []:
            if moved.get("system") == NHS_NUMBER_SYSTEM and moved.get("value"):
                put_claim(s, moved["value"], {"patient": survivor})
        keep["link"] = [*keep.get("link", []), {"other": {"reference": f"Patient/{loser}"},
                                                 "type": "replaces"}]
        keep_times = s.record_get(ELEMENT_STAMPS, f"Patient/{survivor}") or {}
        folded = dict(keep_times)
        loser_times = s.record_get(ELEMENT_STAMPS, f"Patient/{loser}") or {}
        fold_newer(keep, folded, old_patient, loser_times)
        fold_deceased(keep, folded, old_patient, loser_times)
        if not keeps_its_owner(keep, old_patient, loser_times):
            release(keep)  # it now holds what another partner said: no one feed's
        if folded != keep_times:
            s.record_put(ELEMENT_STAMPS, f"Patient/{survivor}", folded)
        count(self.repo.update(keep, rtype="Patient", rid=survivor, session=s))
        old_patient["active"] = False
        # its own "replaces" links stay: the records merged into it before are still
        # this person's (a Consent on one of them must reach the survivor)
        old_patient["link"] = [
            *(link for link in old_patient.get("link") or []
              if isinstance(link, dict) and link.get("type") != "replaced-by"),
            {"other": {"reference": f"Patient/{survivor}"}, "type": "replaced-by"}]
        old_patient["identifier"] = [i for i in old_patient.get("identifier", [])
                                     if i.get("system") != NHS_NUMBER_SYSTEM] or None
        if old_patient["identifier"] is None:
            old_patient.pop("identifier")
        count(self.repo.update(old_patient, rtype="Patient", rid=loser, session=s))


def _unsettled_merge(held: Held) -> str:
    """Why a reviewer's choice cannot settle an HL7 A40 whose record to merge away is in
    doubt, and what will."""
    if not held.candidates:  # the record it merges away has not arrived
        return (f"{held.reason}. No review choice applies it: it is applied when that "
                "record arrives (the PAS can send it, or a corrected merge)")
    return (f"{held.reason}. A review choice names the surviving record, not the one "
            "merged away, so none settles this merge: the PAS must send a corrected merge "
            "(or the records it names be corrected so they agree)")


def _drop_retired_nhs(s: StoreSession, incoming: dict[str, Any], current: dict[str, Any],
                      rid: str, nhs: str | None) -> None:
    """Leave `nhs` off `incoming` when an HL7 A40 retired it into Patient `rid` (its claim
    leads there through merges) and `rid` holds its own NHS number: the survivor keeps
    that one (a second nhsNumber the profile refuses, so the record could never be
    placed), and the record's other facts go on it."""
    if not nhs or not any(i.get("system") == NHS_NUMBER_SYSTEM
                          for i in current.get("identifier") or [] if isinstance(i, dict)):
        return
    if merge_survivor(s, nhs) != rid:
        return
    _leave_off_nhs(incoming, nhs)


def _leave_off_nhs(incoming: dict[str, Any], nhs: str) -> None:
    kept = [i for i in incoming.get("identifier") or [] if not (
        isinstance(i, dict) and i.get("system") == NHS_NUMBER_SYSTEM and i.get("value") == nhs)]
    if kept:
        incoming["identifier"] = kept
    else:
        incoming.pop("identifier", None)


def _nhs_numbers(patient: dict[str, Any]) -> list[str]:
    return [str(i.get("value")) for i in patient.get("identifier") or []
            if isinstance(i, dict) and i.get("system") == NHS_NUMBER_SYSTEM]


def _in_order(resource: dict[str, Any], source: SourceRef) -> None:
    """Reject the record when the period it leaves would end before it starts (FHIR per-1):
    a start and an end from two messages can disagree so, as when a local time in the
    hour the clocks go back is read as summer time; stored, it would be a stay no one can
    trust, so a person looks at it."""
    period = resource.get("period")
    if not isinstance(period, dict):
        return
    start, end = period.get("start"), period.get("end")
    if not (isinstance(start, str) and isinstance(end, str)):
        return
    try:
        in_order = date_range(end)[1] >= date_range(start)[0]
    except BadDate:
        return  # the profile check names a date it cannot read
    if not in_order:
        raise RecordRejected("period", f"{source.partner} {source.file} {source.position}: "
                             f"the {resource.get('resourceType')} would end ({end}) before "
                             f"it starts ({start}); check the times sent (a local time in "
                             "the hour the clocks go back is read as summer time)")


def _where(issues: list[Issue]) -> str:
    """The elements the issues name, each once, in order."""
    return ", ".join(dict.fromkeys(e for i in issues for e in i.expression))


def _refused(exc: GatewayError, source: SourceRef) -> RecordRejected:
    """A write the store refused for a record (say, an HL7 A40 that would leave the
    Patient merged away with no identifier): the record is rejected for review, with the
    store's reason; the rest of the file goes on."""
    return RecordRejected(_where(exc.issues) or "-",
                          f"{source.partner} {source.file} {source.position}: a write this "
                          f"record implies was refused: {exc.diagnostics}")


def _counted(counts: dict[str, int],
             into: list[tuple[str, str, int, bool]]) -> Callable[[WriteResult], None]:
    """A `count` of writes: tallied in `counts`, each changed version listed in `into`
    (the targets of the Provenance that cites them)."""

    def count(result: WriteResult) -> None:
        if not result.changed:
            counts["unchanged"] += 1
            return
        counts["created" if result.created else "updated"] += 1
        into.append((result.stored.rtype, result.stored.rid, result.stored.version,
                     result.created))

    return count


def repoint_provenance(source: SourceRef, targets: list[tuple[str, str, int, bool]],
                       received: str) -> dict[str, Any]:
    """The Provenance of the versions a merge made by re-pointing resources to the
    surviving Patient: the partner that sent the merge, its message, activity "merge"."""
    prov = provenance(source, targets, received)
    prov["activity"] = {"coding": [dict(REPOINT_ACTIVITY)],
                        "text": "Moved to the surviving record by a merge of two records"}
    return prov


def _retraction_name(key: BusinessId) -> str:
    return f"{key.resource_type}|{key.system}|{key.value}"


def _with_patient(resource: dict[str, Any], reference: str) -> dict[str, Any]:
    text = jsonio.dumps(resource)
    return jsonio.loads_trusted(text.replace(f'"{PATIENT_REFERENCE}"', f'"{reference}"'))
