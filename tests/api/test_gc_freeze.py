"""A serving process hides what start-up built from the cyclic garbage collector."""

from __future__ import annotations

import gc
from pathlib import Path

from fastapi.testclient import TestClient

from fhir_gateway.api.app import create_app
from fhir_gateway.config import Settings


def test_start_up_freezes_what_it_built_only_when_asked(tmp_path: Path) -> None:
    gc.unfreeze()
    settings = Settings(store_url=f"sqlite:///{tmp_path / 'a.sqlite3'}", auth_enabled=False)
    try:
        with TestClient(create_app(settings)) as http:
            assert http.get("/fhir/metadata").status_code == 200
            assert gc.get_freeze_count() == 0
        with TestClient(create_app(settings, freeze_gc=True)) as http:
            assert gc.get_freeze_count() > 10_000  # the registry, profiles, routes...
            assert http.get("/fhir/metadata").status_code == 200
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
