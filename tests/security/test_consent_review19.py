"""Session 19's consent review: a patient's objection reaches every record an HL7 A40
merged with the one it names, however many merges away."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from fhir_gateway.store.query import IndexQuery
from security_kit import FHIR, FHIR_JSON, NHS, ODS, Gateway, deny_consent, seed_hidden_record

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pipeline"))
from identity_kit import adt, nhs_numbers

HL7 = "x-application/hl7-v2+er7"
X, Y, Z = nhs_numbers(999000400, 3)


def _ingest(gw: Gateway, headers: dict[str, str], message: bytes) -> None:
    answer = gw.http.post("/ingest/acute", content=message,
                          headers={**headers, "Content-Type": HL7})
    assert answer.status_code == 200 and answer.json()["rejected"] == 0, answer.text


def test_an_objection_on_a_record_merged_away_twice_hides_the_surviving_record(
        gw: Gateway) -> None:
    """y merged into x, then x into z: one person, three records. The hospice records the
    person's objection on the id it knew, y. The second merge rewrote x's links, so from
    z the record y was out of reach: z and x were shown to an organisation holding
    nothing (found by review)."""
    acute = gw.login("acute-feed", "feed", partner="acute", org="RXA", scope="system/*.cruds")
    hospice = gw.login("hsp-feed", "feed", partner="hospice", org="RH1",
                       scope="system/*.cruds")
    outsider = gw.login("gp-ward", "clinician", org="B86001")
    for control, nhs, mrn in (("C1", X, "M1"), ("C2", Y, "M2"), ("C3", Z, "M3")):
        _ingest(gw, acute, adt(control, "A01", "202601010900", f"{nhs}^^^NHS^NH~{mrn}^^^RXA^MR",
                               visit=f"V{control}"))
    ids = {i["value"]: row.rid for row in gw.repository.find(IndexQuery(rtype="Patient")).rows
           for i in json.loads(row.body or "{}").get("identifier", []) if i["system"] == NHS}
    x, y, z = ids[X], ids[Y], ids[Z]
    _ingest(gw, acute, adt("C4", "A40", "202601030900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                           merged=f"{Y}^^^NHS^NH~M2^^^RXA^MR"))
    _ingest(gw, acute, adt("C5", "A40", "202601040900", f"{Z}^^^NHS^NH~M3^^^RXA^MR",
                           merged=f"{X}^^^NHS^NH~M1^^^RXA^MR"))
    for pid in (x, y, z):
        assert gw.http.get(f"/fhir/Patient/{pid}", headers=outsider).status_code == 200
    consent = deny_consent(y, "RH1")
    consent.pop("id")
    posted = gw.http.post("/fhir/Consent", json=consent, headers={**hospice, **FHIR_JSON})
    assert posted.status_code == 201, posted.text
    for pid in (x, y, z):
        assert gw.http.get(f"/fhir/Patient/{pid}", headers=outsider).status_code == 404, pid
    encounters = gw.http.get("/fhir/Encounter", headers=outsider).json()
    assert encounters.get("entry", []) == []


@pytest.mark.parametrize("ref", ["https://gateway.test/fhir/Patient/hid",
                                 "https://hospice.example/fhir/Patient/hid"])
def test_a_privacy_consent_naming_its_patient_elsewhere_is_refused(gw: Gateway,
                                                                   ref: str) -> None:
    """Stored, it hid nothing: the consent check finds a person's Consents by a reference
    to this server's Patient (found by review). Refused, saying so."""
    seed_hidden_record(gw)  # (its own deny stands: a second, unreadable one is refused)
    hospice = gw.login("hsp-feed", "feed", partner="hospice", org="RH1",
                       scope="system/*.cruds")
    consent = {**deny_consent("hid", "RH1"), "patient": {"reference": ref}}
    consent.pop("id")
    answer = gw.http.post("/fhir/Consent", json=consent, headers={**hospice, **FHIR_JSON})
    assert answer.status_code == 422, answer.text
    assert "Consent.patient" in answer.text and "Patient/<id> on this server" in answer.text
    at_base = {**consent, "patient": {"reference": f"{FHIR}/Patient/hid"}}
    stored = gw.http.post("/fhir/Consent", json=at_base, headers={**hospice, **FHIR_JSON})
    assert stored.status_code == 201, stored.text


@pytest.mark.parametrize(("provision", "shown"), [
    ({"type": "permit"}, True),
    ({"type": "permit", "period": {"start": "2026-01-03"}}, True),
    ({"type": "permit", "period": {"start": "2026-01-03", "end": "2026-01-10"}}, False),
    ({"type": "permit", "period": {"start": "2999-01-01"}}, False),
    ({"type": "permit", "provision": [{"type": "deny"}]}, False),
    ({"type": "permit", "actor": [{"reference": {"identifier": {"system": ODS,
                                                                "value": "RY1"}}}]}, False),
])
def test_only_a_plain_later_permit_lifts_an_objection(gw: Gateway, provision: dict[str, Any],
                                                      shown: bool) -> None:
    """A permit that ended, has not begun, or narrows itself (a nested deny, some actors
    only) read as a plain yes and showed the hidden record (found by review)."""
    seed_hidden_record(gw)
    permit = {**deny_consent("hid", "RH1"), "id": "consent-permit", "dateTime": "2026-01-03",
              "provision": provision}
    gw.put(permit)
    outsider = gw.login("doc", "clinician", org="B86001")
    codes = [gw.http.get(f"/fhir/{path}", headers=outsider).status_code
             for path in ("Patient/hid", "Observation/o-hid")]
    assert codes == ([200, 200] if shown else [404, 404])


def test_an_objection_reaches_a_survivor_through_links_stored_before_session_19(
        gw: Gateway) -> None:
    """As the loader left two merges until session 19: y replaced-by x, x replaced-by z
    and no longer "replaces" y; z replaces x. From z, y is reached only by the Patients
    whose links name each one (`ConsentPolicy.person_of`)."""
    def link(kind: str, other: str) -> dict[str, Any]:
        return {"type": kind, "other": {"reference": f"Patient/{other}"}}

    gw.put({"resourceType": "Patient", "id": "y", "active": False,
            "link": [link("replaced-by", "x")]})
    gw.put({"resourceType": "Patient", "id": "x", "active": False,
            "link": [link("replaced-by", "z")]})
    gw.put({"resourceType": "Patient", "id": "z", "link": [link("replaces", "x")]})
    outsider = gw.login("doc", "clinician", org="B86001")
    assert gw.http.get("/fhir/Patient/z", headers=outsider).status_code == 200
    gw.put(deny_consent("y", "RH1"))
    for pid in ("x", "y", "z"):
        assert gw.http.get(f"/fhir/Patient/{pid}", headers=outsider).status_code == 404, pid


@pytest.mark.parametrize("linking", [21, 101])
def test_patients_written_to_link_to_a_survivor_never_open_it(gw: Gateway,
                                                             linking: int) -> None:
    """A feed's own Patients whose `link` (seealso) names the survivor of a merge: read in
    one compartment query cut at 21 rows, they pushed the survivor's own row, and with it
    the merge to the record holding the objection, out of view (found by review). The
    whole compartment is read now; one past MAX_LINKED_ROWS is judged an objection."""
    def link(kind: str, other: str) -> dict[str, Any]:
        return {"type": kind, "other": {"reference": f"Patient/{other}"}}

    gw.put({"resourceType": "Patient", "id": "m", "active": False,
            "link": [link("replaced-by", "v")]})
    gw.put({"resourceType": "Patient", "id": "v", "link": [link("replaces", "m")]})
    gw.put(deny_consent("m", "RH1"))
    outsider = gw.login("doc", "clinician", org="B86001")
    assert gw.http.get("/fhir/Patient/v", headers=outsider).status_code == 404
    feed = {**gw.login("sc-feed", "feed", partner="socialcare", org="SC001",
                       scope="system/*.cruds"), **FHIR_JSON}
    for i in range(linking):
        written = gw.http.put(f"/fhir/Patient/a{i:03d}", headers=feed, json={
            "resourceType": "Patient", "id": f"a{i:03d}", "link": [link("seealso", "v")]})
        assert written.status_code == 201, written.text
    assert gw.http.get("/fhir/Patient/v", headers=outsider).status_code == 404


def test_a_privacy_consent_in_a_transaction_may_name_its_patient_conditionally(
        gw: Gateway) -> None:
    """R4's conditional reference, rewritten to its one match before the entry is written:
    the check of the Consent's patient was made before the rewrite and refused it, so the
    objection was not recorded (found by review)."""
    hospice = {**gw.login("hsp-feed", "feed", partner="hospice", org="RH1",
                          scope="system/*.cruds"), **FHIR_JSON}
    outsider = gw.login("doc", "clinician", org="B86001")
    made = gw.http.post("/fhir/Patient", headers=hospice, json={
        "resourceType": "Patient", "identifier": [{"system": "urn:hospice:mrn",
                                                   "value": "H77"}]})
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    consent = {**deny_consent(pid, "RH1"),
               "patient": {"reference": "Patient?identifier=urn:hospice:mrn|H77"}}
    consent.pop("id")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": consent, "request": {"method": "POST", "url": "Consent"}}]}
    answer = gw.http.post("/fhir", json=bundle, headers=hospice)
    assert answer.status_code == 200, answer.text
    assert gw.http.get(f"/fhir/Patient/{pid}", headers=outsider).status_code == 404


@pytest.mark.parametrize("scope", [{"coding": 5}, {"coding": "x"}])
def test_a_consent_with_an_unreadable_scope_is_a_400_not_a_500(
        gw: Gateway, scope: dict[str, Any]) -> None:
    hospice = {**gw.login("hsp-feed", "feed", partner="hospice", org="RH1",
                          scope="system/*.cruds"), **FHIR_JSON}
    consent = {**deny_consent("anyone", "RH1"), "scope": scope}
    consent.pop("id")
    answer = gw.http.post("/fhir/Consent", json=consent, headers=hospice)
    assert answer.status_code == 400, answer.text
    assert answer.json()["resourceType"] == "OperationOutcome"
