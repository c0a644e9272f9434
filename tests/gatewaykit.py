"""Helpers shared by the test packages (a plain module: several folders have a conftest,
so `from conftest import ...` would be ambiguous)."""

from __future__ import annotations

import uuid
from pathlib import Path

from fhir_gateway.store import open_store
from fhir_gateway.store.base import StoreEngine

ENGINES = ["sqlite", "mongomock"]
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def make_engine(kind: str, tmp_path: Path) -> StoreEngine:
    """A fresh store: a SQLite file under `tmp_path`, or an empty mongomock database."""
    if kind == "sqlite":
        return open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    return open_store(f"mongomock://test/db{uuid.uuid4().hex[:8]}")
