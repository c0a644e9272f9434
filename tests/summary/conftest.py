"""tests/summary: `http` is the app (auth off) on the small records' "today", 1 June 2026
in London; the feeds and page modules define their own."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from summary_kit import RULES_TODAY, pin_today


@pytest.fixture
def http(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    pin_today(monkeypatch, RULES_TODAY)
    return client
