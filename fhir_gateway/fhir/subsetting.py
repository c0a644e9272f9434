"""`_summary` and `_elements` (R4 3.1.1.5.7-8): returning part of each resource.

Which elements are "summary" and which are mandatory comes from the fhir.resources R4B
model metadata (the specification's isSummary and min > 0), computed once per type.
A subsetted resource is tagged SUBSETTED, as the specification requires.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from .types import model_for

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
             "code": "SUBSETTED", "display": "Resource encoded in summary mode"}
_ALWAYS = frozenset({"resourceType", "id", "meta"})


@cache
def _element_sets(rtype: str) -> tuple[frozenset[str], frozenset[str], dict[str, str]]:
    """(summary elements, mandatory elements, choice element -> its base name)."""
    model = model_for(rtype)
    summary: set[str] = set()
    mandatory: set[str] = set()
    choices: dict[str, str] = {}
    if model is None:
        return frozenset(), frozenset(), {}
    for name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        json_name = info.alias or name
        if extra.get("summary_element_property"):
            summary.add(json_name)
        if extra.get("element_required") or extra.get("one_of_many_required"):
            mandatory.add(json_name)
        if extra.get("one_of_many"):
            choices[json_name] = str(extra["one_of_many"])
    return frozenset(summary), frozenset(mandatory), choices


def _tagged(resource: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    kept["meta"] = meta
    return kept


def summarize(resource: dict[str, Any], mode: str) -> dict[str, Any]:
    """Apply `_summary=true|text|data` to one resource."""
    rtype = resource["resourceType"]
    summary, mandatory, _ = _element_sets(rtype)
    if mode == "data":
        return _tagged(resource, {k: v for k, v in resource.items() if k != "text"})
    if mode == "text":
        keep = _ALWAYS | mandatory | {"text"}
    elif mode == "true":
        if not summary:  # no model: nothing is known to be summary, so keep it whole
            return resource
        keep = _ALWAYS | summary | mandatory
    else:
        return resource
    return _tagged(resource, {k: v for k, v in resource.items() if k in keep})


def select_elements(resource: dict[str, Any], elements: list[str]) -> dict[str, Any]:
    """Apply `_elements=a,b`: those top-level elements, plus id, meta and mandatory ones."""
    _, mandatory, choices = _element_sets(resource["resourceType"])
    wanted = set(elements)
    kept = {
        k: v for k, v in resource.items()
        if k in _ALWAYS or k in mandatory or k in wanted or choices.get(k) in wanted
        or (k.startswith("_") and k[1:] in wanted)
    }
    return _tagged(resource, kept)
