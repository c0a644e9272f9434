"""Framework-free request and response objects: what every FHIR interaction takes and gives.

The HTTP layer builds a `FhirRequest` from a Starlette request; a Bundle builds one per
entry. Interceptors (auth, consent, audit) see exactly these objects, so a batch entry is
checked the same way as a direct call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Caller:
    """Who is asking (filled in by the auth interceptor; anonymous until it exists)."""

    client_id: str | None = None
    role: str | None = None
    organization: str | None = None
    scopes: frozenset[str] = frozenset()
    purpose_of_use: str | None = None


#: req.state key: set once some of the request's data is committed, so that a failure
#: after it (its audit record) is not answered as "nothing was stored; try again"
COMMITTED = "committed"


@dataclass(slots=True)
class FhirRequest:
    method: str
    path: str  # relative to the FHIR base, no leading slash: "Patient/1/_history/2"
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased names
    body: Any = None  # parsed JSON, or None
    base_url: str = ""
    request_id: str = ""
    caller: Caller = field(default_factory=Caller)
    #: per-request state for interceptors (HAPI's RequestDetails user data)
    state: dict[str, Any] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def segments(self) -> list[str]:
        return [s for s in self.path.strip("/").split("/") if s]

    def prefer(self, key: str) -> str | None:
        """A `Prefer` header token's value, e.g. prefer("return") -> "minimal"."""
        for part in (self.header("prefer") or "").split(";"):
            for item in part.split(","):
                name, _, value = item.strip().partition("=")
                if name.strip().lower() == key:
                    return value.strip().strip('"').lower()
        return None


@dataclass(slots=True)
class FhirResponse:
    status: int
    resource: dict[str, Any] | None = None
    #: the stored JSON text, sent as is when nothing needs changing (the read fast path)
    raw: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    #: set for a non-FHIR-JSON body in `raw` (e.g. "text/html; charset=utf-8")
    media_type: str | None = None


@dataclass(frozen=True, slots=True)
class Interaction:
    """What a request asks for, named as the CapabilityStatement names interactions."""

    name: str  # read vread update delete history-instance history-type history-system
    #            create search-type capabilities batch transaction operation
    rtype: str | None = None
    rid: str | None = None
    operation: str | None = None


#: `_format` values that ask for FHIR JSON (R4 3.1.0.1.9)
JSON_FORMATS = frozenset({"json", "application/json", "application/fhir+json",
                          "application/json+fhir"})


def asks_for_json(fmt: str) -> bool:
    """Whether a `_format` value asks for FHIR JSON: parameters (charset) aside, and a `+`
    sent unescaped in the query string (read as a space) taken as the `+` it was."""
    return fmt.split(";")[0].strip().lower().replace(" ", "+") in JSON_FORMATS
