"""The FHIR repository: versioned resources over a store engine, knowing nothing of HTTP.

One write path for every interaction: in one store transaction, read the current
version, check the caller's precondition, assign version N+1 and `meta`, extract the
index values, and `put`. A concurrent writer that wins the race makes `put` fail with
`VersionConflict`; the whole step is retried, so no version is ever lost or overwritten.
An update whose content equals the current version's is a no-op (no new version), which
makes redelivered data idempotent. Resources the gateway derives from others (a
DetectedIssue for partners' disagreeing CPR decisions) are brought up to date in the same
transaction, just before it commits (`derivations`).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .. import jsonio
from ..errors import (
    BadRequest,
    Conflict,
    Gone,
    Issue,
    NotFound,
    PreconditionFailed,
    Unprocessable,
)
from ..search.extract import IndexExtractor
from ..search.query import SearchRequest
from ..search.registry import SearchRegistry, default_registry
from ..search.values import now_instant
from ..store.base import (
    FindResult,
    HistoryPage,
    NewVersion,
    StoredVersion,
    StoreEngine,
    StoreSession,
    VersionConflict,
)
from ..store.query import IndexQuery, QueryTooBroad
from ..validation import default_validator
from .derivations import Derivation, PendingDerivations

MAX_ATTEMPTS = 20

#: Checks a resource against the profiles it names; returns every problem found.
ProfileCheck = Callable[[dict[str, Any]], list[Issue]]


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did: the version now current, and whether it was new."""

    stored: StoredVersion
    created: bool  # a new resource (201) rather than a new version of one (200)
    changed: bool  # False when the write was a no-op (same content, or conditional match)

    @property
    def resource(self) -> dict[str, Any] | None:
        return jsonio.loads_trusted(self.stored.body) if self.stored.body else None


@dataclass(frozen=True, slots=True, eq=False)
class ProfileChecked:
    """What `Repository.check_profiles` hands back when a resource passed: the exact
    content it checked. A write given it skips its own check only when it comes from the
    same repository and the resource written still has exactly that content (pass the
    same resource, unchanged), so validation runs once on the ingestion path and every
    other write is checked as before."""

    owner: object
    content: str  # `_fingerprint` of what was checked


def _fingerprint(resource: dict[str, Any]) -> str:
    """Exact content for "is this what was checked?": repr keeps every type and value
    (1 vs 1.0 vs True, a decimal's digits, list vs tuple, key order), and is cheaper than
    JSON text. Any difference, even a harmless one, only means checking again."""
    return repr(resource)


def new_id() -> str:
    return str(uuid.uuid4())


def unknown(rtype: str, rid: str) -> NotFound:
    """The answer for a resource that is not there. A resource hidden from the caller gets
    exactly this too (security.policy.hidden calls this): "forbidden" and "not there" must
    not be told apart."""
    return NotFound(f"{rtype}/{rid} is not known", expression=rtype)


def _content(resource: dict[str, Any]) -> str:
    """The resource without server-assigned meta, for "did anything change?"."""
    body = dict(resource)
    meta = dict(body.get("meta") or {})
    meta.pop("versionId", None)
    meta.pop("lastUpdated", None)
    if meta:
        body["meta"] = meta
    else:
        body.pop("meta", None)
    return jsonio.canonical(body)


class Repository:
    def __init__(
        self,
        engine: StoreEngine,
        *,
        registry: SearchRegistry | None = None,
        clock: Callable[[], str] = now_instant,
        profiles: ProfileCheck | None = None,
        derivations: tuple[Derivation, ...] | None = None,
    ) -> None:
        """`profiles`: the profile check every write passes (default: the gateway's
        profiles in `profiles/`); a resource naming one of them is held to it.
        `derivations`: what the gateway keeps in step with the data (default: the stored
        DetectedIssue of partners' disagreeing CPR decisions, and the identity-key tokens
        that tell the held-record retry what may have changed; `()` for none)."""
        self.engine = engine
        self.registry = registry or default_registry()
        self.extractor = IndexExtractor(self.registry)
        self.clock = clock
        self.profiles = profiles if profiles is not None else default_validator().validate
        if derivations is None:
            # imported here: the summary's rules and identity sit above this module
            from ..pipeline.identity import IdentityKeyTokens
            from ..summary.conflicts import default_derivations
            derivations = (*default_derivations(), IdentityKeyTokens())
        self.pending = PendingDerivations(derivations)

    # -- sessions --------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[StoreSession]:
        """One write transaction for several interactions (a transaction Bundle); the
        derived resources its writes concern are brought up to date before it commits."""
        with self.engine.session(write=True) as session:
            try:
                yield session
                self.pending.run(self, session)
            finally:
                self.pending.forget(session)

    @contextmanager
    def _reading(self, session: StoreSession | None) -> Iterator[StoreSession]:
        if session is not None:
            yield session
        else:
            with self.engine.session(write=False) as s:
                yield s

    # -- reads -----------------------------------------------------------------------

    def current(self, rtype: str, rid: str, *,
                session: StoreSession | None = None) -> StoredVersion | None:
        """The latest version, a deletion's tombstone included; None if there never was one."""
        with self._reading(session) as s:
            return s.current(rtype, rid)

    def read(self, rtype: str, rid: str, *, session: StoreSession | None = None) -> StoredVersion:
        current = self.current(rtype, rid, session=session)
        if current is None:
            raise unknown(rtype, rid)
        if current.deleted:
            raise Gone(f"{rtype}/{rid} was deleted (version {current.version})",
                       headers={"ETag": f'W/"{current.version}"'})
        return current

    def vread(self, rtype: str, rid: str, version: int, *,
              session: StoreSession | None = None) -> StoredVersion:
        with self._reading(session) as s:
            found = s.version(rtype, rid, version)
            exists = found is not None or s.current(rtype, rid) is not None
        if not exists:  # no such resource at all: the same words as read
            raise unknown(rtype, rid)
        if found is None:
            raise NotFound(f"{rtype}/{rid} has no version {version}", expression=rtype)
        if found.deleted:
            raise Gone(f"{rtype}/{rid} version {version} is a deletion")
        return found

    def history(self, *, rtype: str | None = None, rid: str | None = None,
                since: str | None = None, cursor: str | None = None,
                limit: int = 50) -> HistoryPage:
        with self.engine.session(write=False) as s:
            if rtype is not None and rid is not None and s.current(rtype, rid) is None:
                raise unknown(rtype, rid)
            return s.history(rtype=rtype, rid=rid, since=since, cursor=cursor, limit=limit)

    def find(self, query: IndexQuery, *, session: StoreSession | None = None) -> FindResult:
        with self._reading(session) as s:
            try:
                return s.find(query)
            except QueryTooBroad as exc:
                raise BadRequest(f"{exc}; narrow the search", code="too-costly") from exc

    def count(self, query: IndexQuery, *, session: StoreSession | None = None) -> int:
        with self._reading(session) as s:
            try:
                return s.count(query)
            except QueryTooBroad as exc:
                raise BadRequest(f"{exc}; narrow the search", code="too-costly") from exc

    def search(self, request: SearchRequest, *,
               session: StoreSession | None = None) -> list[StoredVersion]:
        """The matches of a search request (no paging): for conditional interactions."""
        return self.find(request.query, session=session).rows

    # -- writes ----------------------------------------------------------------------

    def _profile_errors(self, resource: dict[str, Any]) -> list[Issue]:
        return [i for i in self.profiles(resource) if i.severity in ("error", "fatal")]

    def check_profiles(self, resource: dict[str, Any]) -> tuple[list[Issue], ProfileChecked | None]:
        """The errors of the profile check every write runs; with none, a ProfileChecked
        that a write of this very content may pass (`checked=`) instead of checking again."""
        errors = self._profile_errors(resource)
        if errors:
            return errors, None
        return [], ProfileChecked(self, _fingerprint(resource))

    def create(self, resource: dict[str, Any], *, session: StoreSession | None = None,
               rid: str | None = None, base_url: str | None = None,
               checked: ProfileChecked | None = None) -> WriteResult:
        """Create with a server-assigned id (or `rid`, pre-assigned by a transaction).
        `base_url`: this server's FHIR base as the caller sees it (for indexing).
        `checked`: from `check_profiles` on this resource (see ProfileChecked)."""
        return self._write(resource["resourceType"], rid or new_id(), resource,
                           session=session, must_be_new=True, base_url=base_url,
                           checked=checked)

    def update(self, resource: dict[str, Any], *, rtype: str, rid: str,
               if_match: int | None = None, session: StoreSession | None = None,
               base_url: str | None = None,
               checked: ProfileChecked | None = None) -> WriteResult:
        """Update, or create with the client's id when there is no such resource."""
        return self._write(rtype, rid, resource, if_match=if_match, session=session,
                           base_url=base_url, checked=checked)

    def delete(self, rtype: str, rid: str, *, if_match: int | None = None,
               session: StoreSession | None = None) -> WriteResult | None:
        """Write a tombstone version; None when there was nothing to delete."""
        try:
            return self._write(rtype, rid, None, if_match=if_match, session=session)
        except NotFound:
            return None

    def _write(self, rtype: str, rid: str, resource: dict[str, Any] | None, *,
               if_match: int | None = None, must_be_new: bool = False,
               session: StoreSession | None = None, base_url: str | None = None,
               checked: ProfileChecked | None = None) -> WriteResult:
        args = (rtype, rid, resource, if_match, must_be_new, base_url, checked)
        for _attempt in range(MAX_ATTEMPTS):
            try:
                if session is not None:  # the caller's transaction retries as a whole
                    return self._write_once(session, *args)
                with self.transaction() as s:
                    return self._write_once(s, *args)
            except VersionConflict:
                if session is not None:
                    raise
        raise Conflict(f"{rtype}/{rid}: too many concurrent writers; try again")

    def _write_once(self, s: StoreSession, rtype: str, rid: str,
                    resource: dict[str, Any] | None, if_match: int | None,
                    must_be_new: bool, base_url: str | None,
                    checked: ProfileChecked | None = None) -> WriteResult:
        current = s.current(rtype, rid)
        if must_be_new and current is not None:
            raise Conflict(f"{rtype}/{rid} already exists")
        if if_match is not None:
            have = current.version if current and not current.deleted else None
            if have != if_match:
                raise PreconditionFailed(
                    f"If-Match asked for version {if_match} of {rtype}/{rid}, but the current "
                    f"version is {have if have is not None else 'none'}",
                    headers={"ETag": f'W/"{have}"'} if have else None)
        # the current version parsed once: for the no-op check and for the derivations
        before = jsonio.loads_trusted(current.body) \
            if current is not None and not current.deleted and current.body is not None \
            and (resource is not None or rtype in self.pending.watched) else None
        if resource is None:  # delete
            if current is None:
                raise NotFound(f"{rtype}/{rid} is not known")
            if current.deleted:
                return WriteResult(current, created=False, changed=False)
        elif before is not None and _content(before) == _content(resource):
            return WriteResult(current, created=False, changed=False)
        version = (current.version if current else 0) + 1
        last_updated = self.clock()
        if current is not None and last_updated <= current.last_updated:
            last_updated = current.last_updated  # never run backwards (clock steps)
        body_text = None
        body: dict[str, Any] | None = None
        index, compartments = (), ()
        if resource is not None:
            if checked is not None and checked.owner is self \
                    and checked.content == _fingerprint(resource):
                errors = []  # this repository's check passed this exact content
            else:
                errors = self._profile_errors(resource)
            if errors:
                raise Unprocessable(
                    f"{rtype} breaks its profile: {len(errors)} problem(s); "
                    + "; ".join(i.diagnostics for i in errors[:3]), issues=errors)
            body = copy.copy(resource)
            body["id"] = rid
            meta = dict(body.get("meta") or {})
            meta["versionId"] = str(version)
            meta["lastUpdated"] = last_updated
            body["meta"] = meta
            extracted = self.extractor.extract(body, local_base=base_url)
            index, compartments = extracted.entries, sorted(extracted.compartments)
            body_text = jsonio.dumps(body)
        new = NewVersion(rtype=rtype, rid=rid, version=version, last_updated=last_updated,
                         body=body_text, index=index, compartments=compartments)
        s.put(new)
        if rtype in self.pending.watched:
            self.pending.note(s, rtype, before, body)
        stored = StoredVersion(rtype, rid, version, last_updated, resource is None, body_text)
        return WriteResult(stored, created=current is None or current.deleted, changed=True)
