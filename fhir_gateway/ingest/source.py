"""What readers produce: a stream of `SourceRecord`s (or `Unreadable`s) from a file's bytes.

A reader turns bytes into records and never raises on bad input: a record it cannot read
becomes an `Unreadable` naming the position, the field (or structure) at fault and why,
and reading goes on with the next record. Readers know formats, never partners: what a
partner's file looks like (delimiter, encoding, required segments) comes from the mapping's
`format` section as `ReaderOptions`.

Each record answers `get(path)` for the field paths the mapping names; the path language
is the format's own (`PID-3[5=NH|HN].1` for HL7 v2, a column header for CSV, a dotted
path such as `respect.cpr` for JSON).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

#: Replacement character left where bytes were not valid in the declared encoding.
BAD_BYTES = "\ufffd"


@dataclass(frozen=True, slots=True)
class ReaderOptions:
    """A mapping's `format` section, as readers need it."""

    reader: str
    encoding: str = "utf-8"
    delimiter: str | None = None  # CSV: None means sniff "," or ";" from the header line
    required_segments: tuple[str, ...] = ()  # HL7 v2: segments every message must have
    timezone: str = "Europe/London"
    #: Field paths the mapping reads; a CSV reader checks its header holds each of them.
    fields: frozenset[str] = frozenset()
    #: STU3: resource types whose entries are records (others are context only).
    extra: Mapping[str, Any] = field(default_factory=dict)


class SourceRecord(Protocol):
    """One record of a partner file, as a reader parsed it."""

    position: str
    raw: str

    def get(self, path: str) -> Any:
        """The value at `path`: a string (stripped; None when empty), or for JSON-like
        sources a list, dict, number or boolean. None when absent."""
        ...


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A record a reader could not read: kept, with why, for a `Rejection`."""

    position: str
    raw: str
    field: str
    problem: str
    record_id: str | None = None  # the record's own key, when it could still be found


ReadResult = Iterator[SourceRecord | Unreadable]


def clean(value: Any) -> Any:
    """Strings stripped, empty strings as None; other values as they are. A vertical tab
    or form feed (Word's line and page breaks, pasted into free text) is a line break:
    FHIR text cannot carry them (`control_character`)."""
    if isinstance(value, str):
        value = value.translate(_BREAKS).strip()
        return value or None
    return value


_BREAKS = str.maketrans({"\x0b": "\n", "\x0c": "\n"})


def decode(data: bytes, encoding: str) -> str:
    """Text from bytes. A UTF-8 byte-order mark is dropped. Bytes invalid in `encoding`
    become U+FFFD, so the records holding them can be rejected one by one (`bad_bytes`)
    while the rest of the file still loads."""
    if encoding.replace("-", "").lower() in ("utf8", "utf8sig"):
        encoding = "utf-8-sig"
    return data.decode(encoding, errors="replace")


#: byte-order marks of the Unicode encodings a spreadsheet's "Unicode text" export writes
_WIDE_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
              (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"))


def foreign_encoding(data: bytes, encoding: str) -> tuple[str, str] | None:
    """(codec, problem sentence) when `data` is plainly UTF-16 or UTF-32 text (a
    byte-order mark, or every other byte of its start NUL) while the mapping says `encoding`,
    else None. Read as `encoding`, each row would be rejected for a column its garbled
    header lacks, which sends the partner looking for the wrong fault."""
    if encoding.lower().replace("-", "").replace("_", "").startswith(("utf16", "utf32")):
        return None
    kind = next((name for bom, name in _WIDE_BOMS if data.startswith(bom)), None)
    codec = kind.lower() if kind else ""
    head = data[:256]
    even, odd = head[0::2].count(0), head[1::2].count(0)
    if kind is None and len(head) >= 8 and max(even, odd) * 10 >= len(head) * 4 \
            and min(even, odd) * 10 <= len(head) // 2:
        # no mark, but ASCII written two bytes a character (every other byte NUL, so not
        # some binary file such as a spreadsheet's): the NULs say which end comes first
        kind = "UTF-16"
        codec = "utf-16-be" if even > odd else "utf-16-le"
    if kind is None:
        return None
    return codec, (f"the file is {kind} text, not {encoding}: export or save it as "
                   f"{encoding} and send it again")


def bad_bytes(raw: str, encoding: str) -> str | None:
    """The problem sentence when `raw` holds undecodable bytes, else None."""
    if BAD_BYTES in raw:
        return f"holds bytes that are not valid {encoding} text"
    return None


#: characters FHIR text cannot carry (R4 `string`: none below U+0020 but tab, CR and LF)
CONTROL_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")


def control_character(value: Any, where: str) -> tuple[str, str] | None:
    """(where, problem) for the first text in `value` (a mapped resource, `where` its type)
    holding a control character FHIR text cannot carry, else None: stored, it breaks the
    R4 string rule and what search finds (`WH<NUL>ITE` is not found by `family=WHITE`)."""
    if isinstance(value, str):
        found = CONTROL_CHARACTER.search(value)
        return (where, f"holds the control character U+{ord(found.group()):04X}, which "
                       "FHIR text cannot carry") if found else None
    items = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, list) else ()
    for key, item in items:
        inner = f"{where}[{key}]" if isinstance(key, int) else \
            f"{where}.{key}" if where else str(key)
        problem = control_character(item, inner)
        if problem is not None:
            return problem
    return None


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def physical_lines(text: str) -> list[str]:
    """Lines with their endings, split only at CR, LF or CRLF (not at the other Unicode
    breaks `str.splitlines` knows, which may sit inside a field)."""
    lines: list[str] = []
    pos = 0
    for m in _LINE_BREAK.finditer(text):
        lines.append(text[pos:m.end()])
        pos = m.end()
    if pos < len(text):
        lines.append(text[pos:])
    return lines
