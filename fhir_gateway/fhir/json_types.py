"""The JSON type of each primitive in a resource, as R4 JSON (2.6.2) requires it.

A boolean is JSON `true`/`false`, an integer and a decimal a JSON number, every other
primitive (string, code, date, dateTime, instant, ...) a JSON string. The R4B models the
gateway checks with are lax: they take `"true"`, `"yes"` or `1` as a boolean, `"72.5"` as
a decimal and `20260101` as a date, and the gateway stores the body as sent, not the model.
So a coerced value would be stored as something else than what was checked: the search
index reads `"deceasedBoolean": "true"` as deceased, while the emergency summary, reading
JSON `true` only, would not say the person has died. This walk names each such element.

The walk follows the models' own field types (one table per model class, worked out
once), so it knows every element the model knows, choice types (`valueBoolean`) and
nested resources (`contained`, `Bundle.entry.resource`) included.
"""

from __future__ import annotations

import datetime as dt
import types as pytypes
from collections.abc import Iterator
from decimal import Decimal
from functools import cache, lru_cache
from typing import Annotated, Any, Union, get_args, get_origin

from fhir.resources.R4B import get_fhir_model_class

from ..errors import Issue

#: the JSON kind each primitive's Python type is read from
_KINDS: dict[Any, str] = {bool: "boolean", int: "integer", Decimal: "decimal", str: "string",
                          dt.date: "string", dt.datetime: "string", dt.time: "string"}
_WORDS = {"boolean": "JSON true or false", "integer": "a JSON number (an integer)",
          "decimal": "a JSON number", "string": "a JSON string"}
Spec = tuple[str, Any]  # (kind, the model of a complex element), kind also "resource"


def problems(resource: dict[str, Any], model: Any, path: str) -> Iterator[Issue]:
    """An issue for each primitive in `resource` (checked by `model`, at FHIRPath `path`)
    whose JSON type is not the one R4 JSON gives its FHIR type."""
    fields = _fields(model)
    for key, value in resource.items():
        spec = fields.get(key)
        if spec is None or value is None:
            continue  # not an element of the model (the model itself judged it), or null
        kind, child = spec
        listed = isinstance(value, list)
        for i, item in enumerate(value if listed else [value]):
            where = f"{path}.{key}[{i}]" if listed else f"{path}.{key}"
            if item is None:
                continue  # a repeating primitive's null, paired with its `_element`
            if kind == "complex":
                if isinstance(item, dict):
                    yield from problems(item, child, where)
            elif kind == "resource":
                # (a type that is not a string must not reach the cache: unhashable)
                rt = item.get("resourceType") if isinstance(item, dict) else None
                nested = _model_of(rt) if isinstance(rt, str) else None
                if nested is not None:
                    yield from problems(item, nested, where)
            elif not _fits(kind, item):
                shown = repr(item)[:60]
                yield Issue(f"{where}: {shown} is not {_WORDS[kind]}, as FHIR R4 JSON gives "
                            "this element", code="structure", expression=(where,))


def _fits(kind: str, value: Any) -> bool:
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "decimal":
        return isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    return isinstance(value, str)


@cache
def _fields(model: Any) -> dict[str, Spec]:
    """JSON name -> what the element is, for each field of `model`."""
    out: dict[str, Spec] = {}
    for name, info in model.model_fields.items():
        spec = _spec(info.annotation)
        if spec is not None:
            out[info.alias or name] = spec
    return out


def _spec(annotation: Any) -> Spec | None:
    t = annotation
    while True:  # Optional[List[Annotated[X, ...]]] -> X
        origin = get_origin(t)
        if origin is Annotated or origin is list:
            t = get_args(t)[0]
        elif origin is Union or origin is pytypes.UnionType:
            args = [a for a in get_args(t) if a is not type(None)]
            if len(args) != 1:
                return None  # `fhir_comments` (str or list): not FHIR content
            t = args[0]
        else:
            break
    if t in _KINDS:
        return _KINDS[t], None
    name = getattr(t, "__name__", "")
    if name == "ResourceType":
        return "resource", None
    if name == "FHIRPrimitiveExtensionType":  # `_birthDate`: an Element (id, extension)
        return "complex", _model_of("Element")
    if name.endswith("Type"):
        child = _model_of(name[: -len("Type")])
        if child is not None:
            return "complex", child
    return None  # anything unforeseen: not walked


@lru_cache(maxsize=512)
def _model_of(name: str) -> Any | None:
    if not name:
        return None
    try:
        return get_fhir_model_class(name)
    except (KeyError, ValueError, AttributeError, ImportError):
        return None
