"""FHIR JSON in and out: strict parsing of untrusted bytes, decimal-exact output.

FHIR requires decimal precision to survive a round trip (`1.50` stays `1.50`), so numbers
with a fraction or exponent are parsed as `FhirDecimal` (a Decimal remembering its text)
and written back verbatim by simplejson (`use_decimal=True`); the stdlib encoder cannot
emit a Decimal as a number.
"""

from __future__ import annotations

import decimal
import json
import re
from typing import Any

import simplejson

from .errors import BadRequest

#: Deeper than any real resource (Questionnaire items nest, but not this far); bounds the
#: work a hostile body can cause in validation and indexing.
MAX_DEPTH = 64
#: a \uD800-\uDFFF escape: half of a UTF-16 pair, which JSON text may hold unpaired
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")



class FhirDecimal(decimal.Decimal):
    """A Decimal that prints exactly as it was written (`1e2` stays `1e2`, not `1E+2`)."""

    __slots__ = ("_text",)

    def __new__(cls, text: str) -> FhirDecimal:
        self = super().__new__(cls, text)
        self._text = text
        return self

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"FhirDecimal({self._text!r})"


_decoder = simplejson.JSONDecoder(parse_float=FhirDecimal)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_names(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose names are unique (RFC 8259 says they SHOULD be; parsers then differ
    on which value counts): `{"cpr": "attempt", "cpr": "not-attempt"}` is refused, not
    read as whichever came last."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise ValueError(f"the name {name[:80]!r} appears twice in one object")
            seen.add(name)
    return obj


_strict_decoder = simplejson.JSONDecoder(
    parse_float=FhirDecimal, parse_constant=_reject_constant, object_pairs_hook=_unique_names
)


def parse(body: bytes, *, where: str = "request body") -> Any:
    """Parse untrusted JSON bytes; any problem is a BadRequest naming what and where."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"{where} is not valid UTF-8: byte 0x{body[exc.start]:02x} at offset {exc.start}",
            code="structure",
        ) from exc
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text.strip():
        raise BadRequest(f"{where} is empty; a FHIR JSON resource was expected", code="structure")
    try:
        value = _strict_decoder.decode(text)
    except simplejson.JSONDecodeError as exc:
        raise BadRequest(
            f"{where} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            code="structure",
        ) from exc
    except RecursionError as exc:
        raise BadRequest(
            f"{where} nests deeper than {MAX_DEPTH} levels", code="structure"
        ) from exc
    except ValueError as exc:  # NaN / Infinity, a name twice in one object
        raise BadRequest(f"{where} is not valid JSON: {exc}", code="structure") from exc
    depth = max_depth(value)  # first: what follows walks the value recursively
    if depth > MAX_DEPTH:
        raise BadRequest(
            f"{where} nests {depth} levels deep; at most {MAX_DEPTH} are accepted",
            code="structure",
        )
    if _SURROGATE_ESCAPE.search(text) and not _encodable(value):
        # Such a string cannot be stored, compared with stored text or answered (UTF-8
        # has no lone surrogates): refused here, before any layer can trip on it.
        raise BadRequest(f"{where} holds an unpaired UTF-16 surrogate escape (\\uD800-"
                         "\\uDFFF not part of a pair): not a character", code="structure")
    return value


def _encodable(value: Any) -> bool:
    try:
        simplejson.dumps(value, ensure_ascii=False, use_decimal=True).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def max_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, iteratively (no recursion on hostile input)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, depth)
            if depth > MAX_DEPTH:
                return depth
            stack.extend((v, depth + 1) for v in node)
    return deepest


def dumps(value: Any) -> str:
    """Compact JSON text, decimals exactly as they were parsed."""
    return simplejson.dumps(value, use_decimal=True, separators=(",", ":"), ensure_ascii=False)


def dumps_generated(value: Any) -> str:
    """`dumps` for what the gateway builds itself (documents, narratives, URLs), where
    decimals are not expected: the standard library's encoder is cheaper to call than
    simplejson's decimal-aware one and gives the same text; a decimal that does turn up
    is written exactly, by `dumps`."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except TypeError:
        return dumps(value)


def canonical(value: Any) -> str:
    """Key-order independent JSON text, for "is this the same content?" comparisons."""
    return simplejson.dumps(value, use_decimal=True, separators=(",", ":"),
                            ensure_ascii=False, sort_keys=True)


def dump_bytes(value: Any) -> bytes:
    return dumps(value).encode("utf-8")


def loads_trusted(text: str | bytes) -> Any:
    """Parse JSON the gateway wrote itself (stored bodies): no depth or encoding checks."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return _decoder.decode(text)
