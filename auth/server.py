"""The token endpoint: authlib's AuthorizationServer with SMART Backend Services.

One grant, `client_credentials`, and one client authentication method, `private_key_jwt`
(`assertion.verify_assertion`). The access token is a signed JWT (RFC 9068: `typ`
`at+jwt`, ES384, `kid` of the gateway's current key) for at most five minutes, its `aud`
the FHIR base and its `scope` the request cut down to the client's role
(`scopes.grant`). Nothing is stored for a token: any instance checks it with the JWKS.

authlib's server side is synchronous and framework-neutral: `TokenEndpoint.handle` takes
a `TokenRequest` (method, URL, headers, form) and returns a `TokenResult` (status, JSON
body, headers, and for the audit trail who asked and what happened); the HTTP route runs
it in a worker thread.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientCredentialsGrant,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
)
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from joserfc import jwt

from ..store.base import StoreEngine
from .assertion import ASSERTION_TYPE, AssertionRefused, b64url_json_object, verify_assertion
from .keys import ALGORITHM, KeyRing
from .registry import Client, ClientRegistry
from .scopes import grant

ACCESS_TOKEN_LIFETIME_S = 300
MAX_FORM_BYTES = 16 * 1024
#: private claim of an access token: the `created` instant (microseconds) of the client
#: registration it was issued under. A token is good only while that registration is the
#: current one, so removing a client and registering the id again (say with a fresh key
#: after a leak) does not revive the old registration's tokens (`access.authenticate`).
REGISTRATION_CLAIM = "client_registered"


@dataclass(slots=True)
class TokenRequest:
    method: str
    url: str  # this endpoint's public URL (the assertion's aud)
    issuer: str  # the gateway's issuer identifier (iss of the access tokens)
    audience: str  # the FHIR base (aud of the access tokens)
    form: dict[str, list[str]]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class TokenResult:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    #: for the audit trail: the client id asked for (verified only when `client` is set)
    claimed_client: str | None = None
    client: Client | None = None
    scope: str | None = None
    error: str | None = None


class _Request(OAuth2Request):
    """authlib's request object over a `TokenRequest` (no web framework)."""

    def __init__(self, req: TokenRequest) -> None:
        # The gateway speaks plain HTTP behind the TLS-terminating proxy (README: deploying);
        # authlib refuses http URLs outright, so it is handed the https form of the URL.
        super().__init__(req.method, "https://gateway.invalid/token", headers=req.headers)
        self.token_request = req
        self.payload = BasicOAuth2Payload({k: v[0] for k, v in req.form.items() if v})
        self.granted_scope: str | None = None
        self.claimed_client: str | None = None

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data


class BackendServicesGrant(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt"]

    def validate_requested_scope(self) -> None:
        client: Client = self.request.client
        granted = grant(self.request.payload.scope, client.role)
        if not granted:
            raise InvalidScopeError(
                f"none of the requested scopes is open to the {client.role} role "
                "(ask for SMART system scopes such as system/*.rs; a named type must be an "
                "R4 resource type)")
        self.request.granted_scope = str(granted)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token = self.server.issue(self.request, self.client, self.request.granted_scope)
        return 200, token, self.TOKEN_RESPONSE_HEADER


class _PrivateKeyJwt:
    """authlib client-auth method `private_key_jwt` (see `assertion`)."""

    def __init__(self, registry: ClientRegistry, engine: StoreEngine) -> None:
        self.registry = registry
        self.engine = engine

    def __call__(self, query_client: Any, request: _Request) -> Client:
        form = request.token_request.form
        if form.get("client_assertion_type", [None])[0] != ASSERTION_TYPE:
            raise InvalidClientError(description=f"client_assertion_type must be {ASSERTION_TYPE}")
        assertion = form.get("client_assertion", [""])[0]
        request.claimed_client = claimed_client(assertion)
        client_id = form.get("client_id", [None])[0]
        if client_id is not None and client_id != request.claimed_client:
            # RFC 7521 4.2: client_id, when sent, identifies the client the assertion
            # must be for; a different one is a confused request, not one to guess at
            raise InvalidClientError(description="client_id is not the assertion's iss "
                                                 "(send the same client id, or none)")
        try:
            verified = verify_assertion(assertion, token_url=request.token_request.url,
                                        find_client=self.registry.get, engine=self.engine)
        except AssertionRefused as exc:
            raise InvalidClientError(description=str(exc)) from exc
        return verified.client


def claimed_client(assertion: str) -> str | None:
    """The unverified `iss` of an assertion, for the audit trail of a refusal."""
    parts = assertion.split(".")
    claims = b64url_json_object(parts[1]) if len(parts) > 1 else None
    iss = claims.get("iss") if claims is not None else None
    return iss[:64] if isinstance(iss, str) else None


class TokenEndpoint(AuthorizationServer):
    def __init__(self, engine: StoreEngine, keyring: KeyRing, *,
                 lifetime_s: int = ACCESS_TOKEN_LIFETIME_S) -> None:
        super().__init__()
        self.engine = engine
        self.keyring = keyring
        self.registry = ClientRegistry(engine)
        self.lifetime_s = min(lifetime_s, ACCESS_TOKEN_LIFETIME_S)
        self.register_grant(BackendServicesGrant)
        self.register_client_auth_method("private_key_jwt", _PrivateKeyJwt(self.registry, engine))

    # -- authlib's framework hooks ------------------------------------------------------

    def query_client(self, client_id: str) -> Client | None:
        return self.registry.get(client_id)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        return None  # self-contained JWTs: nothing to store

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def create_oauth2_request(self, request: TokenRequest) -> _Request:
        return _Request(request)

    def handle_response(self, status: int, body: Any,
                        headers: list[tuple[str, str]]) -> tuple[int, Any, dict[str, str]]:
        return status, body, dict(headers)

    # -- the endpoint -------------------------------------------------------------------

    def handle(self, req: TokenRequest) -> TokenResult:
        problem = _form_problem(req)
        if problem is not None:
            status, body, headers = self.handle_error_response(None, problem)
            return TokenResult(status, dict(body), headers, error=problem.error)
        oauth_request = self.create_oauth2_request(req)
        try:
            grant_ = self.get_token_grant(oauth_request)
            grant_.validate_token_request()
            status, body, headers = self.handle_response(*grant_.create_token_response())
        except OAuth2Error as exc:
            status, body, headers = self.handle_error_response(oauth_request, exc)
            return TokenResult(status, dict(body), headers,
                               claimed_client=oauth_request.claimed_client,
                               client=oauth_request.client, error=exc.error)
        return TokenResult(status, body, headers, claimed_client=oauth_request.claimed_client,
                           client=oauth_request.client, scope=oauth_request.granted_scope)

    def issue(self, request: _Request, client: Client, scope: str) -> dict[str, Any]:
        """An RFC 9068 access token for `client` with `scope`."""
        key = self.keyring.signing_key()
        now = int(time.time())
        req = request.token_request
        claims = {"iss": req.issuer, "sub": client.client_id, "client_id": client.client_id,
                  "aud": req.audience, "iat": now, "exp": now + self.lifetime_s,
                  "jti": uuid.uuid4().hex, "scope": scope, REGISTRATION_CLAIM: client.created}
        token = jwt.encode({"alg": ALGORITHM, "typ": "at+jwt", "kid": key.kid}, claims,
                           key.key, algorithms=[ALGORITHM])
        return {"access_token": token, "token_type": "Bearer",
                "expires_in": self.lifetime_s, "scope": scope}


def _form_problem(req: TokenRequest) -> OAuth2Error | None:
    if req.method != "POST":
        return InvalidRequestError("the token endpoint takes POST")
    repeated = [k for k, v in req.form.items() if len(v) > 1]
    if repeated:
        return InvalidRequestError(f"parameters given more than once: {', '.join(repeated)}")
    if not req.form.get("grant_type"):
        return InvalidRequestError("grant_type is required (client_credentials)")
    return None


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the authorization server lives, for a FHIR base URL (`.../fhir`)."""

    issuer: str
    token_url: str
    jwks_url: str

    @classmethod
    def for_base(cls, fhir_base: str) -> Endpoints:
        root = fhir_base[: -len("/fhir")] if fhir_base.endswith("/fhir") else fhir_base
        issuer = f"{root}/auth"
        return cls(issuer, f"{issuer}/token", f"{issuer}/jwks")
