"""Local terms to standard codes, through FHIR R4 ConceptMaps kept beside the mappings.

A mapping names a ConceptMap by its `id` (file `conceptmaps/<id>.json`). A source term
matches an `element.code` ignoring case and runs of spaces ("Care  home" = "Care Home").
Its targets with equivalence other than `unmatched`/`disjoint` become Codings (system =
the group's `target`). A term listed with only an `unmatched` target is known to have no
standard code (e.g. "Not discussed"): the lookup gives no codes, and that is not an error.

A term that is not listed at all is an error (the record is rejected naming the field),
unless the group says `"unmapped": {"mode": "provided"}`: then the source text is kept as
it was sent (a CodeableConcept with text only) and the record carries a warning. Use that
only where keeping uncoded text is safe; never for a CPR decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.abc import Traversable
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from .. import jsonio
from ..errors import BadRequest
from .errors import MappingError

_NOT_A_MATCH = {"unmatched", "disjoint"}


def _norm(term: str) -> str:
    return " ".join(str(term).split()).casefold()


@dataclass(frozen=True, slots=True)
class Translation:
    """Codes for one source term; `known` is False when the term is not in the map."""

    codings: tuple[dict[str, str], ...]
    known: bool


@dataclass(frozen=True, slots=True)
class ConceptMap:
    id: str
    file: str
    title: str
    terms: dict[str, tuple[dict[str, str], ...]]
    keeps_unmapped: bool

    def translate(self, term: str) -> Translation:
        codings = self.terms.get(_norm(term))
        if codings is None:
            return Translation((), known=False)
        return Translation(codings, known=True)


def parse_conceptmap(body: dict[str, Any], file: str) -> ConceptMap:
    """A ConceptMap resource (as parsed JSON) made ready for lookups; MappingError if bad."""
    try:
        get_fhir_model_class("ConceptMap").model_validate(body)
    except ValidationError as exc:
        raise MappingError(file, "", f"is not a valid R4 ConceptMap: {exc.errors()[0]['msg']} "
                           f"at {'.'.join(map(str, exc.errors()[0]['loc']))}") from exc
    if body.get("resourceType") != "ConceptMap" or not body.get("id"):
        raise MappingError(file, "", "must be a ConceptMap with an id")
    terms: dict[str, tuple[dict[str, str], ...]] = {}
    keeps = False
    for g, group in enumerate(body.get("group", [])):
        system = group.get("target")
        if (group.get("unmapped") or {}).get("mode") == "provided":
            keeps = True
        for e, element in enumerate(group.get("element", [])):
            code = element.get("code")
            where = f"group[{g}].element[{e}]"
            if not code:
                raise MappingError(file, where, "an element needs the source term in `code`")
            codings = []
            for target in element.get("target", []):
                if target.get("equivalence") in _NOT_A_MATCH:
                    continue
                if not system or not target.get("code"):
                    raise MappingError(file, where, "a mapped target needs the group's `target` "
                                       "system and a `code` (or equivalence `unmatched`)")
                coding = {"system": system, "code": target["code"]}
                if target.get("display"):
                    coding["display"] = target["display"]
                codings.append(coding)
            key = _norm(code)
            if key in terms and terms[key] != tuple(codings):
                raise MappingError(file, where, f"the term {code!r} is mapped twice, differently")
            terms[key] = tuple(codings)
    title = body.get("title") or body.get("name") or body["id"]
    return ConceptMap(body["id"], file, title, terms, keeps)


def load_conceptmap(map_id: str, folders: list[Traversable]) -> ConceptMap:
    """The ConceptMap `map_id` from the first folder holding `<map_id>.json`."""
    for folder in folders:
        candidate = folder.joinpath(f"{map_id}.json")
        if candidate.is_file():
            file = f"conceptmaps/{map_id}.json"
            try:
                body = jsonio.parse(candidate.read_bytes(), where=file)
            except BadRequest as exc:
                raise MappingError(file, "", str(exc)) from exc
            if not isinstance(body, dict):
                raise MappingError(file, "", "must hold one ConceptMap resource")
            if body.get("id") != map_id:
                raise MappingError(file, "id", f"the id must be {map_id!r}, the file's name")
            return parse_conceptmap(body, file)
    raise KeyError(map_id)
