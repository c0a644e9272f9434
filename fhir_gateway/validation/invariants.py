"""Profile invariants (ElementDefinition.constraint), compiled once with fhirpathpy.

Every invariant in the gateway's profiles is evaluated with its FHIRPath expression,
with three refinements, each checked against fhirpathpy by
``tests/validation/test_invariants.py``:

- *Guards*: some base R4 invariants are true whenever an element is absent (``dom-2``
  to ``dom-5`` when there is no ``contained``; ``obs-6`` without ``dataAbsentReason``;
  ``obs-7`` without ``component``).
  The guard skips the FHIRPath evaluation in that case; the result is the same.
- *Native*: a few invariants evaluated on many elements have an exact Python equivalent
  (``scr-id-1``, ``ext-1``, ``dom-6``), and one, ``dom-3``, that fhirpathpy cannot run
  as R4 wrote it (``as()`` on a collection), is implemented in Python.
- *Fast*: the two Provenance invariants (``scr-prov-1``, ``scr-prov-2``), run on every
  ingested record's Provenance, and ``scr-subj-1`` and ``scr-cpr-1``, run on most
  ingested resources, are answered in Python for the shapes R4 allows (lists of
  objects, string values); any other shape goes to fhirpathpy. So is ``obs-7``, whose
  expression fhirpathpy runs in time quadratic in the codings (`intersect` compares
  every pair): a body of a few thousand codings held the store's write lock for minutes.
- *Primitive extensions*: FHIRPath compares a primitive by its value, which its
  extensions (``_code``) do not change; fhirpathpy reads a primitive that has them as an
  object, so ``code = '450476008'`` was false for it (a CPR decision with both codes, one
  extended, passed ``scr-cpr-1``, and a valid ``_reference`` failed ``scr-subj-1``).
  Every check here reads values and passes over ``_name`` keys (``values_only``).
- *Structural*: ``ele-1`` (every element has a value or children) is on every element
  of every snapshot, and ``scr-nhs-1`` (the NHS number Modulus 11 check) applies to every
  NHS number; the validator checks both while walking the resource instead.

fhirpathpy 2.x lacks ``hasValue()``; it is supplied here (true for a single primitive).
An invariant fhirpathpy cannot compile is not silently dropped: the plan keeps it as
*unsupported* and ``ProfileValidator.unsupported_invariants`` lists it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

_MODEL = models["r4"]


def _has_value(inputs: list[Any]) -> list[bool]:
    return [len(inputs) == 1 and not isinstance(inputs[0], (dict, list)) and
            inputs[0] is not None]


OPTIONS = {"userInvocationTable": {"hasValue": {"fn": _has_value, "arity": {0: []}}}}

#: Invariants that are true whenever none of these child elements is present.
GUARDS: dict[str, tuple[str, ...]] = {
    "dom-2": ("contained",),
    "dom-3": ("contained",),
    "dom-4": ("contained",),
    "dom-5": ("contained",),
    "obs-6": ("dataAbsentReason",),
    "obs-7": ("component",),
    "cpl-3": ("detail",),
    "sev-1": ("name",),
}


def _ext_1(node: Any) -> bool:
    if not isinstance(node, dict):
        return True
    has_value = any(k.startswith("value") for k in node)
    return ("extension" in node and bool(node["extension"])) != has_value


def _strings(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        for v in node.values():
            _strings(v, out)
    elif isinstance(node, list):
        for v in node:
            _strings(v, out)
    elif isinstance(node, str) and node.startswith("#"):
        out.add(node)


def _dom_3(node: Any) -> bool:
    """dom-3: each contained resource is referred to ('#id') from the resource, or itself
    refers to its container ('#'). fhirpathpy cannot run the R4 expression (it applies
    ``as()`` to collections), so this is the rule in Python; as the expression does, any
    reference, canonical or uri in the resource counts (here: any string '#id')."""
    contained = node.get("contained") if isinstance(node, dict) else None
    if not contained:
        return True
    everywhere: set[str] = set()
    _strings(node, everywhere)
    for c in contained:
        if not isinstance(c, dict):
            continue
        if f"#{c.get('id', '')}" in everywhere:
            continue
        inside: set[str] = set()
        _strings(c, inside)
        if "#" not in inside:
            return False
    return True


def _dom_6(node: Any) -> bool:
    text = node.get("text") if isinstance(node, dict) else None
    return isinstance(text, dict) and bool(text.get("div"))


def _scr_id_1(node: Any) -> bool:
    """system.exists() and value.exists(): a JSON null is no value."""
    return isinstance(node, dict) and node.get("system") is not None \
        and node.get("value") is not None


#: Exact Python equivalents of invariants evaluated on many elements.
NATIVE: dict[str, Callable[[Any], bool]] = {
    "dom-3": _dom_3,
    "scr-id-1": _scr_id_1,
    "ext-1": _ext_1,
    "dom-6": _dom_6,
}

ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"


def _dicts(value: Any) -> list[dict[str, Any]] | None:
    """`value` as a list of JSON objects (absent: empty); None for any other shape."""
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return value
    return None


def values_only(node: Any) -> Any:
    """`node` without its primitive extensions (`_name` keys), the same object when it has
    none: what FHIRPath compares (see the module docstring)."""
    if isinstance(node, dict):
        kept = {k: values_only(v) for k, v in node.items() if not k.startswith("_")}
        same = len(kept) == len(node) and all(kept[k] is node[k] for k in kept)
        return node if same else kept
    if isinstance(node, list):
        items = [values_only(v) for v in node]
        return node if all(a is b for a, b in zip(items, node, strict=True)) else items
    return node


def _scr_prov_1(node: Any) -> bool | None:
    """agent.where(who.identifier.system = ODS and who.identifier.value.exists()).exists()"""
    agents = _dicts(node.get("agent")) if isinstance(node, dict) else None
    if agents is None:
        return None
    idents = []
    for agent in agents:  # every agent's shape first: an odd one anywhere defers
        who = agent.get("who")
        ident = who.get("identifier") if isinstance(who, dict) else None
        if (who is not None and not isinstance(who, dict)) or \
                (ident is not None and not isinstance(ident, dict)):
            return None
        if ident and (not isinstance(ident.get("system", ""), str)
                      or not isinstance(ident.get("value", ""), str)):
            return None  # nulls, odd types: fhirpathpy decides
        idents.append(ident or {})
    return any(i.get("system") == ODS_SYSTEM and "value" in i for i in idents)


def _scr_prov_2(node: Any) -> bool | None:
    """entity.where(role = 'source').exists()"""
    entities = _dicts(node.get("entity")) if isinstance(node, dict) else None
    if entities is None or any(not isinstance(e.get("role", ""), str) for e in entities):
        return None
    return any(e.get("role") == "source" for e in entities)


def _scr_subj_1(node: Any) -> bool | None:
    """subject.reference.exists() and subject.reference.startsWith('#').not()"""
    if not isinstance(node, dict):
        return None
    if "subject" not in node:
        return False
    subject = node["subject"]
    if not isinstance(subject, dict):
        return None
    if "reference" not in subject:
        return False
    ref = subject["reference"]
    if not isinstance(ref, str) or not ref:
        return None  # null, odd types, "": fhirpathpy decides
    return not ref.startswith("#")


SNOMED = "http://snomed.info/sct"
#: the two CPR decision codes scr-cpr-1 allows one of (for, not for, attempted CPR)
_CPR_CODES = frozenset({"450475007", "450476008"})


def _scr_cpr_1(node: Any) -> bool | None:
    """value.ofType(CodeableConcept).coding.where(system = SNOMED and (code = '450475007'
    or code = '450476008')).code.distinct().count() <= 1, on an Observation (whose model
    makes `value` the choice element value[x])."""
    if not isinstance(node, dict) or node.get("resourceType") != "Observation":
        return None
    values = [k for k in node if k.startswith("value")]
    if not values:
        return True
    if values != ["valueCodeableConcept"]:
        return None  # another value[x] (or several): fhirpathpy decides
    concept = node["valueCodeableConcept"]
    if not isinstance(concept, dict):
        return None
    codings = _dicts(concept.get("coding")) if "coding" in concept else []
    if codings is None:
        return None
    codes = set()
    for coding in codings:
        if not isinstance(coding.get("system", ""), str) \
                or not isinstance(coding.get("code", ""), str):
            return None  # nulls, odd types
        if coding.get("system") == SNOMED and coding.get("code") in _CPR_CODES:
            codes.add(coding["code"])
    return len(codes) <= 1


def _obs_7(node: Any) -> bool | None:
    """value.empty() or component.code.where(coding.intersect(%resource.code.coding)
    .exists()).empty(), on an Observation: a component coded as the Observation itself
    carries the value, not the Observation. Linear: each coding is compared by its JSON."""
    if not isinstance(node, dict) or not any(k.startswith("value") for k in node):
        return True if isinstance(node, dict) else None
    code, components = node.get("code"), _dicts(node.get("component"))
    if components is None or (code is not None and not isinstance(code, dict)):
        return None
    own = _codings(code)
    if own is None:
        return None
    keys = {_coding_key(c) for c in own}
    for component in components:
        theirs = component.get("code")
        if theirs is not None and not isinstance(theirs, dict):
            return None
        codings = _codings(theirs)
        if codings is None:
            return None
        if any(_coding_key(c) in keys for c in codings):
            return False
    return True


def _codings(concept: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    return _dicts((concept or {}).get("coding"))


def _coding_key(coding: dict[str, Any]) -> str:
    return json.dumps(values_only(coding), sort_keys=True)


#: Python for invariants on every ingested resource, for the shapes R4 allows; None
#: (anything else) leaves the answer to fhirpathpy. (scr-subj-1 and scr-cpr-1 were half
#: of the fhirpathpy calls of a demo load: on every Observation, Encounter and CarePlan,
#: and on each Observation profile tried.)
FAST: dict[str, Callable[[Any], bool | None]] = {
    "scr-prov-1": _scr_prov_1,
    "scr-prov-2": _scr_prov_2,
    "scr-subj-1": _scr_subj_1,
    "scr-cpr-1": _scr_cpr_1,
    "obs-7": _obs_7,
}

#: Checked by the validator's walk, not by expression: ele-1 on every element, and
#: scr-nhs-1 (the NHS number check digit), which the walk applies to every Identifier
#: with the NHS number system, in any profile, with :func:`is_valid_nhs_number`.
STRUCTURAL = frozenset({"ele-1", "scr-nhs-1"})


@dataclass(frozen=True, slots=True)
class Invariant:
    key: str
    severity: str
    human: str
    expression: str
    check: Callable[[Any, dict[str, Any]], bool]


def compile_invariant(constraint: dict[str, Any], base: str | None = None) -> Invariant | None:
    """An Invariant ready to run, or None when fhirpathpy cannot compile the expression.

    `base` is the FHIR type (``Extension``) or element path (``Observation.component``) of
    the nodes it will run on, so that fhirpathpy resolves choice elements (``value`` is
    ``valueQuantity``) there as it does at a resource's root.
    """
    key = constraint["key"]
    expression = constraint.get("expression", "")
    native = NATIVE.get(key)
    if native is not None:
        def check(node: Any, env: dict[str, Any], _f: Callable[[Any], bool] = native) -> bool:
            return _f(node)
    else:
        try:
            compiled = fhirpathpy.compile(expression, _MODEL, OPTIONS)
        except Exception:
            return None
        guard = GUARDS.get(key)
        fast = FAST.get(key)

        def check(node: Any, env: dict[str, Any], _c: Any = compiled,
                  _g: tuple[str, ...] | None = guard, _b: str | None = base,
                  _f: Callable[[Any], bool | None] | None = fast) -> bool:
            if _g is not None and isinstance(node, dict) and not any(k in node for k in _g):
                return True
            if _f is not None and (answer := _f(node)) is not None:
                return answer  # (the fast checks read values only: no copy needed)
            node = values_only(node)
            if _b is not None and isinstance(node, dict):
                node = ResourceNode.create_node(node, _b)
            return _c(node, _values_env(env)) == [True]
    return Invariant(key, constraint.get("severity", "error"), constraint.get("human", key),
                     expression, check)


def _values_env(env: dict[str, Any]) -> dict[str, Any]:
    resource = env.get("resource")
    stripped = values_only(resource)
    if stripped is resource:
        return env
    return {**env, "resource": stripped, "rootResource": values_only(env.get("rootResource"))}


def evaluate_fhirpath(expression: str, node: Any, env: dict[str, Any],
                      base: str | None = None) -> list[Any]:
    """Evaluate `expression` with fhirpathpy as the plan would without shortcuts (tests)."""
    if base is not None and isinstance(node, dict):
        node = ResourceNode.create_node(node, base)
    return fhirpathpy.compile(expression, _MODEL, OPTIONS)(node, env)
