"""Partner feeds over HTTP (`POST /ingest/{partner}`) and the identity review queue.

The body is the partner's file as it stands (HL7 v2, CSV, NDJSON or an STU3 Bundle),
answered with the same summary as `fhir-gateway ingest --json`. The security layer decides
who may: only that partner's feed client may load its files, and every ingest, allowed or
refused, is audited (`security.http.authorize_ingest` / `record_ingest`).

The review queue holds partners' raw records (names, birth dates, NHS numbers) that are
not part of the shared record yet. Over HTTP (auth on) each partner's own feed client
lists and resolves that partner's records only, as it writes only that partner's data;
another partner's record answers as absent. Clinicians (read-only on the shared record)
and other roles are refused. Every request, allowed or refused, is audited.
`fhir-gateway review` on the gateway's host sees the whole queue.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from ..errors import BadRequest, GatewayError, NotFound, UnsupportedMediaType
from .http import error_response, read_body, to_fhir_request

FEED_TYPES = {"x-application/hl7-v2+er7", "application/hl7-v2", "text/csv", "text/plain",
              "application/x-ndjson", "application/fhir+json", "application/json",
              "application/octet-stream"}
#: A partner's whole extract can be large; the limit still bounds memory.
MAX_FEED_BYTES = 256 * 1024 * 1024

router = APIRouter()


def _base(request: Request) -> str:
    """The FHIR base tokens are issued for: the app's (FHIR_GATEWAY_BASE_URL honoured)."""
    return str(request.app.state.fhir_base(request))


def _caller(request: Request) -> Any:
    """Who is asking (401 without a valid token); None with auth off."""
    sec = request.app.state.security
    if sec.access is None:
        return None
    return sec.access.authenticate(to_fhir_request(request, "$review", None, _base(request)))


def _check_reviewer(caller: Any) -> None:
    """Only a partner's feed client reviews (its own partner's records)."""
    from ..security.errors import Forbidden

    if caller is not None and (caller.role != "feed" or not getattr(caller, "partner", None)):
        raise Forbidden("the review queue is for each partner's own feed client: it holds "
                        "partners' records not yet in the shared record")


def _mine(caller: Any, partner: str | None) -> bool:
    return caller is None or partner == caller.partner


def _held_partner(value: dict[str, Any]) -> str | None:
    return ((value.get("record") or {}).get("source") or {}).get("partner")


async def _audited(request: Request, caller: Any, status: int, what: str,
                   patient: str | None = None) -> None:
    from ..fhir.request import Caller
    from ..security.http import record_review

    await run_in_threadpool(record_review, request.app.state.security, request,
                            caller or Caller(), _base(request), status, what, patient)


@router.post("/ingest/{partner}")
async def ingest(request: Request, partner: str, filename: str | None = None) -> Response:
    from ..fhir.request import Caller
    from ..ingest import UnknownPartner
    from ..security.http import authorize_ingest, record_ingest

    sec, base = request.app.state.security, _base(request)
    caller: Any = Caller()
    try:
        caller = authorize_ingest(sec, request, partner, base)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype and ctype not in FEED_TYPES:
            raise UnsupportedMediaType(f"Content-Type {ctype!r} is not a partner feed format")
        data = await read_body(request, MAX_FEED_BYTES)
        if not data:
            raise BadRequest("the body is empty: send the partner's file")
        service = request.app.state.ingest_service
        try:
            summary = await run_in_threadpool(service.ingest, partner,
                                              filename or f"{partner}-upload", data)
        except UnknownPartner as exc:
            raise NotFound(str(exc)) from exc
    except GatewayError as exc:
        await run_in_threadpool(record_ingest, sec, request, caller, partner, base,
                                exc.status, None)
        return error_response(exc)
    await run_in_threadpool(record_ingest, sec, request, caller, partner, base, 200,
                            summary.counts())
    return JSONResponse(summary.to_json(), status_code=200)


@router.get("/review/held")
async def held(request: Request) -> Response:
    caller = None
    try:
        caller = _caller(request)
        _check_reviewer(caller)
    except GatewayError as exc:
        await _audited(request, caller, exc.status, "GET /review/held")
        return error_response(exc)
    loader = request.app.state.ingest_service.loader
    items = [(k, v) for k, v in await run_in_threadpool(loader.list_held)
             if _mine(caller, _held_partner(v))]
    await _audited(request, caller, 200, f"GET /review/held ({len(items)} listed)")
    return JSONResponse([{"key": k, "reason": v["reason"], "candidates": v["candidates"],
                          "source": v["record"]["source"]} for k, v in items])


@router.get("/review/rejected")
async def rejected(request: Request) -> Response:
    caller = None
    try:
        caller = _caller(request)
        _check_reviewer(caller)
    except GatewayError as exc:
        await _audited(request, caller, exc.status, "GET /review/rejected")
        return error_response(exc)
    loader = request.app.state.ingest_service.loader
    items = [(k, v) for k, v in await run_in_threadpool(loader.list_rejected)
             if _mine(caller, v.get("partner"))]
    await _audited(request, caller, 200, f"GET /review/rejected ({len(items)} listed)")
    return JSONResponse([{"key": k, **v} for k, v in items])


@router.post("/review/held/{key:path}")
async def resolve(request: Request, key: str) -> Response:
    """Body: `{"patient": "<id>"}` to attach, or `{"create": true}` for a new Patient."""
    from .. import jsonio
    from ..fhir.interactions import require_id

    caller, patient = None, None
    try:
        caller = _caller(request)
        _check_reviewer(caller)
        choice = jsonio.parse(await read_body(request, 64 * 1024))
        if not isinstance(choice, dict) or not (choice.get("create") is True
                                                or isinstance(choice.get("patient"), str)):
            raise BadRequest('send {"patient": "<id>"} or {"create": true}')
        patient = None if choice.get("create") is True else require_id(choice["patient"])
        loader = request.app.state.ingest_service.loader
        if not _mine(caller, await run_in_threadpool(_partner_of_held, loader, key)):
            raise NotFound(f"no held record {key!r}")  # another partner's: as absent
        try:
            summary = await run_in_threadpool(loader.resolve_held, key, patient_id=patient)
        except KeyError as exc:
            raise NotFound(f"no held record {key!r}") from exc
    except GatewayError as exc:
        await _audited(request, caller, exc.status, f"POST /review/held/{key}", patient)
        return error_response(exc)
    await _audited(request, caller, 200, f"POST /review/held/{key}", patient)
    return JSONResponse(summary.counts())


def _partner_of_held(loader: Any, key: str) -> str | None:
    with loader.repo.engine.session(write=False) as s:
        value = s.record_get("held", key)
    return None if value is None else _held_partner(value)
