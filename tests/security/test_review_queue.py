"""The identity review queue over HTTP: partners' raw records (names, birth dates, NHS
numbers) that are not in the shared record yet. Each partner's own feed client lists and
resolves its partner's records only; another partner's record is as absent; clinicians
and other roles are refused; every request, allowed or refused, is audited."""

from __future__ import annotations

import json

from fhir_gateway.store.query import IndexQuery
from security_kit import Gateway

SOCIALCARE_HEADER = ("Person ID,Title,First Name,Last Name,DOB,Postcode,NHS No (if known),"
                     "Service,Service Start,Service End,Provider,Key Worker\n")
# No NHS number and nobody like them on the record: held. The second row's date of birth
# cannot be read: rejected.
SOCIALCARE = (SOCIALCARE_HEADER +
              "SC900001,Mrs,Ada,Secretname,1931-02-03,DY1 1AA,,Home care,2026-01-02,,"
              "Oakleigh Care Home,Brenda Johnson\n"
              "SC900002,Mr,Bad,Date,not-a-date,DY1 1AB,,Home care,2026-01-02,,"
              "Oakleigh Care Home,Brenda Johnson\n")
HOSPICE = json.dumps({"clientId": "HSP-900003", "name": {"first": "Olive", "last": "Unmatched"},
                      "dob": "1930-05-06", "gender": "female",
                      "address": {"line": "1 High Street", "town": "Dudley",
                                  "postcode": "DY2 2BB"},
                      "admissions": []}) + "\n"


def _load(gw: Gateway) -> tuple[dict[str, str], dict[str, str]]:
    social = gw.login("sc-feed", "feed", partner="socialcare", org="SC001",
                      scope="system/*.cruds")
    hospice = gw.login("hsp-feed", "feed", partner="hospice", org="RH1",
                       scope="system/*.cruds")
    for partner, body, ctype, headers in (("socialcare", SOCIALCARE, "text/csv", social),
                                          ("hospice", HOSPICE, "application/x-ndjson",
                                           hospice)):
        r = gw.http.post(f"/ingest/{partner}", content=body.encode(),
                         headers={**headers, "Content-Type": ctype})
        assert r.status_code == 200, r.text
    return social, hospice


def test_each_feed_sees_and_resolves_only_its_own_partners_records(gw: Gateway) -> None:
    social, hospice = _load(gw)
    social_held = gw.http.get("/review/held", headers=social).json()
    hospice_held = gw.http.get("/review/held", headers=hospice).json()
    assert [h["source"]["partner"] for h in social_held] == ["socialcare"]
    assert "Secretname" in social_held[0]["source"]["raw"]
    assert [h["source"]["partner"] for h in hospice_held] == ["hospice"]
    social_rejected = gw.http.get("/review/rejected", headers=social).json()
    assert [r["partner"] for r in social_rejected] == ["socialcare"]
    assert gw.http.get("/review/rejected", headers=hospice).json() == []

    # another partner's held record answers exactly as one that does not exist
    key = social_held[0]["key"]
    theirs = gw.http.post(f"/review/held/{key}", json={"create": True}, headers=hospice)
    absent = gw.http.post("/review/held/socialcare/nope", json={"create": True},
                          headers=hospice)
    assert theirs.status_code == absent.status_code == 404
    assert gw.http.get("/review/held", headers=social).json()[0]["key"] == key  # untouched

    mine = gw.http.post(f"/review/held/{key}", json={"create": True}, headers=social)
    assert mine.status_code == 200, mine.text
    assert gw.http.get("/review/held", headers=social).json() == []


def test_other_roles_are_refused_and_every_request_is_audited(gw: Gateway) -> None:
    social, _ = _load(gw)
    ward = gw.login("ward", "clinician", org="ZZZ99")
    crew = gw.login("crew", "ambulance", org="RYC")
    auditor = gw.login("audit", "auditor", scope="system/AuditEvent.rs")
    for headers in (ward, crew, auditor):
        for path in ("/review/held", "/review/rejected"):
            r = gw.http.get(path, headers=headers)
            assert r.status_code == 403, (path, r.text)
            assert "Secretname" not in r.text
        key = gw.http.get("/review/held", headers=social).json()[0]["key"]
        r = gw.http.post(f"/review/held/{key}", json={"create": True}, headers=headers)
        assert r.status_code == 403
    assert gw.http.get("/review/held").status_code == 401

    events = [e for e in gw.audit_events(subtype="operation")
              if "review queue" in e.get("outcomeDesc", "")]
    by_client = {}
    for e in events:
        who = e["agent"][0]["who"].get("identifier", {}).get("value", "anonymous")
        by_client.setdefault(who, []).append(e["outcome"])
    assert by_client["ward"] == by_client["crew"] == by_client["audit"] == ["4"] * 3
    assert by_client["sc-feed"] == ["0"] * 3
    assert by_client["anonymous"] == ["4"]


def test_a_resolve_body_must_name_a_patient_id_or_ask_for_a_new_one(gw: Gateway) -> None:
    social, _ = _load(gw)
    key = gw.http.get("/review/held", headers=social).json()[0]["key"]
    for body in ({"patient": 5}, {"patient": {"id": "x"}}, {"create": "yes"},
                 {"patient": "not an id!"}, [], {"patient": ""}):
        r = gw.http.post(f"/review/held/{key}", json=body, headers=social)
        assert r.status_code == 400, (body, r.text)
    assert len(gw.http.get("/review/held", headers=social).json()) == 1  # untouched


def test_a_feed_discards_its_own_held_record_and_it_is_kept(gw: Gateway) -> None:
    """A stale or mistaken held record is taken off the queue without being applied:
    nothing reaches the shared record, the record itself is kept with who and why, another
    partner's feed cannot do it, and the audit trail carries no free text."""
    social, hospice = _load(gw)
    key = gw.http.get("/review/held", headers=social).json()[0]["key"]
    theirs = gw.http.post(f"/review/held/{key}", json={"discard": "not ours"}, headers=hospice)
    assert theirs.status_code == 404  # another partner's: as absent
    for body in ({"discard": "  "}, {"discard": 5}, {"discard": "x", "create": True},
                 {"discard": "x", "patient": 5}, {"discard": "x", "create": "yes"}):
        r = gw.http.post(f"/review/held/{key}", json=body, headers=social)
        assert r.status_code == 400, (body, r.text)
    patients = len(gw.repository.find(IndexQuery(rtype="Patient")).rows)
    r = gw.http.post(f"/review/held/{key}",
                     json={"discard": "test record from the council's training system"},
                     headers=social)
    assert r.status_code == 200, r.text
    assert r.json() == {"discarded": key}
    assert gw.http.get("/review/held", headers=social).json() == []
    assert len(gw.repository.find(IndexQuery(rtype="Patient")).rows) == patients
    ((kept_key, kept),) = gw.http.app.state.ingest_service.loader.list_discarded()
    assert kept_key.rpartition("@")[0] == key and "Secretname" in kept["record"]["source"]["raw"]
    assert kept["discarded"]["by"] == "sc-feed"
    assert kept["discarded"]["reason"] == "test record from the council's training system"
    again = gw.http.post(f"/review/held/{key}", json={"discard": "twice"}, headers=social)
    assert again.status_code == 404
    events = [e for e in gw.audit_events(subtype="operation")
              if "(discarded)" in e.get("outcomeDesc", "")]
    assert len(events) == 1 and "training" not in json.dumps(events)
    # delivered again, it is held again: a discard is not a rule against the record
    r = gw.http.post("/ingest/socialcare", content=SOCIALCARE.encode(),
                     headers={**social, "Content-Type": "text/csv"})
    assert r.status_code == 200 and r.json()["held"] == 1


def test_a_feed_attaching_to_a_patient_contradicting_its_record_must_say_so(
        gw: Gateway) -> None:
    """Ada Secretname (born 1931-02-03) was held with no candidates. Patient/mj, the feed's
    own, is Mary Jones: the 409 says what differs, with the record's values only."""
    social, _ = _load(gw)
    mine = gw.http.put("/fhir/Patient/mj", headers=social, json={
        "resourceType": "Patient", "id": "mj", "birthDate": "1950-01-01",
        "name": [{"family": "Jones", "given": ["Mary"]}]})
    assert mine.status_code == 201, mine.text
    key = gw.http.get("/review/held", headers=social).json()[0]["key"]
    for body in ({"patient": "mj", "despiteDifferences": "yes"},
                 {"patient": "mj", "despiteDifferences": 0},
                 {"create": True, "despiteDifferences": True},
                 {"despiteDifferences": True}):
        r = gw.http.post(f"/review/held/{key}", json=body, headers=social)
        assert r.status_code == 400, (body, r.text)
    refused = gw.http.post(f"/review/held/{key}", json={"patient": "mj"}, headers=social)
    assert refused.status_code == 409, refused.text
    said = refused.json()["issue"][0]["diagnostics"]
    assert "birth date and family name differ" in said and '"despiteDifferences": true' in said
    assert "1950" not in said and "Jones" not in said
    assert [h["key"] for h in gw.http.get("/review/held", headers=social).json()] == [key]
    done = gw.http.post(f"/review/held/{key}", json={"patient": "mj",
                                                     "despiteDifferences": True},
                        headers=social)
    assert done.status_code == 200, done.text
    assert gw.http.get("/review/held", headers=social).json() == []


def test_an_attachment_says_nothing_of_a_patient_the_feed_may_not_see(gw: Gateway) -> None:
    """Whether a hidden Patient's birth date or name matches the feed's record, the answer
    is the same, and compares nothing; a deleted one it never saw answers as an absent id
    (it was 410, confirming the deletion)."""
    social, _ = _load(gw)
    gw.put({"resourceType": "Patient", "id": "same", "birthDate": "1931-02-03",
            "name": [{"family": "Secretname", "given": ["Ada"]}]})
    gw.put({"resourceType": "Patient", "id": "other", "birthDate": "1950-07-07",
            "name": [{"family": "Hidden"}]})
    gw.put({"resourceType": "Patient", "id": "was-here", "birthDate": "1950-07-07"})
    gw.repository.delete("Patient", "was-here")
    assert gw.http.get("/fhir/Patient/same", headers=social).status_code == 404
    key = gw.http.get("/review/held", headers=social).json()[0]["key"]

    def attach(pid: str) -> tuple[int, str]:
        r = gw.http.post(f"/review/held/{key}", json={"patient": pid}, headers=social)
        return r.status_code, r.json()["issue"][0]["diagnostics"]

    gw.put({"resourceType": "Patient", "id": "merged", "active": False,
            "link": [{"other": {"reference": "Patient/other"}, "type": "replaced-by"}]})
    (same_status, same), (other_status, other) = attach("same"), attach("other")
    assert same_status == other_status == 409
    assert same == other  # (naming neither: a hidden Patient is "another record")
    assert attach("merged") == (409, same)  # nor whether an A40 merged it away
    assert "differ" not in same and "despiteDifferences" in same
    gone, absent = attach("was-here"), attach("never-there")
    assert gone[0] == absent[0] == 404
    assert gone[1] == absent[1]
    assert [h["key"] for h in gw.http.get("/review/held", headers=social).json()] == [key]
    # said all the same, the feed's record is attached (as before: feeds file on any
    # Patient the partnership holds)
    done = gw.http.post(f"/review/held/{key}", json={"patient": "same",
                                                     "despiteDifferences": True},
                        headers=social)
    assert done.status_code == 200, done.text
