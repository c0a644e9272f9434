"""The summary's "Record last fed": a delivery that changes nothing (a daily extract
confirming the register) feeds the record too. It said the time of the last change, so a
record a partner confirmed this morning read to a crew as stale for months."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from summary_kit import FEEDS, by_nhs

from fhir_gateway.api.app import create_app
from fhir_gateway.config import Settings
from fhir_gateway.fhir.repository import Repository
from fhir_gateway.ingest import map_file
from fhir_gateway.pipeline.loader import Loader
from fhir_gateway.store.base import StoreEngine
from fhir_gateway.summary.words import instant
from gatewaykit import make_engine

GP = "gp/palliative_register.csv"
# the first delivery's time is before the repository's own clock (meta.lastUpdated); the
# second's after it, so that only the note of a delivery that changed nothing can give it
FIRST, AGAIN = "2026-01-06T09:15:00.000000Z", "2030-03-04T07:45:00.000000Z"


@pytest.fixture(params=["sqlite", "mongomock"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreEngine]:
    engine = make_engine(request.param, tmp_path)
    yield engine
    engine.close()


def deliver(engine: StoreEngine, when: str) -> dict[str, int]:
    loader = Loader(Repository(engine), clock=lambda: when)
    return loader.ingest(map_file("gp", "register.csv", (FEEDS / GP).read_bytes())).counts()


def last_fed(engine: StoreEngine, nhs: str) -> str:
    app = create_app(Settings(auth_enabled=False), engine=engine)
    with TestClient(app, base_url="http://gateway.test") as http:
        resp = http.get(by_nhs(nhs))
    assert resp.status_code == 200, resp.text
    (said,) = set(re.findall(r"Record last fed [^.<\"]*\.", json.dumps(resp.json())))
    return said


def test_an_unchanged_delivery_moves_last_fed(engine: StoreEngine) -> None:
    first = deliver(engine, FIRST)
    assert first["created"] > 0
    nhs = next(line.split(",")[0] for line in (FEEDS / GP).read_text().splitlines()[1:]
               if line[:1].isdigit()).replace(" ", "")
    assert last_fed(engine, nhs) != f"Record last fed {instant(AGAIN)}."
    again = deliver(engine, AGAIN)
    assert (again["created"], again["updated"]) == (0, 0) and again["unchanged"] > 0
    assert last_fed(engine, nhs) == f"Record last fed {instant(AGAIN)}."
    deliver(engine, FIRST)  # an older copy's receipt does not take it back
    assert last_fed(engine, nhs) == f"Record last fed {instant(AGAIN)}."


def test_a_repeated_or_older_message_does_not_move_last_fed(engine: StoreEngine) -> None:
    """An ADT message sent again, or one older than what stands, changes nothing and
    confirms nothing: it moved "last fed" as if the hospital had confirmed the record."""
    message = (b"MSH|^~\\&|PAS|RXA|SCR|GATEWAY|202601020900||ADT^A01^ADT_A01|C1|P|2.4\r"
               b"EVN|A01|202601020900\r"
               b"PID|1||9434765919^^^NHS^NH~M1^^^RXA^MR||SMITH^ANN||19411103|F\r"
               b"PV1|1|I|WARD 7^BAY C^BED 1^RXA||||||||||||||||V1\r")
    for when in (FIRST, AGAIN):
        loader = Loader(Repository(engine), clock=lambda when=when: when)
        loader.ingest(map_file("acute", "adt.hl7", message))
    assert last_fed(engine, "9434765919") != f"Record last fed {instant(AGAIN)}."
