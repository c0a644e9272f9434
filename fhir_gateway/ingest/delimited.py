"""CSV reader (stdlib `csv`): one `SourceRecord` per data row, fields named by the header.

Handled: a UTF-8 byte-order mark; `,` or `;` (sniffed from the header line unless the
mapping declares one); quoted fields holding delimiters, quotes and line breaks; CR, LF
or CRLF line ends; blank rows anywhere (skipped, including a file's blank trailing rows
and rows of delimiters only). A row's position is the physical line it starts on. Header
names are matched ignoring case and surrounding spaces. A header lacking a column the
mapping reads is itself `Unreadable` (kept: a NUL-filled copy, another file, or a file sent
without its header, whose first line is then a record), and so is each row under it; a
header that cannot be parsed is `Unreadable` with the whole file. A stray quote in the
header, which would run it on over the rows, is read from the header's own line. A row
with the wrong number of fields, or undecodable bytes, is `Unreadable`. A row running
over several lines that comes out with the wrong number of fields has an unbalanced quote:
only its first line is `Unreadable`, and reading starts again on the next line, so one
stray quote never swallows the file. A file of blank lines (spaces, tabs, line ends,
delimiters) is an empty extract; such lines before the header are skipped.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .source import (
    CONTROL_CHARACTER,
    ReaderOptions,
    ReadResult,
    Unreadable,
    bad_bytes,
    clean,
    decode,
    physical_lines,
)

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
    # blank is what a spreadsheet leaves (spaces, tabs, line ends, a row of delimiters): a
    # file of anything else (no-break spaces, separator bytes) goes to the header check
    first = next((i for i, line in enumerate(lines) if line.strip(" \t\r\n,;|")), None)
    if first is None:
        return
    delimiter = options.delimiter or sniff_delimiter(lines[first])
    yield from _rows(lines, first, delimiter, options)


class _LineCursor:
    """Physical lines handed to `csv.reader` one at a time, so that reading can start
    again at any line (the reader keeps no lines of its own between rows)."""

    def __init__(self, lines: list[str], index: int) -> None:
        self.lines = lines
        self.index = index  # 0-based: the next line to hand out

    def __iter__(self) -> _LineCursor:
        return self

    def __next__(self) -> str:
        if self.index >= len(self.lines):
            raise StopIteration
        self.index += 1
        return self.lines[self.index - 1]


def _reader(cursor: _LineCursor, delimiter: str) -> Iterator[list[str]]:
    return csv.reader(cursor, delimiter=delimiter, quotechar='"', skipinitialspace=False)


def _rows(lines: list[str], first: int, delimiter: str, options: ReaderOptions) -> ReadResult:
    cursor = _LineCursor(lines, first)
    reader = _reader(cursor, delimiter)
    header_line = first + 1
    try:
        header = [h.strip() for h in next(reader)]
    except (csv.Error, StopIteration) as exc:
        found = CONTROL_CHARACTER.search(lines[first])
        hint = (f"; it holds the control character U+{ord(found.group()):04X}, so it is a "
                "damaged copy or another kind of file") if found else ""
        # nothing after it can be read by name: the whole file is kept with the rejection
        yield Unreadable(f"line {header_line}", "".join(lines[first:]), "header",
                         f"the header row cannot be read ({exc}){hint}")
        return
    missing = _missing(header, options)
    if cursor.index - first > 1:
        # A quoted header name may wrap onto the next line, but a stray quote runs the
        # header on over the rows (to the file's end, or the next quote). Read from its own
        # line, the header is taken when that leaves fewer columns missing or the next
        # line has as many fields as it: a wrapped name's next line holds the rest of the
        # header, not a row of that width.
        alone = [h.strip() for h in _fields(lines[first], delimiter)]
        missing_alone = _missing(alone, options)
        if len(missing_alone) < len(missing) \
                or len(_fields(lines[first + 1], delimiter)) == len(alone):
            header, missing = alone, missing_alone
            cursor.index = first + 1
            reader = _reader(cursor, delimiter)
    columns: dict[str, int] = {}
    named: dict[str, list[int]] = {}
    for i, name in enumerate(header):
        columns.setdefault(_key(name), i)
        named.setdefault(_key(name), []).append(i)
    if missing:
        # Kept whatever follows: a file sent without its header has a record here, and a
        # NUL-filled copy or another file sent by mistake has no rows to say so.
        yield Unreadable(
            f"line {header_line}", "".join(lines[first:cursor.index]), "header",
            f"{_no_column(header_line, missing)}: this is not the partner's extract, its "
            "header is damaged, or it was sent without its header (then this line is a "
            "record)",
        )
    # A column the mapping reads, named twice: a row is read only when its copies agree
    twins = {f: named[_key(f)] for f in sorted(options.fields)
             if len(named.get(_key(f), ())) > 1}
    while True:
        start = cursor.index  # 0-based line where the next row starts
        position = f"line {start + 1}"
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if cursor.index == start:  # no line consumed: nothing more can be read
                return
            # Reject the row's first line only; a quote left open may have run past it.
            spanned = cursor.index - start > 1
            yield Unreadable(position, lines[start], "row", f"is not valid CSV ({exc})" + (
                f"; an unbalanced quote on line {start + 1}?" if spanned else ""))
            cursor.index = start + 1
            reader = _reader(cursor, delimiter)
            continue
        raw = "".join(lines[start:cursor.index])
        if not any(cell.strip() for cell in row):
            continue  # a blank row, or delimiters only
        if len(row) != len(header) and cursor.index - start > 1:
            # A quoted line break that leaves the row malformed is a stray quote: give up
            # only this line, so the lines it swallowed are read as their own rows.
            yield Unreadable(position, lines[start], "row",
                             _unbalanced_quote(start + 1, cursor.index, header_line))
            cursor.index = start + 1
            reader = _reader(cursor, delimiter)
            continue
        problem = bad_bytes(raw, options.encoding)
        if problem:
            yield Unreadable(position, raw, "row", problem)
        elif missing:
            yield Unreadable(position, raw, missing[0], _no_column(header_line, missing))
        elif len(row) != len(header):  # a shifted row must not be read as another's columns
            yield Unreadable(
                position, raw, "row",
                f"has {len(row)} fields but the header on line {header_line} has "
                f"{len(header)} ({_field_count_hint(raw, delimiter)})",
            )
        elif clash := _disagreeing_twin(row, twins):
            name, places, values = clash
            yield Unreadable(
                position, raw, name,
                f"the header on line {header_line} names column {name!r} "
                f"{len(places)} times (fields {', '.join(str(i + 1) for i in places)}) and "
                f"this row's copies differ ({', '.join(repr(v) for v in values)}): which "
                "one is meant cannot be told",
            )
        else:
            yield CsvRecord(position, raw, columns, tuple(row))


def _fields(line: str, delimiter: str) -> list[str]:
    """One physical line's fields, read alone (a quote left open ends with the line);
    none when csv refuses it."""
    try:
        return next(csv.reader([line], delimiter=delimiter, quotechar='"'), [])
    except csv.Error:
        return []


def _no_column(header_line: int, missing: list[str]) -> str:
    return (f"the header on line {header_line} has no column {missing[0]!r}, which the "
            f"mapping reads (missing: {', '.join(repr(m) for m in missing)})")


def _missing(header: list[str], options: ReaderOptions) -> list[str]:
    """The columns the mapping reads that `header` lacks."""
    keys = {_key(name) for name in header}
    return sorted(f for f in options.fields if _key(f) not in keys)


def _disagreeing_twin(row: tuple[str, ...] | list[str], twins: dict[str, list[int]]
                      ) -> tuple[str, list[int], list[str]] | None:
    """The first column named more than once whose copies in `row` differ."""
    for name, places in twins.items():
        values = list(dict.fromkeys(row[i].strip() for i in places))
        if len(values) > 1:
            return name, places, values
    return None


def _unbalanced_quote(line: int, last_line: int, header_line: int) -> str:
    return (f"has an unbalanced quote on line {line}: read as a quoted value running on to "
            f"line {last_line}, the row does not match the header on line {header_line}; "
            f"only line {line} is rejected and reading goes on at line {line + 1}")


def _field_count_hint(raw: str, delimiter: str) -> str:
    """A guess at why a one-line row has the wrong number of fields."""
    if raw.count('"') % 2:  # quotes come in pairs, an escaped one ("") too
        return "an unbalanced quote?"
    return f"is a value with a {delimiter!r} missing its quotes?"
