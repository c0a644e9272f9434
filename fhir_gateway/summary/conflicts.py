"""The stored DetectedIssue for partners whose current CPR decisions differ.

INTERFACE.md holds "two partners disagree on a safety fact" as a `DetectedIssue`
referencing both, so a clinician's system searching `DetectedIssue?patient=...` finds it,
not only a crew reading `$emergency-summary`. One per person, with an id derived from the
Patient's (`facts.conflict_issue_id`): created when the person's current decisions come to
differ, updated when what differs changes, and deleted when they agree again (its history
keeps what it said). "Current" and "differ" are the summary's own rules (`facts.gather`,
`Facts.conflict`), judged with no caller's restrictions, so the stored issue and the
summary's agree on the day the data changed.

It is kept in step by the repository (`fhir.derivations`): every change to a CPR decision
(an Observation, Flag or advance-directive Consent, before or after), and every Provenance
naming one, marks its Patient, and the issue is worked out again just before the
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from .. import jsonio
from ..fhir.interactions import FhirContext
from ..fhir.interceptors import InterceptorChain
from ..fhir.request import FhirRequest
from ..security.consent import local_refs, reference_ids
from ..store.base import StoreError
from ..store.query import Criterion, IndexQuery, TokenPredicate
from . import document
from . import terms as t
from .facts import Facts, conflict_issue_id, gather, is_cpr_record, is_stored_conflict
from .terms import LONDON

if TYPE_CHECKING:
    from ..fhir.derivations import Derivation
    from ..fhir.repository import Repository
    from ..store.base import StoreSession

log = logging.getLogger("fhir_gateway.summary.conflicts")
#: the types that can hold a CPR decision (`facts.is_cpr_record`)
DECISION_TYPES = frozenset({"Observation", "Flag", "Consent"})
_TARGET = "target:"


def london_today() -> date:
    return datetime.now(LONDON).date()


class CprConflictRecord:
    """Keeps each Patient's stored CPR-conflict DetectedIssue in step (a Derivation)."""

    watches = frozenset({*DECISION_TYPES, "Provenance"})

    def __init__(self, today: Callable[[], date] | None = None) -> None:
        """`today`: the London day review dates are judged on (default: the clock's)."""
        self.today = today

    def touched(self, before: dict[str, Any] | None, after: dict[str, Any] | None) -> set[str]:
        """Keys: `Patient/<id>` of a CPR decision's person; `target:<Type>/<id>` of each
        decision a Provenance names (who recorded a decision decides whose it is, and a
        feed writing over REST sends the Provenance after the decision)."""
        keys: set[str] = set()
        for r in (before, after):
            if r is None:
                continue
            if r.get("resourceType") == "Provenance":
                keys.update(f"{_TARGET}{rtype}/{rid}" for rtype, rid
                            in local_refs(r.get("target")) if rtype in DECISION_TYPES)
            else:
                keys.update(f"Patient/{pid}" for pid in _patients_of_decision(r))
        return keys

    def bring_up_to_date(self, repository: Repository, session: StoreSession,
                         keys: set[str]) -> None:
        ctx = FhirContext(repository, InterceptorChain(), session=session)
        pids = {k.removeprefix("Patient/") for k in keys if k.startswith("Patient/")}
        for key in sorted(k for k in keys if k.startswith(_TARGET)):
            rtype, _, rid = key.removeprefix(_TARGET).partition("/")
            target = session.current(rtype, rid)
            if target is not None and not target.deleted and target.body:
                pids.update(_patients_of_decision(jsonio.loads_trusted(target.body)))
        self.work_out(ctx, session, pids)

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
        issue_id = conflict_issue_id(pid)
        wanted = None
        current = session.current("Patient", pid)
        if current is not None and not current.deleted and current.body:
            patient = jsonio.loads_trusted(current.body)
            request = FhirRequest(method="GET", path=f"Patient/{pid}")
            wanted = stored_issue(gather(ctx, request, patient,
                                          today=(self.today or london_today)()), issue_id)
        if wanted is not None:
            result = ctx.repository.update(wanted, rtype="DetectedIssue", rid=issue_id,
                                           session=session)
            return None if not result.changed else "created" if result.created else "updated"
        existing = session.current("DetectedIssue", issue_id)
        if existing is not None and not existing.deleted:
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
    seen: set[str] = set()
    for pids in _batches(repository, batch, seen):
        with repository.transaction() as session:
            record.work_out(FhirContext(repository, InterceptorChain(), session=session),
                            session, pids, done)
    return done


def _batches(repository: Repository, batch: int, seen: set[str]) -> Iterator[set[str]]:
    """Patient ids to work out, `batch` at a time: every live Patient, then the Patients
    of stored issues not yet seen."""
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


def stored_issue(facts: Facts, issue_id: str) -> dict[str, Any] | None:
    """The DetectedIssue to store for these facts (None when the decisions agree)."""
    identified = max((str((f.resource.get("meta") or {}).get("lastUpdated") or "")
                      for f in facts.cpr), default="")
    issue = document.detected_issue(facts, identified=identified)
    if issue is None:
        return None
    issue["id"] = issue_id
    issue["status"] = "final"
    if not identified:
        del issue["identifiedDateTime"]
    return issue


def default_derivations() -> tuple[Derivation, ...]:
    return (CprConflictRecord(),)
