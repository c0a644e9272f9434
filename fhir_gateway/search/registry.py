"""The search parameter registry, built from the official R4 SearchParameter definitions.

`data/search_parameters.json` is extracted from `Bundle-searchParams.json` of
`hl7.fhir.r4.examples@4.0.1` by `scripts/extract_spec_data.py`; nothing here is retyped.
Each parameter is resolved once, per resource type, into what indexing needs: the part
of its FHIRPath expression that applies to that type, rewritten where fhirpathpy needs it:

- `resolve() is T` -> a test on the reference text (fhirpathpy has no `resolve()`, and
  the type of a reference's target is written in the reference itself);
- `(x as T)` -> `(x.ofType(T))` (`as` fails on collections where `ofType` works);
- a leading `Resource.` / `DomainResource.` is dropped (they name the base, not a type).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import fhirpathpy
from fhirpathpy.models import models

from .compiled import compile_expression

#: Parameter types the index holds; composite and special are not indexed (yet).
INDEXED_TYPES = frozenset({"token", "string", "date", "reference", "number", "quantity", "uri"})
#: Common parameters handled by the gateway itself rather than by an index.
BUILTIN = frozenset({"_id"})

_R4_MODEL = models["r4"]


@dataclass(frozen=True, slots=True)
class SearchParam:
    code: str
    type: str
    expression: str | None  # for this resource type only, rewritten for fhirpathpy
    targets: tuple[str, ...] = ()
    url: str = ""
    modifiers: tuple[str, ...] = ()
    comparators: tuple[str, ...] = ()
    #: the definition's xpathUsage; "phonetic" needs a phonetic algorithm this gateway
    #: does not have, and a plain prefix match under that name would mislead
    usage: str = "normal"
    _compiled: list[Callable[..., list[Any]]] = field(default_factory=list, compare=False)

    @property
    def indexed(self) -> bool:
        return self.type in INDEXED_TYPES and bool(self.expression) and self.usage != "phonetic"

    def evaluate(self, resource: dict[str, Any]) -> list[Any]:
        """The values this parameter's expression selects from `resource`."""
        if not self._compiled:
            assert self.expression is not None
            fast = compile_expression(self.expression, resource["resourceType"])
            self._compiled.append(fast or self.fhirpath())
        return self._compiled[0](resource)

    def fhirpath(self) -> Callable[..., list[Any]]:
        """The expression under fhirpathpy (the reference the compiled form must match)."""
        assert self.expression is not None
        return fhirpathpy.compile(self.expression, model=_R4_MODEL)


def split_union(expression: str) -> list[str]:
    """Split a FHIRPath expression at top-level `|` (outside brackets and quotes)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(expression):
        if quote:
            if ch == quote and expression[i - 1] != "\\":
                quote = ""
        elif ch in "'\"`":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(expression[start:i].strip())
            start = i + 1
    parts.append(expression[start:].strip())
    return [p for p in parts if p]


_RESOLVE_IS = re.compile(r"where\(\s*resolve\(\)\s+is\s+([A-Za-z]+)\s*\)")
_AS_TYPE = re.compile(r"\(([^()|]+?)\s+as\s+([A-Za-z]+)\)")
_LEADING_TYPE = re.compile(r"^\(?\s*([A-Z][A-Za-z]+)\b")


def _rewrite(part: str) -> str:
    part = _RESOLVE_IS.sub(
        lambda m: f"where(reference.matches('(^|/){m.group(1)}/[^/]+(/_history/[^/]+)?$'))",
        part,
    )
    part = _AS_TYPE.sub(lambda m: f"({m.group(1)}.ofType({m.group(2)}))", part)
    return re.sub(r"^(\(?\s*)(?:Resource|DomainResource)\.", r"\1", part)


def expression_for(expression: str | None, rtype: str) -> str | None:
    """The parts of a (multi-type) expression that apply to `rtype`, rewritten."""
    if not expression:
        return None
    keep = []
    for part in split_union(expression):
        m = _LEADING_TYPE.match(part)
        head = m.group(1) if m else None
        if head in (rtype, "Resource", "DomainResource") or head is None:
            keep.append(_rewrite(part))
    return " | ".join(keep) or None


def resolved_targets(expression: str | None, rtype: str) -> tuple[str, ...] | None:
    """Target types the expression itself limits a reference to (`resolve() is Patient`
    in every part for `rtype`), or None when it does not: `Observation.patient` points
    only to Patients although the definition lists Patient and Group."""
    if not expression:
        return None
    found: list[str] = []
    for part in split_union(expression):
        m = _LEADING_TYPE.match(part)
        if m and m.group(1) not in (rtype, "Resource", "DomainResource"):
            continue
        t = _RESOLVE_IS.search(part)
        if t is None:
            return None
        found.append(t.group(1))
    return tuple(dict.fromkeys(found)) or None


class SearchRegistry:
    """Search parameters per resource type, resolved once from the R4 definitions."""

    def __init__(self, definitions: list[dict[str, Any]], resource_types: frozenset[str]) -> None:
        self._by_type: dict[str, dict[str, SearchParam]] = {t: {} for t in resource_types}
        for d in definitions:
            bases = d.get("base") or []
            for base in bases:
                targets = resource_types if base in ("Resource", "DomainResource") else {base}
                for rtype in targets & resource_types:
                    self._by_type[rtype][d["code"]] = SearchParam(
                        code=d["code"],
                        type=d["type"],
                        expression=expression_for(d.get("expression"), rtype),
                        targets=resolved_targets(d.get("expression"), rtype)
                        or tuple(d.get("target") or ()),
                        url=d.get("url", ""),
                        modifiers=tuple(d.get("modifier") or ()),
                        comparators=tuple(d.get("comparator") or ()),
                        usage=d.get("xpathUsage") or "normal",
                    )

    def has_type(self, rtype: str) -> bool:
        return rtype in self._by_type

    def params(self, rtype: str) -> dict[str, SearchParam]:
        return self._by_type.get(rtype, {})

    def get(self, rtype: str, code: str) -> SearchParam | None:
        return self._by_type.get(rtype, {}).get(code)


@cache
def default_registry() -> SearchRegistry:
    from ..fhir.types import resource_types

    raw = resources.files("fhir_gateway.data").joinpath("search_parameters.json")
    definitions = json.loads(raw.read_text("utf-8"))["parameters"]
    return SearchRegistry(definitions, resource_types())
