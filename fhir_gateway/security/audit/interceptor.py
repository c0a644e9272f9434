"""The audit interceptor: one AuditEvent for every interaction, allowed or refused.

Where an event goes (the gate, `security.gate`, sets this up per HTTP request):
- a successful single write: into the write's own store transaction (same commit);
- everything else (reads, searches, refusals, Bundle entries): onto the request's list,
  which the gate writes durably, in one group commit, before the response leaves;
- a caller outside the gate: written at once (blocking) - never from inside an open
  write transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any
from urllib.parse import urlencode

from ... import jsonio
from ...errors import GatewayError
from ...fhir.interceptors import BaseInterceptor
from ...fhir.request import FhirRequest, FhirResponse, Interaction
from ..access import OVERRODE, PATIENTS
from .chain import AuditTrail
from .events import audit_event

#: the current HTTP request's pending events (set by the gate)
COLLECTOR: ContextVar[list[dict[str, Any]] | None] = ContextVar("audit_collector", default=None)
TX_EVENTS = "audit.tx_events"  # req.state: events for the write's own transaction
SEEN = "audit.seen"
_EMITTED = "audit.emitted"  # req.state: (list, event) of each event emitted for it
_QUERY_INTERACTIONS = frozenset({"search-type", "history-type", "history-system",
                                 "history-instance", "operation", "batch", "transaction"})


class AuditInterceptor(BaseInterceptor):
    def __init__(self, trail: AuditTrail, *,
                 patients_of: Callable[[dict[str, Any]], list[str]]) -> None:
        self.trail = trail
        self.patients_of = patients_of
        self.observer = f"fhir-gateway {trail.instance}"

    def on_response(self, request: FhirRequest, interaction: Interaction,
                    response: FhirResponse) -> None:
        patients = set(request.state.get(PATIENTS) or ())
        what = self._what(request, interaction)
        if interaction.name in ("create", "update") and response.raw is not None:
            written = jsonio.loads_trusted(response.raw)
            patients.update(self.patients_of(written))
            what = f"{written['resourceType']}/{written['id']}/_history/" \
                   f"{(written.get('meta') or {}).get('versionId', '')}"
        event = self.event(request, interaction.name, response.status, patients=patients,
                           what=what)
        self._emit(request, event, in_transaction=True)

    def on_failure(self, request: FhirRequest, interaction: Interaction,
                   error: GatewayError) -> None:
        event = self.event(request, interaction.name, error.status,
                           patients=set(request.state.get(PATIENTS) or ()),
                           what=self._what(request, interaction),
                           description=f"{error.status} {error.diagnostics}")
        self._emit(request, event, in_transaction=False)

    def event(self, request: FhirRequest, subtype: str, status: int, *,
              patients: set[str] | None = None, what: str | None = None,
              description: str | None = None) -> dict[str, Any]:
        query = None
        if subtype in _QUERY_INTERACTIONS or subtype not in ("read", "vread", "create",
                                                             "update", "delete"):
            params = list(request.params)
            if request.method == "POST" and isinstance(request.body, str):
                params.append(("_body", request.body[:2000]))
            query = f"{request.method} {request.path}" + (f"?{urlencode(params)}"
                                                          if params else "")
        entry = request.state.get("entry")
        if entry is not None:
            description = f"Bundle.entry[{entry}]" + (f": {description}" if description else "")
        return audit_event(
            subtype=subtype, status=status, caller=request.caller, observer=self.observer,
            destination=request.base_url, request_id=request.request_id,
            description=description, patients=patients or (), what=what, query=query,
            overrode_consent=bool(request.state.get(OVERRODE)))

    @staticmethod
    def _what(request: FhirRequest, interaction: Interaction) -> str | None:
        if interaction.rtype and interaction.rid:
            return f"{interaction.rtype}/{interaction.rid}"
        return None

    def on_rolled_back(self, request: FhirRequest) -> None:
        """A transaction attempt that ran this entry was rolled back (and is retried with
        fresh entries): its events would record writes and reads that never happened."""
        for events, event in request.state.pop(_EMITTED, []):
            for i, e in enumerate(events):
                if e is event:
                    del events[i]
                    break

    def _emit(self, request: FhirRequest, event: dict[str, Any], *,
              in_transaction: bool) -> None:
        request.state[SEEN] = True
        tx = request.state.get(TX_EVENTS)
        events = tx if in_transaction and tx is not None else COLLECTOR.get()
        if events is None:
            self.trail.record([event])
            return
        events.append(event)
        request.state.setdefault(_EMITTED, []).append((events, event))
