"""Review 9: read paths and the one-Patient-per-NHS-number rule, with auth on.

1. A write of a Patient whose NHS number another live Patient holds is refused (409),
   whoever holds it, counting Patients written earlier in the same transaction.
2. An old version (vread, history) is shown only when the resource as it is now may be.
3. A chain or `_has` is re-checked on matches only, not on `_include`d resources.
4. History passes over types the role never sees, and reads past hidden versions in
   batches: the store queries it makes do not grow with the audit trail.
5. `_revinclude` reads past hidden rows, so visible ones are not dropped behind them.
6. `$everything` is Patient's only.

The record is security_kit's: Patient `hid` has a deny consent and is held by the hospice
(RH1); Patient `vis` has no consent; a GP clinician (B86001) may see `vis` only.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from fhir_gateway.fhir import searchset
from fhir_gateway.store.base import HistoryPage
from security_kit import (
    FHIR_JSON,
    HIDDEN_NHS,
    NHS,
    VISIBLE_NHS,
    Gateway,
    gp,
    obs,
    patient,
    provenance,
    seed_hidden_record,
)

OTHER_NHS = "9990000026"


@pytest.fixture
def record(gw: Gateway) -> Gateway:
    seed_hidden_record(gw)
    return gw


def hospice_feed(gw: Gateway) -> dict[str, str]:
    return {**gw.login("hospice-feed", "feed", partner="hospice", org="RH1",
                       scope="system/*.cruds"), **FHIR_JSON}


def ids(bundle: dict[str, Any]) -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry", [])
            if e.get("resource", {}).get("resourceType") != "OperationOutcome"]


def warnings(bundle: dict[str, Any]) -> list[str]:
    return [i["diagnostics"] for e in bundle.get("entry", [])
            if e.get("resource", {}).get("resourceType") == "OperationOutcome"
            for i in e["resource"]["issue"]]


def tx(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def nhs_patient(nhs: str, family: str = "Fresh") -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}],
            "identifier": [{"system": NHS, "value": nhs}]}


def patients_with(gw: Gateway, nhs: str) -> list[str]:
    from fhir_gateway.search.query import parse_search

    search = parse_search("Patient", [("identifier", f"{NHS}|{nhs}")], gw.repository.registry)
    return [r.rid for r in gw.repository.find(search.query).rows]


# -- 1. one Patient per NHS number, whoever holds it ---------------------------------------


def test_feed_cannot_make_a_second_patient_for_its_own_nhs_number(record: Gateway) -> None:
    gw = record
    feed = hospice_feed(gw)
    first = gw.http.post("/fhir/Patient", json=nhs_patient(OTHER_NHS), headers=feed)
    assert first.status_code == 201, first.text
    pid = first.json()["id"]
    again = gw.http.post("/fhir/Patient", json=nhs_patient(OTHER_NHS, "Other"), headers=feed)
    assert again.status_code == 409, again.text
    assert f"NHS number {OTHER_NHS} is already on the shared record" in again.text
    in_tx = gw.http.post("/fhir", json=tx({"resource": nhs_patient(OTHER_NHS),
                                           "request": {"method": "POST", "url": "Patient"}}),
                         headers=feed)
    assert in_tx.status_code == 409, in_tx.text
    put = gw.http.put("/fhir/Patient/p-two", json={**nhs_patient(OTHER_NHS), "id": "p-two"},
                      headers=feed)
    assert put.status_code == 409, put.text
    assert patients_with(gw, OTHER_NHS) == [pid]
    # its own Patient it may still change, and a conditional create finds it
    same = gw.http.put(f"/fhir/Patient/{pid}", json={**nhs_patient(OTHER_NHS, "Renamed"),
                                                     "id": pid}, headers=feed)
    assert same.status_code == 200, same.text
    found = gw.http.post("/fhir/Patient", json=nhs_patient(OTHER_NHS), headers={
        **feed, "If-None-Exist": f"identifier={NHS}|{OTHER_NHS}"})
    assert found.status_code == 200 and found.json()["id"] == pid, found.text
    # moving the number to another record (as a merge does): off the one, onto the other
    gw.http.put(f"/fhir/Patient/{pid}", json={"resourceType": "Patient", "id": pid,
                                              "name": [{"family": "Renamed"}]}, headers=feed)
    moved = gw.http.put("/fhir/Patient/p-two", json={**nhs_patient(OTHER_NHS), "id": "p-two"},
                        headers=feed)
    assert moved.status_code == 201, moved.text
    assert patients_with(gw, OTHER_NHS) == ["p-two"]
    # another partner's holder, hidden or not: one answer, naming neither
    answers = []
    for nhs, pid in ((HIDDEN_NHS, "hid"), (VISIBLE_NHS, "vis")):
        r = gw.http.post("/fhir/Patient", json=nhs_patient(nhs), headers=feed)
        assert r.status_code == 409, r.text
        assert "Secretname" not in r.text and "Openname" not in r.text and pid not in r.text
        answers.append(r.text.replace(nhs, "N"))
    assert answers[0] == answers[1]


def test_one_transaction_cannot_hold_two_patients_for_one_nhs_number(gw: Gateway) -> None:
    feed = hospice_feed(gw)
    entry = {"resource": nhs_patient(OTHER_NHS), "request": {"method": "POST", "url": "Patient"}}
    r = gw.http.post("/fhir", json=tx(entry, entry), headers=feed)
    assert r.status_code == 409, r.text
    assert "already on the shared record" in r.text
    assert patients_with(gw, OTHER_NHS) == []  # nothing of the transaction was written


@pytest.mark.parametrize("a_first", [True, False])
def test_two_patients_may_swap_nhs_numbers_in_one_transaction(gw: Gateway,
                                                              a_first: bool) -> None:
    """One Patient per NHS number is judged on the transaction's end state: entry by
    entry, a swap met the other Patient still holding the number, in either order."""
    feed = hospice_feed(gw)
    first, second = "9434765919", OTHER_NHS
    ids_ = []
    for number in (first, second):
        made = gw.http.post("/fhir/Patient", json=nhs_patient(number), headers=feed)
        assert made.status_code == 201, made.text
        ids_.append(made.json()["id"])
    a, b = ({**nhs_patient(second), "id": ids_[0]}, {**nhs_patient(first), "id": ids_[1]})
    entries = [{"resource": p, "request": {"method": "PUT", "url": f"Patient/{p['id']}"}}
               for p in ((a, b) if a_first else (b, a))]
    r = gw.http.post("/fhir", json=tx(*entries), headers=feed)
    assert r.status_code == 200, r.text
    assert patients_with(gw, first) == [ids_[1]] and patients_with(gw, second) == [ids_[0]]
    # and a transaction that ends with two Patients on one number is still refused
    both = [{"resource": {**nhs_patient(first), "id": pid},
             "request": {"method": "PUT", "url": f"Patient/{pid}"}} for pid in ids_]
    r = gw.http.post("/fhir", json=tx(*both), headers=feed)
    assert r.status_code == 409 and "already on the shared record" in r.text, r.text


def test_a_refused_duplicate_leaves_the_crew_summary_working(gw: Gateway) -> None:
    feed = hospice_feed(gw)
    crew = gw.login("crew", "ambulance", org="RYC")
    url = f"/fhir/Patient/$emergency-summary?identifier={NHS}|{OTHER_NHS}"
    assert gw.http.post("/fhir/Patient", json=nhs_patient(OTHER_NHS),
                        headers=feed).status_code == 201
    second = gw.http.post("/fhir", json=tx({"resource": nhs_patient(OTHER_NHS), "request": {
        "method": "POST", "url": "Patient"}}), headers=feed)
    assert second.status_code == 409, second.text
    summary = gw.http.get(url, headers=crew)
    assert summary.status_code == 200, summary.text


# -- 2. old versions of a resource now hidden -----------------------------------------------


def refiled(record: Gateway) -> None:
    """Observation o-moved: v1 about `vis`, v2 re-filed to the hidden `hid`."""
    record.put(obs("o-moved", "vis", valueString="Not for CPR"))
    record.put(provenance("Observation/o-moved", "RH1", "vis"))
    record.put(obs("o-moved", "hid", valueString="Not for CPR"))


def answer(resp: httpx.Response, rid: str) -> tuple[int, str, str | None]:
    return resp.status_code, resp.text.replace(rid, "\0"), resp.headers.get("etag")


def test_an_old_version_of_a_now_hidden_resource_reads_as_absent(record: Gateway) -> None:
    refiled(record)
    h = gp(record)
    assert record.http.get("/fhir/Observation/o-moved", headers=h).status_code == 404
    for version in ("1", "2", "3"):
        hidden = record.http.get(f"/fhir/Observation/o-moved/_history/{version}", headers=h)
        absent = record.http.get(f"/fhir/Observation/nobody/_history/{version}", headers=h)
        assert hidden.status_code == 404, (version, hidden.text)
        assert answer(hidden, "o-moved") == answer(absent, "nobody"), version
    for url in ("/fhir/Observation/_history", "/fhir/_history?_count=1000"):
        listed = record.http.get(url, headers=h).json()
        assert not [e for e in listed.get("entry", []) if "o-moved" in e["fullUrl"]], url
    # while the resource is visible as it is now, its past is shown
    record.put(obs("o-kept", "vis", valueString="first"))
    record.put(obs("o-kept", "vis", valueString="second"))
    v1 = record.http.get("/fhir/Observation/o-kept/_history/1", headers=h)
    assert v1.status_code == 200 and v1.json()["valueString"] == "first", v1.text
    listed = record.http.get("/fhir/_history?_count=1000", headers=h).json()
    assert [e["response"]["etag"] for e in listed["entry"] if "o-kept" in e["fullUrl"]] == \
        ['W/"2"', 'W/"1"']


def test_an_old_version_of_a_resource_deleted_while_hidden_is_not_listed(
        record: Gateway) -> None:
    refiled(record)
    record.repository.delete("Observation", "o-moved")
    h = gp(record)
    for version in ("1", "3"):
        hidden = record.http.get(f"/fhir/Observation/o-moved/_history/{version}", headers=h)
        absent = record.http.get(f"/fhir/Observation/nobody/_history/{version}", headers=h)
        assert answer(hidden, "o-moved") == answer(absent, "nobody"), version
    listed = record.http.get("/fhir/_history?_count=1000", headers=h).json()
    assert not [e for e in listed.get("entry", []) if "o-moved" in e["fullUrl"]]


# -- 3. a chain or _has selects matches, not includes -----------------------------------------


def test_chain_and_has_searches_keep_same_type_includes(record: Gateway) -> None:
    gw = record
    gw.put({"resourceType": "Observation", "id": "panel", "status": "final",
            "code": {"text": "panel"}, "subject": {"reference": "Patient/vis"},
            "hasMember": [{"reference": "Observation/member"}]})
    gw.put({"resourceType": "Observation", "id": "member", "status": "final",
            "code": {"text": "member"}})  # no subject: it does not meet the chain itself
    gw.put(patient("vis2", OTHER_NHS, "Othername"))
    gw.put({"resourceType": "Patient", "id": "vis3", "name": [{"family": "Third"}],
            "link": [{"other": {"reference": "Patient/vis2"}, "type": "seealso"}]})
    gw.put({"resourceType": "Observation", "id": "o3", "status": "final",
            "code": {"text": "x"}, "subject": {"reference": "Patient/vis3"}})
    h = gp(gw)
    chained = gw.http.get("/fhir/Observation?subject:Patient.name=Openname"
                          "&_include=Observation:has-member", headers=h).json()
    assert sorted(ids(chained)) == ["Observation/member", "Observation/panel"]
    assert [e["search"]["mode"] for e in chained["entry"]
            if e["resource"]["id"] == "member"] == ["include"]
    has = gw.http.get("/fhir/Patient?_has:Observation:subject:code:text=x"
                      "&_include=Patient:link", headers=h).json()
    assert sorted(ids(has)) == ["Patient/vis2", "Patient/vis3"]
    # a match is still re-checked: a chain through hidden data matches nothing
    through = gw.http.get("/fhir/Observation?subject:Patient.name=Secretname"
                          "&_include=Observation:subject", headers=h)
    assert through.status_code == 200 and ids(through.json()) == [], through.text


# -- 4. history's store queries do not grow with what the caller never sees -----------------


def counting_history(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = gw.repository.history

    def counting(**kwargs: Any) -> HistoryPage:
        calls.append(kwargs["limit"])
        return real(**kwargs)

    monkeypatch.setattr(gw.repository, "history", counting)
    return calls


@pytest.mark.parametrize("reads", [150, 300])
def test_system_history_queries_do_not_grow_with_the_audit_trail(
        record: Gateway, monkeypatch: pytest.MonkeyPatch, reads: int) -> None:
    h = gp(record)
    for i in range(30):
        record.put(obs(f"v{i:02}", "vis" if i % 3 else "hid"))
        for _ in range(i % 4):  # audited reads between: versions a clinician never sees
            record.http.get("/fhir/Patient/vis", headers=h)
    for _ in range(reads):  # a run of AuditEvents newer than every other version
        assert record.http.get("/fhir/Patient/vis", headers=h).status_code == 200
    record.http.app.state.security.trail.catch_up()
    whole = ids(record.http.get("/fhir/_history?_count=1000", headers=h).json())
    assert not [i for i in whole if i.startswith("AuditEvent/")]
    assert whole[0] == "Observation/v29" and "Observation/v00" not in whole
    calls = counting_history(record, monkeypatch)
    r = record.http.get("/fhir/_history?_count=1", headers=h)
    assert r.status_code == 200 and ids(r.json()) == ["Observation/v29"], r.text
    # one version-slot per query walked every AuditEvent (reads + 3 queries); batches of
    # LOOKAHEAD, doubling past a run of hidden versions, take a handful
    assert len(calls) <= 8, calls
    # and paging through batches loses and repeats nothing, every page full but the last
    for count in (1, 3, 7):
        url: str | None = f"/fhir/_history?_count={count}"
        pages = []
        while url:
            page = record.http.get(url, headers=h).json()
            pages.append(ids(page))
            url = next((x["url"] for x in page["link"] if x["relation"] == "next"), None)
        assert [i for p in pages for i in p] == whole, count
        assert all(len(p) == count for p in pages[:-1]) and pages[-1], count


def test_a_write_during_a_history_page_lists_no_version_twice(
        record: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store without a read snapshot (MongoDB) sees a write that lands while a page is
    being read: the next page's cursor is the last shown version's own place, not a
    second read of the batch, which the new version would have shifted."""
    from fhir_gateway.fhir.repository import Repository

    for i in range(10):
        record.put(obs(f"o{i:02d}", "vis"))
    real, calls = Repository.history, []

    def history(self: Repository, **kw: Any) -> Any:
        calls.append(kw)
        if len(calls) == 2:  # a feed's write between two reads of one page
            record.put(obs("late", "vis"))
        return real(self, **kw)

    doctor = gp(record)
    monkeypatch.setattr(Repository, "history", history)
    first = record.http.get("/fhir/Observation/_history?_count=3", headers=doctor).json()
    monkeypatch.setattr(Repository, "history", real)
    following = [x["url"] for x in first["link"] if x["relation"] == "next"]
    second = record.http.get(following[0].replace("http://gateway.test", ""),
                             headers=doctor).json()
    shown = [ids(b) for b in (first, second)]
    assert not set(shown[0]) & set(shown[1]), shown


def test_history_leaves_out_the_types_a_role_never_sees(
        gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    access = gw.http.app.state.security.access
    gp_headers = gp(gw)
    auditor = gw.login("dsp", "auditor", org="X26")
    gw.put(patient("vis", VISIBLE_NHS, "Openname"))
    gw.http.get("/fhir/Patient/vis", headers=gp_headers)
    gw.http.app.state.security.trail.catch_up()
    seen: dict[str, frozenset[str] | None] = {}
    real = access.history_types

    def noting(request: Any) -> frozenset[str]:
        shown = real(request)
        seen[request.caller.role] = shown
        return shown

    monkeypatch.setattr(access, "history_types", noting)
    assert gw.http.get("/fhir/_history", headers=gp_headers).status_code == 200
    audit = gw.http.get("/fhir/_history", headers=auditor)
    assert audit.status_code == 200, audit.text
    assert "AuditEvent" not in (seen["clinician"] or ()) and "Patient" in (seen["clinician"] or ())
    assert seen["auditor"] == frozenset({"AuditEvent", "Provenance"})
    assert {i.split("/")[0] for i in ids(audit.json())} <= {"AuditEvent", "Provenance"}


# -- 5. _revinclude reads past hidden rows ----------------------------------------------------


def about_both(record: Gateway) -> None:
    for i in range(4):  # about vis and hid (performer): hidden from the GP
        record.put({**obs(f"a{i}", "vis"), "performer": [{"reference": "Patient/hid"}]})
    for i in range(4):
        record.put(obs(f"b{i}", "vis"))


def test_revinclude_visible_rows_are_not_dropped_behind_hidden_ones(
        record: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(searchset, "MAX_INCLUDED", 5)  # one read: 6 rows, 4 of them hidden
    about_both(record)
    bundle = record.http.get("/fhir/Patient?_id=vis&_revinclude=Observation:subject",
                             headers=gp(record)).json()
    assert sorted(ids(bundle)) == ["Observation/b0", "Observation/b1", "Observation/b2",
                                   "Observation/b3", "Patient/vis"]
    assert warnings(bundle) == []


def test_revinclude_says_it_is_capped_when_its_reads_run_out(
        record: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(searchset, "MAX_INCLUDED", 5)
    monkeypatch.setattr(searchset, "REVINCLUDE_BATCHES", 1, raising=False)
    about_both(record)
    bundle = record.http.get("/fhir/Patient?_id=vis&_revinclude=Observation:subject",
                             headers=gp(record)).json()
    assert sorted(ids(bundle)) == ["Observation/b0", "Observation/b1", "Patient/vis"]
    assert warnings(bundle) == ["not every resource to include is here (at most 5, and a "
                                "bounded number of rows read for each _revinclude); the "
                                "rest were left out"]


# -- 6. $everything is Patient's ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["Organization/same/$everything",
                                  "Observation/o1/$everything"])
def test_everything_on_another_type_is_not_supported(gw: Gateway, path: str) -> None:
    gw.put(patient("same", VISIBLE_NHS, "Openname"))
    gw.put(obs("o1", "same"))
    gw.put({"resourceType": "Organization", "id": "same", "name": "A hospice"})
    h = gp(gw)
    r = gw.http.get(f"/fhir/{path}", headers=h)
    assert r.status_code == 404, r.text
    assert r.json()["issue"][0]["code"] == "not-supported"
    assert "Openname" not in r.text
    whole = gw.http.get("/fhir/Patient/same/$everything", headers=h)
    assert whole.status_code == 200 and "Patient/same" in ids(whole.json())
