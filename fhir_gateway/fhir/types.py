"""The R4 resource types the gateway serves, and the fhir.resources model that checks each.

The type list comes from the R4 specification (`data/r4_resource_types.json`, extracted by
`scripts/extract_spec_data.py`). Structure is checked with the fhir.resources R4B models,
which accept R4 content for every type except those R4B removed or reshaped; those are
listed in `data/r4b_model_gaps.json` and in the CapabilityStatement.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from fhir.resources.R4B import get_fhir_model_class


def _data(name: str) -> Any:
    return json.loads(resources.files("fhir_gateway.data").joinpath(name).read_text("utf-8"))


@cache
def resource_types() -> frozenset[str]:
    """Every concrete R4 resource type."""
    return frozenset(_data("r4_resource_types.json")["resourceTypes"])


@cache
def model_gaps() -> dict[str, Any]:
    return _data("r4b_model_gaps.json")


@cache
def unvalidated_types() -> frozenset[str]:
    """R4 types without a usable R4B model: accepted with the gateway's base checks only."""
    gaps = model_gaps()
    names = set(gaps["r4TypesWithoutR4BModel"])
    names.update(
        t["resourceType"] for t in gaps["typesWithR4BFailures"]
        if any(cause.startswith("r4b-model-change") for cause in t["causes"])
    )
    return frozenset(names & resource_types())


@cache
def model_for(rtype: str) -> Any | None:
    """The fhir.resources R4B model class that validates `rtype`, or None."""
    if rtype in unvalidated_types():
        return None
    try:
        return get_fhir_model_class(rtype)
    except (KeyError, ValueError, AttributeError, ImportError):
        return None


def is_resource_type(name: str) -> bool:
    return name in resource_types()
