"""Search results as a `searchset` Bundle: paging, includes, subsetting, totals; $everything.

Paging is keyset paging: the `next` link carries the sort key of the last row, and ties
are broken by (type, id), which updates never change; so while data changes a page never
repeats or skips a resource that exists throughout. Visibility is
decided before a page is cut: hidden resources are skipped and the page is refilled, so
pages keep their size, and a `next` link is offered only when a visible match follows (a
link to an empty page would betray hidden matches). Includes are bounded (depth and
count) and each included resource passes the same visibility check as a match.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

from ..errors import BadRequest, UnsupportedMediaType
from ..references import literal_reference
from ..search.query import Include, SearchRequest, parse_search
from ..search.values import date_range, whole_number
from ..store.base import StoredVersion
from ..store.cursor import BadCursor, decode_cursor, encode_cursor
from ..store.query import Criterion, IndexQuery, ReferencePredicate
from .interactions import (
    LOOKAHEAD,
    SEARCH_MODE,
    FhirContext,
    read_visible,
    strict,
    visible,
    would_see,
)
from .request import FhirRequest, FhirResponse
from .subsetting import select_elements, summarize
from .types import is_resource_type

MAX_INCLUDE_DEPTH = 3
MAX_INCLUDED = 1000
#: rows a `_revinclude` parameter reads at most, past hidden ones, as a multiple of
#: MAX_INCLUDED + 1 (one batch); reaching it marks the result capped, never silently
REVINCLUDE_BATCHES = 5
#: A local reference (R4 3.1.1.4.12); another server's resources are never included.


def search_type(ctx: FhirContext, req: FhirRequest, rtype: str) -> FhirResponse:
    params = list(req.params)
    if req.method == "POST" and isinstance(req.body, str):  # _search, form body (3.1.0.9)
        params += parse_qsl(req.body, keep_blank_values=True)
    elif req.method == "POST" and req.body is not None:
        # criteria sent as JSON would be ignored, and the search widened to everyone
        raise UnsupportedMediaType("POST _search takes its criteria as a form body "
                                   "(Content-Type: application/x-www-form-urlencoded), "
                                   "not JSON")
    search = parse_search(rtype, params, ctx.repository.registry, strict=strict(req),
                          base_url=req.base_url)
    return FhirResponse(200, searchset(ctx, req, search, search.used,
                                       f"{req.base_url}/{rtype}"))


def everything(ctx: FhirContext, req: FhirRequest, rtype: str, rid: str) -> FhirResponse:
    """Patient/{id}/$everything: the Patient's compartment, every partner's resources."""
    read_visible(ctx, req, rtype, rid)  # hidden, absent or deleted: as read answers
    query = IndexQuery(rtype=None, compartment=rid)
    search = SearchRequest(query=query)
    unknown = []
    for name, value in req.params:
        if name == "_since":
            try:
                query.since = date_range(value)[0] + "Z"
            except ValueError as exc:
                raise BadRequest(f"_since: {exc}", expression="_since") from exc
        elif name == "_type":
            types = [t.strip() for t in value.split(",") if t.strip()]
            bad = [t for t in types if not is_resource_type(t)]
            if bad:
                raise BadRequest(f"_type: {', '.join(bad)} are not resource types",
                                 expression="_type")
            query.types = types
        elif name == "_count":
            count = whole_number(value)
            if count is None:
                raise BadRequest(f"_count must be a whole number, not {value[:40]!r}",
                                 expression="_count")
            search.count = max(1, min(count, 1000))
        elif name == "_cursor":
            search.cursor = value
        elif name not in ("_format", "_pretty"):
            unknown.append(name)
    if unknown and strict(req):
        raise BadRequest(f"$everything does not support {', '.join(unknown)}",
                         code="not-supported")
    used = [(k, v) for k, v in req.params if k in ("_since", "_type", "_count")]
    bundle = searchset(ctx, req, search, used, f"{req.base_url}/{rtype}/{rid}/$everything")
    return FhirResponse(200, bundle)


def searchset(ctx: FhirContext, req: FhirRequest, search: SearchRequest,
              params: list[tuple[str, str]], self_url: str) -> dict[str, Any]:
    query = search.query
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    links = [{"relation": "self", "url": _with_query(self_url, params)}]
    if search.summary == "count":
        bundle["total"] = ctx.repository.count(query, session=ctx.session)
        bundle["link"] = links
        return bundle
    if search.cursor:
        query.after = _decode(search.cursor, len(query.sort) + 2)
    matches, more, last_key = _page(ctx, req, query, search.count)
    if more and last_key is not None:
        kept = [(k, v) for k, v in params if k != "_cursor"]
        links.append({"relation": "next", "url": _with_query(
            self_url, [*kept, ("_cursor", encode_cursor(*last_key))])})
    bundle["link"] = links
    if search.total == "accurate" or search.total == "estimate":
        bundle["total"] = ctx.repository.count(query_without_paging(query),
                                               session=ctx.session)
    elif search.total is None and not search.cursor and not more:
        bundle["total"] = len(matches)
    entries = [_entry(req, r, "match", search) for r in matches]
    included, capped = _includes(ctx, req, matches, search)
    entries += [_entry(req, r, "include", search) for r in included]
    if capped:
        search.ignored.append(f"not every resource to include is here (at most "
                              f"{MAX_INCLUDED}, and a bounded number of rows read for "
                              "each _revinclude); the rest were left out")
    if search.ignored:
        entries.append({"resource": {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "warning", "code": "not-supported", "diagnostics": msg}
                      for msg in search.ignored]}, "search": {"mode": "outcome"}})
    bundle["entry"] = entries
    return bundle


def query_without_paging(query: IndexQuery) -> IndexQuery:
    return IndexQuery(rtype=query.rtype, criteria=query.criteria, ids=query.ids,
                      compartment=query.compartment, types=query.types, since=query.since)


def _decode(cursor: str, width: int) -> tuple[object, ...]:
    try:
        key = decode_cursor(cursor)
    except BadCursor as exc:
        raise BadRequest(str(exc), expression="_cursor") from exc
    if len(key) != width:
        raise BadRequest("_cursor does not belong to this search", expression="_cursor")
    return tuple(key)


def _page(ctx: FhirContext, req: FhirRequest, query: IndexQuery,
          count: int) -> tuple[list[dict[str, Any]], bool, tuple[object, ...] | None]:
    """One page of visible matches, refilled past hidden ones; (rows, more?, last key).

    "More" (a `next` link, and no total) means a *visible* match follows the page: a
    hidden one must not count, or the link itself would say that hidden matches exist.
    The cursor is the last shown row's key, so the next page starts right after it."""
    out: list[dict[str, Any]] = []
    last_key = None
    while True:
        # one row past the page tells "more" when it is visible; past hidden rows, read
        # a batch at a time so a run of them costs few queries
        query.limit = count - len(out) + 1 if len(out) < count else LOOKAHEAD
        found = ctx.repository.find(query, session=ctx.session)
        for stored, key in zip(found.rows, found.keys, strict=True):
            if len(out) == count:
                if would_see(ctx, req, stored):
                    return out, True, last_key
                continue
            resource = visible(ctx, req, stored)
            if resource is not None:  # a cursor never carries a hidden row's id or values
                out.append(resource)
                last_key = key
        if len(found.rows) < (query.limit or 0):
            return out, False, last_key
        query.after = found.keys[-1]


def _entry(req: FhirRequest, resource: dict[str, Any], mode: str,
           search: SearchRequest) -> dict[str, Any]:
    # R4 3.1.1.5.9: _elements does not apply to included resources; nor does _summary here.
    if mode == "match" and search.elements is not None:
        resource = select_elements(resource, search.elements)
    elif mode == "match" and search.summary is not None:
        resource = summarize(resource, search.summary)
    return {"fullUrl": f"{req.base_url}/{resource['resourceType']}/{resource.get('id')}",
            "resource": resource, "search": {"mode": mode}}


def _reference_params(ctx: FhirContext, inc: Include) -> list[str]:
    if inc.param != "*":
        return [inc.param]
    return [c for c, p in ctx.repository.registry.params(inc.source_type).items()
            if p.type == "reference" and p.indexed]


def _includes(ctx: FhirContext, req: FhirRequest, matches: list[dict[str, Any]],
              search: SearchRequest) -> tuple[list[dict[str, Any]], bool]:
    """The resources to include that the caller may see, and whether some were left out
    (more than MAX_INCLUDED, or more referencing rows than a `_revinclude` reads)."""
    if not search.includes and not search.revincludes:
        return [], False
    # judged as includes: what selected the matches (a chain, `_has`) is not theirs to meet
    mode = req.state.get(SEARCH_MODE)
    req.state[SEARCH_MODE] = "include"
    try:
        return _included(ctx, req, matches, search)
    finally:
        if mode is None:
            req.state.pop(SEARCH_MODE, None)
        else:
            req.state[SEARCH_MODE] = mode


class _Collector:
    """The included resources found at one depth: each judged once, at most `room`."""

    def __init__(self, ctx: FhirContext, req: FhirRequest, seen: set[tuple[str, str]],
                 room: int) -> None:
        self.ctx, self.req, self.seen, self.room = ctx, req, seen, room
        self.new: list[dict[str, Any]] = []
        self.capped = False

    def offer(self, stored: StoredVersion) -> bool:
        """Take a row if the caller may see it; False once there is no more room."""
        if (stored.rtype, stored.rid) not in self.seen:
            self.seen.add((stored.rtype, stored.rid))
            resource = visible(self.ctx, self.req, stored)
            if resource is not None:
                self.new.append(resource)
                if len(self.new) >= self.room:
                    self.capped = True
        return not self.capped


def _included(ctx: FhirContext, req: FhirRequest, matches: list[dict[str, Any]],
              search: SearchRequest) -> tuple[list[dict[str, Any]], bool]:
    seen = {(r["resourceType"], r.get("id")) for r in matches}
    frontier = matches
    included: list[dict[str, Any]] = []
    capped = False
    for depth in range(MAX_INCLUDE_DEPTH):
        includes = [i for i in search.includes if depth == 0 or i.iterate]
        revincludes = [i for i in search.revincludes if depth == 0 or i.iterate]
        if not (includes or revincludes) or not frontier:
            break
        found = _Collector(ctx, req, seen, MAX_INCLUDED - len(included))
        for inc in includes:
            if not all(found.offer(stored) for stored in _forward(ctx, req, inc, frontier)):
                break
        for inc in revincludes:
            if found.capped:
                break
            capped |= _reverse(ctx, inc, frontier, found)
        if found.capped:
            return included + found.new, True
        included += found.new
        frontier = found.new
    return included, capped


def _forward(ctx: FhirContext, req: FhirRequest, inc: Include,
             frontier: list[dict[str, Any]]) -> list[StoredVersion]:
    registry = ctx.repository.registry
    targets: dict[str, set[str]] = {}
    for resource in frontier:
        if resource["resourceType"] != inc.source_type:
            continue
        for code in _reference_params(ctx, inc):
            param = registry.get(inc.source_type, code)
            if param is None:
                continue
            for node in param.evaluate(resource):
                ref = node.get("reference") if isinstance(node, dict) else node
                if isinstance(ref, str) and req.base_url and ref.startswith(req.base_url + "/"):
                    ref = ref[len(req.base_url) + 1:]
                named = literal_reference(ref)
                if named is not None and named.relative and named.has_fhir_id \
                        and inc.target_type in (None, named.type):
                    targets.setdefault(named.type, set()).add(named.id)
    out: list[StoredVersion] = []
    for rtype, ids in targets.items():
        if is_resource_type(rtype):
            out += ctx.repository.find(IndexQuery(rtype=rtype, ids=sorted(ids)),
                                       session=ctx.session).rows
    return out


def _reverse(ctx: FhirContext, inc: Include, frontier: list[dict[str, Any]],
             found: _Collector) -> bool:
    """Offer the resources referring to the frontier, paging past rows the caller may not
    see (judged only after they are read) so they never crowd out visible ones; True when
    the rows read reached their bound with more left, so the answer says it is capped."""
    preds = [ReferencePredicate(r["resourceType"], r["id"]) for r in frontier
             if inc.target_type is None or r["resourceType"] == inc.target_type]
    if not preds:
        return False
    batch = MAX_INCLUDED + 1
    for code in _reference_params(ctx, inc):
        query = IndexQuery(rtype=inc.source_type,
                           criteria=[Criterion(code, "reference", list(preds))], limit=batch)
        for _ in range(REVINCLUDE_BATCHES):
            rows = ctx.repository.find(query, session=ctx.session)
            if not all(found.offer(stored) for stored in rows.rows):
                return False  # full: the collector says capped
            if len(rows.rows) < batch:
                break
            query.after = rows.keys[-1]
        else:
            return True  # a run of rows the caller may not see was cut off here
    return False


def _with_query(url: str, params: list[tuple[str, str]]) -> str:
    return f"{url}?{urlencode(params)}" if params else url
