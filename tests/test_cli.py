"""The command line promise: exit 0 / 2 (usage) / 1 (failure with a one-line reason)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.executable).with_name("fhir-gateway"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, check=False)


def test_usage_error_is_exit_2() -> None:
    assert run().returncode == 2
    assert run("frobnicate").returncode == 2


def test_bad_store_is_one_line_and_exit_1() -> None:
    result = run("--store", "postgres://nowhere/db", "serve", "--port", "1")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "postgres://nowhere/db" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_mongodb_server_without_transactions_is_served_by_one_worker_only() -> None:
    # Without transactions writers take turns within one process only: a second worker
    # could undo or overwrite the first's acknowledged writes (store.mongo).
    result = run("--store", "mongomock://cli/db", "serve", "--port", "1", "--workers", "2")
    assert result.returncode == 2
    assert "--workers 1" in result.stderr and "Traceback" not in result.stderr


def test_bad_numbers_are_usage_errors_not_taken_as_given() -> None:
    # a port past 65535 wraps round in the socket layer: the printed URL would be wrong
    for args in (("serve", "--port", "99999"), ("serve", "--workers", "0"),
                 ("demo", "--people", "-5"), ("mllp", "--port", "0")):
        result = run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_a_mistyped_setting_is_one_line_and_exit_1() -> None:
    result = subprocess.run([CLI, "client", "list"], capture_output=True, text=True,
                            timeout=60, check=False, env={**os.environ,
                                                          "FHIR_GATEWAY_AUTH": "maybe"})
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "FHIR_GATEWAY_AUTH" in result.stderr


def test_mllp_for_an_unknown_partner_is_refused_at_start(tmp_path: Path) -> None:
    result = run("--store", f"sqlite:///{tmp_path / 'gw.sqlite3'}", "mllp", "--port",
                 "2575", "--partner", "nope")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1 and "nope" in result.stderr


def test_every_command_takes_store_after_its_name(tmp_path: Path) -> None:
    """INTERFACE: every command takes `--store URL`; after the command's name only `serve`
    accepted it (`ingest ... --store` was exit 2, "unrecognized arguments")."""
    store = f"sqlite:///{tmp_path / 'after.sqlite3'}"
    extract = tmp_path / "gp.csv"
    extract.write_text("NHS Number,Surname\n")  # a header only: nothing to load
    for args in (("client", "list", "--store", store), ("audit", "verify", "--store", store),
                 ("review", "list", "--store", store),
                 ("conflicts", "refresh", "--store", store),
                 ("ingest", "--partner", "gp", "--store", store, str(extract))):
        result = run(*args)
        assert result.returncode != 2 and "unrecognized" not in result.stderr, (args, result)
    added = run("client", "add", "c1", "--role", "auditor", "--new-key",
                str(tmp_path / "c1.jwk"), "--store", store)
    assert added.returncode == 0, added.stderr
    assert "c1" in run("--store", store, "client", "list").stdout  # the same store


def test_a_feed_client_without_its_partner_is_a_usage_error(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'usage.sqlite3'}"
    for args in (("--role", "feed"), ("--role", "clinician", "--partner", "gp")):
        result = run("--store", store, "client", "add", "c2", *args, "--new-key",
                     str(tmp_path / "c2.jwk"))
        assert result.returncode == 2 and "--partner" in result.stderr, (args, result.stderr)
        assert not (tmp_path / "c2.jwk").exists()


def test_a_file_whose_name_is_not_utf8_is_loaded(tmp_path: Path) -> None:
    """`na\\xe9me.csv` (a latin-1 é) loaded nothing and exited 1 with only a codec error:
    the surrogate-escaped name went into every stored record."""
    import json

    name = tmp_path / os.fsdecode(b"na\xe9me.csv")
    name.write_text("Person ID,Title,First Name,Last Name,DOB,Postcode,NHS No (if known),"
                    "Service,Service Start,Service End,Provider,Key Worker\n"
                    "SC1,Mrs,Ada,Anyname,1931-02-03,DY1 1AA,9434765919,Home care,"
                    "2026-01-02,,Oakleigh Care Home,Brenda Johnson\n")
    done = run("--store", f"sqlite:///{tmp_path / 'gw.sqlite3'}", "ingest", "--partner",
               "socialcare", "--json", os.fsdecode(bytes(name)))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["created"] > 0 and summary["rejected"] == 0


def test_serve_that_cannot_start_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """Both stopped inside uvicorn's start-up: a traceback and exit 3, no documented
    status, so a supervisor or an operator's script could not tell what happened."""
    import socket

    store = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    env = {**os.environ, "FHIR_GATEWAY_SIGNING_KEYS": str(tmp_path / "missing.jwks")}
    keys = subprocess.run([CLI, "--store", store, "serve", "--port", "1"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert keys.returncode == 1, keys.stderr
    assert "Traceback" not in keys.stderr
    assert "cannot read the signing key file" in keys.stderr
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        busy = run("--store", store, "serve", "--host", "127.0.0.1", "--port", port)
    assert busy.returncode == 1, busy.stderr
    assert "Traceback" not in busy.stderr
    lines = [line for line in busy.stderr.splitlines() if line.startswith("fhir-gateway:")]
    assert lines and f"cannot listen on 127.0.0.1:{port}" in lines[0]
