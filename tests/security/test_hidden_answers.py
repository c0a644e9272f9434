"""A hidden record must answer exactly as an absent one, in every way a caller can tell:
the status, the words, the OperationOutcome's expression, a `next` link or a total, and a
conditional create's match inside a transaction.

The record is test_hidden_data.py's: Patient `hid` has a deny consent and is held by the
hospice (RH1); Patient `vis` has no consent; a GP clinician (B86001) may see `vis` only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from fhir_gateway.api.app import create_app
from fhir_gateway.config import Settings
from fhir_gateway.fhir.interceptors import BaseInterceptor, InterceptorChain
from fhir_gateway.fhir.request import Caller, FhirRequest, Interaction
from fhir_gateway.store.base import StoreEngine
from security_kit import (
    FHIR_JSON,
    HIDDEN_NHS,
    NHS,
    SECRET_CODE,
    Gateway,
    gp,
    obs,
    seed_hidden_record,
)


@pytest.fixture
def record(gw: Gateway) -> Gateway:
    seed_hidden_record(gw)
    return gw


def ids(bundle: dict[str, Any]) -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry", [])
            if e.get("resource", {}).get("resourceType") != "OperationOutcome"]


def answer(resp: httpx.Response, rid: str) -> tuple[int, Any, str | None]:
    """What a caller can tell from a response, with the id asked about blanked out."""
    return (resp.status_code, resp.text.replace(rid, "\0"), resp.headers.get("etag"))


# -- 1. a transaction's conditional create -------------------------------------------------


def conditional_transaction(nhs: str = HIDDEN_NHS, pid: str = "hid") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"},
         "request": {"method": "POST", "url": "Patient",
                     "ifNoneExist": f"identifier={NHS}|{nhs}"}},
        {"fullUrl": "urn:uuid:2", "resource": {"resourceType": "Observation",
                                               "status": "final", "code": {"text": "x"}},
         "request": {"method": "POST", "url": "Observation",
                     "ifNoneExist": f"code={SECRET_CODE}&subject=Patient/{pid}"}}]}


def outcome(resp: httpx.Response, rid: str) -> Any:
    """What a transaction's answer says, less the ids and times a new write makes."""
    body = resp.json()
    if body["resourceType"] == "OperationOutcome":
        return resp.status_code, resp.text.replace(rid, "\0")
    return resp.status_code, [e["response"]["status"] for e in body["entry"]]


ROLES = [("auditor", {}), ("clinician", {"org": "B86001"}), ("ambulance", {"org": "RYC"}),
         ("feed", {"partner": "gp", "scope": "system/*.cruds"})]


@pytest.mark.parametrize("role, extra", ROLES)
def test_transaction_conditional_create_never_shows_a_hidden_match(
        record: Gateway, role: str, extra: dict[str, Any]) -> None:
    h = record.login(f"{role}-client", role, **extra)
    resp = record.http.post("/fhir", json=conditional_transaction(), headers={**h, **FHIR_JSON})
    assert "Secretname" not in resp.text and "o-hid" not in resp.text, resp.text
    assert "Patient/hid" not in resp.text, resp.text
    # nor is the hidden record touched: a match it may not see is no match for this caller
    assert record.repository.read("Patient", "hid").version == 1
    assert record.repository.read("Observation", "o-hid").version == 1
    if role != "feed":  # a feed's answer is its write check's (security/access.py)
        absent = record.http.post("/fhir", json=conditional_transaction("9990000026", "nobody"),
                                  headers={**h, **FHIR_JSON})
        assert outcome(resp, "hid") == outcome(absent, "nobody")


class HideSecret(BaseInterceptor):
    """Allows every interaction but hides resources tagged `secret` from callers without
    header `x-may-see`: a hidden match that no write check stands in front of. (The caller,
    not the header, is what a Bundle's entries share with the Bundle.)"""

    def on_request(self, request: FhirRequest, interaction: Interaction) -> None:
        if request.header("x-may-see") == "yes":
            request.caller = Caller(role="may-see")

    def can_see(self, request: FhirRequest, resource: dict[str, Any]) -> bool:
        tags = {t.get("code") for t in (resource.get("meta") or {}).get("tag", [])}
        return "secret" not in tags or request.caller.role == "may-see"


@pytest.fixture
def hiding(engine: StoreEngine) -> Iterator[TestClient]:
    app = create_app(Settings(auth_enabled=False), engine=engine,
                     interceptors=InterceptorChain([HideSecret()]))
    with TestClient(app, base_url="http://gateway.test") as c:
        yield c


NHS_ID = {"system": NHS, "value": HIDDEN_NHS}


def secret_patient(c: TestClient) -> str:
    body = {"resourceType": "Patient", "meta": {"tag": [{"code": "secret"}]},
            "name": [{"family": "Secretname"}], "identifier": [NHS_ID]}
    resp = c.post("/fhir/Patient", json=body, headers=FHIR_JSON)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def patient_if_none_with_observation() -> dict[str, Any]:
    """A transaction: the Patient with the hidden NHS number unless one exists, and an
    Observation of whichever Patient that is."""
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient", "identifier": [NHS_ID]},
         "request": {"method": "POST", "url": "Patient",
                     "ifNoneExist": f"identifier={NHS}|{HIDDEN_NHS}"}},
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"text": "x"}, "subject": {"reference": "urn:uuid:p"}},
         "request": {"method": "POST", "url": "Observation"}}]}


def test_transaction_conditional_create_treats_a_hidden_match_as_no_match(
        hiding: TestClient) -> None:
    sid = secret_patient(hiding)
    bundle = patient_if_none_with_observation()
    resp = hiding.post("/fhir", json=bundle, headers=FHIR_JSON)
    assert resp.status_code == 200, resp.text
    assert sid not in resp.text and "Secretname" not in resp.text
    entries = resp.json()["entry"]
    assert entries[0]["response"]["status"] == "201 Created"  # what no match gets
    made = entries[0]["resource"]["id"]
    assert entries[1]["resource"]["subject"]["reference"] == f"Patient/{made}"
    # a caller who may see both now finds two matches
    seen = hiding.post("/fhir", json=bundle, headers={**FHIR_JSON, "x-may-see": "yes"})
    assert seen.status_code == 412, seen.text


def test_conditional_create_treats_a_hidden_match_as_no_match(hiding: TestClient) -> None:
    sid = secret_patient(hiding)
    cond = {**FHIR_JSON, "If-None-Exist": f"identifier={NHS}|{HIDDEN_NHS}"}
    new = {"resourceType": "Patient", "identifier": [NHS_ID]}
    resp = hiding.post("/fhir/Patient", json=new, headers=cond)
    assert resp.status_code == 201, resp.text
    assert resp.json()["id"] != sid and "Secretname" not in resp.text
    # with both visible, there are now two matches
    both = hiding.post("/fhir/Patient", json=new, headers={**cond, "x-may-see": "yes"})
    assert both.status_code == 412


def test_transaction_conditional_create_reuses_a_visible_match(hiding: TestClient) -> None:
    sid = secret_patient(hiding)
    bundle = patient_if_none_with_observation()
    resp = hiding.post("/fhir", json=bundle, headers={**FHIR_JSON, "x-may-see": "yes"})
    assert resp.status_code == 200, resp.text
    entries = resp.json()["entry"]
    assert entries[0]["response"]["status"] == "200 OK"
    assert entries[0]["resource"]["id"] == sid
    assert entries[1]["resource"]["subject"]["reference"] == f"Patient/{sid}"


# -- 2. paging -------------------------------------------------------------------------------


def links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle["link"]}


@pytest.mark.parametrize("hidden, absent", [
    (f"Patient?identifier={NHS}|9990000018,{NHS}|{HIDDEN_NHS}&_count=1&_sort=name",
     f"Patient?identifier={NHS}|9990000018,{NHS}|9990000026&_count=1&_sort=name"),
    (f"Observation?subject=Patient/vis,Patient/hid&code={SECRET_CODE}&_count=1&_sort=_id",
     f"Observation?subject=Patient/vis,Patient/nobody&code={SECRET_CODE}&_count=1&_sort=_id"),
])
def test_next_link_and_total_do_not_reveal_hidden_matches(record: Gateway, hidden: str,
                                                          absent: str) -> None:
    record.put(obs("a-vis", "vis"))  # sorts before o-hid
    h = gp(record)
    shown = record.http.get(f"/fhir/{hidden}", headers=h).json()
    control = record.http.get(f"/fhir/{absent}", headers=h).json()
    assert ids(shown) == ids(control) and len(ids(shown)) == 1
    assert "next" not in links(shown)
    assert shown.get("total") == control.get("total") == 1


def all_pages(record: Gateway, url: str | None, headers: dict[str, str]) -> list[list[str]]:
    """The ids on each page, following `next` links from `url`."""
    pages = []
    while url:
        page = record.http.get(url, headers=headers).json()
        pages.append(ids(page))
        url = links(page).get("next")
    return pages


def test_paging_past_hidden_rows_shows_each_visible_match_once(record: Gateway) -> None:
    for oid, pid in [("a-vis", "vis"), ("b-hid", "hid"), ("c-vis", "vis"), ("d-hid", "hid"),
                     ("e-vis", "vis"), ("f-hid", "hid"), ("g-hid", "hid")]:
        record.put(obs(oid, pid))
    h = gp(record)
    for count in (1, 2, 3):
        pages = all_pages(record, f"/fhir/Observation?code={SECRET_CODE}&_sort=_id"
                                  f"&_count={count}", h)
        assert [i for p in pages for i in p] == \
            ["Observation/a-vis", "Observation/c-vis", "Observation/e-vis"], count
        assert all(pages), (count, pages)  # no page is empty: "more" meant a visible one


def test_history_pages_neither_shrink_nor_point_past_hidden_versions(record: Gateway) -> None:
    for oid, pid in [("a-vis", "vis"), ("b-hid", "hid"), ("c-vis", "vis"), ("d-hid", "hid")]:
        record.put(obs(oid, pid))  # newest last: history lists d-hid, c-vis, b-hid, a-vis...
    h = gp(record)
    for count in (1, 2, 5):
        pages = all_pages(record, f"/fhir/Observation/_history?_count={count}", h)
        assert [i for p in pages for i in p] == ["Observation/c-vis", "Observation/a-vis"]
        assert all(len(p) == count for p in pages[:-1]) and pages[-1], (count, pages)


# -- 3. read, vread, history, deletions --------------------------------------------------------


@pytest.fixture
def deleted(record: Gateway) -> Gateway:
    record.put(obs("o-hid2", "hid"))
    record.repository.delete("Observation", "o-hid2")
    record.put(obs("o-vis2", "vis"))
    record.repository.delete("Observation", "o-vis2")
    return record


@pytest.mark.parametrize("hidden, absent, rid", [
    ("Patient/hid", "Patient/nobody", "hid"),
    ("Patient/hid/_history/1", "Patient/nobody/_history/1", "hid"),
    ("Patient/hid/_history/7", "Patient/nobody/_history/7", "hid"),
    ("Patient/hid/_history", "Patient/nobody/_history", "hid"),
    ("Observation/o-hid2", "Observation/nobody", "o-hid2"),
    ("Observation/o-hid2/_history/1", "Observation/nobody/_history/1", "o-hid2"),
    ("Observation/o-hid2/_history/2", "Observation/nobody/_history/2", "o-hid2"),
    ("Observation/o-hid2/_history", "Observation/nobody/_history", "o-hid2"),
    ("Patient/hid/$everything", "Patient/nobody/$everything", "hid"),
])
def test_hidden_answers_exactly_as_absent(deleted: Gateway, hidden: str, absent: str,
                                          rid: str) -> None:
    h = gp(deleted)
    got = deleted.http.get(f"/fhir/{hidden}", headers=h)
    want = deleted.http.get(f"/fhir/{absent}", headers=h)
    assert want.status_code == 404
    assert answer(got, rid) == answer(want, "nobody")


def test_what_the_caller_may_see_still_answers_fully(deleted: Gateway) -> None:
    h = gp(deleted)
    gone = deleted.http.get("/fhir/Observation/o-vis2", headers=h)
    assert gone.status_code == 410 and "deleted" in gone.text
    assert deleted.http.get("/fhir/Observation/o-vis2/_history/2", headers=h).status_code == 410
    assert deleted.http.get("/fhir/Observation/o-vis2/_history/1", headers=h).status_code == 200
    history = deleted.http.get("/fhir/Observation/o-vis2/_history", headers=h)
    assert history.status_code == 200 and len(history.json()["entry"]) == 2
    missing = deleted.http.get("/fhir/Patient/vis/_history/7", headers=h)
    assert missing.status_code == 404 and "no version 7" in missing.text
    hospice = deleted.login("hospice-ward", "clinician", org="RH1")
    assert deleted.http.get("/fhir/Observation/o-hid2", headers=hospice).status_code == 410
