"""The RESTful interactions (R4 3.1.0), each a small function over the repository.

Every function takes the `FhirContext` (repository + interceptors), the request and the
matched route values, and returns a `FhirResponse`. None of them knows about HTTP
frameworks; `api/` translates, and `bundles.py` calls the same functions per entry.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from .. import jsonio
from ..errors import BadRequest, Conflict, Gone, NotFound, PreconditionFailed, information
from ..search.query import RESULT_PARAMS, SearchRequest, parse_search
from ..search.values import date_range, whole_number
from ..store.base import HistoryPage, StoredVersion, StoreSession
from ..store.cursor import BadCursor, history_cursor
from .interceptors import InterceptorChain
from .repository import Repository, WriteResult, unknown
from .request import FhirRequest, FhirResponse
from .validation import check_resource, conditional_reference, is_valid_id

#: rows (or versions) read at a time when looking past hidden ones: for visible
#: conditional matches, or for one that makes a `next` link (searchset.py too)
LOOKAHEAD = 20

#: versions read at most at once by history when looking past hidden ones: a run of them
#: doubles the read from LOOKAHEAD up to this, so a long run costs few store queries
MAX_HISTORY_BATCH = 1000

#: req.state key: which part of a searchset a resource is judged for ("include" while
#: `_include`/`_revinclude` resources are; absent for matches): interceptors re-checking
#: what selected a match (a chain, `_has`) have nothing to re-check for an include
SEARCH_MODE = "fhir.search_mode"

#: req.state key: while an old version is judged, the resource as it is now (its current
#: version, or for a deleted one what was deleted): interceptors judge the old version by
#: the patients of both, so one re-filed to a hidden patient keeps its past hidden too
CURRENT_VERSION = "fhir.current_version"


#: req.state key: in a transaction entry, a list for checks that judge the transaction's
#: end state rather than the moment the entry runs (one Patient per NHS number: two
#: Patients may swap numbers in one transaction); the transaction runs them, in its
#: session, after its last entry and before it commits
DEFERRED_CHECKS = "fhir.deferred_checks"

#: req.state key: a transaction's verdict on an entry's ifNoneExist (the visible match, or
#: None for "create"), reached before any entry ran so `urn:uuid:` references resolve
TRANSACTION_MATCH = "fhir.transaction_match"
#: req.state key: a transaction's verdict on a conditional update (the id it matched, or
#: None for "create"), reached before any entry ran: run after the transaction's POSTs,
#: the condition could match what one of them created, and overwrite it while references
#: to this entry's fullUrl named an id never written
TRANSACTION_UPDATE = "fhir.transaction_update"


#: req.state key: a conditional create's, update's or delete's criteria as the client sent
#: them, kept before interceptors run: a feed's are narrowed to its own resources (an
#: added `_tag`), and blank criteria must be judged as sent, not as narrowed
CRITERIA_AS_SENT = "fhir.criteria_as_sent"

#: req.state key: why an If-None-Exist cannot be read (it names another type), reported
#: when the create runs, after the caller's checks
CONDITION_PROBLEM = "fhir.condition_problem"


@dataclass(slots=True)
class _Now:
    """The resource as it is now: its version, and its body, parsed only when an old
    version needs it (most versions a listing judges are current ones)."""

    version: int
    body: str
    parsed: dict[str, Any] | None = None


#: the resource as it is now, per (type, id), for the versions one listing judges
Nows = dict[tuple[str, str], _Now | None]


@dataclass(slots=True)
class FhirContext:
    repository: Repository
    interceptors: InterceptorChain
    #: the open transaction when called from a transaction Bundle
    session: StoreSession | None = None


# -- helpers ----------------------------------------------------------------------------


def etag(version: int) -> str:
    return f'W/"{version}"'


def http_date(instant: str) -> str:
    """An instant as an HTTP date (RFC 9110, whole seconds, GMT). The stored
    `lastUpdated` is an ISO instant with its zone, which `fromisoformat` reads about ten
    times faster than the general FHIR date reading (it runs on every read); anything
    else takes that general path."""
    try:
        dt = datetime.fromisoformat(instant)
    except ValueError:
        dt = None
    if dt is None or dt.tzinfo is None:
        dt = datetime.strptime(date_range(instant)[0], "%Y-%m-%dT%H:%M:%S.%f")
        dt = dt.replace(tzinfo=UTC)
    return format_datetime(dt.astimezone(UTC), usegmt=True)


def version_headers(stored: StoredVersion, base_url: str) -> dict[str, str]:
    return {
        "ETag": etag(stored.version),
        "Last-Modified": http_date(stored.last_updated),
        "Location": f"{base_url}/{stored.rtype}/{stored.rid}/_history/{stored.version}",
    }


def parse_if_match(value: str | None) -> int | None:
    """`If-Match: W/"3"` -> 3 (R4 3.1.0.5.3)."""
    if value is None:
        return None
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    version = whole_number(text.strip('"'))
    if version is None:
        raise BadRequest(f'If-Match {value[:40]!r} is not a version ETag like W/"3"',
                         expression="If-Match")
    return version


def parse_version(value: str) -> int:
    version = whole_number(value)
    if version is None:
        raise NotFound(f"version {value[:40]!r} is not a version number")
    return version


def require_id(rid: str) -> str:
    if not is_valid_id(rid):
        raise BadRequest(f"{rid[:80]!r} is not a FHIR id (1-64 of A-Z a-z 0-9 - .)")
    return rid


def strict(req: FhirRequest) -> bool:
    return (req.prefer("handling") or "strict") != "lenient"


def write_response(ctx: FhirContext, req: FhirRequest, result: WriteResult) -> FhirResponse:
    """201/200 with the headers and the body `Prefer: return=` asks for."""
    status = 201 if result.created and result.changed else 200
    headers = version_headers(result.stored, req.base_url)
    ret = req.prefer("return") or "representation"
    if ret == "minimal":
        return FhirResponse(status, headers=headers)
    if ret == "operationoutcome":
        what = "created" if status == 201 else ("updated" if result.changed else "unchanged")
        return FhirResponse(status, information(
            f"{result.stored.rtype}/{result.stored.rid} {what}, version {result.stored.version}"
        ), headers=headers)
    return FhirResponse(status, raw=result.stored.body, headers=headers)


def visible(ctx: FhirContext, req: FhirRequest, stored: StoredVersion,
            now: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The resource, if the interceptors let this caller see it; `now`, for an old version,
    is the resource as it is now (see CURRENT_VERSION)."""
    if stored.body is None:
        return None
    resource = jsonio.loads_trusted(stored.body)
    if now is None:
        return resource if ctx.interceptors.can_see(req, resource) else None
    req.state[CURRENT_VERSION] = now
    try:
        return resource if ctx.interceptors.can_see(req, resource) else None
    finally:
        req.state.pop(CURRENT_VERSION, None)


def resource_now(ctx: FhirContext, rtype: str, rid: str, version: int,
                 nows: Nows | None = None) -> dict[str, Any] | None:
    """The resource as it is now, when `version` is an old version of it: the current
    version, or for a deleted resource the version the deletion removed; None when
    `version` is that one itself (or nothing stored says more)."""
    key = (rtype, rid)
    if nows is not None and key in nows:
        now = nows[key]
    else:
        now = None
        stored = ctx.repository.current(rtype, rid, session=ctx.session)
        if stored is not None and stored.deleted:
            try:
                stored = ctx.repository.vread(rtype, rid, stored.version - 1,
                                              session=ctx.session)
            except (NotFound, Gone):  # deleted twice in a row: look no further back
                stored = None
        if stored is not None and stored.body is not None:
            now = _Now(stored.version, stored.body)
        if nows is not None:
            nows[key] = now
    if now is None or now.version == version:
        return None
    if now.parsed is None:
        now.parsed = jsonio.loads_trusted(now.body)
    return now.parsed


def _hidden(ctx: FhirContext, req: FhirRequest, stored: StoredVersion) -> bool:
    # no interceptors: nothing is hidden, and the body need not be parsed to know it
    return bool(ctx.interceptors.interceptors) and visible(ctx, req, stored) is None


def _may_know_of(ctx: FhirContext, req: FhirRequest, current: StoredVersion | None) -> bool:
    """May the caller learn that this resource exists (its current version, or for a
    deleted one, what was deleted)? Everything short of that answers as if it never did."""
    if current is None:
        return False
    if current.deleted:
        return not ctx.interceptors.interceptors or _deletion_visible(
            ctx, req, current.rtype, current.rid, current.version)
    return not _hidden(ctx, req, current)


def read_visible(ctx: FhirContext, req: FhirRequest, rtype: str, rid: str) -> StoredVersion:
    """The current version if the caller may see it; otherwise exactly what an absent
    resource gets. A deletion is 410 only to a caller who could see what was deleted: a
    410 would otherwise confirm that a hidden resource existed."""
    try:
        stored = ctx.repository.read(rtype, rid, session=ctx.session)
    except Gone:
        if _may_know_of(ctx, req, ctx.repository.current(rtype, rid, session=ctx.session)):
            raise
        raise unknown(rtype, rid) from None
    if _hidden(ctx, req, stored):
        raise unknown(rtype, rid)
    return stored


def _shown_raw(req: FhirRequest, stored: StoredVersion) -> FhirResponse:
    return FhirResponse(200, raw=stored.body, headers=version_headers(stored, req.base_url))


def prepare_conditional(req: FhirRequest) -> None:
    """Before any interceptor sees a conditional create, update or delete: keep its
    criteria as sent (CRITERIA_AS_SENT), and write an If-None-Exist given as a URL,
    `[base/]Patient?identifier=...` (HAPI's client sends it so), as its criteria."""
    segments = req.segments
    if CRITERIA_AS_SENT in req.state or len(segments) != 1:
        return
    if req.method in ("PUT", "DELETE"):
        req.state[CRITERIA_AS_SENT] = list(req.params)
        return
    condition = req.header("if-none-exist")
    if req.method != "POST" or condition is None:
        return
    named = conditional_reference(condition.strip())
    if named is not None:
        if named[0] != segments[0]:
            req.state[CONDITION_PROBLEM] = (
                f"If-None-Exist {condition[:80]!r} searches {named[0]}, but this creates a "
                f"{segments[0]}; give the criteria alone (identifier=system|value)")
            condition = ""  # matches nothing, narrows nothing; the create refuses it
        else:
            condition = named[1]
        req.headers["if-none-exist"] = condition
    req.state[CRITERIA_AS_SENT] = condition


def require_criteria(req: FhirRequest | None, rtype: str,
                     query: str | list[tuple[str, str]], where: str) -> None:
    """Refuse (400) a conditional interaction with no criterion that has a value: blank
    criteria (`identifier=`) or only result parameters (`_count=1`) would match every
    resource of the type, and delete, overwrite or return whichever one is there. Judged
    on the criteria as the client sent them, when they are known."""
    if req is not None and (problem := req.state.get(CONDITION_PROBLEM)):
        raise BadRequest(problem, expression=where)
    sent = req.state.get(CRITERIA_AS_SENT, query) if req is not None else query
    params = parse_qsl(sent, keep_blank_values=True) if isinstance(sent, str) else sent
    if not any(value and name.split(":", 1)[0] not in RESULT_PARAMS
               for name, value in params):
        raise BadRequest(f"{where} needs a search criterion with a value (an identifier, "
                         f"say); without one it would match every {rtype}",
                         expression=where)


def _conditional_search(ctx: FhirContext, rtype: str, query: str | list[tuple[str, str]],
                        where: str) -> SearchRequest:
    params = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else query
    params = [(k, v) for k, v in params if k not in ("_format", "_pretty")]
    require_criteria(None, rtype, params, where)
    return parse_search(rtype, params, ctx.repository.registry, strict=True)


def conditional_matches(ctx: FhirContext, rtype: str, query: str | list[tuple[str, str]],
                        where: str) -> list[StoredVersion]:
    """Up to two matches of a conditional update or delete, whoever may see them: the
    write checks (interceptors' on_request) decide whether the caller may touch them."""
    search = _conditional_search(ctx, rtype, query, where)
    search.query.limit = 2
    return ctx.repository.search(search, session=ctx.session)


def visible_matches(ctx: FhirContext, req: FhirRequest, rtype: str,
                    query: str | list[tuple[str, str]], where: str) -> list[StoredVersion]:
    """Up to two matches of a conditional create that the caller may see. A hidden match
    counts as no match: answering "it exists" (200 with its body, or a refusal only a
    match causes) would show or betray what the caller may not see, so the caller gets
    what no match gets. The caller's write check has run before this (R4 3.1.0.8)."""
    if not ctx.interceptors.interceptors:
        return conditional_matches(ctx, rtype, query, where)
    search = _conditional_search(ctx, rtype, query, where).query
    search.limit = LOOKAHEAD
    out: list[StoredVersion] = []
    while True:  # past hidden rows, in keyset order, until two visible ones or the end
        found = ctx.repository.find(search, session=ctx.session)
        out += [row for row in found.rows if visible(ctx, req, row) is not None]
        if len(out) >= 2 or len(found.rows) < LOOKAHEAD:
            return out[:2]
        search.after = found.keys[-1]


def check_write(ctx: FhirContext, req: FhirRequest, resource: dict[str, Any],
                rid: str | None) -> None:
    """Let interceptors judge a write by what the store holds, just before it is made and
    inside its session, so what earlier entries of the same transaction wrote counts (their
    on_request runs before any entry is written): the `before_write` hook."""
    ctx.interceptors.before_write(req, resource, rid, ctx.session)


# -- instance level ---------------------------------------------------------------------


def read(ctx: FhirContext, req: FhirRequest, rtype: str, rid: str) -> FhirResponse:
    return _shown_raw(req, read_visible(ctx, req, rtype, require_id(rid)))


def vread(ctx: FhirContext, req: FhirRequest, rtype: str, rid: str, vid: str) -> FhirResponse:
    require_id(rid)
    version = parse_version(vid)
    try:
        stored = ctx.repository.vread(rtype, rid, version, session=ctx.session)
    except Gone:  # a tombstone is judged by what it deleted, as history judges it
        if not ctx.interceptors.interceptors or _deletion_visible(
                ctx, req, rtype, rid, version, resource_now(ctx, rtype, rid, version)):
            raise
        raise _no_version(ctx, req, rtype, rid, version) from None
    except NotFound:
        raise _no_version(ctx, req, rtype, rid, version) from None
    # an old version is judged with the resource as it is now (CURRENT_VERSION); hidden,
    # it answers as a version (or, when the resource is hidden too, a resource) not there
    if ctx.interceptors.interceptors and visible(
            ctx, req, stored, resource_now(ctx, rtype, rid, version)) is None:
        raise _no_version(ctx, req, rtype, rid, version)
    return _shown_raw(req, stored)


def _no_version(ctx: FhirContext, req: FhirRequest, rtype: str, rid: str,
                version: int) -> NotFound:
    """A version missing or hidden: "has no version N" only to a caller who may know the
    resource exists; anyone else hears what a resource that is not there gets."""
    if _may_know_of(ctx, req, ctx.repository.current(rtype, rid, session=ctx.session)):
        return NotFound(f"{rtype}/{rid} has no version {version}", expression=rtype)
    return unknown(rtype, rid)


def update(ctx: FhirContext, req: FhirRequest, rtype: str, rid: str) -> FhirResponse:
    resource = check_resource(req.body, expected_type=rtype)
    require_id(rid)
    if "id" not in resource:
        raise BadRequest(f"the {rtype} in the body has no id; an update must carry id {rid!r}",
                         expression=f"{rtype}.id")
    if resource["id"] != rid:
        raise BadRequest(f"the body's id {resource['id']!r} does not match the URL's {rid!r}",
                         expression=f"{rtype}.id")
    check_write(ctx, req, resource, rid)
    result = ctx.repository.update(resource, rtype=rtype, rid=rid,
                                   if_match=parse_if_match(req.header("if-match")),
                                   session=ctx.session, base_url=req.base_url)
    return write_response(ctx, req, result)


def delete(ctx: FhirContext, req: FhirRequest, rtype: str, rid: str) -> FhirResponse:
    result = ctx.repository.delete(rtype, require_id(rid),
                                   if_match=parse_if_match(req.header("if-match")),
                                   session=ctx.session)
    headers = {"ETag": etag(result.stored.version)} if result else {}
    # R4 3.1.0.7.1: deleting something absent or already deleted is still a success.
    return FhirResponse(204, headers=headers)


def history_instance(ctx: FhirContext, req: FhirRequest, rtype: str, rid: str) -> FhirResponse:
    require_id(rid)
    # an empty history would say "it exists, but not for you": 404, as for no resource
    if not _may_know_of(ctx, req, ctx.repository.current(rtype, rid, session=ctx.session)):
        raise unknown(rtype, rid)
    return _history(ctx, req, rtype, rid)


# -- type level -------------------------------------------------------------------------


def create(ctx: FhirContext, req: FhirRequest, rtype: str) -> FhirResponse:
    resource = check_resource(req.body, expected_type=rtype)
    if TRANSACTION_MATCH in req.state:  # a transaction judged the condition up front
        matched = req.state[TRANSACTION_MATCH]
        if matched is not None:
            return write_response(ctx, req, WriteResult(matched, created=False, changed=False))
    elif (condition := req.header("if-none-exist")) is not None:
        require_criteria(req, rtype, condition, "If-None-Exist")
        found = visible_matches(ctx, req, rtype, condition, "If-None-Exist")
        if len(found) > 1:
            raise PreconditionFailed(
                f"If-None-Exist {condition!r} matches more than one {rtype}")
        if found:
            return write_response(ctx, req, WriteResult(found[0], created=False, changed=False))
    resource = {k: v for k, v in resource.items() if k != "id"}  # the server assigns ids
    # A transaction pre-assigns ids so `urn:uuid:` references can be rewritten first.
    check_write(ctx, req, resource, req.state.get("assigned_id"))
    result = ctx.repository.create(resource, session=ctx.session,
                                   rid=req.state.get("assigned_id"), base_url=req.base_url)
    return write_response(ctx, req, result)


def conditional_update(ctx: FhirContext, req: FhirRequest, rtype: str) -> FhirResponse:
    resource = check_resource(req.body, expected_type=rtype)
    require_criteria(req, rtype, req.params, "conditional update")
    if TRANSACTION_UPDATE in req.state:  # a transaction judged the condition up front
        decided = req.state[TRANSACTION_UPDATE]
        found_ids = [decided] if decided is not None else []
    else:
        found_ids = [r.rid for r in conditional_matches(ctx, rtype, req.params,
                                                        "conditional update")]
    if len(found_ids) > 1:
        raise PreconditionFailed(f"the conditional update matches more than one {rtype}")
    if_match = parse_if_match(req.header("if-match"))
    if not found_ids and if_match is not None:
        # as an update of an absent id: the version the client means is not there
        raise PreconditionFailed(f"If-Match asked for version {if_match}, but the conditional "
                                 f"update matches no {rtype}")
    if found_ids:
        rid = found_ids[0]
        if resource.get("id", rid) != rid:
            raise BadRequest(f"the body's id {resource['id']!r} is not the matched {rtype}/{rid}",
                             expression=f"{rtype}.id")
    elif "id" in resource:  # no match: create, keeping the client's id (update-as-create)
        rid = require_id(resource["id"])
        current = ctx.repository.current(rtype, rid, session=ctx.session)
        if current is not None and not current.deleted:
            # the id is another record's, one the criteria did not match: updating it
            # would put this record over that one (R5 spells this out; HAPI refuses it)
            raise Conflict(f"the conditional update matches no {rtype}, but the body's id "
                           f"{rid!r} is that of an existing {rtype}; leave the id out to "
                           "create, or correct the criteria", expression=f"{rtype}.id")
    else:  # no match and no id: an ordinary create (a transaction may have given its id)
        check_write(ctx, req, resource, req.state.get("assigned_id"))
        return write_response(ctx, req, ctx.repository.create(
            resource, session=ctx.session, rid=req.state.get("assigned_id"),
            base_url=req.base_url))
    check_write(ctx, req, {**resource, "id": rid}, rid)
    result = ctx.repository.update({**resource, "id": rid}, rtype=rtype, rid=rid,
                                   if_match=if_match, session=ctx.session,
                                   base_url=req.base_url)
    return write_response(ctx, req, result)


def conditional_delete(ctx: FhirContext, req: FhirRequest, rtype: str) -> FhirResponse:
    require_criteria(req, rtype, req.params, "conditional delete")
    found = conditional_matches(ctx, rtype, req.params, "conditional delete")
    if len(found) > 1:
        raise PreconditionFailed(f"the conditional delete matches more than one {rtype}")
    if_match = parse_if_match(req.header("if-match"))
    if found:
        ctx.repository.delete(rtype, found[0].rid, if_match=if_match, session=ctx.session)
    elif if_match is not None:
        raise PreconditionFailed(f"If-Match asked for version {if_match}, but the conditional "
                                 f"delete matches no {rtype}")
    return FhirResponse(204)


def history_type(ctx: FhirContext, req: FhirRequest, rtype: str) -> FhirResponse:
    return _history(ctx, req, rtype, None)


def history_system(ctx: FhirContext, req: FhirRequest) -> FhirResponse:
    return _history(ctx, req, None, None)


# -- bundles of results -----------------------------------------------------------------


def _page_size(req: FhirRequest) -> int:
    raw = dict(req.params).get("_count", "50")
    count = whole_number(raw)
    if count is None:
        raise BadRequest(f"_count must be a whole number, not {raw[:40]!r}",
                         expression="_count")
    return max(1, min(count, 1000))


def _history(ctx: FhirContext, req: FhirRequest, rtype: str | None,
             rid: str | None) -> FhirResponse:
    params = dict(req.params)
    since = None
    if "_since" in params:
        try:
            since = date_range(params["_since"])[0] + "Z"
        except ValueError as exc:
            raise BadRequest(f"_since: {exc}", expression="_since") from exc
    unknown = set(params) - {"_since", "_count", "_cursor", "_format", "_pretty"}
    if unknown and strict(req):
        raise BadRequest(f"history does not support {', '.join(sorted(unknown))}",
                         code="not-supported")
    def rows(cursor: str | None, limit: int) -> HistoryPage:
        try:
            return ctx.repository.history(rtype=rtype, rid=rid, since=since, cursor=cursor,
                                          limit=limit)
        except BadCursor as exc:
            raise BadRequest(str(exc), expression="_cursor") from exc

    entries, next_cursor = _history_page(ctx, req, rows, params.get("_cursor"),
                                         _page_size(req))
    path = "/".join(p for p in (rtype, rid) if p)
    self_url = f"{req.base_url}/{path + '/' if path else ''}_history"
    links = [{"relation": "self", "url": _with_query(self_url, req.params)}]
    if next_cursor:
        links.append({"relation": "next", "url": _with_query(
            self_url, [*[(k, v) for k, v in req.params if k != "_cursor"],
                       ("_cursor", next_cursor)])})
    return FhirResponse(200, {"resourceType": "Bundle", "type": "history",
                              "link": links, "entry": entries})


def history_types(ctx: FhirContext, req: FhirRequest) -> frozenset[str] | None:
    """The resource types history may ever show this caller (None: any), as the
    interceptors say (the `history_types` hook): versions of the others are passed over
    unread, never judged one by one."""
    return ctx.interceptors.history_types(req)


def _history_page(ctx: FhirContext, req: FhirRequest,
                  rows: Callable[[str | None, int], HistoryPage], cursor: str | None,
                  count: int) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `count` entries the caller may see, refilled past hidden versions, and the
    cursor of the next page: only when a visible version follows, since a link to an
    empty page would say that hidden versions exist.

    Past hidden versions the store is read in batches (LOOKAHEAD, doubling while a batch
    shows nothing, up to MAX_HISTORY_BATCH), so the number of queries grows with the page,
    not with the hidden versions. The store's cursor is opaque (a position after the last
    version it returned): when a batch holds a version to show after the page is full,
    the next page starts after the last version shown (`history_cursor`; reading the
    batch again for it could meet versions written since, where a store keeps no read
    snapshot, and list one twice)."""
    if not ctx.interceptors.interceptors:  # nothing is hidden: the store's page is the page
        page = rows(cursor, count)
        nows: Nows = {}
        return [e for v in page.versions
                if (e := _history_entry(ctx, req, v, nows)) is not None], page.next_cursor
    types = history_types(ctx, req)
    entries: list[dict[str, Any]] = []
    nows = {}
    start, batch = cursor, LOOKAHEAD
    resume: str | None = None  # where the next page starts, once this one is full
    last_shown: StoredVersion | None = None
    while True:
        page = rows(start, max(count - len(entries), batch))
        shown_before = len(entries)
        for v in page.versions:
            if types is not None and v.rtype not in types:
                continue  # a type the caller never sees: not worth judging
            if len(entries) < count:
                entry = _history_entry(ctx, req, v, nows)
                if entry is not None:
                    entries.append(entry)
                    last_shown = v
            elif _would_show(ctx, req, v, nows):
                # the page is full and a version the caller would see follows
                assert last_shown is not None  # count >= 1, so the page holds one
                return entries, resume if resume is not None else history_cursor(last_shown)
        if page.next_cursor is None:
            return entries, None
        if len(entries) == count and resume is None:
            resume = page.next_cursor  # what the batch held past the page was all hidden
        if len(entries) == shown_before:
            batch = min(batch * 2, MAX_HISTORY_BATCH)
        start = page.next_cursor


def _history_entry(ctx: FhirContext, req: FhirRequest, v: StoredVersion,
                   nows: Nows) -> dict[str, Any] | None:
    """The Bundle entry for one version, or None when the caller may not see it (an old
    version judged with the resource as it is now, `nows` keeping that per resource)."""
    url = f"{v.rtype}/{v.rid}"
    entry: dict[str, Any] = {"fullUrl": f"{req.base_url}/{url}"}
    hiding = bool(ctx.interceptors.interceptors)
    now = resource_now(ctx, v.rtype, v.rid, v.version, nows) if hiding else None
    if v.deleted:
        if hiding and not _deletion_visible(ctx, req, v.rtype, v.rid, v.version, now):
            return None  # a tombstone would reveal the id of something hidden
        entry["request"] = {"method": "DELETE", "url": url}
        entry["response"] = {"status": "410 Gone", "etag": etag(v.version)}
        return entry
    resource = visible(ctx, req, v, now)
    if resource is None:
        return None
    entry["resource"] = resource
    entry["request"] = {"method": "POST" if v.version == 1 else "PUT",
                        "url": url if v.version > 1 else v.rtype}
    entry["response"] = {"status": "201 Created" if v.version == 1 else "200 OK",
                         "etag": etag(v.version), "lastModified": v.last_updated}
    return entry


@contextmanager
def _unnoted(req: FhirRequest) -> Iterator[None]:
    """Interceptors note on the request what they let through (the patients an audit
    records, a consent override); what is judged here is not shown, so their notes are put
    back as they were."""
    before = {k: copy.copy(v) for k, v in req.state.items()}
    try:
        yield
    finally:
        req.state.clear()
        req.state.update(before)


def _would_show(ctx: FhirContext, req: FhirRequest, v: StoredVersion, nows: Nows) -> bool:
    """Whether history would list a version it is not listing (one after a full page)."""
    with _unnoted(req):
        return _history_entry(ctx, req, v, nows) is not None


def would_see(ctx: FhirContext, req: FhirRequest, stored: StoredVersion) -> bool:
    """Whether the caller may see a version it is not being shown (one after a full page,
    to decide on a `next` link), leaving no note of it on the request."""
    if not ctx.interceptors.interceptors:
        return True
    with _unnoted(req):
        if stored.deleted:
            return _deletion_visible(ctx, req, stored.rtype, stored.rid, stored.version)
        return visible(ctx, req, stored) is not None


def _deletion_visible(ctx: FhirContext, req: FhirRequest, rtype: str, rid: str,
                      version: int, now: dict[str, Any] | None = None) -> bool:
    """May the caller know of the deletion that is `version`? Only if it may see what was
    deleted (the version before the tombstone; judged with `now`, the resource as it is
    now, when the deletion is not the latest word)."""
    if version <= 1:
        return False
    try:
        previous = ctx.repository.vread(rtype, rid, version - 1, session=ctx.session)
    except (NotFound, Gone):  # deleted twice in a row: look no further back
        return False
    return visible(ctx, req, previous, now) is not None


def _with_query(url: str, params: list[tuple[str, str]]) -> str:
    return f"{url}?{urlencode(params)}" if params else url
