"""Structural checks on an incoming resource: JSON shape, type, id, and the R4B model.

Profile rules (cardinality beyond the base, bindings, invariants) are a later stage
(`profiles/`); this module answers only "is this a well-formed R4 resource of the type
the caller said?" and reports every problem it finds, each with a FHIRPath location.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from ..errors import BadRequest, InvalidResource, Issue
from ..references import FHIR_ID
from . import json_types, types

#: A conditional reference (R4 3.1.0.11.3): a search standing for the id, `Patient?identifier=`
#: (also written absolute, `https://host/fhir/Patient?identifier=`)
_CONDITIONAL = re.compile(r"(?:[A-Za-z][A-Za-z0-9+.\-]*://[^?#]*/)?([A-Z][A-Za-z]+)\?(.*)",
                          re.DOTALL)
#: References that name an entry of the Bundle they arrive in (its fullUrl)
BUNDLE_REFERENCE_PREFIXES = ("urn:uuid:", "urn:oid:")


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and FHIR_ID.fullmatch(value) is not None


def check_resource(
    body: Any, *, expected_type: str | None = None, where: str = "request body",
    model: bool = True, references: bool = True,
) -> dict[str, Any]:
    """Return `body` as a resource dict, or raise BadRequest/InvalidResource listing why.

    `model=False` checks only the envelope (type, id): a batch Bundle's entries are each
    validated as they run, so one bad entry fails that entry, not the whole batch.
    With the model come the references: a conditional or `urn:` one is refused (400),
    since only a transaction resolves them and it rewrites them before its entries run.
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
        # the model looks a nested resource's class up by its type and raises KeyError
        # for one it has not got (a typo, "Practioner"): name the element instead
        nested = list(_nested_type_problems(body, rtype))
        if nested:
            raise InvalidResource(f"{where} is not a valid {rtype}: {nested[0].diagnostics}",
                                  issues=nested)
        try:
            model_class.model_validate(body)
        except ValidationError as exc:
            raise InvalidResource(
                f"{where} is not a valid {rtype}: {len(exc.errors())} problem(s)",
                issues=_issues(rtype, exc),
            ) from exc
        except (ValueError, TypeError) as exc:  # model validators that raise directly
            raise InvalidResource(f"{where} is not a valid {rtype}: {exc}") from exc
        except LookupError as exc:  # a model lookup the walk above did not foresee
            raise InvalidResource(f"{where} is not a valid {rtype}: it holds a resource "
                                  f"of a type that cannot be checked ({exc})") from exc
        # the model coerces ("true" -> True) and the body is stored as sent: refused
        mistyped = list(json_types.problems(body, model_class, rtype))
        if mistyped:
            raise InvalidResource(f"{where} is not a valid {rtype}: "
                                  f"{mistyped[0].diagnostics}", issues=mistyped)
    if model and references:
        check_references(body, rtype, where)
    return body


def _nested_type_problems(value: Any, path: str, *, top: bool = True) -> Iterator[Issue]:
    """An issue for each resource inside the resource (contained, Bundle.entry.resource,
    Parameters.parameter.resource) whose resourceType is not an R4 type, or is one the
    model cannot check inside another (no R4B model: accepted only on its own)."""
    if isinstance(value, dict):
        if not top and "resourceType" in value:
            nested = value["resourceType"]
            where = f"{path}.resourceType"
            if not isinstance(nested, str) or not types.is_resource_type(nested):
                shown = nested[:80] if isinstance(nested, str) else nested
                yield Issue(f"{where}: {shown!r} is not an R4 resource type",
                            code="structure", expression=(where,))
                return
            if types.model_for(nested) is None:
                yield Issue(f"{where}: {nested} cannot be checked inside another resource "
                            "(this server has no model for it); send it on its own",
                            code="not-supported", expression=(where,))
                return
        for key, item in value.items():
            if isinstance(item, dict | list):
                yield from _nested_type_problems(item, f"{path}.{key}", top=False)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _nested_type_problems(item, f"{path}[{i}]", top=False)


def conditional_reference(ref: str) -> tuple[str, str] | None:
    """(type, query) of a conditional reference such as `Patient?identifier=s|v`, else None."""
    m = _CONDITIONAL.fullmatch(ref)
    if m is None or not types.is_resource_type(m.group(1)):
        return None
    return m.group(1), m.group(2)


def is_bundle_reference(ref: str) -> bool:
    """Whether `ref` names a Bundle entry by its fullUrl (`urn:uuid:`, `urn:oid:`)."""
    return ref.startswith(BUNDLE_REFERENCE_PREFIXES)


def references(resource: dict[str, Any], rtype: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(FHIRPath of the element, the Reference holding it) for each `reference` string.

    A Bundle nested in the resource (or the resource itself, if a Bundle) is not entered:
    its `urn:uuid:` references name its own entries (a document Bundle's), not anything
    of the request it arrives in. Contained resources are part of the resource: entered.
    The dict may be changed in place (its `reference` replaced) while iterating."""
    if rtype != "Bundle":
        yield from _references(resource, rtype)


#: elements named `reference` that are a uri, not a Reference's (R4: DetectedIssue.reference,
#: Expression.reference, Immunization.education.reference): told by their siblings
_URI_REFERENCE_HOLDERS = frozenset({"DetectedIssue"})
_URI_REFERENCE_SIBLINGS = frozenset({"language", "expression", "documentType",
                                     "publicationDate", "presentationDate"})


def _references(value: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(value, dict):
        if value.get("resourceType") == "Bundle":
            return
        uri = value.get("resourceType") in _URI_REFERENCE_HOLDERS or bool(
            _URI_REFERENCE_SIBLINGS & value.keys())
        for key, item in value.items():
            if key == "reference" and isinstance(item, str) and not uri:
                yield f"{path}.reference", value
            elif isinstance(item, dict | list):
                yield from _references(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _references(item, f"{path}[{i}]")


def check_references(body: dict[str, Any], rtype: str, where: str) -> None:
    """Refuse what only a transaction can resolve: a conditional reference, or one naming
    a Bundle entry. Stored as written, it would point at nothing: a search and a
    `Patient?subject=` lookup would never find the record it was meant for."""
    issues = []
    for path, holder in references(body, rtype):
        ref = holder["reference"]
        if conditional_reference(ref) is not None:
            issues.append(Issue(
                f"{path}: a conditional reference ({ref[:80]!r}) is resolved only inside a "
                "transaction Bundle; give the resource's literal reference (Type/id)",
                expression=(path,)))
        elif is_bundle_reference(ref):
            issues.append(Issue(
                f"{path}: {ref[:80]!r} names an entry of a transaction Bundle; outside one "
                "it names nothing; give the resource's literal reference (Type/id)",
                expression=(path,)))
    if issues:
        raise BadRequest(f"{where}: {len(issues)} reference(s) that cannot be resolved",
                         issues=issues)


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
