"""The summary of every person in the partners' sample feeds (tests/fixtures/feeds) says what
expected.json says: CPR decision (newest per partner; conflict when partners' newest
differ, with a DetectedIssue that meets SCR-DetectedIssue), preferred place, contacts (the
hospice's ReSPECT form), death; on SQLite and on mongomock, through the HTTP API."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from summary_kit import (
    DEATH_LOCATION,
    EXPECTED,
    NHS,
    PLACES,
    SUMMARY,
    TODAY,
    Doc,
    by_nhs,
    cpr_of,
    hospice_contacts,
    load_feeds,
    pin_today,
)

from fhir_gateway.api.app import create_app
from fhir_gateway.config import Settings
from fhir_gateway.fhir.validation import check_resource
from fhir_gateway.validation import default_validator
from gatewaykit import make_engine

CONTACTS = hospice_contacts()


@pytest.fixture(scope="module", params=["sqlite", "mongomock"])
def http(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    engine = make_engine(request.param, tmp_path_factory.mktemp(request.param))
    load_feeds(engine)
    app = create_app(Settings(auth_enabled=False), engine=engine)
    with TestClient(app, base_url="http://gateway.test") as client:
        yield client
    engine.close()


@pytest.fixture(autouse=True)
def fixed_today(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review dates are judged against the feeds' own `today`."""
    pin_today(monkeypatch, TODAY)


def summary_of(http: TestClient, person: dict[str, Any]) -> Doc:
    resp = http.get(by_nhs(person["nhs"]))
    if resp.status_code == 404:  # a person no partner gave an NHS number
        local = next(iter(person["local_ids"].values()))
        found = http.get("/fhir/Patient", params={"identifier": local}).json()
        pid = found["entry"][0]["resource"]["id"]
        resp = http.get(f"/fhir/Patient/{pid}/$emergency-summary")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/fhir+json")
    return Doc(resp.json())


@pytest.mark.parametrize("key", sorted(k for k, p in EXPECTED["people"].items()
                                       if p["partners"]))
def test_each_person_summary_matches_expected(http: TestClient, key: str) -> None:
    person = EXPECTED["people"][key]
    doc = summary_of(http, person)
    check_resource(doc.bundle, expected_type="Bundle")
    assert doc.bundle["type"] == "document" and doc.bundle["timestamp"]
    comp = doc.composition
    assert comp["resourceType"] == "Composition" and comp["status"] == "final"
    assert comp["type"]["coding"][0]["code"] == "861421000000109"
    assert doc.by_ref[comp["subject"]["reference"]]["resourceType"] == "Patient"
    assert comp["date"]
    assert len({e["fullUrl"] for e in doc.entries}) == len(doc.entries)

    # CPR: the newest decision of each partner, newest first; conflict when they differ.
    cited = doc.cited("cpr")
    newest: dict[str, tuple[str, str]] = {}
    for c in person["cpr"]:
        newest[c["source"]] = max(newest.get(c["source"], ("", "")), (c["date"], c["decision"]))
    assert sorted((doc.partner_of(o), o["effectiveDateTime"][:10], cpr_of(o)) for o in cited) \
        == sorted((p, d, v) for p, (d, v) in newest.items())
    assert (cpr_of(cited[0]) if cited else None) == person["cpr_latest"]
    issues = doc.of_type("DetectedIssue")
    assert bool(issues) == person["cpr_conflict"]
    assert (doc.section("conflict") is not None) == person["cpr_conflict"]

    # Preferred place: the newest across partners and kinds, as expected.json's `ppd`.
    places = [o for o in doc.cited("places")
              if o.get("valueCodeableConcept", {}).get("coding", [{}])[0].get("system")
              == DEATH_LOCATION]
    newest_place = max(((o["effectiveDateTime"][:10], doc.partner_of(o),
                         PLACES[o["valueCodeableConcept"]["coding"][0]["code"]])
                        for o in places), default=None)
    ppd = person["ppd"]
    assert newest_place == ((ppd["date"], ppd["source"], ppd["value"]) if ppd else None)

    # Contacts: those on the hospice's ReSPECT form, with phone and LPA.
    contacts = sorted((r["name"][0]["text"], r["telecom"][0]["value"],
                       any(c["code"] == "HPOWATT" for rel in r["relationship"]
                           for c in rel.get("coding", [])))
                      for r in doc.cited("contacts"))
    assert contacts == sorted((c["name"], c["phone"], bool(c.get("lpa")))
                              for c in CONTACTS.get(person["nhs"], []))
    lpa_holders = {r["name"][0]["text"] for r in doc.cited("legal")
                   if r["resourceType"] == "RelatedPerson"}
    assert lpa_holders == {c["name"] for c in CONTACTS.get(person["nhs"], []) if c.get("lpa")}

    # Death: said first, with the date and every partner's place of death.
    if person["deceased"]:
        assert doc.titles()[0] == "Deceased"
        patient = doc.cited("deceased")[0]
        assert patient["deceasedDateTime"][:10] == person["deceased"]
        assert person["deceased"] in str(patient["deceasedDateTime"])
        death_places = {PLACES[o["valueCodeableConcept"]["coding"][0]["code"]]
                        for o in doc.cited("deceased") if o["resourceType"] == "Observation"}
        assert death_places == ({person["death_place"]} if person["death_place"] else set())
    else:
        assert doc.section("deceased") is None
        assert "deceasedDateTime" not in doc.of_type("Patient")[0]

    # Every cited fact names its partner through a Provenance in the Bundle.
    for ref in {e["reference"] for s in comp["section"] for e in s.get("entry", [])}:
        resource = doc.by_ref[ref]
        if resource["resourceType"] not in ("DetectedIssue", "Patient"):
            assert doc.partner_of(resource) is not None, ref


@pytest.mark.parametrize("key", sorted(k for k, p in EXPECTED["people"].items()
                                       if p["cpr_conflict"]))
def test_conflicts_carry_a_valid_detected_issue_at_the_top(http: TestClient, key: str) -> None:
    person = EXPECTED["people"][key]
    doc = summary_of(http, person)
    (issue,) = doc.of_type("DetectedIssue")
    errors = [i for i in default_validator().validate(issue) if i.severity in ("error", "fatal")]
    assert errors == []
    assert issue["code"]["coding"][0]["code"] == "partner-conflict"
    assert issue["severity"] == "high"
    assert issue["patient"]["reference"] == doc.composition["subject"]["reference"]
    implicated = [doc.by_ref[i["reference"]] for i in issue["implicated"]]
    assert {cpr_of(o) for o in implicated} == {"attempt", "not-attempt"}
    assert {doc.partner_of(o) for o in implicated} == {c["source"] for c in person["cpr"]}
    for c in person["cpr"]:  # both dates are in the words, whatever order
        day = str(int(c["date"][8:]))
        assert day in issue["detail"]
    # At the top: the first section (no one here is deceased), citing the issue first.
    assert doc.titles()[0] == "Partners disagree on CPR"
    first = doc.composition["section"][0]["entry"][0]["reference"]
    assert doc.by_ref[first] is issue
    assert "PARTNERS DISAGREE ON CPR" in doc.composition["text"]["div"]
    # Never quietly one: both decisions in the CPR section too.
    assert {cpr_of(o) for o in doc.cited("cpr")} == {"attempt", "not-attempt"}


def test_each_conflict_and_no_other_is_a_stored_detected_issue(http: TestClient) -> None:
    """INTERFACE.md holds partners' disagreement as a DetectedIssue: a clinician's system
    finds it by searching, implicating the same decisions the summary shows."""
    for person in EXPECTED["people"].values():
        if not person["partners"]:
            continue
        doc = summary_of(http, person)
        pid = doc.composition["subject"]["reference"].rsplit("/", 1)[1]
        found = http.get("/fhir/DetectedIssue", params={"patient": f"Patient/{pid}"}).json()
        stored = [e["resource"] for e in found.get("entry", [])]
        assert len(stored) == int(person["cpr_conflict"]), person["nhs"]
        if stored:
            shown = {ref.rsplit("/", 2)[-2] + "/" + ref.rsplit("/", 1)[-1] for ref in (
                i["reference"] for i in doc.of_type("DetectedIssue")[0]["implicated"])}
            assert {i["reference"] for i in stored[0]["implicated"]} == shown


def test_page_for_each_conflict_and_death_says_it_first(http: TestClient) -> None:
    for person in EXPECTED["people"].values():
        if not (person["cpr_conflict"] or person["deceased"]):
            continue
        resp = http.get(by_nhs(person["nhs"]), headers={"Accept": "text/html"})
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/html; charset=utf-8"
        page = resp.text
        body = page[page.index("<body>"):]
        first = "DECEASED" if person["deceased"] else "PARTNERS DISAGREE ON CPR"
        assert body.index(first) < body.index("Preferred place")
        assert "<script" not in page.lower()


def test_nhs_number_lookup_takes_spaces_and_refuses_a_bad_check_digit(http: TestClient) -> None:
    nhs = EXPECTED["people"]["P000000"]["nhs"]
    spaced = f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}"
    assert http.get(SUMMARY, params={"identifier": f"{NHS}|{spaced}"}).status_code == 200
    bad = nhs[:9] + str((int(nhs[9]) + 1) % 10)
    resp = http.get(by_nhs(bad))
    assert resp.status_code == 400
    assert "check digit" in resp.json()["issue"][0]["diagnostics"]
