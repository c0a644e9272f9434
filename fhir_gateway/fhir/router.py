"""The route table: (method, path shape) -> interaction, and the interceptor chain around it.

Like Medplum's FhirRouter: a FHIR request, however it arrived (HTTP or a Bundle entry),
goes through `FhirRouter.handle`, so interceptors see every interaction the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import GatewayError, MethodNotAllowed, NotFound
from . import bundles, capability, interactions, searchset, validate
from .interactions import FhirContext
from .interceptors import InterceptorChain
from .repository import Repository
from .request import FhirRequest, FhirResponse, Interaction
from .types import is_resource_type

Handler = Callable[..., FhirResponse]
#: the types whose instances have `$everything` (R4: Patient/[id]/$everything)
EVERYTHING_TYPES = frozenset({"Patient"})


def _emergency_summary(ctx: FhirContext, req: FhirRequest, rtype: str,
                       rid: str | None = None) -> FhirResponse:
    from ..summary.operation import emergency_summary  # the ambulance crews' operation

    return emergency_summary(ctx, req, rtype, rid)

# shape -> {method: (interaction name, handler)}; "{type}" "{id}" "{vid}" are captured.
ROUTES: dict[tuple[str, ...], dict[str, tuple[str, Handler]]] = {
    (): {"POST": ("batch", bundles.batch_or_transaction)},
    ("metadata",): {"GET": ("capabilities", capability.capabilities)},
    ("_history",): {"GET": ("history-system", interactions.history_system)},
    ("{type}",): {
        "GET": ("search-type", searchset.search_type),
        "POST": ("create", interactions.create),
        "PUT": ("update", interactions.conditional_update),
        "DELETE": ("delete", interactions.conditional_delete),
    },
    ("{type}", "_search"): {"POST": ("search-type", searchset.search_type)},
    ("{type}", "$validate"): {"POST": ("operation", validate.validate)},
    ("{type}", "{id}", "$validate"): {"POST": ("operation", validate.validate),
                                      "GET": ("operation", validate.validate)},
    ("{type}", "{id}", "$everything"): {"GET": ("operation", searchset.everything)},
    ("{type}", "$emergency-summary"): {"GET": ("operation", _emergency_summary)},
    ("{type}", "{id}", "$emergency-summary"): {"GET": ("operation", _emergency_summary)},
    ("{type}", "_history"): {"GET": ("history-type", interactions.history_type)},
    ("{type}", "{id}"): {
        "GET": ("read", interactions.read),
        "PUT": ("update", interactions.update),
        "DELETE": ("delete", interactions.delete),
    },
    ("{type}", "{id}", "_history"): {"GET": ("history-instance", interactions.history_instance)},
    ("{type}", "{id}", "_history", "{vid}"): {"GET": ("vread", interactions.vread)},
}


def _shape(segments: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """Match path segments to a route shape, returning the shape and captured values."""
    n = len(segments)
    if n == 1 and segments[0] in ("metadata", "_history"):
        return (segments[0],), []
    if n == 2 and segments[1] in ("_search", "_history", "$validate", "$emergency-summary"):
        return ("{type}", segments[1]), segments[:1]
    if n == 3 and segments[2] in ("_history", "$everything", "$validate",
                                  "$emergency-summary"):
        return ("{type}", "{id}", segments[2]), segments[:2]
    if n == 4 and segments[2] == "_history":
        return ("{type}", "{id}", "_history", "{vid}"), [segments[0], segments[1], segments[3]]
    if n <= 2:
        return ("{type}", "{id}")[:n], segments
    return tuple(segments), []


class FhirRouter:
    def __init__(self, repository: Repository, interceptors: InterceptorChain | None = None,
                 *, settings: Any = None) -> None:
        self.repository = repository
        self.interceptors = interceptors or InterceptorChain()
        self.settings = settings

    def route(self, req: FhirRequest) -> tuple[Interaction, Handler, list[str]]:
        segments = req.segments
        shape, captured = _shape(segments)
        methods = ROUTES.get(shape)
        if methods is None:
            raise NotFound(f"no FHIR endpoint at {req.path!r}")
        if captured and shape[0] == "{type}" and not is_resource_type(captured[0]):
            raise NotFound(f"{captured[0]!r} is not an R4 resource type",
                           code="not-supported")
        if shape == ("{type}", "{id}", "$everything") and captured[0] not in EVERYTHING_TYPES:
            # R4 defines $everything for Patient only: on another type it is an unknown
            # operation (it would otherwise answer with the Patient compartment of that id)
            raise NotFound(f"$everything is not defined for {captured[0]} "
                           f"(only {', '.join(sorted(EVERYTHING_TYPES))})",
                           code="not-supported")
        method = "GET" if req.method == "HEAD" else req.method
        if method not in methods:
            raise MethodNotAllowed(
                f"{req.method} is not allowed on {req.path or 'the base'}; "
                f"allowed: {', '.join(sorted(methods))}",
                headers={"Allow": ", ".join(sorted(methods))})
        name, handler = methods[method]
        if name == "batch" and isinstance(req.body, dict):
            name = "transaction" if req.body.get("type") == "transaction" else "batch"
        rtype = captured[0] if captured and shape[0] == "{type}" else None
        rid = captured[1] if len(captured) > 1 else None
        return Interaction(name, rtype, rid), handler, captured

    def handle(self, req: FhirRequest, *, ctx: FhirContext | None = None) -> FhirResponse:
        interaction, handler, captured = self.route(req)
        ctx = ctx or FhirContext(self.repository, self.interceptors)
        interactions.prepare_conditional(req)  # before interceptors narrow the criteria
        try:
            self.interceptors.on_request(req, interaction)
            if interaction.name == "batch" or interaction.name == "transaction":
                response = handler(ctx, req, self)
            else:
                response = handler(ctx, req, *captured)
        except GatewayError as exc:
            self.interceptors.on_failure(req, interaction, exc)
            raise
        self.interceptors.on_response(req, interaction, response)
        return response
