"""A profile's snapshot compiled once into a tree of rules the validator walks.

Each ElementDefinition of the snapshot becomes a :class:`Rule`: its JSON name (choice
elements under each allowed type's name), cardinality, fixed and pattern values, required
binding (resolved to a code set), allowed reference target types, compiled invariants,
children and slices (with the discriminator values each slice is recognised by). Nothing
is looked up by id or parsed while a resource is being validated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .invariants import STRUCTURAL, Invariant, compile_invariant
from .terminology import CodeSet, Terminology

CORE_SD = "http://hl7.org/fhir/StructureDefinition/"
UKCORE_SD = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-"
FHIRPATH_TYPE = "http://hl7.org/fhirpath/System."


def is_primitive(type_code: str) -> bool:
    return type_code[:1].islower() or type_code.startswith(FHIRPATH_TYPE)


def json_suffix(type_code: str) -> str:
    """``valueDateTime`` for ``dateTime``: the type name as it follows a choice stem."""
    return type_code[:1].upper() + type_code[1:]


@dataclass(slots=True)
class Binding:
    strength: str
    url: str
    codes: CodeSet | None


@dataclass(slots=True)
class Discriminator:
    type: str
    path: str


@dataclass(slots=True)
class Rule:
    id: str
    path: str
    name: str
    choice: bool
    min: int
    max: int | None
    array: bool
    types: tuple[str, ...]
    short: str
    type_profiles: tuple[str, ...] = ()
    fixed: Any = None
    pattern: Any = None
    binding: Binding | None = None
    targets: frozenset[str] | None = None
    invariants: list[Invariant] = field(default_factory=list)
    children: dict[str, Rule] = field(default_factory=dict)
    keys: dict[str, tuple[Rule, str | None]] = field(default_factory=dict)
    required: list[Rule] = field(default_factory=list)
    discriminators: list[Discriminator] = field(default_factory=list)
    slicing_closed: bool = False
    slices: list[Rule] = field(default_factory=list)
    slice_name: str | None = None
    #: For a slice: (discriminator path, "fixed"|"pattern", value) it is recognised by.
    slice_keys: list[tuple[str, str, Any]] | None = None
    content_ref: str | None = None

    @property
    def label(self) -> str:
        return self.short or self.path


@dataclass(slots=True)
class Plan:
    url: str
    name: str
    type: str
    root: Rule
    unchecked_bindings: dict[str, str]
    unsupported_invariants: dict[str, str]
    unmatchable_slices: list[str]


def target_type(url: str, profile_types: dict[str, str]) -> str | None:
    """The resource type a targetProfile URL stands for, or None if unknown."""
    url = url.split("|", 1)[0]
    if url in profile_types:
        return profile_types[url]
    if url.startswith(CORE_SD):
        return url[len(CORE_SD):]
    if url.startswith(UKCORE_SD):  # UKCore-Observation-Lab is an Observation
        return url[len(UKCORE_SD):].split("-", 1)[0]
    return None


def _value_of(element: dict[str, Any], prefix: str) -> tuple[bool, Any]:
    for key, value in element.items():
        if key.startswith(prefix) and key != prefix:
            return True, value
    return False, None


def compile_plan(sd: dict[str, Any], terminology: Terminology,
                 profile_types: dict[str, str]) -> Plan:
    elements = sd["snapshot"]["element"]
    by_id: dict[str, Rule] = {}
    plan = Plan(sd["url"], sd.get("title") or sd["name"], sd["type"], None,  # type: ignore[arg-type]
                {}, {}, [])
    for el in elements:
        rule = _rule(el, terminology, profile_types, plan)
        by_id[rule.id] = rule
        if "." not in rule.id:
            plan.root = rule
            continue
        parent_id, last = rule.id.rsplit(".", 1)
        if ":" in last:
            sliced = by_id[f"{parent_id}.{last.split(':', 1)[0]}"]
            sliced.slices.append(rule)
        else:
            by_id[parent_id].children[rule.name] = rule
    for rule in by_id.values():
        if rule.content_ref:
            target = by_id.get(rule.content_ref.lstrip("#"))
            if target is not None:
                rule.children = target.children
                rule.invariants = rule.invariants or target.invariants
        _index(rule)
        for s in rule.slices:
            s.slice_keys = _slice_keys(rule, s)
            if s.slice_keys is None:
                plan.unmatchable_slices.append(s.id)
    return plan


def _rule(el: dict[str, Any], terminology: Terminology, profile_types: dict[str, str],
          plan: Plan) -> Rule:
    path = el["path"]
    last = path.rsplit(".", 1)[-1]
    choice = last.endswith("[x]")
    name = last[:-3] if choice else last
    types = tuple(t["code"] for t in el.get("type", []))
    max_ = el.get("max", "*")
    base_max = el.get("base", {}).get("max", max_)
    rule = Rule(
        id=el["id"], path=path, name=name, choice=choice, min=int(el.get("min", 0)),
        max=None if max_ == "*" else int(max_), array=base_max != "1" and "." in path,
        types=types, short=el.get("short", ""), slice_name=el.get("sliceName"),
        content_ref=el.get("contentReference"),
        type_profiles=tuple(p for t in el.get("type", []) for p in t.get("profile", [])),
    )
    has_fixed, fixed = _value_of(el, "fixed")
    if has_fixed:
        rule.fixed = ("fixed", fixed)
    has_pattern, pattern = _value_of(el, "pattern")
    if has_pattern:
        rule.pattern = ("pattern", pattern)
    binding = el.get("binding")
    if binding and binding.get("strength") == "required" and binding.get("valueSet"):
        codes = terminology.codes(binding["valueSet"])
        rule.binding = Binding("required", binding["valueSet"], codes)
        if codes is None:
            plan.unchecked_bindings[el["id"]] = binding["valueSet"]
    targets: set[str] = set()
    any_target = False
    for t in el.get("type", []):
        if t["code"] != "Reference":
            continue
        profiles = t.get("targetProfile", [])
        if not profiles:
            any_target = True
        for url in profiles:
            rtype = target_type(url, profile_types)
            if rtype is None or rtype == "Resource":
                any_target = True
            else:
                targets.add(rtype)
    if targets and not any_target:
        rule.targets = frozenset(targets)
    for c in el.get("constraint", []):
        if c["key"] in STRUCTURAL or not c.get("expression"):
            continue
        inv = compile_invariant(c, _fhirpath_base(path, types))
        if inv is None:
            plan.unsupported_invariants[c["key"]] = c["expression"]
        else:
            rule.invariants.append(inv)
    slicing = el.get("slicing")
    if not slicing and name in ("extension", "modifierExtension"):
        slicing = {"discriminator": [{"type": "value", "path": "url"}], "rules": "open"}
    if slicing:
        rule.discriminators = [Discriminator(d["type"], d["path"])
                               for d in slicing.get("discriminator", [])]
        rule.slicing_closed = slicing.get("rules") == "closed"
    return rule


def _fhirpath_base(path: str, types: tuple[str, ...]) -> str | None:
    """The FHIRPath type of this element's nodes: the resource, a datatype or a backbone."""
    if "." not in path:
        return path
    if len(types) == 1 and not is_primitive(types[0]) and types[0] not in (
            "BackboneElement", "Element"):
        return types[0]
    if types and types[0] in ("BackboneElement", "Element"):
        return path
    return None


def _index(rule: Rule) -> None:
    """Map each JSON key under `rule` to the child rule (and type) it holds."""
    for child in rule.children.values():
        if child.choice:
            for t in child.types:
                rule.keys[child.name + json_suffix(t)] = (child, t)
        else:
            rule.keys[child.name] = (child, child.types[0] if len(child.types) == 1 else None)
        if child.min > 0:
            rule.required.append(child)


def _slice_keys(sliced: Rule, s: Rule) -> list[tuple[str, str, Any]] | None:
    """The (path, kind, value) tests that recognise slice `s`, or None if not derivable."""
    if not sliced.discriminators:
        return None
    keys = []
    for d in sliced.discriminators:
        if d.type not in ("value", "pattern"):
            return None
        found = (s.fixed or s.pattern) if d.path == "$this" else _descendant_value(s, d.path)
        if found is None and d.path == "url" and s.type_profiles:
            found = ("fixed", s.type_profiles[0].split("|", 1)[0])
        if found is None and d.path == "url" and "Extension" in s.types:
            # A complex extension's part is named by its slice name (R4 2.15.0.1.1).
            found = ("fixed", s.slice_name)
        if found is None:
            return None
        keys.append((d.path, found[0], found[1]))
    return keys


def _descendant_value(rule: Rule, path: str) -> tuple[str, Any] | None:
    node: Rule | None = rule
    for part in path.split("."):
        node = node.children.get(part) if node else None
    if node is None:
        return None
    return node.fixed or node.pattern
