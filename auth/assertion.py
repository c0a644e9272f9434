"""Checking a client's `private_key_jwt` assertion (RFC 7523, SMART Backend Services).

Everything a hostile assertion could try is refused here, before any key is used:
oversized input, `alg: none` and HMAC algorithms (an HS256 "signature" made with the
public key), keys carried in the token itself (`jwk`, `x5c`) or fetched from where the
token says (`jku`, `x5u`: no client registers a URL, so none is ever trusted), a missing
or unknown `kid` (a kid must select exactly one registered key, of the algorithm's type).
Then the signature is checked with RS384 or ES384 only (joserfc's default registry leaves
both out, so the allowed algorithms are named explicitly), and the claims: iss = sub =
a registered client id, aud = this token endpoint, exp no more than five minutes ahead,
and a `jti` never seen before within its lifetime (a create-only record in the store,
shared by every instance, expiring with the assertion).
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError

from ..store.base import StoreEngine, VersionConflict
from .registry import CLIENT_ALGORITHMS, Client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_BYTES = 4096
MAX_LIFETIME_S = 300
LEEWAY_S = 30  # clock skew allowed between a client and the gateway
MAX_JTI_CHARS = 256
JTI_KIND = "jti"
_FORBIDDEN_HEADERS = ("jwk", "jku", "x5u", "x5c")
_KTY = {"RS384": "RSA", "ES384": "EC"}


class AssertionRefused(ValueError):
    """The client assertion is refused; the message is safe to show the client."""


@dataclass(frozen=True, slots=True)
class VerifiedAssertion:
    client: Client
    claims: dict[str, Any]
    kid: str
    alg: str


def b64url_json_object(segment: str) -> dict[str, Any] | None:
    """A compact JWS segment decoded (base64url, then JSON): the object, or None when it
    is not base64url JSON, uses the non-JSON constants NaN, Infinity or -Infinity (which
    Python's json accepts), holds a lone surrogate escape (`"\ud800"`, which Python's json
    accepts too: no UTF-8 text holds it, so the audit record of the refusal, and a stored
    jti, could not be written), is nested too deep to parse, or is not an object. For the
    client assertions here and the gateway's access tokens (`security.tokens`)."""
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)),
                           parse_constant=_no_constant)
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeDecodeError, UnicodeEncodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def numeric_date(value: Any) -> bool:
    """A JWT NumericDate: an int, or a finite float (not NaN, which every comparison
    passes, nor an infinity: JSON's 1e400 parses as one)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _b64json(segment: str, what: str) -> dict[str, Any]:
    value = b64url_json_object(segment)
    if value is None:
        raise AssertionRefused(f"the assertion's {what} is not base64url JSON (an object; NaN "
                              "and Infinity are not JSON)")
    return value


def instant(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def verify_assertion(assertion: str, *, token_url: str,
                     find_client: Callable[[str], Client | None], engine: StoreEngine,
                     now: float | None = None) -> VerifiedAssertion:
    """The client the assertion proves, or `AssertionRefused` saying why not."""
    now = time.time() if now is None else now
    if not isinstance(assertion, str) or len(assertion) > MAX_ASSERTION_BYTES:
        raise AssertionRefused(f"the client assertion must be a JWT of at most "
                              f"{MAX_ASSERTION_BYTES} bytes")
    parts = assertion.split(".")
    if len(parts) != 3:
        raise AssertionRefused("the client assertion is not a compact JWS (three parts)")
    header = _b64json(parts[0], "header")
    alg = header.get("alg")
    if alg not in CLIENT_ALGORITHMS:
        raise AssertionRefused(f"alg {alg!r} is not accepted; sign with RS384 or ES384")
    for name in _FORBIDDEN_HEADERS:
        if name in header:
            raise AssertionRefused(f"the '{name}' header is not accepted: keys come only from "
                                  "the client's registration")
    if "crit" in header:
        raise AssertionRefused("the 'crit' header is not supported")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise AssertionRefused("the assertion header needs the kid of a registered key")
    claims = _b64json(parts[1], "payload")
    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(iss, str) or not isinstance(sub, str) or iss != sub:
        raise AssertionRefused("iss and sub must both be the client id")
    client = find_client(iss)
    if client is None:
        raise AssertionRefused("unknown client")
    key = client.key(kid)
    if key is None:
        raise AssertionRefused(f"kid {kid!r} is not one of the client's registered keys")
    if key.key_type != _KTY[alg]:
        raise AssertionRefused(f"kid {kid!r} is a {key.key_type} key; it cannot check {alg}")
    try:
        jws.deserialize_compact(assertion, key, algorithms=[alg])
    except (JoseError, ValueError, TypeError) as exc:
        raise AssertionRefused("the assertion's signature does not verify") from exc
    _check_claims(claims, token_url=token_url, now=now)
    _remember_jti(engine, client.client_id, claims, now)
    return VerifiedAssertion(client=client, claims=claims, kid=kid, alg=alg)


def _check_claims(claims: dict[str, Any], *, token_url: str, now: float) -> None:
    aud = claims.get("aud")
    auds = aud if isinstance(aud, list) else [aud]
    if token_url not in auds:
        raise AssertionRefused(f"aud must be the token endpoint, {token_url}")
    exp = claims.get("exp")
    if not numeric_date(exp):
        raise AssertionRefused("exp is required (a NumericDate: a finite number)")
    if exp <= now - LEEWAY_S:
        raise AssertionRefused("the assertion has expired")
    if exp > now + MAX_LIFETIME_S + LEEWAY_S:
        raise AssertionRefused(f"exp is more than {MAX_LIFETIME_S} seconds ahead (with "
                               f"{LEEWAY_S} s allowed for clock skew)")
    for name in ("iat", "nbf"):
        value = claims.get(name)
        if value is None:
            continue
        if not numeric_date(value):
            raise AssertionRefused(f"{name} must be a NumericDate (a finite number)")
        if value > now + LEEWAY_S:
            raise AssertionRefused(f"{name} is in the future")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_CHARS:
        raise AssertionRefused(f"jti is required (a string of at most {MAX_JTI_CHARS} chars)")


def _remember_jti(engine: StoreEngine, client_id: str, claims: dict[str, Any],
                  now: float) -> None:
    """Refuse a jti seen before (RFC 7523 3(7)); the record lives as long as the assertion."""
    # up to the next millisecond (the record's precision): cut down, it lapsed before the
    # assertion did, and the same assertion was accepted again in between (found by review)
    expires = instant(math.ceil((float(claims["exp"]) + LEEWAY_S) * 1000) / 1000)
    key = f"{client_id}\n{claims['jti']}"
    try:
        with engine.session(write=True) as s:
            fresh = s.record_put(JTI_KIND, key, {"client": client_id}, expires=expires,
                                 create_only=True, now=instant(now))
    except VersionConflict:  # a concurrent request with the same jti won (MongoDB)
        fresh = False
    if not fresh:
        raise AssertionRefused("this assertion's jti was used before; make a new assertion")
