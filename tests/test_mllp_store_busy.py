"""A message the store is too busy for is not the message's fault: the processor raises
StoreBusy, which the listener answers AR ("resend later"), never AE ("do not resend"),
and nothing is kept as a rejected record."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_mllp_frames import adt  # an admission message

from fhir_gateway.fhir.repository import Repository
from fhir_gateway.ingest import map_file
from fhir_gateway.mllp import loader_processor
from fhir_gateway.pipeline.service import IngestService
from fhir_gateway.store import open_store
from fhir_gateway.store import sqlite as sqlite_module
from fhir_gateway.store.base import StoreBusy


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[Any, Any, Path]]:
    path = tmp_path / "gw.sqlite3"
    engine = open_store(f"sqlite:///{path}")
    service = IngestService(Repository(engine))
    yield loader_processor(service.loader, "acute", map_file), service.loader, path
    engine.close()


def test_a_message_meeting_a_held_writer_lock_is_to_be_resent(
        listener: tuple[Any, Any, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    process, loader, path = listener
    monkeypatch.setattr(sqlite_module, "WRITER_WAIT_S", 0.2)
    with open(f"{path}-writers", "ab") as other:  # another worker's long transaction
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        try:
            with pytest.raises(StoreBusy):
                process(adt("B1"))
        finally:
            fcntl.flock(other.fileno(), fcntl.LOCK_UN)
    assert loader.list_rejected() == []
    assert process(adt("B1"))[0] == "AA"  # resent: stored


def test_a_store_busy_while_applying_is_not_an_ae(
        listener: tuple[Any, Any, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    process, loader, _path = listener

    def busy(*_args: object) -> None:
        raise StoreBusy("the store is busy; nothing was written; try again")

    monkeypatch.setattr(loader, "_apply", busy)
    with pytest.raises(StoreBusy):
        process(adt("B2"))
    assert loader.list_rejected() == []
