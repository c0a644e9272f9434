"""The ASGI application: FHIR R4 at `/fhir`, one catch-all route into the FHIR router.

Everything FHIR-specific happens in `fhir_gateway.fhir`; this module wires settings, the
store, the interceptor chain and the middleware together (the one place where routers
are joined, so auth can wrap all of them when it lands).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..config import Settings
from ..errors import GatewayError, MethodNotAllowed, NotFound
from ..fhir.interceptors import InterceptorChain
from ..fhir.repository import Repository
from ..fhir.router import FhirRouter
from ..store import open_store
from ..store.base import StoreEngine
from .http import check_format, error_response, parse_body, read_body, to_fhir_request, to_response
from .middleware import RequestLogMiddleware

FHIR_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]


def create_app(
    settings: Settings | None = None,
    *,
    engine: StoreEngine | None = None,
    interceptors: InterceptorChain | None = None,
) -> FastAPI:
    settings = settings or Settings.from_env()
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = engine or open_store(settings.store_url,
                                     sqlite_synchronous=settings.sqlite_synchronous)
        state["router"] = FhirRouter(Repository(store), interceptors or InterceptorChain(),
                                     settings=settings)
        app.state.fhir_router = state["router"]
        try:
            yield
        finally:
            if engine is None:
                store.close()

    app = FastAPI(title="Shared care record FHIR gateway", lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)

    def base_url(request: Request) -> str:
        if settings.public_base_url:
            return settings.public_base_url.rstrip("/")
        return str(request.base_url).rstrip("/") + "/fhir"

    async def fhir(request: Request, path: str = "") -> Response:
        try:
            check_format(request)
            raw = await read_body(request, settings.max_body_bytes)
            body = parse_body(request, raw)
            req = to_fhir_request(request, path, body, base_url(request))
            resp = await run_in_threadpool(state["router"].handle, req)
        except GatewayError as exc:
            return error_response(exc)
        return to_response(resp, head=request.method == "HEAD")

    app.add_api_route("/fhir", fhir, methods=FHIR_METHODS, include_in_schema=False)
    app.add_api_route("/fhir/{path:path}", fhir, methods=FHIR_METHODS, include_in_schema=False)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            return error_response(MethodNotAllowed(f"{request.method} is not allowed here"))
        return error_response(NotFound(f"nothing at {request.url.path}; the FHIR base is /fhir"))

    app.add_middleware(RequestLogMiddleware)
    return app
