"""The review queue over HTTP names only the Patients its caller may see: a feed learns no
internal id of a consent-hidden (or any other invisible) Patient from a held record's
candidates, its reason, or a refused resolve. The operator's CLI keeps the full detail."""

from __future__ import annotations

from typing import Any

import pytest

from security_kit import HIDDEN_NHS, NHS, VISIBLE_NHS, Gateway, seed_hidden_record

HEADER = ("Person ID,Title,First Name,Last Name,DOB,Postcode,NHS No (if known),"
          "Service,Service Start,Service End,Provider,Key Worker\n")


def _row(local_id: str, nhs: str) -> str:
    return (f"{local_id},Mrs,Ada,Anyname,1931-02-03,DY1 1AA,{nhs},Home care,2026-01-02,,"
            "Oakleigh Care Home,Brenda Johnson\n")


OWN_NHS = "9990000026"


def _hold_against_hidden(gw: Gateway, *, first: str = VISIBLE_NHS) -> dict[str, str]:
    """Patient `hid` is consent-hidden (and not the council's); the council's SC1 goes to
    the Patient holding NHS number `first`, then arrives with `hid`'s number: held."""
    seed_hidden_record(gw)
    feed = gw.login("sc-feed", "feed", partner="socialcare", org="SC001",
                    scope="system/*.cruds")
    if first == OWN_NHS:  # a Patient the council's feed wrote itself: it may see it
        own = {"resourceType": "Patient", "id": "own", "name": [{"family": "Anyname"}],
               "identifier": [{"system": NHS, "value": OWN_NHS}]}
        r = gw.http.put("/fhir/Patient/own", json=own,
                        headers={**feed, "Content-Type": "application/fhir+json"})
        assert r.status_code == 201, r.text
    for nhs in (first, HIDDEN_NHS):
        r = gw.http.post("/ingest/socialcare", content=(HEADER + _row("SC1", nhs)).encode(),
                         headers={**feed, "Content-Type": "text/csv"})
        assert r.status_code == 200, r.text
    return feed


def _held(gw: Gateway, headers: dict[str, str]) -> list[dict[str, Any]]:
    resp = gw.http.get("/review/held", headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_a_held_record_names_no_patient_its_feed_may_not_see(gw: Gateway) -> None:
    feed = _hold_against_hidden(gw)
    (item,) = _held(gw, feed)
    # neither the hidden Patient nor `vis` (which the council never wrote) is the feed's
    # to see: no ids, and the reason still says why the record is held
    assert item["candidates"] == []
    assert item["reason"] == (f"NHS number {HIDDEN_NHS} is on another record but local id "
                              "SC1 is on another record")

    # the operator on the server still sees everything (`fhir-gateway review list`)
    loader = gw.http.app.state.ingest_service.loader
    ((_, stored),) = loader.list_held()
    assert sorted(stored["candidates"]) == ["hid", "vis"]
    assert "Patient/hid" in stored["reason"]


def test_a_patient_the_feed_may_see_stays_named(gw: Gateway) -> None:
    feed = _hold_against_hidden(gw, first=OWN_NHS)
    (item,) = _held(gw, feed)
    assert item["candidates"] == ["own"]
    assert item["reason"] == (f"NHS number {HIDDEN_NHS} is on another record but local id "
                              "SC1 is on Patient/own")


def test_a_refused_resolve_does_not_name_the_hidden_patient(gw: Gateway) -> None:
    feed = _hold_against_hidden(gw)
    (item,) = _held(gw, feed)
    resp = gw.http.post(f"/review/held/{item['key']}", json={"create": True}, headers=feed)
    assert resp.status_code == 409
    diagnostics = resp.json()["issue"][0]["diagnostics"]
    assert "hid" not in diagnostics
    assert diagnostics.startswith(f"NHS number {HIDDEN_NHS} is on another record")
    assert len(_held(gw, feed)) == 1  # untouched


def test_with_auth_off_the_queue_shows_everything() -> None:
    import tempfile
    from pathlib import Path

    from fastapi.testclient import TestClient

    from fhir_gateway.api.app import create_app
    from fhir_gateway.config import Settings
    from gatewaykit import make_engine

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine("sqlite", Path(tmp))
        app = create_app(Settings(auth_enabled=False), engine=engine)
        with TestClient(app, base_url="http://gateway.test") as http:
            from security_kit import Gateway as Kit

            gw = Kit(http, engine)
            seed_hidden_record(gw)
            for nhs in (VISIBLE_NHS, HIDDEN_NHS):
                r = http.post("/ingest/socialcare",
                              content=(HEADER + _row("SC1", nhs)).encode(),
                              headers={"Content-Type": "text/csv"})
                assert r.status_code == 200, r.text
            (item,) = http.get("/review/held").json()
            assert sorted(item["candidates"]) == ["hid", "vis"]
            assert "Patient/hid" in item["reason"]
        engine.close()


@pytest.mark.parametrize("born", ["1950-05-05", "1950-05", "1950"])
def test_a_held_reason_gives_no_detail_of_a_patient_the_feed_may_not_see(
        gw: Gateway, born: str) -> None:
    """The reason named the hidden Patient's birth date ("... born 1950-05-05, but this
    record says born 1931-02-03"): what the feed's own record says stays."""
    from security_kit import patient

    seed_hidden_record(gw)
    gw.put({**patient("hid", HIDDEN_NHS, "Secretname"), "birthDate": born})
    feed = gw.login("sc-feed", "feed", partner="socialcare", org="SC001",
                    scope="system/*.cruds")
    r = gw.http.post("/ingest/socialcare", content=(HEADER + _row("SC7", HIDDEN_NHS)).encode(),
                     headers={**feed, "Content-Type": "text/csv"})
    assert r.status_code == 200 and r.json()["held"] == 1, r.text
    (item,) = _held(gw, feed)
    assert "1950" not in item["reason"]
    assert item["reason"] == (f"NHS number {HIDDEN_NHS} is on another record, born "
                              "[withheld], but this record says born 1931-02-03")
    loader = gw.http.app.state.ingest_service.loader
    ((_, stored),) = loader.list_held()
    assert f"born {born}" in stored["reason"]  # the operator's CLI keeps the detail
