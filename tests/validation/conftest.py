"""Fixtures for the profile validation tests: one validator, the examples, UK Core."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fhir_gateway.validation import ProfileValidator, default_validator

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
REPO = HERE.parents[1]
UKCORE = REPO.parent / "shared" / "ukcore"
BASE = "https://fhir.shared-care-record.example/StructureDefinition/"


@pytest.fixture(scope="session")
def validator() -> ProfileValidator:
    return default_validator()


def example(name: str) -> dict[str, Any]:
    """A fresh copy of tests/validation/examples/<name>.json."""
    return copy.deepcopy(_examples()[name])


_cache: dict[str, dict[str, Any]] = {}


def _examples() -> dict[str, dict[str, Any]]:
    if not _cache:
        for path in sorted(EXAMPLES.glob("*.json")):
            _cache[path.stem] = json.loads(path.read_text())
    return _cache


@pytest.fixture
def load() -> Callable[[str], dict[str, Any]]:
    return example
