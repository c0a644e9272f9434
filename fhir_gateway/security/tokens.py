"""Checking an access token on every request (the resource-server side of RFC 9068).

A token is accepted only when all of these hold: it is a compact JWS of at most
`MAX_TOKEN_BYTES`, typed `at+jwt`, signed ES384 by a live gateway key named by its `kid`
(no other algorithm, no embedded or remote keys), its `iss` is this gateway, its `aud`
this FHIR base, it has not expired, and it was issued for no more than five minutes.
Whether its client is still registered, and in which role, is the caller's next step
(`access.AccessInterceptor`), so removing a client ends its tokens at once.

Signature checks are memoised per token string until the token expires: a verified
signature cannot become unverified, and expiry, issuer and audience are checked on every
use. The memo is bounded and holds nothing another instance would need.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError

from ..auth.assertion import b64url_json_object, numeric_date
from ..auth.keys import ALGORITHM, KeyRing
from ..auth.server import ACCESS_TOKEN_LIFETIME_S

MAX_TOKEN_BYTES = 4096
LEEWAY_S = 10
_MEMO_SIZE = 10_000


class InvalidToken(ValueError):
    """The access token is refused; the message is safe to show the caller."""


class AccessTokenVerifier:
    def __init__(self, keyring: KeyRing, *, clock: Callable[[], float] = time.time) -> None:
        self.keyring = keyring
        self.clock = clock
        self._memo: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def verify(self, token: str, *, issuer: str, audience: str) -> dict[str, Any]:
        claims = self._memo.get(token)
        if claims is None:
            claims = self._verify_signature(token)
            with self._lock:
                if len(self._memo) >= _MEMO_SIZE:
                    self._memo.clear()
                self._memo[token] = claims
        now = self.clock()
        aud = claims.get("aud")
        if audience not in (aud if isinstance(aud, list) else [aud]):
            raise InvalidToken(f"the token's audience is not {audience}")
        if claims.get("iss") != issuer:
            raise InvalidToken("the token was not issued by this gateway")
        exp, iat = claims.get("exp"), claims.get("iat")
        if not numeric_date(exp) or not numeric_date(iat):
            raise InvalidToken("the token needs exp and iat")
        if exp <= now - LEEWAY_S:
            raise InvalidToken("the token has expired")
        if iat > now + LEEWAY_S or exp - iat > ACCESS_TOKEN_LIFETIME_S:
            raise InvalidToken("the token's lifetime is not one this gateway issues")
        if not isinstance(claims.get("client_id"), str) or claims.get("sub") != claims["client_id"]:
            raise InvalidToken("the token names no client")
        return claims

    def _verify_signature(self, token: str) -> dict[str, Any]:
        if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
            raise InvalidToken("the bearer token is not a JWT this gateway issued")
        head, body, _ = token.split(".")
        header = _b64json(head)
        if header.get("alg") != ALGORITHM or header.get("typ") != "at+jwt":
            raise InvalidToken("the bearer token is not an ES384 at+jwt access token")
        if any(h in header for h in ("jwk", "jku", "x5u", "x5c", "crit")):
            raise InvalidToken("the token carries key headers this gateway never sets")
        kid = header.get("kid")
        key = self.keyring.verification_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("the token's kid is not a live gateway key")
        try:
            jws.deserialize_compact(token, key.key, algorithms=[ALGORITHM])
        except (JoseError, ValueError, TypeError) as exc:
            raise InvalidToken("the token's signature does not verify") from exc
        return _b64json(body)


def _b64json(segment: str) -> dict[str, Any]:
    value = b64url_json_object(segment)
    if value is None:
        raise InvalidToken("the bearer token is not a JWT this gateway issued")
    return value
