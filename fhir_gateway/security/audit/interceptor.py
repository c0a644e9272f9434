"""The audit interceptor: one AuditEvent for every interaction, allowed or refused.

Where an event goes (the gate, `security.gate`, sets this up per HTTP request):
- a successful single write: into the write's own store transaction (same commit);
- everything else (reads, searches, refusals, Bundle entries): onto the request's list,
  which the gate writes durably, in one group commit, before the response leaves;
- a caller outside the gate: written at once (blocking) - never from inside an open
  write transaction.

What an event says (auditors may read no clinical content, DOMAIN.md):
- the query (`recorded_query`): method, path (type, id, operation) and every parameter
  NAME with its modifiers and chains, from the URL and from a POST `_search` form body.
  A value is kept only where it says whom or which record was looked up, or how the
  results were shaped; every other value (codes, text, dates, quantities, `_has`,
  `_content`...) becomes `REDACTED`, and so does a name that is no parameter name.
  Kept values:
  - record and person: `_id`, `identifier`, `patient`, `subject`, `encounter`,
    `target`, `entity`, `agent`, `altid` (references and identifiers: whose record);
    a chain keeps its value only when every link is one of these (`subject:Patient.
    identifier`), as the last link's value is then still an identity;
  - demographics (`name`, `family`, `given`, `birthdate`, `address-postalcode`): on a
    Patient search, or chained from `patient`/`subject`: that is how a person is
    looked up, and it is who, not what is wrong with them;
  - result shaping: `_count`, `_sort`, `_include`, `_revinclude`, `_summary`,
    `_elements`, `_total`, `_type`, `_format`, `_pretty` (names of types, elements
    and parameters). Not `_cursor`: it carries the last row's sort values.
- `outcomeDesc` (`failure_description`): the status and the error's issue code. Only a
  401/403 refusal, which is the gateway's own words about the access decision, keeps
  its diagnostics, minus anything quoted from the request (`X-Purpose-Of-Use 'x'`).
  Other diagnostics can echo a body (a resource's id, a value that does not parse).
Events already stored are untouched: the chain is verified over the stored bodies.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any
from urllib.parse import parse_qsl, quote

from ... import jsonio
from ...errors import GatewayError
from ...fhir.interceptors import BaseInterceptor
from ...fhir.request import FhirRequest, FhirResponse, Interaction
from ..access import OVERRODE, PATIENTS
from .chain import AuditTrail
from .events import audit_events

#: the current HTTP request's pending events (set by the gate)
COLLECTOR: ContextVar[list[dict[str, Any]] | None] = ContextVar("audit_collector", default=None)
TX_EVENTS = "audit.tx_events"  # req.state: events for the write's own transaction
SEEN = "audit.seen"
_EMITTED = "audit.emitted"  # req.state: (list, event) of each event emitted for it
_NO_QUERY = frozenset({"read", "vread", "create", "update", "delete"})

#: what stands in for a value (or name) the audit trail does not keep; brackets, which a
#: kept value always has percent-encoded, so the marker cannot be mistaken for one
REDACTED = "[redacted]"
_RECORD_PARAMS = frozenset({"_id", "identifier", "patient", "subject", "encounter",
                            "target", "entity", "agent", "altid"})
_DEMOGRAPHICS = frozenset({"name", "family", "given", "birthdate", "address-postalcode"})
_PERSON_LINKS = frozenset({"patient", "subject"})
_RESULT_PARAMS = frozenset({"_count", "_sort", "_include", "_revinclude", "_summary",
                            "_elements", "_total", "_type", "_format", "_pretty"})
_PARAM_NAME = re.compile(r"[A-Za-z0-9_\-]+(:[A-Za-z0-9_\-]+)*(\.[A-Za-z0-9_\-]+"
                         r"(:[A-Za-z0-9_\-]+)*)*")
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9_\-.$]{1,64}")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
_REFUSALS = (401, 403)
_MAX_FORM_CHARS = 2000


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
        for event in self.events(request, interaction.name, response.status,
                                 patients=patients, what=what):
            self._emit(request, event, in_transaction=True)

    def on_failure(self, request: FhirRequest, interaction: Interaction,
                   error: GatewayError) -> None:
        for event in self.events(request, interaction.name, error.status,
                                 patients=set(request.state.get(PATIENTS) or ()),
                                 what=self._what(request, interaction),
                                 description=failure_description(error)):
            self._emit(request, event, in_transaction=False)

    def event(self, request: FhirRequest, subtype: str, status: int, *,
              patients: set[str] | None = None, what: str | None = None,
              description: str | None = None) -> dict[str, Any]:
        """The interaction's one AuditEvent: for callers that name no patient, or a few
        (more than MAX_PATIENT_ENTITIES would be cut: use `events`)."""
        return self.events(request, subtype, status, patients=patients, what=what,
                           description=description)[0]

    def events(self, request: FhirRequest, subtype: str, status: int, *,
               patients: set[str] | None = None, what: str | None = None,
               description: str | None = None) -> list[dict[str, Any]]:
        """The interaction's AuditEvent, and continuation events naming the patients past
        the first MAX_PATIENT_ENTITIES (`events.audit_events`)."""
        query = None
        if subtype not in _NO_QUERY:
            params = list(request.params)
            if request.method == "POST" and isinstance(request.body, str):
                # a POST _search's form body: its criteria, redacted like the URL's
                params += parse_qsl(request.body[:_MAX_FORM_CHARS], keep_blank_values=True)
            query = recorded_query(request.method, request.path, params)
        entry = request.state.get("entry")
        if entry is not None:
            description = f"Bundle.entry[{entry}]" + (f": {description}" if description else "")
        return audit_events(
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


def recorded_query(method: str, path: str, params: Iterable[tuple[str, str]]) -> str:
    """The query as the audit trail keeps it: `GET Condition?code:text=[redacted]&
    subject=Patient/vis` (the module docstring says which values are kept, and why)."""
    segments = [s for s in path.split("/") if s]
    shown = "/".join(s if _PATH_SEGMENT.fullmatch(s) else REDACTED for s in segments)
    rtype = segments[0] if segments else ""
    pairs = [_recorded_pair(rtype, name, value) for name, value in params]
    return f"{method} {shown}" + (f"?{'&'.join(pairs)}" if pairs else "")


def _recorded_pair(rtype: str, name: str, value: str) -> str:
    if len(name) > 200 or not _PARAM_NAME.fullmatch(name):
        return f"{REDACTED}={REDACTED}"  # not a parameter name: caller's text, unread
    kept = quote(value, safe="/:|,") if _keeps_value(rtype, name) else REDACTED
    return f"{quote(name, safe=':')}={kept}"


def _keeps_value(rtype: str, name: str) -> bool:
    """Whether `name`'s value says only whom / which record, or how results are shaped."""
    links = [link.split(":", 1)[0] for link in name.split(".")]
    if len(links) == 1 and links[0] in _RESULT_PARAMS:
        return True
    if all(link in _RECORD_PARAMS for link in links):
        return True
    *via, last = links
    if last not in _DEMOGRAPHICS:
        return False
    if via:
        return all(link in _PERSON_LINKS for link in via)
    return rtype == "Patient"


def failure_description(error: GatewayError) -> str:
    """outcomeDesc of a failed interaction: `404 not-found`; a refusal's own words too
    (`403 forbidden: the clinician role may not read the audit trail`), minus anything
    it quotes from the request. Other diagnostics may echo a body: left out."""
    code = error.issues[0].code if error.issues else error.default_code
    head = f"{error.status} {code}"
    if error.status not in _REFUSALS:
        return head
    return f"{head}: {_QUOTED.sub(REDACTED, error.diagnostics)}"
