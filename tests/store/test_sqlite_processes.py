"""SQLite with several processes (uvicorn workers, a CLI beside a server): writers of all
processes are serialised, on the advisory lock beside the database and SQLite's own."""

from __future__ import annotations

import fcntl
import multiprocessing
import time
from pathlib import Path

import pytest

from fhir_gateway.store import sqlite as sqlite_module
from fhir_gateway.store.base import StoreBusy
from fhir_gateway.store.sqlite import SqliteEngine

ROUNDS = 150


def _count_up(path: str, rounds: int) -> None:
    engine = SqliteEngine(path)
    for _ in range(rounds):
        with engine.session(write=True) as s:
            current = s.record_get("counter", "c") or {"n": 0}
            s.record_put("counter", "c", {"n": current["n"] + 1})
    engine.close()


def test_read_modify_write_in_two_processes_loses_no_update(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    SqliteEngine(path).close()
    spawn = multiprocessing.get_context("spawn")
    workers = [spawn.Process(target=_count_up, args=(path, ROUNDS)) for _ in range(2)]
    for w in workers:
        w.start()
    _count_up(path, ROUNDS)
    for w in workers:
        w.join(timeout=120)
        assert w.exitcode == 0
    engine = SqliteEngine(path)
    with engine.session(write=False) as s:
        assert s.record_get("counter", "c") == {"n": 3 * ROUNDS}
    engine.close()


def test_a_write_session_holds_the_lock_other_processes_queue_on(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    engine = SqliteEngine(str(path))
    with open(f"{path}-writers", "ab") as other:  # another process's descriptor
        with engine.session(write=True) as s:
            s.record_put("counter", "c", {"n": 1})
            with pytest.raises(BlockingIOError):
                fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # free after commit
        fcntl.flock(other.fileno(), fcntl.LOCK_UN)
        with engine.session(write=False):
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # readers take none
            fcntl.flock(other.fileno(), fcntl.LOCK_UN)
    engine.close()


def test_a_writer_stuck_in_another_process_is_waited_for_only_so_long(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # As busy_timeout did before the lock, not a wait for ever; and the store's own
    # StoreBusy (a 503 with Retry-After at the API edge), not a raw sqlite3 error (a 500).
    monkeypatch.setattr(sqlite_module, "WRITER_WAIT_S", 0.3)
    path = tmp_path / "shared.sqlite3"
    engine = SqliteEngine(str(path))
    with open(f"{path}-writers", "ab") as other:  # another process's descriptor
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        with pytest.raises(StoreBusy, match="nothing was written") as busy, \
                engine.session(write=True) as s:
            s.record_put("counter", "c", {"n": 1})
        assert busy.value.status == 503 and "Retry-After" in busy.value.headers
        fcntl.flock(other.fileno(), fcntl.LOCK_UN)
    with engine.session(write=True) as s:  # the lock was let go: writing works again
        s.record_put("counter", "c", {"n": 2})
    with engine.session(write=False) as s:
        assert s.record_get("counter", "c") == {"n": 2}
    engine.close()


def test_the_wal_is_copied_into_the_database_in_the_background(tmp_path: Path) -> None:
    """Below SQLite's own 1,000-page checkpoint, the checkpointer thread copies committed
    pages into the database file without another commit or any reader asking; close()
    stops the thread."""
    path = tmp_path / "bg.sqlite3"
    engine = SqliteEngine(str(path))
    with engine.session(write=True) as s:
        for i in range(200):
            s.record_put("blob", f"b{i}", {"text": "x" * 4000})
    before = path.stat().st_size
    deadline = time.monotonic() + 30
    while path.stat().st_size <= before + 200 * 4000 and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for the thread, not timing it
    assert path.stat().st_size > before + 200 * 4000
    checkpointer = engine._checkpointer
    assert checkpointer is not None and checkpointer.is_alive()
    engine.close()
    assert not checkpointer.is_alive()
    reopened = SqliteEngine(str(path))
    with reopened.session(write=False) as s:
        assert s.record_get("blob", "b199") == {"text": "x" * 4000}
    reopened.close()


def test_a_writer_outside_the_lock_file_is_waited_for_only_so_long_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Another tool writing the database directly: SQLite's busy timeout gives up, and
    # that is StoreBusy as well, not a raw "database is locked".
    import sqlite3

    monkeypatch.setattr(sqlite_module, "WRITER_WAIT_S", 0.3)
    path = tmp_path / "shared.sqlite3"
    engine = SqliteEngine(str(path))
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreBusy, match="nothing was written"), \
                engine.session(write=True) as s:
            s.record_put("counter", "c", {"n": 1})
    finally:
        other.execute("ROLLBACK")
        other.close()
    with engine.session(write=True) as s:
        s.record_put("counter", "c", {"n": 2})
    engine.close()
