"""What a transaction's entries refer to and are: one resolution, one resource, one record.

Four defects, each found by a reviewer's proving script and failing before its fix:
- conditional references (`Patient?identifier=...`) and `urn:uuid:` references naming no
  entry were stored as written (R4 3.1.0.11.3: resolved in a transaction, to exactly one
  match; refused anywhere else);
- two entries that are one resource (the same id twice, or a DELETE and a conditional
  create matching what it deletes) were accepted (R4 3.1.0.11.2: the transaction SHALL
  fail);
- two entries with one fullUrl were accepted, references binding to the last (bdl-7);
- a transaction failing on a later entry left an AuditEvent saying an earlier entry's
  create succeeded, though it was rolled back.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from fhir_gateway.api.app import create_app
from fhir_gateway.config import Settings
from fhir_gateway.fhir.interceptors import BaseInterceptor, InterceptorChain
from fhir_gateway.fhir.request import Caller, FhirRequest, Interaction
from fhir_gateway.store.base import StoreEngine
from gatewaykit import FHIR_JSON

sys.path.insert(0, str(Path(__file__).resolve().parent / "security"))  # the `gw` fixture's kit
from security_kit import Gateway

NHS = "https://fhir.nhs.uk/Id/nhs-number"
NUMBER = "9990000018"
OTHER_NUMBER = "9434765919"


def tx(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict[str, Any], full_url: str | None = None,
         **request: str) -> dict[str, Any]:
    entry: dict[str, Any] = {"resource": resource, "request": {
        "method": "POST", "url": resource["resourceType"], **request}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def put(resource: dict[str, Any], url: str | None = None,
        full_url: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"resource": resource, "request": {
        "method": "PUT", "url": url or f"{resource['resourceType']}/{resource['id']}"}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def observation(subject: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "DNACPR"},
            "subject": {"reference": subject}, **extra}


def patient(pid: str, number: str = NUMBER, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid,
            "identifier": [{"system": NHS, "value": number}], **extra}


def stored(client: TestClient, rtype: str) -> list[dict[str, Any]]:
    """Every version of every `rtype` written, so a rolled-back write cannot hide."""
    history = client.get(f"/fhir/{rtype}/_history?_count=1000").json()
    return history.get("entry", [])


def diagnostics(resp: httpx.Response) -> str:
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome", resp.text
    return " ".join(i.get("diagnostics", "") for i in body["issue"])


def expressions(resp: httpx.Response) -> list[str]:
    return [e for i in resp.json()["issue"] for e in i.get("expression", [])]


# -- 1. conditional and urn references ----------------------------------------------------


def test_a_conditional_reference_becomes_its_one_match(client: TestClient) -> None:
    assert client.put("/fhir/Patient/p4", json=patient("p4"),
                      headers=FHIR_JSON).status_code == 201
    bundle = tx(post(observation(f"Patient?identifier={NHS}|{NUMBER}")),
                put({"resourceType": "Encounter", "id": "e4", "status": "finished",
                     "class": {"code": "HH"},
                     "subject": {"reference": f"Patient?identifier={NHS}|{NUMBER}"}}))
    r = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["resource"]["subject"] == {"reference": "Patient/p4"}
    found = client.get("/fhir/Observation?subject=Patient/p4").json().get("entry", [])
    assert len(found) == 1
    enc = client.get("/fhir/Encounter/e4").json()
    assert enc["subject"] == {"reference": "Patient/p4"}


def test_a_conditional_reference_with_no_or_several_matches_fails(client: TestClient) -> None:
    client.put("/fhir/Patient/a", json=patient("a"), headers=FHIR_JSON)
    client.put("/fhir/Patient/b", json=patient("b"), headers=FHIR_JSON)
    for number, says in ((OTHER_NUMBER, "matches no Patient"),
                         (NUMBER, "matches more than one Patient")):
        bundle = tx(post({"resourceType": "Patient", "gender": "male"}, "urn:uuid:new"),
                    post(observation("urn:uuid:new", focus=[
                        {"reference": f"Patient?identifier={NHS}|{number}"}])))
        r = client.post("/fhir", json=bundle, headers=FHIR_JSON)
        assert r.status_code == 412, r.text
        text = diagnostics(r)
        assert "Bundle.entry[1]" in text and says in text, text
        assert "nothing in the transaction was written" in text
        assert expressions(r) == ["Bundle.entry[1].resource.focus[0].reference"]
    assert len(stored(client, "Patient")) == 2 and stored(client, "Observation") == []


def test_a_conditional_reference_may_not_use_chains(client: TestClient) -> None:
    client.put("/fhir/Patient/a", json=patient("a"), headers=FHIR_JSON)
    bundle = tx(post(observation("Patient?_has:Observation:subject:code=x")))
    r = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert r.status_code == 400, r.text
    assert "chains or _has" in diagnostics(r)
    assert stored(client, "Observation") == []


def test_a_urn_reference_naming_no_entry_fails_the_transaction(client: TestClient) -> None:
    bundle = tx(post({"resourceType": "Patient"}, "urn:uuid:pp"),
                post(observation("urn:uuid:pp", hasMember=[
                    {"reference": "urn:uuid:unknown-one"}])))
    r = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert r.status_code == 400, r.text
    text = diagnostics(r)
    assert "Bundle.entry[1]" in text and "Observation.hasMember[0].reference" in text, text
    assert "is the fullUrl of no entry" in text
    assert expressions(r) == ["Bundle.entry[1].resource.hasMember[0].reference"]
    assert stored(client, "Patient") == [] and stored(client, "Observation") == []
    # the fullUrl of an entry that gives no id to refer to (a DELETE) resolves nothing
    client.put("/fhir/Patient/gone", json=patient("gone"), headers=FHIR_JSON)
    bundle = tx({"fullUrl": "urn:uuid:gone", "request": {"method": "DELETE",
                                                         "url": "Patient/gone"}},
                post(observation("urn:uuid:gone")))
    r = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert r.status_code == 400, r.text
    assert "Bundle.entry[0] (DELETE Patient/gone), which gives no resource id" in \
        diagnostics(r)
    assert client.get("/fhir/Patient/gone").status_code == 200


def test_outside_a_transaction_such_references_are_refused(client: TestClient) -> None:
    client.put("/fhir/Patient/p4", json=patient("p4"), headers=FHIR_JSON)
    conditional = observation(f"Patient?identifier={NHS}|{NUMBER}")
    for method, url, body, where in (
        ("POST", "/fhir/Observation", conditional, "Observation.subject.reference"),
        ("PUT", "/fhir/Observation/o1", {**conditional, "id": "o1"},
         "Observation.subject.reference"),
        ("POST", "/fhir/Observation", observation("Patient/p4", hasMember=[
            {"reference": "urn:uuid:6d3c8b1e-1a2b-4c5d-8e9f-0a1b2c3d4e5f"}]),
         "Observation.hasMember[0].reference"),
        ("PUT", "/fhir/Observation?identifier=x|1", observation("urn:oid:1.2.3.4"),
         "Observation.subject.reference"),
    ):
        r = client.request(method, url, json=body, headers=FHIR_JSON)
        assert r.status_code == 400, (url, r.text)
        assert expressions(r) == [where], r.text
        assert where in diagnostics(r)
    # in a batch, each entry is a plain interaction: refused on its own
    r = client.post("/fhir", json=tx(post(conditional), post(observation("Patient/p4")),
                                     kind="batch"), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert [e["response"]["status"] for e in r.json()["entry"]] == ["400", "201 Created"]
    assert len(stored(client, "Observation")) == 1
    # what is legitimate still is: a document Bundle's own urn:uuid: references, a
    # contained resource's `#id`, and (in a transaction) an entry's fullUrl
    document = {"resourceType": "Bundle", "type": "document", "entry": [
        {"fullUrl": "urn:uuid:c1", "resource": {
            "resourceType": "Composition", "status": "final", "type": {"text": "summary"},
            "date": "2026-01-01", "title": "t", "author": [{"reference": "urn:uuid:p1"}],
            "subject": {"reference": "urn:uuid:p1"}}},
        {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient"}}]}
    r = client.post("/fhir/Bundle", json=document, headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    r = client.post("/fhir/Observation", json=observation("#p", contained=[
        {"resourceType": "Patient", "id": "p"}]), headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    r = client.post("/fhir", json=tx(post(document), post({"resourceType": "Patient"},
                                                          "urn:uuid:p1")), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    kept = r.json()["entry"][0]["resource"]["entry"][0]["resource"]["subject"]
    assert kept == {"reference": "urn:uuid:p1"}  # the document's own entry, untouched


class HideSecret(BaseInterceptor):
    """Hides resources tagged `secret` from callers without header `x-may-see`."""

    def on_request(self, request: FhirRequest, interaction: Interaction) -> None:
        if request.header("x-may-see") == "yes":
            request.caller = Caller(role="may-see")

    def can_see(self, request: FhirRequest, resource: dict[str, Any]) -> bool:
        tags = {t.get("code") for t in (resource.get("meta") or {}).get("tag", [])}
        return "secret" not in tags or request.caller.role == "may-see"


@pytest.fixture
def hiding(engine: StoreEngine) -> Iterator[TestClient]:
    app = create_app(Settings(auth_enabled=False), engine=engine,
                     interceptors=InterceptorChain([HideSecret()]))
    with TestClient(app, base_url="http://gateway.test") as c:
        yield c


def test_a_conditional_reference_never_resolves_to_a_hidden_record(
        hiding: TestClient) -> None:
    secret = patient("sec", meta={"tag": [{"code": "secret"}]})
    assert hiding.put("/fhir/Patient/sec", json=secret, headers=FHIR_JSON).status_code == 201

    def refer_to(number: str, **headers: str) -> httpx.Response:
        bundle = tx(post(observation(f"Patient?identifier={NHS}|{number}")))
        return hiding.post("/fhir", json=bundle, headers={**FHIR_JSON, **headers})

    hidden, absent = refer_to(NUMBER), refer_to(OTHER_NUMBER)
    assert hidden.status_code == 412, hidden.text
    assert "sec" not in hidden.text.replace(NUMBER, "")
    # a hidden match is answered exactly as no match
    assert (absent.status_code, absent.text.replace(OTHER_NUMBER, "N")) == \
        (hidden.status_code, hidden.text.replace(NUMBER, "N"))
    seen = refer_to(NUMBER, **{"x-may-see": "yes"})
    assert seen.status_code == 200, seen.text
    assert seen.json()["entry"][0]["resource"]["subject"] == {"reference": "Patient/sec"}


def test_a_feed_resolves_conditional_references_to_its_own_records_only(gw: Gateway) -> None:
    gp = gw.login("gp-feed", "feed", partner="gp", org="B86001", scope="system/*.cruds")
    hospice = gw.login("hospice-feed", "feed", partner="hospice", org="RH1",
                       scope="system/*.cruds")
    r = gw.http.put("/fhir/Patient/g1", json=patient("g1"), headers={**gp, **FHIR_JSON})
    assert r.status_code == 201, r.text
    bundle = tx(post(observation(f"Patient?identifier={NHS}|{NUMBER}")))
    other = gw.http.post("/fhir", json=bundle, headers={**hospice, **FHIR_JSON})
    assert other.status_code == 412, other.text
    assert "matches no Patient" in diagnostics(other) and "g1" not in other.text
    own = gw.http.post("/fhir", json=bundle, headers={**gp, **FHIR_JSON})
    assert own.status_code == 200, own.text
    assert own.json()["entry"][0]["resource"]["subject"] == {"reference": "Patient/g1"}


# -- 2. overlapping identities ------------------------------------------------------------


def test_a_delete_and_a_conditional_create_of_one_resource_fail(client: TestClient) -> None:
    assert client.put("/fhir/Patient/p3", json=patient("p3"),
                      headers=FHIR_JSON).status_code == 201
    bundle = tx({"request": {"method": "DELETE", "url": "Patient/p3"}},
                post({"resourceType": "Patient",
                      "identifier": [{"system": NHS, "value": NUMBER}]}, "urn:uuid:np",
                     ifNoneExist=f"identifier={NHS}|{NUMBER}"),
                post(observation("urn:uuid:np")))
    r = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert r.status_code == 400, r.text
    text = diagnostics(r)
    assert "Bundle.entry[0] (DELETE Patient/p3)" in text, text
    assert "Bundle.entry[1] (POST Patient)" in text and "3.1.0.11.2" in text, text
    assert "nothing in the transaction was written" in text
    assert expressions(r) == ["Bundle.entry[0]", "Bundle.entry[1]"]
    assert client.get("/fhir/Patient/p3").status_code == 200
    assert len(stored(client, "Patient")) == 1 and stored(client, "Observation") == []


def test_two_writes_of_one_resource_fail(client: TestClient) -> None:
    bundle = tx(put(patient("p2", gender="male")), put(patient("p2", gender="female")))
    r = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert r.status_code == 400, r.text
    text = diagnostics(r)
    assert "Bundle.entry[0] (PUT Patient/p2) and Bundle.entry[1] (PUT Patient/p2)" in text
    assert stored(client, "Patient") == []
    # a conditional update resolving to the resource another entry writes: the same
    client.put("/fhir/Patient/p2", json=patient("p2"), headers=FHIR_JSON)
    bundle = tx(put(patient("p2", gender="male")),
                put(patient("p2", gender="female"),
                    url=f"Patient?identifier={NHS}|{NUMBER}"))
    r = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert r.status_code == 400, r.text
    assert "Bundle.entry[1] (PUT Patient)" in diagnostics(r)
    assert len(stored(client, "Patient")) == 1
    # different resources, and a conditional update whose fullUrl is referred to: fine
    bundle = tx(put(patient("p5", OTHER_NUMBER)),
                put(patient("p2", gender="female"), full_url="urn:uuid:cu",
                    url=f"Patient?identifier={NHS}|{NUMBER}"),
                post(observation("urn:uuid:cu")))
    r = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][2]["resource"]["subject"] == {"reference": "Patient/p2"}


# -- 3. duplicate fullUrls ------------------------------------------------------------------


def test_a_fullurl_used_twice_is_refused(client: TestClient) -> None:
    twice = [post({"resourceType": "Patient", "gender": "male"}, "urn:uuid:dup"),
             post({"resourceType": "Patient", "gender": "female"}, "urn:uuid:dup"),
             post(observation("urn:uuid:dup"))]
    for kind in ("transaction", "batch"):
        r = client.post("/fhir", json=tx(*twice, kind=kind), headers=FHIR_JSON)
        assert r.status_code == 400, r.text
        text = diagnostics(r)
        assert "Bundle.entry[0] and Bundle.entry[1] have the same fullUrl" in text, text
        assert "bdl-7" in text and expressions(r) == ["Bundle.entry[1].fullUrl"]
    assert stored(client, "Patient") == [] and stored(client, "Observation") == []
    # bdl-7 allows one fullUrl for different versions of a resource (a batch's)
    url = "http://gateway.test/fhir/Patient/v"
    versions = [put(patient("v", meta={"versionId": str(n)}), full_url=url) for n in (1, 2)]
    r = client.post("/fhir", json=tx(*versions, kind="batch"), headers=FHIR_JSON)
    assert r.status_code == 200, r.text


# -- 4. audit of a transaction that failed ------------------------------------------------


def test_a_failed_transaction_audits_no_write_it_rolled_back(gw: Gateway) -> None:
    feed = gw.login("gp-feed", "feed", partner="gp", scope="system/*.cruds")
    bundle = tx(post({"resourceType": "Patient", "gender": "male"}, "urn:uuid:p1"),
                post(observation("urn:uuid:p1", status="bogus")))
    r = gw.http.post("/fhir", json=bundle,
                     headers={**feed, **FHIR_JSON, "X-Request-Id": "tx-fail-1"})
    assert r.status_code == 422, r.text
    assert "Bundle.entry[1]" in diagnostics(r)
    assert gw.http.get("/fhir/Patient", headers=feed).json().get("entry", []) == []
    events = [e for e in gw.audit_events()
              if any((ent.get("what") or {}).get("identifier", {}).get("value") == "tx-fail-1"
                     for ent in e.get("entity", []))]
    outcomes = sorted((e["subtype"][0]["code"], e["outcome"]) for e in events)
    # the failing entry's refusal and the transaction's failure; no "create succeeded"
    assert outcomes == [("create", "4"), ("transaction", "4")], outcomes
    assert gw.verify().intact


# -- second review: what the checks above refused wrongly, or let through -----------------


def test_a_conditional_update_that_creates_gives_its_fullurl_an_id(client: TestClient) -> None:
    """The everyday upsert: PUT Patient?identifier=... (no id) and an Observation citing
    its urn. The first time, nothing matches: the Patient is created, and the reference
    names it, as a POST's would; the second time, the same Bundle updates it."""
    def bundle(gender: str) -> dict[str, Any]:
        return tx({"fullUrl": "urn:uuid:p", "resource": {
                      "resourceType": "Patient", "gender": gender,
                      "identifier": [{"system": NHS, "value": NUMBER}]},
                   "request": {"method": "PUT", "url": f"Patient?identifier={NHS}|{NUMBER}"}},
                  post(observation("urn:uuid:p")))
    for gender in ("male", "female"):
        r = client.post("/fhir", json=bundle(gender), headers=FHIR_JSON)
        assert r.status_code == 200, r.text
        pid = r.json()["entry"][0]["response"]["location"].split("Patient/")[1].split("/")[0]
        assert r.json()["entry"][1]["resource"]["subject"] == {"reference": f"Patient/{pid}"}
    patients = client.get(f"/fhir/Patient?identifier={NHS}|{NUMBER}").json()["entry"]
    assert [p["resource"]["gender"] for p in patients] == ["female"]


def test_two_creates_under_one_condition_are_one_resource(client: TestClient) -> None:
    practitioner = {"resourceType": "Practitioner",
                    "identifier": [{"system": "https://example.org/gmc", "value": "G123"}]}
    condition = "identifier=https://example.org/gmc|G123"
    bundle = tx(post(practitioner, ifNoneExist=condition),
                post(practitioner, ifNoneExist=condition))
    r = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert r.status_code == 400, r.text
    assert "are the same Practitioner" in diagnostics(r)
    assert client.get("/fhir/Practitioner").json().get("entry", []) == []


def test_an_absolute_conditional_reference_is_resolved_or_refused(client: TestClient) -> None:
    client.put("/fhir/Patient/p4", json=patient("p4"), headers=FHIR_JSON)
    base = str(client.base_url).rstrip("/") + "/fhir"
    here = f"{base}/Patient?identifier={NHS}|{NUMBER}"
    r = client.post("/fhir", json=tx(post(observation(here))), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["resource"]["subject"] == {"reference": "Patient/p4"}
    elsewhere = f"https://other.example/fhir/Patient?identifier={NHS}|{NUMBER}"
    r = client.post("/fhir", json=tx(post(observation(elsewhere))), headers=FHIR_JSON)
    assert r.status_code == 400 and "another server" in diagnostics(r), r.text
    for ref in (here, elsewhere):  # outside a transaction: refused, never stored as written
        r = client.post("/fhir/Observation", json=observation(ref), headers=FHIR_JSON)
        assert r.status_code == 400 and "conditional reference" in diagnostics(r), r.text


def test_uri_elements_named_reference_are_not_references(client: TestClient) -> None:
    issue = {"resourceType": "DetectedIssue", "status": "final",
             "reference": "urn:oid:2.16.840.1.113883.3.1937"}
    r = client.post("/fhir/DetectedIssue", json=issue, headers=FHIR_JSON)
    assert r.status_code == 201, r.text


def test_validate_reports_the_profile_beside_an_unresolvable_reference(
        client: TestClient) -> None:
    """A resource meant for a transaction entry (citing another entry's urn) is still
    checked against its profile: the NHS number's check digit is reported too."""
    examples = Path(__file__).resolve().parent / "validation" / "examples"
    bad = json.loads((examples / "Patient-scr.json").read_text())
    bad["generalPractitioner"] = [{"reference": "urn:uuid:later"}]
    r = client.post("/fhir/Patient/$validate", json=bad, headers=FHIR_JSON)
    assert "urn:uuid:later" in diagnostics(r), r.text
    without = {k: v for k, v in bad.items() if k != "generalPractitioner"}
    for body in (bad, without):
        nhs = next(i for i in body["identifier"] if i["system"] == NHS)
        nhs["value"] = "9434765918"  # wrong check digit: the profile's finding
    found = client.post("/fhir/Patient/$validate", json=bad, headers=FHIR_JSON).json()["issue"]
    alone = client.post("/fhir/Patient/$validate", json=without,
                        headers=FHIR_JSON).json()["issue"]
    assert alone and all(issue in found for issue in alone), (found, alone)
    assert len(found) == len(alone) + 1


@pytest.mark.parametrize("condition", ["_elements=id", "_id=", "_count=1", "identifier="])
def test_a_conditional_reference_without_a_criterion_is_refused(
        client: TestClient, condition: str) -> None:
    """With nothing to match on, the "one match" is whichever record the caller sees."""
    client.put("/fhir/Patient/p4", json=patient("p4"), headers=FHIR_JSON)
    r = client.post("/fhir", json=tx(post(observation(f"Patient?{condition}"))),
                    headers=FHIR_JSON)
    assert r.status_code == 400 and "needs a search criterion" in diagnostics(r), r.text
