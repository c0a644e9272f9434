"""Who is asking, as the security interceptors fill it in for every interaction.

`SecureCaller` extends the core's `Caller` (client id, role, organisation, scopes,
purpose of use) with what only security needs. A batch or transaction hands the same
caller object to each entry, so an entry is judged as its Bundle's sender, and the
per-request cache (consent decisions, resources shown) is shared by the entries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..fhir.request import Caller

PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PURPOSES = ("TREAT", "ETREAT", "HOPERAT")
#: purposes each role may declare; the first is used when the request names none
ROLE_PURPOSES = {
    "clinician": ("TREAT", "ETREAT"),
    "ambulance": ("ETREAT",),
    "feed": ("HOPERAT", "TREAT"),
    "auditor": ("HOPERAT",),
    "admin": ("HOPERAT",),
}
BREAK_GLASS_ROLES = ("clinician", "ambulance")
MAX_REASON_CHARS = 500


@dataclass(slots=True)
class SecureCaller(Caller):
    partner: str | None = None
    #: the X-Break-Glass-Reason of an ETREAT request: consent is overridden, and recorded
    break_glass: str | None = None
    token_id: str | None = None
    #: per-request memo (consent decisions by patient id); never outlives the request
    memo: dict[str, Any] = field(default_factory=dict)

    @property
    def authenticated(self) -> bool:
        return self.client_id is not None and self.role is not None
