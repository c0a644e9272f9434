"""Paths and examples for the profile validation tests (a plain module, importable by name)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
REPO = HERE.parents[1]
UKCORE = REPO.parent / "shared" / "ukcore"
BASE = "https://fhir.shared-care-record.example/StructureDefinition/"


def example(name: str) -> dict[str, Any]:
    """A fresh copy of tests/validation/examples/<name>.json."""
    return copy.deepcopy(_examples()[name])


_cache: dict[str, dict[str, Any]] = {}


def _examples() -> dict[str, dict[str, Any]]:
    if not _cache:
        for path in sorted(EXAMPLES.glob("*.json")):
            _cache[path.stem] = json.loads(path.read_text())
    return _cache
