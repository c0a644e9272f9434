"""Bad input is a 4xx OperationOutcome naming what and where, never a 500 or partial write."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from gatewaykit import FHIR_JSON


def outcome(r, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert r.headers["content-type"].startswith("application/fhir+json")
    return " ".join(i.get("diagnostics", "") for i in body["issue"])


def patient_count(client: TestClient) -> int:
    return len(client.get("/fhir/Patient/_history?_count=1000").json()["entry"])


@pytest.mark.parametrize(("body", "expect"), [
    (b'{"resourceType": "Patient",', "line 1 column 28"),
    (b'{"resourceType": "Patient"} trailing', "Extra data"),
    (b'{"resourceType": "Patient", "name": [{"family": "\xff"}]}', "UTF-8: byte 0xff"),
    (b"[" * 5000 + b"]" * 5000, "nests"),
    (b'{"a":' * 100 + b"1" + b"}" * 100, "nests"),
    (b'{"resourceType": "Patient", "multipleBirthInteger": NaN}', "NaN"),
    (b"", "empty"),
    (b"[]", "JSON object"),
    (b'"Patient"', "JSON object"),
    (b'{"name": []}', "no resourceType"),
    (b'{"resourceType": "Observation", "status": "final", "code": {}}', "Patient endpoint"),
    (b'{"resourceType": "Patient", "birthDate": "1938-02-30"}', "Patient.birthDate"),
    (b'{"resourceType": "Patient", "favouriteColour": "blue"}', "Patient.favouriteColour"),
    (b'{"resourceType": "Patient", "id": "bad id!"}', "not a FHIR id"),
    (b'{"resourceType": "Nonsense"}', "not an R4 resource type"),
])
def test_malformed_bodies_are_400_and_write_nothing(client: TestClient, body: bytes,
                                                    expect: str) -> None:
    before = patient_count(client)
    msg = outcome(client.post("/fhir/Patient", content=body, headers=FHIR_JSON), 400)
    assert expect in msg
    assert patient_count(client) == before


def test_every_model_problem_is_reported_with_its_path(client: TestClient) -> None:
    r = client.post("/fhir/Patient", json={
        "resourceType": "Patient", "gender": 5, "birthDate": "yesterday",
        "name": [{"family": ["not", "a", "string"]}]}, headers=FHIR_JSON)
    issues = r.json()["issue"]
    assert r.status_code == 400
    paths = {e for i in issues for e in i.get("expression", [])}
    assert {"Patient.gender", "Patient.birthDate", "Patient.name[0].family"} <= paths


def test_update_id_rules(client: TestClient) -> None:
    body = {"resourceType": "Patient", "id": "a"}
    assert "does not match" in outcome(
        client.put("/fhir/Patient/b", json=body, headers=FHIR_JSON), 400)
    assert "has no id" in outcome(
        client.put("/fhir/Patient/b", json={"resourceType": "Patient"}, headers=FHIR_JSON), 400)
    assert "Observation" in outcome(client.put(
        "/fhir/Observation/a", json=body, headers=FHIR_JSON), 400)
    assert client.get("/fhir/Patient/a").status_code == 404


def test_unknown_type_and_paths(client: TestClient) -> None:
    assert "not an R4 resource type" in outcome(client.get("/fhir/Nonsense/1"), 404)
    outcome(client.get("/fhir/Nonsense"), 404)
    outcome(client.get("/fhir/Patient/1/_history/1/extra"), 404)
    outcome(client.get("/elsewhere"), 404)
    outcome(client.patch("/fhir/Patient/1", content=b"{}", headers=FHIR_JSON), 405)
    outcome(client.delete("/fhir/metadata"), 405)


def test_content_negotiation(client: TestClient) -> None:
    xml = b'<Patient xmlns="http://hl7.org/fhir"/>'
    assert "not supported" in outcome(client.post(
        "/fhir/Patient", content=xml, headers={"Content-Type": "application/fhir+xml"}), 415)
    outcome(client.post("/fhir/Patient", content=b"x", headers={"Content-Type": "text/plain"}),
            415)
    outcome(client.get("/fhir/metadata?_format=xml"), 406)
    outcome(client.get("/fhir/metadata", headers={"Accept": "application/fhir+xml"}), 406)
    assert client.get("/fhir/metadata?_format=json").status_code == 200
    # _format overrides Accept (R4 3.1.0.1.9): it was 406 "JSON only" with an XML Accept
    for fmt in ("json", "application/fhir+json", "application/fhir+json; fhirVersion=4.0"):
        r = client.get("/fhir/metadata", params={"_format": fmt},
                       headers={"Accept": "application/fhir+xml"})
        assert r.status_code == 200 and r.json()["resourceType"] == "CapabilityStatement", fmt
    outcome(client.get("/fhir/metadata?_format=xml", headers={"Accept": "application/json"}),
            406)
    ok = client.post("/fhir/Patient", content=b'{"resourceType":"Patient"}',
                     headers={"Content-Type": "application/json"})
    assert ok.status_code == 201


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    big = b'{"resourceType":"Patient","text":{"status":"generated","div":"' + b"x" * (
        2 * 1024 * 1024) + b'"}}'
    assert "at most" in outcome(client.post("/fhir/Patient", content=big, headers=FHIR_JSON),
                                413)

    def chunks():  # no Content-Length: the limit still holds while streaming
        for _ in range(40):
            yield b"x" * 65536

    outcome(client.post("/fhir/Patient", content=chunks(), headers=FHIR_JSON), 413)
    assert patient_count(client) == 0


def test_deleted_is_410(client: TestClient) -> None:
    pid = client.post("/fhir/Patient", json={"resourceType": "Patient"},
                      headers=FHIR_JSON).json()["id"]
    client.delete(f"/fhir/Patient/{pid}")
    assert "deleted" in outcome(client.get(f"/fhir/Patient/{pid}"), 410)


def test_bad_search_parameters(client: TestClient) -> None:
    msg = outcome(client.get("/fhir/Patient?colour=blue"), 400)
    assert "colour" in msg and "birthdate" in msg  # names the valid ones
    lenient = client.get("/fhir/Patient?colour=blue", headers={"Prefer": "handling=lenient"})
    assert lenient.status_code == 200
    assert any(e["search"]["mode"] == "outcome" for e in lenient.json()["entry"])
    outcome(client.get("/fhir/Patient?birthdate=notadate"), 400)
    outcome(client.get("/fhir/Patient?birthdate=2026-13-01"), 400)
    outcome(client.get("/fhir/Patient?gender:fuzzy=male"), 400)
    outcome(client.get("/fhir/Patient?_count=many"), 400)
    outcome(client.get("/fhir/Patient?general-practitioner=a/b/c"), 400)


BIG = 10**30


@pytest.mark.parametrize(("method", "path", "headers", "status", "expect"), [
    ("GET", f"/fhir/Patient/p1/_history/{BIG}", {}, 404, "not a version number"),
    ("GET", "/fhir/Patient/p1/_history/\u00b2", {}, 404, "not a version number"),
    ("PUT", "/fhir/Patient/p1", {"If-Match": f'W/"{BIG}"'}, 400, "If-Match"),
    ("DELETE", "/fhir/Patient/p1", {"If-Match": f'W/"{BIG}"'}, 400, "If-Match"),
    ("GET", f"/fhir/Patient?_count={BIG}", {}, 400, "_count"),
    ("GET", "/fhir/Patient?_count=\u00b2", {}, 400, "_count"),
    ("GET", "/fhir/Patient/_history?_count=\u00b2", {}, 400, "_count"),
    ("GET", "/fhir/Patient/p1/$everything?_count=\u00b2", {}, 400, "_count"),
])
def test_numbers_no_store_can_hold_are_refused_not_500(client: TestClient, method: str,
                                                       path: str, headers: dict[str, str],
                                                       status: int, expect: str) -> None:
    """Versions and counts come from the caller: digits in other scripts (`isdigit` takes
    superscripts `int` cannot read) and numbers past 64 bits used to reach the store."""
    client.put("/fhir/Patient/p1", json={"resourceType": "Patient", "id": "p1"},
               headers=FHIR_JSON)
    body = '{"resourceType": "Patient", "id": "p1"}' if method == "PUT" else None
    r = client.request(method, path, content=body, headers={**FHIR_JSON, **headers})
    assert expect in outcome(r, status)


@pytest.mark.parametrize("key", [[BIG, BIG], ["Patient", BIG], [BIG, "Patient", "p1"],
                                 ["x", -BIG, "y", 1], ["only-one"]])
@pytest.mark.parametrize("path", ["/fhir/Patient", "/fhir/Patient/_history", "/fhir/_history",
                                  "/fhir/Patient?_sort=birthdate"])
def test_forged_cursors_are_400(client: TestClient, key: list[object], path: str) -> None:
    from fhir_gateway.store.cursor import encode_cursor

    sep = "&" if "?" in path else "?"
    r = client.get(f"{path}{sep}_cursor={encode_cursor(*key)}")
    assert "cursor" in outcome(r, 400)


#: a resource inside the resource whose type is not R4's (a typo), where each may be
NESTED_UNKNOWN_TYPE = [
    ("Patient", {"resourceType": "Patient",
                 "contained": [{"resourceType": "Practioner", "id": "gp"}]},
     "Patient.contained[0].resourceType"),
    ("Bundle", {"resourceType": "Bundle", "type": "collection",
                "entry": [{"resource": {"resourceType": "Foo"}}]},
     "Bundle.entry[0].resource.resourceType"),
    ("Parameters", {"resourceType": "Parameters",
                    "parameter": [{"name": "x", "resource": {"resourceType": "Foo"}}]},
     "Parameters.parameter[0].resource.resourceType"),
    ("Patient", {"resourceType": "Patient", "contained": [{"resourceType": 5}]},
     "Patient.contained[0].resourceType"),
]


@pytest.mark.parametrize(("rtype", "body", "where"), NESTED_UNKNOWN_TYPE)
def test_a_nested_resource_of_no_r4_type_is_400_naming_it(
        client: TestClient, rtype: str, body: dict, where: str) -> None:
    # the model's own lookup of the nested type raised KeyError: a 500
    created = client.post(f"/fhir/{rtype}", json=body, headers=FHIR_JSON)
    assert "not an R4 resource type" in outcome(created, 400)
    assert created.json()["issue"][0]["expression"] == [where]
    updated = client.put(f"/fhir/{rtype}/n1", json={**body, "id": "n1"}, headers=FHIR_JSON)
    assert where in outcome(updated, 400)
    checked = client.post(f"/fhir/{rtype}/$validate", json=body, headers=FHIR_JSON)
    assert checked.status_code == 200, checked.text  # $validate answers with its outcome
    assert [i["expression"] for i in checked.json()["issue"]] == [[where]]
    assert client.get(f"/fhir/{rtype}?_summary=count").json()["total"] == 0


def test_a_nested_resource_of_a_type_without_a_model_is_400_not_500(
        client: TestClient) -> None:
    body = {"resourceType": "Patient",
            "contained": [{"resourceType": "EffectEvidenceSynthesis", "status": "draft"}]}
    msg = outcome(client.post("/fhir/Patient", json=body, headers=FHIR_JSON), 400)
    assert "Patient.contained[0].resourceType" in msg and "on its own" in msg


def test_a_bundle_entry_with_a_nested_unknown_type_fails_that_entry_only(
        client: TestClient) -> None:
    bad = {"resourceType": "Patient", "contained": [{"resourceType": "Foo"}]}
    good = {"resourceType": "Patient", "name": [{"family": "Batch"}]}
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": good, "request": {"method": "POST", "url": "Patient"}},
        {"resource": bad, "request": {"method": "POST", "url": "Patient"}}]}
    r = client.post("/fhir", json=batch, headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    statuses = [e["response"]["status"][:3] for e in r.json()["entry"]]
    assert statuses == ["201", "400"]
    assert client.get("/fhir/Patient?family=Batch").json()["total"] == 1
    transaction = {**batch, "type": "transaction"}
    msg = outcome(client.post("/fhir", json=transaction, headers=FHIR_JSON), 400)
    assert "Bundle.entry[1]" in msg and "nothing in the transaction was written" in msg
    assert client.get("/fhir/Patient?family=Batch").json()["total"] == 1
