"""Compiled extractors: the common FHIRPath shapes of search expressions as plain Python.

fhirpathpy costs about 1 ms per resource across a type's parameters, too slow for partner
ingestion. Nearly every official expression is a path with a few functions:
`Type.a.b`, `x.ofType(T)` / `x.as(T)` on choice elements, `where(reference.matches('re'))`
(our rewrite of `resolve() is T`), `where(field='literal')`, `extension('url')` and unions.
Those compile here into closures; anything else returns None and the registry keeps
fhirpathpy for it. A test checks both agree on every official example.

Choice elements and types come from fhirpathpy's R4 model (`choiceTypePaths`,
`path2Type`), so `Observation.effective` finds `effectiveDateTime` and `effectivePeriod`
and nothing that merely starts with "effective".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fhirpathpy.models import models

from ..jsonio import dumps

_MODEL = models["r4"]
_CHOICES: dict[str, list[str]] = _MODEL["choiceTypePaths"]
_TYPES: dict[str, str] = _MODEL["path2Type"]
_ELSEWHERE: dict[str, str] = _MODEL["pathsDefinedElsewhere"]

Node = tuple[Any, str]  # a value and its model type (or model path, for backbone elements)
Step = Callable[[list[Node]], list[Node]]
Extractor = Callable[[dict[str, Any]], list[Any]]

_TOKEN = re.compile(
    r"\s*(?:"
    r"(?P<where_ref>where\(reference\.matches\('(?P<regex>(?:[^'\\]|\\.)*)'\)\))"
    r"|(?P<where_eq>where\((?P<field>[A-Za-z]+)\s*=\s*'(?P<literal>[^']*)'\))"
    r"|(?P<oftype>(?:ofType|as)\((?P<type>[A-Za-z]+)\))"
    r"|(?P<ext>extension\('(?P<url>[^']*)'\))"
    r"|(?P<name>[A-Za-z][A-Za-z0-9]*)"
    r"|(?P<dot>\.)|(?P<open>\()|(?P<close>\))"
    r")"
)


def _child_type(path: str) -> str:
    """The model type name of the element at `path` (its path, for backbone elements)."""
    path = _ELSEWHERE.get(path, path)
    kind = _TYPES.get(path)
    if kind is None or kind in ("BackboneElement", "Element"):
        return path
    return kind


def _navigate(name: str) -> Step:
    def step(nodes: list[Node]) -> list[Node]:
        out: list[Node] = []
        for value, kind in nodes:
            if not isinstance(value, dict):
                continue
            path = _ELSEWHERE.get(f"{kind}.{name}", f"{kind}.{name}")
            choices = _CHOICES.get(path)
            keys = [(name + t[0].upper() + t[1:], t) for t in choices] if choices \
                else [(name, _child_type(path))]
            for key, child_kind in keys:
                if key not in value:
                    continue
                child = value[key]
                if choices:
                    child_kind = child_kind[0].lower() + child_kind[1:] \
                        if child_kind[0].lower() + child_kind[1:] in _PRIMITIVES else child_kind
                for item in child if isinstance(child, list) else [child]:
                    if item is not None:
                        out.append((item, child_kind))
        return out

    return step


_PRIMITIVES = frozenset({
    "boolean", "integer", "string", "decimal", "uri", "url", "canonical", "base64Binary",
    "instant", "date", "dateTime", "time", "code", "oid", "id", "markdown", "unsignedInt",
    "positiveInt", "uuid",
})


def _of_type(type_name: str) -> Step:
    wanted = type_name.lower()
    return lambda nodes: [(v, k) for v, k in nodes if k.lower() == wanted]


def _where_reference(regex: str) -> Step:
    pattern = re.compile(regex.replace("\\'", "'"))
    return lambda nodes: [
        (v, k) for v, k in nodes
        if isinstance(v, dict) and isinstance(v.get("reference"), str)
        and pattern.search(v["reference"])
    ]


def _where_equals(field: str, literal: str) -> Step:
    return lambda nodes: [(v, k) for v, k in nodes
                          if isinstance(v, dict) and v.get(field) == literal]


def _extension(url: str) -> Step:
    def step(nodes: list[Node]) -> list[Node]:
        return [(e, "Extension") for v, _ in nodes if isinstance(v, dict)
                for e in v.get("extension") or [] if isinstance(e, dict) and e.get("url") == url]

    return step


def _compile_part(part: str, rtype: str) -> Callable[[dict[str, Any]], list[Node]] | None:
    steps: list[Step] = []
    pos, expect_name, first = 0, True, True
    while pos < len(part):
        m = _TOKEN.match(part, pos)
        if not m or m.end() == pos:
            return None
        pos = m.end()
        if m.group("open") or m.group("close"):
            continue  # grouping parentheses around a path do not change its value
        if m.group("dot"):
            if expect_name:
                return None
            expect_name = True
            continue
        if not expect_name:
            return None
        expect_name = False
        if m.group("name"):
            if first:
                first = False
                if m.group("name") == rtype:
                    continue
                if not m.group("name")[0].islower():  # another type's part: not ours
                    return None
            steps.append(_navigate(m.group("name")))
        elif first:
            return None
        elif m.group("oftype"):
            steps.append(_of_type(m.group("type")))
        elif m.group("where_ref"):
            steps.append(_where_reference(m.group("regex")))
        elif m.group("where_eq"):
            steps.append(_where_equals(m.group("field"), m.group("literal")))
        elif m.group("ext"):
            steps.append(_extension(m.group("url")))
    if first or expect_name:
        return None

    def run(resource: dict[str, Any]) -> list[Node]:
        nodes: list[Node] = [(resource, rtype)]
        for step in steps:
            nodes = step(nodes)
            if not nodes:
                break
        return nodes

    return run


def compile_expression(expression: str, rtype: str) -> Extractor | None:
    """A fast extractor for `expression` on `rtype`, or None when it needs full FHIRPath."""
    from .registry import split_union

    parts = [_compile_part(p.strip(), rtype) for p in split_union(expression)]
    if not parts or any(p is None for p in parts):
        return None
    compiled = [p for p in parts if p is not None]

    if len(compiled) == 1:
        only = compiled[0]
        return lambda resource: [v for v, _ in only(resource)]

    def union(resource: dict[str, Any]) -> list[Any]:
        out: list[Any] = []  # FHIRPath `|` keeps one of each equal item
        seen: set[str] = set()
        for run in compiled:
            for value, _ in run(resource):
                key = dumps(value)  # by written form: 1.00 and 1.0 stay distinct
                if key not in seen:
                    seen.add(key)
                    out.append(value)
        return out

    return union
