"""Compiled extractors give exactly the index values fhirpathpy gives, on official examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_gateway import jsonio
from fhir_gateway.search.compiled import compile_expression
from fhir_gateway.search.extract import values_for
from fhir_gateway.search.registry import SearchParam, default_registry

EXAMPLES = sorted((Path(__file__).parent / "fixtures" / "r4-examples").rglob("*.json"))


def _values(param: SearchParam, nodes: list) -> list[str]:
    out = []
    for node in nodes:
        try:
            out.extend(values_for(param, node))
        except (ValueError, TypeError, KeyError):
            out.append("unreadable")
    return sorted(map(repr, out))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_compiled_matches_fhirpathpy(path: Path) -> None:
    resource = jsonio.parse(path.read_bytes())
    rtype = resource["resourceType"]
    compared = 0
    for code, param in default_registry().params(rtype).items():
        if not param.indexed:
            continue
        fast = compile_expression(param.expression, rtype)
        if fast is None:
            continue
        expected = _values(param, param.fhirpath()(resource))
        assert _values(param, fast(resource)) == expected, f"{rtype}.{code}: {param.expression}"
        compared += 1
    assert compared > 0


def test_most_official_expressions_compile() -> None:
    registry = default_registry()
    for rtype in ("Patient", "Encounter", "Observation", "CarePlan", "Consent", "Provenance",
                  "RelatedPerson", "Flag", "DocumentReference", "DetectedIssue", "AuditEvent"):
        params = [p for p in registry.params(rtype).values() if p.indexed]
        slow = [p.code for p in params if compile_expression(p.expression, rtype) is None]
        assert len(slow) <= 2, (rtype, slow)
