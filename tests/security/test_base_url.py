"""A served gateway's token endpoint, and its tokens' issuer and audience, come from its
base URL (FHIR_GATEWAY_BASE_URL, or where `serve` listens), never from the Host header of
a request: else an assertion a client made for another server could be replayed here with
that server's name as the Host, for a token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from fhir_gateway.auth.assertion import ASSERTION_TYPE
from fhir_gateway.auth.client import load_private_key, make_assertion
from fhir_gateway.cli import listen_base_url
from fhir_gateway.config import Settings, base_url_problem
from serverproc import free_port, gateway_cli, gateway_command, running_gateway

OTHER = "other-smart-server.example"
REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    """This environment with auth on (the default) and no base URL, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("FHIR_GATEWAY_BASE_URL", "FHIR_GATEWAY_AUTH")}
    return {**env, **extra}


def _one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_serve_derives_the_base_url_from_where_it_listens() -> None:
    assert listen_base_url("127.0.0.1", 8080) == "http://127.0.0.1:8080/fhir"
    assert listen_base_url("localhost", 80) == "http://localhost:80/fhir"
    assert listen_base_url("::1", 8443) == "http://[::1]:8443/fhir"
    assert listen_base_url("[::1]", 8443) == "http://[::1]:8443/fhir"
    for wildcard in ("0.0.0.0", "::", "[::]", "", "0", "::ffff:0.0.0.0"):
        assert listen_base_url(wildcard, 8080) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_serve_on_every_address_with_auth_on_needs_the_base_url(tmp_path: Path,
                                                                host: str) -> None:
    store = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    result = subprocess.run([*gateway_command(), "--store", store, "serve", "--host", host,
                             "--port", str(free_port())], env=_env(), capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 2
    line = _one_line(result.stderr)
    assert "FHIR_GATEWAY_BASE_URL" in line and "Host header" in line


def test_serve_refuses_a_base_url_that_is_not_an_http_url(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    result = subprocess.run([*gateway_command(), "--store", store, "serve", "--host",
                             "0.0.0.0", "--port", str(free_port())],
                            env=_env(FHIR_GATEWAY_BASE_URL="gateway.example.org/fhir"),
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert "is not an http(s) URL" in _one_line(result.stderr)


def test_the_asgi_entry_point_refuses_auth_without_a_base_url(tmp_path: Path) -> None:
    """What `uvicorn fhir_gateway.api.asgi:app` imports."""
    def load(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", "import fhir_gateway.api.asgi"],
                              env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=60, check=False)

    refused = load(_env())
    assert refused.returncode == 2
    assert "FHIR_GATEWAY_BASE_URL" in _one_line(refused.stderr)
    assert load(_env(FHIR_GATEWAY_BASE_URL="https://gateway.example.org/fhir")
                ).returncode == 0
    assert load(_env(FHIR_GATEWAY_AUTH="off")).returncode == 0


def test_docker_compose_sets_the_base_url_it_needs() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    gateway = compose["services"]["gateway"]
    assert "0.0.0.0" in gateway["command"]  # every address: the base URL must be given
    url = gateway["environment"]["FHIR_GATEWAY_BASE_URL"]
    assert url == "http://localhost:8080/fhir"
    assert base_url_problem(Settings(public_base_url=url)) is None


def _form(assertion: str) -> dict[str, str]:
    return {"grant_type": "client_credentials", "scope": "system/*.rs",
            "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}


def test_a_served_gateway_ignores_the_host_header(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    gateway_cli(store, "client", "add", "ward", "--role", "clinician", "--org", "B86001",
                "--new-key", str(tmp_path / "ward.jwk"))
    key, kid, alg = load_private_key(tmp_path / "ward.jwk")
    with running_gateway(store, auth=True) as gw:
        root = gw.base_url.removesuffix("/fhir")
        spoofed = {"Host": OTHER}
        config = httpx.get(f"{gw.base_url}/.well-known/smart-configuration",
                           headers=spoofed).json()
        assert config["token_endpoint"] == f"{root}/auth/token"
        # an assertion the client made for another server, replayed here under its name
        replayed = make_assertion("ward", f"http://{OTHER}/auth/token", key, kid, alg)
        resp = httpx.post(f"{root}/auth/token", data=_form(replayed), headers=spoofed)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_client"
        assert "aud must be the token endpoint" in resp.json()["error_description"]
        # one made for this gateway works whatever the Host says, for this FHIR base
        mine = make_assertion("ward", f"{root}/auth/token", key, kid, alg)
        resp = httpx.post(f"{root}/auth/token", data=_form(mine), headers=spoofed)
        assert resp.status_code == 200, resp.text
        bearer = {"Authorization": f"Bearer {resp.json()['access_token']}"}
        assert httpx.get(f"{gw.base_url}/Patient", headers={**spoofed, **bearer}
                         ).status_code == 200
