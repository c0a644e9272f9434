#!/usr/bin/env python3
"""Create/read throughput and latency of the FHIR gateway on SQLite, against a bare FastAPI app.

What it measures
    Two real servers, started here under uvicorn on free loopback ports with the same settings
    (1 worker, log level `warning`, no access log):
    * the gateway (`fhir-gateway serve` from this venv) on a fresh temporary SQLite file, with
      `FHIR_GATEWAY_SQLITE_SYNCHRONOUS` set from `--synchronous` (FULL: fsync per commit);
    * the baseline, `bench/baseline_app.py`: FastAPI with `POST /echo` (parse the JSON body,
      return it with 201) and `GET /item/{id}` (a small JSON document), no store.
    Each round loads both, one after the other (the order alternates between rounds), with the
    same httpx client code: `--concurrency` threads, each with its own keep-alive connection.
    Per target and round: a warm-up (not counted), then `--requests` creates (`POST
    /fhir/Patient` with a realistic UK Core style Patient: NHS number, name, birthDate,
    address, telecom, generalPractitioner; the same bodies go to `/echo`), then `--requests`
    reads of the ids just created, in random order. Every response must be 2xx (and every
    gateway create must carry a `Location` with the new id): otherwise the bench stops, prints
    what it has with the count of failures, and exits 1.

How to read it
    The machine is shared and noisy, and on 2 cores the load generator (this process) competes
    with the server for CPU, so absolute req/s say little on their own. Read the ratio
    gateway/baseline: both were measured side by side in the same rounds. Each figure is the
    median over rounds; the ratio is the median of the per-round ratios (a paired comparison).
    Throughput ratio 0.25 means the gateway serves a quarter of the requests per second that a
    bare FastAPI route serves here; latency ratio 4 means p50 (or p99) is four times as long.
    The per-round lines show the spread: if the ratios swing a lot between rounds, the machine
    was busy; run again with more `--rounds`.
    The second table gives server CPU per request (user+system of the server process, from
    /proc, 10 ms ticks) and the cores the load generator used. The load generator is one Python
    process (GIL), so it tops out near one core, and a bare FastAPI route is faster than it:
    the baseline, and the gateway's reads, are client-bound, which the note under the table
    says. There the req/s ratio only shows the client's ceiling; compare the server CPU per
    request instead.
    Every response is counted (warm-up included) in `non-2xx` and the `responses` lines.

Usage
    .venv/bin/python bench/crud.py [--requests 2000] [--concurrency 8] [--rounds 5]
        [--synchronous FULL|NORMAL] [--json bench/out/crud.json]
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import importlib.metadata
import itertools
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

from fhir_gateway.demo import nhs_number

HOST = "127.0.0.1"  # loopback only
BENCH_DIR = Path(__file__).resolve().parent
STARTUP_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 30.0
FHIR_JSON = "application/fhir+json"
LOCATION_RE = re.compile(r"/fhir/Patient/([A-Za-z0-9\-.]{1,64})/_history/1$")
MAX_FAILURE_SAMPLES = 5
CLIENT_BOUND_CORES = 0.8  # the load generator is one Python process: about 1 core at most


# ---------------------------------------------------------------------------- test data


GIVEN = ["Oliver", "Amelia", "George", "Isla", "Arthur", "Ava", "Noah", "Mia", "Leo", "Ivy",
         "Margaret", "Harold", "Joan", "Stanley", "Doreen", "Kenneth", "Eileen", "Dennis"]
FAMILY = ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
          "Patel", "Robinson", "Wright", "Thompson", "Evans", "Walker", "Khan", "Hughes"]
TOWNS = [("Leeds", "West Yorkshire", "LS"), ("Bradford", "West Yorkshire", "BD"),
         ("Wakefield", "West Yorkshire", "WF"), ("Harrogate", "North Yorkshire", "HG"),
         ("Halifax", "West Yorkshire", "HX"), ("Huddersfield", "West Yorkshire", "HD")]
STREETS = ["High Street", "Station Road", "Church Lane", "Victoria Road", "Mill Lane",
           "Park Avenue", "The Green", "Manor Road"]
PRACTICES = [("B86001", "Leeds City Medical Practice"), ("B83002", "Bradford Moor Surgery"),
             ("B87003", "Wakefield Health Centre"), ("B82004", "Harrogate Family Practice")]


def uk_patient(rng: random.Random) -> dict[str, Any]:
    """A Patient as a UK care record holds it (UK Core shape, fictitious data)."""
    town, county, area = rng.choice(TOWNS)
    ods, practice = rng.choice(PRACTICES)
    given, family = rng.choice(GIVEN), rng.choice(FAMILY)
    birth = dt.date(1925, 1, 1) + dt.timedelta(days=rng.randrange(365 * 80))
    inward = f"{rng.randrange(1, 10)}{rng.choice('ABDEFGHJLNP')}{rng.choice('ABDEFGHJLNQRTUWXYZ')}"
    postcode = f"{area}{rng.randrange(1, 30)} {inward}"
    return {
        "resourceType": "Patient",
        "identifier": [{
            "extension": [{
                "url": "https://fhir.hl7.org.uk/StructureDefinition/"
                       "Extension-UKCore-NHSNumberVerificationStatus",
                "valueCodeableConcept": {"coding": [{
                    "system": "https://fhir.hl7.org.uk/CodeSystem/"
                              "UKCore-NHSNumberVerificationStatusEngland",
                    "code": "01",
                    "display": "Number present and verified",
                }]},
            }],
            "system": "https://fhir.nhs.uk/Id/nhs-number",
            "value": nhs_number(rng),
        }],
        "active": True,
        "name": [{"use": "official", "family": family, "given": [given],
                  "prefix": [rng.choice(["Mr", "Mrs", "Ms", "Miss", "Dr"])]}],
        "telecom": [
            {"system": "phone", "value": f"07700 900{rng.randrange(1000):03d}", "use": "mobile",
             "rank": 1},
            {"system": "email", "value": f"{given}.{family}{rng.randrange(100)}@example.org"
                                         .lower(), "use": "home"},
        ],
        "gender": rng.choice(["male", "female"]),
        "birthDate": birth.isoformat(),
        "address": [{
            "use": "home",
            "type": "physical",
            "line": [f"{rng.randrange(1, 200)} {rng.choice(STREETS)}"],
            "city": town,
            "district": county,
            "postalCode": postcode,
            "country": "GB",
        }],
        "generalPractitioner": [{
            "type": "Organization",
            "identifier": {"system": "https://fhir.nhs.uk/Id/ods-organization-code",
                           "value": ods},
            "display": practice,
        }],
    }


# ---------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the bench dies, even by SIGKILL (Linux)."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class ServerError(RuntimeError):
    pass


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    ready_path: str
    log_path: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self.env, start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        last = "no answer yet"
        with httpx.Client(base_url=self.base_url, timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                code = self.proc.poll()
                if code is not None:
                    raise ServerError(f"{self.name} exited with status {code} while starting\n"
                                      f"  command: {shlex.join(self.argv)}\n{self.log_tail()}")
                try:
                    resp = client.get(self.ready_path)
                    if resp.status_code == 200:
                        return
                    last = f"HTTP {resp.status_code} on {self.ready_path}"
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__}"
                time.sleep(0.1)
        raise ServerError(f"{self.name} did not come up within {STARTUP_TIMEOUT_S:.0f} s "
                          f"on {self.base_url} (last: {last})\n"
                          f"  command: {shlex.join(self.argv)}\n{self.log_tail()}")

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)  # its own session: only what we started
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (Linux /proc), else NaN."""
        if self.proc is None:
            return float("nan")
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            return float("nan")
        # after the ")" of comm: field 3 is state, so utime (14) and stime (15) are [11], [12]
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def log_tail(self, n: int = 20) -> str:
        lines = self.log_lines()[-n:]
        return "\n".join(f"  | {line}" for line in lines) or "  | (no output)"


def gateway_argv(db: Path, port: int) -> list[str]:
    exe = Path(sys.executable).parent / "fhir-gateway"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "fhir_gateway"]
    return [*cmd, "--store", f"sqlite:///{db}", "serve", "--host", HOST, "--port", str(port),
            "--workers", "1", "--log-level", "warning"]


def baseline_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "baseline_app:app", "--app-dir", str(BENCH_DIR),
            "--host", HOST, "--port", str(port), "--workers", "1", "--log-level", "warning",
            "--no-access-log"]


# ---------------------------------------------------------------------------- load


@dataclass
class PhaseResult:
    target: str
    phase: str
    requests: int
    seconds: float
    latencies_ms: list[float]
    statuses: Counter[int]
    failures: list[str]
    locations: list[str | None]
    server_cpu_s: float = float("nan")  # CPU time of the server process during the phase
    client_cpu_s: float = float("nan")  # CPU time of this process (the load) during the phase

    @property
    def completed(self) -> int:
        return sum(self.statuses.values())

    @property
    def non_2xx(self) -> int:
        """Responses outside 2xx, transport errors (status 0) and requests never sent."""
        ok = sum(n for code, n in self.statuses.items() if 200 <= code < 300)
        return self.requests - ok

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def quantile(self, q: int) -> float:
        """The q-th percentile in ms (inclusive method: between observed values)."""
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else float("nan")
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]


class Load:
    """`concurrency` threads, each with its own httpx client (one keep-alive connection)."""

    def __init__(self, name: str, base_url: str, concurrency: int) -> None:
        self.name = name
        self.clients = [
            httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S, trust_env=False,
                         headers={"Accept": FHIR_JSON},
                         limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))
            for _ in range(concurrency)
        ]
        self.stop_event = threading.Event()

    def close(self) -> None:
        self.stop_event.set()
        for client in self.clients:
            client.close()

    def run(self, phase: str, paths: Sequence[str], bodies: Sequence[bytes] | None,
            time_limit_s: float) -> PhaseResult:
        n = len(paths)
        latencies = [0.0] * n
        status = [-1] * n  # -1: never sent
        locations: list[str | None] = [None] * n
        failures: list[str] = []
        counter = itertools.count()
        barrier = threading.Barrier(len(self.clients) + 1)
        deadline = [0.0]
        post_headers = {"Content-Type": FHIR_JSON}

        def worker(client: httpx.Client) -> None:
            barrier.wait()
            while not self.stop_event.is_set():
                i = next(counter)  # atomic under the GIL
                if i >= n or time.monotonic() > deadline[0]:
                    return
                t0 = time.perf_counter()
                try:
                    if bodies is None:
                        resp = client.get(paths[i])
                    else:
                        resp = client.post(paths[i], content=bodies[i], headers=post_headers)
                except httpx.HTTPError as exc:
                    latencies[i] = (time.perf_counter() - t0) * 1000.0
                    status[i] = 0
                    if len(failures) < MAX_FAILURE_SAMPLES:
                        failures.append(f"{paths[i]}: {type(exc).__name__}: {exc}")
                    continue
                latencies[i] = (time.perf_counter() - t0) * 1000.0
                status[i] = resp.status_code
                if not 200 <= resp.status_code < 300:
                    if len(failures) < MAX_FAILURE_SAMPLES:
                        failures.append(f"{paths[i]}: HTTP {resp.status_code}: {resp.text[:300]}")
                elif bodies is not None:
                    locations[i] = resp.headers.get("location")

        threads = [threading.Thread(target=worker, args=(c,), daemon=True,
                                    name=f"{self.name}-{k}") for k, c in enumerate(self.clients)]
        for t in threads:
            t.start()
        deadline[0] = time.monotonic() + time_limit_s
        t_start = time.perf_counter()
        barrier.wait()
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t_start
        sent = [i for i in range(n) if status[i] != -1]
        if len(sent) < n and len(failures) < MAX_FAILURE_SAMPLES:
            failures.append(f"{n - len(sent)} requests not sent: phase time limit "
                            f"{time_limit_s:.0f} s reached")
        return PhaseResult(
            target=self.name, phase=phase, requests=n, seconds=seconds,
            latencies_ms=[latencies[i] for i in sent],
            statuses=Counter(status[i] for i in sent), failures=failures, locations=locations)


# ---------------------------------------------------------------------------- rounds


class BenchFailure(RuntimeError):
    pass


@dataclass
class Target:
    name: str
    label: str
    server: Server
    create_path: str
    read_path: Callable[[str], str]
    ids_from_create: Callable[[PhaseResult], list[str]]
    load: Load | None = None
    non_2xx: int = 0
    status_counts: Counter[int] = field(default_factory=Counter)
    failure_samples: list[str] = field(default_factory=list)


def gateway_ids(result: PhaseResult) -> list[str]:
    ids: list[str] = []
    for loc in result.locations:
        match = LOCATION_RE.search(loc or "")
        if match is None:
            raise BenchFailure(f"gateway create returned 2xx without a usable Location: {loc!r}")
        ids.append(match.group(1))
    if len(set(ids)) != len(ids):
        raise BenchFailure("gateway create returned duplicate ids")
    return ids


def run_target_round(target: Target, bodies: list[bytes], warmup_bodies: list[bytes],
                     rng: random.Random, time_limit_s: float) -> dict[str, PhaseResult]:
    load = target.load
    assert load is not None
    results: dict[str, PhaseResult] = {}

    def measured(phase: str, paths: list[str], bodies: list[bytes] | None) -> PhaseResult:
        server0, client0 = target.server.cpu_seconds(), time.process_time()
        result = load.run(phase, paths, bodies, time_limit_s)
        result.client_cpu_s = time.process_time() - client0
        result.server_cpu_s = target.server.cpu_seconds() - server0
        return result

    def check(result: PhaseResult) -> PhaseResult:
        target.status_counts.update(result.statuses)
        if result.non_2xx:
            target.non_2xx += result.non_2xx
            target.failure_samples.extend(result.failures)
            raise BenchFailure(f"{target.label}: {result.phase}: {result.non_2xx} of "
                               f"{result.requests} requests not 2xx")
        return result

    # Warm-up: the same mix, not counted in the figures (but every response must be 2xx).
    if warmup_bodies:
        warm = check(load.run("warm-up create", [target.create_path] * len(warmup_bodies),
                              warmup_bodies, time_limit_s))
        warm_ids = target.ids_from_create(warm)
        check(load.run("warm-up read", [target.read_path(i) for i in warm_ids], None,
                       time_limit_s))
    results["create"] = check(measured("create", [target.create_path] * len(bodies), bodies))
    ids = target.ids_from_create(results["create"])
    rng.shuffle(ids)
    results["read"] = check(measured("read", [target.read_path(i) for i in ids], None))
    return results


def figures(results: dict[str, PhaseResult]) -> dict[str, float]:
    out: dict[str, float] = {}
    for phase, res in results.items():
        out[f"{phase}_rps"] = res.rps
        out[f"{phase}_p50_ms"] = res.quantile(50)
        out[f"{phase}_p99_ms"] = res.quantile(99)
        out[f"{phase}_server_cpu_ms"] = res.server_cpu_s * 1000.0 / res.requests
        out[f"{phase}_client_cores"] = res.client_cpu_s / res.seconds
    return out


METRICS = ["create_rps", "create_p50_ms", "create_p99_ms", "read_rps", "read_p50_ms",
           "read_p99_ms", "create_server_cpu_ms", "read_server_cpu_ms", "create_client_cores",
           "read_client_cores"]


def medians(rounds: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    done = [r for r in rounds if "baseline" in r and "gateway" in r]
    out: dict[str, dict[str, float]] = {}
    for name in ("baseline", "gateway"):
        rows = [r[name] for r in done]
        out[name] = {m: statistics.median(row[m] for row in rows) for m in METRICS} if rows else {}
    # paired: the ratio within each round, then the median over rounds
    out["ratio"] = {m: _median_ratio([(r["gateway"][m], r["baseline"][m]) for r in done])
                    for m in METRICS} if done else {}
    return out


def _median_ratio(pairs: list[tuple[float, float]]) -> float:
    """Median of num/den over the pairs with den > 0 (a short phase can show 0 CPU ticks)."""
    ratios = [num / den for num, den in pairs if den > 0 and num == num]
    return statistics.median(ratios) if ratios else float("nan")


# ---------------------------------------------------------------------------- report


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(BENCH_DIR), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "-"

    return {
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "loadavg_at_start": list(os.getloadavg()),
        "versions": {d: version(d) for d in ("fastapi", "starlette", "uvicorn", "uvloop",
                                             "httptools", "httpx")},
        "git": commit,
    }


def fs_type(path: Path) -> str:
    """The filesystem type under `path` (fsync cost depends on it: tmpfs makes it free)."""
    best, kind = "", "?"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            mount = parts[1].replace("\\040", " ")
            if path.resolve().is_relative_to(mount) and len(mount) > len(best):
                best, kind = mount, parts[2]
    except (OSError, IndexError):
        pass
    return kind


def fmt(value: float | None, kind: str) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    if kind == "rps":
        return f"{value:,.0f}"
    if kind == "ratio":
        return f"{value:.3f}x"
    return f"{value:.2f}"


def print_report(args: argparse.Namespace, info: dict[str, Any], command: str,
                 rounds: list[dict[str, dict[str, float]]], orders: list[str],
                 summary: dict[str, dict[str, float]], targets: list[Target],
                 elapsed_s: float) -> None:
    print()
    print(f"FHIR gateway CRUD benchmark: SQLite synchronous={args.synchronous}, "
          f"{len(rounds)}/{args.rounds} rounds x {args.requests} requests per phase, "
          f"concurrency {args.concurrency}, warm-up {args.warmup} per phase")
    print(f"machine: nproc {info['nproc']} (cpu_count {info['cpu_count']}), {info['cpu']}, "
          f"{info['platform']}")
    print(f"         {info['python']}, SQLite {info['sqlite']}, load average at start "
          + " ".join(f"{x:.2f}" for x in info["loadavg_at_start"]))
    print("         " + ", ".join(f"{k} {v}" for k, v in info["versions"].items())
          + (f", git {info['git']}" if info["git"] else ""))
    print(f"gateway store: {info['store']}")
    print(f"command: {command}")
    print(f"elapsed: {elapsed_s:.0f} s")
    print()
    print("per round (throughput in req/s; ratio = gateway/baseline):")
    print(f"  {'round':<6}{'order':<23}{'base create':>12}{'gw create':>11}{'ratio':>9}"
          f"{'base read':>12}{'gw read':>10}{'ratio':>9}")
    for k, r in enumerate(rounds):
        b, g = r.get("baseline", {}), r.get("gateway", {})

        def ratio(m: str, b: dict[str, float] = b, g: dict[str, float] = g) -> float | None:
            return g[m] / b[m] if m in g and m in b else None

        print(f"  {k + 1:<6}{orders[k]:<23}{fmt(b.get('create_rps'), 'rps'):>12}"
              f"{fmt(g.get('create_rps'), 'rps'):>11}{fmt(ratio('create_rps'), 'ratio'):>9}"
              f"{fmt(b.get('read_rps'), 'rps'):>12}{fmt(g.get('read_rps'), 'rps'):>10}"
              f"{fmt(ratio('read_rps'), 'ratio'):>9}")
    print()
    n_done = sum(1 for r in rounds if "baseline" in r and "gateway" in r)
    print(f"median over {n_done} complete rounds (latency in ms, measured at the client):")
    head = (f"  {'':<24}{'create req/s':>13}{'p50':>9}{'p99':>9}{'read req/s':>12}{'p50':>9}"
            f"{'p99':>9}{'non-2xx':>9}")
    print(head)
    print("  " + "-" * (len(head) - 2))
    bad = {t.name: t.non_2xx for t in targets}
    for name, label in (("baseline", "baseline (bare FastAPI)"), ("gateway", "gateway (SQLite)")):
        s = summary.get(name, {})
        print(f"  {label:<24}{fmt(s.get('create_rps'), 'rps'):>13}"
              f"{fmt(s.get('create_p50_ms'), 'ms'):>9}{fmt(s.get('create_p99_ms'), 'ms'):>9}"
              f"{fmt(s.get('read_rps'), 'rps'):>12}{fmt(s.get('read_p50_ms'), 'ms'):>9}"
              f"{fmt(s.get('read_p99_ms'), 'ms'):>9}{bad.get(name, 0):>9}")
    s = summary.get("ratio", {})
    print(f"  {'ratio gateway/baseline':<24}{fmt(s.get('create_rps'), 'ratio'):>13}"
          f"{fmt(s.get('create_p50_ms'), 'ratio'):>9}{fmt(s.get('create_p99_ms'), 'ratio'):>9}"
          f"{fmt(s.get('read_rps'), 'ratio'):>12}{fmt(s.get('read_p50_ms'), 'ratio'):>9}"
          f"{fmt(s.get('read_p99_ms'), 'ratio'):>9}")
    print()
    print("server CPU per request (ms, user+system of the server process, from /proc; this is")
    print("less sensitive than req/s to a busy machine and to the client's own CPU limit),")
    print("and CPU of the load generator (this process) in cores busy during the phase:")
    print(f"  {'':<24}{'create cpu ms':>14}{'read cpu ms':>13}{'client cores create':>21}"
          f"{'read':>7}")
    for name, label in (("baseline", "baseline (bare FastAPI)"), ("gateway", "gateway (SQLite)"),
                        ("ratio", "ratio gateway/baseline")):
        kind = "ratio" if name == "ratio" else "ms"
        s = summary.get(name, {})
        print(f"  {label:<24}{fmt(s.get('create_server_cpu_ms'), kind):>14}"
              f"{fmt(s.get('read_server_cpu_ms'), kind):>13}"
              f"{fmt(s.get('create_client_cores'), kind):>21}"
              f"{fmt(s.get('read_client_cores'), kind):>7}")
    busy = [f"{name} {phase}" for name in ("baseline", "gateway") for phase in ("create", "read")
            if summary.get(name, {}).get(f"{phase}_client_cores", 0.0) > CLIENT_BOUND_CORES]
    if busy:
        print(f"note: the load generator was near one full core (> {CLIENT_BOUND_CORES} cores, "
              f"the GIL) for: {', '.join(busy)}.")
        print("      Those req/s are capped by the client, not the server: compare server CPU "
              "per request there.")
    print()
    s = summary.get("ratio", {})
    if s:
        print(f"throughput ratio gateway/baseline (median of per-round ratios): "
              f"create {s['create_rps']:.3f}, read {s['read_rps']:.3f}")
    for t in targets:
        codes = ", ".join(f"{'error' if c == 0 else c}: {n}"
                          for c, n in sorted(t.status_counts.items()))
        print(f"responses {t.name}: {codes or '-'} (incl. warm-up)")
        extra = [ln for ln in t.server.log_lines() if not ln.startswith("FHIR base:")]
        if extra:
            print(f"server output {t.name} ({len(extra)} lines, last 10):")
            for line in extra[-10:]:
                print(f"  | {line}")


# ---------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--requests", type=int, default=2000, help="requests per phase (2000)")
    p.add_argument("--concurrency", type=int, default=8, help="client threads (8)")
    p.add_argument("--rounds", type=int, default=5, help="rounds, baseline and gateway each (5)")
    p.add_argument("--warmup", type=int, default=200,
                   help="warm-up requests per phase and round, not counted (200)")
    p.add_argument("--synchronous", type=str.upper, default="FULL", choices=["FULL", "NORMAL"],
                   help="SQLite synchronous for the gateway (FULL)")
    p.add_argument("--phase-time-limit", type=float, default=300.0,
                   help="seconds; a phase still running then fails the bench (300)")
    p.add_argument("--seed", type=int, default=1, help="random seed for data and read order")
    p.add_argument("--json", type=Path, default=None, metavar="FILE",
                   help="also write the figures as JSON to FILE (e.g. bench/out/crud.json)")
    args = p.parse_args(argv)
    if args.requests < 2 or args.concurrency < 1 or args.rounds < 1 or args.warmup < 0:
        p.error("--requests >= 2, --concurrency >= 1, --rounds >= 1, --warmup >= 0")
    return args


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # the same way out as Ctrl-C: stop the servers, clean up


def make_targets(args: argparse.Namespace, tmp: Path, rng: random.Random) -> list[Target]:
    # Storage cost alone: auth and audit are measured by bench/auth.py.
    env = {**os.environ, "FHIR_GATEWAY_SQLITE_SYNCHRONOUS": args.synchronous,
           "FHIR_GATEWAY_AUTH": "off"}
    for name in ("FHIR_GATEWAY_STORE", "FHIR_GATEWAY_BASE_URL"):
        env.pop(name, None)
    gw_port = free_port()
    base_port = free_port()
    while base_port == gw_port:
        base_port = free_port()

    def baseline_ids(result: PhaseResult) -> list[str]:
        return [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(result.requests)]

    return [
        Target(name="baseline", label="baseline",
               server=Server("baseline", baseline_argv(base_port), base_port, "/item/ready",
                             tmp / "baseline.log", env),
               create_path="/echo", read_path=lambda i: f"/item/{i}",
               ids_from_create=baseline_ids),
        Target(name="gateway", label="gateway",
               server=Server("gateway", gateway_argv(tmp / "gateway.sqlite3", gw_port), gw_port,
                             "/fhir/metadata", tmp / "gateway.log", env),
               create_path="/fhir/Patient", read_path=lambda i: f"/fhir/Patient/{i}",
               ids_from_create=gateway_ids),
    ]


def sanity_check(gateway: Target, rng: random.Random) -> None:
    """Outside the timings: a created Patient reads back with what was sent."""
    sample = uk_patient(rng)
    with httpx.Client(base_url=gateway.server.base_url, trust_env=False,
                      timeout=REQUEST_TIMEOUT_S) as client:
        created = client.post("/fhir/Patient", content=json.dumps(sample).encode(),
                              headers={"Content-Type": FHIR_JSON})
        if created.status_code != 201:
            raise BenchFailure(f"gateway create: HTTP {created.status_code}: "
                               f"{created.text[:500]}")
        back = client.get(f"/fhir/Patient/{created.json()['id']}")
        if back.status_code != 200 or back.json().get("identifier") != sample["identifier"]:
            raise BenchFailure(f"gateway read-back differs: HTTP {back.status_code}: "
                               f"{back.text[:500]}")


@dataclass
class Run:
    rounds: list[dict[str, dict[str, float]]] = field(default_factory=list)
    orders: list[str] = field(default_factory=list)
    raw: list[dict[str, Any]] = field(default_factory=list)
    failure: str | None = None


def run_rounds(args: argparse.Namespace, targets: list[Target], rng: random.Random,
               run: Run) -> None:
    for k in range(args.rounds):
        order = targets if k % 2 == 0 else targets[::-1]  # interleaved, alternating first
        run.orders.append(" then ".join(t.name for t in order))
        bodies = [json.dumps(uk_patient(rng)).encode() for _ in range(args.requests)]
        warm = [json.dumps(uk_patient(rng)).encode() for _ in range(args.warmup)]
        row: dict[str, dict[str, float]] = {}
        run.rounds.append(row)
        for t in order:
            res = run_target_round(t, bodies, warm, rng, args.phase_time_limit)
            row[t.name] = figures(res)
            run.raw.append({"round": k + 1, "target": t.name, **row[t.name],
                            **{f"{ph}_seconds": r.seconds for ph, r in res.items()}})
        b, g = row["baseline"], row["gateway"]
        print(f"  round {k + 1}/{args.rounds}: gateway/baseline create "
              f"{g['create_rps']:.0f}/{b['create_rps']:.0f} req/s, read "
              f"{g['read_rps']:.0f}/{b['read_rps']:.0f} req/s", file=sys.stderr, flush=True)


def write_json(path: Path, args: argparse.Namespace, info: dict[str, Any], command: str,
               run: Run, summary: dict[str, dict[str, float]], targets: list[Target],
               elapsed_s: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": "bench/crud.py",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "machine": info,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "elapsed_s": round(elapsed_s, 1),
        "orders": run.orders,
        "rounds": run.rounds,
        "raw": run.raw,
        "median": summary,
        "non_2xx": {t.name: t.non_2xx for t in targets},
        "status_counts": {t.name: {str(c): n for c, n in sorted(t.status_counts.items())}
                          for t in targets},
        "failure": run.failure,
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"figures written to {path}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join(sys.orig_argv)
    info = machine()
    signal.signal(signal.SIGTERM, _on_sigterm)
    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="fhir-crud-bench-"))
    targets = make_targets(args, tmp, rng)
    info["store"] = (f"SQLite file in {tmp} ({fs_type(tmp)}), "
                     f"FHIR_GATEWAY_SQLITE_SYNCHRONOUS={args.synchronous}")
    run = Run()
    started = time.monotonic()
    print(f"crud bench: {args.rounds} rounds x {args.requests} requests per phase, concurrency "
          f"{args.concurrency}, synchronous={args.synchronous} (work dir {tmp})",
          file=sys.stderr, flush=True)
    try:
        try:
            for t in targets:
                t.server.start()
                t.load = Load(t.name, t.server.base_url, args.concurrency)
                print(f"  {t.name} up on {t.server.base_url}", file=sys.stderr, flush=True)
            sanity_check(targets[1], rng)
            run_rounds(args, targets, rng, run)
        except BenchFailure as exc:
            run.failure = str(exc)
        finally:
            for t in targets:
                if t.load is not None:
                    t.load.close()
            for t in targets:
                t.server.stop()
        elapsed = time.monotonic() - started
        summary = medians(run.rounds)
        print_report(args, info, command, run.rounds, run.orders, summary, targets, elapsed)
        if args.json is not None:
            write_json(args.json, args, info, command, run, summary, targets, elapsed)
    except ServerError as exc:
        print(f"crud bench: FAILED: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("crud bench: interrupted; servers stopped, nothing reported", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if run.failure is not None:
        print(f"\ncrud bench: FAILED: {run.failure}", file=sys.stderr)
        for t in targets:
            for line in t.failure_samples:
                print(f"  {t.name}: {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
