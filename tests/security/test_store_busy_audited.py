"""With auth and audit on, a write the store is too busy for (another worker's long
transaction holds the writer lock) is still a 503 with Retry-After, and its refusal is
audited once the store is free again."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from pathlib import Path

import pytest

from fhir_gateway.store import sqlite as sqlite_module
from fhir_gateway.store.base import StoreEngine
from gatewaykit import make_engine
from security_kit import FHIR_JSON, Gateway, secured


@pytest.fixture
def sqlite_gw(tmp_path: Path) -> Iterator[Gateway]:
    engine: StoreEngine = make_engine("sqlite", tmp_path)
    with secured(engine) as gateway:
        yield gateway
    engine.close()


def test_an_audited_write_the_store_is_too_busy_for_is_a_503(
        sqlite_gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    gw = sqlite_gw
    feed = {**gw.login("hospice-feed", "feed", partner="hospice", org="RH100",
                       scope="system/*.cruds"), **FHIR_JSON}
    monkeypatch.setattr(sqlite_module, "WRITER_WAIT_S", 0.2)
    with open(f"{gw.engine.path}-writers", "ab") as other:  # type: ignore[attr-defined]
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        try:
            resp = gw.http.post("/fhir/Patient", headers=feed,
                                json={"resourceType": "Patient", "name": [{"family": "B"}]})
        finally:
            fcntl.flock(other.fileno(), fcntl.LOCK_UN)
    assert resp.status_code == 503, resp.text
    assert resp.headers["retry-after"].isdigit()
    assert resp.json()["issue"][0]["code"] == "transient"
    refused = [e for e in gw.audit_events(subtype="create") if e["outcome"] != "0"]
    assert len(refused) == 1 and "503" in refused[0].get("outcomeDesc", "")
