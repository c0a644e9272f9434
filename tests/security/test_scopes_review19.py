"""Session 19's OAuth review: the review queue and the audit reports are bound by the
token's scopes, as the FHIR routes and ingest are, not by the role alone; a client
assertion is never accepted twice."""

from __future__ import annotations

import json

import pytest
from joserfc import jwk, jws
from test_review_queue import SOCIALCARE

from fhir_gateway.auth.assertion import AssertionRefused, verify_assertion
from fhir_gateway.auth.registry import ClientRegistry
from fhir_gateway.store.base import StoreEngine
from fhir_gateway.store.query import IndexQuery
from security_kit import Gateway, Registered

PATIENTS = IndexQuery(rtype="Patient", limit=100)


def _held_key(gw: Gateway) -> tuple[str, Registered]:
    client = gw.register("sc-feed", "feed", partner="socialcare", org="SC001")
    full = _bearer(gw, client, "system/*.cruds")
    loaded = gw.http.post("/ingest/socialcare", content=SOCIALCARE.encode(),
                          headers={**full, "Content-Type": "text/csv"})
    assert loaded.status_code == 200, loaded.text
    (held,) = gw.http.get("/review/held", headers=full).json()
    return held["key"], client


def _bearer(gw: Gateway, client: Registered, scope: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + gw.token(client, scope)}


def test_listing_the_review_queue_needs_read_on_every_type(gw: Gateway) -> None:
    _, client = _held_key(gw)
    for scope in ("system/Observation.s", "system/Patient.r"):
        answer = gw.http.get("/review/held", headers=_bearer(gw, client, scope))
        assert answer.status_code == 403, (scope, answer.text)
        assert "SC900001" not in answer.text and "Secretname" not in answer.text
        rejected = gw.http.get("/review/rejected", headers=_bearer(gw, client, scope))
        assert rejected.status_code == 403
    wide = _bearer(gw, client, "system/*.rs")
    assert gw.http.get("/review/held", headers=wide).status_code == 200


def test_settling_a_hold_needs_create_and_update_on_every_type(gw: Gateway) -> None:
    key, client = _held_key(gw)
    patients = len(gw.repository.find(PATIENTS).rows)
    for scope in ("system/*.rs", "system/Patient.cu", "system/*.c"):
        answer = gw.http.post(f"/review/held/{key}", json={"create": True},
                              headers=_bearer(gw, client, scope))
        assert answer.status_code == 403, (scope, answer.text)
    assert len(gw.repository.find(PATIENTS).rows) == patients
    done = gw.http.post(f"/review/held/{key}", json={"create": True},
                        headers=_bearer(gw, client, "system/*.cruds"))
    assert done.status_code == 200, done.text
    assert len(gw.repository.find(PATIENTS).rows) == patients + 1


def test_the_audit_reports_need_auditevent_search_scope(gw: Gateway) -> None:
    narrow = gw.login("audit-team", "auditor", org="X26", scope="system/Provenance.rs")
    assert gw.http.get("/fhir/AuditEvent", headers=narrow).status_code == 403
    answer = gw.http.get("/audit/report?kind=summary", headers=narrow)
    assert answer.status_code == 403, answer.text
    assert answer.json()["resourceType"] == "OperationOutcome"
    wide = gw.login("audit-two", "auditor", org="X26", scope="system/AuditEvent.rs")
    assert gw.http.get("/audit/report?kind=summary", headers=wide).status_code == 200


def test_a_client_assertion_whose_exp_has_a_fraction_is_not_accepted_twice(
        engine: StoreEngine) -> None:
    """The jti record's expiry was cut down to the millisecond, so it lapsed a fraction
    of a millisecond before the assertion did, and the same assertion was accepted again
    in between (found by review)."""
    token_url = "http://gw.test/auth/token"
    registry = ClientRegistry(engine)
    key = jwk.ECKey.generate_key("P-384", private=True)
    registry.add("c1", role="clinician", jwks={"keys": [{**key.as_dict(private=False),
                                                         "kid": "k1"}]})
    exp = 1_900_000_000.0009
    claims = {"iss": "c1", "sub": "c1", "aud": token_url, "exp": exp, "jti": "same-jti"}
    assertion = jws.serialize_compact({"alg": "ES384", "kid": "k1"},
                                      json.dumps(claims).encode(), key, algorithms=["ES384"])
    verify_assertion(assertion, token_url=token_url, find_client=registry.get,
                     engine=engine, now=exp - 100)
    with pytest.raises(AssertionRefused, match="jti was used before"):
        verify_assertion(assertion, token_url=token_url, find_client=registry.get,
                         engine=engine, now=exp + 29.9996)
