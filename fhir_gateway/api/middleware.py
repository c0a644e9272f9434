"""ASGI middleware: request id, one JSON log line per request, and a last-resort 500.

Plain ASGI wrappers in the Starlette style: configuration in `__init__`, no framework
state. The log line names the route shape, never query values (they can hold NHS numbers).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import Issue, operation_outcome

log = logging.getLogger("fhir_gateway.access")
_SAFE_ID = re.compile(r"[A-Za-z0-9._\-]{1,128}")
_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")
FHIR_JSON = "application/fhir+json; charset=utf-8"


def route_shape(path: str) -> str:
    """`/fhir/Patient/123/_history/2` -> `/fhir/Patient/{id}/_history/{vid}` (no ids logged).

    Empty segments are dropped first (`/fhir//Patient/123` routes like `/fhir/Patient/123`
    and must not log its id); past the id only operations, `_history` and type names are
    kept, any other segment is `{value}`."""
    segments = [s for s in path.split("/") if s]
    out = []
    for i, seg in enumerate(segments):
        prev = segments[i - 1] if i else ""
        if i == 2 and not seg.startswith(("_", "$")):
            out.append("{id}")
        elif i >= 3 and prev == "_history":
            out.append("{vid}")
        elif i >= 3 and not (seg.startswith("$") or seg == "_history" or _TYPE.fullmatch(seg)):
            out.append("{value}")
        else:
            out.append(seg)
    return "/" + "/".join(out)


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope.get("headers") or []).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.fullmatch(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        sent_start = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, sent_start
            if message["type"] == "http.response.start":
                sent_start = True
                status = message["status"]
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error in request %s", request_id)
            if not sent_start:
                body = json.dumps(operation_outcome([Issue(
                    diagnostics=f"internal error; quote request id {request_id}",
                    code="exception", severity="fatal")])).encode()
                await send_wrapper({"type": "http.response.start", "status": 500,
                                    "headers": [(b"content-type", FHIR_JSON.encode())]})
                await send({"type": "http.response.body", "body": body})
            status = 500
        finally:
            log.info(json.dumps(_line(scope, status, started, request_id)))


def _line(scope: Scope, status: int, started: float, request_id: str) -> dict[str, Any]:
    return {
        "method": scope.get("method"),
        "route": route_shape(scope.get("path", "")),
        "status": status,
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        "request_id": request_id,
    }
