"""The embedded engine: one SQLite file, WAL, synchronous=FULL by default.

Durability: in WAL mode with `synchronous=FULL` a transaction is fsynced before COMMIT
returns, so an acknowledged write survives `kill -9` of the server and power loss.
`NORMAL` survives a killed process but may lose the last commits on power loss.

Concurrency: one connection per thread; write sessions take `BEGIN IMMEDIATE`, so
writers queue instead of failing (first on a lock per process, then on an advisory
`flock` on `<file>-writers` shared by every process, then busy_timeout), and readers keep
reading the last committed snapshot (WAL). The versions primary key is the last line of
defence against a lost version. WAL checkpoints also run on a background thread every
`CHECKPOINT_INTERVAL_S` (PASSIVE), so that under light writing the WAL stays short and
commits rarely pay for copying it back; under heavy writing SQLite's own checkpoint at
1,000 pages still bounds it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from . import base
from .base import (
    DateValue,
    FindResult,
    HistoryPage,
    IndexEntry,
    NewVersion,
    NumberValue,
    ReferenceValue,
    StoredVersion,
    StringValue,
    TokenValue,
    VersionConflict,
)
from .cursor import decode_cursor, history_cursor
from .query import (
    ChainPredicate,
    Criterion,
    HasPredicate,
    IndexQuery,
    MissingPredicate,
    Predicate,
    RangePredicate,
    ReferencePredicate,
    StringPredicate,
    TokenPredicate,
    TokenTextPredicate,
)

log = logging.getLogger("fhir_gateway.store.sqlite")

# Indexes are declared here, created idempotently at open, and listed in the README.
SCHEMA = """
CREATE TABLE IF NOT EXISTS resources (
    pk INTEGER PRIMARY KEY,
    rtype TEXT NOT NULL,
    rid TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    body TEXT,
    UNIQUE (rtype, rid)
);
CREATE INDEX IF NOT EXISTS resources_type_updated ON resources (rtype, last_updated);
CREATE TABLE IF NOT EXISTS versions (
    rtype TEXT NOT NULL,
    rid TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_updated TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    body TEXT,
    PRIMARY KEY (rtype, rid, version)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS versions_updated ON versions (last_updated, rtype, rid, version);
CREATE INDEX IF NOT EXISTS versions_type_updated
    ON versions (rtype, last_updated, rid, version);
CREATE TABLE IF NOT EXISTS idx_token (
    pk INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL,
    system TEXT, code TEXT, text TEXT
);
CREATE INDEX IF NOT EXISTS idx_token_lookup ON idx_token (rtype, param, code, system);
CREATE INDEX IF NOT EXISTS idx_token_system ON idx_token (rtype, param, system);
CREATE INDEX IF NOT EXISTS idx_token_pk ON idx_token (pk);
CREATE TABLE IF NOT EXISTS idx_string (
    pk INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL,
    norm TEXT NOT NULL, exact TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_string_lookup ON idx_string (rtype, param, norm);
CREATE INDEX IF NOT EXISTS idx_string_exact ON idx_string (rtype, param, exact);
CREATE INDEX IF NOT EXISTS idx_string_pk ON idx_string (pk);
CREATE TABLE IF NOT EXISTS idx_date (
    pk INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL,
    low TEXT NOT NULL, high TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_date_low ON idx_date (rtype, param, low);
CREATE INDEX IF NOT EXISTS idx_date_high ON idx_date (rtype, param, high);
CREATE INDEX IF NOT EXISTS idx_date_pk ON idx_date (pk);
CREATE TABLE IF NOT EXISTS idx_reference (
    pk INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL,
    target_type TEXT, target_id TEXT, url TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_reference_target
    ON idx_reference (rtype, param, target_id, target_type);
CREATE INDEX IF NOT EXISTS idx_reference_url ON idx_reference (rtype, param, url);
CREATE INDEX IF NOT EXISTS idx_reference_pk ON idx_reference (pk);
CREATE TABLE IF NOT EXISTS idx_number (
    pk INTEGER NOT NULL, rtype TEXT NOT NULL, param TEXT NOT NULL,
    low REAL NOT NULL, high REAL NOT NULL, system TEXT, code TEXT
);
CREATE INDEX IF NOT EXISTS idx_number_low ON idx_number (rtype, param, low);
CREATE INDEX IF NOT EXISTS idx_number_pk ON idx_number (pk);
CREATE TABLE IF NOT EXISTS compartment (
    pk INTEGER NOT NULL, patient TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS compartment_patient ON compartment (patient, pk);
CREATE INDEX IF NOT EXISTS compartment_pk ON compartment (pk);
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, expires TEXT,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS records_expires ON records (expires);
"""

INDEX_TABLES = ("idx_token", "idx_string", "idx_date", "idx_reference", "idx_number")
KIND_TABLE = {
    "token": "idx_token",
    "string": "idx_string",
    "uri": "idx_string",
    "date": "idx_date",
    "reference": "idx_reference",
    "number": "idx_number",
    "quantity": "idx_number",
}
SYNCHRONOUS_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
#: how often the checkpointer thread copies the WAL into the database
CHECKPOINT_INTERVAL_S = 0.5
#: a commit still checkpoints inline past this many WAL pages (SQLite's default): under
#: steady reads and writes a PASSIVE checkpoint cannot always finish, and a WAL let grow
#: to tens of MB (tried: 20,000 pages) made reads slower and the inline checkpoint, when
#: it came, a long stall
BACKSTOP_CHECKPOINT_PAGES = 1000
_COLUMNS = "rtype, rid, version, last_updated, deleted, body"
#: how long a writer waits for another process's write to end (as busy_timeout)
WRITER_WAIT_S = 60.0
#: rows per multi-row INSERT in put_new: bounds the distinct statements prepared (and
#: cached) and each statement's size
_MAX_VALUES_ROWS = 500


def _index_rows(pk: int, rtype: str, entries: Iterable[IndexEntry]
                ) -> Iterator[tuple[str, tuple]]:
    """(table, row) for each index entry of resource `pk`."""
    for entry in entries:
        v = entry.value
        head = (pk, rtype, entry.param)
        if isinstance(v, TokenValue):
            yield "idx_token", (*head, v.system, v.code, v.text)
        elif isinstance(v, StringValue):
            yield "idx_string", (*head, v.normalized, v.exact)
        elif isinstance(v, DateValue):
            yield "idx_date", (*head, v.low, v.high)
        elif isinstance(v, ReferenceValue):
            yield "idx_reference", (*head, v.target_type, v.target_id, v.url)
        elif isinstance(v, NumberValue):
            yield "idx_number", (*head, v.low, v.high, v.system, v.code)


def _begin(conn: sqlite3.Connection, write: bool) -> None:
    """BEGIN; a write whose lock SQLite's busy timeout gave up on (a writer outside the
    writer-lock file: another tool on the database) is StoreBusy, as at the lock file."""
    try:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    except sqlite3.OperationalError as exc:
        if write and ("locked" in str(exc) or "busy" in str(exc)):
            raise base.StoreBusy(f"the store is busy ({exc}); nothing was written; "
                                 "try again") from exc
        raise


def _row(row: tuple) -> StoredVersion:
    return StoredVersion(
        rtype=row[0], rid=row[1], version=row[2], last_updated=row[3],
        deleted=bool(row[4]), body=row[5],
    )


class SqliteEngine:
    """A store in one SQLite file (see module docstring for durability)."""

    name = "sqlite"

    def __init__(self, path: str | Path, *, synchronous: str = "FULL",
                 cache_mib: int | None = None) -> None:
        """`cache_mib`: each connection's page cache (SQLite's default is 2 MiB). A bulk
        load (`fhir-gateway ingest`) gives its one writer more, so the index B-trees'
        upper pages stay cached as they grow instead of being read again per insert."""
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}")
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self.cache_mib = cache_mib
        self._on_disk = str(self.path) != ":memory:"
        if self._on_disk:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # Writers of this process queue here, in order, instead of in SQLite's busy
        # handler, whose growing sleeps gave creates a p99 of hundreds of ms under load.
        self._writer = threading.Lock()
        # ...and writers of every process (uvicorn workers, a CLI) then queue on an
        # advisory lock on a file beside the database (`_lock_writers`), taken within
        # ~2 ms of its release and waited for at most WRITER_WAIT_S; busy_timeout stays
        # as the guard against anyone else.
        self._writer_file: tuple[int, Any] | None = None
        # WAL checkpoints also run on a thread of their own (`_checkpoints`), so that the
        # commit that crosses the threshold, which every request waiting on it (an
        # audited read waits for its AuditEvent's) would wait for too, comes rarely.
        self._checkpointer: threading.Thread | None = None
        self._stopping = threading.Event()
        conn = self._connection()
        conn.executescript(SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False,
                timeout=WRITER_WAIT_S)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute(f"PRAGMA busy_timeout={int(WRITER_WAIT_S * 1000)}")
            if self.cache_mib:
                conn.execute(f"PRAGMA cache_size=-{int(self.cache_mib) * 1024}")
            if self._on_disk:
                conn.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_CHECKPOINT_PAGES}")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def session(self, *, write: bool) -> Iterator[SqliteSession]:
        conn = self._connection()
        depth = getattr(self._local, "depth", 0)
        if depth:  # nested use inside an open session on this thread shares it
            if write and not self._local.writing:
                # it would write in a read transaction, outside the writer locks
                raise base.StoreError("a write session cannot be opened inside a read one")
            yield SqliteSession(conn, write=write)
            return
        locked: int | None = None
        if write:
            self._writer.acquire()
            try:
                locked = self._lock_writers()
            except BaseException:
                self._writer.release()
                raise
        try:
            _begin(conn, write)
            self._local.depth, self._local.writing = 1, write
            try:
                yield SqliteSession(conn, write=write)
            except BaseException:
                if conn.in_transaction:  # else SQLite rolled it back itself
                    conn.execute("ROLLBACK")
                raise
            else:
                conn.execute("COMMIT")
                if write and self._checkpointer is None and self._on_disk:
                    self._start_checkpointer()
            finally:
                self._local.depth = 0
        finally:
            if write:
                if locked is not None:
                    fcntl.flock(locked, fcntl.LOCK_UN)
                self._writer.release()

    def _lock_writers(self) -> int | None:
        """Take the cross-process writer lock (held with `_writer`); its descriptor."""
        if not self._on_disk:
            return None
        if self._writer_file is None or self._writer_file[0] != os.getpid():
            # per process: a descriptor inherited across fork would share the lock
            self._writer_file = (os.getpid(), open(f"{self.path}-writers", "ab"))  # noqa: SIM115
        fd = self._writer_file[1].fileno()
        # Bounded like busy_timeout (a hung holder must not hang every writer for ever).
        # Only one thread per process polls here (the others queue on `_writer`), and
        # the pause stays short, so a released lock is taken within ~2 ms.
        deadline, pause = time.monotonic() + WRITER_WAIT_S, 0.0001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise base.StoreBusy(
                        f"the store is busy: another writer has held it for "
                        f"{WRITER_WAIT_S:g} s; nothing was written; try again") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.002)

    def _start_checkpointer(self) -> None:
        with self._lock:
            if self._checkpointer is None and not self._stopping.is_set():
                self._checkpointer = threading.Thread(
                    target=self._checkpoints, name="sqlite-checkpointer", daemon=True)
                self._checkpointer.start()

    def _checkpoints(self) -> None:
        """Copy committed WAL frames into the database every CHECKPOINT_INTERVAL_S. PASSIVE:
        it never waits for, or blocks, readers and writers; what it cannot copy yet it
        copies next time (another process's checkpointer may do it meanwhile)."""
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA busy_timeout=0")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            while not self._stopping.wait(CHECKPOINT_INTERVAL_S):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    log.debug("WAL checkpoint skipped", exc_info=True)
        finally:
            conn.close()

    def close(self) -> None:
        self._stopping.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=10)
        with self._writer:
            if self._writer_file is not None:
                self._writer_file[1].close()
                self._writer_file = None
        with self._lock:
            for conn in self._all:
                with suppress(sqlite3.ProgrammingError):
                    conn.close()
            self._all.clear()
        self._local = threading.local()


class SqliteSession:
    def __init__(self, conn: sqlite3.Connection, *, write: bool) -> None:
        self.conn = conn
        self.write = write

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        if not self.write:
            raise base.StoreError("savepoint() in a read-only session")
        # One name serves nested use too: ROLLBACK TO / RELEASE act on the newest of a name.
        self.conn.execute("SAVEPOINT step")
        try:
            yield
        except BaseException:
            # SQLite may already have rolled the whole transaction back (disk full, I/O
            # error): then there is nothing to undo here and the error itself propagates.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK TO step")
                self.conn.execute("RELEASE step")
            raise
        self.conn.execute("RELEASE step")

    def current(self, rtype: str, rid: str) -> StoredVersion | None:
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM resources WHERE rtype=? AND rid=?", (rtype, rid)
        ).fetchone()
        return _row(row) if row else None

    def version(self, rtype: str, rid: str, version: int) -> StoredVersion | None:
        row = self.conn.execute(
            f"SELECT {_COLUMNS} FROM versions WHERE rtype=? AND rid=? AND version=?",
            (rtype, rid, version),
        ).fetchone()
        return _row(row) if row else None

    def put(self, new: NewVersion) -> None:
        if not self.write:
            raise base.StoreError("put() in a read-only session")
        deleted = 1 if new.body is None else 0
        try:
            self.conn.execute(
                f"INSERT INTO versions ({_COLUMNS}) VALUES (?,?,?,?,?,?)",
                (new.rtype, new.rid, new.version, new.last_updated, deleted, new.body),
            )
        except sqlite3.IntegrityError as exc:
            raise VersionConflict(f"{new.rtype}/{new.rid} version {new.version} exists") from exc
        row = self.conn.execute(
            "SELECT pk, version FROM resources WHERE rtype=? AND rid=?", (new.rtype, new.rid)
        ).fetchone()
        if row is None:
            pk = self.conn.execute(
                f"INSERT INTO resources ({_COLUMNS}) VALUES (?,?,?,?,?,?)",
                (new.rtype, new.rid, new.version, new.last_updated, deleted, new.body),
            ).lastrowid
        else:
            pk, current = row
            if current >= new.version:
                raise VersionConflict(f"{new.rtype}/{new.rid} is at version {current}")
            self.conn.execute(
                "UPDATE resources SET version=?, last_updated=?, deleted=?, body=? WHERE pk=?",
                (new.version, new.last_updated, deleted, new.body, pk),
            )
            for table in (*INDEX_TABLES, "compartment"):
                self.conn.execute(f"DELETE FROM {table} WHERE pk=?", (pk,))
        if new.body is not None:
            self._write_index(pk, new)

    def put_new(self, news: Sequence[NewVersion]) -> None:
        if not self.write:
            raise base.StoreError("put_new() in a read-only session")
        if not news:
            return
        if any(n.version != 1 or n.body is None for n in news):
            raise ValueError("put_new() stores first versions with a body only")
        # Each table in a few multi-row INSERT ... VALUES statements, so a batch costs a
        # handful of sqlite3_step calls, each of which releases and retakes the GIL: in a
        # busy server every release hands the lock to a request thread and back, so this
        # beat row-by-row executemany (bench/auth.py --workers 2: 0.64-0.66 vs 0.57-0.61 of
        # the unaudited rate). Bound values, not a JSON array over json_each as before:
        # ~23% less CPU per imported AuditEvent (no JSON encoding and parsing of bodies).
        rows = [(n.rtype, n.rid, 1, n.last_updated, 0, n.body) for n in news]
        try:
            self._insert_rows("versions", rows, columns=_COLUMNS)
            first = self.conn.execute("SELECT coalesce(max(pk), 0) + 1 FROM resources"
                                      ).fetchone()[0]
            last = self._insert_rows("resources", rows, columns=_COLUMNS)
        except sqlite3.IntegrityError as exc:
            raise VersionConflict(f"one of {len(news)} new resources exists") from exc
        if last == first + len(news) - 1:  # new rowids are max + 1, in insertion order
            pks: Sequence[int] = range(first, last + 1)
        else:  # past the largest rowid SQLite picks free ones at random: look them up
            pks = [self.conn.execute("SELECT pk FROM resources WHERE rtype=? AND rid=?",
                                     (n.rtype, n.rid)).fetchone()[0] for n in news]
        tables: dict[str, list[tuple]] = {t: [] for t in (*INDEX_TABLES, "compartment")}
        for pk, n in zip(pks, news, strict=True):
            # a repeated value needs one row
            for table, row in _index_rows(pk, n.rtype, dict.fromkeys(n.index)):
                tables[table].append(row)
            tables["compartment"].extend((pk, p) for p in n.compartments)
        for table, values in tables.items():
            if values:
                self._insert_rows(table, values)

    def _insert_rows(self, table: str, rows: Sequence[tuple], *, columns: str = "") -> int:
        """INSERT `rows` (all of one width) in as few statements as SQLite's limit on bound
        variables allows; the rowid of the last row inserted."""
        width = len(rows[0])
        per = max(1, min(_MAX_VALUES_ROWS,
                         self.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width))
        target = f"{table} ({columns})" if columns else table
        last = 0
        for start in range(0, len(rows), per):
            chunk = rows[start:start + per]
            marks = ",".join([f"({','.join('?' * width)})"] * len(chunk))
            last = self.conn.execute(f"INSERT INTO {target} VALUES {marks}",
                                     [v for row in chunk for v in row]).lastrowid
        return last

    def _write_index(self, pk: int, new: NewVersion) -> None:
        rows: dict[str, list[tuple]] = {t: [] for t in INDEX_TABLES}
        for table, row in _index_rows(pk, new.rtype, new.index):
            rows[table].append(row)
        for table, values in rows.items():
            if values:
                marks = ",".join("?" * len(values[0]))
                self.conn.executemany(f"INSERT INTO {table} VALUES ({marks})", values)
        if new.compartments:
            self.conn.executemany(
                "INSERT INTO compartment VALUES (?,?)", [(pk, p) for p in new.compartments]
            )

    def history(
        self,
        *,
        rtype: str | None,
        rid: str | None,
        since: str | None,
        cursor: str | None,
        limit: int,
    ) -> HistoryPage:
        where: list[str] = []
        args: list[object] = []
        # One resource's history: its few versions come from the primary key and are
        # sorted. On the bare `last_updated` (its order, `_since`, a later page's cursor)
        # SQLite would walk the type's whole history in `versions_type_updated` instead
        # ("+" makes it an expression no index serves).
        unary = "+" if rid is not None else ""
        if rtype is not None:
            where.append("rtype=?")
            args.append(rtype)
        if rid is not None:
            where.append("rid=?")
            args.append(rid)
        if since is not None:
            where.append(f"{unary}last_updated>=?")
            args.append(since)
        if cursor is not None:
            lu, ct, ci, cv = decode_cursor(cursor, width=4)
            # Newest first; the keyset is (last_updated, rtype, rid, version) descending.
            where.append(f"({unary}last_updated, rtype, rid, version) < (?,?,?,?)")
            args.extend([lu, ct, ci, cv])
        sql = f"SELECT {_COLUMNS} FROM versions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += (f" ORDER BY {unary}last_updated DESC, {unary}rtype DESC, {unary}rid DESC, "
                f"{unary}version DESC LIMIT ?")
        args.append(limit + 1)
        rows = [_row(r) for r in self.conn.execute(sql, args).fetchall()]
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = None
        if more and rows:
            nxt = history_cursor(rows[-1])
        return HistoryPage(versions=rows, next_cursor=nxt)

    def record_get(self, kind: str, key: str, *, now: str | None = None) -> dict | None:
        row = self.conn.execute("SELECT value, expires FROM records WHERE kind=? AND key=?",
                                (kind, key)).fetchone()
        if row is None or (row[1] is not None and now is not None and row[1] <= now):
            return None
        return json.loads(row[0])

    def record_put(self, kind: str, key: str, value: dict, *, expires: str | None = None,
                   create_only: bool = False, now: str | None = None) -> bool:
        if not self.write:
            raise base.StoreError("record_put() in a read-only session")
        text = json.dumps(value, separators=(",", ":"), sort_keys=True)
        if create_only:
            # An expired record may be replaced; a live one may not (the replay guard).
            self.conn.execute("DELETE FROM records WHERE kind=? AND key=? AND expires IS NOT "
                              "NULL AND expires <= ?", (kind, key, now or ""))
            try:
                self.conn.execute("INSERT INTO records VALUES (?,?,?,?)",
                                  (kind, key, text, expires))
            except sqlite3.IntegrityError:
                return False
            return True
        self.conn.execute("INSERT OR REPLACE INTO records VALUES (?,?,?,?)",
                          (kind, key, text, expires))
        return True

    def record_delete(self, kind: str, key: str) -> bool:
        if not self.write:
            raise base.StoreError("record_delete() in a read-only session")
        return self.conn.execute("DELETE FROM records WHERE kind=? AND key=?",
                                 (kind, key)).rowcount > 0

    def record_list(self, kind: str, *, after: str | None = None, before: str | None = None,
                    limit: int = 1000) -> list[tuple[str, dict]]:
        bound, args = ("AND key<? ", (before,)) if before is not None else ("", ())
        rows = self.conn.execute(
            f"SELECT key, value FROM records WHERE kind=? AND key>? {bound}ORDER BY key LIMIT ?",
            (kind, after or "", *args, limit)).fetchall()
        return [(k, json.loads(v)) for k, v in rows]

    def find(self, query: IndexQuery) -> FindResult:
        sql, args = compile_query(query)
        rows = self.conn.execute(sql, args).fetchall()
        # Key: the sort values, then (rtype, rid): what `after` takes.
        return FindResult(rows=[_row(r) for r in rows],
                          keys=[(*r[6:], r[0], r[1]) for r in rows])

    def count(self, query: IndexQuery) -> int:
        sql, args = compile_count(query)
        return int(self.conn.execute(sql, args).fetchone()[0])


# --- compiling a neutral query to SQL -------------------------------------------------

_RANGE_SQL = {
    # resource range [low, high] against search range [?lo, ?hi]; FHIR R4 3.1.1.4.
    # ge/le include a resource range that touches the search range (1941-11 is ge
    # 1941-11-30): over-including is the safe side for a clinical query.
    "eq": ("low >= ? AND high <= ?", "lh"),
    "ne": ("NOT (low >= ? AND high <= ?)", "lh"),
    "gt": ("high > ?", "h"),
    "lt": ("low < ?", "l"),
    "ge": ("high >= ?", "l"),
    "le": ("low <= ?", "h"),
    "sa": ("low > ?", "h"),
    "eb": ("high < ?", "l"),
    "ap": ("low <= ? AND high >= ?", "hl"),
}

#: per index kind: (column sorted ascending, column sorted descending, lowest value)
_SORT_COLUMNS = {
    "idx_token": ("code", "code", "''"),
    "idx_string": ("norm", "norm", "''"),
    "idx_date": ("low", "high", "''"),
    "idx_reference": ("url", "url", "''"),
    "idx_number": ("low", "high", "-1e308"),
}


def _prefix_bounds(text: str) -> tuple[str, str] | None:
    """[text, upper): every string starting with `text`, in BINARY (UTF-8 byte, so code
    point) order; None when no such range is sure to match what LIKE matches."""
    if not text or any("A" <= ch <= "Z" for ch in text):
        return None  # LIKE would also match other ASCII cases
    last = ord(text[-1]) + 1
    if 0xD800 <= last <= 0xDFFF:
        last = 0xE000  # surrogates cannot be stored as UTF-8
    if last > 0x10FFFF:
        return None
    return text, text[:-1] + chr(last)


def _like_escape(text: str) -> str:
    if "\x00" in text:
        # SQLite's LIKE ends the pattern at NUL ("%" then matches everything): refused
        # here as well as at parse time (search/query.py), failing closed
        raise ValueError("a search text may not hold NUL")
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class _Compiler:
    """Builds one SQL statement; every value goes into `args`, never into the text.

    Placeholders are positional, so each method binds its values in the order they
    appear in the text it returns (build a fragment's prefix before its sub-queries).
    """

    def __init__(self) -> None:
        self.args: list[object] = []
        self._aliases = 0

    def bind(self, value: object) -> str:
        self.args.append(value)
        return "?"

    def alias(self) -> str:
        self._aliases += 1
        return f"r{self._aliases}"

    def where(self, query: IndexQuery, r: str, *, probe: bool = False) -> str:
        """The WHERE clause. One criterion drives the lookup from its index (`pk IN`);
        the type and every other criterion only probe the rows it found (`+r.rtype`,
        correlated EXISTS on the pk index). Without this, SQLite walks every resource of
        the type in (rtype, rid) order and tests each one: fine at 10k, 30 ms at 1M.
        `probe`: the rows are already found (`r.pk` is bound by the enclosing query), so
        nothing drives and every criterion probes."""
        driver = None if probe else _driver(query)
        # Another index finds the rows (a criterion's, the compartment's: a patient's few
        # hundred rows, or the enclosing query's): "+" keeps SQLite off the type's own
        # index, which walks every resource of the type (every Patient at each consent
        # decision: ~45 ms at 1M; every Observation of a summary: ~10 ms a type).
        elsewhere = probe or driver is not None or query.compartment is not None
        unary = "+" if elsewhere else ""
        parts = [f"{r}.deleted = 0"]
        if query.rtype is not None:
            parts.append(f"{unary}{r}.rtype = {self.bind(query.rtype)}")
        if query.types:
            parts.append(f"{unary}{r}.rtype IN "
                         f"({','.join(self.bind(t) for t in query.types)})")
        if query.ids is not None:
            parts.append(f"{r}.rid IN ({','.join(self.bind(i) for i in query.ids) or 'NULL'})")
        if query.compartment is not None:
            parts.append(f"{r}.pk IN (SELECT pk FROM compartment WHERE patient = "
                         f"{self.bind(query.compartment)})")
        if query.since is not None:
            parts.append(f"{r}.last_updated >= {self.bind(query.since)}")
        narrowed = elsewhere or query.ids is not None
        parts.extend(self.criterion(query.rtype, c, r, drive=c is driver, narrowed=narrowed)
                     for c in query.criteria)
        return " AND ".join(parts)

    def criterion(self, rtype: str | None, crit: Criterion, r: str, *,
                  drive: bool = False, narrowed: bool) -> str:
        if crit.kind == "has":
            return " AND ".join(self.has(rtype, p, r, narrowed=narrowed) for p in crit.predicates
                                if isinstance(p, HasPredicate))
        table = KIND_TABLE[crit.kind]
        missing = [p for p in crit.predicates if isinstance(p, MissingPredicate)]
        if missing:
            exists = (f"EXISTS (SELECT 1 FROM {table} i WHERE i.pk = {r}.pk "
                      f"AND i.param = {self.bind(crit.param)})")
            return f"NOT {exists}" if missing[0].missing else exists
        if drive:
            # The type is bound as a value, not correlated, so SQLite drives the lookup
            # from the (rtype, param, value) index.
            head = f"rtype = {self.bind(rtype)}" if rtype is not None else "1"
            head += f" AND param = {self.bind(crit.param)}"
            if (keys := _several_keys(crit.predicates)) is not None:
                column, values = keys
                head += f" AND {column} IN ({','.join(self.bind(v) for v in values)})"
            ors = _any_of([self.predicate(p) for p in crit.predicates])
            return f"{r}.pk IN (SELECT pk FROM {table} WHERE {head} AND ({ors}))"
        # A probe of this resource's own index rows (idx_*_pk): cheap per candidate row.
        head = f"x.pk = {r}.pk"
        if rtype is not None:
            head += f" AND +x.rtype = {self.bind(rtype)}"
        head += f" AND x.param = {self.bind(crit.param)}"
        ors = _any_of([self.predicate(p) for p in crit.predicates])
        exists = f"EXISTS (SELECT 1 FROM {table} x WHERE {head} AND ({ors}))"
        return f"NOT {exists}" if crit.negate else exists

    def predicate(self, pred: object) -> str:
        b = self.bind
        if isinstance(pred, TokenPredicate):
            parts = []
            if pred.code is not None:
                parts.append(f"code = {b(pred.code)}")
            if pred.system == "":
                parts.append("system IS NULL")
            elif pred.system is not None:
                parts.append(f"system = {b(pred.system)}")
            return " AND ".join(parts) or "1"
        if isinstance(pred, TokenTextPredicate):
            return f"text LIKE {b(_like_escape(pred.text) + '%')} ESCAPE '\\'"
        if isinstance(pred, StringPredicate):
            if pred.mode == "exact":
                return f"exact = {b(pred.text)}"
            pattern = _like_escape(pred.text) + "%"
            if pred.mode == "contains":
                pattern = "%" + pattern
            bounds = _prefix_bounds(pred.text) if pred.mode != "contains" else None
            # LIKE (case-insensitive) cannot use the BINARY index: the range can, and
            # finds the same rows, since `norm` is casefolded (StringValue). Bound in
            # the order the text reads.
            head = "" if bounds is None else \
                f"norm >= {b(bounds[0])} AND norm < {b(bounds[1])} AND "
            return f"{head}norm LIKE {b(pattern)} ESCAPE '\\'"
        if isinstance(pred, RangePredicate):
            sql, order = _RANGE_SQL[pred.op]
            values = {"l": pred.low, "h": pred.high}
            out = sql.replace("?", "{}").format(*(b(values[c]) for c in order))
            if pred.system is not None:
                out += f" AND system = {b(pred.system)}"
            if pred.code is not None:
                out += f" AND code = {b(pred.code)}"
            return out
        if isinstance(pred, ReferencePredicate):
            if pred.url is not None:
                return f"url = {b(pred.url)}"
            out = f"target_id = {b(pred.target_id)}"
            if pred.target_type is not None:
                out += f" AND target_type = {b(pred.target_type)}"
            return out
        if isinstance(pred, ChainPredicate):
            inner = self.alias()
            head = f"target_type = {b(pred.target_type)}"  # bound before the inner query's
            where = self.where(pred.query, inner)
            return (f"{head} AND target_id IN "
                    f"(SELECT {inner}.rid FROM resources {inner} WHERE {where})")
        raise ValueError(f"no SQL for {pred!r}")

    def has(self, rtype: str | None, pred: HasPredicate, r: str, *, narrowed: bool) -> str:
        """`_has`: a resource some `source_type` refers to through `param`, the source
        matching the inner query. When something else narrows the outer rows (ids, a
        compartment, a driving criterion), each is probed through the reference index;
        otherwise the inner query's resources drive, and their reference rows are found by
        pk ("+" keeps SQLite off walking every reference of the parameter)."""
        src = self.alias()
        if narrowed:
            # each outer row's referring resources, each probed by the inner criteria (an
            # uncorrelated inner query would be read whole, once per statement: every
            # final Observation, a second at 1M)
            head = (f"ir.rtype = {self.bind(pred.source_type)} AND ir.param = "
                    f"{self.bind(pred.param)} AND ir.target_id = {r}.rid")
            if rtype is not None:
                head += f" AND ir.target_type = {self.bind(rtype)}"
            return (f"EXISTS (SELECT 1 FROM idx_reference ir, resources {src} WHERE {head} "
                    f"AND {src}.pk = ir.pk AND {self.where(pred.query, src, probe=True)})")
        # bound where it is written: values bind in the text's order
        driven = f"ir.pk IN (SELECT {src}.pk FROM resources {src} WHERE " \
                 f"{self.where(pred.query, src)})"
        head = (f"+ir.rtype = {self.bind(pred.source_type)} AND +ir.param = "
                f"{self.bind(pred.param)}")
        if rtype is not None:
            head += f" AND +ir.target_type = {self.bind(rtype)}"
        return f"{r}.rid IN (SELECT ir.target_id FROM idx_reference ir WHERE {driven} AND {head})"

    def sort_columns(self, query: IndexQuery, r: str) -> list[tuple[str, bool]]:
        out = []
        for key in query.sort:
            table = KIND_TABLE[key.kind]
            asc_col, desc_col, lowest = _SORT_COLUMNS[table]
            agg, col = ("MAX", desc_col) if key.descending else ("MIN", asc_col)
            out.append((f"COALESCE((SELECT {agg}({col}) FROM {table} s WHERE s.pk = {r}.pk "
                        f"AND s.param = {self.bind(key.param)}), {lowest})", key.descending))
        return out


def _several_keys(predicates: list[Predicate]) -> tuple[str, list[str | None]] | None:
    """The index column and values of a criterion's several exact keys (targets,
    `subject=a,b`; codes, `identifier=a,b`): `column IN (...)` keeps the driving lookup on
    the (rtype, param, key) index, where OR-ed pairs alone walk every row of the parameter
    (every identifier of every Patient). None when they are not all such keys."""
    if len(predicates) < 2:
        return None
    if all(isinstance(p, ReferencePredicate) and p.url is None for p in predicates):
        return "target_id", [p.target_id for p in predicates]
    if all(isinstance(p, TokenPredicate) and p.code is not None for p in predicates):
        return "code", [p.code for p in predicates]
    return None


def _any_of(clauses: list[str]) -> str:
    """`(a) OR (b) OR ...` nested in halves: SQLite refuses an expression tree deeper than
    1,000, and a flat chain of ORs is as deep as it is long (a `_revinclude` of a full page,
    or the summary's Provenance read for 500 facts, was a 500)."""
    if len(clauses) <= 16:
        return " OR ".join(f"({c})" for c in clauses)
    half = len(clauses) // 2
    return f"({_any_of(clauses[:half])}) OR ({_any_of(clauses[half:])})"


#: Which criterion should drive a query: the most selective kind of lookup first.
_DRIVE_ORDER = {"reference": 0, "token": 1, "uri": 2, "string": 3, "date": 4,
                "number": 5, "quantity": 5}


def _driver(query: IndexQuery) -> Criterion | None:
    """The criterion whose index finds the candidates (None: the type, ids or compartment
    drive). Negated, :missing and _has criteria only ever probe. A chained criterion
    drives last of all (its inner query finds the targets, their references the rows):
    as a probe alone it walked every resource of the type (`Observation?subject:Patient.
    identifier=...`, every Observation on the record)."""
    candidates = [
        c for c in query.criteria
        if c.kind in _DRIVE_ORDER and not c.negate
        and not any(isinstance(p, MissingPredicate) for p in c.predicates)
        and not (c.kind == "token" and any(isinstance(p, TokenPredicate) and p.code is None
                                           for p in c.predicates))
    ]
    if not candidates or query.ids is not None or query.compartment is not None:
        return None
    return min(candidates, key=_drive_rank)


def _drive_rank(c: Criterion) -> int:
    chained = any(isinstance(p, ChainPredicate) for p in c.predicates)
    return len(_DRIVE_ORDER) if chained else _DRIVE_ORDER[c.kind]


def _keyset(columns: list[tuple[str, bool]], after: tuple[object, ...],
            c: _Compiler) -> str:
    """(k1, k2, ...) strictly after `after`, each key in its own direction."""
    ors = []
    for i, (col, desc) in enumerate(columns):
        eqs = [f"{columns[j][0]} = {c.bind(after[j])}" for j in range(i)]
        eqs.append(f"{col} {'<' if desc else '>'} {c.bind(after[i])}")
        ors.append("(" + " AND ".join(eqs) + ")")
    return "(" + " OR ".join(ors) + ")"


def compile_query(query: IndexQuery) -> tuple[str, list[object]]:
    c = _Compiler()
    cols = ", ".join(f"r.{name.strip()}" for name in _COLUMNS.split(","))
    sorts = c.sort_columns(query, "r")
    where = c.where(query, "r")
    keys = [*(f"k{i}" for i in range(len(sorts))), "rtype", "rid"]
    directions = [*(d for _, d in sorts), False, False]
    select = ", ".join([cols, *(f"{expr} AS k{i}" for i, (expr, _) in enumerate(sorts))])
    sql = f"SELECT * FROM (SELECT {select} FROM resources r WHERE {where})"
    if query.after is not None:
        sql += " WHERE " + _keyset(list(zip(keys, directions, strict=True)),
                                   tuple(query.after), c)
    sql += " ORDER BY " + ", ".join(f"{k}{' DESC' if d else ''}"
                                    for k, d in zip(keys, directions, strict=True))
    if query.limit is not None:
        sql += f" LIMIT {c.bind(query.limit)}"
    return sql, c.args


def compile_count(query: IndexQuery) -> tuple[str, list[object]]:
    c = _Compiler()
    return f"SELECT COUNT(*) FROM resources r WHERE {c.where(query, 'r')}", c.args
