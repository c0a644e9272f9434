"""The client side of SMART Backend Services: sign an assertion, trade it for a token.

Used by `fhir-gateway token` (so a person can try the API with curl), by the tests and
by the benches. Standard library HTTP only: the command needs no test dependency.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from joserfc import jwk, jws

from .assertion import ASSERTION_TYPE


class TokenRequestFailed(RuntimeError):
    """The gateway refused the token request, or could not be reached."""


def load_private_key(path: str | Path) -> tuple[jwk.Key, str, str]:
    """A private JWK file -> (key, kid, alg: ES384 for EC P-384, RS384 for RSA)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TokenRequestFailed(f"cannot read the private key {path}: {exc}") from exc
    if not isinstance(data, dict) or "d" not in data:
        raise TokenRequestFailed(f"{path} is not a private JWK")
    key = jwk.import_key(data)
    alg = "RS384" if data.get("kty") == "RSA" else "ES384"
    return key, data.get("kid") or key.thumbprint(), alg


def make_assertion(client_id: str, token_url: str, key: jwk.Key, kid: str, alg: str, *,
                   lifetime_s: int = 240, **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "exp": now + lifetime_s,
              "iat": now, "jti": uuid.uuid4().hex, **overrides}
    header = {"alg": alg, "kid": kid, "typ": "JWT"}
    return jws.serialize_compact(header, json.dumps(claims).encode(), key, algorithms=[alg])


def discover_token_url(fhir_base: str, *, timeout: float = 10.0) -> str:
    url = fhir_base.rstrip("/") + "/.well-known/smart-configuration"
    config = _request(urllib.request.Request(url, headers={"Accept": "application/json"}),
                      timeout)
    token_url = config.get("token_endpoint")
    if not isinstance(token_url, str):
        raise TokenRequestFailed(f"{url} names no token_endpoint")
    return token_url


def request_token(fhir_base: str, client_id: str, key_file: str | Path, scope: str, *,
                  timeout: float = 10.0) -> dict[str, Any]:
    """Run the client-credentials flow against a running gateway; the token response."""
    key, kid, alg = load_private_key(key_file)
    token_url = discover_token_url(fhir_base, timeout=timeout)
    form = urllib.parse.urlencode({
        "grant_type": "client_credentials", "scope": scope,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": make_assertion(client_id, token_url, key, kid, alg),
    }).encode()
    req = urllib.request.Request(token_url, data=form, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
    return _request(req, timeout)


def _request(req: urllib.request.Request, timeout: float) -> dict[str, Any]:
    if urllib.parse.urlsplit(req.full_url).scheme not in ("http", "https"):
        raise TokenRequestFailed(f"{req.full_url} is not an http(s) URL")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read())
            reason = f"{detail.get('error')}: {detail.get('error_description', '')}"
        except ValueError:
            reason = exc.reason
        raise TokenRequestFailed(f"{req.full_url} answered {exc.code} ({reason})") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TokenRequestFailed(f"cannot reach {req.full_url}: {exc}") from exc
