"""The RESTful interactions (R4 3.1.0), each a small function over the repository.

Every function takes the `FhirContext` (repository + interceptors), the request and the
matched route values, and returns a `FhirResponse`. None of them knows about HTTP
frameworks; `api/` translates, and `bundles.py` calls the same functions per entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from .. import jsonio
from ..errors import BadRequest, Gone, NotFound, PreconditionFailed, information
from ..search.query import parse_search
from ..search.values import date_range
from ..store.base import StoredVersion, StoreSession
from ..store.cursor import BadCursor
from .interceptors import InterceptorChain
from .repository import Repository, WriteResult
from .request import FhirRequest, FhirResponse
from .validation import check_resource, is_valid_id


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
    from datetime import UTC, datetime

    dt = datetime.strptime(date_range(instant)[0], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
    return format_datetime(dt, usegmt=True)


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
    text = text.strip('"')
    if not text.isdigit():
        raise BadRequest(f'If-Match {value!r} is not a version ETag like W/"3"',
                         expression="If-Match")
    return int(text)


def parse_version(value: str) -> int:
    if not value.isdigit():
        raise NotFound(f"version {value!r} is not a version number")
    return int(value)


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


def visible(ctx: FhirContext, req: FhirRequest, stored: StoredVersion) -> dict[str, Any] | None:
    """The resource, if the interceptors let this caller see it."""
    if stored.body is None:
        return None
    resource = jsonio.loads_trusted(stored.body)
    return resource if ctx.interceptors.can_see(req, resource) else None


def _shown_raw(ctx: FhirContext, req: FhirRequest, stored: StoredVersion) -> FhirResponse:
    if ctx.interceptors.interceptors and visible(ctx, req, stored) is None:
        raise NotFound(f"{stored.rtype}/{stored.rid} is not known")  # hidden looks absent
    return FhirResponse(200, raw=stored.body, headers=version_headers(stored, req.base_url))


def conditional_matches(ctx: FhirContext, rtype: str, query: str | list[tuple[str, str]],
                        where: str) -> list[StoredVersion]:
    params = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else query
    params = [(k, v) for k, v in params if k not in ("_format", "_pretty")]
    if not params:
        raise BadRequest(f"{where} has no search criteria", expression=where)
    search = parse_search(rtype, params, ctx.repository.registry, strict=True)
    search.query.limit = 2
    return ctx.repository.search(search, session=ctx.session)


# -- instance level ---------------------------------------------------------------------


def read(ctx: FhirContext, req: FhirRequest, rtype: str, rid: str) -> FhirResponse:
    stored = ctx.repository.read(rtype, require_id(rid), session=ctx.session)
    return _shown_raw(ctx, req, stored)


def vread(ctx: FhirContext, req: FhirRequest, rtype: str, rid: str, vid: str) -> FhirResponse:
    stored = ctx.repository.vread(rtype, require_id(rid), parse_version(vid),
                                  session=ctx.session)
    return _shown_raw(ctx, req, stored)


def update(ctx: FhirContext, req: FhirRequest, rtype: str, rid: str) -> FhirResponse:
    resource = check_resource(req.body, expected_type=rtype)
    require_id(rid)
    if "id" not in resource:
        raise BadRequest(f"the {rtype} in the body has no id; an update must carry id {rid!r}",
                         expression=f"{rtype}.id")
    if resource["id"] != rid:
        raise BadRequest(f"the body's id {resource['id']!r} does not match the URL's {rid!r}",
                         expression=f"{rtype}.id")
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
    return _history(ctx, req, rtype, require_id(rid))


# -- type level -------------------------------------------------------------------------


def create(ctx: FhirContext, req: FhirRequest, rtype: str) -> FhirResponse:
    resource = check_resource(req.body, expected_type=rtype)
    condition = req.header("if-none-exist")
    if condition is not None:
        found = conditional_matches(ctx, rtype, condition, "If-None-Exist")
        if len(found) > 1:
            raise PreconditionFailed(
                f"If-None-Exist {condition!r} matches more than one {rtype}")
        if found:
            return write_response(ctx, req, WriteResult(found[0], created=False, changed=False))
    resource = {k: v for k, v in resource.items() if k != "id"}  # the server assigns ids
    # A transaction pre-assigns ids so `urn:uuid:` references can be rewritten first.
    result = ctx.repository.create(resource, session=ctx.session,
                                   rid=req.state.get("assigned_id"), base_url=req.base_url)
    return write_response(ctx, req, result)


def conditional_update(ctx: FhirContext, req: FhirRequest, rtype: str) -> FhirResponse:
    resource = check_resource(req.body, expected_type=rtype)
    found = conditional_matches(ctx, rtype, req.params, "conditional update")
    if len(found) > 1:
        raise PreconditionFailed(f"the conditional update matches more than one {rtype}")
    if found:
        rid = found[0].rid
        if resource.get("id", rid) != rid:
            raise BadRequest(f"the body's id {resource['id']!r} is not the matched {rtype}/{rid}",
                             expression=f"{rtype}.id")
    elif "id" in resource:  # no match: create, keeping the client's id (update-as-create)
        rid = require_id(resource["id"])
    else:  # no match and no id: an ordinary create
        return write_response(ctx, req, ctx.repository.create(
            resource, session=ctx.session, base_url=req.base_url))
    result = ctx.repository.update({**resource, "id": rid}, rtype=rtype, rid=rid,
                                   if_match=parse_if_match(req.header("if-match")),
                                   session=ctx.session, base_url=req.base_url)
    return write_response(ctx, req, result)


def conditional_delete(ctx: FhirContext, req: FhirRequest, rtype: str) -> FhirResponse:
    found = conditional_matches(ctx, rtype, req.params, "conditional delete")
    if len(found) > 1:
        raise PreconditionFailed(f"the conditional delete matches more than one {rtype}")
    if found:
        ctx.repository.delete(rtype, found[0].rid, session=ctx.session)
    return FhirResponse(204)


def history_type(ctx: FhirContext, req: FhirRequest, rtype: str) -> FhirResponse:
    return _history(ctx, req, rtype, None)


def history_system(ctx: FhirContext, req: FhirRequest) -> FhirResponse:
    return _history(ctx, req, None, None)


# -- bundles of results -----------------------------------------------------------------


def _page_size(req: FhirRequest) -> int:
    raw = dict(req.params).get("_count", "50")
    if not raw.isdigit():
        raise BadRequest(f"_count must be a whole number, not {raw!r}", expression="_count")
    return max(1, min(int(raw), 1000))


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
    try:
        page = ctx.repository.history(rtype=rtype, rid=rid, since=since,
                                      cursor=params.get("_cursor"), limit=_page_size(req))
    except BadCursor as exc:
        raise BadRequest(str(exc), expression="_cursor") from exc
    entries = []
    for v in page.versions:
        url = f"{v.rtype}/{v.rid}"
        entry: dict[str, Any] = {"fullUrl": f"{req.base_url}/{url}"}
        if v.deleted:
            if ctx.interceptors.interceptors and not _deleted_visible(ctx, req, v):
                continue  # a tombstone would reveal the id of something hidden
            entry["request"] = {"method": "DELETE", "url": url}
            entry["response"] = {"status": "410 Gone", "etag": etag(v.version)}
        else:
            resource = visible(ctx, req, v)
            if resource is None:
                continue
            entry["resource"] = resource
            entry["request"] = {"method": "POST" if v.version == 1 else "PUT",
                                "url": url if v.version > 1 else v.rtype}
            entry["response"] = {"status": "201 Created" if v.version == 1 else "200 OK",
                                 "etag": etag(v.version), "lastModified": v.last_updated}
        entries.append(entry)
    path = "/".join(p for p in (rtype, rid) if p)
    self_url = f"{req.base_url}/{path + '/' if path else ''}_history"
    links = [{"relation": "self", "url": _with_query(self_url, req.params)}]
    if page.next_cursor:
        links.append({"relation": "next", "url": _with_query(
            self_url, [*[(k, v) for k, v in req.params if k != "_cursor"],
                       ("_cursor", page.next_cursor)])})
    return FhirResponse(200, {"resourceType": "Bundle", "type": "history",
                              "link": links, "entry": entries})


def _deleted_visible(ctx: FhirContext, req: FhirRequest, tombstone: StoredVersion) -> bool:
    """May the caller know of this deletion? Only if it may see what was deleted (the
    version before the tombstone)."""
    if tombstone.version <= 1:
        return False
    try:
        previous = ctx.repository.vread(tombstone.rtype, tombstone.rid,
                                        tombstone.version - 1, session=ctx.session)
    except (NotFound, Gone):  # deleted twice in a row: look no further back
        return False
    return visible(ctx, req, previous) is not None


def _with_query(url: str, params: list[tuple[str, str]]) -> str:
    return f"{url}?{urlencode(params)}" if params else url
