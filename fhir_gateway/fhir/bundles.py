"""Batch and transaction Bundles (R4 3.1.0.11).

A batch runs each entry on its own; one failing entry gets its own OperationOutcome and
the rest go on. A transaction is all or nothing: ids for `POST` entries are assigned
first, `urn:uuid:` references are rewritten to them, and the entries run in the order
the specification gives (DELETE, POST, PUT/PATCH, GET/HEAD) inside one store
transaction; the first failure rolls everything back and is reported with its entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .. import jsonio
from ..errors import BadRequest, Conflict, GatewayError, Issue, PreconditionFailed
from ..store.base import VersionConflict
from .interactions import FhirContext, conditional_matches
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
    requests = [_entry_request(req, e, i) for i, e in enumerate(entries)]
    if kind == "batch":
        return _batch(router, requests)
    return _transaction(ctx, router, requests, entries)


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


def _transaction(ctx: FhirContext, router: FhirRouter, requests: list[FhirRequest],
                 entries: list[Any]) -> FhirResponse:
    for attempt in range(TRANSACTION_ATTEMPTS):
        try:
            return _transaction_once(ctx, router, requests, entries)
        except VersionConflict:
            if attempt == TRANSACTION_ATTEMPTS - 1:
                raise Conflict("the transaction kept meeting concurrent writers; "
                               "nothing was written; try again") from None
    raise AssertionError("unreachable")


def _transaction_once(ctx: FhirContext, router: FhirRouter, requests: list[FhirRequest],
                      entries: list[Any]) -> FhirResponse:
    repo = ctx.repository
    results: dict[int, FhirResponse] = {}
    with repo.transaction() as session:
        tctx = FhirContext(repo, ctx.interceptors, session=session)
        urn_map = _assign_ids(tctx, requests)
        for sub in requests:
            if sub.body is not None and urn_map:
                sub.body = _rewrite_references(sub.body, urn_map)
        for sub in sorted(requests, key=lambda r: _ORDER[r.method]):
            index = sub.state["entry"]
            if sub.state.get("existing") is not None:  # conditional create matched
                results[index] = sub.state["existing"]
                continue
            try:
                results[index] = router.handle(sub, ctx=tctx)
            except GatewayError as exc:
                exc.issues = [Issue(
                    diagnostics=f"Bundle.entry[{index}] ({sub.method} {sub.path}): "
                                f"{i.diagnostics}; nothing in the transaction was written",
                    code=i.code, severity=i.severity,
                    expression=i.expression or (f"Bundle.entry[{index}]",))
                    for i in exc.issues]
                raise
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


def _assign_ids(ctx: FhirContext, requests: list[FhirRequest]) -> dict[str, str]:
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
        if condition:
            found = conditional_matches(ctx, rtype, condition, "ifNoneExist")
            if len(found) > 1:
                raise PreconditionFailed(
                    f"Bundle.entry[{sub.state['entry']}]: ifNoneExist {condition!r} matches "
                    f"more than one {rtype}; nothing in the transaction was written")
            if found:
                stored = found[0]
                sub.state["existing"] = FhirResponse(200, raw=stored.body, headers={
                    "Location": f"{sub.base_url}/{rtype}/{stored.rid}/_history/{stored.version}",
                    "ETag": f'W/"{stored.version}"'})
                if isinstance(full_url, str):
                    urn_map[full_url] = f"{rtype}/{stored.rid}"
                continue
        rid = new_id()
        sub.state["assigned_id"] = rid
        if isinstance(full_url, str):
            urn_map[full_url] = f"{rtype}/{rid}"
    return {k: v for k, v in urn_map.items() if k.startswith("urn:")}


def _rewrite_references(value: Any, urn_map: dict[str, str]) -> Any:
    """Replace `urn:uuid:` / `urn:oid:` references with the ids the transaction assigned."""
    if isinstance(value, dict):
        return {k: (urn_map.get(v, v) if k == "reference" and isinstance(v, str)
                    else _rewrite_references(v, urn_map)) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite_references(v, urn_map) for v in value]
    return value
