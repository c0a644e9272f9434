"""A header sent twice is read one way by every reader, or refused.

`Content-Type` sent twice was read as its first copy: `application/fhir+json` then
`text/xml` stored the body, the other order was refused."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

PATIENT = json.dumps({"resourceType": "Patient", "name": [{"family": "Example"}]})


@pytest.mark.parametrize("types", [("application/fhir+json", "text/xml"),
                                   ("text/xml", "application/fhir+json"),
                                   ("application/fhir+json", "application/fhir+json")])
def test_a_body_declared_twice_is_refused_in_either_order(client: TestClient,
                                                          types: tuple[str, str]) -> None:
    r = client.post("/fhir/Patient", content=PATIENT,
                    headers=[("content-type", t) for t in types])
    assert r.status_code == 415, r.text
    assert "Content-Type is sent more than once" in r.text
    assert client.get("/fhir/Patient").json().get("total", 0) == 0


def test_a_partner_file_declared_twice_is_refused(client: TestClient) -> None:
    r = client.post("/ingest/hospice", content=b'{"clientId": "H1"}\n',
                    headers=[("content-type", "application/x-ndjson"),
                             ("content-type", "text/csv")])
    assert r.status_code == 415, r.text
