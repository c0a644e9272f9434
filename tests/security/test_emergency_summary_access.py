"""The ambulance crews' `$emergency-summary` under security: open to the ambulance and
clinician roles, closed by consent unless the glass is broken, closed to other roles."""

from __future__ import annotations

import pytest

from security_kit import Gateway, deny_consent, patient, provenance

NHS = "https://fhir.nhs.uk/Id/nhs-number"
BY_NHS = "/fhir/Patient/$emergency-summary?identifier=" + NHS + "|{}"


@pytest.fixture
def record(gw: Gateway) -> Gateway:
    gw.put(patient("open", "9434765919", "Openname"))
    gw.put(patient("hid", "9990000018", "Secretname"))
    gw.put(provenance("Patient/hid", "RH1", "hid"))
    gw.put(deny_consent("hid", "RH1"))
    return gw


def test_ambulance_gets_the_summary_of_a_visible_patient(record: Gateway) -> None:
    crew = record.login("crew", "ambulance", org="RYC")
    by_nhs = record.http.get(BY_NHS.format("9434765919"), headers=crew)
    assert by_nhs.status_code == 200, by_nhs.text
    assert by_nhs.json()["type"] == "document"
    assert record.http.get("/fhir/Patient/open/$emergency-summary",
                           headers=crew).status_code == 200
    ward = record.login("ward", "clinician", org="B86001")
    assert record.http.get(BY_NHS.format("9434765919"), headers=ward).status_code == 200


def test_consent_hides_the_summary_unless_the_glass_is_broken(record: Gateway) -> None:
    crew = record.login("crew", "ambulance", org="RYC")
    hidden = record.http.get(BY_NHS.format("9990000018"), headers=crew)
    absent = record.http.get(BY_NHS.format("9990000026"), headers=crew)
    assert hidden.status_code == absent.status_code == 404
    assert record.http.get("/fhir/Patient/hid/$emergency-summary",
                           headers=crew).status_code == 404
    broken = record.http.get(BY_NHS.format("9990000018"), headers={
        **crew, "X-Break-Glass-Reason": "unconscious, no family present"})
    assert broken.status_code == 200, broken.text
    review = record.audit_events(
        policy="https://fhir.example.org/shared-care-record/policy/break-glass")
    assert len(review) == 1 and review[0]["subtype"][0]["code"] == "operation"
    assert {"reference": "Patient/hid"} in [e.get("what") for e in review[0]["entity"]]


def test_other_roles_cannot_use_the_summary(record: Gateway) -> None:
    auditor = record.login("audit-team", "auditor")
    assert record.http.get(BY_NHS.format("9434765919"), headers=auditor).status_code == 403
    assert record.http.get("/fhir/Patient/open/$emergency-summary",
                           headers=auditor).status_code == 404
    feed = record.login("gp-feed", "feed", partner="gp", scope="system/*.cruds")
    assert record.http.get(BY_NHS.format("9434765919"), headers=feed).status_code == 403


def test_a_deleted_hidden_patient_answers_as_one_never_recorded(record: Gateway) -> None:
    """410 would confirm that a consent-hidden record existed: by id, a deleted hidden
    Patient's summary answers exactly as an id no one used."""
    record.repository.delete("Patient", "hid")
    crew = record.login("crew", "ambulance", org="RYC")
    gone = record.http.get("/fhir/Patient/hid/$emergency-summary", headers=crew)
    never = record.http.get("/fhir/Patient/nobody/$emergency-summary", headers=crew)
    assert gone.status_code == never.status_code == 404
    assert gone.text.replace("hid", "X") == never.text.replace("nobody", "X")
