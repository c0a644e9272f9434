"""The validator's shortcuts for invariants give the answers fhirpathpy gives.

Guards skip an expression when the element it tests is absent; native checks replace an
expression with Python. Both are checked here against fhirpathpy on every node of every
example they apply to (ours, UK Core's and the R4 specification's), and on variants.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from fhir_gateway.validation.invariants import (
    FAST,
    GUARDS,
    NATIVE,
    compile_invariant,
    evaluate_fhirpath,
    values_only,
)
from validation_kit import EXAMPLES, REPO, UKCORE

CONSTRAINTS: dict[str, dict[str, Any]] = {}
for path in sorted((REPO / "profiles" / "generated").glob("StructureDefinition-*.json")):
    for element in json.loads(path.read_text())["snapshot"]["element"]:
        for c in element.get("constraint", []):
            CONSTRAINTS.setdefault(c["key"], c)


def corpus() -> list[dict[str, Any]]:
    files = [*EXAMPLES.glob("*.json"), *(UKCORE / "examples").glob("*.json"),
             *(REPO / "tests" / "fixtures" / "r4-examples").glob("*/*.json")]
    return [json.loads(p.read_text()) for p in sorted(files)]


RESOURCES = corpus()


def _under(resource: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """The nodes at `path` (dotted, from the resource) that are JSON objects."""
    found: list[Any] = [resource]
    for part in path.split("."):
        nxt: list[Any] = []
        for node in found:
            value = node.get(part) if isinstance(node, dict) else None
            nxt.extend(value if isinstance(value, list) else [value] if value else [])
        found = nxt
    return [n for n in found if isinstance(n, dict)]


def _extensions(resource: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("extension", "modifierExtension") and isinstance(item, list):
                    out.extend(i for i in item if isinstance(i, dict))
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(resource)
    return out


#: key -> (resource type or None for any, nodes to test, the FHIRPath base of those nodes)
WHERE = {
    "dom-2": (None, lambda r: [r], None),
    "dom-4": (None, lambda r: [r], None),
    "dom-5": (None, lambda r: [r], None),
    "dom-6": (None, lambda r: [r], None),
    "obs-6": ("Observation", lambda r: [r], None),
    "obs-7": ("Observation", lambda r: [r], None),
    "cpl-3": ("CarePlan", lambda r: _under(r, "activity"), "CarePlan.activity"),
    "sev-1": ("AuditEvent", lambda r: _under(r, "entity"), "AuditEvent.entity"),
    "ext-1": (None, _extensions, "Extension"),
    "scr-id-1": (None, lambda r: _under(r, "identifier"), "Identifier"),
    "scr-prov-1": ("Provenance", lambda r: [r], None),
    "scr-prov-2": ("Provenance", lambda r: [r], None),
    "scr-subj-1": (None, lambda r: [r], None),
    "scr-cpr-1": (None, lambda r: [r], None),
}

ODS = "https://fhir.nhs.uk/Id/ods-organization-code"


def _provenance_variants(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Every way the two Provenance invariants can come out, in R4 shapes and others."""
    agent = {"who": {"identifier": {"system": ODS, "value": "RXA"}}}
    other = {"who": {"identifier": {"system": "urn:x", "value": "RXA"}}}
    return [{**node, "agent": a} for a in (
        [agent], [other], [other, agent], [], None,
        [{"who": {"identifier": {"system": ODS}}}],
        [{"who": {"identifier": {"value": "RXA"}}}],
        [{"who": {"identifier": {"system": ODS, "value": ""}}}],
        [{"who": {"identifier": {"system": ODS, "value": None}}}],
        [{"who": {"identifier": {"system": ODS, "_value": {"extension": []}}}}],
        [{"who": {"reference": "Organization/1"}}], [{}], [{"who": {}}],
        [{"who": [{"identifier": {"system": ODS, "value": "RXA"}}]}],
        [{"who": {"identifier": [{"system": ODS, "value": "RXA"}]}}],
        [{"who": {"identifier": {"system": ODS.upper(), "value": "RXA"}}}],
        [{"who": {"identifier": {"system": ODS, "value": 5}}}], agent)] + \
        [{**node, "entity": e} for e in (
            [{"role": "source"}], [{"role": "derivation"}], [], None,
            [{"role": "derivation"}, {"role": "source"}], [{}], [{"role": None}],
            [{"_role": {"extension": []}}], [{"role": "Source"}], {"role": "source"})]


def _subject_variants(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Every way scr-subj-1 can come out, in R4 shapes and others."""
    bare = {k: v for k, v in node.items() if k != "subject"}
    return [bare] + [{**bare, "subject": s} for s in (
        {"reference": "Patient/1"}, {"reference": "#p"}, {"reference": "#"},
        {"reference": ""}, {"reference": None}, {"reference": 5}, {},
        {"identifier": {"system": "urn:x", "value": "1"}}, {"display": "x"},
        {"reference": "https://example.org/fhir/Patient/1"},
        {"_reference": {"extension": []}}, {"reference": "Patient/1", "_reference": {}},
        [{"reference": "Patient/1"}], [{"reference": "#p"}], [], None, "Patient/1")] + \
        [{**bare, "subject": {"reference": "Patient/1"}, "_subject": {"extension": []}}]


def _cpr_variants(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Every way scr-cpr-1 can come out, in R4 shapes and others."""
    sct = "http://snomed.info/sct"
    bare = {k: v for k, v in node.items() if not k.startswith(("value", "_value"))}
    yes, no = {"system": sct, "code": "450475007"}, {"system": sct, "code": "450476008"}
    out = [bare, {**bare, "resourceType": "Patient"}]
    for concept in ({"coding": [yes]}, {"coding": [yes, no]}, {"coding": [no, yes, no]},
                    {"coding": [yes, yes]}, {"coding": []}, {"coding": None}, {},
                    {"text": "x"}, {"coding": [{"system": "urn:x", "code": "450475007"}, no]},
                    {"coding": [yes, {"code": "450476008"}]},
                    {"coding": [yes, {**no, "_code": {"extension": []}}]},
                    {"coding": [yes, {"system": sct, "code": 450476008}]},
                    {"coding": [yes, {"system": None, "code": "450476008"}]},
                    {"coding": [yes, "x"]}, {"coding": {"system": sct, "code": "1"}},
                    [{"coding": [yes, no]}], "x"):
        out.append({**bare, "valueCodeableConcept": concept})
        out.append({**bare, "valueCodeableConcept": concept, "valueString": "x"})
        out.append({**bare, "value": concept})
        out.append({k: v for k, v in {**bare, "valueCodeableConcept": concept}.items()
                    if k != "resourceType"})
    out.append({**bare, "valueString": "x"})
    out.append({**bare, "valueQuantity": {"value": 1}})
    out.append({**bare, "_valueString": {"extension": []}})
    return out


def _obs_7_variants(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Every way obs-7 can come out: a component coded as the Observation, or not."""
    sct = "http://snomed.info/sct"
    own = {"system": sct, "code": "304251008"}
    bare = {k: v for k, v in node.items() if k not in ("code", "component")}
    out = []
    for code in ({"coding": [own]}, {"coding": [own, {"system": sct, "code": "1"}]},
                 {"text": "x"}, {"coding": []}, None, [{"coding": [own]}]):
        for component in ([{"code": {"coding": [own]}}], [{"code": {"coding": [
                {**own, "display": "x"}]}}], [{"code": {"coding": [{"system": sct, "code": "2"},
                                                                   own]}}],
                          [{"code": {"coding": [{**own, "_code": {"extension": []}}]}}],
                          [{"code": {"text": "x"}}], [{}], [], {"code": {"coding": [own]}},
                          [{"code": [{"coding": [own]}]}], [{"code": {"coding": own}}]):
            for value in ({"valueString": "x"}, {}, {"_valueString": {"extension": []}}):
                v = {**bare, **value, "component": component}
                out.append(v if code is None else {**v, "code": code})
    return out


def test_every_shortcut_is_compared() -> None:
    assert set(WHERE) == (set(NATIVE) | set(GUARDS) | set(FAST)) - {"dom-3"}


def _outcome(run: Any) -> object:
    """True/False, or the type of the exception (odd shapes may make fhirpathpy raise)."""
    try:
        return run()
    except Exception as exc:
        return type(exc)


@pytest.mark.parametrize("key", sorted(WHERE))
def test_shortcut_matches_fhirpathpy(key: str) -> None:
    constraint = CONSTRAINTS[key]
    rtype, select, base = WHERE[key]
    invariant = compile_invariant(constraint, base)
    assert invariant is not None
    checked = 0
    for resource in RESOURCES:
        if rtype and resource.get("resourceType") != rtype:
            continue
        env = {"resource": resource, "rootResource": resource}
        for node in select(resource):
            variants = [node]
            for name in GUARDS.get(key, ()):  # also with the guarded element present
                if name not in node:
                    variants.append({**node, name: [{"text": "x"}]})
            if key == "ext-1":  # both, and neither
                variants.append({**node, "extension": [{"url": "u", "valueString": "x"}],
                                 "valueString": "y"})
                variants.append({"url": node.get("url", "u")})
            if key == "scr-id-1":
                variants.extend([{"value": "1"}, {"system": "urn:x"}])
            if key.startswith("scr-prov-"):
                variants.extend(_provenance_variants(node))
            if key == "scr-subj-1":
                variants.extend(_subject_variants(node))
            if key == "scr-cpr-1":
                variants.extend(_cpr_variants(node))
            if key == "obs-7" and checked < 200:  # the variants of a few Observations:
                variants.extend(_obs_7_variants(node))  # each is its own shapes' test
            for v in variants:
                # FHIRPath reads a primitive's value whatever its extensions: fhirpathpy
                # is the reference for the values alone (`values_only`)
                # obs-7 runs on the resource: its %resource is the node itself
                given = {"resource": v, "rootResource": v} if key == "obs-7" else env
                plain = {k: values_only(x) for k, x in given.items()}
                expected = _outcome(lambda v=v, plain=plain: evaluate_fhirpath(
                    constraint["expression"], values_only(v), plain, base) == [True])
                assert _outcome(lambda v=v, given=given: invariant.check(v, given)) \
                    == expected, (key, v)
                checked += 1
    assert checked >= 4


def test_dom_3_native() -> None:
    """dom-3 (fhirpathpy cannot run R4's expression): contained must be referenced."""
    invariant = compile_invariant(CONSTRAINTS["dom-3"])
    assert invariant is not None
    obs = json.loads((EXAMPLES / "Observation-cpr.json").read_text())
    assert invariant.check(obs, {})
    obs["contained"] = [{"resourceType": "Patient", "id": "p"}]
    assert not invariant.check(obs, {})  # contained but not referenced
    referenced = copy.deepcopy(obs)
    referenced["subject"] = {"reference": "#p"}
    assert invariant.check(referenced, {})
    back = copy.deepcopy(obs)  # the contained resource refers to its container
    back["contained"][0]["link"] = [{"other": {"reference": "#"}, "type": "seealso"}]
    assert invariant.check(back, {})


def test_has_value_is_supplied_for_fhirpathpy() -> None:
    assert evaluate_fhirpath("start.hasValue()", {"start": "2020-01-01"}, {}) == [True]
    assert evaluate_fhirpath("start.hasValue()", {"end": "2020-01-01"}, {}) == [False]
