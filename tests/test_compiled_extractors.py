"""Compiled extractors give exactly the index values fhirpathpy gives, on official examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_gateway import jsonio
from fhir_gateway.search.compiled import compile_expression
from fhir_gateway.search.extract import (
    FAST_EXPRESSIONS,
    IndexExtractor,
    patient_compartment,
    values_for,
)
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


def _deceased_variants() -> list[dict]:
    base = {"resourceType": "Patient", "id": "p"}
    return [base] + [{**base, **extra} for extra in (
        {"deceasedBoolean": True}, {"deceasedBoolean": False}, {"deceasedBoolean": None},
        {"deceasedBoolean": "true"}, {"deceasedBoolean": 1}, {"deceasedBoolean": 0},
        {"deceasedDateTime": "2020-01-01"}, {"deceasedDateTime": "2020-01-01T10:00:00Z"},
        {"_deceasedBoolean": {"extension": [{"url": "u", "valueString": "x"}]}},
        {"deceasedBoolean": True, "_deceasedBoolean": {"id": "x"}},
        {"deceasedBoolean": True, "deceasedDateTime": "2020"}, {"deceased": True},
        {"deceasedString": "yes"}, {"deceasedBoolean": [True]})]


def test_fast_expressions_match_fhirpathpy() -> None:
    """The Python for expressions compiled.py leaves to fhirpathpy (extract.FAST_EXPRESSIONS)
    answers as fhirpathpy does, or defers to it, on the examples and on variants."""
    registry = default_registry()
    assert FAST_EXPRESSIONS
    for (rtype, expression), fast in FAST_EXPRESSIONS.items():
        params = [p for p in registry.params(rtype).values() if p.expression == expression]
        assert params, (rtype, expression)  # still what the registry resolves
        resources = [r for r in (jsonio.parse(p.read_bytes()) for p in EXAMPLES)
                     if r.get("resourceType") == rtype]
        if rtype == "Patient":
            resources += _deceased_variants()
        answered = 0
        for resource in resources:
            found = fast(resource)
            if found is None:
                continue
            for param in params:
                assert _values(param, found) == _values(param, param.fhirpath()(resource)), \
                    (rtype, expression, resource)
            answered += 1
        assert answered >= 3


def test_extractor_uses_fast_expressions_with_the_same_entries() -> None:
    """IndexExtractor with and without FAST_EXPRESSIONS: the same entries, in order."""
    registry = default_registry()
    patients = [r for r in (jsonio.parse(p.read_bytes()) for p in EXAMPLES)
                if r.get("resourceType") == "Patient"] + _deceased_variants()
    fast = IndexExtractor(registry)
    slow = IndexExtractor(registry)
    # param.evaluate: the compiled extractor, or fhirpathpy (for Patient-deceased)
    slow._plans = {"Patient": [(code, param, param.evaluate, code in
                                patient_compartment().get("Patient", frozenset()))
                               for code, param in registry.params("Patient").items()
                               if param.indexed]}
    for resource in patients:
        a, b = fast.extract(resource), slow.extract(resource)
        assert (a.entries, a.compartments) == (b.entries, b.compartments), resource
