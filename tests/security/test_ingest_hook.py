"""The hook the HTTP ingest endpoint uses: only the partner's own feed may load its file,
and every attempt is audited."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from fhir_gateway.errors import GatewayError
from fhir_gateway.pipeline.loader import Summary
from fhir_gateway.security.http import authorize_ingest, record_ingest
from fhir_gateway.store.base import StoreEngine
from security_kit import FHIR, Gateway, secured


def _request(headers: dict[str, str]) -> Request:
    # an ASGI HTTP scope has a query string, empty or not
    return Request({"type": "http", "method": "POST", "path": "/ingest/gp", "state": {},
                    "query_string": b"",
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]})


def test_only_the_partners_own_feed_may_ingest_and_each_attempt_is_audited(gw: Gateway) -> None:
    sec = gw.http.app.state.security
    gp = gw.login("gp-feed", "feed", partner="gp", org="B86001", scope="system/*.cruds")
    hospice = gw.login("hospice-feed", "feed", partner="hospice", scope="system/*.cruds")
    ward = gw.login("ward", "clinician")
    caller = authorize_ingest(sec, _request(gp), "gp", FHIR)
    assert caller.client_id == "gp-feed"
    record_ingest(sec, _request(gp), caller, "gp", FHIR, 200, Summary(read=3, created=2))
    for headers, status in ((hospice, 403), (ward, 403), ({}, 401)):
        with pytest.raises(GatewayError) as refused:
            authorize_ingest(sec, _request(headers), "gp", FHIR)
        assert refused.value.status == status
    events = [e for e in gw.audit_events(subtype="create")
              if "ingest" in e.get("outcomeDesc", "")]
    assert len(events) == 1 and "created 2" in events[0]["outcomeDesc"]


def test_behind_a_proxy_ingest_and_review_accept_tokens_for_the_public_base(
        engine: StoreEngine) -> None:
    """With FHIR_GATEWAY_BASE_URL set, tokens are issued for the public base; the ingest
    and review endpoints check them against the same base as /fhir does."""
    public = "https://pub.example/fhir"
    with secured(engine, public_base_url=public) as gw:
        ward = gw.register("ward", "clinician", org="RXX01")
        feed = gw.register("gp-feed", "feed", partner="gp", org="B86001")
        bearers = []
        for client, scope in ((ward, "system/*.rs"), (feed, "system/*.cruds")):
            assertion = client.assertion(aud="https://pub.example/auth/token")
            resp = gw.token_response(assertion, scope=scope)
            assert resp.status_code == 200, resp.text
            bearers.append({"Authorization": f"Bearer {resp.json()['access_token']}"})
        assert gw.http.get("/fhir/Patient", headers=bearers[0]).status_code == 200
        assert gw.http.get("/review/held", headers=bearers[1]).status_code == 200
