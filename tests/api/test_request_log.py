"""One JSON log line per request: method, route shape (no ids, no query), status, duration, id."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient

from gatewaykit import FHIR_JSON


def test_one_json_line_per_request_without_identifying_values(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="fhir_gateway.access"):
        pid = client.post("/fhir/Patient", json={"resourceType": "Patient"},
                          headers=FHIR_JSON).json()["id"]
        client.get(f"/fhir/Patient/{pid}/_history/1", headers={"X-Request-Id": "req-42"})
        client.get("/fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9434765919")
        client.get("/fhir/Nonsense/1")
    lines = [json.loads(r.getMessage()) for r in caplog.records
             if r.name == "fhir_gateway.access"]
    assert [(x["method"], x["route"], x["status"]) for x in lines] == [
        ("POST", "/fhir/Patient", 201),
        ("GET", "/fhir/Patient/{id}/_history/{vid}", 200),
        ("GET", "/fhir/Patient", 200),
        ("GET", "/fhir/Nonsense/{id}", 404),
    ]
    assert lines[1]["request_id"] == "req-42"
    assert all(isinstance(x["duration_ms"], float) for x in lines)
    text = caplog.text
    assert pid not in text and "9434765919" not in text


@pytest.mark.parametrize(("path", "shape"), [
    ("/fhir//Patient/9434765919", "/fhir/Patient/{id}"),
    ("/fhir/Patient//9434765919/_history//2", "/fhir/Patient/{id}/_history/{vid}"),
    ("/fhir/Patient/p1/Observation", "/fhir/Patient/{id}/Observation"),
    ("/fhir/Patient/p1/$everything", "/fhir/Patient/{id}/$everything"),
    ("/fhir/Patient/$emergency-summary", "/fhir/Patient/$emergency-summary"),
    ("/fhir/Patient/p1/9434765919", "/fhir/Patient/{id}/{value}"),
    ("/ingest/gp", "/ingest/gp"),
])
def test_the_route_shape_never_holds_an_id_or_value(path: str, shape: str) -> None:
    # a doubled slash still routes, so it must not move the id out of the id's place
    from fhir_gateway.api.middleware import route_shape

    assert route_shape(path) == shape
