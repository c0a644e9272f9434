"""The hook the HTTP ingest endpoint uses: only the partner's own feed may load its file,
and every attempt is audited."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from fhir_gateway.errors import GatewayError
from fhir_gateway.security.http import authorize_ingest, record_ingest
from security_kit import FHIR, Gateway


def _request(headers: dict[str, str]) -> Request:
    return Request({"type": "http", "method": "POST", "path": "/ingest/gp", "state": {},
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]})


def test_only_the_partners_own_feed_may_ingest_and_each_attempt_is_audited(gw: Gateway) -> None:
    sec = gw.http.app.state.security
    gp = gw.login("gp-feed", "feed", partner="gp", org="B86001", scope="system/*.cruds")
    hospice = gw.login("hospice-feed", "feed", partner="hospice", scope="system/*.cruds")
    ward = gw.login("ward", "clinician")
    caller = authorize_ingest(sec, _request(gp), "gp", FHIR)
    assert caller.client_id == "gp-feed"
    record_ingest(sec, _request(gp), caller, "gp", FHIR, 200, {"read": 3, "created": 2})
    for headers, status in ((hospice, 403), (ward, 403), ({}, 401)):
        with pytest.raises(GatewayError) as refused:
            authorize_ingest(sec, _request(headers), "gp", FHIR)
        assert refused.value.status == status
    events = [e for e in gw.audit_events(subtype="create")
              if "ingest" in e.get("outcomeDesc", "")]
    assert len(events) == 1 and "created 2" in events[0]["outcomeDesc"]
