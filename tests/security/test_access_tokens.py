"""Every /fhir request is checked: signature, issuer, audience, expiry, type, key."""

from __future__ import annotations

import base64
import json
import time

from joserfc import jwk, jws

from fhir_gateway.auth.keys import KeyRing
from fhir_gateway.auth.server import REGISTRATION_CLAIM
from fhir_gateway.security.tokens import AccessTokenVerifier, InvalidToken
from security_kit import BASE, Gateway


def _parts(token: str) -> tuple[dict, dict, str]:
    h, p, s = token.split(".")
    return (json.loads(base64.urlsafe_b64decode(h + "==")),
            json.loads(base64.urlsafe_b64decode(p + "==")), s)


def _b64(value: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _status(gw: Gateway, token: str, path: str = "/fhir/Patient") -> int:
    resp = gw.http.get(path, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code != 500
    if resp.status_code == 401:
        assert resp.headers["www-authenticate"].startswith("Bearer")
        assert resp.json()["resourceType"] == "OperationOutcome"
    return resp.status_code


def test_no_token_is_401_but_metadata_and_discovery_are_open(gw: Gateway) -> None:
    resp = gw.http.get("/fhir/Patient")
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == 'Bearer realm="fhir"'
    assert gw.http.get("/fhir/metadata").status_code == 200
    assert gw.http.get("/fhir/.well-known/smart-configuration").status_code == 200
    assert gw.http.get("/fhir/Patient", headers={"Authorization": "Basic Zm9vOmJhcg=="}
                       ).status_code == 401


def test_forged_and_altered_tokens_are_refused(gw: Gateway) -> None:
    token = gw.login("ward", "clinician")["Authorization"].split()[1]
    assert _status(gw, token) == 200
    header, claims, sig = _parts(token)
    wider = {**claims, "scope": "system/*.cruds"}
    assert _status(gw, f"{_b64(header)}.{_b64(wider)}.{sig}") == 401  # altered payload
    other_client = {**claims, "sub": "ops", "client_id": "ops"}
    assert _status(gw, f"{_b64(header)}.{_b64(other_client)}.{sig}") == 401
    stranger = jwk.ECKey.generate_key("P-384", private=True)  # right kid, wrong key
    forged = jws.serialize_compact(header, json.dumps(claims).encode(), stranger,
                                   algorithms=["ES384"])
    assert _status(gw, forged) == 401
    none = f"{_b64({**header, 'alg': 'none'})}.{_b64(claims)}."
    assert _status(gw, none) == 401
    assert _status(gw, f"{_b64({**header, 'kid': 'gw-1'})}.{_b64(claims)}.{sig}") == 401
    assert _status(gw, "x" * 5000) == 401
    assert _status(gw, token[:-4] + "AAAA") == 401


def test_a_token_nested_too_deep_to_parse_is_401_not_500(gw: Gateway) -> None:
    nested = base64.urlsafe_b64encode(b"[" * 2000).rstrip(b"=").decode()
    assert _status(gw, f"{nested}.e30.sig") == 401


def test_hs256_signed_with_the_gateways_public_key_is_refused(gw: Gateway) -> None:
    token = gw.login("ward", "clinician")["Authorization"].split()[1]
    header, claims, _ = _parts(token)
    public = gw.http.get("/auth/jwks").json()["keys"][0]
    secret = json.dumps(public).encode()
    forged = jws.serialize_compact({**header, "alg": "HS256"}, json.dumps(claims).encode(),
                                   jwk.OctKey.import_key(secret), algorithms=["HS256"])
    assert _status(gw, forged) == 401


def test_token_for_another_audience_is_refused(gw: Gateway) -> None:
    token = gw.login("ward", "clinician")["Authorization"].split()[1]
    resp = gw.http.get("/fhir/Patient", headers={"Authorization": f"Bearer {token}",
                                                 "Host": "elsewhere.test"})
    assert resp.status_code == 401 and "audience" in resp.text
    verifier = AccessTokenVerifier(gw.http.app.state.security.keyring)
    try:
        verifier.verify(token, issuer=f"{BASE}/auth", audience="https://other.nhs.uk/fhir")
    except InvalidToken as exc:
        assert "audience" in str(exc)
    else:
        raise AssertionError("a token for another audience verified")


def test_expired_token_is_refused(gw: Gateway) -> None:
    token = gw.login("ward", "clinician")["Authorization"].split()[1]
    keyring = gw.http.app.state.security.keyring
    later = AccessTokenVerifier(keyring, clock=lambda: time.time() + 301 + 10)
    try:
        later.verify(token, issuer=f"{BASE}/auth", audience=f"{BASE}/fhir")
    except InvalidToken as exc:
        assert "expired" in str(exc)
    else:
        raise AssertionError("an expired token verified")


def test_two_signing_keys_are_live_across_a_rotation(engine) -> None:
    now = [1_000_000.0]
    ring = KeyRing(engine, rotation_s=3600, clock=lambda: now[0])
    first = ring.signing_key()
    now[0] += 3600  # the next period: a new key signs, the old one still verifies
    second = ring.signing_key()
    assert first.kid != second.kid
    assert {k["kid"] for k in ring.jwks()["keys"]} == {first.kid, second.kid}
    assert ring.verification_key(first.kid) is not None
    now[0] += 3600  # two periods on, the first key is gone
    ring.signing_key()
    assert ring.verification_key(first.kid) is None
    assert len(ring.jwks()["keys"]) == 2


def test_a_token_with_a_date_that_is_not_a_number_is_refused(gw: Gateway) -> None:
    """Even signed by the gateway's own key: NaN passes every comparison."""
    token = gw.login("ward", "clinician")["Authorization"].split()[1]
    header, claims, _ = _parts(token)
    signing = gw.http.app.state.security.keyring.signing_key()
    for bad in ({"exp": float("nan")}, {"iat": float("nan")}):
        forged = jws.serialize_compact(header, json.dumps({**claims, **bad}).encode(),
                                       signing.key, algorithms=["ES384"])
        assert _status(gw, forged) == 401


def test_a_token_names_the_registration_it_was_issued_under(gw: Gateway) -> None:
    token = gw.login("ward", "clinician")["Authorization"].split()[1]
    _, claims, _ = _parts(token)
    assert claims[REGISTRATION_CLAIM] == gw.registry.get("ward").created != ""


def test_re_registering_a_client_does_not_revive_its_old_tokens(gw: Gateway) -> None:
    """Remove, then add with a fresh key (the answer to a leaked key): the tokens issued
    to the old registration stay dead."""
    old = gw.register("ward", "clinician", org="B86001")
    leaked = gw.token(old)
    assert _status(gw, leaked) == 200
    assert gw.registry.remove("ward")
    assert _status(gw, leaked) == 401
    new = gw.register("ward", "clinician", org="RH1")
    resp = gw.http.get("/fhir/Patient", headers={"Authorization": f"Bearer {leaked}"})
    assert resp.status_code == 401
    assert "earlier registration" in resp.json()["issue"][0]["diagnostics"]
    assert _status(gw, gw.token(new)) == 200
