"""`$validate` (R4 OperationDefinition Resource-validate), type and instance level.

Answers an OperationOutcome with one issue per problem: structure (the R4 model) and the
gateway's profiles (the ones the resource names, or the `profile` parameter), each with
severity, code, FHIRPath `expression` and diagnostics. Nothing is stored.
"""

from __future__ import annotations

from typing import Any

from .. import jsonio
from ..errors import BadRequest, Issue, information, operation_outcome
from ..validation import default_validator
from .interactions import FhirContext, require_id
from .request import FhirRequest, FhirResponse
from .validation import check_references, check_resource


def _from_parameters(body: dict[str, Any]) -> tuple[Any, str | None]:
    resource, profile = None, None
    parameters = body.get("parameter") or []
    if not isinstance(parameters, list):
        raise BadRequest("Parameters.parameter must be a list", expression="parameter")
    for p in parameters:
        if not isinstance(p, dict):
            continue
        if p.get("name") == "resource":
            resource = p.get("resource")
        elif p.get("name") == "profile":
            profile = p.get("valueUri") or p.get("valueCanonical")
            if not isinstance(profile, str):
                raise BadRequest("the 'profile' parameter needs a valueUri or "
                                 "valueCanonical string", expression="profile")
    return resource, profile


def validate(ctx: FhirContext, req: FhirRequest, rtype: str,
             rid: str | None = None) -> FhirResponse:
    body, profile = req.body, dict(req.params).get("profile")
    if isinstance(body, dict) and body.get("resourceType") == "Parameters" and rtype != \
            "Parameters":
        body, given = _from_parameters(body)
        profile = profile or given
    if body is None and rid is not None:
        stored = ctx.repository.read(rtype, require_id(rid), session=ctx.session)
        body = jsonio.loads_trusted(stored.body or "{}")
    if body is None:
        raise BadRequest("$validate needs a resource: the body, or a Parameters "
                         "'resource' parameter", expression="resource")
    validator = default_validator()
    issues: list[Issue] = []
    known = bool(profile) and validator.known(profile)
    if profile and not known:
        issues.append(Issue(f"profile {profile} is not one this gateway knows",
                            code="not-supported", expression=("profile",)))
    try:
        # references only a transaction resolves are said below, beside the profile's
        # findings, so a resource meant for a transaction entry is still checked in full
        resource = check_resource(body, expected_type=rtype, where="the resource",
                                  references=False)
    except BadRequest as exc:  # structure first: profiles assume a well-formed resource
        issues += exc.issues
    else:
        if rid is not None and resource.get("id") not in (None, rid):
            issues.append(Issue(f"the resource's id {resource['id']!r} is not {rid!r}",
                                expression=(f"{rtype}.id",)))
        issues += validator.validate(resource, profile=profile if known else None)
        try:
            check_references(resource, rtype, "the resource")
        except BadRequest as exc:
            issues += exc.issues
    if not issues:
        return FhirResponse(200, information("no problems found"))
    return FhirResponse(200, operation_outcome(issues))
