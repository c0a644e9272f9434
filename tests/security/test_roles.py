"""Each role does what it is for and nothing else; scopes narrow further."""

from __future__ import annotations

from security_kit import NHS, Gateway, patient

FHIR_JSON = {"Content-Type": "application/fhir+json"}
OBS = {"resourceType": "Observation", "status": "final",
       "code": {"coding": [{"system": "http://snomed.info/sct", "code": "304251008"}]},
       "subject": {"reference": "Patient/p1"}}


def _seed(gw: Gateway) -> None:
    gw.put(patient("p1", "9434765919", "Jones"))
    gw.put({**OBS, "id": "o1"})


def test_clinician_reads_and_searches_but_cannot_write_or_read_the_audit_trail(
        gw: Gateway) -> None:
    _seed(gw)
    h = gw.login("ward", "clinician", org="RXX01")
    assert gw.http.get("/fhir/Patient/p1", headers=h).status_code == 200
    assert len(gw.http.get("/fhir/Observation?subject=Patient/p1", headers=h).json()["entry"]) == 1
    assert gw.http.get("/fhir/Patient/p1/$everything", headers=h).status_code == 200
    assert gw.http.post("/fhir/Observation", json=OBS, headers={**h, **FHIR_JSON}
                        ).status_code == 403
    assert gw.http.delete("/fhir/Patient/p1", headers=h).status_code == 404
    assert gw.http.get("/fhir/AuditEvent", headers=h).status_code == 403
    some_event = gw.audit_events()[0]["id"]
    missing = gw.http.get("/fhir/AuditEvent/no-such-id", headers=h)
    hidden = gw.http.get(f"/fhir/AuditEvent/{some_event}", headers=h)
    assert hidden.status_code == missing.status_code == 404  # forbidden looks like absent
    assert hidden.json()["issue"][0]["code"] == missing.json()["issue"][0]["code"]


def test_ambulance_gets_patient_by_nhs_number_only(gw: Gateway) -> None:
    _seed(gw)
    h = gw.login("crew", "ambulance", org="RYC")
    found = gw.http.get(f"/fhir/Patient?identifier={NHS}|9434765919", headers=h)
    assert found.status_code == 200 and found.json()["entry"][0]["resource"]["id"] == "p1"
    assert gw.http.get("/fhir/Patient?name=Jones", headers=h).status_code == 403
    assert gw.http.get(f"/fhir/Patient?identifier={NHS}|9434765919&_revinclude=*",
                       headers=h).status_code == 403
    assert gw.http.get("/fhir/Patient/p1", headers=h).status_code == 404
    assert gw.http.get("/fhir/Observation", headers=h).status_code == 403
    assert gw.http.get("/fhir/Patient/p1/$everything", headers=h).status_code == 404
    purpose = gw.http.get(f"/fhir/Patient?identifier={NHS}|9434765919",
                          headers={**h, "X-Purpose-Of-Use": "TREAT"})
    assert purpose.status_code == 403


def test_a_feed_write_with_malformed_meta_is_400_not_500(gw: Gateway) -> None:
    hospice = gw.login("hospice-feed", "feed", partner="hospice", org="RH1",
                       scope="system/*.cruds")
    # each would otherwise be dropped or replaced by the stamp before validation saw it
    for meta in ({"tag": 5}, "x", {"tag": {}}, {"tag": ""}, {"tag": [1, {"code": "a"}]}):
        resp = gw.http.post("/fhir/Observation", json={**OBS, "meta": meta},
                            headers={**hospice, **FHIR_JSON})
        assert resp.status_code == 400, resp.text
        assert resp.json()["issue"][0]["expression"] == ["Observation.meta"]


def test_feed_writes_only_its_own_partners_data(gw: Gateway) -> None:
    gp = gw.login("gp-feed", "feed", partner="gp", org="B86001", scope="system/*.cruds")
    hospice = gw.login("hospice-feed", "feed", partner="hospice", org="RH1",
                       scope="system/*.cruds")
    created = gw.http.post("/fhir/Observation", json=OBS, headers={**hospice, **FHIR_JSON})
    assert created.status_code == 201
    body = created.json()
    assert {"system": "https://fhir.example.org/shared-care-record/CodeSystem/partner",
            "code": "hospice"} in body["meta"]["tag"]
    oid = body["id"]
    changed = {**body, "status": "amended"}
    assert gw.http.put(f"/fhir/Observation/{oid}", json=changed,
                       headers={**gp, **FHIR_JSON}).status_code == 404
    assert gw.http.delete(f"/fhir/Observation/{oid}", headers=gp).status_code == 404
    assert gw.http.get(f"/fhir/Observation/{oid}", headers=gp).status_code == 404
    # another partner's match is no match (as for a condition matching nothing): the
    # conditional update creates the gp's own and leaves the hospice's untouched
    other = gw.http.put(f"/fhir/Observation?_id={oid}", json={**OBS, "status": "amended"},
                        headers={**gp, **FHIR_JSON})
    assert other.status_code == 201 and other.json()["id"] != oid
    assert '"final"' in (gw.repository.read("Observation", oid).body or "")
    forged_tag = {**OBS, "meta": {"tag": [{"system": "https://fhir.example.org/shared-care-"
                                                     "record/CodeSystem/partner",
                                           "code": "hospice"}]}}
    mine = gw.http.post("/fhir/Observation", json=forged_tag, headers={**gp, **FHIR_JSON})
    assert [t["code"] for t in mine.json()["meta"]["tag"]] == ["gp", "B86001"]
    assert gw.http.put(f"/fhir/Observation/{oid}", json=changed,
                       headers={**hospice, **FHIR_JSON}).status_code == 200
    batch = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": f"Observation/{oid}"}}]}
    assert gw.http.post("/fhir", json=batch, headers={**gp, **FHIR_JSON}).status_code == 404
    assert gw.http.get(f"/fhir/Observation/{oid}", headers=hospice).status_code == 200


def test_auditor_sees_audit_and_provenance_only(gw: Gateway) -> None:
    _seed(gw)
    h = gw.login("audit-team", "auditor", org="X26")
    assert gw.http.get("/fhir/AuditEvent?patient=Patient/p1", headers=h).status_code == 200
    assert gw.http.get("/fhir/Provenance", headers=h).status_code == 200
    assert gw.http.get("/fhir/Patient/p1", headers=h).status_code == 404
    assert gw.http.get("/fhir/Patient", headers=h).status_code == 403
    assert gw.http.get("/fhir/AuditEvent?patient.name=Jones", headers=h).status_code == 403
    included = gw.http.get("/fhir/AuditEvent?_include=AuditEvent:patient", headers=h).json()
    assert {e["resource"]["resourceType"] for e in included.get("entry", [])} <= {"AuditEvent"}


def test_admin_has_no_fhir_access(gw: Gateway) -> None:
    admin = gw.register("ops", "admin")
    resp = gw.token_response(admin.assertion())
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_scope"


def test_scopes_narrow_what_a_role_may_do(gw: Gateway) -> None:
    _seed(gw)
    h = gw.login("ward", "clinician", scope="system/Patient.read")  # SMART v1, mapped to .rs
    assert gw.http.get("/fhir/Patient/p1", headers=h).status_code == 200
    assert gw.http.get("/fhir/Observation", headers=h).status_code == 403
    assert gw.http.get("/fhir/Observation/o1", headers=h).status_code == 404
    everything = gw.http.get("/fhir/Patient/p1/$everything", headers=h).json()
    assert {e["resource"]["resourceType"] for e in everything["entry"]} == {"Patient"}


def test_no_one_can_change_or_delete_an_audit_event(gw: Gateway) -> None:
    _seed(gw)
    gw.http.get("/fhir/Patient/p1", headers=gw.login("ward", "clinician"))
    event = gw.audit_events()[0]
    feed = gw.login("gp-feed", "feed", partner="gp", scope="system/*.cruds")
    for resp in (
        gw.http.put(f"/fhir/AuditEvent/{event['id']}", json=event, headers={**feed, **FHIR_JSON}),
        gw.http.delete(f"/fhir/AuditEvent/{event['id']}", headers=feed),
        gw.http.post("/fhir/AuditEvent", json=event, headers={**feed, **FHIR_JSON}),
        gw.http.delete("/fhir/AuditEvent?_id=" + event["id"], headers=feed),
    ):
        assert resp.status_code == 405, resp.text
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "DELETE", "url": f"AuditEvent/{event['id']}"}}]}
    out = gw.http.post("/fhir", json=bundle, headers={**feed, **FHIR_JSON}).json()
    assert out["entry"][0]["response"]["status"] == "405"
    assert gw.audit_events(_id=event["id"])[0] == event
