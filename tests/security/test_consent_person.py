"""A patient's objection to sharing belongs to the person, and only the record's holders
can lift it.

Two defects, each found by a reviewer's proving script and failing before its fix:
- an HL7 A40 merge moved the deny Consent to the surviving record, after which the
  merged-away Patient and the old versions of its resources (a DNACPR decision among them)
  were readable by the organisations the objection hid them from;
- a partner feed that holds nothing of the record lifted the objection for everyone by
  posting a permit in its own name, dated in the future so that no later deny outranked it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from fhir_gateway.store.query import IndexQuery
from security_kit import FHIR_JSON, NHS, Gateway, deny_consent, obs, seed_hidden_record

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
from test_identity_safety import adt, hospice, nhs_numbers

X, Y = nhs_numbers(999000400, 2)
HL7 = "x-application/hl7-v2+er7"


def ingest(gw: Gateway, partner: str, headers: dict[str, str], data: bytes,
           content_type: str) -> None:
    r = gw.http.post(f"/ingest/{partner}", content=data,
                     headers={**headers, "Content-Type": content_type})
    assert r.status_code == 200, r.text
    assert r.json()["rejected"] == 0, r.text


def patient_ids(gw: Gateway) -> dict[str, str]:
    out = {}
    for row in gw.repository.find(IndexQuery(rtype="Patient")).rows:
        body = json.loads(row.body or "{}")
        for ident in body.get("identifier", []):
            if ident.get("system") == NHS:
                out[ident["value"]] = body["id"]
    return out


def test_a_merge_keeps_the_merged_away_record_hidden(gw: Gateway) -> None:
    acute = gw.login("acute-feed", "feed", partner="acute", org="RXA", scope="system/*.cruds")
    hospice_feed = gw.login("hsp-feed", "feed", partner="hospice", org="RH1",
                            scope="system/*.cruds")
    gp = gw.login("gp-ward", "clinician", org="B86001")
    ingest(gw, "acute", acute, adt("C1", "A01", "202601010900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                   visit="V1"), HL7)
    ingest(gw, "acute", acute, adt("C2", "A01", "202601020900", f"{Y}^^^NHS^NH~M2^^^RXA^MR",
                                   name="SECRETNAME^JOHN", visit="V2"), HL7)
    ingest(gw, "hospice", hospice_feed, hospice("H1", Y, "not-attempt"),
           "application/x-ndjson")
    y = patient_ids(gw)[Y]
    gw.put(deny_consent(y, "RH1"))  # the person known as Y objects (recorded by RH1)

    def seen() -> list[Any]:
        history = gw.http.get("/fhir/Observation/_history?_count=100", headers=gp).json()
        return [gw.http.get(f"/fhir/Patient/{y}", headers=gp).status_code,
                gw.http.get(f"/fhir/Patient/{y}/_history/1", headers=gp).status_code,
                len(history.get("entry", []))]

    assert seen() == [404, 404, 0]
    ingest(gw, "acute", acute, adt("C3", "A40", "202601030900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                   merged=f"{Y}^^^NHS^NH~M2^^^RXA^MR"), HL7)
    assert seen() == [404, 404, 0]
    # the holder still sees both records of the person
    hospice_ward = gw.login("hsp-ward", "clinician", org="RH1")
    assert gw.http.get(f"/fhir/Patient/{y}", headers=hospice_ward).status_code == 200


def permit(pid: str, ods: str, when: str) -> dict[str, Any]:
    return {**deny_consent(pid, ods), "id": None, "dateTime": when,
            "policyRule": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "code": "OPTIN"}]},
            "provision": {"type": "permit"}}


def post_permit(gw: Gateway, feed: dict[str, str], ods: str, when: str) -> None:
    body = {k: v for k, v in permit("hid", ods, when).items() if v is not None}
    r = gw.http.post("/fhir/Consent", json=body, headers={**feed, **FHIR_JSON})
    assert r.status_code == 201, r.text


def test_a_permit_from_an_organisation_that_holds_nothing_lifts_no_objection(
        gw: Gateway) -> None:
    seed_hidden_record(gw)  # Patient hid: deny consent, held by the hospice (RH1)
    gp = gw.login("gp-ward", "clinician", org="B86001")
    council = gw.login("sc-feed", "feed", partner="socialcare", org="SC001",
                       scope="system/*.cruds")
    post_permit(gw, council, "SC001", "2026-06-01")
    assert gw.http.get("/fhir/Patient/hid", headers=gp).status_code == 404
    assert gw.http.get("/fhir/Observation/o-hid", headers=gp).status_code == 404


def test_a_permit_counts_only_from_the_organisation_that_recorded_the_objection(
        gw: Gateway) -> None:
    """A second review: one resource written about the person (or a Patient of its own
    linked to theirs) made any feed a holder, and then its permit opened the record."""
    seed_hidden_record(gw)
    gp = gw.login("gp-ward", "clinician", org="B86001")
    council = gw.login("sc-feed", "feed", partner="socialcare", org="SC001",
                       scope="system/*.cruds")
    r = gw.http.put("/fhir/Observation/sc-note", json=obs("sc-note", "hid"),
                    headers={**council, **FHIR_JSON})
    assert r.status_code == 201, r.text
    post_permit(gw, council, "SC001", "2026-06-01")
    assert gw.http.get("/fhir/Patient/hid", headers=gp).status_code == 404


def test_a_flood_of_consents_does_not_push_the_objection_out_of_view(gw: Gateway) -> None:
    """Ids sorting before the deny's, 100 of them: the deny fell outside the 100 read."""
    seed_hidden_record(gw)
    gp = gw.login("gp-ward", "clinician", org="B86001")
    council = {**gw.login("sc-feed", "feed", partner="socialcare", org="SC001",
                          scope="system/*.cruds"), **FHIR_JSON}
    for i in range(120):
        body = {k: v for k, v in permit("hid", "SC001", "2026-06-01").items()
                if v is not None}
        r = gw.http.put(f"/fhir/Consent/a{i:03d}", json={**body, "id": f"a{i:03d}",
                                                          "status": "inactive"},
                        headers=council)
        assert r.status_code == 201, r.text
    assert gw.http.get("/fhir/Patient/hid", headers=gp).status_code == 404


def test_more_consents_than_any_person_has_fail_closed(gw: Gateway,
                                                      monkeypatch: Any) -> None:
    from fhir_gateway.security import consent

    seed_hidden_record(gw)
    gw.put({**deny_consent("vis", "RH1"), "id": "c-vis", "provision": {"type": "permit"}})
    gp = gw.login("gp-ward", "clinician", org="B86001")
    assert gw.http.get("/fhir/Patient/vis", headers=gp).status_code == 200
    monkeypatch.setattr(consent, "MAX_CONSENTS", 0)
    assert gw.http.get("/fhir/Patient/vis", headers=gp).status_code == 404


def test_the_recorders_permit_lifts_it_but_not_from_the_future(gw: Gateway) -> None:
    seed_hidden_record(gw)
    gp = gw.login("gp-ward", "clinician", org="B86001")
    hospice_feed = gw.login("hsp-feed", "feed", partner="hospice", org="RH1",
                            scope="system/*.cruds")
    post_permit(gw, hospice_feed, "RH1", "2999-01-01")  # RH1 recorded it: it counts
    assert gw.http.get("/fhir/Patient/hid", headers=gp).status_code == 200
    # a deny recorded after it wins, though the permit claims a date far ahead
    gw.put({**deny_consent("hid", "RH1"), "id": "consent-hid-2", "dateTime": "2030-06-01"})
    assert gw.http.get("/fhir/Patient/hid", headers=gp).status_code == 404


def test_merged_records_make_one_person() -> None:
    """`person_of` follows merge links of both kinds, from the Patients it has reached
    and to them (a link held on one side only still joins the two: until session 19 a
    Patient named only by another's link was a person alone), and stops at
    MAX_PERSON_IDS."""
    from fhir_gateway.fhir.repository import Repository
    from fhir_gateway.security.consent import MAX_PERSON_IDS, ConsentPolicy
    from fhir_gateway.store import open_store

    repo = Repository(open_store("sqlite:///:memory:"))
    ids = [f"p{i}" for i in range(MAX_PERSON_IDS + 5)]
    for i, pid in enumerate(ids):  # a chain p0 <- p1 <- p2 ... (each merged into the last)
        links = [{"other": {"reference": f"Patient/{ids[i - 1]}"}, "type": "replaces"}] \
            if i else []
        repo.update({"resourceType": "Patient", "id": pid, "link": links},
                    rtype="Patient", rid=pid)
    policy = ConsentPolicy(repo)
    assert policy.person_of("p3")[:5] == ["p3", "p2", "p4", "p1", "p5"]  # level by level
    assert len(policy.person_of(ids[-1])) == MAX_PERSON_IDS
    assert policy.person_of("p0")[:3] == ["p0", "p1", "p2"]
