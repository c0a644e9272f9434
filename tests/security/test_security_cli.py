"""`fhir-gateway client add|list|remove` and `audit verify` (exit 0 / 1 / 2)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from fhir_gateway.auth.registry import new_key_pair

CLI = str(Path(sys.executable).with_name("fhir-gateway"))


def run(store: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "--store", store, *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_client_add_list_remove(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 's.sqlite3'}"
    key = tmp_path / "ward.jwk"
    result = run(store, "client", "add", "ward", "--role", "clinician", "--org", "RXX01",
                 "--new-key", str(key))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert "d" in json.loads(key.read_text())
    _, public = new_key_pair()
    jwks = tmp_path / "feed.json"
    jwks.write_text(json.dumps({"keys": [public]}))
    assert run(store, "client", "add", "gp-feed", "--role", "feed", "--partner", "gp",
               "--jwks", str(jwks)).returncode == 0
    listed = run(store, "client", "list").stdout.splitlines()
    assert [line.split("\t")[:4] for line in listed] == [
        ["gp-feed", "feed", "gp", "-"], ["ward", "clinician", "-", "RXX01"]]
    assert run(store, "client", "remove", "ward").returncode == 0
    gone = run(store, "client", "remove", "ward")
    assert gone.returncode == 1 and len(gone.stderr.strip().splitlines()) == 1


def test_client_add_refusals(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 's.sqlite3'}"
    private, _ = new_key_pair()
    bad = tmp_path / "private.json"
    bad.write_text(json.dumps({"keys": [private]}))
    cases = [
        # INTERFACE: a usage error is exit 2 (a feed needs --partner: it was 1)
        (["client", "add", "x", "--role", "feed", "--new-key", str(tmp_path / "k1")], 2),
        (["client", "add", "x", "--role", "clinician", "--jwks", str(bad)], 1),
        (["client", "add", "x", "--role", "clinician", "--jwks", str(tmp_path / "none")], 1),
        (["client", "add", "x", "--role", "wizard", "--new-key", str(tmp_path / "k2")], 2),
        (["client", "add", "x", "--role", "clinician"], 2),
    ]
    for args, status in cases:
        result = run(store, *args)
        assert result.returncode == status, (args, result.stderr)
        if status == 1:
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert run(store, "client", "list").stdout == ""
    assert not (tmp_path / "k1").exists()  # no key left behind for a refused client


def test_audit_verify_exit_status(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 's.sqlite3'}"
    assert run(store, "audit", "verify").returncode == 0
    import sqlite3

    from fhir_gateway.fhir.repository import Repository
    from fhir_gateway.security.audit.chain import AuditTrail
    from fhir_gateway.security.audit.events import audit_event
    from fhir_gateway.store import open_store

    engine = open_store(store)
    trail = AuditTrail(Repository(engine))
    trail.record([audit_event(subtype="read", status=200, caller=None, observer="t",
                              destination="d") for _ in range(3)])
    trail.close()
    engine.close()
    ok = run(store, "audit", "verify")
    assert ok.returncode == 0 and "3 events" in ok.stdout
    with sqlite3.connect(tmp_path / "s.sqlite3") as db:
        db.execute("UPDATE resources SET body = replace(body, '\"outcome\":\"0\"', "
                   "'\"outcome\":\"4\"') WHERE rtype='AuditEvent' AND rowid = "
                   "(SELECT min(rowid) FROM resources WHERE rtype='AuditEvent')")
    broken = run(store, "audit", "verify")
    assert broken.returncode == 1 and "NOT intact" in broken.stderr


@pytest.fixture
def sixth_partner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], str]:
    """Writes a sixth partner's mapping, `carehome.yaml`, beside the installed ones (a
    copy of gp.yaml: with its `partner:` line edited it loads; as copied, it does not)."""
    from importlib import resources

    from fhir_gateway.ingest import mapping, spec

    folder = tmp_path / "mappings"
    folder.mkdir()
    monkeypatch.setattr(mapping, "_cache", {})  # no other test's carehome, none left after
    installed = spec.mapping_folders
    monkeypatch.setattr(spec, "mapping_folders", lambda mapping_dir: [
        folder, *installed(mapping_dir)])

    def write(partner_line: str) -> str:
        gp = resources.files("fhir_gateway.mappings").joinpath("gp.yaml").read_text("utf-8")
        assert "\npartner: gp\n" in gp
        (folder / "carehome.yaml").write_text(gp.replace("\npartner: gp\n",
                                                         f"\n{partner_line}\n", 1))
        return "carehome"
    return write


def test_a_feeds_partner_is_any_partner_with_a_mapping(
        tmp_path: Path, sixth_partner: Callable[[str], str]) -> None:
    """A sixth partner is a mapping file only (issue 5): the registry took its partners from
    a list written in Python, so that partner's feed could never be registered."""
    from fhir_gateway.auth.registry import ClientRegistry, RegistryError
    from fhir_gateway.ingest.spec import partners
    from fhir_gateway.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    try:
        registry = ClientRegistry(store)
        _, public = new_key_pair()
        with pytest.raises(RegistryError, match="'carehome' has no mapping"):
            registry.add("ch-feed", role="feed", jwks={"keys": [public]}, partner="carehome")
        refused = run(f"sqlite:///{tmp_path / 's.sqlite3'}", "client", "add", "x", "--role",
                      "feed", "--partner", "carehome", "--new-key", str(tmp_path / "k"))
        assert refused.returncode == 2 and "'carehome' has no mapping" in refused.stderr
        assert ", ".join(partners()) in refused.stderr
        name = sixth_partner("partner: carehome")
        for partner in partners():  # every mapping's partner, the new one among them
            registry.add(f"{partner}-feed", role="feed", jwks={"keys": [public]},
                         partner=partner)
        assert name in [c.partner for c in registry.list()]
    finally:
        store.close()


@pytest.fixture
def draft_mapping(sixth_partner: Callable[[str], str]) -> str:
    """A sixth partner's draft, copied from gp.yaml and not yet edited: it names the wrong
    partner, so it does not load."""
    return sixth_partner("partner: gp")


def test_a_partner_whose_mapping_does_not_load_gets_no_feed_client(
        tmp_path: Path, draft_mapping: str) -> None:
    from fhir_gateway.auth.registry import ClientRegistry, RegistryError
    from fhir_gateway.ingest.spec import partners
    from fhir_gateway.store import open_store

    assert draft_mapping in partners()
    store = open_store(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    try:
        _, public = new_key_pair()
        with pytest.raises(RegistryError, match=r"'carehome''s mapping does not load: "
                                                r"carehome\.yaml at partner"):
            ClientRegistry(store).add("ch-feed", role="feed", jwks={"keys": [public]},
                                      partner=draft_mapping)
        assert ClientRegistry(store).list() == []
    finally:
        store.close()


def test_a_feed_file_for_a_mapping_that_does_not_load_is_503_not_500(
        tmp_path: Path, draft_mapping: str) -> None:
    from fastapi.testclient import TestClient

    from fhir_gateway.api.app import create_app
    from fhir_gateway.config import Settings
    from fhir_gateway.store import open_store

    engine = open_store(f"sqlite:///{tmp_path / 'g.sqlite3'}")
    app = create_app(Settings(auth_enabled=False), engine=engine)
    with TestClient(app, base_url="http://gateway.test") as client:
        r = client.post(f"/ingest/{draft_mapping}?filename=r.csv", content=b"a,b\n1,2\n",
                        headers={"Content-Type": "text/csv"})
    engine.close()
    assert r.status_code == 503, r.text
    said = r.json()["issue"][0]["diagnostics"]
    assert "mapping for partner 'carehome' does not load" in said and "nothing was read" in said
