"""HTTP <-> FhirRequest/FhirResponse: content negotiation, body limits, error rendering.

Only this module knows both Starlette and the FHIR core. Bodies are read with a hard
limit (413), decoded strictly (400 naming the byte or line), and refused when not JSON
(415); every error leaves as an OperationOutcome.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .. import jsonio
from ..errors import (
    GatewayError,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from ..fhir.request import FhirRequest, FhirResponse, asks_for_json

FHIR_JSON = "application/fhir+json; charset=utf-8"
JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
FORM = "application/x-www-form-urlencoded"


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {declared} bytes; at most {limit} are accepted")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is over {limit} bytes; at most {limit} are accepted")
        chunks.append(chunk)
    return b"".join(chunks)


def check_format(request: Request) -> None:
    """Refuse (406) a response format other than JSON (`_format`, `Accept`). Not called
    for a request `$emergency-summary` answers with its HTML page (`wants_page`)."""
    fmt = request.query_params.get("_format")
    if fmt is not None and not asks_for_json(fmt):
        raise NotAcceptable(f"_format={fmt!r}: this server speaks FHIR JSON only",
                            expression="_format")
    if fmt is not None:
        return  # R4 3.1.0.1.9: `_format` overrides the Accept header
    accept = joined_header(request, "accept")
    if accept and "xml" in accept and not any(
        t in accept for t in (*JSON_TYPES, "*/*", "application/*")
    ):
        raise NotAcceptable(f"Accept {accept!r}: this server speaks FHIR JSON only")


def content_type(request: Request) -> str:
    """The body's media type, lower case, without parameters ("" when none is sent).
    Sent twice, the body could be read as one type by one reader and another by the next:
    refused (415)."""
    sent = request.headers.getlist("content-type")
    if len(sent) > 1:
        raise UnsupportedMediaType("Content-Type is sent more than once: send one")
    return sent[0].split(";")[0].strip().lower() if sent else ""


def parse_body(request: Request, raw: bytes) -> Any:
    if not raw:
        return None
    ctype = content_type(request)
    if ctype == FORM:
        return raw.decode("utf-8", errors="strict") if _is_utf8(raw) else jsonio.parse(raw)
    if ctype and ctype not in JSON_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {ctype!r} is not supported; send application/fhir+json")
    return jsonio.parse(raw)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def joined_headers(request: Request) -> dict[str, str]:
    """Each header once, a repeated one's values joined by commas (RFC 9110 5.3), as every
    reader must see it: `Accept` sent twice is one list, not the first (or the last) to
    one reader and the other to another. A header that cannot be a list (credentials)
    sent twice is then unreadable, and refused, rather than one copy chosen."""
    copies: dict[str, list[str]] = {}
    for k, v in request.headers.items():
        copies.setdefault(k.lower(), []).append(v)
    return {k: _joined(vs) for k, vs in copies.items()}


def joined_header(request: Request, name: str) -> str:
    """One header as `joined_headers` reads it ("" when it is not sent)."""
    return _joined(request.headers.getlist(name))


def _joined(copies: list[str]) -> str:
    kept = [v for v in copies if v.strip()]  # an empty copy adds nothing (RFC 9110 5.6.1)
    return ", ".join(kept) if kept else (copies[0] if copies else "")


def to_fhir_request(request: Request, path: str, body: Any, base_url: str) -> FhirRequest:
    return FhirRequest(
        method=request.method,
        path=path,
        params=[(k, v) for k, v in request.query_params.multi_items()],
        headers=joined_headers(request),
        body=body,
        base_url=base_url,
        request_id=getattr(request.state, "request_id", ""),
    )


def to_response(resp: FhirResponse, *, head: bool = False) -> Response:
    if resp.raw is not None:
        content: bytes | None = resp.raw.encode("utf-8")
    elif resp.resource is not None:
        content = jsonio.dump_bytes(resp.resource)
    else:
        content = None
    headers = dict(resp.headers)
    media_type = resp.media_type or FHIR_JSON
    if head:
        # RFC 9110 9.3.2: the length GET would send, not the empty body's 0.
        if content:
            headers["content-length"] = str(len(content))
        return Response(status_code=resp.status, headers=headers,
                        media_type=media_type if content else None)
    return Response(content=content, status_code=resp.status, headers=headers,
                    media_type=media_type if content is not None else None)


def error_response(error: GatewayError) -> Response:
    return Response(content=jsonio.dump_bytes(error.outcome()), status_code=error.status,
                    headers=error.headers, media_type=FHIR_JSON)
