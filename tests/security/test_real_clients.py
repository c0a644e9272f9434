"""A real `fhir-gateway serve` with auth on: the CLI registers a client and fetches a token,
the real clients fhirclient and fhirpy read the record with it, and a crash (SIGKILL)
loses no audit record of an answered request."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
from fhirclient import client as smart_client
from fhirclient.auth import FHIROAuth2Auth
from fhirclient.models.patient import Patient
from fhirpy import SyncFHIRClient

from fhir_gateway.fhir.repository import Repository
from fhir_gateway.security.audit.chain import chain_link
from fhir_gateway.security.audit.verify import iter_events
from fhir_gateway.store import open_store
from serverproc import gateway_cli as cli
from serverproc import running_gateway

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def test_real_clients_read_the_record_with_a_token(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    with running_gateway(store, auth=True) as gw:
        assert httpx.get(f"{gw.base_url}/Patient").status_code == 401
        # registered while the server runs: takes effect at once
        cli(store, "client", "add", "gp-feed", "--role", "feed", "--partner", "gp",
            "--org", "B86001", "--new-key", str(tmp_path / "feed.jwk"))
        cli(store, "client", "add", "ward", "--role", "clinician", "--org", "B86001",
            "--new-key", str(tmp_path / "ward.jwk"))
        feed = cli(store, "token", "gp-feed", "--key", str(tmp_path / "feed.jwk"),
                   "--scope", "system/*.cruds", "--url", gw.base_url)
        created = httpx.post(f"{gw.base_url}/Patient", headers={
            "Authorization": f"Bearer {feed}", "Content-Type": "application/fhir+json"},
            json={"resourceType": "Patient", "name": [{"family": "Jones"}],
                  "identifier": [{"system": NHS, "value": "9434765919"}]})
        assert created.status_code == 201, created.text
        pid = created.json()["id"]
        token = cli(store, "token", "ward", "--key", str(tmp_path / "ward.jwk"),
                    "--scope", "system/Patient.rs system/Observation.rs", "--url", gw.base_url)

        smart = smart_client.FHIRClient(settings={"app_id": "tests",
                                                  "api_base": gw.base_url + "/"})
        smart.server.get_capability()
        smart.server.auth = FHIROAuth2Auth(state={"access_token": token})
        patient = Patient.read(pid, smart.server)
        assert patient.name[0].family == "Jones"

        fhirpy = SyncFHIRClient(gw.base_url, authorization=f"Bearer {token}")
        found = fhirpy.resources("Patient").search(identifier=f"{NHS}|9434765919").fetch()
        assert [p["id"] for p in found] == [pid]
        assert fhirpy.reference("Patient", pid).to_resource()["name"][0]["family"] == "Jones"

        unauthorised = SyncFHIRClient(gw.base_url)
        try:
            unauthorised.resources("Patient").fetch()
        except Exception as exc:  # fhirpy raises its own error types per status
            assert "401" in str(exc) or "Unauthorized" in type(exc).__name__ or \
                "login" in str(exc)
        else:
            raise AssertionError("fhirpy read without a token")


def test_a_crash_loses_no_audit_record_of_an_answered_request(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    cli(store, "client", "add", "ward", "--role", "clinician", "--org", "B86001",
        "--new-key", str(tmp_path / "ward.jwk"))
    answered: list[str] = []
    lock = threading.Lock()
    with running_gateway(store, auth=True) as gw:
        token = cli(store, "token", "ward", "--key", str(tmp_path / "ward.jwk"),
                    "--scope", "system/*.rs", "--url", gw.base_url)
        stop = threading.Event()

        def load(n: int) -> None:
            with httpx.Client(headers={"Authorization": f"Bearer {token}"},
                              timeout=5) as http:
                for i in range(400):
                    if stop.is_set():
                        return
                    rid = f"crash-{n}-{i}"
                    try:
                        resp = http.get(f"{gw.base_url}/Patient?name=x",
                                        headers={"X-Request-Id": rid})
                    except httpx.HTTPError:
                        return  # the server died under us: this one was not answered
                    if resp.status_code == 200:
                        with lock:
                            answered.append(rid)

        threads = [threading.Thread(target=load, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        while len(answered) < 150:
            threading.Event().wait(0.01)
        gw.kill()  # SIGKILL mid-stream
        stop.set()
        for t in threads:
            t.join()
    # The killed server's audit journal holds what it had not yet stored; the next start
    # stores it before serving.
    with running_gateway(store, auth=True):
        pass
    assert not list((tmp_path / "gw.sqlite3-audit").glob("*.journal"))
    engine = open_store(store)
    try:
        recorded = set()
        for _where, _version, event in iter_events(Repository(engine)):
            assert chain_link(event) is not None
            for entity in event.get("entity", []):
                value = (entity.get("what") or {}).get("identifier", {}).get("value")
                if value:
                    recorded.add(value)
    finally:
        engine.close()
    assert answered and set(answered) <= recorded, set(answered) - recorded
    assert cli(store, "audit", "verify").startswith("audit trail intact")


def test_two_workers_serve_one_record_and_audit_every_request(tmp_path: Path) -> None:
    """`serve --workers 2` on a fresh store: both processes start (keys, conformance
    resources), tokens from either verify on both, concurrent reads from both are all
    answered, and every answered request is audited exactly once, on the chain of the
    worker that answered it, and `audit verify` passes."""
    store = f"sqlite:///{tmp_path / 'gw.sqlite3'}"
    cli(store, "client", "add", "ward", "--role", "clinician", "--org", "RXX01",
        "--new-key", str(tmp_path / "ward.jwk"))
    answered: list[str] = []
    lock = threading.Lock()
    with running_gateway(store, auth=True, workers=2) as gw:
        token = cli(store, "token", "ward", "--key", str(tmp_path / "ward.jwk"),
                    "--scope", "system/*.rs", "--url", gw.base_url)

        def load(n: int) -> None:
            for i in range(40):  # a new connection each time, so both workers take some
                rid = f"two-{n}-{i}"
                resp = httpx.get(f"{gw.base_url}/Patient?name=x", timeout=30,
                                 headers={"Authorization": f"Bearer {token}",
                                          "X-Request-Id": rid})
                assert resp.status_code == 200, resp.text
                with lock:
                    answered.append(rid)

        threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    engine = open_store(store)
    try:
        recorded: list[str] = []
        for _where, _version, event in iter_events(Repository(engine)):
            assert chain_link(event) is not None
            for entity in event.get("entity", []):
                value = (entity.get("what") or {}).get("identifier", {}).get("value")
                if value and value.startswith("two-"):
                    recorded.append(value)
    finally:
        engine.close()
    assert sorted(recorded) == sorted(answered) and len(answered) == 160
    assert cli(store, "audit", "verify").startswith("audit trail intact")
