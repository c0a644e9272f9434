"""HL7 v2 reader: a file (or MLLP stream) of messages, one `SourceRecord` per message.

Handled: segments ended by CR, LF or CRLF; MLLP framing (VT ... FS CR) around each
message; batch envelopes (FHS/BHS/BTS/FTS, skipped); the encoding characters each message
declares in MSH-2 (parsed by the `hl7` package); escape sequences (\\F\\, \\S\\, ...); the
HL7 null `""` (read as empty; `is_null` tells the mapping, which deletes the element it
fills). A message that cannot be parsed, or lacks a segment the mapping requires (a
truncated message), is `Unreadable`; the next message is read anyway.
A message also starts where `MSH` with the current message's declared separators appears
inside a segment (a truncated message lost its terminator): the cut message is
`Unreadable`, never joined to the next. A message repeating a segment ADT holds once
(MSH, EVN, PID, PD1, PV1, MRG) is `Unreadable` as damaged.

Field paths (what a mapping writes):

    PID-5.1            segment PID, field 5, component 1 (repetition 1, subcomponent 1)
    PID-3[2].1         repetition 2 of PID-3 (repetitions count from 1)
    PID-3[5=NH|HN].1   the first repetition of PID-3 whose component 5 is NH or HN
    PID-13[*].1        every repetition (a list)
    MSH-9.2            the trigger event; MSH-1 and MSH-2 are the separators themselves
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import hl7

from .errors import FieldError
from .source import BAD_BYTES, ReaderOptions, ReadResult, Unreadable, bad_bytes, clean, decode

_PATH = re.compile(
    r"(?P<seg>[A-Z][A-Z0-9]{2})-(?P<field>\d+)"
    r"(?:\[(?:(?P<all>\*)|(?P<rep>\d+)|(?P<fc>\d+)=(?P<fv>[^\]]+))\])?"
    r"(?:\.(?P<comp>\d+)(?:\.(?P<sub>\d+))?)?"
)
_ENVELOPE = ("FHS", "BHS", "BTS", "FTS")
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
# Segments an ADT message holds at most once, all read as single by `HL7Record.get` (the
# first one wins): a second one means two messages ran together. (A39-A42 may repeat the
# PID/MRG group; one record per message cannot hold several patients, so those are kept
# for review as well.)
_ONCE_PER_MESSAGE = ("MSH", "EVN", "PID", "PD1", "PV1", "MRG")
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n|$)")
_SPACING = re.compile(r"[\s-]")


@dataclass(frozen=True, slots=True)
class _Path:
    segment: str
    field: int
    repetition: int | None  # 1-based; None with a filter or `all`
    filter_component: int | None
    filter_values: frozenset[str]
    all: bool
    component: int
    subcomponent: int


@cache
def parse_path(path: str) -> _Path:
    """Parse an HL7 field path; ValueError saying why when it is not one."""
    m = _PATH.fullmatch(path.strip())
    if not m:
        raise ValueError(
            f"{path!r} is not an HL7 v2 field path (e.g. PID-5.1, PID-3[5=NH|HN].1)"
        )
    return _Path(
        segment=m["seg"],
        field=int(m["field"]),
        repetition=int(m["rep"]) if m["rep"] else (None if (m["fc"] or m["all"]) else 1),
        filter_component=int(m["fc"]) if m["fc"] else None,
        filter_values=frozenset(v.strip().upper() for v in (m["fv"] or "").split("|") if v),
        all=bool(m["all"]),
        component=int(m["comp"] or 1),
        subcomponent=int(m["sub"] or 1),
    )


def check_path(path: str) -> None:
    parse_path(path)


def _parts(node: Any) -> list[Any]:
    """A container's parts; a bare string is one part."""
    return list(node) if isinstance(node, list) else [node]


def _component(rep: Any, component: int, subcomponent: int) -> str:
    """Component/subcomponent (1-based) of one repetition, as sent (still escaped)."""
    parts = _parts(rep)
    if component > len(parts):
        return ""
    subs = _parts(parts[component - 1])
    if subcomponent > len(subs):
        return ""
    value = subs[subcomponent - 1]
    while isinstance(value, list):  # deeper than asked for: HL7's rule is the first leaf
        value = value[0] if value else ""
    return value


@dataclass(frozen=True, slots=True)
class HL7Record:
    """One parsed HL7 v2 message."""

    position: str
    raw: str
    message: hl7.Message
    encoding: str = "utf-8"  # the feed's: what bytes written as \X..\ escapes mean

    def get(self, path: str) -> Any:
        try:
            return self._get(path)
        except FieldError as exc:
            if exc.field:
                raise
            raise FieldError(path, exc.problem) from None

    def is_null(self, path: str) -> bool:
        """Whether the sender wrote the HL7 null `""` at `path`: "delete this value" (HL7
        v2 2.5.3), unlike an empty field, which says nothing."""
        try:
            return '""' in self._get(path, raw=True)
        except FieldError:
            return False

    def _get(self, path: str, *, raw: bool = False) -> Any:
        p = parse_path(path)
        try:
            segment = self.message.segment(p.segment)
        except KeyError:
            return [] if p.all or raw else None
        if p.field >= len(segment):
            return [] if p.all or raw else None
        field = segment[p.field]
        if p.segment == "MSH" and p.field in (1, 2):
            return [] if raw else clean(str(field))
        # A field without repetition separators holds one repetition.
        reps = list(field) if any(isinstance(c, list) for c in field) else [field]
        if p.filter_component is not None:
            reps = [r for r in reps
                    if self._value(r, p.filter_component, 1).upper() in p.filter_values]
        elif not p.all:
            assert p.repetition is not None
            reps = reps[p.repetition - 1:p.repetition]
        if raw:  # as written, escapes and nulls included
            return [_component(r, p.component, p.subcomponent) for r in reps]
        values = [v for v in (clean(self._value(r, p.component, p.subcomponent)) for r in reps)
                  if v is not None]
        if p.all:
            return values
        if p.filter_component is not None and len(values) > 1:
            # two NHS numbers (or MRNs) for one person: which is meant cannot be told (one
            # number printed two ways, 943 476 5919 and 9434765919, is one value)
            distinct = {_SPACING.sub("", v).casefold() for v in values}
            if len(distinct) > 1:
                raise FieldError(path, f"holds {len(distinct)} different values "
                                       f"({', '.join(sorted(set(values)))}) where one is read")
        return values[0] if values else None

    def _value(self, rep: Any, component: int, subcomponent: int) -> str:
        value = _component(rep, component, subcomponent)
        if value == '""':  # HL7 null: the sender says "no value"
            return ""
        return _unescape(self.message, value, self.encoding)


#: Escapes whose library defaults would change a name or identifier: highlighting (\H\,
#: \N\: HL7 2.7.3, meant for formatted text) became "_", line breaks a carriage return.
#: The fields a mapping reads are data, not formatted text: highlighting is dropped and a
#: formatting command is a space.
_DATA_ESCAPES = {"H": "", "N": "", ".br": " ", ".sp": " ", ".ce": " ", ".in": " ",
                 ".ti": " ", ".sk": " ", ".fi": "", ".nf": ""}


def _unescape(message: hl7.Message, value: str, encoding: str) -> str:
    """`value` with its escape sequences replaced (by the `hl7` package, with
    `_DATA_ESCAPES`). Bytes written in hex (\\XC389\\) are decoded together, in the feed's
    encoding: the package turns each byte into its own character (two characters for "É")."""
    esc = message.esc
    if esc not in value:
        return value
    out: list[str] = []
    pending = bytearray()  # hex bytes of adjacent \X..\ sequences: one character may span them
    pos = 0
    for m in re.finditer(f"{re.escape(esc)}([^{re.escape(esc)}]*){re.escape(esc)}", value):
        text, content = value[pos:m.start()], m[1]
        pos = m.end()
        if text:
            out.append(_decoded(pending, encoding, value))
            out.append(_library_unescape(message, text))
        if re.fullmatch(r"X(?:[0-9A-Fa-f]{2})+", content):
            pending += bytes.fromhex(content[1:])
            continue
        out.append(_decoded(pending, encoding, value))
        out.append(_library_unescape(message, m[0]))
    out.append(_decoded(pending, encoding, value))
    out.append(_library_unescape(message, value[pos:]))
    return "".join(out)


_HEX_SPACES = str.maketrans({"\r": " ", "\n": " ", "\t": " "})


def _decoded(pending: bytearray, encoding: str, value: str) -> str:
    if not pending:
        return ""
    try:
        text = pending.decode(encoding)
    except UnicodeDecodeError:
        raise FieldError("", f"{value!r} holds hex escape bytes {pending.hex().upper()} that "
                         f"are not {encoding} text") from None
    finally:
        pending.clear()
    # FHIR strings hold no control characters but tab and line breaks: a line break or
    # tab sent as hex reads as a space (as \.br\ does); any other is refused
    text = text.translate(_HEX_SPACES)
    bad = next((ch for ch in text if ord(ch) < 32 or ord(ch) == 127), None)
    if bad is not None:
        raise FieldError("", f"{value!r} holds a hex escape for the control character "
                         f"U+{ord(bad):04X}, which no FHIR text may hold")
    return text


def _library_unescape(message: hl7.Message, text: str) -> str:
    try:
        return message.unescape(text, app_map=_DATA_ESCAPES)
    except Exception:  # a malformed escape sequence: keep the text as sent
        return text


@dataclass(slots=True)
class _Message:
    """One message as split from the file: stripped segments and the original text."""

    segments: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    cut_short: bool = False  # the next message's MSH began inside its last segment


def _declared_header(msh: str) -> str | None:
    """`MSH` with the field separator and encoding characters `msh` declares (`MSH|^~\\&`),
    or None when it declares none usable."""
    if _check_msh(msh):
        return None
    return msh[:msh.find(msh[3], 4)]


def _message_start(line: str, header: str | None, start: int) -> int:
    """Index of a message start at or after `start` in `line`, or -1.

    With the current message's separators known, only `header` counts: in data HL7 escapes
    the field separator (\\F\\), so that text cannot be data. Without them (a broken MSH, or
    text before the first message) any MSH declaring valid separators counts.
    """
    if header:
        return line.find(header, start)
    for m in re.finditer("MSH", line[start:]):
        if _check_msh(line[start + m.start():].rstrip("\r\n")) is None:
            return start + m.start()
    return -1


def _segment_texts(text: str) -> Iterator[tuple[str, bool]]:
    """Each segment's original text (with its terminator) and whether it was cut short by
    a message starting inside it."""
    header: str | None = None
    for m in _LINE.finditer(text):
        line = m.group(0)
        while line:
            body = line.lstrip()
            if body.startswith("MSH"):
                header = _declared_header(body.rstrip("\r\n"))
            cut = _message_start(line, header, len(line) - len(body) + 1)
            if cut < 0:
                yield line, False
                break
            yield line[:cut], True
            line = line[cut:]


def _split_messages(text: str) -> Iterator[_Message]:
    """Messages in file order. MLLP frame characters end a segment."""
    text = text.replace("\x0b", "\r").replace("\x1c", "\r")
    message = _Message()
    for line, cut in _segment_texts(text):
        seg = line.strip()
        if not seg:
            if message.lines:
                message.lines.append(line)
            continue
        if seg[:3] == "MSH" and len(seg) > 3:
            if message.lines:
                yield message
            message = _Message()
        elif seg[:3] in _ENVELOPE:
            continue
        message.segments.append(seg)
        message.lines.append(line)
        message.cut_short = cut
    if message.lines:
        yield message


def _repeated_segment(segments: list[str]) -> tuple[str, int] | None:
    """The first segment ADT holds once that `segments` repeat, with its count."""
    counts = Counter(s[:3] for s in segments)
    for name in _ONCE_PER_MESSAGE:
        if counts[name] > 1:
            return name, counts[name]
    return None


def _check_msh(msh: str) -> str | None:
    """Why an MSH segment cannot start a message, or None when it can."""
    if len(msh) < 8:
        return "MSH is too short to declare its separators (MSH-1, MSH-2)"
    sep = msh[3]
    end = msh.find(sep, 4)
    encoding = msh[4:end] if end > 0 else ""
    if sep.isalnum() or not 2 <= len(encoding) <= 5 or any(c.isalnum() for c in encoding):
        return f"MSH-2 {msh[3:9]!r} does not declare HL7 encoding characters"
    if len(set(sep + encoding)) != len(sep + encoding):
        return "MSH-1 and MSH-2 repeat a separator character"
    return None


def _control_id(msh: str) -> str | None:
    """MSH-10 found by plain splitting, to name a message too broken to parse."""
    fields = msh.split(msh[3]) if len(msh) > 3 else []
    return (fields[9].strip() or None) if len(fields) > 9 else None


def read(data: bytes, options: ReaderOptions) -> ReadResult:
    text = decode(data, options.encoding)
    number = 0
    for split in _split_messages(text):
        if not split.segments[0].startswith("MSH"):
            yield Unreadable(f"before message {number + 1}", "".join(split.lines), "MSH",
                             "segments before the first MSH belong to no message")
            continue
        number += 1
        yield _read_message(f"message {number}", split, options)


def _read_message(position: str, split: _Message,
                  options: ReaderOptions) -> HL7Record | Unreadable:
    segments, raw = split.segments, "".join(split.lines)
    control_id = _control_id(segments[0])
    fault = _structural_fault(split, raw, options)
    if fault:
        return Unreadable(position, raw, *fault, control_id)
    try:
        message = hl7.parse("\r".join(segments))
    except Exception as exc:  # the hl7 package raises several types on bad input
        return Unreadable(position, raw, "MSH", f"cannot be parsed as HL7 v2 ({exc})",
                          control_id)
    present = {s[:3] for s in segments}
    missing = [s for s in options.required_segments if s not in present]
    if missing:
        return Unreadable(
            position, raw, missing[0],
            f"the message has no {missing[0]} segment, which this feed's messages must "
            f"have; it looks truncated (last segment: {segments[-1][:3]})", control_id,
        )
    return HL7Record(position, raw, message, options.encoding)


def _structural_fault(split: _Message, raw: str,
                      options: ReaderOptions) -> tuple[str, str] | None:
    """(segment, problem) when the message is too damaged to parse, else None."""
    segments = split.segments
    problem = bad_bytes(raw, options.encoding)
    if problem:
        # named by the segment that holds them: its content is wrong (an MLLP sender is
        # answered AE, not AR, which would have it resend the same bytes for ever)
        where = next((seg[:3] for seg in segments if BAD_BYTES in seg), "MSH")
        if where == "MSH":
            # the header field that holds them (MSH-4): "MSH" alone says the frame had no
            # usable header, which is answered AR, and the sender would resend for ever
            fields = segments[0].split(segments[0][3:4] or "|")
            where = next((f"MSH-{i + 1}" for i, f in enumerate(fields) if i and BAD_BYTES in f),
                         "MSH-2")
        return where, problem
    if split.cut_short:
        cut = segments[-1][:3]
        return cut, (f"the message is truncated: its {cut} segment breaks off where the next "
                     "message's MSH begins, with no segment terminator; the message is "
                     "damaged and was not read")
    problem = _check_msh(segments[0])
    if problem:
        return "MSH", problem
    bad_ids = [s[:3] for s in segments if not _SEGMENT_ID.fullmatch(s[:3])]
    if bad_ids:
        return bad_ids[0], f"{bad_ids[0]!r} is not a segment name; the message is damaged"
    repeated = _repeated_segment(segments)
    if repeated:
        name, count = repeated
        return name, (f"the message has {count} {name} segments where an ADT message has "
                      "one; it is damaged (two messages run together?)")
    return None
