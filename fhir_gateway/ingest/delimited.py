"""CSV reader (stdlib `csv`): one `SourceRecord` per data row, fields named by the header.

Handled: a UTF-8 byte-order mark; `,` or `;` (sniffed from the header line unless the
mapping declares one); quoted fields holding delimiters, quotes and line breaks; CR, LF
or CRLF line ends; blank rows anywhere (skipped, including a file's blank trailing rows
and rows of delimiters only). A row's position is the physical line it starts on. Header
names are matched ignoring case and surrounding spaces. A row with the wrong number of
fields, undecodable bytes, or a file whose header lacks a column the mapping reads is
`Unreadable`, row by row.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .source import ReaderOptions, ReadResult, Unreadable, bad_bytes, clean, decode, physical_lines

_CANDIDATES = (",", ";", "\t", "|")


def check_path(path: str) -> None:
    if not path.strip():
        raise ValueError("a CSV field path is a column header and cannot be empty")


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


@dataclass(frozen=True, slots=True)
class CsvRecord:
    position: str
    raw: str
    columns: dict[str, int]
    row: tuple[str, ...]

    def get(self, path: str) -> Any:
        index = self.columns.get(_key(path))
        if index is None or index >= len(self.row):
            return None
        return clean(self.row[index])


def sniff_delimiter(header_line: str) -> str:
    """The candidate delimiter occurring most often outside quotes in the header line."""
    counts = dict.fromkeys(_CANDIDATES, 0)
    quoted = False
    for ch in header_line:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch in counts:
            counts[ch] += 1
    best = max(_CANDIDATES, key=lambda c: counts[c])
    return best if counts[best] else ","


def read(data: bytes, options: ReaderOptions) -> ReadResult:
    lines = physical_lines(decode(data, options.encoding))
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return
    delimiter = options.delimiter or sniff_delimiter(lines[first])
    yield from _rows(lines, first, delimiter, options)


def _rows(lines: list[str], first: int, delimiter: str, options: ReaderOptions) -> ReadResult:
    source: Iterator[str] = iter(lines[first:])
    reader = csv.reader(source, delimiter=delimiter, quotechar='"', skipinitialspace=False)
    header_line = first + 1
    try:
        header = [h.strip() for h in next(reader)]
    except (csv.Error, StopIteration) as exc:
        yield Unreadable(f"line {header_line}", lines[first], "header",
                         f"the header row cannot be read ({exc})")
        return
    columns: dict[str, int] = {}
    for i, name in enumerate(header):
        columns.setdefault(_key(name), i)
    missing = sorted(f for f in options.fields if _key(f) not in columns)
    consumed = 1
    while True:
        start = first + consumed + 1  # 1-based physical line where the next row starts
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if reader.line_num == consumed:  # no progress: give up on the rest
                return
            raw = "".join(lines[start - 1:first + reader.line_num])
            consumed = reader.line_num
            yield Unreadable(f"line {start}", raw, "row", f"is not valid CSV ({exc})")
            continue
        raw = "".join(lines[start - 1:first + reader.line_num])
        consumed = reader.line_num
        if not any(cell.strip() for cell in row):
            continue  # a blank row, or delimiters only
        position = f"line {start}"
        problem = bad_bytes(raw, options.encoding)
        if problem:
            yield Unreadable(position, raw, "row", problem)
        elif missing:
            yield Unreadable(
                position, raw, missing[0],
                f"the header on line {header_line} has no column {missing[0]!r}, which the "
                f"mapping reads (missing: {', '.join(repr(m) for m in missing)})",
            )
        elif len(row) != len(header):  # a shifted row must not be read as another's columns
            yield Unreadable(
                position, raw, "row",
                f"has {len(row)} fields but the header on line {header_line} has "
                f"{len(header)} (is a value with a {delimiter!r} missing its quotes?)",
            )
        else:
            yield CsvRecord(position, raw, columns, tuple(row))
