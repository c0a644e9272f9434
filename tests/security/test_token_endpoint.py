"""The SMART Backend Services token endpoint: what it issues, and every assertion it refuses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest
from joserfc import jwk, jws

from security_kit import FHIR, TOKEN_URL, Gateway, make_assertion


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict, claims: dict) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."


def _claims(client_id: str, **overrides: object) -> dict:
    now = int(time.time())
    return {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": now + 120,
            "jti": f"jti-{time.monotonic_ns()}", **overrides}


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_valid_assertion_gets_a_short_lived_jwt_for_the_fhir_base(gw: Gateway, alg: str) -> None:
    client = gw.register("ward-system", "clinician", org="RXX01", alg=alg)
    resp = gw.token_response(client.assertion(), "system/Patient.rs system/Observation.read")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] <= 300
    assert body["scope"] == "system/Observation.rs system/Patient.rs"
    assert resp.headers["cache-control"] == "no-store"
    header, claims = (json.loads(base64.urlsafe_b64decode(p + "==")) for p in
                      body["access_token"].split(".")[:2])
    assert header["typ"] == "at+jwt" and header["alg"] == "ES384"
    assert claims["aud"] == FHIR and claims["sub"] == claims["client_id"] == "ward-system"
    assert claims["exp"] - claims["iat"] <= 300
    jwks = gw.http.get("/auth/jwks").json()
    assert header["kid"] in [k["kid"] for k in jwks["keys"]]
    assert all("d" not in k for k in jwks["keys"])


def test_smart_configuration_names_the_endpoints(gw: Gateway) -> None:
    config = gw.http.get("/fhir/.well-known/smart-configuration").json()
    assert config["token_endpoint"] == TOKEN_URL
    assert config["jwks_uri"].endswith("/auth/jwks")
    assert config["grant_types_supported"] == ["client_credentials"]
    assert config["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert "system/*.rs" in config["scopes_supported"]


def _refusals(gw: Gateway) -> dict[str, str]:
    client = gw.register("feed-gp", "feed", partner="gp", org="B86001")
    other = jwk.ECKey.generate_key("P-384", private=True)
    public_pem = client.key.as_pem(private=False)
    replayed = client.assertion()
    assert gw.token_response(replayed).status_code == 200
    hs_header = {"alg": "HS256", "kid": client.kid, "typ": "JWT"}
    signing_input = (f"{_b64(json.dumps(hs_header).encode())}."
                     f"{_b64(json.dumps(_claims('feed-gp')).encode())}")
    hs256 = signing_input + "." + _b64(hmac.new(public_pem, signing_input.encode(),
                                                hashlib.sha256).digest())
    return {
        "expired": client.assertion(exp=int(time.time()) - 600),
        "far-future": client.assertion(exp=int(time.time()) + 3600),
        "replayed": replayed,
        "wrong-aud": client.assertion(aud=f"{FHIR}/metadata"),
        "iss-not-sub": client.assertion(sub="someone-else"),
        "alg-none": _unsigned({"alg": "none", "kid": client.kid}, _claims("feed-gp")),
        "hs256-with-public-key": hs256,
        "unknown-kid": make_assertion(
            "feed-gp", TOKEN_URL, client.key, "no-such-kid", "ES384"),
        "embedded-jwk": _signed(client, {"jwk": other.as_dict(private=False)}, other),
        "unregistered-jku": _signed(client, {"jku": "https://attacker.example/jwks"}),
        "oversized": client.assertion(padding="x" * 5000),
        "signed-by-another-key": _signed(client, {}, other),
        "unknown-client": make_assertion(
            "nobody", TOKEN_URL, client.key, client.kid, "ES384"),
        "no-jti": _signed(client, {}, claims={"jti": None}),
        "garbage": "not.a.jwt",
        "nested-too-deep": base64.urlsafe_b64encode(b"[" * 2000).rstrip(b"=").decode()
        + ".e30.sig",
        # the payload is read (unverified) for the audit record before anything else
        "payload-nested-too-deep": base64.urlsafe_b64encode(
            b'{"alg":"ES384","kid":"ward-key"}').rstrip(b"=").decode() + "."
        + base64.urlsafe_b64encode(b"[" * 2000).rstrip(b"=").decode() + ".sig",
        # a lone surrogate escape: Python's json reads it, no UTF-8 text holds it (the
        # refusal's AuditEvent, and a stored jti, could not be written: 500)
        "lone-surrogate-iss": _unsigned({"alg": "ES384", "kid": client.kid},
                                        {**_claims("feed-gp"), "iss": "\ud800",
                                         "sub": "\ud800"}),
        "lone-surrogate-jti": _signed(client, {}, claims={"jti": "\ud800"}),
    }


def _signed(client, extra_header: dict, key=None, claims: dict | None = None) -> str:
    from joserfc import jws

    body = {k: v for k, v in {**_claims(client.client_id), **(claims or {})}.items()
            if v is not None}
    header = {"alg": "ES384", "kid": client.kid, **extra_header}
    return jws.serialize_compact(header, json.dumps(body).encode(), key or client.key,
                                 algorithms=["ES384"])


WHY = {"expired": "expired", "far-future": "more than 300 seconds ahead",
       "replayed": "used before", "wrong-aud": "aud must be", "iss-not-sub": "iss and sub",
       "alg-none": "'none' is not accepted", "hs256-with-public-key": "'HS256' is not accepted",
       "unknown-kid": "not one of the client's registered keys",
       "embedded-jwk": "'jwk' header is not accepted",
       "unregistered-jku": "'jku' header is not accepted", "oversized": "at most 4096 bytes",
       "signed-by-another-key": "signature does not verify", "unknown-client": "unknown client",
       "no-jti": "jti is required", "garbage": "not base64url JSON",
       "nested-too-deep": "not base64url JSON", "payload-nested-too-deep": "not base64url JSON",
       "lone-surrogate-iss": "not base64url JSON", "lone-surrogate-jti": "not base64url JSON"}


def test_every_bad_assertion_is_refused_for_its_own_reason_without_a_500(gw: Gateway) -> None:
    for name, assertion in _refusals(gw).items():
        resp = gw.token_response(assertion)
        assert resp.status_code in (400, 401), (name, resp.status_code, resp.text)
        body = resp.json()
        assert body["error"] == "invalid_client", (name, resp.text)
        assert WHY[name] in body["error_description"], (name, body)
        assert "access_token" not in body


def test_wrong_grant_type_and_missing_scope_are_refused(gw: Gateway) -> None:
    client = gw.register("ward", "clinician")
    resp = gw.token_response(client.assertion(), grant_type="authorization_code")
    assert resp.status_code == 400 and resp.json()["error"] == "unsupported_grant_type"
    resp = gw.token_response(client.assertion(), scope="launch openid")
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_scope"
    resp = gw.http.post("/auth/token", content=b"{}", headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_request"


def test_scopes_are_cut_to_the_role(gw: Gateway) -> None:
    auditor = gw.register("audit-team", "auditor")
    resp = gw.token_response(auditor.assertion(), "system/*.rs")
    assert resp.json()["scope"] == "system/AuditEvent.rs system/Provenance.rs"
    clinician = gw.register("ward", "clinician")
    assert gw.token_response(clinician.assertion(), "system/*.cruds").json()["scope"] == \
        "system/*.rs"
    admin = gw.register("ops", "admin")
    assert gw.token_response(admin.assertion(), "system/*.rs").json()["error"] == "invalid_scope"


def test_a_scope_naming_no_r4_resource_type_is_not_granted(gw: Gateway) -> None:
    # a token says only what it allows: `system/Foo.rs` allows nothing, so it is not in it
    clinician = gw.register("ward", "clinician")
    resp = gw.token_response(clinician.assertion(), "system/Foo.rs system/Patient.rs")
    assert resp.status_code == 200 and resp.json()["scope"] == "system/Patient.rs"
    resp = gw.token_response(clinician.assertion(), "system/Foo.rs system/patient.read")
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_scope"
    assert "R4 resource type" in resp.json()["error_description"]


def test_client_added_or_removed_takes_effect_at_once(gw: Gateway) -> None:
    headers = gw.login("late-comer", "clinician")
    assert gw.http.get("/fhir/Patient", headers=headers).status_code == 200
    assert gw.registry.remove("late-comer")
    resp = gw.http.get("/fhir/Patient", headers=headers)
    assert resp.status_code == 401 and "no longer registered" in resp.text


def test_token_requests_are_audited_allowed_or_refused(gw: Gateway) -> None:
    client = gw.register("ward", "clinician", org="RXX01")
    gw.token_response(client.assertion())
    gw.token_response(client.assertion(exp=int(time.time()) - 999))
    events = gw.audit_events(subtype="110122")
    assert sorted(e["outcome"] for e in events) == ["0", "4"]
    assert all(e["agent"][0]["altId"] == "ward" for e in events)


def test_dates_that_are_not_finite_numbers_are_refused_and_audited(gw: Gateway) -> None:
    """NaN passes every comparison; JSON's 1e400 parses as an infinity."""
    client = gw.register("ward", "clinician", org="RXX01")
    now = int(time.time())
    refused = [client.assertion(exp=float("nan")), client.assertion(exp=float("inf")),
               client.assertion(iat=float("nan")), client.assertion(nbf=float("nan"))]
    for raw in ('"exp": 1e400', '"nbf": -1e400', '"iat": -1e400'):
        text = json.dumps(_claims("ward", exp=now + 120))[:-1] + f", {raw}}}"
        refused.append(jws.serialize_compact({"alg": client.alg, "kid": client.kid},
                                             text.encode(), client.key,
                                             algorithms=[client.alg]))
    for assertion in refused:
        resp = gw.token_response(assertion)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == "invalid_client"
    events = gw.audit_events(subtype="110122")
    assert len(events) == len(refused) and all(e["outcome"] == "4" for e in events)


def test_a_fault_in_the_token_endpoint_is_still_audited(gw: Gateway, monkeypatch) -> None:
    client = gw.register("ward", "clinician", org="RXX01")

    def broken(request: object) -> None:
        raise RuntimeError("the store went away")

    monkeypatch.setattr(gw.http.app.state.security.token_endpoint, "handle", broken)
    resp = gw.token_response(client.assertion())
    assert resp.status_code == 500
    monkeypatch.undo()
    [event] = gw.audit_events(subtype="110122")
    assert event["outcome"] != "0" and event["agent"][0]["altId"] == "ward"


def test_a_client_id_other_than_the_assertions_issuer_is_refused(gw: Gateway) -> None:
    """RFC 7521 4.2: client_id, when sent, identifies the client the assertion is for."""
    client = gw.register("ward", "clinician", org="RXX01")
    gw.register("ops", "admin")
    resp = gw.token_response(client.assertion(), client_id="ops")
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_client"
    assert "client_id" in resp.json()["error_description"]
    assert gw.token_response(client.assertion(), client_id="ward").status_code == 200
