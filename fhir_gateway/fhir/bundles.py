"""Batch and transaction Bundles (R4 3.1.0.11).

A batch runs each entry on its own; one failing entry gets its own OperationOutcome and
the rest go on. A transaction is all or nothing: ids for `POST` entries are assigned
first, `urn:uuid:` references are rewritten to them, and the entries run in the order
the specification gives (DELETE, POST, PUT/PATCH, GET/HEAD) inside one store
transaction; the first failure rolls everything back and is reported with its entry.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .. import jsonio
from ..errors import BadRequest, Conflict, GatewayError, Issue, PreconditionFailed
from ..store.base import StoredVersion, VersionConflict
from .interactions import TRANSACTION_MATCH, FhirContext, visible_matches
from .repository import new_id
from .request import FhirRequest, FhirResponse
from .validation import check_resource

if TYPE_CHECKING:
    from .router import FhirRouter

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
MAX_ENTRIES = 10_000
TRANSACTION_ATTEMPTS = 10

STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}


def batch_or_transaction(ctx: FhirContext, req: FhirRequest, router: FhirRouter) -> FhirResponse:
    bundle = check_resource(req.body, expected_type="Bundle", model=False)
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise BadRequest(f"a Bundle posted to the base must be a batch or transaction, "
                         f"not {kind!r}", expression="Bundle.type")
    entries = bundle.get("entry") or []
    if len(entries) > MAX_ENTRIES:
        raise BadRequest(f"{len(entries)} entries; at most {MAX_ENTRIES} per Bundle",
                         code="too-costly")
    if kind == "batch":
        return _batch(router, [_entry_request(req, e, i) for i, e in enumerate(entries)])
    return _transaction(ctx, router, req, entries)


def _entry_request(parent: FhirRequest, entry: Any, index: int) -> FhirRequest:
    where = f"Bundle.entry[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        raise BadRequest(f"{where} has no request", expression=f"{where}.request")
    r = entry["request"]
    method, url = r.get("method"), r.get("url")
    if method not in _ORDER or not isinstance(url, str) or not url:
        raise BadRequest(f"{where}.request needs a method ({', '.join(_ORDER)}) and a url",
                         expression=f"{where}.request")
    parts = urlsplit(url)
    path = parts.path
    if parent.base_url and url.startswith(parent.base_url):
        path = urlsplit(url[len(parent.base_url):]).path
    headers = {k: v for k, v in (("if-match", r.get("ifMatch")),
                                 ("if-none-exist", r.get("ifNoneExist")),
                                 ("if-none-match", r.get("ifNoneMatch")),
                                 ("prefer", parent.header("prefer")))
               if isinstance(v, str)}
    sub = FhirRequest(method=method, path=path.strip("/"),
                      params=parse_qsl(parts.query, keep_blank_values=True),
                      headers=headers, body=entry.get("resource"), base_url=parent.base_url,
                      request_id=parent.request_id, caller=parent.caller)
    sub.state["entry"] = index
    sub.state["fullUrl"] = entry.get("fullUrl")
    if not sub.segments and method == "POST":
        raise BadRequest(f"{where}: a Bundle inside a Bundle is not processed",
                         expression=f"{where}.request.url")
    return sub


def _entry_response(resp: FhirResponse) -> dict[str, Any]:
    out: dict[str, Any] = {"status": STATUS_TEXT.get(resp.status, str(resp.status))}
    if "Location" in resp.headers:
        out["location"] = resp.headers["Location"]
    if "ETag" in resp.headers:
        out["etag"] = resp.headers["ETag"]
    if "Last-Modified" in resp.headers:
        out["lastModified"] = resp.headers["Last-Modified"]
    return out


def _resource_of(resp: FhirResponse) -> dict[str, Any] | None:
    if resp.resource is not None:
        return resp.resource
    if resp.raw is not None:
        return jsonio.loads_trusted(resp.raw)
    return None


def _batch(router: FhirRouter, requests: list[FhirRequest]) -> FhirResponse:
    out = []
    for sub in requests:
        try:
            resp = router.handle(sub)
            entry: dict[str, Any] = {"response": _entry_response(resp)}
            resource = _resource_of(resp)
            if resource is not None:
                entry["resource"] = resource
        except GatewayError as exc:
            entry = {"response": {"status": str(exc.status), "outcome": exc.outcome()}}
        out.append(entry)
    return FhirResponse(200, {"resourceType": "Bundle", "type": "batch-response", "entry": out})


def _transaction(ctx: FhirContext, router: FhirRouter, req: FhirRequest,
                 entries: list[Any]) -> FhirResponse:
    for attempt in range(TRANSACTION_ATTEMPTS):
        # Each attempt starts from the Bundle as posted: an attempt rewrites `urn:uuid:`
        # references to the ids it assigned, and interceptors stamp and narrow entries,
        # so a retry reusing them would store references to a rolled-back attempt's ids.
        requests = [_entry_request(req, copy.deepcopy(e), i) for i, e in enumerate(entries)]
        try:
            return _transaction_once(ctx, router, requests)
        except VersionConflict:
            for sub in requests:  # what was noted about them (audit) did not happen
                router.interceptors.on_rolled_back(sub)
            if attempt == TRANSACTION_ATTEMPTS - 1:
                raise Conflict("the transaction kept meeting concurrent writers; "
                               "nothing was written; try again") from None
    raise AssertionError("unreachable")


def _transaction_once(ctx: FhirContext, router: FhirRouter,
                      requests: list[FhirRequest]) -> FhirResponse:
    repo = ctx.repository
    results: dict[int, FhirResponse] = {}
    with repo.transaction() as session:
        tctx = FhirContext(repo, ctx.interceptors, session=session)
        urn_map = _assign_ids(tctx, router, requests)
        for sub in requests:
            if sub.body is not None and urn_map:
                sub.body = _rewrite_references(sub.body, urn_map)
        for sub in sorted(requests, key=lambda r: _ORDER[r.method]):
            # every entry goes through the router, a matched conditional create too: its
            # answer is checked, and audited, like any other
            with _failing_entry(sub):
                results[sub.state["entry"]] = router.handle(sub, ctx=tctx)
    out = []
    for i in range(len(requests)):
        resp = results[i]
        entry: dict[str, Any] = {"response": _entry_response(resp)}
        resource = _resource_of(resp)
        if resource is not None:
            entry["resource"] = resource
            entry["fullUrl"] = f"{requests[i].base_url}/{resource['resourceType']}/" \
                               f"{resource.get('id', '')}"
        out.append(entry)
    return FhirResponse(200, {"resourceType": "Bundle", "type": "transaction-response",
                              "entry": out})


@contextmanager
def _failing_entry(sub: FhirRequest) -> Iterator[None]:
    """Name the entry in a transaction's failure, and say that nothing was written."""
    try:
        yield
    except GatewayError as exc:
        index = sub.state["entry"]
        exc.issues = [Issue(
            diagnostics=f"Bundle.entry[{index}] ({sub.method} {sub.path}): "
                        f"{i.diagnostics}; nothing in the transaction was written",
            code=i.code, severity=i.severity,
            expression=i.expression or (f"Bundle.entry[{index}]",))
            for i in exc.issues]
        raise


def _assign_ids(ctx: FhirContext, router: FhirRouter,
                requests: list[FhirRequest]) -> dict[str, str]:
    """Give every POST entry its id up front; map each `urn:uuid:` fullUrl to Type/id."""
    urn_map: dict[str, str] = {}
    for sub in requests:
        full_url = sub.state.get("fullUrl")
        if sub.method != "POST" or len(sub.segments) != 1:
            if sub.method == "PUT" and isinstance(full_url, str) and len(sub.segments) == 2:
                urn_map.setdefault(full_url, "/".join(sub.segments))
            continue
        rtype = sub.segments[0]
        condition = sub.header("if-none-exist")
        matched = None
        if condition:
            with _failing_entry(sub):
                matched = _conditional_match(ctx, router, sub, rtype, condition)
            sub.state[TRANSACTION_MATCH] = matched
        rid = matched.rid if matched is not None else new_id()
        if matched is None:
            sub.state["assigned_id"] = rid
        if isinstance(full_url, str):
            urn_map[full_url] = f"{rtype}/{rid}"
    return {k: v for k, v in urn_map.items() if k.startswith("urn:")}


def _conditional_match(ctx: FhirContext, router: FhirRouter, sub: FhirRequest, rtype: str,
                       condition: str) -> StoredVersion | None:
    """The one match of an entry's ifNoneExist that the caller may see, or None to create.

    This runs before any entry (the match's id is needed to rewrite `urn:uuid:`
    references), so first the checks the entry itself will meet: the caller must be
    allowed this create at all, whatever matches. Then only matches the caller may see
    count; a hidden one counts as none, as for a create outside a transaction."""
    _check_request(router, sub)
    # the check may narrow the condition (a feed's matches only its own resources)
    condition = sub.header("if-none-exist") or condition
    found = visible_matches(ctx, sub, rtype, condition, "ifNoneExist")
    if len(found) > 1:
        raise PreconditionFailed(f"ifNoneExist {condition!r} matches more than one {rtype}")
    return found[0] if found else None


def _check_request(router: FhirRouter, sub: FhirRequest) -> None:
    """The interceptors' on_request for an entry, refused (and audited) as the router
    refuses; the router runs it again when the entry itself runs."""
    interaction, _, _ = router.route(sub)
    try:
        router.interceptors.on_request(sub, interaction)
    except GatewayError as exc:
        router.interceptors.on_failure(sub, interaction, exc)
        raise


def _rewrite_references(value: Any, urn_map: dict[str, str]) -> Any:
    """Replace `urn:uuid:` / `urn:oid:` references with the ids the transaction assigned."""
    if isinstance(value, dict):
        return {k: (urn_map.get(v, v) if k == "reference" and isinstance(v, str)
                    else _rewrite_references(v, urn_map)) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite_references(v, urn_map) for v in value]
    return value
