"""The printable page in a real browser: headless Chromium (Debian's `chromium` package;
`.ci/run` installs it) renders it at tablet size, and the screenshot must show the CPR
decision's coloured box at the top (the deceased banner above it when the record says so).

This test fails, never skips, when Chromium is missing: the page is what crews read."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pngpixels
import pytest
from fastapi.testclient import TestClient
from summary_kit import GP, HOSPICE, RULES_TODAY, Record, by_nhs, pin_today, valid_nhs

from fhir_gateway.api.app import create_app
from fhir_gateway.config import Settings
from fhir_gateway.store import open_store
from fhir_gateway.summary.html import TONES

WIDTH, HEIGHT = 1024, 1366
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("chromium is not installed, so the emergency summary page cannot be "
                    "checked: apt-get install -y --no-install-recommends chromium "
                    "(.ci/run does this in CI)")
    return found


def screenshot(page: str, where: Path) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    html, png = where / "page.html", where / "page.png"
    html.write_text(page, encoding="utf-8")
    result = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={where / 'profile'}", f"--screenshot={png}",
         f"--window-size={WIDTH},{HEIGHT}", html.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and png.exists(), \
        f"chromium failed ({result.returncode}): {result.stderr[-2000:]}"
    return png


@pytest.fixture
def http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    pin_today(monkeypatch, RULES_TODAY)
    engine = open_store(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    app = create_app(Settings(auth_enabled=False), engine=engine)
    with TestClient(app, base_url="http://gateway.test") as client:
        yield client
    engine.close()


def page_of(http: TestClient, nhs: str) -> str:
    resp = http.get(by_nhs(nhs), headers={"Accept": "text/html"})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert "<script" not in resp.text.lower()
    return resp.text


def check(png: Path, *, top: str, present: tuple[str, ...], absent: tuple[str, ...]) -> None:
    assert pngpixels.size(png) == (WIDTH, HEIGHT)
    image = pngpixels.read(png)
    colours = image.colours(step=2)
    total = sum(colours.values())
    white = colours[(255, 255, 255)]
    assert len(colours) > 8 and white < total * 0.95, "the screenshot is (nearly) blank"
    for name in present:  # a solid box, not a stray pixel
        assert colours[rgb(TONES[name][0])] > total * 0.02, f"no {name} box in the screenshot"
    for name in absent:
        assert colours[rgb(TONES[name][0])] == 0, f"a {name} box that should not be there"
    assert image.pixel(WIDTH // 2, 24) == rgb(TONES[top][0]), "the page does not start with it"


def test_not_for_cpr_page_starts_with_a_red_box(http: TestClient, tmp_path: Path) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP)
    png = screenshot(page_of(http, rec.nhs), tmp_path / "not-for-cpr")
    check(png, top="not-attempt", present=("not-attempt",), absent=("attempt", "conflict"))


def test_conflict_page_starts_with_the_amber_banner(http: TestClient, tmp_path: Path) -> None:
    rec = Record(http)
    rec.cpr("not-attempt", "2026-01-01", GP)
    rec.cpr("attempt", "2026-03-01", HOSPICE)
    page = page_of(http, rec.nhs)
    assert page.index("Not for attempted CPR") < page.index("Preferred place")
    assert page.index("For attempted CPR") < page.index("Preferred place")
    png = screenshot(page, tmp_path / "conflict")
    check(png, top="conflict", present=("conflict",), absent=("not-attempt", "attempt"))


def test_deceased_page_starts_with_the_banner(http: TestClient, tmp_path: Path) -> None:
    rec = Record(http, nhs=valid_nhs(30), deceasedDateTime="2026-05-20")
    rec.cpr("attempt", "2026-01-01", GP)
    png = screenshot(page_of(http, rec.nhs), tmp_path / "deceased")
    check(png, top="deceased", present=("deceased", "attempt"), absent=("not-attempt",))
