"""Journal first: an answered request's AuditEvent is made durable in a local append-only
file, and stored (indexed, searchable) in the background in large batches.

Why: with the group-commit writer (`chain.AuditTrail`) each audited read waited ~5 ms
for a writer thread's store transaction (about 25 SQLite calls per event, each giving up
and retaking the interpreter lock while request threads held it), though the handler took
~0.3 ms. Appending a sealed line and one `fdatasync` take tens of microseconds, so the
request no longer waits for the store.

    submit(events)  the HTTP edge's way (gate.audit_settled): the request's worker thread
                    seals the events on the writer's chain and appends the lines; the
                    event loop then awaits the syncer thread's fsync, one fsync and one
                    wake-up of the loop for every request waiting at that moment
    record(events)  any other caller: append, then fsync on the caller's thread (one
                    fsync serves every caller waiting on it: group commit on a file)
    importer        the trail's thread: every IMPORT_DELAY_S, the durable lines not yet
                    stored become AuditEvents, with the chain head (and an anchor when
                    due), in one store transaction; the file is emptied once all of it is
                    stored and it has grown past TRUNCATE_AT
    catch_up()      for readers of the audit trail in this process (the gate, reports):
                    returns once everything journalled so far is stored
    start-up        a journal no live process holds (its `flock` is free: its writer
                    stopped without importing, or crashed) is imported, skipping what the
                    store already has (seq <= the chain head stored), then removed; so is
                    `fhir-gateway audit verify`

Every line is a sealed AuditEvent, its chain link inside, so importing is idempotent and
keeps each chain's order. A torn last line was never fsynced, so never acknowledged: it is
left out. A line that is not a sealed event, or one the store does not hold after the
import (a line out of order is skipped as if stored), keeps its journal, renamed
`.damaged`, for review; `verify` fails while a `.damaged` journal is there.

The journal directory holds audit records not yet in the store: protect and back it up
like the database file. An AuditEvent written by another worker process is searchable
here within about IMPORT_DELAY_S (each process imports its own journal).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ...config import checked_journal, journal_off
from ...fhir.repository import Repository
from ...search.registry import SearchRegistry
from ...search.values import now_instant
from ...store.base import IndexEntry, NewVersion, StoreSession
from ...store.query import IndexQuery
from .chain import (
    HEAD_KIND,
    SETTLED,
    AuditTrail,
    AuditUnavailable,
    Durability,
    Unsealed,
    chain_link,
    instance_name,
    unsealed_content,
)
from .index import audit_index, stamped_index

log = logging.getLogger("fhir_gateway.audit")
T = TypeVar("T")
SUFFIX = ".journal"
DAMAGED_SUFFIX = ".damaged"
# Small, frequent imports: the importer's Python work per batch holds the interpreter
# lock, so at 0.25 s the batches showed in the tail latency of requests (summary p99 at
# 2 workers ~30 ms; at 0.05 s ~26 ms, same throughput: bench/summary.py).
IMPORT_DELAY_S = 0.05
IMPORT_BATCH = 2000  # events per store transaction
READ_LIMIT = 16 * 1024 * 1024  # bytes of journal read per import round
TRUNCATE_AT = 4 * 1024 * 1024
CATCH_UP_TIMEOUT_S = 60.0
MAX_RETRY_S = 5.0


def journal_directory(setting: str | None, engine: Any) -> Path | None:
    """Where audit journals go: the configured directory (`audit_journal`, env
    FHIR_GATEWAY_AUDIT_JOURNAL); by default beside a SQLite database file (`<file>-audit/`).
    None ("off", an in-memory database, another engine unconfigured): the trail writes
    straight to the store."""
    if journal_off(setting):
        return None
    if setting:
        return Path(str(checked_journal(setting)))  # config's rule: absolute, or refused
    path = getattr(engine, "path", None)
    if path is None or str(path) == ":memory:":
        return None
    return Path(f"{path}-audit")


@dataclass(frozen=True, slots=True)
class JournalLine:
    """One sealed AuditEvent read back from a journal."""

    chain: str
    seq: int
    hash: str
    stamped: str
    text: str
    event: dict[str, Any]


def read_lines(data: bytes, where: str) -> tuple[list[JournalLine], int, list[str]]:
    """The sealed events in `data`, the bytes their complete lines span (a torn last line
    is left for a later read, or ignored in a dead journal), and a problem per line that
    is not a sealed event, naming where it is."""
    lines: list[JournalLine] = []
    problems: list[str] = []
    end = data.rfind(b"\n") + 1
    offset = 0
    for raw in data[:end].split(b"\n")[:-1]:
        line = _sealed(raw)
        if line is None:
            problems.append(f"{where} at byte {offset}: not a sealed AuditEvent "
                            f"({raw[:60]!r})")
        else:
            lines.append(line)
        offset += len(raw) + 1
    return lines, end, problems


def _sealed(raw: bytes) -> JournalLine | None:
    try:
        text = raw.decode("utf-8")
        event = json.loads(text)
        if not isinstance(event, dict) or not isinstance(event.get("meta"), dict):
            return None
        link = chain_link(event)
        stamped = event["meta"].get("lastUpdated")
        if link is None or event.get("resourceType") != "AuditEvent" or \
                not isinstance(event.get("id"), str) or not isinstance(stamped, str):
            return None
    # RecursionError: a line nested too deep for json; whatever the line, it is reported
    # as not a sealed event (and its journal kept as .damaged), never a crash at start-up
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, RecursionError):
        return None
    return JournalLine(link[0], link[1], link[3], stamped, text, event)


def store_lines(session: StoreSession, registry: SearchRegistry,
                lines: list[JournalLine]) -> int:
    """Store `lines` as AuditEvents and move each chain's head, skipping what the store
    already holds (seq <= its chain head): importing twice changes nothing. The number
    stored."""
    heads: dict[str, dict[str, Any]] = {}
    new: list[NewVersion] = []
    stamps: dict[str, tuple[IndexEntry, ...]] = {}  # one stamp per append: shared
    for line in lines:
        if line.chain not in heads:
            heads[line.chain] = session.record_get(HEAD_KIND, line.chain) or {"seq": 0}
        if line.seq <= heads[line.chain]["seq"]:
            continue
        if line.stamped not in stamps:
            stamps[line.stamped] = stamped_index(registry, line.stamped)
        index = [*audit_index(registry, unsealed_content(line.event)), *stamps[line.stamped]]
        new.append(NewVersion(rtype="AuditEvent", rid=line.event["id"], version=1,
                              last_updated=line.stamped, body=line.text, index=index,
                              compartments=()))
        heads[line.chain] = {"seq": line.seq, "hash": line.hash, "at": line.stamped,
                             "moved": True}
    session.put_new(new)
    for chain, head in heads.items():
        if head.pop("moved", False):
            session.record_put(HEAD_KIND, chain, head)
    return len(new)


def store_in_batches(repository: Repository, lines: list[JournalLine],
                     last: Callable[[StoreSession], T] | None = None) -> tuple[int, T | None]:
    """`store_lines` in transactions of IMPORT_BATCH lines; `last` (if any) runs in the
    last transaction, even with no lines. The number stored, and what `last` returned."""
    stored, result = 0, None
    for first in range(0, max(len(lines), 1 if last else 0), IMPORT_BATCH):
        with repository.transaction() as s:
            stored += store_lines(s, repository.registry, lines[first:first + IMPORT_BATCH])
            if last is not None and first + IMPORT_BATCH >= len(lines):
                result = last(s)
    return stored, result


def not_held(repository: Repository, lines: list[JournalLine]) -> list[JournalLine]:
    """The lines whose event the store does not hold as written (one search per
    IMPORT_BATCH lines)."""
    missing: list[JournalLine] = []
    for first in range(0, len(lines), IMPORT_BATCH):
        batch = lines[first:first + IMPORT_BATCH]
        found = repository.find(IndexQuery(rtype="AuditEvent", limit=len(batch),
                                           ids=[line.event["id"] for line in batch]))
        stored = {row.rid: row.body for row in found.rows}
        missing += [line for line in batch if stored.get(line.event["id"]) != line.text]
    return missing


def damaged_journals(directory: Path) -> list[Path]:
    """Journals kept for review because some of their lines are not in the store."""
    return sorted(directory.glob(f"*{DAMAGED_SUFFIX}")) if directory.is_dir() else []


@dataclass
class Recovery:
    """What start-up (or `audit verify`) found in journals nobody holds."""

    journals: int = 0
    events: int = 0
    problems: list[str] = field(default_factory=list)


def recover(repository: Repository, directory: Path, *, own: Path | None = None) -> Recovery:
    """Import every journal in `directory` that no live process holds, then remove it
    (or keep it as `.damaged` when some line could not be read)."""
    found = Recovery()
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob(f"*{SUFFIX}")):
        if path == own:
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # another process recovered it first
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its writer is alive
            if os.fstat(fd).st_nlink == 0:
                continue  # recovered and removed while we waited for the lock
            with open(fd, "rb", closefd=False) as f:
                data = f.read()
            lines, _end, problems = read_lines(data, path.name)
            found.events += store_in_batches(repository, lines)[0]
            found.journals += 1
            # A line skipped as already stored (seq <= its chain's head) that the store
            # does not hold (lines out of order, say) would be lost with the journal.
            problems += [f"{path.name}: {line.chain} #{line.seq} (AuditEvent/"
                         f"{line.event['id']}) could not be stored: it comes after a "
                         "later event of its chain" for line in not_held(repository, lines)]
            if problems:
                found.problems += problems
                path.rename(path.with_suffix(DAMAGED_SUFFIX))
                log.error("audit journal %s had unreadable lines; kept as %s: %s", path,
                          path.with_suffix(DAMAGED_SUFFIX).name, problems[0])
            else:
                path.unlink()
        finally:
            os.close(fd)
    if found.events:
        log.warning("imported %d audit events from %d journals left by a stopped or "
                    "crashed writer", found.events, found.journals)
    return found


class JournalledAuditTrail(AuditTrail):
    """The audit trail, journal first (module docstring). In-transaction slots (for
    writes) are the base class's: a write's AuditEvent still commits with the write."""

    requests_wait_for_thread = False

    def __init__(self, repository: Repository, directory: Path, *,
                 instance: str | None = None, anchor_interval_s: float = 60.0,
                 import_delay_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        instance = instance or instance_name()
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.path = directory / f"{instance}{SUFFIX}"
        self.import_delay_s = IMPORT_DELAY_S if import_delay_s is None else import_delay_s
        # Locked before it can be seen under its name: another process's `recover` must
        # never take a live journal for a dead one (and remove it from under us). A
        # `.new` file is left only by a writer that died in between, and is empty.
        hidden = self.path.with_suffix(".new")
        self._fd = os.open(hidden, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_APPEND |
                           os.O_CLOEXEC, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours for as long as we live
        hidden.rename(self.path)
        # Positions are logical byte counts since start, never reset; the file holds
        # [_file_start, _written). Lock order: _sync_lock, then _append_lock, then _cond.
        self._append_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._file_start = self._written = self._synced = self._imported = 0
        self._wanted = 0
        self._failures = 0
        self._broken: BaseException | None = None
        self._stopped = False
        self.recovered = recover(repository, directory, own=self.path)
        self._waiting = threading.Condition()
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._sync_stopped = False
        self._syncer = threading.Thread(target=self._sync_loop, name="audit-journal-sync",
                                        daemon=True)
        self._syncer.start()
        super().__init__(repository, instance=instance, anchor_interval_s=anchor_interval_s,
                         clock=clock)

    # -- the request's side ---------------------------------------------------------------

    def record(self, events: list[dict[str, Any]]) -> None:
        """Journal `events` durably; returns once they are fsynced (raises if not)."""
        if events:
            self._make_durable(self._append(events))

    def submit(self, events: list[dict[str, Any]]) -> Durability:
        """Append `events`; the fsync is left to the syncer thread, so the request's
        worker thread is free at once and the event loop awaits `settled()` (one fsync
        and one wake-up of the loop serve every request waiting at that moment)."""
        return _Appended(self, self._append(events)) if events else SETTLED

    def _append(self, events: list[dict[str, Any]]) -> int:
        """Seal and append `events`: the journal position they end at."""
        items = [Unsealed.of(e) for e in events]
        with self._append_lock:
            if self._stopped or self._closing or self._broken is not None:
                raise AuditUnavailable("the audit trail is closed or failed; nothing was "
                                       "answered")
            seq, head, texts = self.chain.seal(items, now_instant())
            data = "".join(f"{t}\n" for t in texts).encode("utf-8")
            try:
                _write_all(self._fd, data)
            except OSError as exc:
                self._undo_partial_append(exc)
                raise AuditUnavailable("the audit journal could not be written, so the "
                                       "request was not answered; try again") from exc
            self.chain.seq, self.chain.head = seq, head
            self._written += len(data)
            return self._written

    def _undo_partial_append(self, exc: OSError) -> None:
        """Cut a partly written append back off (called holding _append_lock), so the
        journal never holds half a line before a whole one. If even that fails, the
        journal is not trusted again: every later `record` fails (503)."""
        try:
            os.ftruncate(self._fd, self._written - self._file_start)
        except OSError:
            self._broken = exc
            log.exception("audit journal %s could not be repaired; auditing stopped",
                          self.path)

    def _make_durable(self, end: int) -> None:
        with self._sync_lock:
            if self._synced >= end:
                return  # another request's fsync covered ours
            if self._broken is not None:
                raise AuditUnavailable("the audit journal failed; nothing was answered")
            with self._append_lock:
                target = self._written
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                # After a failed fsync the kernel may have dropped the pages: what was
                # written cannot be known to be on disk, and a retry would not tell.
                self._broken = exc
                log.exception("audit journal %s: fsync failed; auditing stopped", self.path)
                raise AuditUnavailable("the audit journal could not be made durable; "
                                       "nothing was answered") from exc
            self._synced = target

    # -- the syncer (the event loop's waiters) ----------------------------------------------

    async def _settled(self, end: int) -> None:
        if self._synced >= end:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._waiting:
            if self._broken is not None or self._sync_stopped:
                raise AuditUnavailable("the audit journal failed or is closed; nothing was "
                                       "answered")
            self._waiters.append((end, loop, future))
            self._waiting.notify()
        await future

    def _sync_loop(self) -> None:
        while True:
            with self._waiting:
                self._waiting.wait_for(lambda: self._waiters or self._sync_stopped)
                if not self._waiters:
                    return
                end = max(w[0] for w in self._waiters)
            error: BaseException | None = None
            try:
                self._make_durable(end)
            except AuditUnavailable as exc:
                error = exc
            with self._waiting:
                ready = [w for w in self._waiters if error or w[0] <= self._synced]
                self._waiters = [w for w in self._waiters if not (error or w[0] <= self._synced)]
            by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
            for _end, loop, future in ready:
                by_loop.setdefault(loop, []).append(future)
            for loop, futures in by_loop.items():
                with contextlib.suppress(RuntimeError):  # that loop has closed
                    loop.call_soon_threadsafe(_settle, futures, error)

    def close(self, timeout: float = 10.0) -> None:
        """Settle every waiter (fsync what is appended), then stop the importer, which
        stores the rest and removes the journal."""
        with self._waiting:
            self._sync_stopped = True
            self._waiting.notify()
        self._syncer.join(timeout)
        with contextlib.suppress(AuditUnavailable):  # appended, nobody waited (cancelled)
            self._make_durable(self._written)
        super().close(timeout)

    def catch_up(self, timeout: float = CATCH_UP_TIMEOUT_S) -> None:
        target = self._synced
        if self._imported >= target:
            return
        with self._cond:
            self._wanted = max(self._wanted, target)
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._imported >= target or self._stopped,
                                       timeout):
                raise AuditUnavailable("the audit trail is still being stored; try again")
        if self._imported < target:
            raise AuditUnavailable("the audit trail could not be stored; try again")

    # -- the importer (the trail's thread) ---------------------------------------------------

    def _hurry(self) -> bool:
        return self._closing or self._wanted > self._imported

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._hurry():
                    self._cond.wait_for(self._hurry, timeout=self.import_delay_s)
                closing = self._closing
                if self.clock() - self._last_anchor >= self.anchor_interval_s:
                    self._anchor_due = True
            if self._synced > self._imported or self._anchor_due or closing:
                self._import(anchor=self._anchor_due or closing)
            if closing:
                self._stop()
                return

    def _import(self, *, anchor: bool) -> None:
        """Store everything durable not yet stored (and an anchor), in batches."""
        end = self._synced
        while self._imported < end or anchor:
            start = self._imported
            data = os.pread(self._fd, min(end - start, READ_LIMIT), start - self._file_start)
            lines, used, problems = read_lines(data, self.path.name)
            if problems:  # cannot happen short of disk corruption; the chain shows the gap
                log.error("audit journal: %s", "; ".join(problems[:5]))
            if not used and start < end:
                log.error("audit journal %s: a line over %d bytes; left unimported",
                          self.path, READ_LIMIT)
                return
            try:
                _stored, anchor_state = store_in_batches(
                    self.repository, lines, self._write_anchor if anchor else None)
            except Exception:
                # The lines stay in the journal (durable); a later round tries again,
                # backing off to once every few seconds while the store stays down.
                self._failures += 1
                wait = min(self.import_delay_s * 2 ** self._failures, MAX_RETRY_S)
                log.exception("audit import failed (%d in a row); retrying in %.2f s",
                              self._failures, wait)
                time.sleep(wait)
                return
            self._failures = 0
            if anchor_state is not None:
                self._anchor.seq, self._anchor.head = anchor_state
                self._anchor_due, self._last_anchor, anchor = False, self.clock(), False
            self._truncate_if_done(start + used)
            with self._cond:
                self._imported = start + used
                self._cond.notify_all()

    def _truncate_if_done(self, imported: int) -> None:
        """Empty the journal when all of it is stored and it has grown big (before the
        import is published, so whoever waited for it sees the journal emptied)."""
        if self._written - self._file_start < TRUNCATE_AT:
            return
        with self._sync_lock, self._append_lock:
            if imported == self._written and self._broken is None:
                os.ftruncate(self._fd, 0)
                self._file_start = self._written

    def _stop(self) -> None:
        """After the last import: remove the journal if all of it is stored, else leave
        it (unlocked) for the next start to import."""
        with self._sync_lock, self._append_lock:
            self._stopped = True
            done = self._imported == self._written
            if done:
                with contextlib.suppress(OSError):
                    self.path.unlink()
            os.close(self._fd)
        with self._cond:
            self._cond.notify_all()
        if not done:
            log.error("audit journal %s not fully stored at stop; the next start imports "
                      "it", self.path)


@dataclass(frozen=True, slots=True)
class _Appended(Durability):
    trail: JournalledAuditTrail
    end: int

    async def settled(self) -> None:
        await self.trail._settled(self.end)


def _settle(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():  # the request was cancelled (client gone)
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(AuditUnavailable("the audit journal could not be made "
                                                  "durable; nothing was answered"))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
