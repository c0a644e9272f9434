"""The ASGI application: FHIR R4 at `/fhir`, one catch-all route into the FHIR router.

Everything FHIR-specific happens in `fhir_gateway.fhir`; this module wires settings, the
store, the interceptor chain and the middleware together: the one place where routers
are joined, so security (OAuth tokens, roles, consent, audit: `fhir_gateway.security`)
wraps every FHIR request. Auth is on unless the settings turn it off.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..config import Settings
from ..errors import BadRequest, GatewayError, MethodNotAllowed, NotFound
from ..fhir.conformance import publish as publish_conformance
from ..fhir.interceptors import InterceptorChain
from ..fhir.repository import Repository
from ..fhir.request import FhirRequest, FhirResponse
from ..fhir.router import FhirRouter
from ..pipeline.service import IngestService
from ..security import Security
from ..security.gate import DEFER_DURABILITY, audit_settled
from ..security.http import mount as mount_security
from ..security.policy import EMERGENCY_SUMMARY
from ..store import open_store
from ..store.base import StoreEngine
from ..summary.operation import error_page as summary_error_page
from ..summary.operation import wants_page
from . import ingest_routes
from .http import check_format, error_response, parse_body, read_body, to_fhir_request, to_response
from .middleware import RequestLogMiddleware

FHIR_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]


def create_app(
    settings: Settings | None = None,
    *,
    engine: StoreEngine | None = None,
    interceptors: InterceptorChain | None = None,
    freeze_gc: bool = False,
) -> FastAPI:
    """`freeze_gc`: after start-up, move everything built so far (registry, profiles,
    routes) out of the cyclic collector's sight (`gc.freeze`). A full collection over it
    costs about 20 ms and came every few hundred requests: a stall for every request in
    flight. For a serving process (`asgi.app`); tests building many apps leave it off."""
    settings = settings or Settings.from_env()
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = engine or open_store(settings.store_url,
                                     sqlite_synchronous=settings.sqlite_synchronous)
        repository = Repository(store)
        # Security first in the chain: a request is authenticated and authorised before
        # any other interceptor sees it, and audited whatever happens after.
        security = state["security"] = Security(repository, settings)
        if security.trail is not None and security.trail.requests_wait_for_thread:
            # Requests wait for the audit writer thread's commit; with the default 5 ms
            # GIL switch interval a busy thread makes the others (and the event loop)
            # wait whole intervals for their turn. 0.5 ms halves audited read latency.
            # (The journalled trail's requests wait on the event loop instead: unneeded.)
            sys.setswitchinterval(0.0005)
        chain = InterceptorChain([*security.interceptors(),
                                  *(interceptors.interceptors if interceptors else [])])
        state["router"] = FhirRouter(repository, chain, settings=settings)
        state["gate"] = security.gate(state["router"])
        app.state.fhir_router = state["router"]
        app.state.security = security
        app.state.ingest_service = IngestService(repository)
        app.state.max_feed_bytes = settings.max_feed_bytes  # POST /ingest/{partner}
        # The profiles, ValueSets, CodeSystems and ConceptMaps, readable and searchable;
        # unchanged definitions make no new version, so this is cheap on every start.
        await run_in_threadpool(publish_conformance, repository)
        if freeze_gc:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            security.close()
            if engine is None:
                store.close()

    app = FastAPI(title="Shared care record FHIR gateway", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)

    def base_url(request: Request) -> str:
        # A served gateway always has public_base_url (cli serve, api.asgi); the Host
        # header fallback is for apps made in-process (tests), see Settings.
        if settings.public_base_url:
            return settings.public_base_url.rstrip("/")
        return str(request.base_url).rstrip("/") + "/fhir"

    async def run(request: Request, req: FhirRequest, *, page: bool) -> FhirResponse:
        """The gate's answer, or the edge's refusal (406, 413, 415, 400), audited all the
        same; either way its audit is durable before this returns or raises."""
        gate = state["gate"]
        try:
            try:
                req.body = await accepted_body(request, settings.max_body_bytes, page=page)
            except GatewayError as exc:
                await run_in_threadpool(gate.refused, req, exc)
                raise
            return await run_in_threadpool(gate.handle, req)
        finally:
            await audit_settled(req)  # nothing is answered before its audit is durable

    async def fhir(request: Request, path: str = "") -> Response:
        req = to_fhir_request(request, path, None, base_url(request))
        req.state[DEFER_DURABILITY] = True
        page = path.rstrip("/").endswith(EMERGENCY_SUMMARY) and wants_page(
            request.query_params.get("_format"), req.header("accept"))
        try:
            resp = await run(request, req, page=page)
        except GatewayError as exc:
            if page:
                # a crew's browser refused before the operation ran (no token, wrong
                # role): a page saying why, like the operation's own refusals
                return to_response(summary_error_page(exc))
            return error_response(exc)
        return to_response(resp, head=request.method == "HEAD")

    app.state.fhir_base = base_url  # one answer for every route (ingest, review too)
    mount_security(app, security=lambda: state["security"], fhir_base=base_url)
    app.include_router(ingest_routes.router)
    app.add_api_route("/fhir", fhir, methods=FHIR_METHODS, include_in_schema=False)
    app.add_api_route("/fhir/{path:path}", fhir, methods=FHIR_METHODS, include_in_schema=False)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            return error_response(MethodNotAllowed(f"{request.method} is not allowed here"))
        return error_response(NotFound(f"nothing at {request.url.path}; the FHIR base is /fhir"))

    app.add_middleware(RequestLogMiddleware)
    return app


async def accepted_body(request: Request, limit: int, *, page: bool = False) -> Any:
    """The parsed body of a request the edge accepts; else 406 (format), 413 (size), 415
    (media type) or 400 (unreadable JSON). `page`: the answer will be the summary's HTML
    page, which the operation negotiates itself."""
    if len(request.query_params.getlist("_format")) > 1:
        # read first by one part and last by another, it could choose the page and JSON
        raise BadRequest("_format is given more than once: give one format",
                         expression="_format")
    if not page:
        check_format(request)
    return parse_body(request, await read_body(request, limit))
