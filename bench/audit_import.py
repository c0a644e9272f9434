#!/usr/bin/env python3
"""CPU per AuditEvent imported from the audit journal into SQLite, as a ratio to a bare
insert of the same lines, side by side.

What it measures
    `--events` sealed AuditEvents of audited reads (a clinician reading Patients, as
    `fhir_gateway.security.audit.events.audit_event` writes them), as journal lines. Each
    round, on a fresh SQLite file (synchronous FULL, as served):
    * import: `journal.read_lines` then `journal.store_in_batches`, `--batch` lines at a
      time on average (the background importer's work per round: about 50 events at
      1,000 audited reads/s and its 0.05 s delay): parse, index values, the AuditEvent's
      rows in `resources`, `versions` and the index tables, the chain head, commit;
    * bare: the same lines inserted as-is into a one-table database (no index), in the
      same batches and transactions: what storing the text costs at all.
    Process CPU time (user+system of this process: SQLite runs in it), medians over
    `--rounds`, the two interleaved.

Why
    The importer runs in the serving process, so its CPU is taken from requests:
    bench/auth.py showed ~0.3 ms of server CPU per audited read with it, ~0.7 ms
    without it (bench/README.md). This isolates it, so a change to the store's insert
    path or to audit indexing can be judged in seconds.

Usage
    .venv/bin/python bench/audit_import.py [--events 5000] [--batch 50] [--rounds 5]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

# The installed package, as the other benches use it (the source tree lacks
# `fhir_gateway.auth`, which pyproject maps from `auth/` at install).
from fhir_gateway.fhir.repository import Repository
from fhir_gateway.security.audit.chain import Chain, Unsealed, unsealed_content
from fhir_gateway.security.audit.events import audit_event
from fhir_gateway.security.audit.index import audit_index
from fhir_gateway.security.audit.journal import read_lines, store_in_batches
from fhir_gateway.security.context import SecureCaller
from fhir_gateway.store import open_store


def journal_bytes(events: int) -> bytes:
    caller = SecureCaller(client_id="ward", role="clinician", organization="B86001",
                          purpose_of_use="TREAT")
    chain = Chain("bench-import")
    items = [Unsealed.of(audit_event(
        subtype="read", status=200, caller=caller, observer="bench",
        destination="http://127.0.0.1:8000/fhir", request_id=f"req-{n:08d}",
        what=f"Patient/p{n % 500}", patients={f"p{n % 500}"})) for n in range(events)]
    _, _, texts = chain.seal(items, "2026-11-23T08:00:00.000000Z")
    return "".join(f"{t}\n" for t in texts).encode("utf-8")


def batches(data: bytes, batch: int) -> list[bytes]:
    """The journal as the importer reads it: `batch` lines at a time on average, each round
    a different number (1 to 2 x batch - 1, seeded), as the requests of 0.05 s come. (Fixed
    sizes flatter multi-row inserts: each size is a statement SQLite prepares once.)"""
    lines = data.split(b"\n")[:-1]
    rng = random.Random(1)
    out, i = [], 0
    while i < len(lines):
        n = rng.randint(1, 2 * batch - 1)
        out.append(b"".join(x + b"\n" for x in lines[i:i + n]))
        i += n
    return out


def import_once(chunks: list[bytes], directory: Path) -> float:
    engine = open_store(f"sqlite:///{directory}/import.sqlite3")
    repository = Repository(engine)
    try:
        # the registry's and the audit index's one-time set-up, done by a server at start
        audit_index(repository.registry, unsealed_content(
            read_lines(chunks[0], "warm-up")[0][0].event))
        started = time.process_time()
        for chunk in chunks:
            lines, _, problems = read_lines(chunk, "bench")
            assert not problems, problems[:3]
            store_in_batches(repository, lines)
        return time.process_time() - started
    finally:
        engine.close()


def bare_once(chunks: list[bytes], directory: Path) -> float:
    conn = sqlite3.connect(directory / "bare.sqlite3", isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE lines (pk INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        started = time.process_time()
        for chunk in chunks:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO lines (body) VALUES (?)",
                             [(r.decode("utf-8"),) for r in chunk.split(b"\n")[:-1]])
            conn.execute("COMMIT")
        return time.process_time() - started
    finally:
        conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    data = journal_bytes(args.events)
    chunks = batches(data, args.batch)
    imports: list[float] = []
    bares: list[float] = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="bench-audit-import-") as tmp:
            imports.append(import_once(chunks, Path(tmp)))
            bares.append(bare_once(chunks, Path(tmp)))
    per = 1000 / args.events
    imp, bare = statistics.median(imports) * per, statistics.median(bares) * per
    ratios = statistics.median(i / b for i, b in zip(imports, bares, strict=True))
    print(f"{args.events} AuditEvents ({len(data) // args.events} bytes each), batches of "
          f"{args.batch}, {args.rounds} rounds, SQLite {sqlite3.sqlite_version}")
    print(f"import (parse, index, store, commit): {imp:.3f} ms CPU per event")
    print(f"bare insert of the same lines:        {bare:.3f} ms CPU per event")
    print(f"ratio import / bare: {ratios:.1f}x (median of per-round ratios)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
