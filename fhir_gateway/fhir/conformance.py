"""The gateway's conformance resources, published in the store so they can be read and
searched like any resource (`StructureDefinition?url=...`, `ValueSet?name=...`).

Sources, shipped as package data: the profiles, ValueSets and CodeSystems generated from
`profiles/input/fsh` (`profiles/generated/`), the OperationDefinitions of the gateway's
own operations (`profiles/operations/`, written by hand), and the partner ConceptMaps
beside the mappings (`mappings/conceptmaps/`). Publishing is idempotent: an unchanged definition
makes no new version, so every start-up may run it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from typing import Any

from .repository import Repository

PUBLISHED_TYPES = ("StructureDefinition", "ValueSet", "CodeSystem", "ConceptMap",
                   "OperationDefinition")


def definitions() -> Iterator[dict[str, Any]]:
    profiles = resources.files("fhir_gateway.profiles")
    folders = (profiles.joinpath("generated"), profiles.joinpath("operations"),
               resources.files("fhir_gateway.mappings").joinpath("conceptmaps"))
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir(), key=lambda p: p.name):
            if not path.name.endswith(".json"):
                continue
            body = json.loads(path.read_text("utf-8"))
            if body.get("resourceType") in PUBLISHED_TYPES and body.get("id"):
                yield body


def publish(repository: Repository) -> int:
    """Store every definition under its own id; returns how many changed."""
    changed = 0
    for body in definitions():
        result = repository.update(body, rtype=body["resourceType"], rid=body["id"])
        changed += int(result.changed)
    return changed
