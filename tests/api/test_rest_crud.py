"""The FHIR REST interactions (R4 3.1.0), on both engines, through the ASGI app."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from fastapi.testclient import TestClient

from gatewaykit import FHIR_JSON

NHS = "https://fhir.nhs.uk/Id/nhs-number"


def patient(**extra: object) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": NHS, "value": "9434765919"}],
            "name": [{"family": "Okafor", "given": ["Grace"]}], "birthDate": "1938-03-14",
            **extra}


def create(client: TestClient, resource: dict, **headers: str) -> dict:
    r = client.post(f"/fhir/{resource['resourceType']}", json=resource,
                    headers={**FHIR_JSON, **headers})
    assert r.status_code == 201, r.text
    return r.json()


def test_create_read_vread_with_version_headers(client: TestClient) -> None:
    r = client.post("/fhir/Patient", json=patient(id="client-chosen"), headers=FHIR_JSON)
    assert r.status_code == 201
    body = r.json()
    pid = body["id"]
    assert pid != "client-chosen"  # create assigns the id (R4 3.1.0.8)
    assert body["meta"]["versionId"] == "1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"] == f"http://gateway.test/fhir/Patient/{pid}/_history/1"
    assert r.headers["content-type"].startswith("application/fhir+json")
    # the same instant as meta.lastUpdated, to the second, in GMT (RFC 9110)
    updated = datetime.fromisoformat(body["meta"]["lastUpdated"]).astimezone(UTC)
    assert r.headers["last-modified"] == updated.strftime("%a, %d %b %Y %H:%M:%S GMT")
    read = client.get(f"/fhir/Patient/{pid}")
    assert read.status_code == 200 and read.json() == body
    assert read.headers["etag"] == 'W/"1"'
    assert client.get(f"/fhir/Patient/{pid}/_history/1").json() == body
    assert client.get(f"/fhir/Patient/{pid}/_history/2").status_code == 404
    assert client.get(f"/fhir/Patient/{pid}/_history/x").status_code == 404
    assert client.get("/fhir/Patient/unknown-id").status_code == 404


def test_update_versions_and_keeps_history(client: TestClient) -> None:
    pid = create(client, patient())["id"]
    r = client.put(f"/fhir/Patient/{pid}", json=patient(id=pid, gender="female"),
                   headers=FHIR_JSON)
    assert r.status_code == 200 and r.headers["etag"] == 'W/"2"'
    assert r.json()["meta"]["versionId"] == "2"
    assert client.get(f"/fhir/Patient/{pid}/_history/1").json().get("gender") is None
    assert client.get(f"/fhir/Patient/{pid}").json()["gender"] == "female"
    hist = client.get(f"/fhir/Patient/{pid}/_history").json()
    assert hist["type"] == "history"
    assert [e["resource"]["meta"]["versionId"] for e in hist["entry"]] == ["2", "1"]
    assert [e["request"]["method"] for e in hist["entry"]] == ["PUT", "POST"]


def test_same_content_update_is_a_no_op(client: TestClient) -> None:
    first = create(client, patient())
    pid = first["id"]
    r = client.put(f"/fhir/Patient/{pid}", json=patient(id=pid), headers=FHIR_JSON)
    assert r.status_code == 200 and r.headers["etag"] == 'W/"1"'
    assert r.json() == first
    assert len(client.get(f"/fhir/Patient/{pid}/_history").json()["entry"]) == 1


def test_update_as_create_with_client_id(client: TestClient) -> None:
    r = client.put("/fhir/Patient/gp-123", json=patient(id="gp-123"), headers=FHIR_JSON)
    assert r.status_code == 201 and r.headers["etag"] == 'W/"1"'
    assert client.get("/fhir/Patient/gp-123").json()["id"] == "gp-123"


def test_if_match(client: TestClient) -> None:
    pid = create(client, patient())["id"]
    ok = client.put(f"/fhir/Patient/{pid}", json=patient(id=pid, gender="male"),
                    headers={**FHIR_JSON, "If-Match": 'W/"1"'})
    assert ok.status_code == 200
    stale = client.put(f"/fhir/Patient/{pid}", json=patient(id=pid, gender="female"),
                       headers={**FHIR_JSON, "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    assert "current version is 2" in stale.json()["issue"][0]["diagnostics"]
    assert client.get(f"/fhir/Patient/{pid}").json()["gender"] == "male"
    bad = client.put(f"/fhir/Patient/{pid}", json=patient(id=pid),
                     headers={**FHIR_JSON, "If-Match": "yesterday"})
    assert bad.status_code == 400
    stale_delete = client.delete(f"/fhir/Patient/{pid}", headers={"If-Match": 'W/"1"'})
    assert stale_delete.status_code == 412


def test_delete_is_a_versioned_tombstone(client: TestClient) -> None:
    pid = create(client, patient())["id"]
    assert client.delete(f"/fhir/Patient/{pid}").status_code == 204
    gone = client.get(f"/fhir/Patient/{pid}")
    assert gone.status_code == 410
    assert gone.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/fhir/Patient/{pid}/_history/1").status_code == 200
    hist = client.get(f"/fhir/Patient/{pid}/_history").json()["entry"]
    assert hist[0]["request"]["method"] == "DELETE" and "resource" not in hist[0]
    assert client.delete(f"/fhir/Patient/{pid}").status_code == 204  # idempotent
    assert len(client.get(f"/fhir/Patient/{pid}/_history").json()["entry"]) == 2
    assert client.delete("/fhir/Patient/never-was").status_code == 204
    again = client.put(f"/fhir/Patient/{pid}", json=patient(id=pid), headers=FHIR_JSON)
    assert again.status_code == 201 and again.headers["etag"] == 'W/"3"'


def test_type_and_system_history_paged(client: TestClient) -> None:
    made = [create(client, patient(gender=g))["id"] for g in ("male", "female", "other")]
    create(client, {"resourceType": "Organization", "name": "Riverside Hospice"})
    page = client.get("/fhir/Patient/_history?_count=2").json()
    assert len(page["entry"]) == 2
    nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
    rest = client.get(nxt.replace("http://gateway.test", "")).json()
    got = [e["resource"]["id"] for e in page["entry"] + rest["entry"]]
    assert got == list(reversed(made))
    system = client.get("/fhir/_history?_count=1000").json()
    assert {"Patient", "Organization"} <= {e["resource"]["resourceType"]
                                           for e in system["entry"]}
    assert client.get("/fhir/Patient/_history?_cursor=garbage").status_code == 400


def test_prefer_return(client: TestClient) -> None:
    r = client.post("/fhir/Patient", json=patient(),
                    headers={**FHIR_JSON, "Prefer": "return=minimal"})
    assert r.status_code == 201 and r.content == b"" and r.headers["location"]
    r = client.post("/fhir/Patient", json=patient(),
                    headers={**FHIR_JSON, "Prefer": "return=OperationOutcome"})
    assert r.status_code == 201 and r.json()["resourceType"] == "OperationOutcome"
    assert r.json()["issue"][0]["severity"] == "information"
    r = client.post("/fhir/Patient", json=patient(),
                    headers={**FHIR_JSON, "Prefer": "return=representation"})
    assert r.json()["resourceType"] == "Patient"


def test_decimal_precision_round_trips(client: TestClient) -> None:
    body = (b'{"resourceType":"Observation","status":"final","code":{"text":"weight"},'
            b'"valueQuantity":{"value":1.50,"unit":"kg"},'
            b'"referenceRange":[{"low":{"value":1e2},"high":{"value":100.000}}]}')
    r = client.post("/fhir/Observation", content=body, headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    text = client.get(f"/fhir/Observation/{r.json()['id']}").text
    assert '"value":1.50' in text and '"value":1e2' in text and '"value":100.000' in text


def test_conditional_create(client: TestClient) -> None:
    cond = {"If-None-Exist": f"identifier={NHS}|9434765919"}
    first = client.post("/fhir/Patient", json=patient(), headers={**FHIR_JSON, **cond})
    assert first.status_code == 201
    second = client.post("/fhir/Patient", json=patient(gender="male"),
                         headers={**FHIR_JSON, **cond})
    assert second.status_code == 200 and second.json()["id"] == first.json()["id"]
    assert "gender" not in second.json()
    create(client, patient())  # a duplicate NHS number, made without a condition
    third = client.post("/fhir/Patient", json=patient(), headers={**FHIR_JSON, **cond})
    assert third.status_code == 412
    bad = client.post("/fhir/Patient", json=patient(),
                      headers={**FHIR_JSON, "If-None-Exist": "nonsense=1"})
    assert bad.status_code == 400


def test_conditional_update_and_delete(client: TestClient) -> None:
    url = f"/fhir/Patient?identifier={NHS}|9876543210"
    body = patient(identifier=[{"system": NHS, "value": "9876543210"}])
    made = client.put(url, json=body, headers=FHIR_JSON)
    assert made.status_code == 201
    pid = made.json()["id"]
    updated = client.put(url, json={**body, "gender": "female"}, headers=FHIR_JSON)
    assert updated.status_code == 200 and updated.json()["id"] == pid
    assert updated.headers["etag"] == 'W/"2"'
    wrong_id = client.put(url, json={**body, "id": "other"}, headers=FHIR_JSON)
    assert wrong_id.status_code == 400
    assert client.delete(url).status_code == 204
    assert client.get(f"/fhir/Patient/{pid}").status_code == 410
    create(client, patient())
    create(client, patient())
    two = client.put(f"/fhir/Patient?identifier={NHS}|9434765919", json=patient(),
                     headers=FHIR_JSON)
    assert two.status_code == 412


def test_concurrent_updates_never_lose_a_version(client: TestClient) -> None:
    pid = create(client, patient())["id"]
    statuses: list[int] = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        for i in range(8):
            r = client.put(f"/fhir/Patient/{pid}",
                           json=patient(id=pid, name=[{"family": f"W{n}-{i}"}]),
                           headers=FHIR_JSON)
            with lock:
                statuses.append(r.status_code)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 32
    hist = client.get(f"/fhir/Patient/{pid}/_history?_count=100").json()["entry"]
    versions = sorted(int(e["resource"]["meta"]["versionId"]) for e in hist)
    assert versions == list(range(1, 34))
    families = {e["resource"]["name"][0]["family"] for e in hist[:-1]}
    assert families == {f"W{n}-{i}" for n in range(4) for i in range(8)}


def test_request_id_is_echoed_or_made(client: TestClient) -> None:
    r = client.get("/fhir/metadata", headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    made = client.get("/fhir/metadata").headers["x-request-id"]
    assert len(made) == 32
    hostile = client.get("/fhir/metadata", headers={"X-Request-Id": "a b\"c"})
    assert hostile.headers["x-request-id"] != "a b\"c"


def test_capability_statement(client: TestClient) -> None:
    cs = client.get("/fhir/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    by_type = {r["type"]: r for r in cs["rest"][0]["resource"]}
    assert len(by_type) == 146
    patient_cs = by_type["Patient"]
    assert {i["code"] for i in patient_cs["interaction"]} >= {"read", "vread", "update",
                                                              "delete", "create",
                                                              "history-instance"}
    params = {p["name"] for p in patient_cs["searchParam"]}
    assert {"identifier", "name", "birthdate", "_id", "_lastUpdated"} <= params
    assert "documentation" in by_type["MedicinalProduct"]
    assert "MedicinalProduct" in cs["rest"][0]["documentation"]


def test_every_include_the_statement_offers_is_accepted(client: TestClient) -> None:
    """It offered a bare `_include=*` and `_revinclude=*`, which searches refuse (400)."""
    from fhir_gateway.search.query import parse_search
    from fhir_gateway.search.registry import default_registry

    cs = client.get("/fhir/metadata").json()
    registry = default_registry()
    for resource in cs["rest"][0]["resource"]:
        rtype = resource["type"]
        for name in ("searchInclude", "searchRevInclude"):
            for value in resource[name]:
                assert value != "*"
                parse_search(rtype, [(name.replace("search", "_").lower(), value)], registry)
    patient_cs = next(r for r in cs["rest"][0]["resource"] if r["type"] == "Patient")
    assert "Patient:general-practitioner" in patient_cs["searchInclude"]
    assert {"Observation:*", "CarePlan:*", "Provenance:*"} <= set(
        patient_cs["searchRevInclude"])
    for name, values in (("_include", patient_cs["searchInclude"]),
                         ("_revinclude", patient_cs["searchRevInclude"])):
        for value in values:
            r = client.get("/fhir/Patient", params={name: value})
            assert r.status_code == 200, (name, value, r.text[:200])


def test_http_date_reads_any_zone_and_falls_back_for_other_forms() -> None:
    from fhir_gateway.fhir.interactions import http_date

    assert http_date("2026-03-29T00:59:59.5+01:00") == "Sat, 28 Mar 2026 23:59:59 GMT"
    assert http_date("2026-11-24T00:31:03.123456Z") == "Tue, 24 Nov 2026 00:31:03 GMT"
    # not an ISO instant with a zone: read as FHIR dates are (UTC)
    assert http_date("2026-11-24") == "Tue, 24 Nov 2026 00:00:00 GMT"


BLANK_CRITERIA = ["identifier=", "_count=1", "&&&=", "identifier=&_sort=name", "_format=json"]


def test_conditional_writes_without_a_criterion_are_400_and_touch_nothing(
        client: TestClient) -> None:
    """Blank criteria (or only result parameters) matched every Patient: with one stored,
    a conditional delete deleted it, an update overwrote it and a create returned it."""
    stored = create(client, patient())
    for criteria in BLANK_CRITERIA:
        other = patient(name=[{"family": "Someone-else"}])
        made = client.post("/fhir/Patient", json=other,
                           headers={**FHIR_JSON, "If-None-Exist": criteria})
        assert made.status_code == 400, (criteria, made.text)
        assert "needs a search criterion with a value" in made.text
        put = client.put(f"/fhir/Patient?{criteria}", json=other, headers=FHIR_JSON)
        assert put.status_code == 400, (criteria, put.text)
        deleted = client.delete(f"/fhir/Patient?{criteria}")
        assert deleted.status_code == 400, (criteria, deleted.text)
    now = client.get(f"/fhir/Patient/{stored['id']}")
    assert now.status_code == 200 and now.json()["meta"]["versionId"] == "1"
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 1


def test_conditional_update_matching_nothing_may_not_take_anothers_id(
        client: TestClient) -> None:
    """No match and a body id that is another, existing Patient's: 409, not an overwrite
    of that Patient (as R5 spells out and HAPI does). A new id, or a deleted one, is created."""
    alice = create(client, patient())
    bob = patient(id=alice["id"], identifier=[{"system": NHS, "value": "9434765870"}],
                  name=[{"family": "Bob"}])
    r = client.put(f"/fhir/Patient?identifier={NHS}|9434765870", json=bob, headers=FHIR_JSON)
    assert r.status_code == 409, r.text
    assert r.json()["issue"][0]["expression"] == ["Patient.id"] and alice["id"] in r.text
    kept = client.get(f"/fhir/Patient/{alice['id']}").json()
    assert kept["name"] == alice["name"] and kept["meta"]["versionId"] == "1"
    new_id = client.put(f"/fhir/Patient?identifier={NHS}|9434765870",
                        json={**bob, "id": "bob-1"}, headers=FHIR_JSON)
    assert new_id.status_code == 201 and new_id.json()["id"] == "bob-1"
    assert client.delete("/fhir/Patient/bob-1").status_code == 204
    again = client.put(f"/fhir/Patient?identifier={NHS}|9434765870",
                       json={**bob, "id": "bob-1"}, headers=FHIR_JSON)
    assert again.status_code == 201, again.text  # a deleted id is free to come back


def test_if_none_exist_may_be_written_as_a_url(client: TestClient) -> None:
    """HAPI's client sends If-None-Exist as `[base]/Type?criteria`; it is the criteria."""
    first = create(client, patient())
    for condition in (f"http://gateway.test/fhir/Patient?identifier={NHS}|9434765919",
                      f"Patient?identifier={NHS}|9434765919"):
        r = client.post("/fhir/Patient", json=patient(gender="male"),
                        headers={**FHIR_JSON, "If-None-Exist": condition})
        assert r.status_code == 200, (condition, r.text)
        assert r.json()["id"] == first["id"]
    other = client.post("/fhir/Patient", json=patient(), headers={
        **FHIR_JSON, "If-None-Exist": f"Observation?identifier={NHS}|9434765919"})
    assert other.status_code == 400
    assert "searches Observation, but this creates a Patient" in other.text
    assert client.get("/fhir/Patient?_summary=count").json()["total"] == 1
