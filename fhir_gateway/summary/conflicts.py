"""The stored DetectedIssue for partners whose current CPR decisions differ.

INTERFACE.md holds "two partners disagree on a safety fact" as a `DetectedIssue`
referencing both, so a clinician's system searching `DetectedIssue?patient=...` finds it,
not only a crew reading `$emergency-summary`. One per person: its id is random (no caller
can work it out, and so none can learn from a refused write that it exists), kept in the
store's system records per Patient (`stored_issue_id`), and it carries the gateway's derived
tag (`facts.is_stored_conflict`), which no partner feed's write can; the gateway never
changes a resource it did not write. Created when the person's current decisions come to
differ, updated when what differs changes, and deleted when they agree again (its history
keeps what it said). "Current" and "differ" are the summary's own rules (`facts.gather`,
`Facts.conflict`), judged with no caller's restrictions, so the stored issue and the
summary's agree on the day the data changed.

It is kept in step by the repository (`fhir.derivations`): every change to a CPR decision
(an Observation, Flag or advance-directive Consent, before or after), every Provenance
naming a decision's current version (or none), and a Patient's creation or deletion mark
the Patient, and the issue is worked out again just before the
transaction commits, so it commits or rolls back with the decision that caused it.
Its `identifiedDateTime` is when the newest of the disagreeing decisions was stored, so
loading the same data again changes nothing.

What it cannot know by itself: a decision passing its review date changes no stored
data, and a store loaded before this existed holds no issues. `refresh_all` (the command
`fhir-gateway conflicts refresh`) works every person's out again: run it after an upgrade,
and daily. `$emergency-summary` works conflicts out afresh on every call and never shows
this stored issue as well.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from .. import jsonio
from ..fhir.derivations import DERIVED_TAG_SYSTEM
from ..fhir.interactions import FhirContext
from ..fhir.interceptors import InterceptorChain
from ..fhir.request import FhirRequest
from ..pipeline.identity import merge_links
from ..references import literal_reference
from ..security.consent import ConsentPolicy, reference_ids
from ..store.base import StoreError
from ..store.query import Criterion, IndexQuery, TokenPredicate
from . import document
from . import terms as t
from .facts import CONFLICT_TAG_CODE, Facts, gather, is_cpr_record, is_stored_conflict
from .terms import LONDON

if TYPE_CHECKING:
    from ..fhir.derivations import Derivation
    from ..fhir.repository import Repository
    from ..store.base import StoreSession

log = logging.getLogger("fhir_gateway.summary.conflicts")
#: the types that can hold a CPR decision (`facts.is_cpr_record`)
DECISION_TYPES = frozenset({"Observation", "Flag", "Consent"})
_TARGET = "target:"
_WRITTEN = "written:"
#: system records: Patient id -> {"id": its stored issue's id}
ISSUE_IDS = "cpr-conflict-issue"


def stored_issue_id(session: StoreSession, pid: str) -> str | None:
    """The id of the Patient's stored CPR-conflict issue, if one was ever stored."""
    found = (session.record_get(ISSUE_IDS, pid) or {}).get("id")
    return found if isinstance(found, str) else None


def london_today() -> date:
    return datetime.now(LONDON).date()


class CprConflictRecord:
    """Keeps each Patient's stored CPR-conflict DetectedIssue in step (a Derivation)."""

    watches = frozenset({*DECISION_TYPES, "Provenance", "Patient"})

    def __init__(self, today: Callable[[], date] | None = None) -> None:
        """`today`: the London day review dates are judged on (default: the clock's)."""
        self.today = today

    def touched(self, before: dict[str, Any] | None, after: dict[str, Any] | None) -> set[str]:
        """Keys: `Patient/<id>` of a CPR decision's person, and of a Patient created or
        deleted (decisions may name it before it exists, and a deleted one keeps no
        issue); `target:<Type>/<id>[/<version>]` of each decision a Provenance names (who
        recorded a decision decides whose it is, and a feed writing over REST sends the
        Provenance after the decision); `written:<Type>/<id>` of each decision-type
        resource written, whose persons (before and after) are marked already, so a
        Provenance naming it in the same transaction (ingestion's) reads nothing more."""
        keys: set[str] = set()
        for r in (before, after):
            if r is None:
                continue
            rtype = r.get("resourceType")
            if rtype == "Patient":
                if (before is None) != (after is None) and r.get("id"):
                    keys.add(f"Patient/{r['id']}")
            elif rtype == "Provenance":
                keys.update(_decision_targets(r.get("target")))
            else:
                keys.update(f"Patient/{pid}" for pid in _patients_of_decision(r))
                if r.get("id"):
                    # its Provenance need not read it again: this write marked its person
                    keys.add(f"{_WRITTEN}{rtype}/{r['id']}")
        return keys

    def bring_up_to_date(self, repository: Repository, session: StoreSession,
                         keys: set[str]) -> None:
        ctx = FhirContext(repository, InterceptorChain(), session=session)
        pids = {k.removeprefix("Patient/") for k in keys if k.startswith("Patient/")}
        written = {k.removeprefix(_WRITTEN) for k in keys if k.startswith(_WRITTEN)}
        for key in sorted(k for k in keys if k.startswith(_TARGET)):
            rtype, rid, version = [*key.removeprefix(_TARGET).split("/"), ""][:3]
            if f"{rtype}/{rid}" in written:
                continue  # written in this transaction: its own write marked its person
            target = session.current(rtype, rid)
            # a Provenance of an old version changes no decision's source: only the
            # version that last changed a decision counts, and that is the current one
            # (a merge's re-pointing aside), or a Provenance naming no version
            if target is not None and not target.deleted and target.body \
                    and version in ("", str(target.version)):
                pids.update(_patients_of_decision(jsonio.loads_trusted(target.body)))
        # a decision on a record merged away is its survivor's: the whole person's issues
        # are worked out (the survivor's holds it; the merged-away record's keeps none)
        policy = ConsentPolicy(repository)
        self.work_out(ctx, session, {each for pid in pids
                                     for each in policy.person(pid, session)[0]})

    def work_out(self, ctx: FhirContext, session: StoreSession, pids: set[str],
                 done: Refreshed | None = None) -> None:
        """Each Patient's issue made to agree with its decisions; counted in `done`."""
        for pid in sorted(pids):
            try:
                with session.savepoint():
                    outcome = self._one(ctx, session, pid)
            except StoreError:
                raise  # the store itself failed: the whole transaction must
            except Exception:
                # Never lose partners' data for a derived record: the decisions commit,
                # $emergency-summary still works the conflict out, and this is logged.
                log.exception("the stored CPR-conflict DetectedIssue of Patient/%s could "
                              "not be brought up to date", pid)
                outcome = "failed"
            if done is not None:
                done.count(pid, outcome)

    def _one(self, ctx: FhirContext, session: StoreSession, pid: str) -> str | None:
        """What became of the Patient's issue: created, updated, deleted or None."""
        issue_id = stored_issue_id(session, pid)
        wanted = None
        current = session.current("Patient", pid)
        if current is not None and not current.deleted and current.body:
            patient = jsonio.loads_trusted(current.body)
            request = FhirRequest(method="GET", path=f"Patient/{pid}")
            if not merge_links(patient):  # a merged-away record's issue is its survivor's
                wanted = stored_issue(gather(ctx, request, patient,
                                             today=(self.today or london_today)()))
        existing = session.current("DetectedIssue", issue_id) if issue_id else None
        if existing is not None and not existing.deleted and existing.body \
                and not is_stored_conflict(jsonio.loads_trusted(existing.body)):
            # not the gateway's (written over it with auth off): never changed; a new id
            log.warning("DetectedIssue/%s is no longer the gateway's; Patient/%s's stored "
                        "CPR-conflict issue gets a new id", issue_id, pid)
            issue_id, existing = None, None
        if wanted is not None:
            if issue_id is None:
                issue_id = str(uuid.uuid4())
                session.record_put(ISSUE_IDS, pid, {"id": issue_id})
            wanted["id"] = issue_id
            result = ctx.repository.update(wanted, rtype="DetectedIssue", rid=issue_id,
                                           session=session)
            return None if not result.changed else "created" if result.created else "updated"
        if issue_id is not None and existing is not None and not existing.deleted:
            ctx.repository.delete("DetectedIssue", issue_id, session=session)
            return "deleted"
        return None


@dataclass(slots=True)
class Refreshed:
    """What `refresh_all` did."""

    people: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    failed: int = 0
    #: the Patients whose issue changed (for the audit trail)
    patients: list[str] = field(default_factory=list)

    def count(self, pid: str, outcome: str | None) -> None:
        self.people += 1
        if outcome is not None:
            setattr(self, outcome, getattr(self, outcome) + 1)
            if outcome != "failed":
                self.patients.append(pid)

    def counts(self) -> dict[str, int]:
        return {"people checked": self.people, "created": self.created,
                "updated": self.updated, "deleted": self.deleted, "failed": self.failed}


def refresh_all(repository: Repository, *, batch: int = 200,
                today: Callable[[], date] | None = None) -> Refreshed:
    """Work out every person's stored issue again: each live Patient's, and each stored
    issue's Patient (one deleted since keeps none). One write transaction per `batch`
    people, so other writers wait a moment at most; partners may write meanwhile, and
    their writes keep the issues in step themselves."""
    record = CprConflictRecord(today)
    done = Refreshed()
    for pids in _batches(repository, batch):
        with repository.transaction() as session:
            record.work_out(FhirContext(repository, InterceptorChain(), session=session),
                            session, pids, done)
    return done


def _batches(repository: Repository, batch: int) -> Iterator[set[str]]:
    """Patient ids to work out, `batch` at a time: every live Patient, then the Patients
    of stored issues not yet seen."""
    seen: set[str] = set()
    code = Criterion("code", "token", [TokenPredicate(t.DETECTED_ISSUE_TYPE,
                                                      "partner-conflict")])
    for rtype, criteria in (("Patient", []), ("DetectedIssue", [code])):
        after = None
        while True:
            with repository.engine.session(write=False) as s:
                found = s.find(IndexQuery(rtype=rtype, criteria=criteria, after=after,
                                          limit=batch))
            if not found.rows:
                break
            after = found.keys[-1]
            pids = set()
            for row in found.rows:
                if rtype == "Patient":
                    pids.add(row.rid)
                elif row.body and is_stored_conflict(issue := jsonio.loads_trusted(row.body)):
                    pids.update(reference_ids([issue.get("patient")], "Patient"))
            pids -= seen
            seen.update(pids)
            if pids:
                yield pids


def _patients_of_decision(r: dict[str, Any]) -> list[str]:
    if not is_cpr_record(r):
        return []
    return reference_ids([r.get("subject"), r.get("patient")], "Patient")


def _decision_targets(references: Any) -> set[str]:
    """`target:` keys of the decision types a Provenance's targets name."""
    out = set()
    for node in references if isinstance(references, list) else []:
        named = literal_reference(node.get("reference") if isinstance(node, dict) else None)
        if named is None or named.type not in DECISION_TYPES or not named.has_fhir_id:
            continue
        if named.version is None:
            out.add(f"{_TARGET}{named.type}/{named.id}")
        elif named.version.isascii() and named.version.isdigit():  # this server's versions
            out.add(f"{_TARGET}{named.type}/{named.id}/{named.version}")
    return out


def stored_issue(facts: Facts) -> dict[str, Any] | None:
    """The DetectedIssue to store for these facts, without its id (None when the
    decisions agree)."""
    identified = max((str((f.resource.get("meta") or {}).get("lastUpdated") or "")
                      for f in facts.cpr), default="")
    issue = document.detected_issue(facts, identified=identified)
    if issue is None:
        return None
    del issue["id"]
    issue["meta"] = {**issue.get("meta", {}), "tag": [
        {"system": DERIVED_TAG_SYSTEM, "code": CONFLICT_TAG_CODE,
         "display": "Derived by the gateway from partners' CPR decisions"}]}
    issue["status"] = "final"
    if not identified:
        del issue["identifiedDateTime"]
    return issue


def default_derivations() -> tuple[Derivation, ...]:
    return (CprConflictRecord(),)
