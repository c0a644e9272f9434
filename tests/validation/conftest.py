"""Fixtures for the profile validation tests: one validator, the examples."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from fhir_gateway.validation import ProfileValidator, default_validator
from validation_kit import example


@pytest.fixture(scope="session")
def validator() -> ProfileValidator:
    return default_validator()


@pytest.fixture
def load() -> Callable[[str], dict[str, Any]]:
    return example
