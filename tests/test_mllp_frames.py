"""The MLLP listener over real TCP, on a SQLite store: one message per frame, and the
ACK code saying whose fault a refusal is (HL7 v2 original mode: AE "the content is wrong,
do not resend as is"; AR "refused for another reason, resend later")."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hl7
import pytest

from fhir_gateway import mllp
from fhir_gateway.errors import Unprocessable
from fhir_gateway.fhir.repository import Repository
from fhir_gateway.ingest import map_file
from fhir_gateway.mllp import END, START, loader_processor, serve
from fhir_gateway.pipeline.service import IngestService
from fhir_gateway.store.base import VersionConflict
from fhir_gateway.store.query import IndexQuery
from gatewaykit import make_engine


def adt(control: str, *, visit: str = "V45783795", trigger: str = "A01") -> bytes:
    return (f"MSH|^~\\&|PAS|RXA|SCR|GATEWAY|202506172006||ADT^{trigger}^ADT_A01|{control}"
            f"|P|2.4\rEVN|{trigger}|202506172006\r"
            "PID|1||7731322815^^^NHS^NH~RXA5621246^^^RXA^MR||HILL^DAVID^RAYMOND||19480905|M"
            "|||185 Cradley Road^^Kingswinford^^DY6 2XB||01384 920299\r"
            "PD1|||^^Y90001\r"
            "PV1|1|I|WARD 7^BAY C^BED 1^RXA||||C1234567^THOMPSON^A^^^DR|||300||||||||"
            f"|{visit}|||||||||||||||||||||||||202506172006|\r").encode()


#: a message with no PID: read, but the feed's messages must have one
NO_PID = (b"MSH|^~\\&|PAS|RXA|SCR|GATEWAY|202506172006||ADT^A01^ADT_A01|C5BAD|P|2.4\r"
          b"EVN|A01|202506172006\r")


@dataclass
class Listener:
    port: int
    service: IngestService
    db: Path

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), 30)

    def count(self, rtype: str) -> int:
        return len(self.service.loader.repo.find(IndexQuery(rtype=rtype)).rows)

    def rejected(self) -> list[dict[str, Any]]:
        return [value for _, value in self.service.loader.list_rejected()]


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    """`serve` on its own event loop in a thread, storing into a SQLite file."""
    engine = make_engine("sqlite", tmp_path)
    service = IngestService(Repository(engine))
    loop = asyncio.new_event_loop()
    bound: list[int] = []
    ready = threading.Event()

    def on_ready(port: int) -> None:
        bound.append(port)
        ready.set()

    def run() -> None:
        asyncio.set_event_loop(loop)
        main = loop.create_task(serve("127.0.0.1", 0,
                                      loader_processor(service.loader, "acute", map_file),
                                      ready=on_ready))
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(main)
        rest = asyncio.all_tasks(loop)
        for task in rest:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_default_executor())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield Listener(bound[0], service, tmp_path / "store.sqlite3")
    finally:
        loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
        thread.join(30)
        loop.close()
        engine.close()


def receive(sock: socket.socket, timeout: float = 60) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while not data.endswith(END):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def exchange(listener: Listener, frame: bytes) -> hl7.Message:
    with listener.connect() as sock:
        sock.sendall(frame)
        return parse(receive(sock))


def parse(ack: bytes) -> hl7.Message:
    assert ack.startswith(START) and ack.endswith(END), ack
    # an ACK echoes the message's header fields as their own bytes: UTF-8 only when the
    # message's were (the sender matches its control id byte for byte)
    return hl7.parse(ack[1:-2].decode("utf-8", "surrogateescape"))


def msa(ack: hl7.Message) -> tuple[str, str, str]:
    seg = ack.segment("MSA")
    return str(seg[1]), str(seg[2]), str(seg[3])


@pytest.mark.parametrize("body", [
    adt("C4", visit="V4") + START + NO_PID,  # a lost end block: a start block inside
    adt("C4", visit="V4") + NO_PID,  # run together, the second one bad
    adt("C4", visit="V4") + adt("C5", visit="V5"),  # two good messages
    adt("C4", visit="V4")[:-1] + adt("C5", visit="V5"),  # the first lost its terminator
], ids=["start-block-inside", "good-then-bad", "good-then-good", "cut-short"])
def test_a_frame_of_two_messages_is_refused_whole(listener: Listener, body: bytes) -> None:
    ack = exchange(listener, START + body + END)
    code, control, text = msa(ack)
    # refused whole, named by the frame's first message, nothing of it stored
    assert (code, control) == ("AR", "C4"), text
    assert "2 HL7 messages" in text
    assert (str(ack.segment("MSH")[3]), str(ack.segment("MSH")[5])) == ("SCR", "PAS")
    assert listener.count("Encounter") == listener.count("Patient") == 0
    (kept,) = listener.rejected()  # the raw frame, for review, with the reason
    assert kept["partner"] == "acute" and "2 HL7 messages" in kept["reason"]
    assert kept["raw"].startswith("MSH|") and "C4" in kept["raw"] and "C5" in kept["raw"]
    # each in its own frame: both acknowledged and stored
    assert msa(exchange(listener, START + adt("C6", visit="V6") + END))[:2] == ("AA", "C6")


@pytest.mark.parametrize("lead", [b"\n", b"\r\n", b"\r\n  ", "\ufeff".encode()],
                         ids=["lf", "crlf", "spaces", "bom"])
def test_a_frame_starting_with_line_breaks_is_acknowledged_by_its_control_id(
        listener: Listener, lead: bytes) -> None:
    ack = exchange(listener, START + lead + adt("C9") + END)
    assert msa(ack)[:2] == ("AA", "C9")
    msh = ack.segment("MSH")
    assert [str(msh[n]) for n in (3, 4, 5, 6)] == ["SCR", "GATEWAY", "PAS", "RXA"]
    assert listener.count("Encounter") == 1


def test_a_locked_store_answers_ar_and_the_resent_message_is_stored(
        listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    # Another writer holds the store's writer lock past the wait (60 s in service).
    monkeypatch.setattr("fhir_gateway.store.sqlite.WRITER_WAIT_S", 0.3)
    with open(f"{listener.db}-writers", "ab") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            code, control, text = msa(exchange(listener, START + adt("L2") + END))
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    # not the content's fault: AR ("resend later"), never AE ("do not resend as is")
    assert (code, control) == ("AR", "L2")
    assert "busy" in text and "resend" in text  # StoreBusy: "the store is busy ..."
    assert listener.count("Encounter") == 0
    assert msa(exchange(listener, START + adt("L2") + END))[:2] == ("AA", "L2")
    assert listener.count("Encounter") == 1


def test_the_ack_code_says_whether_the_content_is_at_fault(
        listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = listener.service.loader.repo
    real = repo._write_once

    def refusing(session: Any, rtype: str, *args: Any) -> Any:
        if rtype == "Encounter":
            raise Unprocessable("the store refuses this Encounter")
        return real(session, rtype, *args)

    # a write the message implies is refused by the store: its content, so AE
    monkeypatch.setattr(repo, "_write_once", refusing)
    code, control, text = msa(exchange(listener, START + adt("R1") + END))
    assert (code, control) == ("AE", "R1") and "refuses" in text

    def busy(session: Any, rtype: str, *args: Any) -> Any:
        raise VersionConflict("another writer, every time")

    # the store stays busy through every attempt: not the content, so AR
    monkeypatch.setattr(repo, "_write_once", busy)
    code, control, text = msa(exchange(listener, START + adt("R2", visit="V2") + END))
    assert (code, control) == ("AR", "R2") and "busy" in text


@pytest.mark.parametrize("over", [1024, 1024 * 1024], ids=["just-over", "well-over"])
def test_an_over_limit_frame_is_refused_by_its_control_id_and_kept(
        listener: Listener, over: int) -> None:
    big = adt("H1").replace(b"PD1|", b"NTE|1||" + b"x" * (mllp.MAX_FRAME + over) + b"\rPD1|")
    with listener.connect() as sock:
        sock.sendall(START + big + END)
        code, control, text = msa(ack := parse(receive(sock)))
        assert (code, control) == ("AR", "H1") and f"over {mllp.MAX_FRAME} bytes" in text
        assert (str(ack.segment("MSH")[5]), str(ack.segment("MSH")[6])) == ("PAS", "RXA")
        # the connection goes on with the next frame
        sock.sendall(START + adt("H2", visit="V2") + END)
        assert msa(parse(receive(sock)))[:2] == ("AA", "H2")
    assert listener.count("Encounter") == 1  # H2's only
    (kept,) = listener.rejected()  # its header and first bytes, with the reason
    assert kept["raw"].startswith("MSH|^~\\&|PAS|RXA|") and "|H1|" in kept["raw"]
    assert len(kept["raw"]) <= mllp.KEPT_BYTES and "over" in kept["reason"]


def test_after_an_over_limit_frame_a_split_end_block_or_the_next_start_resumes(
        listener: Listener) -> None:
    """Skipping the rest of a refused frame stops at its end block, even one split over
    two reads, or at the next frame's start block when its end was lost."""
    big = adt("S1").replace(b"PD1|", b"NTE|1||" + b"x" * (mllp.MAX_FRAME + 1000) + b"\rPD1|")
    with listener.connect() as sock:
        sock.sendall(START + big + b"\x1c")  # the end block's first byte only
        assert msa(parse(receive(sock)))[:2] == ("AR", "S1")
        time.sleep(0.3)
        sock.sendall(b"\x0d" + START + adt("S2", visit="V2") + END)
        assert msa(parse(receive(sock)))[:2] == ("AA", "S2")
        sock.sendall(START + big)  # never ended: the sender gives up and sends the next
        assert msa(parse(receive(sock)))[:2] == ("AR", "S1")
        sock.sendall(START + adt("S3", visit="V3") + END)
        assert msa(parse(receive(sock)))[:2] == ("AA", "S3")
    assert listener.count("Encounter") == 2


def test_a_batch_wrapped_message_is_acknowledged_by_its_control_id(
        listener: Listener) -> None:
    body = (b"FHS|^~\\&|PAS|RXA|SCR|GATEWAY|202506172006\rBHS|^~\\&|PAS|RXA\r"
            + adt("B1") + b"BTS|1\rFTS|1\r")
    ack = exchange(listener, START + body + END)
    assert msa(ack)[:2] == ("AA", "B1")
    assert (str(ack.segment("MSH")[5]), str(ack.segment("MSH")[6])) == ("PAS", "RXA")


def test_a_frame_that_never_ends_is_refused_after_a_silence(
        listener: Listener, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mllp, "FRAME_IDLE_SECONDS", 0.5, raising=False)
    with listener.connect() as sock:
        sock.sendall(START + adt("U1"))  # no end block, and then nothing
        code, control, text = msa(parse(receive(sock, 30)))
        assert (code, control) == ("AR", "U1") and "incomplete" in text
        assert sock.recv(1) == b""  # closed: the memory it held is freed
    assert listener.count("Encounter") == 0
    (kept,) = listener.rejected()
    assert "|U1|" in kept["raw"] and "incomplete" in kept["reason"]


def test_bytes_that_are_not_utf8_in_a_field_answer_ae_naming_their_segment(
        listener: Listener) -> None:
    # the content is at fault: AE ("do not resend as is"); AR would have the sender
    # resend the same bytes for ever, holding up every later message behind it
    body = adt("U1").replace(b"HILL^DAVID", "HILL^DAVËID".encode("cp1252"))
    code, control, text = msa(exchange(listener, START + body + END))
    assert (code, control) == ("AE", "U1") and "PID" in text and "not valid utf-8" in text
    assert listener.count("Encounter") == 0


def test_bytes_that_are_not_utf8_in_the_header_answer_ae_naming_its_field(
        listener: Listener) -> None:
    """In MSH they were named "MSH", which says the frame had no usable header: AR, and
    the sender resent the same bytes for ever, though their control id was read."""
    body = adt("U1").replace(b"|RXA|", "|RXÉ|".encode("cp1252"), 1)
    assert "RXÉ".encode("cp1252") in body.split(b"\r")[0]
    ack = exchange(listener, START + body + END)
    code, control, text = msa(ack)
    assert (code, control) == ("AE", "U1") and "MSH-4" in text and "not valid utf-8" in text
    # the sender's own facility, echoed as it sent it (MSH-6 of the ACK)
    assert str(ack.segment("MSH")[6]).encode("utf-8", "surrogateescape") == \
        "RXÉ".encode("cp1252")
    assert listener.count("Encounter") == 0
