"""The gateway's exception family, mapped to an OperationOutcome at the API edge.

    GatewayError                     every error a caller can be told about
     ├── BadRequest          400     unparseable or structurally invalid input
     │    └── InvalidResource 400    a resource the FHIR model rejects
     ├── NotFound            404     unknown type, id or version (also "not allowed to see")
     ├── MethodNotAllowed    405
     ├── Conflict            409     e.g. a version race lost too many times
     ├── Gone                410     the resource is deleted
     ├── PreconditionFailed  412     If-Match on an old version; ambiguous conditional match
     ├── PayloadTooLarge     413
     ├── UnsupportedMediaType 415
     └── Unprocessable       422     valid FHIR that breaks a rule (profiles, business rules)

Every error carries one or more `Issue`s: what was wrong, and where (a FHIRPath-like
expression), so the caller can fix the request without reading server logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True, slots=True)
class Issue:
    """One OperationOutcome.issue: severity, code (IssueType), diagnostics and location."""

    diagnostics: str
    code: str = "invalid"
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def to_fhir(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            out["expression"] = list(self.expression)
        return out


class GatewayError(Exception):
    """Base of every error reported to a caller as an OperationOutcome."""

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "exception"

    def __init__(
        self,
        diagnostics: str,
        *,
        expression: str | None = None,
        code: str | None = None,
        issues: list[Issue] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        first = Issue(
            diagnostics=diagnostics,
            code=code or self.default_code,
            expression=(expression,) if expression else (),
        )
        self.issues: list[Issue] = issues or [first]
        self.headers: dict[str, str] = headers or {}

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


class BadRequest(GatewayError):
    status = 400
    default_code = "invalid"


class InvalidResource(BadRequest):
    default_code = "structure"


class NotFound(GatewayError):
    status = 404
    default_code = "not-found"


class MethodNotAllowed(GatewayError):
    status = 405
    default_code = "not-supported"


class Conflict(GatewayError):
    status = 409
    default_code = "conflict"


class Gone(GatewayError):
    status = 410
    default_code = "deleted"


class PreconditionFailed(GatewayError):
    status = 412
    default_code = "conflict"


class PayloadTooLarge(GatewayError):
    status = 413
    default_code = "too-costly"


class UnsupportedMediaType(GatewayError):
    status = 415
    default_code = "not-supported"


class NotAcceptable(GatewayError):
    status = 406
    default_code = "not-supported"


class Unprocessable(GatewayError):
    status = 422
    default_code = "processing"


class Unavailable(GatewayError):
    """The gateway's own set-up stops it serving this (a partner mapping that does not
    load): nothing was done, and the same request can succeed once the operator fixes it."""

    status = 503


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    """An OperationOutcome resource (as a dict) holding `issues`."""
    return {"resourceType": "OperationOutcome", "issue": [i.to_fhir() for i in issues]}


def information(diagnostics: str) -> dict[str, Any]:
    """A one-issue informational OperationOutcome (e.g. for `Prefer: return=OperationOutcome`)."""
    return operation_outcome([Issue(diagnostics=diagnostics, code="informational",
                                    severity="information")])
