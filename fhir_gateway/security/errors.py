"""The security package's errors, mapped to an OperationOutcome like every GatewayError.

    GatewayError (fhir_gateway.errors)
     ├── Unauthorized   401   no token, or one that does not verify (WWW-Authenticate says why)
     └── Forbidden      403   a refusal that reveals nothing about any record (a type the
                              role or scopes do not open, a header the role may not send)

A refusal about one record is `NotFound` (404), exactly as if the record were not there:
"forbidden" and "not there" must look the same.
"""

from __future__ import annotations

from ..errors import GatewayError


class Unauthorized(GatewayError):
    status = 401
    default_code = "login"

    def __init__(self, diagnostics: str, *, error: str = "invalid_token") -> None:
        # RFC 6750 3: the challenge names the scheme and, for a bad token, the error.
        challenge = 'Bearer realm="fhir"'
        if error:
            challenge += f', error="{error}"'
        super().__init__(diagnostics, headers={"WWW-Authenticate": challenge})


class Forbidden(GatewayError):
    status = 403
    default_code = "forbidden"
