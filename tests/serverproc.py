"""A real `fhir-gateway serve` in a subprocess, for tests that need the whole process.

A plain helper module, not a conftest: tests import it (`from serverproc import
running_gateway`); pytest puts `tests/` on `sys.path`.

    with running_gateway(f"sqlite:///{path}") as gw:
        httpx.get(f"{gw.base_url}/metadata")
        gw.kill()          # SIGKILL the whole process group, now

The server listens on a free 127.0.0.1 port, runs in its own process group, and is
stopped on exit (SIGTERM, then SIGKILL), whatever the test did. Its stdout and stderr go
to a log file; `gw.log()` reads it, and a server that does not come up fails with it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

HOST = "127.0.0.1"
START_TIMEOUT = 30.0  # seconds for the server to answer /fhir/metadata
STOP_TIMEOUT = 10.0  # seconds for a graceful SIGTERM stop before SIGKILL
PORT_ATTEMPTS = 3  # a free port can be taken between choosing it and binding it


class GatewayStartError(RuntimeError):
    """The server exited or did not answer in time; the message carries its log."""


def gateway_command() -> list[str]:
    """The `fhir-gateway` of the running interpreter's environment."""
    script = Path(sys.executable).parent / "fhir-gateway"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "fhir_gateway"]


class GatewayCliError(RuntimeError):
    """A `fhir-gateway` command exited non-zero; the message carries its stderr."""


def gateway_cli(store_url: str, *args: str, timeout: float = 120.0) -> str:
    """Run `fhir-gateway --store STORE ARGS...` and return its stdout, stripped."""
    result = subprocess.run([*gateway_command(), "--store", store_url, *args],
                            capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise GatewayCliError(f"fhir-gateway {' '.join(args[:2])} failed: "
                              f"{result.stderr.strip()}")
    return result.stdout.strip()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class GatewayProcess:
    """One running server: its base URL, its log, and ways to end it."""

    def __init__(self, proc: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
        self.proc = proc
        self.base_url = base_url
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc.poll() is not None:
            return
        with suppress(ProcessLookupError):  # exited since the poll
            os.killpg(self.proc.pid, sig)  # own session: the group id is the pid

    def kill(self, *, timeout: float = STOP_TIMEOUT) -> int:
        """SIGKILL the whole process group and wait for it; the exit status (-9)."""
        self._signal_group(signal.SIGKILL)
        return self.proc.wait(timeout=timeout)

    def stop(self, *, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, and SIGKILL if it has not exited within `timeout`; the exit status."""
        self._signal_group(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return self.kill()

    def wait_ready(self, *, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last_error = "no answer yet"
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise GatewayStartError(
                        f"fhir-gateway exited with status {self.proc.returncode} before "
                        f"answering; its output:\n{self.log()}")
                try:
                    status = client.get(f"{self.base_url}/metadata").status_code
                    if status == 200:
                        return
                    last_error = f"GET /metadata answered {status}"
                except httpx.TransportError as exc:
                    last_error = repr(exc)
                if time.monotonic() >= deadline:
                    raise GatewayStartError(
                        f"fhir-gateway did not answer {self.base_url}/metadata within "
                        f"{timeout:.0f} s ({last_error}); its output:\n{self.log()}")
                time.sleep(0.05)  # polling interval, not synchronisation


def _start(store_url: str, env: Mapping[str, str] | None, log_path: Path,
           auth: bool, workers: int = 1) -> GatewayProcess:
    port = free_port()
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1",
                "FHIR_GATEWAY_AUTH": "on" if auth else "off", **(env or {})}
    command = [*gateway_command(), "--store", store_url,
               "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(command, env=full_env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    return GatewayProcess(proc, f"http://{HOST}:{port}/fhir", log_path)


@contextmanager
def running_gateway(store_url: str, *, env: Mapping[str, str] | None = None,
                    start_timeout: float = START_TIMEOUT,
                    auth: bool = False, workers: int = 1) -> Iterator[GatewayProcess]:
    """Serve `store_url` on a free loopback port until the block ends.

    Yields the `GatewayProcess` once GET `{base_url}/metadata` answers 200. `env` is
    added to the inherited environment (e.g. `FHIR_GATEWAY_SQLITE_SYNCHRONOUS`). Auth
    (and audit) are off (`FHIR_GATEWAY_AUTH=off`) unless `auth=True`: most real-server
    tests are about FHIR behaviour; tests/security turn it on.
    """
    with tempfile.TemporaryDirectory(prefix="fhir-gateway-") as tmp:
        for attempt in range(1, PORT_ATTEMPTS + 1):
            gateway = _start(store_url, env, Path(tmp) / f"server-{attempt}.log", auth,
                             workers)
            try:
                gateway.wait_ready(timeout=start_timeout)
                break
            except GatewayStartError:
                gateway.stop()
                if attempt < PORT_ATTEMPTS and "address already in use" in gateway.log().lower():
                    continue  # lost the race for the port: try another
                raise
            except BaseException:
                gateway.stop()
                raise
        try:
            yield gateway
        finally:
            gateway.stop()


def process_tree_cpu(pid: int) -> float:
    """User+system CPU seconds of `pid` and of its live descendants (uvicorn's workers).

    From /proc (Linux), in clock ticks of 10 ms. A descendant that has already exited is
    counted by its parent's cutime/cstime only once its parent has reaped it."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # exited while we looked
        stats[int(entry.name)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        fields = stats.get(current)
        if fields is not None:
            # utime, stime, and cutime, cstime: what reaped children (a worker that
            # exited) used, which a live-tree walk would otherwise miss
            total += sum(int(f) for f in fields[11:15])
        todo.extend(children.get(current, ()))
    return total / os.sysconf("SC_CLK_TCK")
