"""The production engine: MongoDB through pymongo, multi-document transactions on a replica set.

Collections:
  resources  the current version of each resource, `_id` = "Type/id", with its search
             values in typed arrays (`tok`, `str`, `dt`, `ref`, `num`) under multikey
             indexes and `pat`, the Patient compartment(s) it belongs to.
  versions   every version, `_id` = "Type/id/version", unique on (t, id, v).

Transactions: on a replica set or mongos, a write session is one multi-document
transaction; a write conflict surfaces as `VersionConflict` and the repository retries.
Where the server cannot run transactions (a standalone server, or mongomock in tests), a
write session keeps an undo journal and reverses its writes when the session fails. That
gives all-or-nothing to one writer, not isolation from concurrent readers: the README lists
this under limits, and the conformance suite says where mongomock cannot show the real
behaviour. Writers are serialised per process only, so a standalone server is for one
gateway process (a warning is logged when one is opened); each undo step is conditional on
the document still being what this session wrote, so a failed session never erases a newer
write another process made meanwhile (that write is kept, with a gap in the history).

Reads run outside any session (read concern "local"): each read sees what the server holds
at that moment, not one snapshot across the several reads a request makes (a search and its
includes, a summary). With transactions that is committed data, which a failover can still
roll back; without them it includes other sessions' unfinished writes.

Shard key (README): `pat` (the patient compartment) for `resources` and `versions`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pymongo
from pymongo.errors import DocumentTooLarge, DuplicateKeyError, OperationFailure, PyMongoError

from . import base
from .base import (
    DateValue,
    FindResult,
    HistoryPage,
    NewVersion,
    NumberValue,
    ReferenceValue,
    ResourceTooLarge,
    StoredVersion,
    StoreUnavailable,
    StringValue,
    TokenValue,
    VersionConflict,
)
from .cursor import decode_cursor, history_cursor
from .query import (
    MAX_INNER_IDS,
    ChainPredicate,
    Criterion,
    HasPredicate,
    IndexQuery,
    MissingPredicate,
    QueryTooBroad,
    RangePredicate,
    ReferencePredicate,
    StringPredicate,
    TokenPredicate,
    TokenTextPredicate,
)

log = logging.getLogger("fhir_gateway.store.mongo")

#: commit attempts when the server's answer to a commit was lost (the commit is retried
#: as the MongoDB drivers' docs advise: retrying a commit is safe, it applies once)
COMMIT_ATTEMPTS = 3
#: characters of a string kept as its sort key (`srt`): enough to order by, and a long
#: value is then not stored twice more per searched parameter (the 16 MiB document limit)
SORT_KEY_CHARS = 256
#: MongoDB's per-document limit and its "document too large" server error codes
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
_TOO_LARGE_CODES = frozenset({10334, 17419, 17420})

KIND_FIELD = {
    "token": "tok",
    "string": "str",
    "uri": "str",
    "date": "dt",
    "reference": "ref",
    "number": "num",
    "quantity": "num",
}

# Indexes are declared here, created idempotently at open, and listed in the README.
RESOURCE_INDEXES: list[tuple[str, list[tuple[str, int]], dict[str, Any]]] = [
    ("type_id", [("t", 1), ("id", 1)], {"unique": True}),
    ("type_updated", [("t", 1), ("lu", 1)], {}),
    ("token", [("t", 1), ("tok.p", 1), ("tok.c", 1), ("tok.s", 1)], {}),
    ("string", [("t", 1), ("str.p", 1), ("str.n", 1)], {}),
    ("string_exact", [("t", 1), ("str.p", 1), ("str.e", 1)], {}),
    ("date", [("t", 1), ("dt.p", 1), ("dt.lo", 1), ("dt.hi", 1)], {}),
    ("reference", [("t", 1), ("ref.p", 1), ("ref.ti", 1), ("ref.tt", 1)], {}),
    ("reference_url", [("t", 1), ("ref.p", 1), ("ref.u", 1)], {}),
    ("number", [("t", 1), ("num.p", 1), ("num.lo", 1)], {}),
    ("compartment", [("pat", 1), ("t", 1)], {}),
]
VERSION_INDEXES: list[tuple[str, list[tuple[str, int]], dict[str, Any]]] = [
    ("type_id_version", [("t", 1), ("id", 1), ("v", 1)], {"unique": True}),
    ("updated", [("lu", -1), ("t", -1), ("id", -1), ("v", -1)], {}),
    ("type_updated", [("t", 1), ("lu", -1), ("id", -1), ("v", -1)], {}),
]


def _stored(doc: dict[str, Any]) -> StoredVersion:
    return StoredVersion(
        rtype=doc["t"], rid=doc["id"], version=doc["v"], last_updated=doc["lu"],
        deleted=doc["d"], body=doc.get("body"),
    )


class MongoEngine:
    """A store in a MongoDB database (see module docstring)."""

    name = "mongodb"

    def __init__(self, client: Any, database: str, *, transactions: bool | None = None) -> None:
        self.client = client
        self.db = client[database]
        self.resources = self.db["resources"]
        self.versions = self.db["versions"]
        self.records = self.db["records"]
        try:
            for name, keys, opts in RESOURCE_INDEXES:
                self.resources.create_index(keys, name=name, **opts)
            for name, keys, opts in VERSION_INDEXES:
                self.versions.create_index(keys, name=name, **opts)
            self.records.create_index([("kind", 1), ("key", 1)], name="kind_key")
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB at {database!r}: {exc}") from exc
        self.transactions = self._supports_transactions() if transactions is None else transactions
        # Without transactions, one writer at a time per process: the undo journal then
        # reverses only its own writes. (mongomock's unique indexes are also not safe
        # under threads; a real server enforces them across processes.)
        self._writer = threading.RLock()
        self._local = threading.local()  # how deep, and how the outer session began

    def _supports_transactions(self) -> bool:
        try:
            hello = self.client.admin.command("hello")
        except (PyMongoError, NotImplementedError, AttributeError):
            return False  # mongomock, or a server too old to say
        if "setName" in hello or hello.get("msg") == "isdbgrid":
            return True
        log.warning("MongoDB %s is a standalone server (no transactions): run ONE gateway "
                    "process on it. Writers are serialised within a process only, so two "
                    "workers can break the one-Patient-per-NHS-number rule and see each "
                    "other's unfinished writes; use a replica set for more.",
                    self.db.name)
        return False

    @contextmanager
    def session(self, *, write: bool) -> Iterator[MongoSession]:
        depth = getattr(self._local, "depth", 0)
        if depth and write and not self._local.outer_write:
            # as on SQLite: a write is not hidden inside a read (the gate's GETs)
            raise base.StoreError("a write session cannot be opened inside a read one")
        if not depth:
            self._local.outer_write = write
        self._local.depth = depth + 1
        try:
            with self._open(write=write) as session:
                yield session
        finally:
            self._local.depth = depth

    @contextmanager
    def _open(self, *, write: bool) -> Iterator[MongoSession]:
        if not write:
            yield MongoSession(self, None, None)
            return
        if self.transactions:
            with self.client.start_session() as s:
                s.start_transaction(
                    read_concern=pymongo.read_concern.ReadConcern("snapshot"),
                    write_concern=pymongo.write_concern.WriteConcern("majority"),
                )
                try:
                    # The journal serves savepoints only; a failed transaction is aborted.
                    yield MongoSession(self, s, [])
                except BaseException:
                    s.abort_transaction()
                    raise
                _commit(s)
            return
        journal: list[tuple[str, Any]] = []
        with self._writer:
            try:
                yield MongoSession(self, None, journal)
            except BaseException:
                _undo(self, journal)
                raise

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if close:
            close()


def _commit(s: Any) -> None:
    """Commit a transaction: a write conflict is a VersionConflict (the caller retries the
    whole session); a commit whose answer was lost (UnknownTransactionCommitResult: a
    network error or a failover) is committed again, as the driver docs advise."""
    for attempt in range(COMMIT_ATTEMPTS):
        try:
            s.commit_transaction()
            return
        except PyMongoError as exc:
            if exc.has_error_label("UnknownTransactionCommitResult") \
                    and attempt < COMMIT_ATTEMPTS - 1:
                continue
            if exc.has_error_label("TransientTransactionError"):
                raise VersionConflict(str(exc)) from exc
            raise


def _undo(engine: MongoEngine, journal: list[tuple[str, Any]], **kw: Any) -> None:
    """Reverse writes, newest first: a failed session's (no-transaction mode) or a failed
    savepoint's (both modes; `kw` carries the transaction's session). Each step applies
    only while the document is still what this session wrote: without transactions
    another process may have written over it since, and its acknowledged write is kept
    (inside a transaction no one else can have, so every step applies)."""
    kept = []
    for action, arg in reversed(journal):
        if action == "version":  # (t, id, v) is unique: no one else writes this one
            engine.versions.delete_one({"_id": arg}, **kw)
        elif action == "insert":
            key, version = arg
            if engine.resources.delete_one({"_id": key, "v": version}, **kw).deleted_count != 1:
                kept.append(key)
        elif action == "replace":
            previous, version = arg
            if engine.resources.replace_one({"_id": previous["_id"], "v": version}, previous,
                                            **kw).matched_count != 1:
                kept.append(previous["_id"])
        elif action == "record":
            key, previous, written = arg
            if written is None:  # this session deleted it: back only if still absent
                try:
                    engine.records.insert_one(previous, **kw)
                except DuplicateKeyError:
                    kept.append(key)
            elif previous is None:
                if engine.records.delete_one(written, **kw).deleted_count != 1:
                    kept.append(key)
            elif engine.records.replace_one(written, previous, **kw).matched_count != 1:
                kept.append(key)
    if kept:
        log.warning("undoing a failed write session: %s changed since by another writer; "
                    "that newer write was kept", ", ".join(kept))


@contextmanager
def _raising(key: str, *, in_transaction: bool) -> Iterator[None]:
    """Maps a write's pymongo errors for the store's callers: a write conflict, or a
    duplicate key inside a transaction (the server has then aborted it), to
    VersionConflict (the caller retries the whole session); a document past the size
    limit to ResourceTooLarge naming `key`. (A duplicate key outside a transaction is the
    caller's to judge.)"""
    try:
        yield
    except DocumentTooLarge as exc:
        raise _too_large(key) from exc
    except DuplicateKeyError as exc:
        if in_transaction:
            raise VersionConflict(f"{key} was written concurrently") from exc
        raise
    except OperationFailure as exc:
        if exc.code in _TOO_LARGE_CODES:
            raise _too_large(key) from exc
        if exc.has_error_label("TransientTransactionError"):
            raise VersionConflict(str(exc)) from exc
        raise


def _too_large(key: str) -> ResourceTooLarge:
    return ResourceTooLarge(
        f"{key} is too large to store: as MongoDB stores it, with its search values, it "
        f"passes the {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB document limit (long text in "
        "searched elements, such as a name, counts several times); shorten it")


class MongoSession:
    def __init__(
        self, engine: MongoEngine, session: Any, journal: list[tuple[str, Any]] | None
    ) -> None:
        self.e = engine
        self.s = session
        self.journal = journal
        self.write = session is not None or journal is not None

    def _kw(self) -> dict[str, Any]:
        return {"session": self.s} if self.s is not None else {}

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        if self.journal is None:
            raise base.StoreError("savepoint() in a read-only session")
        mark = len(self.journal)
        try:
            yield
        except BaseException:
            undone = self.journal[mark:]
            del self.journal[mark:]
            try:
                _undo(self.e, undone, **self._kw())
            except PyMongoError as exc:
                # The transaction is already aborted (a write conflict): only a retry of
                # the whole transaction can help.
                raise VersionConflict(f"savepoint could not be undone: {exc}") from exc
            raise

    def current(self, rtype: str, rid: str) -> StoredVersion | None:
        doc = self.e.resources.find_one(
            {"_id": f"{rtype}/{rid}"}, {"t": 1, "id": 1, "v": 1, "lu": 1, "d": 1, "body": 1},
            **self._kw(),
        )
        return _stored(doc) if doc else None

    def version(self, rtype: str, rid: str, version: int) -> StoredVersion | None:
        doc = self.e.versions.find_one({"_id": f"{rtype}/{rid}/{version}"}, **self._kw())
        return _stored(doc) if doc else None

    def put(self, new: NewVersion) -> None:
        if not self.write:
            raise base.StoreError("put() in a read-only session")
        key = f"{new.rtype}/{new.rid}"
        deleted = new.body is None
        vdoc = {
            "_id": f"{key}/{new.version}", "t": new.rtype, "id": new.rid, "v": new.version,
            "lu": new.last_updated, "d": deleted, "body": new.body,
            "pat": list(new.compartments),
        }
        try:
            with _raising(key, in_transaction=False):
                self.e.versions.insert_one(vdoc, **self._kw())
        except DuplicateKeyError as exc:
            raise VersionConflict(f"{key} version {new.version} exists") from exc
        if self.journal is not None:
            self.journal.append(("version", vdoc["_id"]))
        fields = {} if deleted else _index_fields(new)
        doc = {
            "_id": key, "t": new.rtype, "id": new.rid, "v": new.version,
            "lu": new.last_updated, "d": deleted, "body": new.body,
            "pat": list(new.compartments), **fields, "srt": sort_fields(fields),
        }
        previous = self.e.resources.find_one({"_id": key}, **self._kw())
        try:
            with _raising(key, in_transaction=False):
                if previous is None:
                    self.e.resources.insert_one(doc, **self._kw())
                    if self.journal is not None:
                        self.journal.append(("insert", (key, new.version)))
                else:
                    if previous["v"] >= new.version:
                        raise VersionConflict(f"{key} is at version {previous['v']}")
                    result = self.e.resources.replace_one(
                        {"_id": key, "v": previous["v"]}, doc, **self._kw()
                    )
                    if result.matched_count != 1:
                        raise VersionConflict(
                            f"{key} changed while writing version {new.version}")
                    if self.journal is not None:
                        self.journal.append(("replace", (previous, new.version)))
        except DuplicateKeyError as exc:
            raise VersionConflict(f"{key} was created concurrently") from exc

    def put_new(self, news: Sequence[NewVersion]) -> None:
        # One by one: each is a round trip; an insert_many here would need the savepoint
        # journal to learn which documents of a failed bulk insert went in.
        if any(n.version != 1 or n.body is None for n in news):
            raise ValueError("put_new() stores first versions with a body only")
        for new in news:
            self.put(new)

    def history(
        self,
        *,
        rtype: str | None,
        rid: str | None,
        since: str | None,
        cursor: str | None,
        limit: int,
    ) -> HistoryPage:
        flt: dict[str, Any] = {}
        if rtype is not None:
            flt["t"] = rtype
        if rid is not None:
            flt["id"] = rid
        if since is not None:
            flt["lu"] = {"$gte": since}
        if cursor is not None:
            lu, ct, ci, cv = decode_cursor(cursor, width=4)
            flt["$or"] = [
                {"lu": {"$lt": lu}},
                {"lu": lu, "t": {"$lt": ct}},
                {"lu": lu, "t": ct, "id": {"$lt": ci}},
                {"lu": lu, "t": ct, "id": ci, "v": {"$lt": cv}},
            ]
        docs = list(
            self.e.versions.find(flt, **self._kw())
            .sort([("lu", -1), ("t", -1), ("id", -1), ("v", -1)])
            .limit(limit + 1)
        )
        rows = [_stored(d) for d in docs[:limit]]
        nxt = None
        if len(docs) > limit and rows:
            nxt = history_cursor(rows[-1])
        return HistoryPage(versions=rows, next_cursor=nxt)

    # -- system records (see store.base); `_id` = "kind/key" makes create_only atomic.

    def record_get(self, kind: str, key: str, *, now: str | None = None) -> dict | None:
        doc = self.e.records.find_one({"_id": f"{kind}/{key}"}, **self._kw())
        if doc is None or (doc.get("expires") and now is not None and doc["expires"] <= now):
            return None
        return json.loads(doc["value"])

    def record_put(self, kind: str, key: str, value: dict, *, expires: str | None = None,
                   create_only: bool = False, now: str | None = None) -> bool:
        if not self.write:
            raise base.StoreError("record_put() in a read-only session")
        doc = {"_id": f"{kind}/{key}", "kind": kind, "key": key, "expires": expires,
               "value": json.dumps(value, separators=(",", ":"), sort_keys=True)}
        in_tx = self.s is not None
        with _raising(doc["_id"], in_transaction=in_tx):
            if not create_only:
                # The previous value is kept so an undo restores it (not just deletes).
                previous = self.e.records.find_one_and_replace(
                    {"_id": doc["_id"]}, doc, upsert=True, **self._kw())
                self._journal_record(doc["_id"], previous, doc)
                return True
            expired = self.e.records.find_one_and_delete(
                {"_id": doc["_id"], "expires": {"$ne": None, "$lte": now or ""}}, **self._kw())
            if in_tx and expired is None and self.e.records.find_one(
                    {"_id": doc["_id"]}, {"_id": 1}, **self._kw()) is not None:
                # Looked up first: inside a transaction a failed insert would abort it all
                # (the session could not go on after False).
                return False
            try:
                self.e.records.insert_one(doc, **self._kw())
            except DuplicateKeyError:
                if in_tx:
                    raise  # created since the transaction began: _raising -> VersionConflict
                return False
        self._journal_record(doc["_id"], expired, doc)
        return True

    def _journal_record(self, key: str, previous: dict[str, Any] | None,
                        written: dict[str, Any] | None) -> None:
        """Journal a record write: `written` None for a delete."""
        if self.journal is not None:
            self.journal.append(("record", (key, previous, written)))

    def record_delete(self, kind: str, key: str) -> bool:
        if not self.write:
            raise base.StoreError("record_delete() in a read-only session")
        with _raising(f"{kind}/{key}", in_transaction=self.s is not None):
            previous = self.e.records.find_one_and_delete({"_id": f"{kind}/{key}"},
                                                          **self._kw())
        if previous is not None:
            self._journal_record(previous["_id"], previous, None)
        return previous is not None

    def record_list(self, kind: str, *, after: str | None = None, before: str | None = None,
                    limit: int = 1000) -> list[tuple[str, dict]]:
        keys: dict[str, str] = {"$gt": after or ""}
        if before is not None:
            keys["$lt"] = before
        docs = self.e.records.find({"kind": kind, "key": keys}, **self._kw()) \
            .sort([("key", 1)]).limit(limit)
        return [(d["key"], json.loads(d["value"])) for d in docs]

    def find(self, query: IndexQuery) -> FindResult:
        flt = compile_filter(query, self)
        keys: list[tuple[str, bool]] = []
        added: dict[str, Any] = {}
        for i, key in enumerate(query.sort):
            field = KIND_FIELD[key.kind]
            lowest = _SORT_FIELDS[field][2]
            # A missing sort value sorts lowest, as on SQLite (see store/query.py).
            path = f"$srt.{key.param}.{'d' if key.descending else 'a'}"
            added[f"k{i}"] = {"$ifNull": [path, lowest]}
            keys.append((f"k{i}", key.descending))
        keys += [("t", False), ("id", False)]
        pipeline: list[dict[str, Any]] = [{"$match": flt}]
        if added:
            pipeline.append({"$addFields": added})
        if query.after is not None:
            pipeline.append({"$match": _after(keys, tuple(query.after))})
        pipeline.append({"$sort": {name: -1 if desc else 1 for name, desc in keys}})
        if query.limit is not None:
            pipeline.append({"$limit": query.limit})
        pipeline.append({"$project": {"t": 1, "id": 1, "v": 1, "lu": 1, "d": 1, "body": 1,
                                      **{f"k{i}": 1 for i in range(len(query.sort))}}})
        docs = list(self.e.resources.aggregate(pipeline, **self._kw()))
        return FindResult(rows=[_stored(d) for d in docs],
                          keys=[tuple(d.get(name) for name, _ in keys) for d in docs])

    def count(self, query: IndexQuery) -> int:
        return int(self.e.resources.count_documents(compile_filter(query, self), **self._kw()))


def _index_fields(new: NewVersion) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"tok": [], "str": [], "dt": [], "ref": [], "num": []}
    for entry in new.index:
        v, p = entry.value, entry.param
        if isinstance(v, TokenValue):
            out["tok"].append({"p": p, "s": v.system, "c": v.code, "x": v.text})
        elif isinstance(v, StringValue):
            out["str"].append({"p": p, "n": v.normalized, "e": v.exact})
        elif isinstance(v, DateValue):
            out["dt"].append({"p": p, "lo": v.low, "hi": v.high})
        elif isinstance(v, ReferenceValue):
            out["ref"].append({"p": p, "tt": v.target_type, "ti": v.target_id, "u": v.url})
        elif isinstance(v, NumberValue):
            out["num"].append({"p": p, "lo": v.low, "hi": v.high, "s": v.system, "c": v.code})
    return out


# --- compiling a neutral query to a MongoDB filter ---------------------------------------
# Every value is placed as a literal: strings go through re.escape before they reach a
# $regex, and no value is ever used as a key, so `{"$ne": null}` in a search is just text.


def _range(op: str, low: object, high: object) -> dict[str, Any]:
    eq = {"lo": {"$gte": low}, "hi": {"$lte": high}}
    return {
        "eq": eq,
        "ne": {"$nor": [eq]},
        "gt": {"hi": {"$gt": high}},
        "lt": {"lo": {"$lt": low}},
        "ge": {"hi": {"$gte": low}},  # touching counts, as in sqlite._RANGE_SQL
        "le": {"lo": {"$lte": high}},
        "sa": {"lo": {"$gt": high}},
        "eb": {"hi": {"$lt": low}},
        "ap": {"lo": {"$lte": high}, "hi": {"$gte": low}},
    }[op]


#: per index field: (value sorted ascending, value sorted descending, lowest value)
_SORT_FIELDS = {"tok": ("c", "c", ""), "str": ("n", "n", ""), "dt": ("lo", "hi", ""),
                "ref": ("u", "u", ""), "num": ("lo", "hi", -1e308)}


def sort_fields(fields: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per parameter, its lowest and highest sort value (`srt.<param>.a` / `.d`). A string
    keeps its first SORT_KEY_CHARS characters: values that share those are tied, and ties
    are ordered by the next sort key, then type and id (as any tie is)."""
    out: dict[str, dict[str, Any]] = {}
    for field, rows in fields.items():
        asc, desc, _ = _SORT_FIELDS[field]
        for row in rows:
            a, d = _sort_key(row.get(asc)), _sort_key(row.get(desc))
            slot = out.setdefault(row["p"], {})
            if a is not None and ("a" not in slot or a < slot["a"]):
                slot["a"] = a
            if d is not None and ("d" not in slot or d > slot["d"]):
                slot["d"] = d
    return out


def _sort_key(value: Any) -> Any:
    # a prefix orders as the whole value does, except among values sharing that prefix
    return value[:SORT_KEY_CHARS] if isinstance(value, str) else value


class _FilterCompiler:
    """Builds a MongoDB filter; chains and `_has` run their inner query first (no joins)."""

    def __init__(self, session: MongoSession) -> None:
        self.session = session

    def query(self, query: IndexQuery) -> dict[str, Any]:
        clauses: list[dict[str, Any]] = [{"d": False}]
        if query.rtype is not None:
            clauses.insert(0, {"t": query.rtype})
        if query.types:
            clauses.append({"t": {"$in": list(query.types)}})
        if query.ids is not None:
            clauses.append({"id": {"$in": list(query.ids)}})
        if query.compartment is not None:
            clauses.append({"pat": query.compartment})
        if query.since is not None:
            clauses.append({"lu": {"$gte": query.since}})
        clauses.extend(self.criterion(query.rtype, c) for c in query.criteria)
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def criterion(self, rtype: str | None, crit: Criterion) -> dict[str, Any]:
        if crit.kind == "has":
            return {"$and": [self.has(rtype, p) for p in crit.predicates
                             if isinstance(p, HasPredicate)]}
        field = KIND_FIELD[crit.kind]
        missing = [p for p in crit.predicates if isinstance(p, MissingPredicate)]
        if missing:
            present = {field: {"$elemMatch": {"p": crit.param}}}
            return {"$nor": [present]} if missing[0].missing else present
        ors = [self.predicate(p) for p in crit.predicates]
        match: dict[str, Any] = {"p": crit.param}
        if len(ors) == 1:
            match.update(ors[0])
        else:
            match["$or"] = ors
        has = {field: {"$elemMatch": match}}
        return {"$nor": [has]} if crit.negate else has

    def predicate(self, pred: object) -> dict[str, Any]:
        if isinstance(pred, TokenPredicate):
            out: dict[str, Any] = {}
            if pred.code is not None:
                out["c"] = pred.code
            if pred.system == "":
                out["s"] = None
            elif pred.system is not None:
                out["s"] = pred.system
            return out
        if isinstance(pred, TokenTextPredicate):
            return {"x": {"$regex": "^" + re.escape(pred.text)}}
        if isinstance(pred, StringPredicate):
            if pred.mode == "exact":
                return {"e": pred.text}
            if pred.mode == "contains":
                return {"n": {"$regex": re.escape(pred.text)}}
            return {"n": {"$regex": "^" + re.escape(pred.text)}}
        if isinstance(pred, RangePredicate):
            out = _range(pred.op, pred.low, pred.high)
            if pred.system is not None or pred.code is not None:
                out = {"$and": [out, {k: v for k, v in (("s", pred.system), ("c", pred.code))
                                      if v is not None}]}
            return out
        if isinstance(pred, ReferencePredicate):
            if pred.url is not None:
                return {"u": pred.url}
            out = {"ti": pred.target_id}
            if pred.target_type is not None:
                out["tt"] = pred.target_type
            return out
        if isinstance(pred, ChainPredicate):
            ids = self.inner_ids(pred.query)
            return {"tt": pred.target_type, "ti": {"$in": ids}}
        raise ValueError(f"no MongoDB filter for {pred!r}")

    def inner_ids(self, query: IndexQuery) -> list[str]:
        docs = list(self.session.e.resources.find(
            self.query(query), {"id": 1}, **self.session._kw()).limit(MAX_INNER_IDS + 1))
        if len(docs) > MAX_INNER_IDS:
            raise QueryTooBroad(f"the inner query matches over {MAX_INNER_IDS} resources")
        return [d["id"] for d in docs]

    def has(self, rtype: str | None, pred: HasPredicate) -> dict[str, Any]:
        docs = list(self.session.e.resources.find(
            self.query(pred.query), {"ref": 1}, **self.session._kw()
        ).limit(MAX_INNER_IDS + 1))
        if len(docs) > MAX_INNER_IDS:
            raise QueryTooBroad(f"_has matches over {MAX_INNER_IDS} {pred.source_type}")
        ids = {
            ref["ti"] for d in docs for ref in d.get("ref") or []
            if ref.get("p") == pred.param and ref.get("ti")
            and (rtype is None or ref.get("tt") == rtype)
        }
        return {"id": {"$in": sorted(ids)}}


def compile_filter(query: IndexQuery, session: MongoSession) -> dict[str, Any]:
    return _FilterCompiler(session).query(query)


def _after(keys: list[tuple[str, bool]], after: tuple[object, ...]) -> dict[str, Any]:
    ors = []
    for i, (name, desc) in enumerate(keys):
        clause: dict[str, Any] = {keys[j][0]: after[j] for j in range(i)}
        clause[name] = {"$lt" if desc else "$gt": after[i]}
        ors.append(clause)
    return {"$or": ors}
