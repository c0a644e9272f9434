"""Durability: every write the gateway acknowledged survives SIGKILL of the server.

The issue: "A test sends a stream of writes, kills the server with SIGKILL mid-stream,
restarts it and finds every acknowledged write."

A real `fhir-gateway serve` on a SQLite file takes creates and updates from several
writer threads as fast as it answers them. Once enough writes have been acknowledged
(a 2xx answer received) and some requests are still in flight, the whole server process
group gets SIGKILL. A request that gets no answer is not acknowledged and nothing is
claimed about it. Then a fresh server on the same file must return every acknowledged
version with the content that was sent, and the file must pass `PRAGMA integrity_check`.
"""

from __future__ import annotations

import random
import re
import signal
import sqlite3
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from serverproc import GatewayProcess, running_gateway

WRITERS = 4
# Acknowledged writes before the kill: past SQLite's first WAL auto-checkpoint (about 300
# writes here), so after the restart the data comes from both the main file and the WAL.
KILL_AFTER = 500
CREATE_SHARE = 0.3  # the rest are updates of resources the same writer created
STREAM_TIMEOUT = 30.0  # seconds for the stream to reach KILL_AFTER
REQUEST_TIMEOUT = 10.0
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
ETAG = re.compile(r'W/"(\d+)"')
SERVER_ERRORS = ("Traceback", "unhandled error")


@dataclass(frozen=True, slots=True)
class Ack:
    """A write the server answered 2xx: the version it said it stored, and what we sent."""

    op: str  # "create" or "update"
    rid: str
    version: int
    family: str  # name[0].family, unique per write


@dataclass
class Stream:
    """What the writers saw, shared under one lock (the condition's)."""

    cond: threading.Condition = field(default_factory=threading.Condition)
    acks: list[Ack] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)  # writes sent per known id
    in_flight: int = 0
    killed: bool = False
    cut_off: list[str] = field(default_factory=list)  # sent before the kill, never answered
    problems: list[str] = field(default_factory=list)  # wrong answers: server bugs


def excerpt(log: str) -> str:
    """The end of a server log without its per-request lines for non-5xx answers."""
    lines = [line for line in log.splitlines()
             if not (line.startswith('{"method"') and '"status": 5' not in line)]
    return "\n".join(lines)[-4000:]


def version_of(response: httpx.Response) -> int:
    match = ETAG.fullmatch(response.headers.get("etag", ""))
    if match is None:
        raise AssertionError(f"ETag {response.headers.get('etag')!r} is not W/\"n\"")
    return int(match.group(1))


def check_answer(op: str, response: httpx.Response, family: str, rid: str | None,
                 expected_version: int | None) -> Ack:
    """The Ack a 2xx answer stands for; AssertionError when the answer is wrong."""
    want = 201 if op == "create" else 200
    assert response.status_code == want, (
        f"{op} answered {response.status_code}, not {want}: {response.text[:500]}")
    version = version_of(response)
    body: dict[str, Any] = response.json()
    rid = rid or body.get("id")
    assert rid and body.get("id") == rid, f"{op} answered id {body.get('id')!r}"
    assert body["meta"]["versionId"] == str(version), f"{op}: body and ETag disagree"
    assert body["name"][0]["family"] == family, f"{op}: the body is not what was sent"
    if expected_version is not None:
        assert version == expected_version, (
            f"update of Patient/{rid} answered version {version}, not {expected_version}")
    if op == "create":
        location = response.headers.get("location", "")
        assert location.endswith(f"/fhir/Patient/{rid}/_history/{version}"), (
            f"create answered Location {location!r}")
    return Ack(op, rid, version, family)


def writer(n: int, base_url: str, stream: Stream) -> None:
    """Create and update Patients until the server is gone; record what was acknowledged."""
    rng = random.Random(n)
    mine: dict[str, int] = {}  # id -> last acknowledged version (only this writer touches it)
    with httpx.Client(base_url=base_url, headers=FHIR_JSON, timeout=REQUEST_TIMEOUT) as client:
        for seq in range(1, 1_000_000):
            family = f"w{n}-{seq}-{uuid.uuid4().hex[:12]}"
            body: dict[str, Any] = {"resourceType": "Patient", "name": [{"family": family}]}
            if len(mine) < 2 or rng.random() < CREATE_SHARE:
                op, rid, expected = "create", None, None
            else:
                op = "update"
                rid = rng.choice(sorted(mine))
                expected = mine[rid] + 1  # the content always changes: a new version
                body["id"] = rid
            with stream.cond:
                if stream.killed or stream.problems:
                    return
                stream.in_flight += 1
                if rid is not None:
                    stream.attempts[rid] += 1
            try:
                if op == "create":
                    response = client.post("/Patient", json=body)
                else:
                    response = client.put(f"/Patient/{rid}", json=body)
            except httpx.TransportError as exc:
                with stream.cond:
                    stream.in_flight -= 1
                    what = f"{op} {rid or '(new)'}: {exc!r}"
                    if stream.killed:
                        stream.cut_off.append(what)
                    else:
                        stream.problems.append(f"transport error before the kill: {what}")
                    stream.cond.notify_all()
                return  # the server is gone: no further writes from this writer
            try:
                ack = check_answer(op, response, family, rid, expected)
            except (AssertionError, ValueError, KeyError, IndexError, TypeError) as exc:
                with stream.cond:
                    stream.in_flight -= 1
                    stream.problems.append(f"writer {n}: {exc}")
                    stream.cond.notify_all()
                return
            mine[ack.rid] = ack.version
            with stream.cond:
                stream.in_flight -= 1
                if op == "create":
                    stream.attempts[ack.rid] += 1
                stream.acks.append(ack)
                stream.cond.notify_all()


def run_stream_and_kill(gateway: GatewayProcess, stream: Stream) -> dict[str, Any]:
    """Start the writers, SIGKILL the server mid-stream, wait for the writers to finish."""
    threads = [threading.Thread(target=writer, args=(n, gateway.base_url, stream),
                                name=f"writer-{n}", daemon=True) for n in range(WRITERS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    with stream.cond:
        stream.cond.wait_for(
            lambda: bool(stream.problems)
            or (len(stream.acks) >= KILL_AFTER and stream.in_flight > 0)
            or not any(t.is_alive() for t in threads),
            timeout=STREAM_TIMEOUT)
        # Kill under the lock: an answer a writer holds now was sent before the kill.
        stream.killed = True
        at_kill = {"acks": len(stream.acks), "in_flight": stream.in_flight,
                   "seconds": round(time.monotonic() - started, 2)}
        status = gateway.kill()
    for thread in threads:
        thread.join(timeout=REQUEST_TIMEOUT + 5)
    assert not any(t.is_alive() for t in threads), "a writer did not finish after the kill"
    return {**at_kill, "exit_status": status}


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "durability.sqlite3"
    store_url = f"sqlite:///{db}"
    stream = Stream()

    with running_gateway(store_url) as gateway:
        at_kill = run_stream_and_kill(gateway, stream)
        first_log = gateway.log()

    assert not stream.problems, (
        f"the server gave wrong answers before the kill: {stream.problems[:5]}\n"
        f"server output:\n{excerpt(first_log)}")
    assert at_kill["exit_status"] == -signal.SIGKILL, at_kill
    assert at_kill["acks"] >= KILL_AFTER, (
        f"only {at_kill['acks']} writes acknowledged in {STREAM_TIMEOUT:.0f} s: {at_kill}")
    assert at_kill["in_flight"] > 0, f"nothing was in flight at the kill: {at_kill}"
    assert stream.cut_off, (
        f"no request was cut off by the kill, so it did not land mid-stream: {at_kill}")
    creates = [a for a in stream.acks if a.op == "create"]
    updates = [a for a in stream.acks if a.op == "update"]
    assert creates and updates, f"{len(creates)} creates, {len(updates)} updates"

    newest: dict[str, Ack] = {}  # each id's last acknowledged write
    for ack in stream.acks:
        if ack.rid not in newest or ack.version > newest[ack.rid].version:
            newest[ack.rid] = ack

    missing: list[str] = []
    with running_gateway(store_url) as gateway, httpx.Client(
            base_url=gateway.base_url, headers=FHIR_JSON, timeout=REQUEST_TIMEOUT) as client:
        for rid, ack in newest.items():
            response = client.get(f"/Patient/{rid}")
            if response.status_code != 200:
                missing.append(f"read Patient/{rid}: {response.status_code}")
                continue
            current = version_of(response)
            # At least the last acknowledged version; at most one per write sent (an
            # unanswered write may or may not have committed).
            if not ack.version <= current <= stream.attempts[rid]:
                missing.append(f"Patient/{rid} is at version {current}; acknowledged "
                               f"{ack.version}, {stream.attempts[rid]} writes sent")
            elif current == ack.version and response.json()["name"][0]["family"] != ack.family:
                missing.append(f"read Patient/{rid}: not the content of {ack}")
        for ack in stream.acks:
            response = client.get(f"/Patient/{ack.rid}/_history/{ack.version}")
            if response.status_code != 200:
                missing.append(f"vread {ack}: {response.status_code}")
                continue
            body = response.json()
            if body["name"][0]["family"] != ack.family or body["meta"]["versionId"] != str(
                    ack.version):
                missing.append(f"vread {ack}: got {body['name'][0]['family']!r} "
                               f"version {body['meta']['versionId']}")
        stop_status = gateway.stop()  # graceful, so the file is closed for the check below
        second_log = gateway.log()

    assert not missing, (
        f"{len(missing)} discrepancies with the {len(stream.acks)} acknowledged writes "
        f"after the restart: {missing[:10]}\nserver output:\n{excerpt(second_log)}")
    assert stop_status in (0, -signal.SIGTERM), (
        f"the restarted server did not stop on SIGTERM (status {stop_status}):\n"
        f"{excerpt(second_log)}")
    for name, log in (("before the kill", first_log), ("after the restart", second_log)):
        errors = [line for line in log.splitlines() if any(e in line for e in SERVER_ERRORS)]
        assert not errors, f"server errors {name}: {errors[:5]}\n{excerpt(log)}"

    with sqlite3.connect(db) as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchall()
    conn.close()
    assert integrity == [("ok",)], integrity
    print(f"durability: {len(creates)} creates + {len(updates)} updates acknowledged; "
          f"kill at {at_kill}; {len(stream.cut_off)} requests cut off")
