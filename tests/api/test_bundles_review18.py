"""Review 18 of transactions and conditional interactions: a conditional update runs as
the transaction judged it before any entry ran; If-Match guards conditional deletes and
updates that match nothing; an entry naming another server is refused."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def x1(family: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "X1"}],
            "name": [{"family": family}]}


def test_a_conditional_update_does_not_overwrite_what_an_earlier_entry_created(
        client: TestClient) -> None:
    """Run after the POSTs, the condition matched the Patient one of them created: it was
    overwritten, and the Observation referring to this entry named a Patient never
    written (no read, search or summary of the person showed the DNACPR)."""
    answer = client.post("/fhir", headers=FHIR_JSON, json=transaction(
        {"fullUrl": "urn:uuid:aaa", "resource": x1("Posted"),
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:bbb", "resource": x1("Put"),
         "request": {"method": "PUT", "url": "Patient?identifier=urn:x|X1"}},
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"text": "DNACPR"}, "subject": {"reference": "urn:uuid:bbb"}},
         "request": {"method": "POST", "url": "Observation"}}))
    assert answer.status_code == 200, answer.text
    subject = answer.json()["entry"][2]["resource"]["subject"]["reference"]
    person = client.get(f"/fhir/{subject}")
    assert person.status_code == 200 and person.json()["name"][0]["family"] == "Put"
    found = client.get("/fhir/Patient?identifier=urn:x|X1").json()
    assert sorted((e["resource"]["name"][0]["family"], e["resource"]["meta"]["versionId"])
                  for e in found["entry"]) == [("Posted", "1"), ("Put", "1")]


def test_a_conditional_delete_honours_if_match(client: TestClient) -> None:
    made = client.post("/fhir/Patient", headers=FHIR_JSON, json=x1("One")).json()
    client.put(f"/fhir/Patient/{made['id']}", headers=FHIR_JSON,
               json={**made, "name": [{"family": "Two"}]})
    stale = client.delete("/fhir/Patient?identifier=urn:x|X1", headers={"If-Match": 'W/"1"'})
    assert stale.status_code == 412, stale.text
    in_tx = client.post("/fhir", headers=FHIR_JSON, json=transaction(
        {"request": {"method": "DELETE", "url": "Patient?identifier=urn:x|X1",
                     "ifMatch": 'W/"1"'}}))
    assert in_tx.status_code == 412, in_tx.text
    assert client.get(f"/fhir/Patient/{made['id']}").status_code == 200
    none = client.delete("/fhir/Patient?identifier=urn:x|NONE", headers={"If-Match": 'W/"1"'})
    assert none.status_code == 412
    current = client.delete("/fhir/Patient?identifier=urn:x|X1", headers={"If-Match": 'W/"2"'})
    assert current.status_code == 204
    assert client.get(f"/fhir/Patient/{made['id']}").status_code == 410


def test_a_conditional_update_matching_nothing_honours_if_match(client: TestClient) -> None:
    answer = client.put("/fhir/Patient?identifier=urn:x|X1", headers={
        **FHIR_JSON, "If-Match": 'W/"3"'}, json=x1("Nobody"))
    assert answer.status_code == 412, answer.text
    assert client.get("/fhir/Patient?identifier=urn:x|X1").json()["total"] == 0


def test_an_entry_naming_another_server_is_refused(client: TestClient) -> None:
    made = client.post("/fhir/Patient", headers=FHIR_JSON, json=x1("Here")).json()
    answer = client.post("/fhir", headers=FHIR_JSON, json=transaction(
        {"request": {"method": "DELETE",
                     "url": f"http://other-server.example/fhir/Patient/{made['id']}"}}))
    assert answer.status_code == 400, answer.text
    assert client.get(f"/fhir/Patient/{made['id']}").status_code == 200
    here = client.post("/fhir", headers=FHIR_JSON, json=transaction(
        {"request": {"method": "DELETE", "url": f"http://gateway.test/fhir/Patient/{made['id']}"}}))
    assert here.status_code == 200, here.text
