"""An MLLP listener for an HL7 v2 feed (`fhir-gateway mllp --port P`).

Each frame (0x0B message 0x1C 0x0D) carries one HL7 message, which is mapped and loaded
like a one-message file, and only then acknowledged (HL7 v2 original acknowledgement
mode), after the store has committed, so nothing acknowledged is ever lost:

- AA: stored (or held for identity review: kept, not lost).
- AE: read, but its content is wrong (a field; the reason says which): resending it as
  it is would fail again, so it is kept for review and the sender should correct it.
- AR: refused for a reason other than a field's content, nothing stored: the frame is
  not one readable message (no usable MSH; two messages in one frame, as when a sender
  loses an end block; over `MAX_FRAME` bytes; no end block for `FRAME_IDLE_SECONDS`), or
  the gateway cannot store it now (the store locked, busy or down; an error in the
  gateway itself). The sender should keep it and resend later. A frame refused whole
  is kept for review with the reason where the store can take it (an over-limit or
  unended one: its first `KEPT_BYTES`), so an operator sees what was refused.

Each message loaded is audited (an AuditEvent naming the Patients it wrote, durable before
its ACK) when the listener is given an audit trail (`LoaderProcessor`).

A frame holding two messages is refused whole rather than acknowledged message by
message: the one ACK an MLLP exchange has can speak for one control id, and a sender
waiting for it would take an AA for the first message to cover both (or an AE for
the second as "correct the first"); refusing before anything is loaded leaves no
half-stored frame for the resend to meet.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("fhir_gateway.mllp")

START, END = b"\x0b", b"\x1c\x0d"
#: Largest frame accepted; a sender that never closes a frame cannot fill memory.
MAX_FRAME = 4 * 1024 * 1024
#: How long a connection may send nothing in the middle of a frame: a sender that never
#: ends one would otherwise hold up to `MAX_FRAME` bytes of memory for ever. Between
#: frames a connection may stay idle (MLLP links are long-lived).
FRAME_IDLE_SECONDS = 60.0
#: What is kept for review of a frame refused without being read whole (its MSH and
#: the start of the message): enough to find it at the sender.
KEPT_BYTES = 8 * 1024
#: The file name the listener's records are cited with (Provenance, review queue).
SOURCE_FILE = "mllp"
#: Rejection fields that say the frame could not be read as a message (MSH: no usable
#: header) or that the gateway failed on it (file, record: a reader or mapping error),
#: not that a field of its content is wrong: AR, so the sender keeps it and resends.
NOT_CONTENT_FIELDS = frozenset({"MSH", "message", "file", "record"})

Processor = Callable[[bytes], tuple[str, str]]  # frame -> (ack code, text)
#: Keeps a frame refused before it was read whole (its first bytes, the reason).
Keeper = Callable[[bytes, str], None]

_SEGMENT_END = re.compile(rb"[\r\n\x0b\x1c]")


def frames(buffer: bytearray) -> list[bytes]:
    """Complete frames taken out of `buffer` (what is left stays for the next read)."""
    out = []
    while True:
        start = buffer.find(START)
        if start < 0:
            buffer.clear()
            return out
        end = buffer.find(END, start)
        if end < 0:
            del buffer[:start]
            return out
        out.append(bytes(buffer[start + 1:end]))
        del buffer[:end + len(END)]


def _header(message: bytes, errors: str = "replace") -> tuple[str, str, list[str]]:
    """The field separator, encoding characters and fields of `message`'s MSH ([] when
    it has none). Leading CR, LF, spaces and a byte-order mark are skipped: some senders
    start a frame with them, and their ACK must still name the message. `errors`: how
    bytes that are not UTF-8 are read (`surrogateescape` keeps them, to echo as sent)."""
    raw = message.decode("utf-8", errors=errors).lstrip(" \t\r\n\x0b\ufeff")
    raw = raw.replace("\r\n", "\r").replace("\n", "\r")
    # the first MSH: a batch envelope (FHS, BHS) may come before it
    msh = next((s for s in raw.split("\r") if s.lstrip().startswith("MSH")), "").lstrip()
    sep = msh[3] if len(msh) > 3 else "|"
    enc = msh[4:8] if len(msh) > 8 and msh[4:8].find(sep) < 0 else "^~\\&"
    return sep, enc, msh.split(sep) if msh else []


#: bytes that frame an MLLP message or end a segment: never echoed inside an ACK's field
_FRAMING = re.compile("[\x0b\x1c\r\n]")


def control_id(message: bytes) -> str:
    """MSH-10 of `message` ("" without one)."""
    _, _, fields = _header(message)
    return fields[9] if len(fields) >= 10 else ""


def acknowledgement(message: bytes, code: str, text: str) -> bytes:
    """An HL7 v2 ACK for `message` (MSA-1 `code`, MSA-2 its control id, ERR on failure).
    The fields echoed from the message are its own bytes, UTF-8 or not: a control id
    echoed with replacement characters matches no message the sender holds."""
    sep, enc, fields = _header(message, errors="surrogateescape")
    if _FRAMING.search(sep + enc):
        sep, enc = "|", "^~\\&"

    def field(n: int) -> str:  # MSH-n is fields[n-1] (MSH-1 is the separator itself)
        # the framing bytes and segment ends a field may hold would end the ACK early
        return _FRAMING.sub("", fields[n - 1]) if len(fields) >= n else ""

    control = field(10)
    trigger = field(9).split(enc[0])[1] if enc[0] in field(9) else ""
    # the reason is the gateway's text: any surrogate in it is not a byte of the message
    safe = text.encode("utf-8", "replace").decode("utf-8")
    safe = _FRAMING.sub(" ", safe).replace(sep, " ")
    for ch in enc:
        safe = safe.replace(ch, " ")
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    segments = [
        sep.join(["MSH", enc, field(5), field(6), field(3), field(4), now, "",
                  f"ACK{enc[0]}{trigger}{enc[0]}ACK" if trigger else "ACK",
                  f"ACK{control}"[:20], field(11) or "P", field(12) or "2.4"]),
        sep.join(["MSA", code, control, safe[:200]]),
    ]
    if code != "AA":
        segments.append(sep.join(["ERR", "", "", "", "E", "", "", safe[:500]]))
    return START + ("\r".join(segments) + "\r").encode("utf-8", "surrogateescape") + END


def header_segments(frame: bytes) -> int:
    """How many segments of `frame` are MSH segments, i.e. how many messages it holds
    by a plain count (the reader also splits where an MSH begins inside a segment)."""
    return sum(1 for segment in _SEGMENT_END.split(frame)
               if segment.lstrip(b" \t").startswith(b"MSH") and len(segment.strip()) > 3)


async def serve(host: str, port: int, process: Processor, *,
                ready: Callable[[int], None] | None = None,
                keep: Keeper | None = None) -> None:
    """Listen for MLLP connections, one frame at a time per connection, each answered
    by `process`. `keep` (default: `process.keep_refused`, as `loader_processor` gives)
    keeps the first bytes of a frame refused before it was read whole."""
    keeper: Keeper | None = keep or getattr(process, "keep_refused", None)
    too_large = (f"frame over {MAX_FRAME} bytes: not read or stored; send each message "
                 f"in a frame of at most {MAX_FRAME} bytes")

    async def refuse_unread(writer: asyncio.StreamWriter, head: bytes, reason: str) -> None:
        """AR for a frame not read whole, naming it by its MSH when `head` holds one;
        its first bytes kept for review if the store can take them."""
        writer.write(acknowledgement(head, "AR", reason))
        await writer.drain()
        if keeper is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(None, keeper, head, reason)
        except Exception:  # the store down too: the sender got AR and keeps the message
            log.exception("MLLP: a refused frame could not be kept for review")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = bytearray()
        # After an over-limit frame was refused, its bytes are dropped up to its end
        # block (`tail`: the last byte seen, as the block may span two reads), so the
        # connection goes on with the next frame and memory stays bounded.
        skipping, tail = False, b""
        loop = asyncio.get_running_loop()
        try:
            while True:
                midframe = skipping or bool(buffer)  # `frames` leaves only a started frame
                try:
                    data = await asyncio.wait_for(
                        reader.read(65536), FRAME_IDLE_SECONDS if midframe else None)
                except TimeoutError:
                    if not skipping:
                        start = buffer.find(START)
                        await refuse_unread(
                            writer, bytes(buffer[start + 1:start + 1 + KEPT_BYTES]),
                            f"frame incomplete: no end block and nothing sent for "
                            f"{FRAME_IDLE_SECONDS:g} s; not stored")
                    break  # where the next frame starts cannot be known
                if not data:
                    break
                if skipping:
                    # the refused frame ends at its end block, or where the next frame's
                    # start block shows that its end was lost
                    joined = tail + data
                    end, start = joined.find(END), joined.find(START)
                    if start >= 0 and (end < 0 or start < end):
                        skipping, tail, data = False, b"", joined[start:]
                    elif end >= 0:
                        skipping, tail, data = False, b"", joined[end + len(END):]
                    else:
                        tail = joined[-1:]
                        continue
                buffer += data
                if len(buffer) > MAX_FRAME and buffer.find(END) < 0:
                    start = buffer.find(START)
                    await refuse_unread(
                        writer, bytes(buffer[start + 1:start + 1 + KEPT_BYTES]), too_large)
                    # its last byte may be the first of a split end block
                    skipping, tail = True, bytes(buffer[-1:])
                    buffer.clear()
                    continue
                for frame in frames(buffer):
                    if len(frame) > MAX_FRAME:  # ended within the read that passed the limit
                        await refuse_unread(writer, frame[:KEPT_BYTES], too_large)
                        continue
                    try:
                        code, text = await loop.run_in_executor(None, process, frame)
                    except Exception as exc:
                        # Content problems come back as a rejection (AE/AR with the
                        # field); an exception is the gateway failing (the store locked
                        # or down, a bug), not the message: AR ("resend later"), never
                        # AE ("do not resend"). Its batch may have committed before a
                        # later step failed; a resent message already stored is a no-op.
                        log.exception("MLLP message failed")
                        code, text = "AR", (f"not acknowledged: the gateway failed while "
                                            f"storing the message ({exc}); resend it later")
                    writer.write(acknowledgement(frame, code, text))
                    await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, host, port, limit=MAX_FRAME)
    bound = server.sockets[0].getsockname()[1]
    if ready:
        ready(bound)
    async with server:
        await server.serve_forever()


def _text(data: bytes) -> str:
    """`data` as text for review, losing no byte (Latin-1 when it is not UTF-8)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


#: what an MLLP answer means to an AuditEvent's outcome (0 stored, 4 content, 8 gateway)
_ACK_STATUS = {"AA": 200, "AE": 422, "AR": 503}


class LoaderProcessor:
    """Process one frame with the ingestion pipeline; answer AA / AE / AR (see above).

    With an audit `trail`, every message the pipeline loaded, stored or not, is audited
    like a feed's REST write: an AuditEvent (create when it created a resource, else
    update; the listener and its partner as the system agent; the message's control
    id as request id; the Patients it wrote as entities), durable before the ACK is
    sent. A failure to audit answers AR (resend later): a resent message is audited
    again, naming the same Patients. A frame refused before loading is kept for review,
    not audited: it wrote nothing."""

    def __init__(self, loader: Any, partner: str, map_file: Callable[..., Any],
                 trail: Any = None) -> None:
        self.loader = loader
        self.partner = partner
        self.map_file = map_file
        self.trail = trail

    def __call__(self, frame: bytes) -> tuple[str, str]:
        from .pipeline.loader import STORE_BUSY

        # Mapped before anything is loaded, so that a frame of two messages is refused
        # whole; the reader's split also finds an MSH begun inside a segment.
        items = list(self.map_file(self.partner, SOURCE_FILE, frame))
        messages = max(len(items), header_segments(frame))
        if messages > 1:
            ids = [i.source.record_id for i in items if i.source.record_id]
            named = f" (control ids {', '.join(ids)})" if ids else ""
            reason = (f"the frame holds {messages} HL7 messages{named}: an MLLP frame "
                      "carries one (a lost end block runs two together), so none of "
                      "them was stored; send each message in its own frame")
            self.keep_refused(frame, reason)
            return "AR", reason
        if not items:
            return "AR", "no HL7 message in the frame"
        summary = self.loader.ingest(items)
        code, text = self._answer(summary, STORE_BUSY)
        if self.trail is not None:
            self.trail.record(self._audit_events(items[0], summary, code, text))
        return code, text

    @staticmethod
    def _answer(summary: Any, store_busy: str) -> tuple[str, str]:
        # Only this message's outcome: the run's rejections come first, and those of
        # the partner's earlier-held records retried after it (`retried`) are not its.
        earlier = summary.retried.rejected if summary.retried is not None else 0
        if summary.rejected > earlier:
            first = summary.rejections[0]
            if first["reason"] == store_busy or first["field"] in NOT_CONTENT_FIELDS:
                return "AR", first["reason"]
            return "AE", first["reason"]
        if summary.held:
            return "AA", "stored; the person is held for identity review"
        return "AA", "stored"

    def _audit_events(self, item: Any, summary: Any, code: str,
                      text: str) -> list[dict[str, Any]]:
        """The AuditEvents of one loaded message (see the class docstring)."""
        from .fhir.request import Caller
        from .security.audit.events import audit_events, held_retry_events

        source = item.source
        created = summary.created > 0  # else updated, or unchanged (a resend)
        counts = ", ".join(f"{k} {v}" for k, v in summary.counts().items())
        control = source.record_id or control_id(source.raw.encode("utf-8"))
        caller = Caller(client_id=f"mllp-listener/{self.partner}", role="feed",
                        organization=source.ods_code or None)
        observer = f"fhir-gateway mllp {self.trail.instance}"
        return audit_events(
            subtype="create" if created else "update", action="C" if created else "U",
            status=_ACK_STATUS.get(code, 500), caller=caller,
            observer=observer, destination=f"mllp:{self.partner}", request_id=control,
            patients=summary.patients if code == "AA" else (),
            description=f"MLLP {self.partner} message {code}: {counts}; "
                        f"{text}"[:1000]) + held_retry_events(
            summary, observer=observer, destination=f"mllp:{self.partner}",
            request_id=control)

    def keep_refused(self, frame_start: bytes, reason: str) -> None:
        """Keep a refused frame (or the first bytes of one too large or never ended)
        for review, as a rejected record of this partner's: nothing of it is loaded."""
        from .ingest import cached_mapping
        from .ingest.model import SourceRef

        mapping = cached_mapping(self.partner)
        control = control_id(frame_start) or None
        source = SourceRef(partner=mapping.partner, ods_code=mapping.ods_code,
                           partner_name=mapping.name, file=SOURCE_FILE, position="frame",
                           record_id=control, event_time=None,
                           mapping_version=mapping.version, raw=_text(frame_start))
        ident = f" ({control})" if control else ""
        self.loader.keep_rejected(
            source, "frame",
            f"{self.partner} record at {SOURCE_FILE} frame{ident} was rejected: {reason}.")


def loader_processor(loader: Any, partner: str, map_file: Callable[..., Any],
                     trail: Any = None) -> LoaderProcessor:
    """Process one frame with the ingestion pipeline; answer AA / AE / AR; audited in
    `trail` (an `AuditTrail`, e.g. `security.open_trail`) when one is given."""
    return LoaderProcessor(loader, partner, map_file, trail)
