"""SQLite engine options that only that engine has."""

from __future__ import annotations

from pathlib import Path

from fhir_gateway.store import open_store
from fhir_gateway.store.sqlite import SqliteEngine, SqliteSession


def _cache_size(engine: SqliteEngine) -> int:
    with engine.session(write=False) as s:
        assert isinstance(s, SqliteSession)
        return int(s.conn.execute("PRAGMA cache_size").fetchone()[0])


def test_cache_mib_sizes_every_connections_page_cache(tmp_path: Path) -> None:
    engine = open_store(f"sqlite:///{tmp_path / 'big.sqlite3'}", sqlite_cache_mib=64)
    assert isinstance(engine, SqliteEngine)
    assert _cache_size(engine) == -64 * 1024  # negative: KiB, not pages
    default = SqliteEngine(tmp_path / "default.sqlite3")
    assert _cache_size(default) == -2000  # SQLite's own default, untouched
    engine.close()
    default.close()
