"""What each role may do: the rules, as plain functions over the caller and the request.

| role      | may                                                                   |
|-----------|-----------------------------------------------------------------------|
| clinician | read and search the shared record (not the audit trail); purpose TREAT |
| ambulance | `$emergency-summary`, and Patient search by NHS number only; ETREAT    |
| feed      | create, update, delete its own partner's resources, and read them back |
| auditor   | AuditEvent and Provenance only: no clinical content                   |
| admin     | client management (the `fhir-gateway client` commands): no FHIR data  |

Scopes narrow further: an interaction needs its SMART letter (read `r`, search `s`,
create `c`, update `u`, delete `d`) on the type. A refusal about a type (a search, a
create) is 403: it reveals nothing about any record. A refusal about one record is 404,
word for word what a missing record gets. No one, whatever the role, may create, change
or delete an AuditEvent through the API (405).
"""

from __future__ import annotations

import re

from ..auth.scopes import Scopes
from ..errors import MethodNotAllowed, NotFound
from ..fhir.repository import unknown
from ..fhir.request import FhirRequest, Interaction
from .context import SecureCaller
from .errors import Forbidden

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
AUDIT_TYPES = frozenset({"AuditEvent", "Provenance"})
EMERGENCY_SUMMARY = "$emergency-summary"
ACTION = {"read": "r", "vread": "r", "history-instance": "r", "search-type": "s",
          "history-type": "s", "history-system": "s", "create": "c", "update": "u",
          "delete": "d", "operation": "r"}
READS = frozenset({"read", "vread", "history-instance", "history-type", "history-system",
                   "search-type"})
WRITES = frozenset({"create", "update", "delete"})
#: what the ambulance role may send with a Patient search besides the NHS number
_AMBULANCE_EXTRAS = frozenset({"_format", "_pretty", "_count"})
_NHS_VALUE = re.compile(re.escape(NHS_NUMBER_SYSTEM) + r"\|\d{10}")


def operation_of(req: FhirRequest) -> str | None:
    return next((s for s in reversed(req.segments) if s.startswith("$")), None)


def hidden(interaction: Interaction) -> NotFound:
    """The refusal for one record: exactly what an absent record gets."""
    return unknown(interaction.rtype or "", interaction.rid or "")


def refuse(caller: SecureCaller, interaction: Interaction, why: str) -> Exception:
    if interaction.rid:  # about one record: say only what an absent record would get
        return hidden(interaction)
    return Forbidden(f"the {caller.role} role may not {why}")


def authorize(caller: SecureCaller, req: FhirRequest, interaction: Interaction,
              params: list[tuple[str, str]]) -> None:
    """Raise unless `caller` may attempt `interaction` (visibility of each resource is
    decided later, resource by resource, by `can_see`)."""
    name, rtype = interaction.name, interaction.rtype
    if name == "capabilities":
        return
    if rtype == "AuditEvent" and name in WRITES:
        raise MethodNotAllowed("AuditEvents are written by the gateway only; none can be "
                               "created, changed or deleted through the API")
    role = caller.role
    if role == "admin":
        raise refuse(caller, interaction, "use the FHIR API (client management only)")
    if name in ("batch", "transaction"):
        return  # each entry is checked as its own interaction
    op = operation_of(req)
    if role == "ambulance":
        _ambulance(caller, interaction, op, params)
    elif role == "clinician":
        if name in WRITES:
            raise refuse(caller, interaction, "change the record")
        if name == "operation" and op not in ("$everything", EMERGENCY_SUMMARY):
            raise refuse(caller, interaction, f"run {op}")
        if rtype == "AuditEvent":
            raise refuse(caller, interaction, "read the audit trail")
    elif role == "feed":
        if name == "operation":
            raise refuse(caller, interaction, f"run {op}")
    elif role == "auditor":
        if name not in READS or (rtype is not None and rtype not in AUDIT_TYPES):
            raise refuse(caller, interaction, "see clinical content")
    else:
        raise refuse(caller, interaction, "do anything here")
    letter = ACTION.get(name)
    scope_type = rtype or "*"
    if letter and rtype is not None and not caller_scopes(caller).allows(scope_type, letter):
        raise refuse(caller, interaction, f"{name} {rtype}: the token's scopes do not "
                                          f"include system/{rtype}.{letter}")
    if name == "history-system" and not any("s" in acts for _, acts
                                            in caller_scopes(caller).grants):
        raise refuse(caller, interaction, "search history: no search scope")


def caller_scopes(caller: SecureCaller) -> Scopes:
    return caller.memo["scopes"]


def _ambulance(caller: SecureCaller, interaction: Interaction, op: str | None,
               params: list[tuple[str, str]]) -> None:
    if op == EMERGENCY_SUMMARY and interaction.rtype == "Patient":
        return  # however the route names it (type or instance level)
    if interaction.name == "search-type" and interaction.rtype == "Patient":
        names = [k for k, _ in params if k not in _AMBULANCE_EXTRAS]
        values = [v for k, v in params if k == "identifier"]
        if names == ["identifier"] and len(values) == 1 and _NHS_VALUE.fullmatch(values[0]):
            return
        raise Forbidden("the ambulance role may search Patients by NHS number only: "
                        f"identifier={NHS_NUMBER_SYSTEM}|NNNNNNNNNN")
    raise refuse(caller, interaction, "do more than the emergency summary and a Patient "
                                      "search by NHS number")
