"""JSON Lines reader: one JSON object per line, one `SourceRecord` per line.

Blank lines are skipped; a UTF-8 byte-order mark is dropped. A line that is not a JSON
object (bad JSON, undecodable bytes, an array, nesting deeper than `jsonio.MAX_DEPTH`) is
`Unreadable`; the next line is read anyway. Numbers with a fraction keep their exact text
(`jsonio.parse`).

Field paths are dotted keys with optional 0-based list indexes, as in FHIRPath:
`respect.cpr`, `name.first`, `admissions[0].id`. A key step must meet an object (or a
list of one): a list of several, or text where an object is expected, rejects the record
naming the field, instead of reading the first item or nothing (`walk`, `one=True`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from .. import jsonio
from ..errors import BadRequest
from .errors import FieldError
from .source import ReaderOptions, ReadResult, Unreadable, clean

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@cache
def parse_path(path: str) -> tuple[str | int, ...]:
    steps: list[str | int] = []
    pos = 0
    text = path.strip()
    while pos < len(text):
        if text[pos] == "." and steps and pos + 1 < len(text):
            pos += 1
        m = _STEP.match(text, pos)
        if not m:
            raise ValueError(f"{path!r} is not a JSON field path (e.g. respect.cpr, items[0].id)")
        steps.append(m[1].strip() if m[1] is not None else int(m[2]))
        pos = m.end()
    if not steps or not isinstance(steps[0], str):
        raise ValueError(f"{path!r} is not a JSON field path (e.g. respect.cpr, items[0].id)")
    return tuple(steps)


def check_path(path: str) -> None:
    parse_path(path)


def walk(value: Any, steps: tuple[str | int, ...], *, one: bool = False) -> Any:
    """The value at `steps` inside `value`, or None. A key step on a list looks in its
    first element (FHIR lists of one, such as `name.family`).

    `one`, for a partner's own JSON, where a field the mapping reads once must hold one
    value: a key step on a list of several items, or on text or a number, raises
    FieldError (the record is kept for review) instead of reading the first item or
    nothing. Two ReSPECT forms sent as a list are two decisions; reading the first would
    store whichever the sender happened to put first."""
    for depth, step in enumerate(steps):
        if isinstance(step, int):
            value = value[step] if isinstance(value, list) and step < len(value) else None
        else:
            if isinstance(value, list):
                if one and len(value) > 1:
                    raise FieldError("", f"holds a list of {len(value)} items where one "
                                         "is read")
                value = value[0] if value else None
            if one and value is not None and not isinstance(value, dict):
                raise FieldError("", f"holds {type(value).__name__} where an object is "
                                     f"expected (it has no field {step!r})")
            if isinstance(value, dict):
                found = value.get(step)
                if found is None and one and step not in value:
                    _misnamed(value, step, steps[:depth + 1])
                value = found
            else:
                value = None
        if value is None:
            return None
    return clean(value)


def _misnamed(obj: dict[str, Any], step: str, path: tuple[str | int, ...]) -> None:
    """Refuse a field that is absent under its name but present under another spelling
    (`ReSPECT` for `respect`, `nhs_number` for `nhsNumber`): read as absent, a renamed
    form would retract every decision on it without a word."""
    if step.startswith("_"):
        return
    wanted = _folded(step)
    for key in obj:
        # (`_birthDate` is FHIR JSON's extension of `birthDate`, not a spelling of it)
        if isinstance(key, str) and key != step and not key.startswith("_") \
                and _folded(key) == wanted:
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
            raise FieldError(where.lstrip("."), f"is absent, but the record has {key!r}: a "
                             "field spelt otherwise is not read (check the extract's "
                             "field names)")


def _folded(name: str) -> str:
    return "".join(c for c in name.casefold() if c.isalnum())


@dataclass(frozen=True, slots=True)
class JsonRecord:
    position: str
    raw: str
    data: dict[str, Any]

    def get(self, path: str) -> Any:
        try:
            return walk(self.data, parse_path(path), one=True)
        except FieldError as exc:
            raise FieldError(exc.field or path, exc.problem) from None


def read(data: bytes, options: ReaderOptions) -> ReadResult:
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    for number, line in enumerate(data[start:].splitlines(), start=1):
        if not line.strip():
            continue
        position = f"line {number}"
        raw = line.decode(options.encoding, errors="replace")
        try:
            if options.encoding.replace("-", "").lower() != "utf8":
                line = line.decode(options.encoding).encode("utf-8")
            value = jsonio.parse(line, where=position)
        except (BadRequest, UnicodeDecodeError) as exc:
            yield Unreadable(position, raw, "line", str(exc))
            continue
        if not isinstance(value, dict):
            yield Unreadable(position, raw, "line",
                             f"holds a JSON {type(value).__name__}, not an object")
            continue
        yield JsonRecord(position, raw, value)
