"""The store contract: versioned documents with index rows, knowing nothing of HTTP or FHIR.

Two engines implement it (`sqlite.SqliteEngine`, `mongo.MongoEngine`); one conformance
suite (`tests/store/`) runs against both. FHIR semantics (version numbering, `meta`,
conditional interactions, bundles, search parameters) live above, in `fhir_gateway.fhir`.

The one write primitive is `StoreSession.put`: add version N of a resource and make it
current, in the session's transaction. It fails with `VersionConflict` when version N
already exists (a concurrent writer got there first); the caller re-reads and retries, so
two concurrent updates can never silently overwrite each other.

    StoreError
     ├── VersionConflict    version N of that resource was written by someone else
     ├── StoreUnavailable   the engine cannot be reached or opened
     │    └── StoreBusy     another writer held the store past the wait (also a 503)
     └── ResourceTooLarge   the engine cannot hold a resource this large (also a 413)
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from ..errors import GatewayError, PayloadTooLarge
from .query import IndexQuery


class StoreError(Exception):
    """Base of store failures."""


class VersionConflict(StoreError):
    """The version being written already exists: another writer won the race."""


class StoreUnavailable(StoreError):
    """The engine cannot be opened or reached."""


#: seconds a caller is asked to wait before retrying a write the store was too busy for
BUSY_RETRY_AFTER_S = 5


class StoreBusy(StoreUnavailable, GatewayError):
    """Another writer held the store's writer lock for longer than a writer waits.
    Nothing of this write was stored. Also a GatewayError (503 with Retry-After), so the
    API edge answers an OperationOutcome, not a bare 500, and feeds resend rather than
    treat the record as rejected."""

    status = 503
    default_code = "transient"

    def __init__(self, diagnostics: str) -> None:
        super().__init__(diagnostics, headers={"Retry-After": str(BUSY_RETRY_AFTER_S)})


class ResourceTooLarge(StoreError, PayloadTooLarge):
    """The resource, as the engine stores it, passes the engine's size limit (MongoDB's
    16 MiB per document). Also a PayloadTooLarge, so the API edge answers 413 with an
    OperationOutcome naming the resource instead of a 500."""


@dataclass(frozen=True, slots=True)
class TokenValue:
    system: str | None
    code: str | None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class StringValue:
    normalized: str  # casefolded, accents stripped: what default and :contains match
    exact: str


@dataclass(frozen=True, slots=True)
class DateValue:
    low: str  # inclusive lower bound, UTC instant text 'YYYY-MM-DDTHH:MM:SS.ffffff'
    high: str  # inclusive upper bound, same form; open ends use MIN/MAX sentinels


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    target_type: str | None
    target_id: str | None
    url: str  # the reference as written (relative, absolute or canonical)


@dataclass(frozen=True, slots=True)
class NumberValue:
    low: float
    high: float
    system: str | None = None  # quantity: unit system
    code: str | None = None  # quantity: unit code


IndexValue = TokenValue | StringValue | DateValue | ReferenceValue | NumberValue


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One extracted search value: parameter code and the value in its typed form."""

    param: str
    value: IndexValue


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """One version of a resource as the store holds it."""

    rtype: str
    rid: str
    version: int
    last_updated: str  # FHIR instant, UTC
    deleted: bool
    body: str | None  # the resource's JSON text; None for a deletion tombstone


@dataclass(frozen=True, slots=True)
class NewVersion:
    """What `StoreSession.put` writes: a version plus what the index needs."""

    rtype: str
    rid: str
    version: int
    last_updated: str
    body: str | None  # None makes a tombstone (delete)
    index: Sequence[IndexEntry] = ()
    #: ids of the Patients whose compartment holds this resource (the future shard key).
    compartments: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class HistoryPage:
    versions: list[StoredVersion]
    #: opaque keyset position after the last version returned; None when no more remain.
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class FindResult:
    """Rows in query order, and each row's keyset key (what `IndexQuery.after` takes)."""

    rows: list[StoredVersion]
    keys: list[tuple[object, ...]]


class StoreSession(Protocol):
    """Reads and writes inside one transaction (read-only sessions never write)."""

    def current(self, rtype: str, rid: str) -> StoredVersion | None: ...

    def version(self, rtype: str, rid: str, version: int) -> StoredVersion | None: ...

    def put(self, new: NewVersion) -> None: ...

    def put_new(self, news: Sequence[NewVersion]) -> None:
        """Store many first versions (version 1, with a body) of resources not stored
        before, as `put` would one by one; VersionConflict if any exists (the session
        must then be abandoned). For bulk writers (the audit importer): SQLite does each
        table in one multi-row statement (or a few), so the writing thread gives up the
        interpreter lock a few times per batch instead of ~25 times per resource."""
        ...

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested all-or-nothing step inside this write session: when the block raises,
        every write it made (versions, index rows, system records) is undone and the
        exception propagates; the session's earlier and later writes are kept. Lets one
        transaction carry many independent records, each of which may fail alone.
        On MongoDB a VersionConflict (or any write error) inside a real transaction may
        have aborted the whole transaction: callers must not swallow it."""
        ...

    def history(
        self,
        *,
        rtype: str | None,
        rid: str | None,
        since: str | None,
        cursor: str | None,
        limit: int,
    ) -> HistoryPage: ...

    def find(self, query: IndexQuery) -> FindResult: ...

    def count(self, query: IndexQuery) -> int: ...

    # -- system records: what the gateway itself must share between instances (OAuth
    # clients, the token replay cache, review queues, audit chain heads). Plain JSON
    # documents under (kind, key); never exposed through the FHIR API.

    def record_get(self, kind: str, key: str, *, now: str | None = None) -> dict | None: ...

    def record_put(self, kind: str, key: str, value: dict, *, expires: str | None = None,
                   create_only: bool = False, now: str | None = None) -> bool:
        """Store `value`; with `create_only`, False (and no change) when a live record
        exists. `expires`/`now` are FHIR instants; an expired record counts as absent.
        The session stays usable after False. When a concurrent session creates the
        same record at the same moment, the loser may instead get VersionConflict (on
        MongoDB a failed insert aborts the whole transaction): retry the session."""
        ...

    def record_delete(self, kind: str, key: str) -> bool: ...

    def record_list(self, kind: str, *, after: str | None = None, before: str | None = None,
                    limit: int = 1000) -> list[tuple[str, dict]]:
        """Records of `kind` in key order, keys strictly between `after` and `before`."""
        ...


class StoreEngine(Protocol):
    """An engine: opens sessions; schema and indexes are created idempotently on open."""

    name: str

    def session(self, *, write: bool) -> AbstractContextManager[StoreSession]: ...

    def close(self) -> None: ...
