"""The security endpoints at the HTTP edge (mounted by `api.app.create_app`):

- `POST /auth/token`: SMART Backend Services token endpoint (`auth.server`), audited;
- `GET /auth/jwks`: the gateway's public signing keys;
- `GET /fhir/.well-known/smart-configuration`: where those are, what is supported;
- `GET /audit/report?kind=patient&patient=ID | kind=summary | kind=break-glass
  [&from=DATE][&to=DATE][&_format=csv]`: the auditors' reports (auditor role), audited.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..api.http import content_type, error_response, joined_header, to_fhir_request
from ..auth.assertion import MAX_ASSERTION_BYTES
from ..auth.scopes import supported_scopes
from ..auth.server import MAX_FORM_BYTES, Endpoints, TokenRequest, TokenResult, claimed_client
from ..errors import BadRequest, GatewayError, PayloadTooLarge
from ..fhir.request import Caller
from . import Security
from .audit import reports
from .audit.events import DCM, audit_event, audit_events, held_retry_events
from .errors import Forbidden

if TYPE_CHECKING:
    from ..pipeline.loader import Summary

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
REPORTS = ("patient", "summary", "break-glass")


def mount(app: FastAPI, *, security: Callable[[], Security],
          fhir_base: Callable[[Request], str]) -> None:
    """Add the security routes to `app` (before the FHIR catch-all route)."""

    async def smart_configuration(request: Request) -> Response:
        ends = Endpoints.for_base(fhir_base(request))
        return JSONResponse({
            "issuer": ends.issuer,
            "token_endpoint": ends.token_url,
            "jwks_uri": ends.jwks_url,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
            "scopes_supported": supported_scopes(),
            "capabilities": ["client-confidential-asymmetric", "permission-v1",
                             "permission-v2"],
        })

    async def jwks(request: Request) -> Response:
        keys = await run_in_threadpool(security().keyring.jwks)
        return JSONResponse(keys, headers={"Cache-Control": "max-age=60"})

    async def token(request: Request) -> Response:
        sec = security()
        ends = Endpoints.for_base(fhir_base(request))
        try:
            form = await _form(request)
        except GatewayError as exc:
            # too malformed to read: no client is known, but the attempt is audited
            await run_in_threadpool(_record_token_event, sec, request, ends.token_url,
                                    caller=Caller(), status=400,
                                    description=f"400 invalid_request: {exc.diagnostics} "
                                                "(client not authenticated)")
            return JSONResponse({"error": "invalid_request", "error_description":
                                 exc.diagnostics}, status_code=400, headers=NO_STORE)
        req = TokenRequest(method="POST", url=ends.token_url, issuer=ends.issuer,
                           audience=fhir_base(request), form=form,
                           headers={k.lower(): v for k, v in request.headers.items()})
        result = await run_in_threadpool(_token_and_audit, sec, req, request)
        return JSONResponse(result.body, status_code=result.status,
                            headers={**result.headers, **NO_STORE})

    async def report(request: Request) -> Response:
        sec = security()
        try:
            return await run_in_threadpool(_report, sec, request, fhir_base(request))
        except GatewayError as exc:
            return error_response(exc)

    app.add_api_route("/fhir/.well-known/smart-configuration", smart_configuration,
                      methods=["GET"], include_in_schema=False)
    app.add_api_route("/auth/token", token, methods=["POST"], include_in_schema=False)
    app.add_api_route("/auth/jwks", jwks, methods=["GET"], include_in_schema=False)
    app.add_api_route("/audit/report", report, methods=["GET"], include_in_schema=False)


async def _form(request: Request) -> dict[str, list[str]]:
    if content_type(request) != "application/x-www-form-urlencoded":
        raise BadRequest("send the token request as application/x-www-form-urlencoded")
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_FORM_BYTES:
            raise PayloadTooLarge(f"the token request is over {MAX_FORM_BYTES} bytes "
                                  f"(an assertion may be at most {MAX_ASSERTION_BYTES})")
        chunks.append(chunk)
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("the token request is not UTF-8") from exc
    return parse_qs(text, keep_blank_values=True)


def _token_and_audit(sec: Security, req: TokenRequest, request: Request) -> TokenResult:
    try:
        result = sec.token_endpoint.handle(req)
    except Exception:
        # a fault, not a refusal: still audited (as the 500 it becomes) before it propagates
        assertion = req.form.get("client_assertion", [""])[0]
        _record_token_event(sec, request, req.url,
                            caller=Caller(client_id=claimed_client(assertion)), status=500,
                            description="500 server_error: the token request failed "
                                        "inside the gateway (client not authenticated)")
        raise
    client = result.client
    caller = Caller(client_id=client.client_id if client else result.claimed_client,
                    role=client.role if client else None,
                    organization=client.organization if client else None)
    description = (f"token issued, scope {result.scope}" if result.status == 200 else
                   f"{result.status} {result.error}: "
                   f"{result.body.get('error_description', '')}"
                   + ("" if client else " (client not authenticated)"))
    _record_token_event(sec, request, req.url, caller=caller, status=result.status,
                        description=description)
    return result


def _record_token_event(sec: Security, request: Request, token_url: str, *, caller: Caller,
                        status: int, description: str) -> None:
    """The AuditEvent of one token request (DICOM User Authentication), durable before
    the answer is sent."""
    if sec.trail is None:
        return
    event = audit_event(
        subtype="110122", subtype_system=DCM, action="E",
        event_type={"system": DCM, "code": "110114", "display": "User Authentication"},
        status=status, caller=caller, observer=f"fhir-gateway {sec.trail.instance}",
        destination=token_url, request_id=getattr(request.state, "request_id", ""),
        description=description)
    sec.trail.record([event])


def _report(sec: Security, request: Request, base: str) -> Response:
    params = request.query_params
    freq = to_fhir_request(request, "$audit-report", None, base)
    status, rows = 500, None
    try:
        if sec.access is None:
            raise Forbidden("the audit reports need authentication, which is off")
        freq.caller = sec.access.authenticate(freq)
        if freq.caller.role != "auditor":
            raise Forbidden(f"the {freq.caller.role} role may not read the audit reports")
        if not freq.caller.memo["scopes"].allows("AuditEvent", "s"):
            # the reports are AuditEvent searches, and bound by the same scope
            raise Forbidden("the audit reports need system/AuditEvent.s (search) scope")
        rows = _rows(sec, params)
        status = 200
    except GatewayError as exc:
        status = exc.status
        raise
    finally:
        if sec.audit is not None:
            sec.trail.record([sec.audit.event(freq, "operation", status)])
    wants_csv = params.get("_format") == "csv" or \
        "text/csv" in joined_header(request, "accept")
    if wants_csv:
        return Response(reports.to_csv(rows, reports.columns(params.get("kind"))),
                        media_type="text/csv; charset=utf-8",
                        headers=NO_STORE)
    return JSONResponse({"report": params.get("kind"), "rows": rows}, headers=NO_STORE)


def _rows(sec: Security, params: Any) -> list[dict[str, Any]]:
    for name in ("kind", "patient", "from", "to", "_format"):
        if len(params.getlist(name)) > 1:  # which one counts would be a guess
            raise BadRequest(f"{name} is given more than once: give it once", expression=name)
    kind, patient = params.get("kind"), params.get("patient")
    start, end = params.get("from"), params.get("to")
    if kind not in REPORTS:
        raise BadRequest(f"kind must be one of {', '.join(REPORTS)}", expression="kind")
    if kind == "patient" and not patient:
        raise BadRequest("kind=patient needs patient=<Patient id>", expression="patient")
    for name, value in (("from", start), ("to", end)):
        _report_date(name, value)
    if sec.trail is not None:
        sec.trail.catch_up()  # the accesses this process just answered are in the report
    if kind == "patient":
        person = sec.access.consent.person_of(patient) if sec.access else [patient]
        return reports.patient_access(sec.repository, person, start=start, end=end)
    if kind == "break-glass":
        return reports.break_glass(sec.repository, start=start, end=end)
    return reports.access_summary(sec.repository, start=start, end=end)


def _report_date(name: str, value: str | None) -> None:
    """A report's `from`/`to` is one FHIR date or dateTime, nothing more: sent into the
    AuditEvent search, `2026-01-01,le2000` would be two values (either matching), so a
    wider period than asked."""
    from ..search.values import BadDate, date_range

    if value is None:
        return
    try:
        if "," in value or "|" in value:
            raise BadDate(value)
        date_range(value)
    except BadDate:
        raise BadRequest(f"{name}={value[:40]!r} is not a FHIR date or dateTime "
                         "(YYYY, YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ)", expression=name) from None


def authorize_ingest(sec: Security, request: Request, partner: str, base: str) -> Caller:
    """For `POST /ingest/{partner}` (INTERFACE.md): the feed client allowed to load this
    partner's file, or a GatewayError (401 no or bad token, 403 another partner's feed or
    another role). With auth off, an anonymous caller."""
    if sec.access is None:
        return Caller()
    freq = to_fhir_request(request, f"$ingest/{partner}", None, base)
    caller = sec.access.authenticate(freq)
    if caller.role != "feed" or getattr(caller, "partner", None) != partner:
        raise Forbidden(f"only the {partner} feed may load {partner} files")
    if not caller.memo["scopes"].allows("*", "c"):
        raise Forbidden("loading a partner file needs system/*.c (create) scope")
    return caller


def record_ingest(sec: Security, request: Request, caller: Caller, partner: str, base: str,
                  status: int, summary: Summary | None) -> None:
    """The AuditEvents of an ingest over HTTP, allowed or refused: written durably before
    the answer is sent. `summary`: the run's (None when refused; for a run that failed
    part way, what its committed batches wrote); the Patients it wrote are named as a REST
    write names its patient, in continuation events past the first MAX_PATIENT_ENTITIES
    (`audit_events`)."""
    if sec.trail is None:
        return
    counts = summary.counts() if summary is not None else {}
    named = summary.patients if summary is not None else set()
    text = ", ".join(f"{k} {v}" for k, v in counts.items())
    if status >= 400 and text:
        text = f"{status} after it stored: {text}"
    observer, request_id = f"fhir-gateway {sec.trail.instance}", \
        getattr(request.state, "request_id", "")
    sec.trail.record(audit_events(
        subtype="create", action="C", status=status, caller=caller,
        observer=observer, destination=base, request_id=request_id, patients=named,
        query=f"POST /ingest/{partner}",
        description=f"ingest of a {partner} file: {text or status}")
        + held_retry_events(summary, observer=observer, destination=base,
                            request_id=request_id))


def record_review(sec: Security, request: Request, caller: Caller, base: str, status: int,
                  what: str, patients: Collection[str]) -> None:
    """The AuditEvents of a review-queue request (listing partners' raw records, or
    settling a held one: the Patient chosen and every Patient the record then wrote, a new
    one among them), allowed or refused, durable before the answer."""
    if sec.trail is None:
        return
    sec.trail.record(audit_events(
        subtype="operation", action="R" if request.method == "GET" else "U", status=status,
        caller=caller, observer=f"fhir-gateway {sec.trail.instance}", destination=base,
        request_id=getattr(request.state, "request_id", ""), query=what,
        patients=patients, description=f"review queue: {what}"))
