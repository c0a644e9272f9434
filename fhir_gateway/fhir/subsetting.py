"""`_summary` and `_elements` (R4 3.1.1.5.7-9): returning part of each resource.

Which top-level elements are "summary" and which are mandatory (min >= 1) comes from the
R4 StructureDefinitions (`data/r4_elements.json`, extracted by scripts/extract_spec_data.py).
A choice element (`value[x]`) is kept whichever type it has. A subsetted resource is
tagged SUBSETTED, as the specification requires.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
             "code": "SUBSETTED", "display": "Resource encoded in summary mode"}
_ALWAYS = frozenset({"resourceType", "id", "meta"})


@cache
def _elements() -> dict[str, dict[str, frozenset[str]]]:
    raw = resources.files("fhir_gateway.data").joinpath("r4_elements.json").read_text("utf-8")
    return {t: {k: frozenset(v) for k, v in flags.items()}
            for t, flags in json.loads(raw)["types"].items()}


def _keep(resource: dict[str, Any], names: frozenset[str] | set[str]) -> dict[str, Any]:
    kept = {}
    for key, value in resource.items():
        bare = key.lstrip("_")
        if key in _ALWAYS or bare in names or _choice_of(bare, names):
            kept[key] = value
    return kept


def _choice_of(key: str, names: frozenset[str] | set[str]) -> bool:
    return any(key.startswith(n) and len(key) > len(n) and key[len(n)].isupper()
               for n in names)


def _tagged(resource: dict[str, Any], kept: dict[str, Any]) -> dict[str, Any]:
    meta = dict(resource.get("meta") or {})
    meta["tag"] = [*meta.get("tag", []), SUBSETTED]
    kept["meta"] = meta
    return kept


def summarize(resource: dict[str, Any], mode: str) -> dict[str, Any]:
    """Apply `_summary=true|text|data` to one resource."""
    flags = _elements().get(resource["resourceType"], {})
    mandatory = flags.get("mandatory", frozenset())
    if mode == "data":
        return _tagged(resource, {k: v for k, v in resource.items() if k != "text"})
    if mode == "text":
        return _tagged(resource, _keep(resource, mandatory | {"text"}))
    if mode == "true":
        return _tagged(resource, _keep(resource, flags.get("summary", frozenset()) | mandatory))
    return resource


def select_elements(resource: dict[str, Any], elements: list[str]) -> dict[str, Any]:
    """Apply `_elements=a,b`: those top-level elements, plus id, meta and mandatory ones."""
    mandatory = _elements().get(resource["resourceType"], {}).get("mandatory", frozenset())
    return _tagged(resource, _keep(resource, set(elements) | mandatory))
