"""Shared fixtures: every store-backed test runs on a SQLite file and on mongomock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhir_gateway.api.app import create_app
from fhir_gateway.config import Settings
from fhir_gateway.store.base import StoreEngine
from gatewaykit import ENGINES, make_engine


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreEngine]:
    store = make_engine(request.param, tmp_path)
    yield store
    store.close()


@pytest.fixture
def client(engine: StoreEngine) -> Iterator[TestClient]:
    # Pure FHIR behaviour: auth (and with it audit) explicitly off; tests/security turn it on.
    app = create_app(Settings(max_body_bytes=1024 * 1024, auth_enabled=False), engine=engine)
    with TestClient(app, base_url="http://gateway.test") as c:
        yield c



@pytest.fixture
def gw(engine: StoreEngine) -> Iterator[Any]:
    """tests/security: the app with auth on (a `security_kit.Gateway`)."""
    from security_kit import secured  # tests/security is on sys.path for its own tests

    with secured(engine) as gateway:
        yield gateway
