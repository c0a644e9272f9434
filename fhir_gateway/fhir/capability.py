"""The CapabilityStatement, generated from what is really implemented.

Interactions come from the route table, search parameters from the registry (only those
the index holds), and the R4 types without an R4B model are named, since those are
checked with the gateway's base rules only.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..search.registry import SearchRegistry
from ..validation import default_validator
from .request import FhirRequest, FhirResponse
from .types import resource_types, unvalidated_types

if TYPE_CHECKING:
    from .interactions import FhirContext

TYPE_INTERACTIONS = ["read", "vread", "update", "delete", "history-instance",
                     "history-type", "create", "search-type"]


def capabilities(ctx: FhirContext, req: FhirRequest) -> FhirResponse:
    return FhirResponse(200, capability_statement(ctx.repository.registry, req.base_url))


def capability_statement(registry: SearchRegistry, base_url: str) -> dict[str, Any]:
    statement = dict(_static(registry))
    statement["implementation"] = {"description": "Shared care record FHIR gateway",
                                   "url": base_url}
    return statement


@cache
def _static(registry: SearchRegistry) -> dict[str, Any]:
    unvalidated = unvalidated_types()
    referrers = _referrers(registry)
    resources = []
    for rtype in sorted(resource_types()):
        params = [
            {"name": code, "type": p.type, "definition": p.url}
            for code, p in sorted(registry.params(rtype).items()) if p.indexed
        ]
        entry: dict[str, Any] = {
            "type": rtype,
            "interaction": [{"code": c} for c in TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalUpdate": True,
            "conditionalDelete": "single",
            # Only forms the search parser accepts: `Type:param` and `Type:*`, never a
            # bare `*` (refused: it would pull in every reference of every kind).
            "searchInclude": [f"{rtype}:*", *(f"{rtype}:{code}" for code, p in
                                              sorted(registry.params(rtype).items())
                                              if p.type == "reference" and p.indexed)],
            "searchRevInclude": [f"{source}:*" for source in referrers.get(rtype, ())],
            "searchParam": [{"name": "_id", "type": "token"}, *(
                p for p in params if p["name"] != "_id")],
        }
        entry["operation"] = [{
            "name": "validate",
            "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
        }]
        if rtype == "Patient":
            entry["operation"].append({
                "name": "everything",
                "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                "documentation": "The Patient's compartment (R4 CompartmentDefinition/patient),"
                                 " paged; _since, _type, _count.",
            })
            entry["operation"].append({
                "name": "emergency-summary",
                "definition": "https://fhir.shared-care-record.example/OperationDefinition/"
                              "emergency-summary",
                "documentation": "For ambulance crews: a document Bundle of the current "
                                 "emergency care facts (CPR decision first), by id or "
                                 "?identifier=https://fhir.nhs.uk/Id/nhs-number|N; "
                                 "Accept: text/html gives a printable page.",
            })
        profiles = default_validator().profiles_for(rtype)
        if profiles:
            entry["supportedProfile"] = profiles
        if rtype in unvalidated:
            entry["documentation"] = (
                "R4-only type: the fhir.resources R4B models have no matching model, so only "
                "the gateway's base checks (JSON, resourceType, id) apply."
            )
        resources.append(entry)
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "kind": "instance",
        "software": {"name": "fhir-gateway", "version": __version__},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": [],
        "rest": [{
            "mode": "server",
            "documentation": (
                "Structure is validated with the fhir.resources R4B models, which accept R4 "
                "content except for these R4-only types: " + ", ".join(sorted(unvalidated))
                + ". Known model gap: fhir.resources rejects primitive extensions "
                "(`_valueString`) inside Extension, which R4 allows."
            ),
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"},
                            {"code": "history-system"}],
        }],
    }


def _referrers(registry: SearchRegistry) -> dict[str, list[str]]:
    """For each type, the types with an indexed reference parameter that can point to it
    (a parameter naming no target types can point anywhere)."""
    out: dict[str, set[str]] = {}
    every = resource_types()
    for source in every:
        for p in registry.params(source).values():
            if p.type == "reference" and p.indexed:
                for target in p.targets or every:
                    out.setdefault(target, set()).add(source)
    return {t: sorted(sources) for t, sources in out.items()}
