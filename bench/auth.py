#!/usr/bin/env python3
"""Read throughput with auth and audit on, as a ratio to both off, in the same run.

What it measures
    Three real `fhir-gateway serve` processes from this venv (uvicorn, 1 worker, log level
    warning), each on its own fresh SQLite file holding the same `--patients` Patients:
    * off:        FHIR_GATEWAY_AUTH=off (no token check, no audit);
    * auth:       auth on, FHIR_GATEWAY_AUDIT=off (token, client, role, consent checks);
    * auth+audit: auth on and audit on (the default): every read also writes a sealed,
                  hash-chained AuditEvent durably (SQLite synchronous as `--synchronous`)
                  before it is answered.
    Each round loads the three one after the other (the order rotates), with the same
    client code: `--concurrency` threads, each with its own keep-alive httpx connection,
    `--requests` GET /fhir/Patient/{id} of random ids (a warm-up first, not counted).
    Secured servers get a real token from the real token endpoint (`fhir-gateway token`
    flow). Every response must be 200; otherwise the bench stops and exits 1.

How to read it
    req/s, client p50/p99 per configuration (medians over rounds), the ratio to `off` (the
    median of the per-round ratios: paired, so it survives a noisy machine), and server CPU
    per request from /proc (user+system of the server process). The load generator is one
    Python process and tops out near one core; when `off` is client-bound its req/s is the
    client's ceiling, and the CPU-per-request ratio says what auth and audit cost the
    server. After the run, `audit verify` checks the trail the `auth+audit` server wrote
    under concurrent load.

Usage
    .venv/bin/python bench/auth.py [--requests 2000] [--concurrency 8] [--rounds 3]
        [--patients 200] [--synchronous FULL|NORMAL] [--json bench/out/auth.json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
from serverproc import gateway_cli as cli  # noqa: E402
from serverproc import gateway_command, process_tree_cpu, running_gateway  # noqa: E402

CONFIGS = {
    "off": {"FHIR_GATEWAY_AUTH": "off"},
    "auth": {"FHIR_GATEWAY_AUTH": "on", "FHIR_GATEWAY_AUDIT": "off"},
    "auth+audit": {"FHIR_GATEWAY_AUTH": "on", "FHIR_GATEWAY_AUDIT": "on"},
}


@dataclass
class Phase:
    rps: float
    p50: float
    p99: float
    cpu_ms: float
    failures: list[str] = field(default_factory=list)


def seed(store: str, patients: int) -> list[str]:
    from fhir_gateway.demo import numbered_nhs_number
    from fhir_gateway.fhir.repository import Repository
    from fhir_gateway.store import open_store

    engine = open_store(store)
    repo = Repository(engine)
    ids = []
    with repo.transaction() as s:
        for i in range(patients):
            pid = f"bench-{i}"
            repo.update({"resourceType": "Patient", "id": pid, "gender": "female",
                         "name": [{"family": f"Family{i}", "given": ["Ann"]}],
                         "birthDate": "1940-01-01",
                         "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number",
                                         "value": numbered_nhs_number(i)}]},
                        rtype="Patient", rid=pid, session=s)
            ids.append(pid)
    engine.close()
    return ids


def load(base: str, ids: list[str], headers: dict[str, str], n: int, concurrency: int,
         pid: int, seed_: int) -> Phase:
    rng = random.Random(seed_)
    plan = [rng.choice(ids) for _ in range(n)]
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    chunks = [plan[i::concurrency] for i in range(concurrency)]

    def worker(chunk: list[str]) -> None:
        mine = []
        with httpx.Client(headers=headers, timeout=30) as http:
            for rid in chunk:
                t = time.perf_counter()
                resp = http.get(f"{base}/Patient/{rid}")
                mine.append(time.perf_counter() - t)
                if resp.status_code != 200:
                    with lock:
                        failures.append(f"{resp.status_code} {resp.text[:200]}")
        with lock:
            latencies.extend(mine)

    cpu0 = process_tree_cpu(pid)
    started = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    cpu = process_tree_cpu(pid) - cpu0
    latencies.sort()
    return Phase(rps=n / elapsed, p50=latencies[len(latencies) // 2] * 1000,
                 p99=latencies[int(len(latencies) * 0.99)] * 1000,
                 cpu_ms=cpu / n * 1000, failures=failures)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    ap.add_argument("--workers", type=int, default=1,
                    help="uvicorn worker processes per server, the same for all three (1)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    results: dict[str, list[Phase]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="bench-auth-") as tmp:
        stores = {name: f"sqlite:///{tmp}/{name.replace('+', '-')}.sqlite3" for name in CONFIGS}
        ids = []
        for store in stores.values():
            ids = seed(store, args.patients)
        keys = {name: Path(tmp) / f"ward-{i}.jwk" for i, name in enumerate(CONFIGS)}
        for name, store in stores.items():
            if name != "off":
                cli(store, "client", "add", "ward", "--role", "clinician", "--org", "B86001",
                    "--new-key", str(keys[name]))
        env_common = {"FHIR_GATEWAY_SQLITE_SYNCHRONOUS": args.synchronous}
        with ExitStack() as stack:
            servers = {name: stack.enter_context(running_gateway(
                stores[name], env={**env_common, **env}, auth=name != "off",
                workers=args.workers))
                for name, env in CONFIGS.items()}
            order = list(CONFIGS)
            for rnd in range(args.rounds):
                for name in order[rnd % 3:] + order[:rnd % 3]:
                    gw = servers[name]
                    headers = {}
                    if name != "off":
                        token = cli(stores[name], "token", "ward", "--key", str(keys[name]),
                                    "--scope", "system/Patient.rs", "--url", gw.base_url)
                        headers = {"Authorization": f"Bearer {token}"}
                    load(gw.base_url, ids, headers, args.warmup, args.concurrency, gw.pid, rnd)
                    phase = load(gw.base_url, ids, headers, args.requests, args.concurrency,
                                 gw.pid, 1000 + rnd)
                    if phase.failures:
                        print(f"{name}: {len(phase.failures)} failed requests, e.g. "
                              f"{phase.failures[:3]}", file=sys.stderr)
                        return 1
                    results[name].append(phase)
                    print(f"round {rnd + 1} {name:>10}: {phase.rps:8.0f} req/s  "
                          f"p50 {phase.p50:6.2f} ms  p99 {phase.p99:7.2f} ms  "
                          f"server cpu {phase.cpu_ms:5.2f} ms/req", flush=True)
        verified = subprocess.run([*gateway_command(), "--store", stores["auth+audit"],
                                   "audit", "verify"],
                                  capture_output=True, text=True, check=False)

    def med(name: str, attr: str) -> float:
        return statistics.median(getattr(p, attr) for p in results[name])

    def ratio(name: str, attr: str) -> float:
        return statistics.median(getattr(a, attr) / getattr(b, attr)
                                 for a, b in zip(results[name], results["off"], strict=True))

    print()
    print(f"reads, {args.rounds} rounds x {args.requests} requests, concurrency "
          f"{args.concurrency}, {args.workers} worker(s) per server, SQLite "
          f"synchronous={args.synchronous}")
    print(f"{'':>12} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms/req':>11} "
          f"{'req/s ratio':>12} {'cpu ratio':>10}")
    summary: dict[str, Any] = {}
    for name in CONFIGS:
        summary[name] = {"rps": med(name, "rps"), "p50_ms": med(name, "p50"),
                         "p99_ms": med(name, "p99"), "cpu_ms": med(name, "cpu_ms"),
                         "rps_ratio": ratio(name, "rps"), "cpu_ratio": ratio(name, "cpu_ms")}
        s = summary[name]
        print(f"{name:>12} {s['rps']:8.0f} {s['p50_ms']:8.2f} {s['p99_ms']:8.2f} "
              f"{s['cpu_ms']:11.2f} {s['rps_ratio']:11.3f}x {s['cpu_ratio']:9.2f}x")
    headline = summary["auth+audit"]["rps_ratio"]
    print(f"\nread throughput with auth and audit on / both off: {headline:.3f} "
          f"(goal >= 0.7: {'met' if headline >= 0.7 else 'NOT met'})")
    print(f"audit verify after the run: {verified.stdout.strip() or verified.stderr.strip()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "summary": summary}, indent=2))
    return 0 if verified.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
