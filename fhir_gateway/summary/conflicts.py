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

What it cannot know: a decision passing its review date changes no stored data, so the
stored issue is worked out again only at the person's next change. `$emergency-summary`
works conflicts out afresh on every call and never shows this stored issue as well.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from .. import jsonio
from ..fhir.interactions import FhirContext
from ..fhir.interceptors import InterceptorChain
from ..fhir.request import FhirRequest
from ..security.consent import local_refs, reference_ids
from ..store.base import StoreError
from . import document
from .facts import Facts, conflict_issue_id, gather, is_cpr_record
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
        for pid in sorted(pids):
            try:
                with session.savepoint():
                    self._one(ctx, session, pid)
            except StoreError:
                raise  # the store itself failed: the whole transaction must
            except Exception:
                # Never lose partners' data for a derived record: the decisions commit,
                # $emergency-summary still works the conflict out, and this is logged.
                log.exception("the stored CPR-conflict DetectedIssue of Patient/%s could "
                              "not be brought up to date", pid)

    def _one(self, ctx: FhirContext, session: StoreSession, pid: str) -> None:
        issue_id = conflict_issue_id(pid)
        wanted = None
        current = session.current("Patient", pid)
        if current is not None and not current.deleted and current.body:
            patient = jsonio.loads_trusted(current.body)
            request = FhirRequest(method="GET", path=f"Patient/{pid}")
            wanted = stored_issue(gather(ctx, request, patient,
                                          today=(self.today or london_today)()), issue_id)
        if wanted is not None:
            ctx.repository.update(wanted, rtype="DetectedIssue", rid=issue_id, session=session)
            return
        existing = session.current("DetectedIssue", issue_id)
        if existing is not None and not existing.deleted:
            ctx.repository.delete("DetectedIssue", issue_id, session=session)


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
