"""Storage: one contract (`base`), two engines (`sqlite`, `mongo`), opened by URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from .base import StoreEngine, StoreUnavailable


def open_store(url: str, *, sqlite_synchronous: str = "FULL",
               sqlite_cache_mib: int | None = None) -> StoreEngine:
    """Open the engine a store URL names (`sqlite_cache_mib`: see SqliteEngine).

    `sqlite:///relative/path`, `sqlite:////absolute/path`, `mongodb://host/db?...`
    (pymongo; `mongodb+srv://` too) and, for tests, `mongomock://anything/db`.
    """
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme == "sqlite":
        from .sqlite import SqliteEngine

        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
        if not path:
            raise StoreUnavailable(f"store URL {url!r}: expected sqlite:///PATH")
        return SqliteEngine(path, synchronous=sqlite_synchronous, cache_mib=sqlite_cache_mib)
    if scheme in ("mongodb", "mongodb+srv"):
        import pymongo

        from .mongo import MongoEngine

        database = parts.path.lstrip("/") or "gateway"
        client = pymongo.MongoClient(url, serverSelectionTimeoutMS=10_000)
        return MongoEngine(client, database)
    if scheme == "mongomock":
        try:
            import mongomock
        except ImportError as exc:  # a test-only dependency
            raise StoreUnavailable("mongomock:// needs the mongomock package (tests only)") from exc
        from .mongo import MongoEngine

        database = parts.path.lstrip("/") or "gateway"
        return MongoEngine(mongomock.MongoClient(), database, transactions=False)
    raise StoreUnavailable(
        f"store URL {url!r}: the scheme must be sqlite, mongodb or mongomock"
    )


__all__ = ["StoreEngine", "StoreUnavailable", "open_store"]
