"""Index values extracted from a resource at write time, one extractor per parameter type.

Each search parameter's FHIRPath selects elements; the extractor for its type turns each
element into typed values (`store.base.IndexEntry`). Elements an extractor cannot read
(a malformed date in a resource the model accepted, say) are returned as warnings, never
silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from ..references import literal_reference
from ..store.base import (
    DateValue,
    IndexEntry,
    IndexValue,
    NumberValue,
    ReferenceValue,
    StringValue,
    TokenValue,
)
from .registry import SearchParam, SearchRegistry
from .values import MAX_INSTANT, MIN_INSTANT, BadDate, date_range, normalize, number_value

#: A local reference, `Type/id[/_history/v]` (R4 3.1.1.4.12). An absolute URL is another
#: server's resource: indexed by its URL only, never as a local Patient.


@dataclass(slots=True)
class Extracted:
    entries: list[IndexEntry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    compartments: set[str] = field(default_factory=set)


#: ContactPoint.system codes: a kind of contact, not a namespace for the value.
_CONTACT_KINDS = frozenset({"phone", "fax", "email", "pager", "url", "sms", "other"})


def _tokens(node: Any) -> Iterable[TokenValue]:
    if isinstance(node, bool):
        yield TokenValue(None, "true" if node else "false")
    elif isinstance(node, str | int):
        yield TokenValue(None, str(node))
    elif not isinstance(node, dict):
        return
    elif "coding" in node or ("text" in node and "value" not in node and "code" not in node):
        text = node.get("text")  # CodeableConcept: :text searches its text and displays
        for coding in node.get("coding") or []:
            yield TokenValue(coding.get("system"), coding.get("code"),
                             normalize(coding.get("display") or ""))
        if text:
            yield TokenValue(None, None, normalize(text))
    elif "value" in node:  # Identifier (system|value) or ContactPoint (value)
        system = node.get("system")
        if system in _CONTACT_KINDS:
            system = None
        type_text = (node.get("type") or {}).get("text") if isinstance(node.get("type"), dict) \
            else None
        yield TokenValue(system, str(node["value"]), normalize(type_text or ""))
    elif "code" in node:  # Coding
        yield TokenValue(node.get("system"), node.get("code"), normalize(node.get("display") or ""))


_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
_ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")


def _strings(node: Any) -> Iterable[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        parts = _NAME_PARTS if ("family" in node or "given" in node) else _ADDRESS_PARTS
        for key in parts:
            value = node.get(key)
            for v in value if isinstance(value, list) else [value]:
                if isinstance(v, str):
                    yield v


def _period(node: dict[str, Any]) -> tuple[str, str]:
    """A Period's range: open ends are unbounded."""
    lo = date_range(node["start"])[0] if node.get("start") else MIN_INSTANT
    hi = date_range(node["end"])[1] if node.get("end") else MAX_INSTANT
    return lo, hi


def _timing(node: dict[str, Any]) -> Iterable[tuple[str, str]]:
    """R4 3.1.1.4.7: only a Timing's outer limits count: from its earliest event or bounds
    start to its latest event or bounds end. `boundsDuration` and `boundsRange` are
    lengths, not dates, so they bound nothing here."""
    spans = [date_range(e) for e in node.get("event") or []]
    repeat = node.get("repeat")
    bounds = repeat.get("boundsPeriod") if isinstance(repeat, dict) else None
    if isinstance(bounds, dict) and (bounds.get("start") or bounds.get("end")):
        spans.append(_period(bounds))
    if spans:
        yield min(lo for lo, _ in spans), max(hi for _, hi in spans)


def _dates(node: Any) -> Iterable[tuple[str, str]]:
    if isinstance(node, str):
        yield date_range(node)
    elif isinstance(node, dict):
        if "start" in node or "end" in node:  # Period
            yield _period(node)
        elif "event" in node or "repeat" in node:  # Timing
            yield from _timing(node)
    elif hasattr(node, "isoformat") or node is not None:  # fhirpathpy FP_DateTime etc.
        yield date_range(str(node))


#: the value indexed for a reference given by identifier only: present for `:missing`,
#: while no search matches it (searched references are Type/id, an id or a URL)
IDENTIFIER_ONLY = ReferenceValue(None, None, "")


def _references(node: Any, local_base: str | None = None) -> Iterable[ReferenceValue]:
    ref = node.get("reference") if isinstance(node, dict) else node
    if ref is None and isinstance(node, dict) and isinstance(node.get("identifier"), dict) \
            and node["identifier"].get("value"):
        yield IDENTIFIER_ONLY  # the element is there (R4 3.1.1.4.3), found by :identifier
        return
    if not isinstance(ref, str) or ref.startswith("#"):
        return
    local = ref[len(local_base) + 1:] if local_base and ref.startswith(local_base + "/") \
        else ref  # an absolute URL at this server's own base is a local reference
    named = literal_reference(local)
    if named is not None and named.relative and named.has_fhir_id:
        yield ReferenceValue(named.type, named.id, ref)
    else:  # canonical or absolute URL to something not Type/id shaped
        yield ReferenceValue(None, None, ref)


def _numbers(node: Any) -> Iterable[NumberValue]:
    """A stored number is the value itself (R4 3.1.1.4.6: the search value carries the
    implied precision, not the resource). A Quantity is findable by its unit code and by
    its human unit (3.1.1.4.11)."""
    if isinstance(node, dict):
        if "value" not in node:
            return
        value = number_value(node["value"])  # ValueError: not a number
        units = {(node.get("system"), node.get("code"))} if node.get("code") else set()
        if node.get("unit"):
            units.add((node.get("system") if not node.get("code") else None, node["unit"]))
        for system, code in sorted(units, key=str) or [(None, None)]:
            yield NumberValue(value, value, system, code)
    elif not isinstance(node, bool) and node is not None:
        value = number_value(node)
        yield NumberValue(value, value)


def values_for(param: SearchParam, node: Any,
               local_base: str | None = None) -> list[IndexValue]:
    if param.type == "token":
        return [v for v in _tokens(node) if v.code is not None or v.text]
    if param.type == "string":
        return [StringValue(normalize(s), s) for s in _strings(node) if s]
    if param.type == "uri":
        return [StringValue(node, node)] if isinstance(node, str) else []
    if param.type == "date":
        return [DateValue(lo, hi) for lo, hi in _dates(node)]
    if param.type == "reference":
        return list(_references(node, local_base))
    if param.type in ("number", "quantity"):
        return list(_numbers(node))
    return []


@cache
def patient_compartment() -> dict[str, frozenset[str]]:
    """Per type, the parameters whose Patient reference puts a resource in that Patient's
    compartment (R4 CompartmentDefinition/patient, extracted to data/)."""
    raw = resources.files("fhir_gateway.data").joinpath("compartment_patient.json")
    members = json.loads(raw.read_text("utf-8"))["resources"]
    return {rtype: frozenset(params) for rtype, params in members.items()}


def _companions(param: SearchParam, node: Any) -> Iterable[IndexEntry]:
    """Values for the `:of-type` (Identifier) and `:identifier` (Reference) modifiers,
    indexed as tokens under `<code>:of-type` and `<code>:identifier`."""
    if not isinstance(node, dict):
        return
    if param.type == "token" and "value" in node and isinstance(node.get("type"), dict):
        for coding in node["type"].get("coding") or []:
            if coding.get("system") and coding.get("code"):
                yield IndexEntry(f"{param.code}:of-type", TokenValue(
                    f"{coding['system']}|{coding['code']}", str(node["value"])))
    elif param.type == "reference" and isinstance(node.get("identifier"), dict):
        ident = node["identifier"]
        if ident.get("value"):
            yield IndexEntry(f"{param.code}:identifier",
                             TokenValue(ident.get("system"), str(ident["value"])))


def _patient_deceased(resource: dict[str, Any]) -> list[Any] | None:
    """`Patient.deceased.exists() and Patient.deceased != false` (Patient-deceased) for the
    two common shapes: no deceased[x] (false), or a plain deceasedBoolean (itself). None:
    any other shape (a dateTime, a primitive extension, nulls), left to fhirpathpy."""
    keys = [k for k in resource if k.startswith(("deceased", "_deceased"))]
    if not keys:
        return [False]
    if keys == ["deceasedBoolean"] and isinstance(resource["deceasedBoolean"], bool):
        return [resource["deceasedBoolean"]]
    return None


#: Python for expressions the compiled extractors (`compiled.py`) leave to fhirpathpy and
#: that every write of a common type evaluates (Patient-deceased: on every Patient, ~1 ms
#: under fhirpathpy); None from one means "ask fhirpathpy". Keyed by (type, expression as
#: the registry resolved it); `tests/test_compiled_extractors.py` compares them.
FAST_EXPRESSIONS: dict[tuple[str, str], Callable[[dict[str, Any]], list[Any] | None]] = {
    ("Patient", "Patient.deceased.exists() and Patient.deceased != false"): _patient_deceased,
}


def _evaluator(rtype: str, param: SearchParam) -> Callable[[dict[str, Any]], list[Any]]:
    fast = FAST_EXPRESSIONS.get((rtype, param.expression or ""))
    if fast is None:
        return param.evaluate

    def evaluate(resource: dict[str, Any]) -> list[Any]:
        found = fast(resource)
        return param.evaluate(resource) if found is None else found

    return evaluate


#: per type: (code, parameter, its evaluation, whether it puts a resource in a Patient's
#: compartment) for each indexed parameter, in the registry's order
_Plan = list[tuple[str, SearchParam, Callable[[dict[str, Any]], list[Any]], bool]]


class IndexExtractor:
    """Extracts every indexed parameter of a resource's type (see module docstring)."""

    def __init__(self, registry: SearchRegistry) -> None:
        self.registry = registry
        # Per type, worked out once: which parameters are indexed, and which count for the
        # compartment (the registry is fixed once built).
        self._plans: dict[str, _Plan] = {}

    def _plan(self, rtype: str) -> _Plan:
        plan = self._plans.get(rtype)
        if plan is None:
            compartment_params = patient_compartment().get(rtype, frozenset())
            plan = [(code, param, _evaluator(rtype, param), code in compartment_params)
                    for code, param in self.registry.params(rtype).items() if param.indexed]
            self._plans[rtype] = plan
        return plan

    def extract(self, resource: dict[str, Any], *, local_base: str | None = None) -> Extracted:
        """`local_base`: this server's FHIR base URL, so absolute references to it index as
        the local references they are (R4 3.1.1.4.12)."""
        rtype = resource["resourceType"]
        out = Extracted()
        for code, param, evaluate, in_compartment in self._plan(rtype):
            try:
                nodes = evaluate(resource)
            except Exception as exc:
                out.warnings.append(f"{rtype}.{code}: expression failed: {exc}")
                continue
            for node in nodes:
                try:
                    values = values_for(param, node, local_base)
                except (BadDate, ValueError, TypeError, KeyError) as exc:
                    out.warnings.append(f"{rtype}.{code}: cannot index {str(node)[:60]!r}: {exc}")
                    continue
                out.entries.extend(IndexEntry(code, v) for v in values)
                out.entries.extend(_companions(param, node))
                if in_compartment and param.type == "reference":
                    out.compartments.update(
                        v.target_id for v in values
                        if isinstance(v, ReferenceValue) and v.target_type == "Patient"
                        and v.target_id
                    )
        if rtype == "Patient" and resource.get("id"):
            out.compartments.add(resource["id"])
        return out
