"""The interceptor chain's can_see hook hides a resource everywhere the API would show it,
deletion tombstones in history included (a tombstone would reveal a hidden id)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_gateway.api.app import create_app
from fhir_gateway.config import Settings
from fhir_gateway.fhir.interceptors import BaseInterceptor, InterceptorChain
from fhir_gateway.fhir.request import FhirRequest
from fhir_gateway.store.base import StoreEngine
from gatewaykit import FHIR_JSON


class HideSecret(BaseInterceptor):
    """Hides every resource tagged `secret` from callers without header `x-may-see`."""

    def can_see(self, request: FhirRequest, resource: dict[str, Any]) -> bool:
        tags = {t.get("code") for t in (resource.get("meta") or {}).get("tag", [])}
        return "secret" not in tags or request.header("x-may-see") == "yes"


@pytest.fixture
def hidden_client(engine: StoreEngine) -> Iterator[TestClient]:
    app = create_app(Settings(auth_enabled=False), engine=engine,
                     interceptors=InterceptorChain([HideSecret()]))
    with TestClient(app, base_url="http://gateway.test") as c:
        yield c


def test_hidden_resource_looks_absent_everywhere(hidden_client: TestClient) -> None:
    c = hidden_client
    secret = {"resourceType": "Patient", "meta": {"tag": [{"code": "secret"}]},
              "gender": "female"}
    sid = c.post("/fhir/Patient", json=secret, headers=FHIR_JSON).json()["id"]
    pid = c.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"},
                 headers=FHIR_JSON).json()["id"]
    assert c.get(f"/fhir/Patient/{sid}").status_code == 404
    assert c.get(f"/fhir/Patient/{sid}", headers={"x-may-see": "yes"}).status_code == 200
    found = c.get("/fhir/Patient?gender=female").json()
    assert [e["resource"]["id"] for e in found["entry"]] == [pid]
    c.delete(f"/fhir/Patient/{sid}")
    history = c.get("/fhir/Patient/_history").json()["entry"]
    assert all(sid not in e["fullUrl"] for e in history)  # not even the tombstone
    allowed = c.get("/fhir/Patient/_history", headers={"x-may-see": "yes"}).json()["entry"]
    assert [e["request"]["method"] for e in allowed if sid in e["fullUrl"]] == ["DELETE",
                                                                               "POST"]
