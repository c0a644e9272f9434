"""The retry after every run judges a held record again only when something its identity
rests on has changed (`pipeline.identity`: identity keys and their tokens), and every
write path that could release a hold, ingestion or not, changes one."""

from __future__ import annotations

from typing import Any

import pytest
from identity_kit import COUNCIL_HEAD, NHS, TODAY, Partnership, X, Y, adt, hospice, nhs_numbers

from fhir_gateway.fhir.repository import Repository
from fhir_gateway.pipeline import loader as loader_module
from fhir_gateway.pipeline.loader import JUDGED_ON, Loader
from fhir_gateway.pipeline.service import IngestService
from fhir_gateway.store.base import StoreEngine

ROW = (COUNCIL_HEAD + "SC1,Mr,John,Smith,1940-01-01,DY1 4DX,,Home care,2026-02-01,,A,B\n"
       ).encode()
JOHN = {"resourceType": "Patient", "name": [{"family": "Smith", "given": ["John"]}],
        "birthDate": "1940-01-01", "address": [{"postalCode": "DY1 4DX"}]}


def _held_council(p: Partnership) -> dict[str, Any]:
    run = p.send("socialcare", "s.csv", ROW)
    assert run.held == 1
    ((_, held),) = p.loader.list_held()
    return held


def _holding(p: Partnership, value: str) -> list[str]:
    return [pt["id"] for pt in p.patients()
            if value in {i.get("value") for i in pt.get("identifier") or []}]


def test_a_hold_is_judged_again_only_when_its_identity_keys_change(
        engine: StoreEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    p = Partnership(engine)
    held = _held_council(p)
    assert held[JUDGED_ON]  # the tokens it was judged on are kept with it
    judged: list[str | None] = []
    real = loader_module.resolve

    def spy(repo: Any, s: Any, person: Any, **kw: Any) -> Any:
        judged.append(person.local_id)
        return real(repo, s, person, **kw)

    monkeypatch.setattr(loader_module, "resolve", spy)
    # another person at another postcode: nothing the hold reads has changed
    assert p.send("hospice", "h1.jsonl", hospice("C9", X, postcode="B1 1AA")).created > 0
    assert "SC1" not in judged
    assert p.loader.list_held()[0][1] == held
    # the same person, now known at its postcode: judged again, and filed there
    p.send("hospice", "h2.jsonl", hospice("C1", Y))
    assert "SC1" in judged
    assert p.loader.list_held() == []
    assert _holding(p, "SC1") == _holding(p, "C1") != []


def test_a_patient_made_over_rest_releases_the_hold_at_the_next_run(
        engine: StoreEngine) -> None:
    p = Partnership(engine)
    _held_council(p)
    made = p.repo.create(dict(JOHN)).stored.rid  # as a REST create writes it
    p.send("hospice", "h.jsonl", hospice("C9", X, postcode="B1 1AA"))  # another person
    assert p.loader.list_held() == []
    assert _holding(p, "SC1") == [made]


def test_a_local_id_put_on_a_patient_over_rest_releases_the_hold(engine: StoreEngine) -> None:
    p = Partnership(engine)
    held = _held_council(p)
    other = p.repo.create({"resourceType": "Patient", "name": [{"family": "Jones"}]})
    system = held["record"]["person"]["local_system"]
    p.repo.update({"resourceType": "Patient", "id": other.stored.rid,
                   "name": [{"family": "Jones"}],
                   "identifier": [{"system": system, "value": "SC1"}]},
                  rtype="Patient", rid=other.stored.rid)
    p.loader.ingest(iter(()))  # a run that reads nothing still retries
    assert p.loader.list_held() == []
    assert _holding(p, "SC1") == [other.stored.rid]


def test_deleting_one_of_two_patients_holding_a_number_releases_the_hold(
        engine: StoreEngine) -> None:
    p = Partnership(engine)
    a, b = (p.repo.create({"resourceType": "Patient", "birthDate": "1940-01-01",
                           "identifier": [{"system": NHS, "value": X}]}).stored.rid
            for _ in range(2))
    run = p.send("hospice", "h.jsonl", hospice("C1", X))
    assert run.held == 1
    assert p.loader.list_held()[0][1]["reason"].startswith("2 Patients hold NHS number")
    p.repo.delete("Patient", a)
    p.loader.retry_held()
    assert p.loader.list_held() == []
    assert _holding(p, "C1") == [b]


def test_a_reviewers_accepted_birth_date_releases_the_same_persons_other_hold(
        engine: StoreEngine) -> None:
    p = Partnership(engine)
    person = p.repo.create({"resourceType": "Patient", "birthDate": "1941-05-05",
                            "identifier": [{"system": NHS, "value": X}]}).stored.rid
    p.send("hospice", "h1.jsonl", hospice("C1", X))
    p.send("hospice", "h2.jsonl", hospice("C2", X, completed="2026-02-05"))
    holds = p.loader.list_held()
    assert len(holds) == 2 and all("born 1941-05-05" in h["reason"] for _, h in holds)
    first = next(k for k, h in holds if h["record"]["person"]["local_id"] == "C1")
    p.loader.resolve_held(first, patient_id=person, despite_differences=True)
    p.loader.retry_held()  # the birth date the reviewer accepted for X holds for C2 too
    assert p.loader.list_held() == []
    assert _holding(p, "C2") == [person]


def test_without_identity_tokens_every_hold_is_judged_again(engine: StoreEngine) -> None:
    repo = Repository(engine, derivations=())
    service = IngestService(repo)
    assert isinstance(service.loader, Loader) and not service.loader.key_tokens
    assert service.ingest("socialcare", "s.csv", ROW, today=TODAY).held == 1
    assert JUDGED_ON not in service.loader.list_held()[0][1]
    made = repo.create(dict(JOHN)).stored.rid
    service.loader.retry_held()
    assert service.loader.list_held() == []
    found = repo.read("Patient", made)
    assert '"SC1"' in (found.body or "")


def test_relinking_a_patient_in_the_middle_of_a_merge_chain_releases_the_hold(
        engine: StoreEngine) -> None:
    """A -> M1 -> M2 (links written over REST, which copy no ids), and B: both A's chain
    and B hold the hospice's C1, so its record is held with candidates M2 and B. M1, which
    holds no key of the record's, is re-linked to B: one person now, and the retry files
    the record there (found by review: only the chain's ends were watched)."""
    p = Partnership(engine)
    hospice_ids = "https://hospice.example.org.uk/Id/client"

    def patient(ident: dict[str, str], link: str | None = None) -> str:
        body: dict[str, Any] = {"resourceType": "Patient", "birthDate": "1940-01-01",
                                "identifier": [ident]}
        if link:
            body["link"] = [{"other": {"reference": f"Patient/{link}"}, "type": "replaced-by"}]
        return p.repo.create(body).stored.rid

    m2 = patient({"system": "urn:x", "value": "M2"})
    m1 = patient({"system": "urn:x", "value": "M1"}, link=m2)
    patient({"system": hospice_ids, "value": "C1"}, link=m1)
    b = patient({"system": hospice_ids, "value": "C1"})
    assert p.send("hospice", "h.jsonl", hospice("C1", None)).held == 1
    ((_, held),) = p.loader.list_held()
    assert held["reason"].startswith("2 Patients hold") and set(held["candidates"]) == {m2, b}
    p.repo.update({"resourceType": "Patient", "birthDate": "1940-01-01",
                   "identifier": [{"system": "urn:x", "value": "M1"}],
                   "link": [{"other": {"reference": f"Patient/{b}"}, "type": "replaced-by"}]},
                  rtype="Patient", rid=m1)
    p.loader.retry_held()
    assert p.loader.list_held() == []
    plans = p.all("CarePlan")
    assert plans and {c["subject"]["reference"] for c in plans} == {f"Patient/{b}"}


def test_restoring_the_end_of_an_a40_chain_releases_the_hold_that_named_its_middle(
        engine: StoreEngine) -> None:
    """HL7 A40s merge R into S and S into T; T is deleted over REST, so a hospice record
    giving R's NHS number is held naming S (the chain ends nowhere live). T restored (a
    PUT of what it held), the retry files the record on T, where the merges lead."""
    p = Partnership(engine)
    x, y, z = nhs_numbers(999000300, 3)
    for control, when, pid3 in (("CR", "202601010900", f"{x}^^^NHS^NH~R1^^^RXA^MR"),
                                ("CS", "202601010910", f"{y}^^^NHS^NH~S1^^^RXA^MR"),
                                ("CT", "202601010920", f"{z}^^^NHS^NH~T1^^^RXA^MR")):
        p.send("acute", f"{control}.hl7", adt(control, "A01", when, pid3, visit=f"V{control}"))
    p.send("acute", "m1.hl7", adt("CM1", "A40", "202601020900", f"{y}^^^NHS^NH~S1^^^RXA^MR",
                                  merged="R1^^^RXA^MR"))
    p.send("acute", "m2.hl7", adt("CM2", "A40", "202601030900", f"{z}^^^NHS^NH~T1^^^RXA^MR",
                                  merged="S1^^^RXA^MR"))
    (t,) = [q for q in p.patients() if "T1" in {i["value"] for i in q["identifier"]}
            and all(link.get("type") != "replaced-by" for link in q.get("link", []))]
    p.repo.delete("Patient", t["id"])
    assert p.send("hospice", "h.jsonl", hospice("H5", x, postcode="B63 9ZZ")).held == 1
    assert "by an HL7 A40, which holds no NHS number" in p.loader.list_held()[0][1]["reason"]
    p.repo.update({k: v for k, v in t.items() if k != "meta"}, rtype="Patient", rid=t["id"])
    p.loader.retry_held()
    assert p.loader.list_held() == []
    assert {c["subject"]["reference"] for c in p.all("CarePlan")} == {f"Patient/{t['id']}"}


def test_a_held_record_the_retry_rejects_is_tried_once_per_run(engine: StoreEngine) -> None:
    """An A03 under a temporary MRN, held, whose stay ends before it starts: the A40 that
    lets it through makes the retry reject it. It was tried (and counted) once in each
    of the retry's passes (found by review)."""
    p = Partnership(engine)
    p.send("acute", "x.hl7", adt("C1", "A01", "202601020900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                 visit="V1"))
    bad = adt("C2", "A03", "202601030900", "T1^^^RXA^MR", visit="V2",
              address="1 High St^^Dudley^^B63 9ZZ").decode()
    bad = bad.replace("202601030900\r", "202601030900|202601020900\r")  # PV1-45 < PV1-44
    assert p.send("acute", "t.hl7", bad.encode()).held == 1
    merge = p.send("acute", "m.hl7", adt("C3", "A40", "202601040900",
                                         f"{X}^^^NHS^NH~M1^^^RXA^MR", merged="T1^^^RXA^MR"))
    assert merge.retried is not None and merge.retried.rejected == 1
    assert [r["file"] for r in merge.rejections] == ["t.hl7"]
