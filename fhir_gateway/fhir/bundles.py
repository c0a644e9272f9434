"""Batch and transaction Bundles (R4 3.1.0.11).

A batch runs each entry on its own; one failing entry gets its own OperationOutcome and
the rest go on. A transaction is all or nothing: ids for `POST` entries are assigned
first, `urn:uuid:` references are rewritten to them and conditional references
(`Patient?identifier=...`) to their one match, and the entries run in the order
the specification gives (DELETE, POST, PUT/PATCH, GET/HEAD) inside one store
transaction; the first failure rolls everything back and is reported with its entry.

Refused before anything runs (400, naming the entries): two entries with one fullUrl
(bdl-7), two entries that are the same resource once conditions are resolved (R4
3.1.0.11.2: "If any resource identities ... overlap in steps 1-3, then the transaction
SHALL fail"), and a `urn:` reference naming no entry's fullUrl.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .. import jsonio
from ..errors import BadRequest, Conflict, GatewayError, Issue, NotAcceptable, PreconditionFailed
from ..search.query import RESULT_PARAMS
from ..store.base import StoredVersion, VersionConflict
from .interactions import (
    DEFERRED_CHECKS,
    TRANSACTION_MATCH,
    TRANSACTION_UPDATE,
    FhirContext,
    conditional_matches,
    prepare_conditional,
    require_criteria,
    visible_matches,
)
from .repository import new_id
from .request import COMMITTED, FhirRequest, FhirResponse, asks_for_json
from .validation import check_resource, conditional_reference, is_bundle_reference, references

if TYPE_CHECKING:
    from .router import FhirRouter

log = logging.getLogger("fhir_gateway.access")

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
MAX_ENTRIES = 10_000
TRANSACTION_ATTEMPTS = 10

STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}

#: req.state keys: the entry's write check has run up front (a search depends on it);
#: the entry is the one whose failure ended the transaction
_CHECKED = "bundle.checked"
_FAILED = "bundle.failed"


def batch_or_transaction(ctx: FhirContext, req: FhirRequest, router: FhirRouter) -> FhirResponse:
    bundle = check_resource(req.body, expected_type="Bundle", model=False)
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise BadRequest(f"a Bundle posted to the base must be a batch or transaction, "
                         f"not {kind!r}", expression="Bundle.type")
    entries = bundle.get("entry")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise BadRequest(f"Bundle.entry must be an array, not {type(entries).__name__}",
                         expression="Bundle.entry")
    if len(entries) > MAX_ENTRIES:
        raise BadRequest(f"{len(entries)} entries; at most {MAX_ENTRIES} per Bundle",
                         code="too-costly")
    _check_full_urls(entries, transaction=kind == "transaction")
    if kind == "batch":
        return _batch(router, req, entries)
    return _transaction(ctx, router, req, entries)


def _check_full_urls(entries: list[Any], *, transaction: bool) -> None:
    """bdl-7: a fullUrl is unique in a Bundle, unless its entries are different versions
    of one resource. A transaction allows no exception: its `urn:` references must name
    one entry, and two versions of one resource are overlapping identities anyway."""
    seen: dict[str, list[tuple[int, Any]]] = {}
    for i, entry in enumerate(entries):
        full_url = entry.get("fullUrl") if isinstance(entry, dict) else None
        if not isinstance(full_url, str):
            continue
        resource = entry.get("resource")
        meta = resource.get("meta") if isinstance(resource, dict) else None
        version = meta.get("versionId") if isinstance(meta, dict) else None
        earlier = seen.setdefault(full_url, [])
        clash = next((j for j, v in earlier
                      if transaction or version is None or v is None or v == version), None)
        if clash is not None:
            raise BadRequest(
                f"Bundle.entry[{clash}] and Bundle.entry[{i}] have the same fullUrl "
                f"{full_url[:100]!r}; a fullUrl must be unique in a Bundle (bdl-7)"
                + ("; nothing in the transaction was written" if transaction else ""),
                expression=f"Bundle.entry[{i}].fullUrl")
        earlier.append((i, version))


def _entry_request(parent: FhirRequest, entry: Any, index: int) -> FhirRequest:
    where = f"Bundle.entry[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
        raise BadRequest(f"{where} has no request", expression=f"{where}.request")
    r = entry["request"]
    method, url = r.get("method"), r.get("url")
    if method not in _ORDER or not isinstance(url, str) or not url:
        raise BadRequest(f"{where}.request needs a method ({', '.join(_ORDER)}) and a url",
                         expression=f"{where}.request")
    for element in ("ifMatch", "ifNoneExist", "ifNoneMatch", "ifModifiedSince"):
        # dropped, a number would turn a guarded write into an unguarded one
        if element in r and not isinstance(r[element], str):
            raise BadRequest(f"{where}.request.{element} must be a string, not "
                             f"{type(r[element]).__name__}",
                             expression=f"{where}.request.{element}")
    if "fullUrl" in entry and not isinstance(entry["fullUrl"], str):
        raise BadRequest(f"{where}.fullUrl must be a string, not "
                         f"{type(entry['fullUrl']).__name__}", expression=f"{where}.fullUrl")
    parts = urlsplit(url)
    path = parts.path
    if parent.base_url and url.startswith(parent.base_url):
        path = urlsplit(url[len(parent.base_url):]).path
    elif parts.scheme or parts.netloc:
        # another server's URL: its `Patient/1` is not this server's
        raise BadRequest(f"{where}.request.url {url[:80]!r} names another server; an entry's "
                         "url is relative to this server, or starts with its base",
                         expression=f"{where}.request.url")
    headers = {k: v for k, v in (("if-match", r.get("ifMatch")),
                                 ("if-none-exist", r.get("ifNoneExist")),
                                 ("if-none-match", r.get("ifNoneMatch")),
                                 ("prefer", parent.header("prefer")))
               if isinstance(v, str)}
    params = parse_qsl(parts.query, keep_blank_values=True)
    for name, value in params:
        if name == "_format" and not asks_for_json(value):  # the answer goes in a JSON Bundle
            # (the summary's printable page is a whole response, not a Bundle entry)
            raise NotAcceptable(f"{where}: _format={value[:40]!r}: an entry's answer is "
                                "FHIR JSON inside the Bundle", expression=f"{where}.request.url")
    sub = FhirRequest(method=method, path=path.strip("/"),
                      params=params,
                      headers=headers, body=entry.get("resource"), base_url=parent.base_url,
                      request_id=parent.request_id, caller=parent.caller)
    sub.state["entry"] = index
    sub.state["fullUrl"] = entry.get("fullUrl")
    # a transaction runs the caller's checks (which may narrow them) before the entry
    prepare_conditional(sub)
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
    if resp.raw is not None and resp.media_type not in (None, "application/fhir+json"):
        raise NotAcceptable(f"the entry was answered as {resp.media_type}, which a Bundle "
                            "cannot hold")
    if resp.raw is not None:
        return jsonio.loads_trusted(resp.raw)
    return None


def _batch(router: FhirRouter, parent: FhirRequest, entries: list[Any]) -> FhirResponse:
    """Each entry answered on its own: a malformed one (no request, method "post") or one
    that fails in a way nobody foresaw gets its own error, and the others still run; a
    whole-request error after some entries were written would have a retrying client
    write them twice."""
    out = []
    for index, raw_entry in enumerate(entries):
        try:
            sub = _entry_request(parent, raw_entry, index)
        except GatewayError as exc:
            out.append(_failed_entry(exc))
            continue
        try:
            resp = _batch_entry(router, sub)
            if sub.state.get(COMMITTED):
                parent.state[COMMITTED] = True
            entry: dict[str, Any] = {"response": _entry_response(resp)}
            resource = _resource_of(resp)
            if resource is not None:
                entry["resource"] = resource
        except GatewayError as exc:
            entry = _failed_entry(exc)
        except Exception:
            log.exception("batch entry %d of request %s failed", index, parent.request_id)
            message = (f"Bundle.entry[{index}]: internal error; nothing was written for "
                       f"this entry; quote request id {parent.request_id}")
            error = GatewayError(message, issues=[Issue(message, code="exception",
                                                        severity="fatal")])
            _note_failure(router, sub, error)
            entry = _failed_entry(error)
        out.append(entry)
    return FhirResponse(200, {"resourceType": "Bundle", "type": "batch-response", "entry": out})


def _failed_entry(exc: GatewayError) -> dict[str, Any]:
    return {"response": {"status": str(exc.status), "outcome": exc.outcome()}}


def _note_failure(router: FhirRouter, sub: FhirRequest, error: GatewayError) -> None:
    """Tell the interceptors (the audit trail) of an entry that failed unforeseen, as the
    router tells them of a refusal, so it is on the record like any failed entry."""
    try:
        interaction = router.route(sub)[0]
    except GatewayError:
        return  # routing refuses it: it never ran as an interaction
    router.interceptors.on_failure(sub, interaction, error)


#: interactions a batch entry runs in a write transaction of its own
_WRITES = frozenset({"create", "update", "delete"})


def _batch_entry(router: FhirRouter, sub: FhirRequest) -> FhirResponse:
    """One batch entry, succeeding or failing alone (R4 3.1.0.11.2). A write runs in a
    transaction of its own, as a plain REST write does (security.gate), so checks made
    in the write's session (one Patient per NHS number, claimed there) hold between
    concurrent writers; retried, from the entry as posted, when it meets one."""
    try:
        interaction = router.route(sub)[0]
    except GatewayError:
        return router.handle(sub)  # which answers the entry with the refusal
    if interaction.name not in _WRITES:
        return router.handle(sub)
    repo = router.repository
    posted = copy.deepcopy(sub.body)
    for _attempt in range(TRANSACTION_ATTEMPTS):
        try:
            with repo.transaction() as session:
                response = router.handle(sub, ctx=FhirContext(repo, router.interceptors,
                                                              session=session))
            sub.state[COMMITTED] = True
            return response
        except VersionConflict:
            router.interceptors.on_rolled_back(sub)  # what was noted did not happen
            sub.body = copy.deepcopy(posted)
    refusal = Conflict("this entry kept meeting concurrent writers; nothing was written "
                       "for it; try again")
    router.interceptors.on_failure(sub, interaction, refusal)  # audited, as any refusal
    raise refusal


def _transaction(ctx: FhirContext, router: FhirRouter, req: FhirRequest,
                 entries: list[Any]) -> FhirResponse:
    for attempt in range(TRANSACTION_ATTEMPTS):
        # Each attempt starts from the Bundle as posted: an attempt rewrites `urn:uuid:`
        # references to the ids it assigned, and interceptors stamp and narrow entries,
        # so a retry reusing them would store references to a rolled-back attempt's ids.
        requests = [_entry_request(req, copy.deepcopy(e), i) for i, e in enumerate(entries)]
        try:
            response = _transaction_once(ctx, router, requests)
            req.state[COMMITTED] = True
            return response
        except VersionConflict:
            for sub in requests:  # what was noted about them (audit) did not happen
                router.interceptors.on_rolled_back(sub)
            if attempt == TRANSACTION_ATTEMPTS - 1:
                raise Conflict("the transaction kept meeting concurrent writers; "
                               "nothing was written; try again") from None
        except Exception:
            # Rolled back for good: an entry that ran before the failure wrote nothing,
            # so what was noted about it ("created") did not happen. The failing entry's
            # own refusal did happen, and stays on the record.
            for sub in requests:
                if not sub.state.get(_FAILED):
                    router.interceptors.on_rolled_back(sub)
            raise
    raise AssertionError("unreachable")


def _transaction_once(ctx: FhirContext, router: FhirRouter,
                      requests: list[FhirRequest]) -> FhirResponse:
    repo = ctx.repository
    results: dict[int, FhirResponse] = {}
    with repo.transaction() as session:
        tctx = FhirContext(repo, ctx.interceptors, session=session)
        urn_map = _assign_ids(tctx, router, requests)
        _check_identities(tctx, router, requests, urn_map)
        full_urls = {sub.state["fullUrl"]: sub for sub in requests
                     if isinstance(sub.state.get("fullUrl"), str)}
        for sub in requests:
            if isinstance(sub.body, dict):
                with _failing_entry(sub):
                    _resolve_references(tctx, router, sub, urn_map, full_urls)
        for sub in requests:
            sub.state[DEFERRED_CHECKS] = []
        for sub in sorted(requests, key=lambda r: _ORDER[r.method]):
            # every entry goes through the router, a matched conditional create too: its
            # answer is checked, and audited, like any other
            with _failing_entry(sub):
                results[sub.state["entry"]] = router.handle(sub, ctx=tctx)
        for sub in requests:  # what judges the end state, before it commits
            for check in sub.state.pop(DEFERRED_CHECKS, []):
                with _failing_entry(sub):
                    check()
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
        sub.state[_FAILED] = True
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
        if condition is not None:  # "" too: refused as blank criteria, never ignored
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
    _check_once(router, sub)
    require_criteria(sub, rtype, condition, "ifNoneExist")
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


def _check_once(router: FhirRouter, sub: FhirRequest) -> None:
    """`_check_request`, once per attempt: an entry may need it for several searches."""
    if not sub.state.get(_CHECKED):
        _check_request(router, sub)
        sub.state[_CHECKED] = True


def _identities(ctx: FhirContext, router: FhirRouter, sub: FhirRequest) -> list[str]:
    """What a DELETE, POST or PUT entry writes, conditions resolved: its `Type/id` first
    (when known), then, for a condition that matched nothing, `Type?condition` (two
    entries that would create under one condition would make two of what the condition
    says is one). Conditional updates and deletes are resolved as they will run: after
    the caller's write check, which may narrow their condition. A conditional update that
    matches nothing and names no id is given one now, so a reference to its fullUrl can
    be rewritten (the server's id for it, as for a POST)."""
    segments = sub.segments
    if sub.method in ("PUT", "DELETE", "PATCH") and len(segments) == 2:
        return ["/".join(segments)]
    if len(segments) != 1:
        return []
    rtype = segments[0]
    if sub.method == "POST":
        matched = sub.state.get(TRANSACTION_MATCH)
        if matched is not None:
            return [f"{rtype}/{matched.rid}"]
        condition = sub.header("if-none-exist")
        return [_condition_key(rtype, condition)] if condition is not None else []
    if sub.method not in ("PUT", "DELETE"):
        return []
    _check_once(router, sub)
    where = "conditional update" if sub.method == "PUT" else "conditional delete"
    require_criteria(sub, rtype, sub.params, where)
    found = conditional_matches(ctx, rtype, sub.params, where)
    if sub.method == "PUT" and len(found) <= 1:  # it runs as judged now (TRANSACTION_UPDATE)
        sub.state[TRANSACTION_UPDATE] = found[0].rid if found else None
    if len(found) == 1:
        return [f"{rtype}/{found[0].rid}"]
    if sub.method != "PUT" or found:
        return []  # several matches: the entry itself fails (412) when it runs
    body_id = sub.body.get("id") if isinstance(sub.body, dict) else None
    if not isinstance(body_id, str):
        body_id = sub.state.setdefault("assigned_id", new_id())
    # update-as-create, with the client's id or the one given here
    return [f"{rtype}/{body_id}", _condition_key(rtype, sub.params)]


def _condition_key(rtype: str, condition: str | list[tuple[str, str]]) -> str:
    pairs = parse_qsl(condition, keep_blank_values=True) if isinstance(condition, str) \
        else list(condition)
    return f"{rtype}?{sorted(pairs)}"


def _check_identities(ctx: FhirContext, router: FhirRouter, requests: list[FhirRequest],
                      urn_map: dict[str, str]) -> None:
    """R4 3.1.0.11.2: no two DELETE/POST/PUT entries may be the same resource, resolved
    identities included (a DELETE of p3 and a conditional create matching p3 would leave
    the transaction's references pointing at a deleted Patient). The error names both
    entries but not a resolved id: a condition's match is not the caller's to learn."""
    seen: dict[str, FhirRequest] = {}
    for sub in requests:
        with _failing_entry(sub):
            identities = _identities(ctx, router, sub)
        full_url = sub.state.get("fullUrl")
        if identities and "/" in identities[0] and len(sub.segments) == 1 \
                and sub.method == "PUT" and isinstance(full_url, str) \
                and full_url.startswith("urn:"):
            urn_map.setdefault(full_url, identities[0])  # a conditional update, resolved
        for identity in identities:
            _refuse_overlap(seen, identity, sub)


def _refuse_overlap(seen: dict[str, FhirRequest], identity: str, sub: FhirRequest) -> None:
    first = seen.setdefault(identity, sub)
    if first is not sub:
        i, j = first.state["entry"], sub.state["entry"]
        rtype = identity.split("/")[0].split("?")[0]
        message = (f"Bundle.entry[{i}] ({first.method} {first.path}) and Bundle.entry[{j}] "
                   f"({sub.method} {sub.path}) are the same {rtype}: a transaction may "
                   "touch each resource once (R4 3.1.0.11.2); nothing in the transaction "
                   "was written")
        raise BadRequest(message, issues=[Issue(
            message, code="processing",
            expression=(f"Bundle.entry[{i}]", f"Bundle.entry[{j}]"))])


def _resolve_references(ctx: FhirContext, router: FhirRouter, sub: FhirRequest,
                        urn_map: dict[str, str], full_urls: dict[str, FhirRequest]) -> None:
    """Rewrite the entry's references in place: a `urn:` fullUrl to the id the transaction
    gave that entry; a conditional reference to its one match the caller may see (R4
    3.1.0.11.3). Nothing is left that only this Bundle could resolve: a `urn:` naming no
    entry, or a condition with no or several matches, fails the transaction."""
    body = sub.body
    rtype = body.get("resourceType")
    if not isinstance(rtype, str):
        return  # the entry's own check reports it
    index = sub.state["entry"]
    found = list(references(body, rtype))
    if any(conditional_reference(holder["reference"]) for _, holder in found):
        # before the walk: the write check may change the body (a feed's stamp)
        _check_once(router, sub)
        found = list(references(body, rtype))
    for path, holder in found:
        ref = holder["reference"]
        where = f"Bundle.entry[{index}].resource{path[len(rtype):]}"
        if ref in urn_map:
            holder["reference"] = urn_map[ref]
        elif is_bundle_reference(ref):
            named = full_urls.get(ref)
            if named is None:
                raise BadRequest(f"{path}: {ref[:80]!r} is the fullUrl of no entry in this "
                                 "transaction", expression=where)
            # e.g. a DELETE, or a conditional update with several matches or none and no id
            raise BadRequest(f"{path}: {ref[:80]!r} is the fullUrl of Bundle.entry"
                             f"[{named.state['entry']}] ({named.method} {named.path}), "
                             "which gives no resource id to refer to", expression=where)
        elif (condition := conditional_reference(ref)) is not None:
            if "://" in ref.split("?", 1)[0] and not ref.startswith(f"{sub.base_url}/"):
                raise BadRequest(f"{path}: {ref[:80]!r} is a search on another server; only "
                                 "this server's records can stand for a reference here",
                                 expression=where)
            holder["reference"] = _resolve_condition(ctx, router, sub, *condition,
                                                     path=path, where=where)


def _resolve_condition(ctx: FhirContext, router: FhirRouter, sub: FhirRequest, rtype: str,
                       query: str, *, path: str, where: str) -> str:
    """`Type/id` of the one match of a conditional reference that the caller may see.

    As for an ifNoneExist, the caller's write check runs first, and a hidden match counts
    as none, so a reference cannot probe for records the caller may not see. Chains and
    `_has` would test resources the match does not show: refused."""
    _check_once(router, sub)
    params = parse_qsl(query, keep_blank_values=True)
    if any(k.startswith("_has") or "." in k for k, _ in params):
        raise BadRequest(f"{path}: a conditional reference may not use chains or _has",
                         expression=where)
    if not any(value and k.split(":", 1)[0] not in RESULT_PARAMS for k, value in params):
        # `Patient?_count=1` would stand for whichever one record the caller can see
        raise BadRequest(f"{path}: a conditional reference needs a search criterion with a "
                         "value (an identifier, say)", expression=where)
    found = visible_matches(ctx, sub, rtype, params, where)
    if len(found) > 1:
        raise PreconditionFailed(f"{path}: the conditional reference {rtype}?{query[:80]} "
                                 f"matches more than one {rtype}", expression=where)
    if not found:
        raise PreconditionFailed(f"{path}: the conditional reference {rtype}?{query[:80]} "
                                 f"matches no {rtype}", expression=where)
    return f"{rtype}/{found[0].rid}"
