"""AuditEvents shaped like IHE Basic Audit Log Patterns (RESTful activity).

type `rest`; subtype the FHIR interaction (`read`, `search-type`, ...); action C/R/U/D/E;
outcome 0 / 4 (refused or invalid) / 8 (server failure); agents: the client (client id as
`altId` and identifier, its role, purpose of use, and the break-glass policy when used),
the organisation it speaks for (ODS code) and the gateway; entities: each patient whose
record was shown or written, the resource written or read, the query (base64, as BALP
asks) and the request id. An event names at most MAX_PATIENT_ENTITIES patients: one
interaction that touched more (a large search page, a partner file) is recorded by
`audit_events` as that event plus continuation events naming the rest, each a copy of it
(same interaction, client, outcome, request id) with a `continues` entity naming the first
event; a continuation is not a further access (the accesses summary skips it).
Searchable with the R4 AuditEvent parameters: `patient`,
`date`, `agent:identifier` (organisation), `altid` (client), `policy` (break-glass),
`subtype`, `outcome`, `entity`.

Auditors may read no clinical content: the query and `outcomeDesc` given here are already
redacted by the caller (`audit.interceptor.recorded_query` and `failure_description` say
what is kept); this module stores what it is given.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from typing import Any

from ...search.values import now_instant
from ..consent import ODS_SYSTEM

EVENT_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/audit-event-type"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
INTERACTION_SYSTEM = "http://hl7.org/fhir/restful-interaction"
PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
BALP_ENTITY_TYPE = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
CLIENT_SYSTEM = "https://fhir.example.org/shared-care-record/Id/oauth-client"
ROLE_SYSTEM = "https://fhir.example.org/shared-care-record/CodeSystem/client-role"
BREAK_GLASS_POLICY = "https://fhir.example.org/shared-care-record/policy/break-glass"
MAX_PATIENT_ENTITIES = 1000
#: entity.description of the entity that marks a continuation event (`audit_events`)
CONTINUES = "continues"
_ACTION = {"create": "C", "read": "R", "vread": "R", "history-instance": "R",
           "capabilities": "R", "update": "U", "delete": "D"}


def time_ordered_id() -> str:
    """A UUIDv7-style id (RFC 9562): the time first, so each writer appends to the end of
    the store's indexes instead of dirtying random pages (most of an audit write's cost)."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant
    return str(uuid.UUID(int=value))


def outcome_code(status: int) -> str:
    return "0" if status < 400 else ("4" if status < 500 else "8")


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    # Codes only: the code systems name them, and every display would be one more value to
    # index and store per request (`display` is kept in calls for the reader of this code).
    return {"system": system, "code": code}


def audit_event(*, subtype: str, status: int, caller: Any, observer: str,
                destination: str, request_id: str = "", description: str | None = None,
                patients: Any = (), what: str | None = None, query: str | None = None,
                overrode_consent: bool = False, event_type: dict[str, Any] | None = None,
                subtype_system: str = INTERACTION_SYSTEM,
                action: str | None = None) -> dict[str, Any]:
    """One AuditEvent (a dict); `caller` is a Caller (possibly anonymous). It names the
    first MAX_PATIENT_ENTITIES of `patients` (in sorted order) only: use `audit_events`
    where there may be more."""
    purpose = getattr(caller, "purpose_of_use", None)
    break_glass = getattr(caller, "break_glass", None)
    client_id = getattr(caller, "client_id", None)
    purposes = [{"coding": [_coding(PURPOSE_SYSTEM, purpose)]}] if purpose else []
    if break_glass:
        purposes.append({"coding": [_coding(PURPOSE_SYSTEM, "BTG", "break the glass")]})
    client: dict[str, Any] = {
        "type": {"coding": [_coding(DCM, "110153", "Source Role ID")]},
        "who": ({"identifier": {"system": CLIENT_SYSTEM, "value": client_id},
                 "display": client_id} if client_id else {"display": "unauthenticated"}),
        "requestor": True,
    }
    if client_id:
        client["altId"] = client_id
    if getattr(caller, "role", None):
        client["role"] = [{"coding": [_coding(ROLE_SYSTEM, caller.role)]}]
    if purposes:
        client["purposeOfUse"] = purposes
    if break_glass:
        client["policy"] = [BREAK_GLASS_POLICY]
    agents = [client]
    org = getattr(caller, "organization", None)
    if org:
        agents.append({"type": {"text": "organisation of the requesting client"},
                       "who": {"identifier": {"system": ODS_SYSTEM, "value": org}},
                       "requestor": False})
    agents.append({"type": {"coding": [_coding(DCM, "110152", "Destination Role ID")]},
                   "who": {"display": "fhir-gateway"}, "requestor": False,
                   "network": {"address": destination, "type": "5"}})
    entities: list[dict[str, Any]] = []
    for pid in sorted(patients)[:MAX_PATIENT_ENTITIES]:
        entities.append({"what": {"reference": f"Patient/{pid}"},
                         "type": _coding(ENTITY_TYPE, "1", "Person"),
                         "role": _coding(OBJECT_ROLE, "1", "Patient")})
    if what:
        entities.append({"what": {"reference": what}, "type": _coding(ENTITY_TYPE, "2"),
                         "role": _coding(OBJECT_ROLE, "4", "Domain Resource")})
    if query is not None:
        entities.append({"type": _coding(ENTITY_TYPE, "2"),
                         "role": _coding(OBJECT_ROLE, "24", "Query"),
                         "query": base64.b64encode(query.encode("utf-8")).decode("ascii")})
    if request_id:
        entities.append({"what": {"identifier": {"value": request_id}},
                         "type": _coding(BALP_ENTITY_TYPE, "XrequestId")})
    if break_glass:
        entities.append({"type": _coding(ENTITY_TYPE, "2"), "description": "break-glass",
                         "detail": [{"type": "reason", "valueString": break_glass},
                                    {"type": "consent-overridden",
                                     "valueString": "true" if overrode_consent else "false"}]})
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": time_ordered_id(),
        "type": event_type or _coding(EVENT_TYPE_SYSTEM, "rest", "Restful Operation"),
        "subtype": [_coding(subtype_system, subtype)],
        "action": action or _ACTION.get(subtype, "E"),
        "recorded": now_instant(),
        "outcome": outcome_code(status),
        "agent": agents,
        "source": {"observer": {"display": observer},
                   "type": [_coding(SOURCE_TYPE, "4", "Application Server")]},
    }
    if description:
        event["outcomeDesc"] = description[:1000]
    if purposes:
        event["purposeOfEvent"] = purposes
    if entities:
        event["entity"] = entities
    return event


def audit_events(**kwargs: Any) -> list[dict[str, Any]]:
    """The AuditEvents of one interaction (`audit_event`'s arguments): one event, plus a
    continuation event for each further MAX_PATIENT_ENTITIES of `patients`, so that no
    patient goes unnamed (a `patient=` search, and so the patient report, finds each)."""
    patients = sorted(set(kwargs.pop("patients", None) or ()))
    parts = [patients[i:i + MAX_PATIENT_ENTITIES]
             for i in range(0, len(patients), MAX_PATIENT_ENTITIES)] or [[]]
    first = audit_event(patients=parts[0], **kwargs)
    events = [first]
    for number, part in enumerate(parts[1:], 2):
        event = audit_event(patients=part, **kwargs)
        event["entity"].append({
            "type": _coding(ENTITY_TYPE, "2"), "description": CONTINUES,
            "detail": [{"type": "event", "valueString": first["id"]},
                       {"type": "part", "valueString": f"{number} of {len(parts)}"}]})
        events.append(event)
    return events


def held_retry_events(summary: Any, *, observer: str, destination: str,
                      request_id: str) -> list[dict[str, Any]]:
    """The AuditEvents of other partners' held records a run's retry applied (a loader
    Summary's `others`): each partner's write is on the trail, naming its Patients, as its
    own system agent (`held-record-retry/PARTNER`), since the run's own event speaks for
    the posting partner only and its answer never mentions them."""
    from ...fhir.request import Caller

    events: list[dict[str, Any]] = []
    for partner, patients in sorted((getattr(summary, "others_patients", None) or {}).items()):
        counts = ", ".join(f"{k} {v}" for k, v in summary.others.get(partner, {}).items())
        events += audit_events(
            subtype="create", action="C", status=200,
            caller=Caller(client_id=f"held-record-retry/{partner}", role="feed"),
            observer=observer, destination=destination, request_id=request_id,
            patients=patients,
            description=f"{partner} records held for review, applied by the retry after "
                        f"another partner's run: {counts}")
    return events


def is_continuation(event: dict[str, Any]) -> bool:
    """Whether `event` only continues another's list of patients (`audit_events`)."""
    return any(e.get("description") == CONTINUES for e in event.get("entity") or [])
