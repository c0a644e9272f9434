"""A Provenance speaks for its writer's own resources only.

The summary credits each fact to the partner its Provenance names, and consent counts the
organisations a record's Provenance names as holders of the record. A partner feed's
Provenance targeting another partner's resource would take the credit for it (a crew told
the GP recorded the hospice's DNACPR, the two partners' disagreement gone) or open a
record hidden by consent to the writer's organisation. The feed write path refuses such
a Provenance; the summary and consent disbelieve one stored before it did."""

from __future__ import annotations

from typing import Any

import pytest

from security_kit import FHIR_JSON, ODS, Gateway, obs, patient, seed_hidden_record

SCT = "http://snomed.info/sct"
NHS_NUMBER = "9434765919"
GP, HOSPICE = ("gp", "X9G01"), ("hospice", "X9H01")
PARTNER_TAG = "https://fhir.example.org/shared-care-record/CodeSystem/partner"
SUMMARY = f"/fhir/Patient/$emergency-summary?identifier=https://fhir.nhs.uk/Id/nhs-number|" \
          f"{NHS_NUMBER}"


def feed(gw: Gateway, partner: tuple[str, str]) -> dict[str, str]:
    return {**gw.login(f"{partner[0]}-feed", "feed", partner=partner[0], org=partner[1],
                       scope="system/*.cruds"), **FHIR_JSON}


def cpr(oid: str, code: str, when: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": SCT, "code": "304251008"}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": when,
            "valueCodeableConcept": {"coding": [{"system": SCT, "code": code}]}}


def provenance(target: str, ods: str, recorded: str) -> dict[str, Any]:
    return {"resourceType": "Provenance", "target": [{"reference": target}],
            "recorded": recorded,
            "agent": [{"who": {"identifier": {"system": ODS, "value": ods}}}]}


def write(gw: Gateway, headers: dict[str, str], resource: dict[str, Any]) -> dict[str, Any]:
    rtype = resource["resourceType"]
    resp = gw.http.put(f"/fhir/{rtype}/{resource['id']}", json=resource, headers=headers) \
        if "id" in resource else gw.http.post(f"/fhir/{rtype}", json=resource, headers=headers)
    assert resp.status_code in (200, 201), resp.text
    return resp.json()


def decision(gw: Gateway, headers: dict[str, str], oid: str, code: str, when: str,
             ods: str) -> str:
    """A partner's CPR decision and its Provenance, as its feed writes them; its ref."""
    stored = write(gw, headers, cpr(oid, code, when))
    ref = f"Observation/{oid}/_history/{stored['meta']['versionId']}"
    write(gw, headers, provenance(ref, ods, f"{when}T10:00:00Z"))
    return ref


@pytest.fixture
def record(gw: Gateway) -> dict[str, Any]:
    """The hospice's DNACPR (20 May) and the GP's older 'for CPR' (10 May)."""
    gp, hospice = feed(gw, GP), feed(gw, HOSPICE)
    write(gw, hospice, {**patient("p1", NHS_NUMBER, "Example"), "birthDate": "1940-02-03"})
    hospice_ref = decision(gw, hospice, "hosp-cpr", "450476008", "2026-05-20", HOSPICE[1])
    decision(gw, gp, "gp-cpr", "450475007", "2026-05-10", GP[1])
    return {"gp": gp, "hospice": hospice, "hospice_ref": hospice_ref,
            "crew": {**gw.login("crew", "ambulance", org="RYC"), "X-Purpose-Of-Use": "ETREAT"}}


def summary(gw: Gateway, crew: dict[str, str]) -> dict[str, Any]:
    resp = gw.http.get(SUMMARY, headers=crew)
    assert resp.status_code == 200, resp.text
    entries = [e["resource"] for e in resp.json()["entry"]]
    cited = {p["target"][0]["reference"]: p["agent"][0]["who"]["identifier"]["value"]
             for p in entries if p["resourceType"] == "Provenance"}
    return {"issues": [e for e in entries if e["resourceType"] == "DetectedIssue"],
            "sources": cited}


def both_partners_shown(found: dict[str, Any], hospice_ref: str) -> None:
    assert found["sources"][hospice_ref] == HOSPICE[1]
    assert len(found["issues"]) == 1
    assert "X9H01" in found["issues"][0]["detail"] and "X9G01" in found["issues"][0]["detail"]


def test_a_feed_may_not_target_another_partners_resource(gw: Gateway,
                                                         record: dict[str, Any]) -> None:
    base = str(gw.http.base_url).rstrip("/") + "/fhir"
    for target in (record["hospice_ref"], "Observation/hosp-cpr",
                   f"{base}/Observation/hosp-cpr", "Patient/p1"):
        resp = gw.http.post("/fhir/Provenance", headers=record["gp"],
                            json=provenance(target, GP[1], "2026-05-21T09:00:00Z"))
        assert resp.status_code == 422, (target, resp.text)
        issue = resp.json()["issue"][0]
        assert issue["expression"] == ["Provenance.target[0]"]
        assert "not one of partner gp's resources" in issue["diagnostics"]
    # its own resources, and an id no one has written yet (a transaction may list the
    # Provenance before what it targets), it may
    for target in ("Observation/gp-cpr", "Observation/gp-not-yet"):
        resp = gw.http.post("/fhir/Provenance", headers=record["gp"],
                            json=provenance(target, GP[1], "2026-05-21T09:00:00Z"))
        assert resp.status_code == 201, (target, resp.text)
    both_partners_shown(summary(gw, record["crew"]), record["hospice_ref"])


def test_a_stored_claim_on_another_partners_decision_is_not_believed(
        gw: Gateway, record: dict[str, Any]) -> None:
    # As a feed stored it before its write path refused it: the GP's partner and ODS tags.
    gw.put({**provenance(record["hospice_ref"], GP[1], "2026-05-21T09:00:00Z"),
            "id": "claim", "meta": {"tag": [{"system": PARTNER_TAG, "code": "gp"},
                                            {"system": ODS, "code": GP[1]}]}})
    both_partners_shown(summary(gw, record["crew"]), record["hospice_ref"])
    # the GP's newer 'for CPR' does not supersede the hospice's DNACPR either
    decision(gw, record["gp"], "gp-cpr-2", "450475007", "2026-05-25", GP[1])
    found = summary(gw, record["crew"])
    both_partners_shown(found, record["hospice_ref"])
    assert "claim" not in {p for p in found["sources"]}


def test_a_claim_on_a_hidden_record_does_not_open_it(gw: Gateway) -> None:
    seed_hidden_record(gw)  # hidden by a deny Consent held by RH1
    ward = gw.login("gp-ward", "clinician", org=GP[1])
    resp = gw.http.post("/fhir/Provenance", headers=feed(gw, GP),
                        json=provenance("Observation/o-hid", GP[1], "2026-06-01T00:00:00Z"))
    assert resp.status_code == 422
    # one stored before the write path refused it opens nothing either
    gw.put({**provenance("Observation/o-hid", GP[1], "2026-06-01T00:00:00Z"), "id": "claim",
            "meta": {"tag": [{"system": PARTNER_TAG, "code": "gp"},
                             {"system": ODS, "code": GP[1]}]}})
    for url in ("/fhir/Observation/o-hid", "/fhir/Patient/hid"):
        assert gw.http.get(url, headers=ward).status_code == 404, url
    # while the holder's own organisation still sees it
    holder = gw.login("hospice-ward", "clinician", org="RH1")
    assert gw.http.get("/fhir/Observation/o-hid", headers=holder).status_code == 200


def test_the_partners_own_provenance_still_counts(gw: Gateway) -> None:
    # A feed's own resource with its own Provenance: credited, and a holder under consent.
    seed_hidden_record(gw)
    gp = feed(gw, GP)
    gw.put(obs("o-gp", "hid"))  # (ingest's) a GP clinician cannot see the record yet
    ward = gw.login("gp-ward", "clinician", org=GP[1])
    assert gw.http.get("/fhir/Observation/o-hid", headers=ward).status_code == 404
    stored = write(gw, gp, obs("gp-own", "hid"))
    ref = f"Observation/gp-own/_history/{stored['meta']['versionId']}"
    assert gw.http.post("/fhir/Provenance", headers=gp, json=provenance(
        ref, GP[1], "2026-06-01T00:00:00Z")).status_code == 201
    assert gw.http.get("/fhir/Observation/o-hid", headers=ward).status_code == 200


def test_holders_worked_out_for_one_organisation_agree_with_the_whole_set(
        gw: Gateway) -> None:
    # `decide(pid, org)` (what each request asks) skips bodies that cannot name `org` and
    # stops at the first proof; it must agree with the full set for every organisation.
    seed_hidden_record(gw)  # deny Consent by RH1; ingest's Provenance names RH1
    write(gw, feed(gw, HOSPICE), obs("hosp-own", "hid"))  # a feed's tag: X9H01 holds
    gw.put({**obs("o-rh2", "hid"), "id": "o-rh2"})
    gw.put({**provenance("Observation/o-rh2", "RH2", "2026-01-05T00:00:00Z"),
            "id": "prov-rh2"})  # ingest's (no partner tag): RH2 holds
    gw.put({**provenance("Observation/o-hid", GP[1], "2026-06-01T00:00:00Z"), "id": "claim",
            "meta": {"tag": [{"system": PARTNER_TAG, "code": "gp"},
                             {"system": ODS, "code": GP[1]}]}})  # speaks for nothing
    policy = gw.http.app.state.security.access.consent
    with gw.engine.session(write=False):
        everyone = policy.decide("hid")
        assert everyone.holders == {"RH1", "X9H01", "RH2"}
        for org in ("RH1", "X9H01", "RH2", GP[1], "RXX"):
            assert policy.decide("hid", org).hides_from(org) is everyone.hides_from(org), org


def test_a_feed_provenance_naming_too_many_targets_is_refused(
        gw: Gateway, record: dict[str, Any]) -> None:
    from fhir_gateway.security.access import MAX_FEED_PROVENANCE_TARGETS

    many = provenance("Observation/gp-cpr", GP[1], "2026-05-21T09:00:00Z")
    many["target"] = [{"reference": f"Observation/gp-{i}"}
                      for i in range(MAX_FEED_PROVENANCE_TARGETS + 1)]
    resp = gw.http.post("/fhir/Provenance", headers=record["gp"], json=many)
    assert resp.status_code == 422, resp.text
    issue = resp.json()["issue"][0]
    assert issue["expression"] == ["Provenance.target"]
    assert f"names {MAX_FEED_PROVENANCE_TARGETS + 1:,}" in issue["diagnostics"]
    many["target"] = many["target"][:MAX_FEED_PROVENANCE_TARGETS]
    assert gw.http.post("/fhir/Provenance", headers=record["gp"], json=many).status_code == 201


def test_a_feed_bundle_is_bounded_in_all_its_provenance_targets(
        gw: Gateway, record: dict[str, Any]) -> None:
    from fhir_gateway.security.access import MAX_FEED_PROVENANCE_TARGETS

    half = MAX_FEED_PROVENANCE_TARGETS // 2 + 1
    entries = [{"resource": {**provenance("Observation/gp-cpr", GP[1],
                                          "2026-05-21T09:00:00Z"),
                             "target": [{"reference": f"Observation/gp-{k}-{i}"}
                                        for i in range(half)]},
                "request": {"method": "POST", "url": "Provenance"}} for k in range(2)]
    for kind in ("transaction", "batch"):
        resp = gw.http.post("/fhir", headers=record["gp"],
                            json={"resourceType": "Bundle", "type": kind, "entry": entries})
        assert resp.status_code == 422, (kind, resp.text)
        issue = resp.json()["issue"][0]
        assert issue["expression"] == ["Bundle.entry"]
        assert f"names {2 * half:,}" in issue["diagnostics"]
    entries[1]["resource"]["target"] = entries[1]["resource"]["target"][:1]
    resp = gw.http.post("/fhir", headers=record["gp"],
                        json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert resp.status_code == 200, resp.text
