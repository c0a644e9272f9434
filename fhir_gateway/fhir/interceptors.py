"""The interceptor chain: where access control, consent and audit wrap every interaction.

Modelled on HAPI FHIR's interceptors: hooks at named points, each interceptor answering
for itself, state kept on the request (never in fields). Hooks, in order:

- `on_request(request, interaction)`: before anything is read or written; raise a
  `GatewayError` to refuse (e.g. 401/403, or NotFound to hide).
- `can_see(request, resource)`: before each resource is shown, in reads, search results,
  `_include`s, history and bundle entries; False hides it as if it were not there.
- `on_response(request, interaction, response)`: after success (audit).
- `on_failure(request, interaction, error)`: after a refusal or error (audit).
- `on_rolled_back(request)`: a transaction attempt that ran `request` (a Bundle entry)
  was rolled back to be retried: what the hooks noted about it did not happen.
- `before_write(request, resource, rid, session)`: just before a create or update is
  stored, inside its store session (so earlier entries of a transaction count); raise to
  refuse. `rid` is the id written, None for a new resource.
- `history_types(request)`: the resource types history may ever show this caller (None:
  no opinion), so versions of the others are passed over unread.

`before_write` and `history_types` are optional: an interceptor without them has no say.

The chain is empty until the security issue lands; tests install their own.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any, Protocol

from ..errors import GatewayError
from .request import FhirRequest, FhirResponse, Interaction


class Interceptor(Protocol):
    def on_request(self, request: FhirRequest, interaction: Interaction) -> None: ...

    def can_see(self, request: FhirRequest, resource: dict[str, Any]) -> bool: ...

    def on_response(self, request: FhirRequest, interaction: Interaction,
                    response: FhirResponse) -> None: ...

    def on_failure(self, request: FhirRequest, interaction: Interaction,
                   error: GatewayError) -> None: ...

    def on_rolled_back(self, request: FhirRequest) -> None: ...


class BaseInterceptor:
    """An interceptor that allows everything; subclass and override the hooks you need."""

    def on_request(self, request: FhirRequest, interaction: Interaction) -> None:
        return None

    def can_see(self, request: FhirRequest, resource: dict[str, Any]) -> bool:
        return True

    def on_response(self, request: FhirRequest, interaction: Interaction,
                    response: FhirResponse) -> None:
        return None

    def on_failure(self, request: FhirRequest, interaction: Interaction,
                   error: GatewayError) -> None:
        return None

    def on_rolled_back(self, request: FhirRequest) -> None:
        return None

    def before_write(self, request: FhirRequest, resource: dict[str, Any], rid: str | None,
                     session: Any) -> None:
        return None

    def history_types(self, request: FhirRequest) -> Set[str] | None:
        return None


class InterceptorChain:
    def __init__(self, interceptors: list[Interceptor] | None = None) -> None:
        self.interceptors: list[Interceptor] = list(interceptors or [])

    def add(self, interceptor: Interceptor) -> None:
        self.interceptors.append(interceptor)

    def on_request(self, request: FhirRequest, interaction: Interaction) -> None:
        for i in self.interceptors:
            i.on_request(request, interaction)

    def can_see(self, request: FhirRequest, resource: dict[str, Any]) -> bool:
        return all(i.can_see(request, resource) for i in self.interceptors)

    def on_response(self, request: FhirRequest, interaction: Interaction,
                    response: FhirResponse) -> None:
        for i in self.interceptors:
            i.on_response(request, interaction, response)

    def on_failure(self, request: FhirRequest, interaction: Interaction,
                   error: GatewayError) -> None:
        for i in self.interceptors:
            i.on_failure(request, interaction, error)

    def on_rolled_back(self, request: FhirRequest) -> None:
        for i in self.interceptors:
            i.on_rolled_back(request)

    def before_write(self, request: FhirRequest, resource: dict[str, Any], rid: str | None,
                     session: Any) -> None:
        for i in self.interceptors:
            hook = getattr(i, "before_write", None)
            if hook is not None:
                hook(request, resource, rid, session)

    def history_types(self, request: FhirRequest) -> frozenset[str] | None:
        """What every interceptor with a say allows (None when none has one)."""
        types: frozenset[str] | None = None
        for i in self.interceptors:
            hook = getattr(i, "history_types", None)
            shown = hook(request) if hook is not None else None
            if shown is not None:
                types = frozenset(shown) if types is None else types & frozenset(shown)
        return types
