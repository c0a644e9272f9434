"""Sealing AuditEvents into hash chains, one chain per writer, and writing them durably.

Each AuditEvent carries (extension `audit-chain`) its chain id, its sequence number in
that chain, the previous event's hash and its own hash: SHA-256 over the previous hash,
the chain id and sequence number, and the event's canonical JSON (everything but `meta`
and the chain link). Editing, removing or reordering any event breaks a link that
`verify` recomputes.

There is no global chain (SCALE.md: a single chain would serialise every request in the
region). Each process has its own writers, and each writer its own chain:

- the group-commit writer: a thread that takes every event queued since its last commit,
  seals them in order and writes them as AuditEvent resources (searchable with the
  AuditEvent parameters), with its chain head, in one store transaction; the requests
  that queued them wait for that commit before they are answered (so an answered
  request's audit record survives a crash) and share its cost (one commit, one fsync);
- in-transaction slots, for writes: a write interaction's AuditEvent goes into the same
  store transaction as the data it changed, sealed on a slot's chain; slots are taken
  from a pool (a new one when none is free), so concurrent writes never wait for each
  other here. A slot's state moves on only when its transaction commits.

(`journal.JournalledAuditTrail`, the default on a SQLite file, replaces the group-commit
writer with a per-process journal file and a background importer.)

Chain heads (kind `audit-head`) are stored with the events they point at. Anchors (kind
`audit-anchor`, hash-chained per writer) record every chain's head from time to time
(every `anchor_interval_s`), at start and at stop, so `verify` catches a chain cut back
past a head that a stored anchor recorded, or removed whole while an anchor names it.

What this cannot catch: the hashes are plain SHA-256 with no secret, and heads and
anchors live in the same store as the events. Whoever can write to the store can cut a
chain back over the events no anchor covers yet (those since its writer's last anchor)
and rewrite its head; delete a writer's newest anchors too and cut back to the last
head still anchored; remove a writer's chains, heads and anchors all together; or add
a new chain, sealed, with its head. Each leaves a trail that verifies intact. Finding
those needs a copy kept out of the store's reach (an anchor or backup held elsewhere).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...errors import GatewayError
from ...fhir.repository import Repository
from ...search.registry import SearchRegistry
from ...search.values import now_instant
from ...store.base import IndexEntry, NewVersion, StoreSession, VersionConflict
from .index import audit_index, stamped_index

log = logging.getLogger("fhir_gateway.audit")
CHAIN_EXTENSION = "https://fhir.example.org/shared-care-record/StructureDefinition/audit-chain"
HEAD_KIND = "audit-head"
ANCHOR_KIND = "audit-anchor"
GENESIS = "0" * 64
MAX_BATCH = 500
WRITE_ATTEMPTS = 5
RECORD_TIMEOUT_S = 60.0


class AuditUnavailable(GatewayError):
    """The audit trail could not be written, so nothing is answered (503)."""

    status = 503
    default_code = "transient"


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def link_hash(prev: str, chain: str, seq: int, content: bytes) -> str:
    """SHA-256 over the previous hash, the event's place (chain, seq) and its content."""
    return hashlib.sha256(f"{prev}\n{chain}\n{seq}\n".encode() + content).hexdigest()


def unsealed_content(event: dict[str, Any]) -> dict[str, Any]:
    """What the hash covers: the event without `meta` and without its chain link."""
    body = {k: v for k, v in event.items() if k != "meta"}
    others = [e for e in event.get("extension") or [] if e.get("url") != CHAIN_EXTENSION]
    if others:
        body["extension"] = others
    else:
        body.pop("extension", None)
    return body


def content_hash(event: dict[str, Any], prev: str) -> str:
    """The hash a stored (sealed) event should carry, recomputed from its content."""
    link = chain_link(event)
    if link is None:
        return ""
    return link_hash(prev, link[0], link[1], canonical(unsealed_content(event)))


def chain_link(event: dict[str, Any]) -> tuple[str, int, str, str] | None:
    """(chain, seq, prev, hash) of a sealed event, or None."""
    for ext in event.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == CHAIN_EXTENSION:
            parts = {e.get("url"): e.get("valueString") for e in ext.get("extension") or []
                     if isinstance(e, dict)}
            try:
                return parts["chain"], int(parts["seq"]), parts["prev"], parts["hash"]
            except (KeyError, TypeError, ValueError):
                return None
    return None


@dataclass(frozen=True, slots=True)
class Unsealed:
    """An event as hashed: its canonical content and JSON text (the same bytes: one
    encoding, not two), not yet linked into a chain."""

    rid: str
    content: bytes
    text: str

    @classmethod
    def of(cls, event: dict[str, Any]) -> Unsealed:
        if "extension" in event or "meta" in event:
            raise ValueError("an audit event is sealed and stamped by the trail, not before")
        content = canonical(event)
        return cls(event["id"], content, content.decode("utf-8"))


@dataclass(frozen=True, slots=True)
class Prepared(Unsealed):
    """An event made ready by the thread that records it, index values included. The one
    writer of a chain then only links and stores, so it holds the interpreter lock as
    briefly as it can while requests wait for it."""

    index: list[IndexEntry]


def prepare(registry: SearchRegistry, event: dict[str, Any]) -> Prepared:
    u = Unsealed.of(event)
    return Prepared(u.rid, u.content, u.text, audit_index(registry, event))


@dataclass(slots=True)
class Chain:
    """One writer's chain: where it has got to (committed state only)."""

    chain_id: str
    seq: int = 0
    head: str = GENESIS

    def seal(self, items: Sequence[Unsealed], stamped: str) -> tuple[int, str, list[str]]:
        """Link `items` after (seq, head): the new (seq, head), without moving, and each
        item's stored text (its JSON with the chain link and meta, stamped, added)."""
        seq, head, texts = self.seq, self.head, []
        for item in items:
            seq += 1
            prev, head = head, link_hash(head, self.chain_id, seq, item.content)
            link = {"url": CHAIN_EXTENSION, "extension": [
                {"url": "chain", "valueString": self.chain_id},
                {"url": "seq", "valueString": str(seq)},
                {"url": "prev", "valueString": prev},
                {"url": "hash", "valueString": head}]}
            meta = {"versionId": "1", "lastUpdated": stamped}
            texts.append(f'{item.text[:-1]},"extension":[{json.dumps(link)}],'
                         f'"meta":{json.dumps(meta)}}}')
        return seq, head, texts


def write_sealed(session: StoreSession, registry: SearchRegistry, chain: Chain,
                 items: list[Prepared]) -> tuple[int, str]:
    """Seal and store `items` and the chain head in `session`; the new (seq, head)."""
    stamped = now_instant()
    seq, head, texts = chain.seal(items, stamped)
    on_meta = stamped_index(registry, stamped)
    session.put_new([NewVersion(rtype="AuditEvent", rid=item.rid, version=1,
                                last_updated=stamped, body=text,
                                index=[*item.index, *on_meta], compartments=())
                     for item, text in zip(items, texts, strict=True)])
    session.record_put(HEAD_KIND, chain.chain_id, {"seq": seq, "hash": head, "at": stamped})
    return seq, head


def instance_name() -> str:
    return f"{socket.gethostname()[:32]}-{os.getpid()}-{int(time.time() * 1000)}-" \
           f"{uuid.uuid4().hex[:6]}"


class Durability:
    """What `AuditTrail.submit` returns: a way to wait, from the event loop, until the
    submitted events are durable. This one is already settled (`submit` blocked)."""

    async def settled(self) -> None:
        return None


SETTLED = Durability()


@dataclass(slots=True)
class _Pending:
    events: list[Prepared]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class Slot:
    """An in-transaction writer (see module docstring); from `AuditTrail.slot()`."""

    def __init__(self, trail: AuditTrail, chain: Chain) -> None:
        self.trail = trail
        self.chain = chain
        self._pending: tuple[int, str] | None = None

    def append(self, session: StoreSession, events: list[dict[str, Any]]) -> None:
        registry = self.trail.repository.registry
        self._pending = write_sealed(session, registry, self.chain,
                                     [prepare(registry, e) for e in events])

    def finish(self, *, committed: bool) -> None:
        if committed and self._pending is not None:
            self.chain.seq, self.chain.head = self._pending
        self._pending = None
        self.trail._release(self)


class AuditTrail:
    #: a request's `record` waits for the writer thread (see create_app's switch interval)
    requests_wait_for_thread = True

    def __init__(self, repository: Repository, *, instance: str | None = None,
                 anchor_interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.repository = repository
        self.instance = instance or instance_name()
        self.anchor_interval_s = anchor_interval_s
        self.clock = clock
        self.chain = Chain(f"{self.instance}-w")
        self._anchor = Chain(self.chain.chain_id)  # the writer's anchor chain
        self._slots: list[Slot] = []
        self._slot_count = 0
        self._cond = threading.Condition()
        self._queue: list[_Pending] = []
        self._closing = False
        self._anchor_due = True  # the first batch anchors every chain found at start
        self._last_anchor = clock()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    # -- the group-commit writer ---------------------------------------------------------

    def record(self, events: list[dict[str, Any]]) -> None:
        """Write `events` durably; returns once they are committed (raises if not)."""
        if not events:
            return
        registry = self.repository.registry
        pending = _Pending([prepare(registry, e) for e in events])
        with self._cond:
            if self._closing:
                raise AuditUnavailable("the audit trail is closed; nothing was answered")
            self._queue.append(pending)
            self._cond.notify()
        if not pending.done.wait(timeout=RECORD_TIMEOUT_S):
            raise AuditUnavailable("the audit trail did not answer in time, so the request "
                                   "was not answered; try again")
        if pending.error is not None:
            raise AuditUnavailable("the audit trail could not be written, so the request "
                                   "was not answered; try again") from pending.error

    def submit(self, events: list[dict[str, Any]]) -> Durability:
        """Start making `events` durable; the caller must await `settled()` on the result
        before it answers. Here `record` itself (it blocks until the commit)."""
        self.record(events)
        return SETTLED

    def catch_up(self) -> None:
        """Return once every event recorded so far is in the store (searchable). Here at
        once: `record` returns only after the store commit. (The journalled trail
        imports in the background, so it has work to do.)"""

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait(timeout=self.anchor_interval_s)
                    if self.clock() - self._last_anchor >= self.anchor_interval_s:
                        self._anchor_due = True
                        break
                batch, taken = [], 0
                while self._queue and taken < MAX_BATCH:
                    item = self._queue.pop(0)
                    batch.append(item)
                    taken += len(item.events)
                closing = self._closing and not self._queue
            if batch or self._anchor_due or closing:
                self._write(batch, anchor=self._anchor_due or closing)
            if closing:
                return

    def _write(self, batch: list[_Pending], *, anchor: bool) -> None:
        events = [e for item in batch for e in item.events]
        error: BaseException | None = None
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with self.repository.transaction() as s:
                    state = write_sealed(s, self.repository.registry, self.chain,
                                         events) if events else None
                    anchor_state = self._write_anchor(s) if anchor else None
                if state is not None:
                    self.chain.seq, self.chain.head = state
                if anchor_state is not None:
                    self._anchor.seq, self._anchor.head = anchor_state
                    self._anchor_due, self._last_anchor = False, self.clock()
                error = None
                break
            except VersionConflict as exc:
                error = exc
            except Exception as exc:
                log.exception("audit write failed (attempt %d)", attempt + 1)
                error = exc
                time.sleep(0.05 * (attempt + 1))
        for item in batch:
            item.error = error
            item.done.set()

    def _write_anchor(self, s: StoreSession) -> tuple[int, str]:
        heads, after = {}, None
        while True:
            page = s.record_list(HEAD_KIND, after=after, limit=1000)
            heads.update({k: [v["seq"], v["hash"]] for k, v in page})
            if len(page) < 1000:
                break
            after = page[-1][0]
        seq = self._anchor.seq + 1
        value = {"writer": self._anchor.chain_id, "seq": seq, "prev": self._anchor.head,
                 "at": now_instant(), "heads": heads}
        digest = hashlib.sha256(canonical(value)).hexdigest()
        s.record_put(ANCHOR_KIND, f"{self._anchor.chain_id}/{seq:012d}",
                     {**value, "hash": digest})
        return seq, digest

    # -- in-transaction slots --------------------------------------------------------------

    def slot(self) -> Slot:
        with self._cond:
            if self._slots:
                return self._slots.pop()
            self._slot_count += 1
            return Slot(self, Chain(f"{self.instance}-t{self._slot_count}"))

    def _release(self, slot: Slot) -> None:
        with self._cond:
            self._slots.append(slot)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued and a last anchor, then stop the writer."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)
