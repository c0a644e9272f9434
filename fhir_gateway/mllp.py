"""An MLLP listener for an HL7 v2 feed (`fhir-gateway mllp --port P`).

Each frame (0x0B message 0x1C 0x0D) is mapped and loaded like a one-message file, and
only then acknowledged: AA when stored (or held for identity review: kept, not lost), AE
with the reason when the message was read but a field was wrong, AR when it could not be
read at all. An acknowledgement is sent after the store has committed, so nothing
acknowledged is ever lost; a message that gets no AA should be resent by the sender.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("fhir_gateway.mllp")

START, END = b"\x0b", b"\x1c\x0d"
#: Largest frame accepted; a sender that never closes a frame cannot fill memory.
MAX_FRAME = 4 * 1024 * 1024

Processor = Callable[[bytes], tuple[str, str]]  # frame -> (ack code, text)


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


def acknowledgement(message: bytes, code: str, text: str) -> bytes:
    """An HL7 v2 ACK for `message` (MSA-1 `code`, MSA-2 its control id, ERR on failure)."""
    raw = message.decode("utf-8", errors="replace").replace("\r\n", "\r").replace("\n", "\r")
    msh = raw.split("\r", 1)[0] if raw.startswith("MSH") else ""
    sep = msh[3] if len(msh) > 3 else "|"
    enc = msh[4:8] if len(msh) > 8 and msh[4:8].find(sep) < 0 else "^~\\&"
    fields = msh.split(sep) if msh else []

    def field(n: int) -> str:  # MSH-n is fields[n-1] (MSH-1 is the separator itself)
        return fields[n - 1] if len(fields) >= n else ""

    control = field(10)
    trigger = field(9).split(enc[0])[1] if enc[0] in field(9) else ""
    safe = text.replace(sep, " ").replace("\r", " ").replace("\n", " ")
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
    return START + ("\r".join(segments) + "\r").encode("utf-8") + END


async def serve(host: str, port: int, process: Processor, *,
                ready: Callable[[int], None] | None = None) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = bytearray()
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(65536):
                buffer += data
                if len(buffer) > MAX_FRAME and buffer.find(END) < 0:
                    writer.write(acknowledgement(b"", "AR", f"frame over {MAX_FRAME} bytes"))
                    await writer.drain()
                    break
                for frame in frames(buffer):
                    try:
                        code, text = await loop.run_in_executor(None, process, frame)
                    except Exception as exc:
                        log.exception("MLLP message failed")
                        code, text = "AE", f"not stored: {exc}"
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


def loader_processor(loader: Any, partner: str,
                     map_file: Callable[..., Any]) -> Processor:
    """Process one frame with the ingestion pipeline; answer AA / AE / AR."""

    def process(frame: bytes) -> tuple[str, str]:
        summary = loader.ingest(map_file(partner, "mllp", frame))
        if summary.read == 0:
            return "AR", "no HL7 message in the frame"
        if summary.rejected:
            reason = summary.rejections[0]["reason"]
            unreadable = summary.rejections[0]["field"] in ("MSH", "message", "-")
            return ("AR" if unreadable else "AE"), reason
        if summary.held:
            return "AA", "stored; the person is held for identity review"
        return "AA", "stored"

    return process
