"""Structural checks on an incoming resource: JSON shape, type, id, and the R4B model.

Profile rules (cardinality beyond the base, bindings, invariants) are a later stage
(`profiles/`); this module answers only "is this a well-formed R4 resource of the type
the caller said?" and reports every problem it finds, each with a FHIRPath location.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from ..errors import BadRequest, InvalidResource, Issue
from . import types

#: FHIR R4 id: 1-64 of [A-Za-z0-9-.] (R4 2.24.0.3, `id` datatype).
ID_PATTERN = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


def check_resource(
    body: Any, *, expected_type: str | None = None, where: str = "request body",
    model: bool = True,
) -> dict[str, Any]:
    """Return `body` as a resource dict, or raise BadRequest/InvalidResource listing why.

    `model=False` checks only the envelope (type, id): a batch Bundle's entries are each
    validated as they run, so one bad entry fails that entry, not the whole batch.
    """
    if body is None:
        raise BadRequest(f"{where} is empty; a FHIR JSON resource was expected")
    if not isinstance(body, dict):
        raise BadRequest(f"{where} must be a JSON object holding a FHIR resource")
    rtype = body.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise InvalidResource(f"{where} has no resourceType", expression="resourceType")
    if not types.is_resource_type(rtype):
        raise InvalidResource(
            f"{where}: {rtype!r} is not an R4 resource type", expression="resourceType"
        )
    if expected_type is not None and rtype != expected_type:
        raise InvalidResource(
            f"{where} holds a {rtype} but was sent to the {expected_type} endpoint",
            expression="resourceType",
        )
    if "id" in body and not is_valid_id(body["id"]):
        raise InvalidResource(
            f"{where}: id {str(body['id'])[:80]!r} is not a FHIR id (1-64 of A-Z a-z 0-9 - .)",
            expression=f"{rtype}.id",
        )
    model_class = types.model_for(rtype) if model else None
    if model_class is not None:
        try:
            model_class.model_validate(body)
        except ValidationError as exc:
            raise InvalidResource(
                f"{where} is not a valid {rtype}: {len(exc.errors())} problem(s)",
                issues=_issues(rtype, exc),
            ) from exc
        except (ValueError, TypeError) as exc:  # model validators that raise directly
            raise InvalidResource(f"{where} is not a valid {rtype}: {exc}") from exc
    return body


def _issues(rtype: str, exc: ValidationError) -> list[Issue]:
    issues = []
    for err in exc.errors(include_url=False):
        path = _fhirpath(rtype, err.get("loc", ()))
        msg = str(err.get("msg", "invalid"))
        code = "structure" if err.get("type") == "extra_forbidden" else "value"
        if err.get("type") == "extra_forbidden":
            msg = "unknown element (not in the R4 definition of this type)"
        issues.append(Issue(diagnostics=f"{path}: {msg}", code=code, expression=(path,)))
    return issues


def _fhirpath(rtype: str, loc: tuple[Any, ...]) -> str:
    out = rtype
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("__root__",):
            continue
        else:
            out += f".{part}"
    return out
