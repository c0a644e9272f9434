"""Settings from the environment: each variable does what README's table says, and a
value it cannot take is refused naming the variable (a one-line exit 1 from the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhir_gateway.api.app import create_app
from fhir_gateway.config import Settings
from fhir_gateway.security.audit.journal import journal_directory

GP_HEAD = ("NHS Number,Surname,Forename,Date of Birth,Sex,Practice Code,Usual GP,"
           "Palliative Register Date,GSF Code,Preferred Place of Death,PPD Recorded,DNACPR,"
           "DNACPR Date,Care Plan Summary,Last Reviewed,Date of Death,Place of Death\n")


@pytest.mark.parametrize(("name", "value", "said"), [
    ("FHIR_GATEWAY_MAX_BODY_BYTES", "16MiB", "FHIR_GATEWAY_MAX_BODY_BYTES='16MiB'"),
    ("FHIR_GATEWAY_MAX_FEED_BYTES", "0", "FHIR_GATEWAY_MAX_FEED_BYTES='0'"),
    ("FHIR_GATEWAY_SQLITE_SYNCHRONOUS", "OFF", "FHIR_GATEWAY_SQLITE_SYNCHRONOUS='OFF'"),
    ("FHIR_GATEWAY_SQLITE_SYNCHRONOUS", "sometimes", "use FULL")])
def test_a_value_a_setting_cannot_take_is_refused_naming_it(
        monkeypatch: pytest.MonkeyPatch, name: str, value: str, said: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=said.replace("(", r"\(")):
        Settings.from_env()


def test_synchronous_is_taken_in_any_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FHIR_GATEWAY_SQLITE_SYNCHRONOUS", "normal")
    assert Settings.from_env().sqlite_synchronous == "NORMAL"


def test_the_feed_limit_bounds_post_ingest(tmp_path: Path) -> None:
    """FHIR_GATEWAY_MAX_BODY_BYTES never limited a partner's file (a fixed 256 MiB did)."""
    settings = Settings(store_url=f"sqlite:///{tmp_path / 'gw.sqlite3'}", auth_enabled=False,
                        max_feed_bytes=1000)
    row = "9434765919,SMITH,John,01/01/1940,M,Y90028,Dr A,01/01/2026,Red,Home,01/01/2026,Y," \
          "10/01/2026,Plan,01/02/2026,,\n"
    with TestClient(create_app(settings)) as http:
        small = http.post("/ingest/gp", content=(GP_HEAD + row).encode(),
                          headers={"Content-Type": "text/csv"})
        assert small.status_code == 200, small.text
        big = http.post("/ingest/gp", content=(GP_HEAD + row * 20).encode(),
                        headers={"Content-Type": "text/csv"})
        assert big.status_code == 413, big.text


@pytest.mark.parametrize("off", ["off", "OFF", " Off "])
def test_the_audit_journal_is_off_in_any_case(off: str) -> None:
    assert journal_directory(off, object()) is None


def test_the_audit_journal_directory_must_be_absolute(tmp_path: Path) -> None:
    """A relative one was made under whatever directory the server started in."""
    with pytest.raises(ValueError, match="give an absolute directory"):
        journal_directory("journals", object())
    assert journal_directory(str(tmp_path), object()) == tmp_path


def test_a_relative_audit_journal_is_refused_before_anything_is_written(
        tmp_path: Path) -> None:
    """A CLI ingest stored the whole file, then failed to audit it (the check ran only when
    the trail opened)."""
    import os
    import subprocess
    import sys

    cli = str(Path(sys.executable).with_name("fhir-gateway"))
    data = tmp_path / "reg.csv"
    data.write_text(GP_HEAD + "9434765919,SMITH,John,01/01/1940,M,Y90028,Dr A,01/01/2026,"
                    "Red,Home,01/01/2026,Y,10/01/2026,Plan,01/02/2026,,\n")
    store = tmp_path / "gw.sqlite3"
    run = subprocess.run([cli, "--store", f"sqlite:///{store}", "ingest", "--partner", "gp",
                          str(data)], capture_output=True, text=True, timeout=120,
                         check=False, cwd=tmp_path,
                         env={**os.environ, "FHIR_GATEWAY_AUDIT_JOURNAL": "var/journal"})
    assert run.returncode == 1
    assert run.stderr.strip().splitlines() == [
        "fhir-gateway: FHIR_GATEWAY_AUDIT_JOURNAL='var/journal': give an absolute "
        "directory, or off"]
    assert not store.exists()


def test_serve_checks_an_ipv6_address_as_ipv6(tmp_path: Path) -> None:
    """The address check bound every host as IPv4: `--host ::1` was refused."""
    import os
    import socket
    import subprocess
    import sys

    with socket.create_server(("::1", 0), family=socket.AF_INET6) as taken:
        port = str(taken.getsockname()[1])
        cli = str(Path(sys.executable).with_name("fhir-gateway"))
        busy = subprocess.run([cli, "--store", f"sqlite:///{tmp_path / 'gw.sqlite3'}",
                               "serve", "--host", "::1", "--port", port],
                              capture_output=True, text=True, timeout=60, check=False,
                              env={**os.environ, "FHIR_GATEWAY_AUTH": "off"})
    # the port is taken on ::1, so refused, and for that reason, not the address family
    assert busy.returncode == 1, busy.stderr
    assert "Address family" not in busy.stderr
    assert f"cannot listen on ::1:{port}" in busy.stderr
