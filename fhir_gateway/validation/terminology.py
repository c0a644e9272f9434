"""The codes of each ValueSet shipped in ``profiles/``, for checking required bindings.

Only what the profiles package carries is used: the project's ValueSets (enumerated codes,
or whole project CodeSystems) and the R4 ValueSets the build copied, expanded, for the
base specification's required bindings. A ValueSet that is not there, or that cannot be
enumerated, is *unchecked*: :meth:`Terminology.codes` returns None and the validator
says so (``ProfileValidator.unchecked_bindings``) instead of guessing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CodeSet:
    """The (system, code) pairs of one ValueSet, and its codes alone (for ``code`` elements)."""

    url: str
    title: str
    pairs: frozenset[tuple[str, str]]
    codes: frozenset[str]

    def describe(self, limit: int = 8) -> str:
        shown = sorted(f"{code}" for _, code in self.pairs)
        more = f", ... ({len(shown)} in all)" if len(shown) > limit else ""
        return f"{self.title} ({', '.join(shown[:limit])}{more})"


class Terminology:
    def __init__(self, resources: Iterable[dict[str, Any]]) -> None:
        self._code_systems: dict[str, dict[str, Any]] = {}
        self._value_sets: dict[str, dict[str, Any]] = {}
        for r in resources:
            if r.get("resourceType") == "CodeSystem":
                self._code_systems[r["url"]] = r
            elif r.get("resourceType") == "ValueSet":
                self._value_sets[r["url"]] = r
        self._sets: dict[str, CodeSet | None] = {}

    def codes(self, url: str) -> CodeSet | None:
        """The codes of ValueSet `url` (``|version`` ignored), or None when not enumerable."""
        url = url.split("|", 1)[0]
        if url not in self._sets:
            self._sets[url] = self._build(url, depth=0)
        return self._sets[url]

    def _build(self, url: str, depth: int) -> CodeSet | None:
        vs = self._value_sets.get(url)
        if vs is None or depth > 5:
            return None
        pairs: set[tuple[str, str]] = set()
        expansion = vs.get("expansion", {}).get("contains")
        if expansion is not None:
            _walk_contains(expansion, pairs)
        else:
            compose = vs.get("compose", {})
            if compose.get("exclude"):
                return None
            for inc in compose.get("include", []):
                if inc.get("filter"):
                    return None
                for ref in inc.get("valueSet", []):
                    inner = self._build(ref.split("|", 1)[0], depth + 1)
                    if inner is None:
                        return None
                    pairs |= inner.pairs
                system = inc.get("system")
                if not system:
                    continue
                if inc.get("concept"):
                    pairs.update((system, c["code"]) for c in inc["concept"])
                    continue
                cs = self._code_systems.get(system)
                if cs is None or cs.get("content", "complete") != "complete":
                    return None
                _walk_concepts(system, cs.get("concept", []), pairs)
        title = vs.get("title") or vs.get("name") or url
        return CodeSet(url, title, frozenset(pairs), frozenset(c for _, c in pairs))


def _walk_contains(items: list[dict[str, Any]], out: set[tuple[str, str]]) -> None:
    for item in items:
        if "code" in item and not item.get("abstract"):
            out.add((item.get("system", ""), item["code"]))
        _walk_contains(item.get("contains", []), out)


def _walk_concepts(system: str, concepts: list[dict[str, Any]],
                   out: set[tuple[str, str]]) -> None:
    for c in concepts:
        out.add((system, c["code"]))
        _walk_concepts(system, c.get("concept", []), out)
