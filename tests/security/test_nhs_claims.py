"""One Patient per NHS number between concurrent writers: REST Patient writes claim the
number with the unique `person-nhs` record ingest uses, in the write's session.

SQLite serialises writers, so the search in `_check_one_patient_per_person` alone held
there; MongoDB does not. Two gateways on one mongomock database stand for two workers on
one server (mongomock has no transactions: the engine's no-transaction mode, writers
serialised per process only). The races are made deterministic by running the second
worker's whole request at the point where the first one is paused.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import mongomock
import pytest

from fhir_gateway.pipeline.identity import NHS_CLAIMS
from fhir_gateway.security.access import AccessInterceptor
from fhir_gateway.store.base import StoreEngine
from fhir_gateway.store.mongo import MongoEngine
from fhir_gateway.store.query import IndexQuery
from security_kit import FHIR_JSON, NHS, Gateway, secured

NUMBER = "9434765919"
OTHER = "9990000026"


def nhs_patient(nhs: str, family: str, pid: str | None = None) -> dict[str, Any]:
    body = {"resourceType": "Patient", "name": [{"family": family}],
            "identifier": [{"system": NHS, "value": nhs}]}
    return {**body, "id": pid} if pid else body


def holders(gw: Gateway, nhs: str) -> list[str]:
    rows = gw.repository.find(IndexQuery(rtype="Patient", limit=100)).rows
    return sorted(r.rid for r in rows if r.body and nhs in r.body)


def claim(engine: StoreEngine, nhs: str) -> str | None:
    with engine.session(write=False) as s:
        return (s.record_get(NHS_CLAIMS, nhs) or {}).get("patient")


@pytest.fixture
def workers() -> Iterator[tuple[Gateway, dict[str, str], Gateway, dict[str, str]]]:
    """Two gateways (workers) on one MongoDB database, each with a feed's headers."""
    client, db = mongomock.MongoClient(), f"db{uuid.uuid4().hex[:8]}"
    with ExitStack() as stack:
        one = stack.enter_context(secured(MongoEngine(client, db, transactions=False)))
        two = stack.enter_context(secured(MongoEngine(client, db, transactions=False)))
        h1 = {**one.login("gp-feed", "feed", partner="gp", org="B86001",
                          scope="system/*.cruds"), **FHIR_JSON}
        h2 = {**two.login("acute-feed", "feed", partner="acute", org="RXA",
                          scope="system/*.cruds"), **FHIR_JSON}
        yield one, h1, two, h2


def test_a_worker_writing_between_the_others_check_and_write_gets_a_409(
        workers: tuple[Gateway, dict[str, str], Gateway, dict[str, str]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker two's create runs while worker one has checked (and claimed) the number but
    not yet written its Patient: one Patient, and worker two is refused."""
    one, h1, two, h2 = workers
    answers: dict[str, int] = {}
    real = AccessInterceptor._check_one_patient_per_person

    def then_the_other(self: AccessInterceptor, body: dict[str, Any], rid: str | None,
                       session: Any) -> None:
        real(self, body, rid, session)
        if self.repository is one.repository and "two" not in answers:
            answers["two"] = two.http.post("/fhir/Patient", json=nhs_patient(NUMBER, "B"),
                                           headers=h2).status_code

    monkeypatch.setattr(AccessInterceptor, "_check_one_patient_per_person", then_the_other)
    first = one.http.post("/fhir/Patient", json=nhs_patient(NUMBER, "A"), headers=h1)
    assert (first.status_code, answers["two"]) == (201, 409), first.text
    assert holders(one, NUMBER) == [first.json()["id"]]
    # and once the first is written, the second is told why
    again = two.http.post("/fhir/Patient", json=nhs_patient(NUMBER, "B"), headers=h2)
    assert again.status_code == 409 and "already on the shared record" in again.text


def test_a_worker_whose_check_went_stale_is_refused_by_the_claim(
        workers: tuple[Gateway, dict[str, str], Gateway, dict[str, str]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker two creates the Patient, whole, just after worker one's search found no
    holder: worker one's write then meets the claim, not a second Patient."""
    one, h1, two, h2 = workers
    answers: dict[str, int] = {}
    real_find: Callable[..., Any] = one.repository.find

    def find_then_the_other(query: IndexQuery, **kw: Any) -> Any:
        found = real_find(query, **kw)
        if query.rtype == "Patient" and query.criteria and "two" not in answers:
            answers["two"] = two.http.post("/fhir/Patient", json=nhs_patient(NUMBER, "B"),
                                           headers=h2).status_code
        return found

    monkeypatch.setattr(one.repository, "find", find_then_the_other)
    first = one.http.post("/fhir/Patient", json=nhs_patient(NUMBER, "A"), headers=h1)
    assert (answers["two"], first.status_code) == (201, 409), first.text
    assert "already on the shared record" in first.text
    monkeypatch.undo()
    assert len(holders(one, NUMBER)) == 1


def test_the_claim_follows_the_number(gw: Gateway) -> None:
    """Made, moved to another Patient, swapped in one transaction: the claim names the
    Patient holding the number each time; and ingest's create-only claim (a new Patient
    for the number) fails while a REST-made Patient holds it."""
    feed = {**gw.login("hospice-feed", "feed", partner="hospice", org="RH1",
                       scope="system/*.cruds"), **FHIR_JSON}
    made = gw.http.post("/fhir/Patient", json=nhs_patient(NUMBER, "A"), headers=feed)
    assert made.status_code == 201, made.text
    a = made.json()["id"]
    assert claim(gw.engine, NUMBER) == a
    with gw.engine.session(write=True) as s:
        assert not s.record_put(NHS_CLAIMS, NUMBER, {"patient": "x"}, create_only=True)
    # off the one (a correction), onto another
    assert gw.http.put(f"/fhir/Patient/{a}", json={"resourceType": "Patient", "id": a},
                       headers=feed).status_code == 200
    assert gw.http.put("/fhir/Patient/b", json=nhs_patient(NUMBER, "B", "b"),
                       headers=feed).status_code == 201
    assert claim(gw.engine, NUMBER) == "b"
    assert gw.http.put(f"/fhir/Patient/{a}", json=nhs_patient(OTHER, "A", a),
                       headers=feed).status_code == 200
    # a swap in one transaction
    entries = [{"resource": p, "request": {"method": "PUT", "url": f"Patient/{p['id']}"}}
               for p in (nhs_patient(NUMBER, "A", a), nhs_patient(OTHER, "B", "b"))]
    r = gw.http.post("/fhir", json={"resourceType": "Bundle", "type": "transaction",
                                    "entry": entries}, headers=feed)
    assert r.status_code == 200, r.text
    assert (claim(gw.engine, NUMBER), claim(gw.engine, OTHER)) == (a, "b")
    # a deleted Patient's number is free for another, which takes the claim over
    assert gw.http.delete(f"/fhir/Patient/{a}", headers=feed).status_code == 204
    c = gw.http.post("/fhir/Patient", json=nhs_patient(NUMBER, "C"), headers=feed)
    assert c.status_code == 201, c.text
    assert claim(gw.engine, NUMBER) == c.json()["id"]


def test_a_batch_entry_claims_the_number_as_a_plain_write_does(
        workers: tuple[Gateway, dict[str, str], Gateway, dict[str, str]]) -> None:
    """A batch entry is written in a transaction of its own, so it claims its number:
    another worker's create of the same number is then refused."""
    one, h1, two, h2 = workers
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": nhs_patient(NUMBER, "A"), "request": {"method": "POST", "url": "Patient"}}]}
    resp = one.http.post("/fhir", json=batch, headers=h1)
    assert resp.status_code == 200, resp.text
    assert resp.json()["entry"][0]["response"]["status"].startswith("201")
    (made,) = holders(one, NUMBER)
    assert claim(one.repository.engine, NUMBER) == made
    assert two.http.post("/fhir/Patient", json=nhs_patient(NUMBER, "B"),
                         headers=h2).status_code == 409
