"""Batch and transaction Bundles (R4 3.1.0.11), on both engines.

On mongomock the engine has no multi-document transactions; atomicity here comes from its
undo journal (real MongoDB aborts the transaction instead; see README, known limits).
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from gatewaykit import FHIR_JSON, conflict_once

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def count(client: TestClient, rtype: str) -> int:
    return len(client.get(f"/fhir/{rtype}/_history?_count=1000").json()["entry"])


def tx(*entries: dict, kind: str = "transaction") -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict, full_url: str | None = None, **request: str) -> dict:
    entry = {"resource": resource,
             "request": {"method": "POST", "url": resource["resourceType"], **request}}
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def test_transaction_rewrites_urn_references(client: TestClient) -> None:
    bundle = tx(
        post({"resourceType": "Encounter", "status": "finished",
              "class": {"code": "IMP"}, "subject": {"reference": "urn:uuid:p1"}}),
        post({"resourceType": "Patient", "name": [{"family": "Adeyemi"}]}, "urn:uuid:p1"),
        post({"resourceType": "Observation", "status": "final", "code": {"text": "CPR"},
              "subject": {"reference": "urn:uuid:p1"}}),
    )
    r = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["type"] == "transaction-response"
    assert [e["response"]["status"] for e in out["entry"]] == ["201 Created"] * 3
    pid = out["entry"][1]["resource"]["id"]
    enc = client.get(f"/fhir/Encounter/{out['entry'][0]['resource']['id']}").json()
    assert enc["subject"]["reference"] == f"Patient/{pid}"
    found = client.get(f"/fhir/Observation?subject=Patient/{pid}").json()
    assert len(found["entry"]) == 1


def test_failing_entry_leaves_nothing_behind(client: TestClient) -> None:
    existing = client.post("/fhir/Patient", json={"resourceType": "Patient"},
                           headers=FHIR_JSON).json()
    # a transaction may touch each resource once (R4 3.1.0.11.2): update one, delete another
    deleted = client.post("/fhir/Patient", json={"resourceType": "Patient"},
                          headers=FHIR_JSON).json()
    bundle = tx(
        post({"resourceType": "Patient", "name": [{"family": "New"}]}),
        {"resource": {**existing, "gender": "female"},
         "request": {"method": "PUT", "url": f"Patient/{existing['id']}"}},
        {"request": {"method": "DELETE", "url": f"Patient/{deleted['id']}"}},
        post({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
              "effectiveDateTime": "last Tuesday"}),
    )
    before = (count(client, "Patient"), count(client, "Observation"))
    r = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert r.status_code == 400
    msg = r.json()["issue"][0]["diagnostics"]
    assert "Bundle.entry[3]" in msg and "nothing in the transaction was written" in msg
    assert (count(client, "Patient"), count(client, "Observation")) == before
    current = client.get(f"/fhir/Patient/{existing['id']}")
    assert current.status_code == 200 and current.json() == existing
    kept = client.get(f"/fhir/Patient/{deleted['id']}")
    assert kept.status_code == 200 and kept.json() == deleted


def test_transaction_failing_on_a_precondition_rolls_back(client: TestClient) -> None:
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"},
                      headers=FHIR_JSON).json()["id"]
    bundle = tx(
        post({"resourceType": "Patient", "name": [{"family": "Kept?"}]}),
        {"resource": {"resourceType": "Patient", "id": pid, "gender": "male"},
         "request": {"method": "PUT", "url": f"Patient/{pid}", "ifMatch": 'W/"7"'}},
    )
    r = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert r.status_code == 412
    assert count(client, "Patient") == 1


def test_transaction_conditional_create_reuses_the_match(client: TestClient) -> None:
    ident = {"system": NHS, "value": "9434765919"}
    made = client.post("/fhir/Patient", json={"resourceType": "Patient", "identifier": [ident]},
                       headers=FHIR_JSON).json()
    bundle = tx(
        post({"resourceType": "Patient", "identifier": [ident]}, "urn:uuid:pat",
             ifNoneExist=f"identifier={NHS}|9434765919"),
        post({"resourceType": "Encounter", "status": "planned", "class": {"code": "AMB"},
              "subject": {"reference": "urn:uuid:pat"}}),
    )
    r = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"] == "200 OK"
    enc_id = r.json()["entry"][1]["resource"]["id"]
    enc = client.get(f"/fhir/Encounter/{enc_id}").json()
    assert enc["subject"]["reference"] == f"Patient/{made['id']}"
    assert count(client, "Patient") == 1


def test_batch_entries_fail_independently(client: TestClient) -> None:
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"},
                      headers=FHIR_JSON).json()["id"]
    bundle = tx(
        post({"resourceType": "Patient", "name": [{"family": "Ok"}]}),
        post({"resourceType": "Patient", "birthDate": "not a date"}),
        {"request": {"method": "GET", "url": f"Patient/{pid}"}},
        {"request": {"method": "GET", "url": "Patient/missing"}},
        {"request": {"method": "GET", "url": "Patient?gender=male"}},
        kind="batch",
    )
    r = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert r.status_code == 200
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert statuses == ["201 Created", "400", "200 OK", "404", "200 OK"]
    assert r.json()["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert count(client, "Patient") == 2


def test_malformed_bundles(client: TestClient) -> None:
    for bundle, status in [
        ({"resourceType": "Bundle", "type": "collection"}, 400),
        ({"resourceType": "Patient"}, 400),
        (tx({"resource": {"resourceType": "Patient"}}), 400),
        (tx({"request": {"method": "FROB", "url": "Patient"}}), 400),
        (tx({"request": {"method": "POST", "url": ""}}), 400),
        (tx({"request": {"method": "GET", "url": "Nonsense/1"}}), 404),
        (tx({"resource": {"resourceType": "Bundle", "type": "batch"},
             "request": {"method": "POST", "url": "/"}}), 400),
    ]:
        r = client.post("/fhir", json=bundle, headers=FHIR_JSON)
        assert r.status_code == status, (bundle, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    assert count(client, "Patient") == 0


def test_a_retried_transaction_refers_to_what_it_stored(client: TestClient,
                                                        monkeypatch: Any) -> None:
    # The first attempt meets a concurrent writer after writing the Patient, and is rolled
    # back; the retry assigns new ids, and its references must name them, not the ids of
    # the attempt that was rolled back.
    conflicts = conflict_once(monkeypatch, client.app.state.fhir_router.repository,
                              "Observation")
    bundle = tx(post({"resourceType": "Patient", "name": [{"family": "Adeyemi"}]},
                     "urn:uuid:p1"),
                post({"resourceType": "Observation", "status": "final", "code": {"text": "CPR"},
                      "subject": {"reference": "urn:uuid:p1"}}))
    r = client.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert conflicts == ["Observation"]
    pid, oid = (e["resource"]["id"] for e in r.json()["entry"])
    assert client.get(f"/fhir/Observation/{oid}").json()["subject"] == {
        "reference": f"Patient/{pid}"}
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200
    assert count(client, "Patient") == 1 and count(client, "Observation") == 1


def test_an_unforeseen_failure_fails_its_batch_entry_not_the_batch(
        client: TestClient, monkeypatch: Any) -> None:
    """An entry that fails in a way no check foresaw answers 500 for itself; the entries
    before it stay written and are reported, so a retrying client does not write them
    twice (a whole-request 500 after entry 0 was committed said nothing of entry 0)."""
    from fhir_gateway.fhir.repository import Repository

    real = Repository.create

    def failing_for_observations(self: Repository, resource: dict, **kw: Any) -> Any:
        if resource.get("resourceType") == "Observation":
            raise RuntimeError("a fault no check foresaw")
        return real(self, resource, **kw)

    monkeypatch.setattr(Repository, "create", failing_for_observations)
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}
    r = client.post("/fhir", json=tx(
        post({"resourceType": "Patient", "name": [{"family": "Before"}]}), post(obs),
        post({"resourceType": "Patient", "name": [{"family": "After"}]}), kind="batch"),
        headers={**FHIR_JSON, "X-Request-Id": "req-17"})
    assert r.status_code == 200, r.text
    out = r.json()["entry"]
    assert [e["response"]["status"][:3] for e in out] == ["201", "500", "201"]
    issue = out[1]["response"]["outcome"]["issue"][0]
    assert issue["code"] == "exception" and "Bundle.entry[1]" in issue["diagnostics"]
    assert "a fault no check foresaw" not in issue["diagnostics"]  # no internals leak
    monkeypatch.setattr(Repository, "create", real)
    assert count(client, "Patient") == 2 and count(client, "Observation") == 0


def test_an_entry_list_that_is_not_an_array_is_400(client: TestClient) -> None:
    for kind in ("batch", "transaction"):
        for entries in (5, True, {"request": {"method": "GET", "url": "Patient"}}):
            r = client.post("/fhir", json={"resourceType": "Bundle", "type": kind,
                                           "entry": entries}, headers=FHIR_JSON)
            assert r.status_code == 400, r.text
            issue = r.json()["issue"][0]
            assert "Bundle.entry must be an array" in issue["diagnostics"]
            assert issue["expression"] == ["Bundle.entry"]


def test_request_elements_that_are_not_strings_are_refused_not_dropped(
        client: TestClient) -> None:
    """ifMatch 1 (not 'W/"1"') was dropped, so a stale update overwrote version 2;
    ifNoneExist 5 was dropped, so a conditional create made a duplicate."""
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient", "gender": "female"},
                      headers=FHIR_JSON).json()["id"]
    client.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid,
                                             "gender": "male"}, headers=FHIR_JSON)
    update = {"resource": {"resourceType": "Patient", "id": pid, "gender": "other"},
              "request": {"method": "PUT", "url": f"Patient/{pid}", "ifMatch": 1}}
    create = post({"resourceType": "Patient", "identifier": [{"system": "urn:s",
                                                              "value": "5"}]},
                  ifNoneExist=5)  # type: ignore[arg-type]
    for element, entry in (("ifMatch", update), ("ifNoneExist", create),
                           ("ifNoneMatch", {**update, "request": {
                               "method": "PUT", "url": f"Patient/{pid}", "ifNoneMatch": 1}}),
                           ("ifModifiedSince", {"request": {
                               "method": "GET", "url": f"Patient/{pid}",
                               "ifModifiedSince": 20200101}})):
        batch = client.post("/fhir", json=tx(entry, kind="batch"), headers=FHIR_JSON)
        assert batch.status_code == 200, batch.text
        response = batch.json()["entry"][0]["response"]
        assert response["status"] == "400"
        assert response["outcome"]["issue"][0]["expression"] == [
            f"Bundle.entry[0].request.{element}"]
        whole = client.post("/fhir", json=tx(entry), headers=FHIR_JSON)
        assert whole.status_code == 400, whole.text
    full_url = {**post({"resourceType": "Patient"}), "fullUrl": 7}
    r = client.post("/fhir", json=tx(full_url), headers=FHIR_JSON)
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == [
        "Bundle.entry[0].fullUrl"]
    assert client.get(f"/fhir/Patient/{pid}").json()["meta"]["versionId"] == "2"
    assert client.get("/fhir/Patient?identifier=urn:s|5").json()["total"] == 0


def test_a_malformed_batch_entry_fails_alone_and_a_transaction_whole(
        client: TestClient) -> None:
    good = post({"resourceType": "Patient", "name": [{"family": "Kept"}]})
    malformed = [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "post",
                                                              "url": "Patient"}},
        {"resource": {"resourceType": "Patient"}},
        "not an entry",
        {"resource": {"resourceType": "Bundle", "type": "batch"},
         "request": {"method": "POST", "url": ""}},
    ]
    r = client.post("/fhir", json=tx(good, *malformed, kind="batch"), headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    out = r.json()["entry"]
    assert [e["response"]["status"][:3] for e in out] == ["201", "400", "400", "400", "400"]
    assert out[1]["response"]["outcome"]["issue"][0]["expression"] == [
        "Bundle.entry[1].request"]
    assert count(client, "Patient") == 1
    for entry in malformed:
        whole = client.post("/fhir", json=tx(good, entry), headers=FHIR_JSON)
        assert whole.status_code == 400, whole.text
    assert count(client, "Patient") == 1


def test_transaction_conditions_without_a_criterion_are_refused(client: TestClient) -> None:
    stored = client.post("/fhir/Patient", json={"resourceType": "Patient"},
                         headers=FHIR_JSON).json()
    entries = [
        post({"resourceType": "Patient", "name": [{"family": "New"}]}, ifNoneExist=""),
        post({"resourceType": "Patient", "name": [{"family": "New"}]},
             ifNoneExist="identifier="),
        {"resource": {"resourceType": "Patient", "name": [{"family": "Over"}]},
         "request": {"method": "PUT", "url": "Patient?identifier="}},
        {"request": {"method": "DELETE", "url": "Patient?_count=1"}},
    ]
    for entry in entries:
        for kind in ("transaction", "batch"):
            r = client.post("/fhir", json=tx(entry, kind=kind), headers=FHIR_JSON)
            text = r.text
            if kind == "batch":
                assert r.status_code == 200, text
                text = str(r.json()["entry"][0]["response"])
                assert r.json()["entry"][0]["response"]["status"] == "400", (entry, text)
            else:
                assert r.status_code == 400, (entry, text)
            assert "needs a search criterion with a value" in text
    now = client.get(f"/fhir/Patient/{stored['id']}").json()
    assert now["meta"]["versionId"] == "1" and count(client, "Patient") == 1


def test_transaction_conditional_update_may_not_take_anothers_id(
        client: TestClient) -> None:
    alice = client.post("/fhir/Patient", json={
        "resourceType": "Patient", "identifier": [{"system": NHS, "value": "9434765919"}]},
        headers=FHIR_JSON).json()
    over = {"resource": {"resourceType": "Patient", "id": alice["id"],
                         "name": [{"family": "Bob"}]},
            "request": {"method": "PUT", "url": f"Patient?identifier={NHS}|9434765870"}}
    r = client.post("/fhir", json=tx(over), headers=FHIR_JSON)
    assert r.status_code == 409, r.text
    assert client.get(f"/fhir/Patient/{alice['id']}").json()["meta"]["versionId"] == "1"


def test_transaction_if_none_exist_may_be_written_as_a_url(client: TestClient) -> None:
    alice = client.post("/fhir/Patient", json={
        "resourceType": "Patient", "identifier": [{"system": NHS, "value": "9434765919"}]},
        headers=FHIR_JSON).json()
    r = client.post("/fhir", json=tx(post(
        {"resourceType": "Patient", "identifier": [{"system": NHS, "value": "9434765919"}]},
        ifNoneExist=f"http://gateway.test/fhir/Patient?identifier={NHS}|9434765919")),
        headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["resource"]["id"] == alice["id"]
    assert count(client, "Patient") == 1
