"""Helpers shared by the test packages (a plain module: several folders have a conftest,
so `from conftest import ...` would be ambiguous)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from fhir_gateway.fhir.repository import Repository
from fhir_gateway.store import open_store
from fhir_gateway.store.base import StoreEngine, VersionConflict

ENGINES = ["sqlite", "mongomock"]
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def make_engine(kind: str, tmp_path: Path) -> StoreEngine:
    """A fresh store: a SQLite file under `tmp_path`, or an empty mongomock database."""
    if kind == "sqlite":
        return open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    return open_store(f"mongomock://test/db{uuid.uuid4().hex[:8]}")


def conflict_once(monkeypatch: pytest.MonkeyPatch, repository: Repository,
                  rtype: str) -> list[str]:
    """Make the repository's next write of `rtype` meet a concurrent writer (a
    VersionConflict), once; the list returned gets `rtype` when it did."""
    real = repository._write_once
    conflicts: list[str] = []

    def once_conflicting(session: Any, written: str, *args: Any) -> Any:
        if written == rtype and not conflicts:
            conflicts.append(written)
            raise VersionConflict("a concurrent writer, once")
        return real(session, written, *args)

    monkeypatch.setattr(repository, "_write_once", once_conflicting)
    return conflicts
