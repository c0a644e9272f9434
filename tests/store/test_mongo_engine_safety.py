"""The MongoDB engine where it differs from SQLite: undo without transactions, create-only
records inside a transaction, commit retries, and the 16 MiB document limit.

mongomock has no sessions, so the transaction-mode paths run here on a thin wrapper that
drops pymongo's `session` argument (`_Sessionless`): it shows what the engine asks the
server, not real isolation. What only a replica set can show: that a DuplicateKeyError or
write conflict really aborts the transaction, and a commit whose answer is lost.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import bson
import mongomock
import mongomock.collection
import pymongo.errors
import pytest
from fastapi.testclient import TestClient

from fhir_gateway.api.app import create_app
from fhir_gateway.config import Settings
from fhir_gateway.fhir.repository import Repository
from fhir_gateway.store.base import VersionConflict
from fhir_gateway.store.mongo import (
    MAX_DOCUMENT_BYTES,
    SORT_KEY_CHARS,
    MongoEngine,
    MongoSession,
    _commit,
    sort_fields,
)

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def two_workers() -> tuple[MongoEngine, MongoEngine]:
    """Two engines (two gateway processes) on one database of a server without
    transactions: each serialises only its own writers."""
    client, db = mongomock.MongoClient(), f"db{uuid.uuid4().hex[:8]}"
    return MongoEngine(client, db, transactions=False), MongoEngine(client, db, transactions=False)


def patient(rid: str, family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": rid, "name": [{"family": family}]}


# -- a failed session's undo keeps another process's newer write ---------------------------


def test_undo_keeps_the_newer_version_another_worker_wrote() -> None:
    a, b = two_workers()
    repo_a, repo_b = Repository(a), Repository(b)
    repo_a.update(patient("x", "v1"), rtype="Patient", rid="x")
    with pytest.raises(RuntimeError), a.session(write=True) as s:
        repo_a.update(patient("x", "A-v2"), rtype="Patient", rid="x", session=s)
        acknowledged = repo_b.update(patient("x", "B-write"), rtype="Patient", rid="x")
        raise RuntimeError("a later entry of A's transaction fails")
    assert acknowledged.stored.version == 3
    with b.session(write=False) as s:
        current = s.current("Patient", "x")
        history = s.history(rtype="Patient", rid="x", since=None, cursor=None, limit=10)
    assert current is not None and current.version == 3
    assert json.loads(current.body or "{}")["name"] == [{"family": "B-write"}]
    assert [v.version for v in history.versions] == [3, 1]  # A's v2 is undone


def test_undo_keeps_a_record_another_worker_wrote_or_remade() -> None:
    a, b = two_workers()
    with a.session(write=True) as s:
        s.record_put("held", "gone", {"by": "first"})
    with pytest.raises(RuntimeError), a.session(write=True) as s:
        s.record_put("held", "k", {"by": "A"})
        s.record_delete("held", "gone")
        with b.session(write=True) as other:
            other.record_put("held", "k", {"by": "B"})
            other.record_put("held", "gone", {"by": "B"})
        raise RuntimeError("A fails")
    with a.session(write=False) as s:
        assert s.record_get("held", "k") == {"by": "B"}
        assert s.record_get("held", "gone") == {"by": "B"}


def test_undo_still_restores_what_no_one_else_touched() -> None:
    a, _ = two_workers()
    repo = Repository(a)
    repo.update(patient("x", "v1"), rtype="Patient", rid="x")
    with a.session(write=True) as s:
        s.record_put("held", "k", {"v": 1})
    with pytest.raises(RuntimeError), a.session(write=True) as s:
        repo.update(patient("x", "v2"), rtype="Patient", rid="x", session=s)
        repo.update(patient("y", "new"), rtype="Patient", rid="y", session=s)
        s.record_put("held", "k", {"v": 2})
        s.record_put("held", "new", {"v": 1})
        raise RuntimeError("fails")
    with a.session(write=False) as s:
        assert json.loads(s.current("Patient", "x").body or "{}")["name"][0]["family"] == "v1"
        assert s.current("Patient", "y") is None
        assert (s.record_get("held", "k"), s.record_get("held", "new")) == ({"v": 1}, None)


def test_a_standalone_server_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    class Standalone(mongomock.MongoClient):  # answers `hello` as a standalone mongod does
        @property
        def admin(self) -> Any:
            return SimpleNamespace(command=lambda name: {"isWritablePrimary": True})

    with caplog.at_level(logging.WARNING, logger="fhir_gateway.store.mongo"):
        engine = MongoEngine(Standalone(), "db")
    assert engine.transactions is False
    assert "run ONE gateway process" in caplog.text


# -- create-only records inside a transaction ----------------------------------------------


class _Sessionless:
    """A mongomock collection taking (and dropping) pymongo's `session` argument, counting
    inserts; `hide_existing`: find_one sees nothing (a record another transaction
    committed after this one's snapshot)."""

    def __init__(self, collection: Any, *, hide_existing: bool = False) -> None:
        self.collection = collection
        self.hide_existing = hide_existing
        self.inserts = 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.collection, name)

        def call(*args: Any, session: Any = None, **kwargs: Any) -> Any:
            if name == "insert_one":
                self.inserts += 1
            if name == "find_one" and self.hide_existing:
                return None
            return real(*args, **kwargs)

        return call


def in_transaction(engine: MongoEngine) -> MongoSession:
    return MongoSession(engine, session=object(), journal=[])


def test_create_only_in_a_transaction_looks_before_it_inserts() -> None:
    """An insert that hits the unique key aborts a real transaction: an existing record
    is found first, and the session goes on (False, then another record)."""
    engine, _ = two_workers()
    with engine.session(write=True) as s:
        s.record_put("jti", "seen", {"client": "c"}, expires="2999-01-01T00:00:00Z")
    records = engine.records = _Sessionless(engine.records)  # type: ignore[assignment]
    tx = in_transaction(engine)
    assert tx.record_put("jti", "seen", {"client": "c"}, create_only=True,
                         expires="2999-01-01T00:00:00Z", now="2026-01-01T00:00:00Z") is False
    assert records.inserts == 0
    assert tx.record_put("jti", "fresh", {"client": "c"}, create_only=True) is True
    # an expired record counts as absent, as before
    assert tx.record_put("jti", "seen", {"client": "c"}, create_only=True,
                         now="3000-01-01T00:00:00Z") is True


def test_create_only_losing_a_race_in_a_transaction_is_a_conflict() -> None:
    """Created by another transaction after this one's snapshot: the insert fails, the
    transaction is gone, so the caller must retry it all (not go on after False)."""
    engine, _ = two_workers()
    with engine.session(write=True) as s:
        s.record_put("signing-key", "gw-1", {"jwk": "theirs"}, create_only=True)
    engine.records = _Sessionless(engine.records, hide_existing=True)  # type: ignore[assignment]
    with pytest.raises(VersionConflict):
        in_transaction(engine).record_put("signing-key", "gw-1", {"jwk": "mine"},
                                          create_only=True)


def test_create_only_without_transactions_still_answers_false() -> None:
    engine, _ = two_workers()
    with engine.session(write=True) as s:
        assert s.record_put("person-nhs", "9434765919", {"patient": "a"}, create_only=True)
        assert not s.record_put("person-nhs", "9434765919", {"patient": "b"},
                                create_only=True)


# -- commit ---------------------------------------------------------------------------------


class _Committing:
    def __init__(self, *errors: pymongo.errors.PyMongoError) -> None:
        self.errors = list(errors)
        self.commits = 0

    def commit_transaction(self) -> None:
        self.commits += 1
        if self.errors:
            raise self.errors.pop(0)


def test_a_commit_whose_answer_was_lost_is_retried() -> None:
    lost = pymongo.errors.ConnectionFailure(
        "connection closed", error_labels=["UnknownTransactionCommitResult"])
    s = _Committing(lost)
    _commit(s)
    assert s.commits == 2


def test_a_commit_write_conflict_is_a_version_conflict() -> None:
    conflict = pymongo.errors.OperationFailure(
        "WriteConflict", code=112, details={"errorLabels": ["TransientTransactionError"]})
    with pytest.raises(VersionConflict):
        _commit(_Committing(conflict))


# -- the 16 MiB document limit ----------------------------------------------------------------


@pytest.fixture
def bson_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    """mongomock with pymongo's own check: a document past 16 MiB is DocumentTooLarge."""
    for name in ("insert_one", "replace_one"):
        real = getattr(mongomock.collection.Collection, name)

        def limited(self: Any, *args: Any, _real: Any = real, _name: str = name,
                    **kwargs: Any) -> Any:
            doc = args[1] if _name == "replace_one" else args[0]
            if len(bson.encode(doc)) > MAX_DOCUMENT_BYTES:
                raise pymongo.errors.DocumentTooLarge("BSON document too large")
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(mongomock.collection.Collection, name, limited)


@pytest.fixture
def mongo_client(bson_limited: None) -> Iterator[TestClient]:
    engine = MongoEngine(mongomock.MongoClient(), f"db{uuid.uuid4().hex[:8]}",
                         transactions=False)
    app = create_app(Settings(max_body_bytes=16 * 1024 * 1024, auth_enabled=False),
                     engine=engine)
    with TestClient(app, base_url="http://gateway.test") as c:
        yield c


def test_a_long_name_is_stored_and_a_too_large_patient_is_a_413(
        mongo_client: TestClient) -> None:
    # 2 MB: stored ~5 times (body, exact and normalised per string parameter); unbounded
    # sort keys (4 more copies) would take it past 16 MiB
    long = mongo_client.put("/fhir/Patient/long", json=patient("long", "A" * 2 * 1024 * 1024),
                            headers=FHIR_JSON)
    assert long.status_code == 201, long.text[:300]
    assert mongo_client.get("/fhir/Patient/long").status_code == 200
    huge = mongo_client.put("/fhir/Patient/huge", json=patient("huge", "A" * 4 * 1024 * 1024),
                            headers=FHIR_JSON)
    assert huge.status_code == 413, huge.text[:300]
    issue = huge.json()["issue"][0]
    assert issue["code"] == "too-costly" and "Patient/huge is too large" in issue["diagnostics"]
    assert mongo_client.get("/fhir/Patient/huge").status_code == 404  # nothing was kept


def test_sort_keys_are_a_bounded_prefix(mongo_client: TestClient) -> None:
    keys = sort_fields({"str": [{"p": "family", "n": "b" * 5000, "e": "B" * 5000},
                                {"p": "family", "n": "a" * 5000, "e": "A" * 5000}]})
    assert keys["family"] == {"a": "a" * SORT_KEY_CHARS, "d": "b" * SORT_KEY_CHARS}
    # values that differ only past the prefix tie, and ties go by id
    shared = "x" * SORT_KEY_CHARS
    for rid, family in (("p1", shared + "z"), ("p2", shared + "a"), ("p0", "w")):
        assert mongo_client.put(f"/fhir/Patient/{rid}", json=patient(rid, family),
                                headers=FHIR_JSON).status_code == 201
    found = mongo_client.get("/fhir/Patient?_sort=family").json()
    assert [e["resource"]["id"] for e in found["entry"]] == ["p0", "p1", "p2"]
