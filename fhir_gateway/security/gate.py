"""The gate: how the HTTP edge runs a FHIR request when security is on.

    handle(request)
      ├─ a single write (create, update, delete, conditional too): one store transaction
      │  holds the write and its AuditEvent (sealed on an in-transaction slot), retried
      │  whole on a version race; so no write is ever stored without its audit record.
      │  With audit off the write still runs in one transaction (its search and claims)
      └─ anything else: the router as usual
    then, before the response leaves: every other event of the request (reads, refusals,
    Bundle entries, a crash) is made durable (journalled and fsynced, or committed in a
    group commit). If that fails, the request fails (503): nothing is answered without
    its audit record; but when some of its data was already committed (a Bundle's
    entries), 500 saying the data was stored (`StoredUnaudited`), so it is not resent.
    The HTTP edge asks (DEFER_DURABILITY) to wait for that on the event loop
    (`audit_settled`) rather than on a worker thread. An auditor's request that may read
    AuditEvents first waits until this process's journal is stored.

Requests that never reach an interaction (no such endpoint, a server error) are audited
here too, and so are those the HTTP edge refuses before handing them over (`refused`:
a format, media type, unreadable or oversized body).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from ..errors import GatewayError, Issue
from ..fhir.interactions import FhirContext
from ..fhir.request import COMMITTED, Caller, FhirRequest, FhirResponse, Interaction
from ..fhir.router import FhirRouter
from ..store.base import VersionConflict
from .audit.chain import AuditTrail, AuditUnavailable, Slot
from .audit.interceptor import (
    COLLECTOR,
    SEEN,
    TX_EVENTS,
    AuditInterceptor,
    failure_description,
)

log = logging.getLogger("fhir_gateway.audit")
WRITE_ATTEMPTS = 20
_READ_METHODS = frozenset({"GET", "HEAD"})
_METHOD_SUBTYPE = {"GET": "read", "HEAD": "read", "POST": "create", "PUT": "update",
                   "DELETE": "delete", "PATCH": "patch"}


#: req.state keys: set by an async caller that will await `audit_settled` before answering
DEFER_DURABILITY = "audit.defer_durability"
DURABILITY = "audit.durability"


async def audit_settled(req: FhirRequest) -> None:
    """Wait (without holding a worker thread) until the request's audit events are
    durable; raises AuditUnavailable (503) if they cannot be. Call before answering."""
    durability = req.state.pop(DURABILITY, None)
    if durability is not None:
        try:
            await durability.settled()
        except AuditUnavailable as exc:
            raise stored_unaudited(req, exc) from exc


class StoredUnaudited(GatewayError):
    """The request's data was committed, then its audit record could not be written. Not
    the 503 "nothing was answered; try again": a retry would store the data again."""

    status = 500
    default_code = "exception"


def stored_unaudited(req: FhirRequest, error: AuditUnavailable) -> GatewayError:
    """What to raise when the audit write failed: `error` itself unless some of the
    request's data was already committed, then a 500 that says so (logged loudly)."""
    if not req.state.get(COMMITTED):
        return error
    return unaudited_after_commit(f"{req.method} {req.path or '/'}", req.request_id, error)


def unaudited_after_commit(what: str, request_id: str, error: Exception) -> StoredUnaudited:
    log.critical("%s (request %s): the data WAS committed but its audit record could "
                 "not be written: %s", what, request_id, error)
    message = (f"the request's data WAS stored, but its audit record could not be written "
               f"({error.__class__.__name__}); do not resend it unchanged: read back what "
               f"was stored first; quote request id {request_id}")
    return StoredUnaudited(message, issues=[Issue(message, code="exception",
                                                  severity="fatal")])


def may_read_audit(req: FhirRequest) -> bool:
    """Whether a request could return AuditEvents: it names them (type, compartment,
    `_type`, `_include`/`_revinclude`, `_has`), or works across types (whole-system
    search or history, batch/transaction). Only these wait for the journal's import."""
    first = req.segments[0] if req.segments else ""
    if not first or first[0] in "_$" or "AuditEvent" in req.path:
        return True
    return any("AuditEvent" in k or "AuditEvent" in v for k, v in req.params)


class SecureGate:
    def __init__(self, router: FhirRouter, trail: AuditTrail | None,
                 audit: AuditInterceptor | None, *,
                 identify: Callable[[FhirRequest], Caller] | None = None) -> None:
        self.router = router
        self.trail = trail
        self.audit = audit
        #: who is asking, for the audit record of a request that never reached the router
        self.identify = identify

    def handle(self, req: FhirRequest) -> FhirResponse:
        if self.trail is None or self.audit is None:
            # Unaudited, a single write still runs in one store transaction: a conditional
            # create's search and its create, and the NHS-number claim, must be one unit.
            return self._write(req) if self._is_single_write(req) else self._route(req)
        pending: list[dict[str, Any]] = []
        token = COLLECTOR.set(pending)
        try:
            if self._may_be_shown_audit(req):
                # Before any snapshot is taken: the events this process journalled are
                # stored, so an auditor finds the accesses just answered. Inside the try:
                # a trail that cannot catch up (503) is audited like any refusal.
                self.trail.catch_up()
            if self._is_single_write(req):
                return self._write(req)
            return self._route(req)
        except GatewayError as exc:
            if not req.state.get(SEEN):
                self._identify(req)
                pending.append(self.audit.event(
                    req, _METHOD_SUBTYPE.get(req.method, "operation"), exc.status,
                    description=failure_description(exc)))
            raise
        except Exception as exc:
            self._identify(req)
            pending.append(self.audit.event(
                req, _METHOD_SUBTYPE.get(req.method, "operation"), 500,
                description=f"500 internal error ({type(exc).__name__})"))
            raise
        finally:
            COLLECTOR.reset(token)
            try:
                if req.state.get(DEFER_DURABILITY):
                    # the HTTP edge awaits it (`audit_settled`) before anything is sent;
                    # a journal that cannot be appended to fails here already
                    req.state[DURABILITY] = self.trail.submit(pending)
                else:
                    self.trail.record(pending)  # durable before any answer leaves
            except AuditUnavailable as exc:
                raise stored_unaudited(req, exc) from exc

    def refused(self, req: FhirRequest, error: GatewayError) -> None:
        """Audit a request the HTTP edge refused before `handle` (406, 415, 400, 413), as
        its caller when it carries a valid token. Durable before the answer: awaited by
        `audit_settled` when the request defers durability, else written at once."""
        if self.trail is None or self.audit is None:
            return
        self._identify(req)
        interaction = self._routed(req)
        subtype = interaction.name if interaction else _METHOD_SUBTYPE.get(req.method,
                                                                           "operation")
        what = f"{interaction.rtype}/{interaction.rid}" \
            if interaction and interaction.rtype and interaction.rid else None
        event = self.audit.event(req, subtype, error.status, what=what,
                                 description=failure_description(error))
        if req.state.get(DEFER_DURABILITY):
            req.state[DURABILITY] = self.trail.submit([event])
        else:
            self.trail.record([event])

    def _routed(self, req: FhirRequest) -> Interaction | None:
        """The interaction the request asks for, as routing names it (None: no route)."""
        try:
            return self.router.route(req)[0]
        except GatewayError:
            return None

    def _may_be_shown_audit(self, req: FhirRequest) -> bool:
        """Whether the request may read AuditEvents and its caller may see them: only an
        auditor ever is (anyone, with auth off), so a clinician's batch or a feed's
        transaction does not wait for the journal's import."""
        if not may_read_audit(req):
            return False
        if self.identify is None:
            return True
        self._identify(req)  # the access check reuses the caller, or refuses it (audited)
        return getattr(req.caller, "role", None) == "auditor"

    def _route(self, req: FhirRequest) -> FhirResponse:
        if req.method not in _READ_METHODS:
            return self.router.handle(req)
        # A read runs in one read transaction: the interaction, the caller's client and
        # consent checks and any includes see one snapshot of the store, and pay for one
        # BEGIN/COMMIT instead of one per lookup. It ends before the audit commit is
        # awaited, so no snapshot is held open while waiting.
        with self.router.repository.engine.session(write=False):
            return self.router.handle(req)

    def _identify(self, req: FhirRequest) -> None:
        if self.identify is None or getattr(req.caller, "client_id", None):
            return
        with suppress(GatewayError):  # an unauthenticated request is recorded as such
            req.caller = self.identify(req)

    def _is_single_write(self, req: FhirRequest) -> bool:
        if req.method not in ("POST", "PUT", "DELETE"):
            return False
        try:
            interaction = self.router.route(req)[0]
        except GatewayError:
            return False
        return interaction.name in ("create", "update", "delete")

    def _write(self, req: FhirRequest) -> FhirResponse:
        repository = self.router.repository
        for _attempt in range(WRITE_ATTEMPTS):
            events: list[dict[str, Any]] = []
            slot: Slot | None = None
            req.state[TX_EVENTS] = events
            try:
                with repository.transaction() as session:
                    ctx = FhirContext(repository, self.router.interceptors, session=session)
                    response = self.router.handle(req, ctx=ctx)
                    if events and self.trail is not None:
                        slot = self.trail.slot()
                        slot.append(session, events)
            except VersionConflict:
                if slot is not None:
                    slot.finish(committed=False)
                continue
            except BaseException:
                if slot is not None:
                    slot.finish(committed=False)
                raise
            finally:
                req.state.pop(TX_EVENTS, None)
            req.state[COMMITTED] = True
            if slot is not None:
                slot.finish(committed=True)
            return response
        from ..errors import Conflict

        raise Conflict("too many concurrent writers; nothing was written; try again")
