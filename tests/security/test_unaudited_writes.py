"""With the audit trail off (auth off, or FHIR_GATEWAY_AUDIT=off), a single REST write
still runs in one store transaction: a conditional create's search and its create, and a
Patient's NHS-number check and claim, are one unit, so two concurrent requests cannot both
find nothing and both create.

Made deterministic: each request pauses just after its search until the other one has
searched too (or a few seconds have passed). Unfixed, both search before either writes
and both create; fixed, the second request's search waits for the first one's write.
On mongomock the engine serialises writers within the process, as SQLite does; what it
cannot show is a MongoDB replica set, whose snapshot transactions do not serialise two
conditional creates that insert different documents (only the NHS-number claim, a
unique record, is guarded there).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_gateway.api.app import create_app
from fhir_gateway.config import Settings
from fhir_gateway.fhir import interactions
from fhir_gateway.security.access import AccessInterceptor
from fhir_gateway.store.base import StoreEngine
from fhir_gateway.store.query import IndexQuery
from security_kit import BASE, FHIR_JSON, NHS, Gateway, secured

NUMBER = "9434765919"
#: how long a paused request waits for the other one to search (fixed: the other cannot,
#: it waits for the first one's write; so the wait ends by this timeout)
PAUSE_S = 2.0


def _paused_after(real: Callable[..., Any]) -> Callable[..., Any]:
    """`real`, then a wait until a second caller has also returned from it."""
    meet = threading.Barrier(2, timeout=PAUSE_S)

    def paused(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        # broken: the other request did not search meanwhile; it was waiting for us
        with suppress(threading.BrokenBarrierError):
            meet.wait()
        return result

    return paused


def _at_once(*calls: Callable[[], Any]) -> list[Any]:
    with ThreadPoolExecutor(len(calls)) as pool:
        return [f.result() for f in [pool.submit(c) for c in calls]]


def _patients(engine: StoreEngine) -> list[str]:
    with engine.session(write=False) as s:
        return [r.rid for r in s.find(IndexQuery(rtype="Patient", limit=100)).rows]


@pytest.fixture
def open_client(engine: StoreEngine) -> Iterator[TestClient]:
    app = create_app(Settings(max_body_bytes=1024 * 1024, auth_enabled=False), engine=engine)
    with TestClient(app, base_url=BASE) as c:
        yield c


def test_concurrent_conditional_creates_make_one_patient_with_audit_off(
        open_client: TestClient, engine: StoreEngine,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(interactions, "visible_matches",
                        _paused_after(interactions.visible_matches))
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:test", "value": "x1"}]}
    headers = {**FHIR_JSON, "If-None-Exist": "identifier=urn:test|x1"}

    def post() -> int:
        return open_client.post("/fhir/Patient", json=body, headers=headers).status_code

    statuses = _at_once(post, post)
    assert sorted(statuses) == [200, 201]
    assert len(_patients(engine)) == 1


@pytest.fixture
def unaudited(engine: StoreEngine) -> Iterator[Gateway]:
    with secured(engine, audit_enabled=False) as gateway:
        assert gateway.http.app.state.security.trail is None
        yield gateway


def test_two_feeds_cannot_both_create_one_nhs_number_with_audit_off(
        unaudited: Gateway, engine: StoreEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    gw = unaudited
    gp = {**gw.login("gp-feed", "feed", partner="gp", org="B86001",
                     scope="system/*.cruds"), **FHIR_JSON}
    hospice = {**gw.login("hospice-feed", "feed", partner="hospice", org="RH100",
                          scope="system/*.cruds"), **FHIR_JSON}
    monkeypatch.setattr(AccessInterceptor, "_check_one_patient_per_person",
                        _paused_after(AccessInterceptor._check_one_patient_per_person))
    body = {"resourceType": "Patient", "name": [{"family": "Race"}],
            "identifier": [{"system": NHS, "value": NUMBER}]}

    def post(headers: dict[str, str]) -> int:
        return gw.http.post("/fhir/Patient", json=body, headers=headers).status_code

    statuses = _at_once(lambda: post(gp), lambda: post(hospice))
    assert sorted(statuses) == [201, 409]
    assert len(_patients(engine)) == 1
