"""MLLP framing and HL7 acknowledgements (the listener's pure parts; end to end in tests/ingest)."""

from __future__ import annotations

import hl7

from fhir_gateway.mllp import END, START, acknowledgement, frames

ADT = (b"MSH|^~\\&|PAS|RXA|SCR|GATEWAY|202506172006||ADT^A01^ADT_A01|MSG00000124|P|2.4\r"
       b"EVN|A01|202506172006\r")


def test_frames_are_cut_at_boundaries_and_partial_frames_wait() -> None:
    buffer = bytearray(b"noise" + START + ADT + END + START + b"MSH|part")
    assert frames(buffer) == [ADT]
    assert bytes(buffer) == START + b"MSH|part"
    buffer += b"ial\r" + END
    assert frames(buffer) == [b"MSH|partial\r"]
    assert bytes(buffer) == b""


def test_ack_echoes_control_id_and_reason() -> None:
    ack = acknowledgement(ADT, "AE", "gp line 3: NHS Number fails | Modulus 11")
    assert ack.startswith(START) and ack.endswith(END)
    msg = hl7.parse(ack[1:-2].decode())
    assert str(msg.segment("MSA")[1]) == "AE"
    assert str(msg.segment("MSA")[2]) == "MSG00000124"
    assert "Modulus 11" in str(msg.segment("ERR"))
    assert str(msg.segment("MSH")[9]) == "ACK^A01^ACK"
    assert (str(msg.segment("MSH")[3]), str(msg.segment("MSH")[5])) == ("SCR", "PAS")


def test_ack_for_custom_encoding_characters() -> None:
    custom = ADT.replace(b"|", b"#").replace(b"^~\\&", b"$~\\&", 1).replace(b"^", b"$")
    ack = acknowledgement(custom, "AA", "stored")
    text = ack[1:-2].decode()
    assert text.startswith("MSH#$~\\&#") and "MSA#AA#MSG00000124#stored" in text


def test_ack_echoes_a_control_id_that_is_not_utf8_as_its_bytes() -> None:
    """MSH-10 in Latin-1 was echoed with replacement characters, an id the sender could
    not match to its message (left in session 18)."""
    latin = ADT.replace(b"MSG00000124", "MSG-É1".encode("cp1252")) \
        .replace(b"|PAS|", "|PÄS|".encode("cp1252"))
    ack = acknowledgement(latin, "AE", "MSH-10 is not valid UTF-8 \udcc9 \ud800")
    msa = next(s for s in ack[1:-2].split(b"\r") if s.startswith(b"MSA"))
    assert msa.split(b"|")[2] == "MSG-É1".encode("cp1252")
    msh = ack[1:-2].split(b"\r")[0].split(b"|")
    assert msh[4] == "PÄS".encode("cp1252")  # the sender's application, as it sent it
    assert b"MSH-10 is not valid UTF-8 ? ?" in ack  # the gateway's own text stays UTF-8


def test_ack_never_echoes_framing_bytes_a_field_holds() -> None:
    """MSH-12 holding 0x1C before a line feed is inside the frame (only 0x1C CR ends
    one); echoed raw, it ended the sender's ACK before its MSA (review 21)."""
    message = (b"MSH|^~\\&|PAS|TRUST|GW|SCR|20260101120000||ADT^A01|MSG1\x0b|P|2.4\x1c\n"
               b"PID|||123")
    assert frames(bytearray(START + message + END)) == [message]
    ack = acknowledgement(message, "AE", "bad \x1c\r value")
    [frame] = frames(bytearray(ack))
    segments = frame.split(b"\r")
    assert [s[:3] for s in segments if s] == [b"MSH", b"MSA", b"ERR"]
    assert segments[1].split(b"|")[:3] == [b"MSA", b"AE", b"MSG1"]
    assert segments[0].split(b"|")[11] == b"2.4"
