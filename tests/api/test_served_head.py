"""HEAD through a real uvicorn server: the headers GET would send, with no body."""

from __future__ import annotations

from pathlib import Path

import httpx

from serverproc import running_gateway

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def test_head_answers_the_headers_get_would_send(tmp_path: Path) -> None:
    """HEAD said `Content-Length: 0` (RFC 9110 9.3.2: the length GET would send)."""
    with running_gateway(f"sqlite:///{tmp_path / 'head.sqlite3'}") as gw, \
            httpx.Client(base_url=gw.base_url, timeout=30) as http:
        made = http.post("/Patient", json={"resourceType": "Patient",
                                           "name": [{"family": "Head"}]}, headers=FHIR_JSON)
        assert made.status_code == 201, made.text
        for path in (f"/Patient/{made.json()['id']}", "/Patient?family=Head", "/metadata"):
            got, head = http.get(path), http.head(path)
            assert got.status_code == head.status_code == 200, (path, head.status_code)
            assert head.content == b""
            assert int(head.headers["content-length"]) == len(got.content) > 0, path
            for name in ("content-type", "etag", "last-modified"):
                assert head.headers.get(name) == got.headers.get(name), (path, name)
        missing = http.head("/Patient/not-there")
        assert missing.status_code == 404 and missing.content == b""
