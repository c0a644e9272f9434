"""Partner feeds over HTTP (`POST /ingest/{partner}`) and the identity review queue.

The body is the partner's file as it stands (HL7 v2, CSV, NDJSON or an STU3 Bundle),
answered with the same summary as `fhir-gateway ingest --json`. The security layer decides
who may: only that partner's feed client may load its files, and every ingest, allowed or
refused, is audited (`security.http.authorize_ingest` / `record_ingest`). The review queue
is for clinicians and administrators (with auth on); `fhir-gateway review` is the same
on the command line.
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


def _reviewer(request: Request) -> None:
    """Only clinicians and administrators see held records (they hold demographics)."""
    sec = request.app.state.security
    if sec.access is None:
        return
    from ..security.errors import Forbidden

    caller = sec.access.authenticate(to_fhir_request(request, "$review", None, _base(request)))
    if caller.role not in ("clinician", "admin"):
        raise Forbidden("the review queue is for clinicians and administrators")


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
    try:
        _reviewer(request)
    except GatewayError as exc:
        return error_response(exc)
    loader = request.app.state.ingest_service.loader
    items = await run_in_threadpool(loader.list_held)
    return JSONResponse([{"key": k, "reason": v["reason"], "candidates": v["candidates"],
                          "source": v["record"]["source"]} for k, v in items])


@router.get("/review/rejected")
async def rejected(request: Request) -> Response:
    try:
        _reviewer(request)
    except GatewayError as exc:
        return error_response(exc)
    loader = request.app.state.ingest_service.loader
    return JSONResponse([{"key": k, **v} for k, v in
                         await run_in_threadpool(loader.list_rejected)])


@router.post("/review/held/{key:path}")
async def resolve(request: Request, key: str) -> Response:
    """Body: `{"patient": "<id>"}` to attach, or `{"create": true}` for a new Patient."""
    from .. import jsonio

    try:
        _reviewer(request)
        choice = jsonio.parse(await read_body(request, 64 * 1024))
        if not isinstance(choice, dict) or not (choice.get("patient") or choice.get("create")):
            raise BadRequest('send {"patient": "<id>"} or {"create": true}')
        loader = request.app.state.ingest_service.loader
        try:
            summary = await run_in_threadpool(
                loader.resolve_held, key,
                patient_id=None if choice.get("create") else str(choice["patient"]))
        except KeyError as exc:
            raise NotFound(f"no held record {key!r}") from exc
    except GatewayError as exc:
        return error_response(exc)
    return JSONResponse(summary.counts())
