"""`fhir-gateway client add|list|remove` and `audit verify` (exit 0 / 1 / 2)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
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


def test_a_feeds_partner_is_any_partner_with_a_mapping(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A sixth partner is a mapping file only (issue 5): the registry took its partners from
    a list written in Python, so that partner's feed could never be registered."""
    from fhir_gateway.auth import registry as registry_module
    from fhir_gateway.auth.registry import ClientRegistry, RegistryError
    from fhir_gateway.ingest.spec import partners
    from fhir_gateway.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    try:
        registry = ClientRegistry(store)
        _, public = new_key_pair()
        for name in partners():  # every installed mapping's partner
            registry.add(f"{name}-feed", role="feed", jwks={"keys": [public]}, partner=name)
        with pytest.raises(RegistryError, match="'carehome' has no mapping"):
            registry.add("ch-feed", role="feed", jwks={"keys": [public]}, partner="carehome")
        # the list the registry consults is the mappings', so a mapping added is a partner
        monkeypatch.setattr(registry_module, "partners", lambda: [*partners(), "carehome"])
        assert registry.add("ch-feed", role="feed", jwks={"keys": [public]},
                            partner="carehome").partner == "carehome"
    finally:
        store.close()
    refused = run(f"sqlite:///{tmp_path / 's.sqlite3'}", "client", "add", "x", "--role",
                  "feed", "--partner", "carehome", "--new-key", str(tmp_path / "k"))
    assert refused.returncode == 2 and "'carehome' has no mapping" in refused.stderr
    assert ", ".join(partners()) in refused.stderr
