"""Identity across HL7 A40 merges, reviewers' choices and partners' spellings.

Each test drives real feed text through `IngestService` on SQLite and mongomock, and
failed before the fix it names: a wrong identity decision joins two people (one person's
CPR decision shown for another) or splits one (a crew finds no decision)."""

from __future__ import annotations

import json
from typing import Any

import identity_kit
import pytest
from fastapi.testclient import TestClient
from identity_kit import (
    COUNCIL_HEAD,
    GP_HEAD,
    NHS,
    X,
    Y,
    adt,
    hospice,
    nhs_numbers,
)

from fhir_gateway.errors import Conflict
from fhir_gateway.store.base import StoreEngine

RESUSCITATION_STATUS = "304251008"


def gp_row(nhs: str, dnacpr_date: str = "01/02/2026") -> bytes:
    return (GP_HEAD + f"{nhs},SMITH,John,01/01/1940,M,Y90028,Dr Clarke,29/11/2025,Red,"
            f"Home,25/12/2025,Y,{dnacpr_date},Plan,11/03/2026,,\n").encode()


def community(postcode: str) -> bytes:
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [{
        "fullUrl": "urn:uuid:c1", "resource": {
            "resourceType": "Patient", "id": "C1",
            "identifier": [{"system": NHS, "value": X},
                           {"system": "https://community.example.nhs.uk/Id/patient",
                            "value": "C1"}],
            "name": [{"family": "Smith", "given": ["John"]}], "birthDate": "1940-01-01",
            "address": [{"line": ["1 High St"], "postalCode": postcode}]}}]}).encode()


class Partnership(identity_kit.Partnership):
    def held(self) -> list[tuple[str, str, list[str]]]:
        return [(k, h["reason"], h["candidates"]) for k, h in self.loader.list_held()]

    def held_key(self, record: str) -> str:
        """The key of the one record held for `record` ("partner/record id"): keys add
        a hash of the record's text."""
        (key,) = [k for k, *_ in self.held() if k.startswith(f"{record}/")]
        return key

    def holders(self, nhs: str) -> list[str]:
        return [p["id"] for p in self.patients()
                if any(i.get("system") == NHS and i.get("value") == nhs
                       for i in p.get("identifier", []))]

    def decisions(self) -> list[dict[str, Any]]:
        return [o for o in self.all("Observation") if RESUSCITATION_STATUS in json.dumps(o)]


@pytest.fixture
def partnership(engine: StoreEngine) -> Partnership:
    return Partnership(engine)


# -- postcodes -------------------------------------------------------------------------


@pytest.mark.parametrize("sent", ["dy14dx", "DY14DX", "dy1 4dx"])
def test_a_council_row_matches_a_community_patient_whatever_its_postcode_spelling(
        partnership: Partnership, sent: str) -> None:
    # The community trust's address is stored as sent; the council writes DY1 4DX. One
    # person, one postcode: the row was held ("no Patient with this name ...").
    partnership.send("community", "bundle-1.json", community(sent))
    row = (COUNCIL_HEAD + "SC1,Mr,John,Smith,1940-01-01,DY1 4DX,,Home care,2026-02-01,,A,B\n")
    council = partnership.send("socialcare", "s.csv", row.encode())
    assert council.held == 0, partnership.held()
    (person,) = partnership.patients()
    assert {i["value"] for i in person["identifier"]} == {X, "C1", "SC1"}


def test_another_postcode_in_the_same_district_does_not_match(
        partnership: Partnership) -> None:
    # the whole postcode must agree, not only its district (DY1)
    partnership.send("community", "bundle-1.json", community("dy14dy"))
    row = (COUNCIL_HEAD + "SC1,Mr,John,Smith,1940-01-01,DY1 4DX,,Home care,2026-02-01,,A,B\n")
    council = partnership.send("socialcare", "s.csv", row.encode())
    assert council.held == 1


# -- a reviewer's attachment never gives a live Patient's NHS number to another -----------


def hospice_client_known_twice(p: Partnership) -> tuple[str, str, str]:
    """A01 gives NHS X to Patient A; the hospice's client H5 (no NHS number, another
    postcode) is settled by a reviewer with a new Patient P; then H5 comes with X: held,
    listing A and P. Returns (held key, A, P)."""
    p.send("acute", "a.hl7", adt("C1", "A01", "202601010900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                 visit="V1"))
    p.send("hospice", "h0.jsonl", hospice("H5", None, postcode="B63 9ZZ"))
    p.loader.resolve_held(p.held_key("hospice/H5"))
    later = p.send("hospice", "h1.jsonl", hospice("H5", X, "not-attempt", "2026-02-01",
                                                  postcode="B63 9ZZ"))
    assert later.held == 1
    ((key, _reason, candidates),) = p.held()
    (a,) = p.holders(X)
    (other,) = [c for c in candidates if c != a]
    return key, a, other


def test_a_reviewer_cannot_attach_a_live_patients_nhs_number_to_another(
        partnership: Partnership) -> None:
    # Attaching H5 (NHS X) to P wrote X onto P while A held it: two Patients for X, every
    # later record for X held, and the crew's summary for X a 409.
    key, a, other = hospice_client_known_twice(partnership)
    with pytest.raises(Conflict, match=f"NHS number {X} is on Patient/{a}"):
        partnership.loader.resolve_held(key, patient_id=other)
    assert partnership.holders(X) == [a]
    assert [k for k, *_ in partnership.held()] == [key]  # still held, nothing written
    gp = partnership.send("gp", "gp.csv", gp_row(X))
    assert gp.held == 0, partnership.held()


def test_attaching_to_the_holder_merges_in_the_patient_made_only_for_the_local_id(
        partnership: Partnership) -> None:
    # The other choice failed too: H5 came off P, which the profile then refused (no
    # identifier), so the attachment was rejected and the hold could never be settled.
    # P held nothing but H5: everything on it is H5's person, whom the reviewer says is A.
    key, a, other = hospice_client_known_twice(partnership)
    settled = partnership.loader.resolve_held(key, patient_id=a)
    assert settled.rejected == 0, settled.rejections
    assert partnership.held() == [] and partnership.holders(X) == [a]
    assert [p["id"] for p in partnership.active()] == [a]
    (p,) = [q for q in partnership.patients() if q["id"] == other]
    assert p["link"] == [{"other": {"reference": f"Patient/{a}"}, "type": "replaced-by"}]
    assert {d["subject"]["reference"] for d in partnership.decisions()} == {f"Patient/{a}"}
    again = partnership.send("hospice", "h2.jsonl", hospice("H5", X, "not-attempt",
                                                           "2026-02-01", postcode="B63 9ZZ"))
    assert (again.held, again.created) == (0, 0), partnership.held()


def test_an_attached_a40_merges_in_the_patient_made_only_for_its_local_id(
        partnership: Partnership) -> None:
    """With an A40 of its own, the attached record's emptied Patient was skipped: MRN Y1
    stayed on two live Patients (the next message for it held again, the reviewer's
    decision undone) and the stay VY stayed off the survivor crews find by NHS number."""
    p = partnership
    n, m = nhs_numbers(999000400, 2)
    p.send("acute", "y.hl7", adt("CY", "A01", "202601010900", "Y1^^^RXA^MR", visit="VY",
                                 address="9 Low Rd^^Halesowen^^B63 8EE"))
    p.loader.resolve_held(p.held_key("acute/CY"))  # MRN only: a new Patient, Y
    p.send("acute", "x.hl7", adt("CX", "A01", "202601020900", f"{n}^^^NHS^NH~X1^^^RXA^MR",
                                 visit="VX"))
    p.send("acute", "m.hl7", adt("CM", "A01", "202601030900", f"{m}^^^NHS^NH~M1X^^^RXA^MR",
                                 visit="VM"))
    a40 = adt("C40", "A40", "202601040900", f"{n}^^^NHS^NH~Y1^^^RXA^MR",
              merged=f"{m}^^^NHS^NH~M1X^^^RXA^MR")
    assert p.send("acute", "a40.hl7", a40).held == 1
    (x,) = p.holders(n)
    p.loader.resolve_held(p.held_key("acute/C40"), patient_id=x)
    assert [q["id"] for q in p.active()] == [x]
    assert {e["subject"]["reference"] for e in p.all("Encounter")} == {f"Patient/{x}"}
    later = p.send("acute", "a08.hl7", adt("C41", "A08", "202601050900",
                                           f"{n}^^^NHS^NH~Y1^^^RXA^MR"))
    assert later.held == 0, p.held()


def test_attaching_merges_in_every_patient_made_only_for_the_local_id(
        partnership: Partnership) -> None:
    """Only the first such Patient was merged; the second was "released" with no
    identifier, which the profile refused: a 422 the commit said it had removed."""
    p = partnership
    (n,) = nhs_numbers(999000700, 1)
    p.send("acute", "y.hl7", adt("CY", "A01", "202601010900", "Y1^^^RXA^MR", visit="VY",
                                 address="9 Low Rd^^Halesowen^^B63 8EE"))
    p.loader.resolve_held(p.held_key("acute/CY"))
    (y,) = p.patients()
    p.repo.create({"resourceType": "Patient", "identifier": y["identifier"],
                   "name": y["name"], "birthDate": y["birthDate"]})  # a second one
    p.send("acute", "x.hl7", adt("CX", "A01", "202601020900", f"{n}^^^NHS^NH~X1^^^RXA^MR",
                                 visit="VX"))
    assert p.send("acute", "y2.hl7", adt("CY2", "A08", "202601030900", "Y1^^^RXA^MR")).held
    (x,) = p.holders(n)
    settled = p.loader.resolve_held(p.held_key("acute/CY2"), patient_id=x)
    assert settled.rejected == 0
    assert [q["id"] for q in p.active()] == [x]


def test_over_http_the_attachment_is_a_409_naming_the_holder(
        partnership: Partnership, client: TestClient) -> None:
    key, a, other = hospice_client_known_twice(partnership)
    r = client.post(f"/review/held/{key}", json={"patient": other})
    assert r.status_code == 409, r.text
    assert f"NHS number {X} is on Patient/{a}" in r.json()["issue"][0]["diagnostics"]
    assert partnership.holders(X) == [a]
    summary = client.get(f"/fhir/Patient/$emergency-summary?identifier={NHS}|{X}")
    assert summary.status_code == 200, summary.text


# -- an A40 whose survivor has no NHS number ------------------------------------------


def emergency_record_merged_with_nhs(p: Partnership) -> str:
    """NHS X on the record of MRN M2; an emergency admission under MRN M1 only (another
    postcode: held, settled by a reviewer with a new Patient); then the PAS merges M2
    (with X) into M1. Returns the survivor's id."""
    p.send("acute", "b.hl7", adt("C2", "A01", "202601020900", f"{X}^^^NHS^NH~M2^^^RXA^MR",
                                 visit="V2"))
    p.send("acute", "a.hl7", adt("C1", "A01", "202601030900", "M1^^^RXA^MR", visit="V1",
                                 address="1 High St^^Dudley^^B63 9ZZ"))
    p.loader.resolve_held(p.held_key("acute/C1"))
    (survivor,) = [q["id"] for q in p.patients()
                   if any(i.get("value") == "M1" for i in q["identifier"])]
    merge = p.send("acute", "m.hl7", adt("C3", "A40", "202601040900", "M1^^^RXA^MR",
                                         merged=f"{X}^^^NHS^NH~M2^^^RXA^MR"))
    assert (merge.held, merge.rejected) == (0, 0), (p.held(), merge.rejections)
    return survivor


def test_an_a40_into_a_survivor_without_an_nhs_number_moves_the_number_to_it(
        partnership: Partnership, client: TestClient) -> None:
    # The merge left X on no Patient: the crew's NHS number search found nobody, and the
    # GP's DNACPR for X was held ("... which holds another NHS number": it held none).
    survivor = emergency_record_merged_with_nhs(partnership)
    assert partnership.holders(X) == [survivor]
    found = client.get(f"/fhir/Patient?identifier={NHS}|{X}").json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [survivor]
    gp = partnership.send("gp", "gp.csv", gp_row(X))
    assert gp.held == 0, partnership.held()
    assert {d["subject"]["reference"] for d in partnership.decisions()} == {
        f"Patient/{survivor}"}
    again = partnership.send("acute", "m2.hl7", adt("C3", "A40", "202601040900",
                                                    "M1^^^RXA^MR",
                                                    merged=f"{X}^^^NHS^NH~M2^^^RXA^MR"))
    assert again.held == 0 and partnership.held() == []


# -- an NHS number an A40 retired leads to the survivor -------------------------------


def merged_pair(p: Partnership) -> str:
    """The hospital knew one man twice (M1/NHS X, M2/NHS Y), the hospice as H1 with Y;
    then an A40 merges M2 into M1. Returns the survivor's id."""
    p.send("acute", "a.hl7", adt("C1", "A01", "202601010900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                 visit="V1"))
    p.send("acute", "b.hl7", adt("C2", "A01", "202601020900", f"{Y}^^^NHS^NH~M2^^^RXA^MR",
                                 visit="V2"))
    p.send("hospice", "h1.jsonl", hospice("H1", Y))
    p.send("acute", "m.hl7", adt("C3", "A40", "202601030900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                 merged=f"{Y}^^^NHS^NH~M2^^^RXA^MR"))
    (survivor,) = p.active()
    return str(survivor["id"])


def test_records_for_a_retired_nhs_number_go_to_the_survivor_which_keeps_its_own(
        partnership: Partnership) -> None:
    # They were held ("merged into Patient/A by an HL7 A40, which holds another NHS
    # number"), and attaching them to A was rejected (2 nhsNumber): no choice placed them.
    survivor = merged_pair(partnership)
    hospice_again = partnership.send("hospice", "h1.jsonl", hospice("H1", Y))
    dnacpr = partnership.send("hospice", "h2.jsonl", hospice("H1", Y, "not-attempt",
                                                            "2026-02-01"))
    gp = partnership.send("gp", "gp.csv", gp_row(Y))
    assert (hospice_again.held, dnacpr.held, gp.held) == (0, 0, 0), partnership.held()
    assert (dnacpr.rejected, gp.rejected) == (0, 0)
    assert [p["id"] for p in partnership.active()] == [survivor]
    assert partnership.holders(X) == [survivor] and partnership.holders(Y) == []
    assert {d["subject"]["reference"] for d in partnership.decisions()} == {
        f"Patient/{survivor}"}


@pytest.mark.parametrize("order", [("A01 X", "A01 Y", "A40", "GP Y"),
                                   ("A01 X", "GP Y", "A01 Y", "A40"),
                                   ("A40", "GP Y", "A01 X", "A01 Y")])
def test_a_retired_nhs_numbers_dnacpr_ends_the_same_in_any_order(
        partnership: Partnership, order: tuple[str, ...]) -> None:
    messages = {
        "A01 X": ("acute", adt("C1", "A01", "202601010900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                               visit="V1")),
        "A01 Y": ("acute", adt("C2", "A01", "202601020900", f"{Y}^^^NHS^NH~M2^^^RXA^MR",
                               visit="V2")),
        "A40": ("acute", adt("C3", "A40", "202601030900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                             merged=f"{Y}^^^NHS^NH~M2^^^RXA^MR")),
        "GP Y": ("gp", gp_row(Y)),
    }
    for i, name in enumerate(order):
        partner, data = messages[name]
        partnership.send(partner, f"{i}.{'csv' if partner == 'gp' else 'hl7'}", data)
    partnership.loader.retry_held()
    (survivor,) = partnership.active()
    assert partnership.held() == []
    assert len(partnership.decisions()) == 1
    assert partnership.holders(X) == [survivor["id"]]


def council_row_for_y_held(p: Partnership) -> tuple[str, str, str]:
    """The council's SC1 (settled earlier with a new Patient C) comes with the retired Y:
    held, its local id pointing elsewhere. Returns (held key, survivor, C)."""
    survivor = merged_pair(p)
    p.send("socialcare", "s1.csv", (
        COUNCIL_HEAD + "SC1,Mr,John,Smith,1940-01-01,B63 8EE,,Home care,2026-01-01,,A,B\n"
    ).encode())
    (first,) = [k for k, *_ in p.held() if "SC1" in k]
    p.loader.resolve_held(first)
    (c,) = [q["id"] for q in p.active() if q["id"] != survivor]
    again = p.send("socialcare", "s2.csv", (
        COUNCIL_HEAD + f"SC1,Mr,John,Smith,1940-01-01,B63 8EE,{Y},Meals,2026-02-01,,A,B\n"
    ).encode())
    assert again.held == 1
    ((key, reason, _),) = [h for h in p.held() if "SC1" in h[0]]
    assert f"which holds NHS number {X}" in reason  # not "another": said what it holds
    return key, survivor, c


def test_a_reviewer_attaches_a_retired_nhs_number_to_the_survivor(
        partnership: Partnership) -> None:
    key, survivor, _c = council_row_for_y_held(partnership)
    settled = partnership.loader.resolve_held(key, patient_id=survivor)
    assert settled.rejected == 0, settled.rejections
    assert partnership.held() == []
    assert partnership.holders(X) == [survivor] and partnership.holders(Y) == []
    assert [p["id"] for p in partnership.active()] == [survivor]  # C held only SC1


def test_a_reviewer_cannot_split_a_retired_nhs_number_off_the_survivor(
        partnership: Partnership, client: TestClient) -> None:
    # --create was allowed (the Patient made for Y is not live) and split the person again
    key, survivor, c = council_row_for_y_held(partnership)
    with pytest.raises(Conflict, match=f"attach the record to it \\(--patient {survivor}\\)"):
        partnership.loader.resolve_held(key)
    with pytest.raises(Conflict, match=f"--patient {survivor}"):
        partnership.loader.resolve_held(key, patient_id=c)
    r = client.post(f"/review/held/{key}", json={"create": True})
    assert r.status_code == 409, r.text
    assert f"Patient/{survivor}" in r.json()["issue"][0]["diagnostics"]
    assert [k for k, *_ in partnership.held()] == [key]
    assert len(partnership.active()) == 2 and partnership.holders(Y) == []


# -- an A40 naming the NHS number the PAS traced for the duplicate --------------------


def duplicate_emergency_record(p: Partnership, pid3: str = "M2^^^RXA^MR") -> tuple[str, str]:
    """NHS X on MRN M1's Patient A; an emergency registration under MRN M2 (another
    address: held when it has no NHS number, settled with a new Patient B). Returns
    (A, B)."""
    p.send("acute", "a.hl7", adt("C1", "A01", "202601010900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                 visit="V1"))
    p.send("acute", "e.hl7", adt("C2", "A01", "202601020900", pid3, visit="V2",
                                 address="9 Low Rd^^Halesowen^^B63 8EE"))
    if p.held():  # MRN only: no Patient matches, so a reviewer makes one
        p.loader.resolve_held(p.held_key("acute/C2"))
    (a,) = p.holders(X)
    (b,) = [q["id"] for q in p.patients() if q["id"] != a]
    return a, b


def test_an_a40_naming_the_survivors_traced_number_merges_the_duplicate(
        partnership: Partnership) -> None:
    # MRG-1 lists M2 and X: "X on A, M2 on B" held it as uncertain, and no review choice
    # settled it (attach: held again; --create: 409). B is the record merged away.
    a, b = duplicate_emergency_record(partnership)
    merge = partnership.send("acute", "m.hl7", adt(
        "C3", "A40", "202601030900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
        merged=f"{X}^^^NHS^NH~M2^^^RXA^MR"))
    assert (merge.held, merge.rejected) == (0, 0), (partnership.held(), merge.rejections)
    assert [p["id"] for p in partnership.active()] == [a]
    assert partnership.holders(X) == [a]
    (merged_away,) = [q for q in partnership.patients() if q["id"] == b]
    assert merged_away["link"] == [{"other": {"reference": f"Patient/{a}"},
                                    "type": "replaced-by"}]
    stays = partnership.all("Encounter")
    assert {e["subject"]["reference"] for e in stays} == {f"Patient/{a}"} and len(stays) == 2
    again = partnership.send("acute", "m2.hl7", adt(
        "C3", "A40", "202601030900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
        merged=f"{X}^^^NHS^NH~M2^^^RXA^MR"))
    assert again.held == 0 and partnership.held() == []


def test_an_a40_whose_duplicate_holds_another_nhs_number_stays_held(
        partnership: Partnership) -> None:
    # B holds Z: MRG's X and B's Z disagree about who B is, so nothing is merged by guess
    z = nhs_numbers(999000400, 1)[0]
    a, b = duplicate_emergency_record(partnership, f"{z}^^^NHS^NH~M2^^^RXA^MR")
    merge = partnership.send("acute", "m.hl7", adt(
        "C3", "A40", "202601030900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
        merged=f"{X}^^^NHS^NH~M2^^^RXA^MR"))
    assert merge.held == 1
    assert sorted(p["id"] for p in partnership.active()) == sorted([a, b])
    assert partnership.holders(z) == [b] and partnership.holders(X) == [a]


def test_a_review_choice_that_cannot_settle_an_a40_says_so(
        partnership: Partnership, client: TestClient) -> None:
    # Attaching the held A40 to a candidate answered as if settled ("held": 1, 200) and
    # left it held: a reviewer could not tell the choice had done nothing.
    z = nhs_numbers(999000400, 1)[0]
    a, b = duplicate_emergency_record(partnership, f"{z}^^^NHS^NH~M2^^^RXA^MR")
    partnership.send("acute", "m.hl7", adt(
        "C3", "A40", "202601030900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
        merged=f"{X}^^^NHS^NH~M2^^^RXA^MR"))
    ((key, reason, _),) = partnership.held()
    with pytest.raises(Conflict, match="the PAS must send a corrected merge"):
        partnership.loader.resolve_held(key, patient_id=a)
    with pytest.raises(Conflict, match=f"NHS number {X} is on Patient/{a}"):
        partnership.loader.resolve_held(key, patient_id=b)  # PID's X is A's
    r = client.post(f"/review/held/{key}", json={"patient": a})
    assert r.status_code == 409, r.text
    assert partnership.held() == [(key, reason, [a, b])]
    assert sorted(p["id"] for p in partnership.active()) == sorted([a, b])


def test_a_review_choice_for_an_a40_that_came_first_says_it_waits(
        partnership: Partnership) -> None:
    partnership.send("acute", "a.hl7", adt("C1", "A01", "202601010900",
                                           f"{X}^^^NHS^NH~M1^^^RXA^MR", visit="V1"))
    partnership.send("acute", "m.hl7", adt("C3", "A40", "202601030900",
                                           f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                           merged=f"{Y}^^^NHS^NH~M2^^^RXA^MR"))
    ((key, _, _),) = partnership.held()
    (a,) = partnership.holders(X)
    with pytest.raises(Conflict, match="applied when that record arrives"):
        partnership.loader.resolve_held(key, patient_id=a)
    partnership.send("acute", "b.hl7", adt("C2", "A01", "202601020900",
                                           f"{Y}^^^NHS^NH~M2^^^RXA^MR", visit="V2"))
    assert partnership.held() == [] and [p["id"] for p in partnership.active()] == [a]


# -- an A40 merging a temporary MRN whose only records are held ----------------------


@pytest.mark.parametrize("order", [("A01 X", "A01 T1", "A40"), ("A01 X", "A40", "A01 T1"),
                                   ("A40", "A01 X", "A01 T1"), ("A01 T1", "A40", "A01 X")])
def test_an_a40_merging_a_held_temporary_mrn_files_its_records_on_the_survivor(
        partnership: Partnership, order: tuple[str, ...]) -> None:
    """An emergency admission under a temporary MRN alone, at another postcode, is held
    (no confident match); the PAS then merges that MRN into the person's real record.
    The A40 waited for a Patient of the MRN, and the admission for a reviewer: each for
    the other, in every order. The PAS has said whose the MRN is: the survivor takes it,
    as a merge gives it the ids of the record it merges away, and the admission follows."""
    messages = {
        "A01 X": adt("C1", "A01", "202601020900", f"{X}^^^NHS^NH~M1^^^RXA^MR", visit="V1"),
        "A01 T1": adt("C2", "A01", "202601030900", "T1^^^RXA^MR", visit="V2",
                      address="1 High St^^Dudley^^B63 9ZZ"),
        "A40": adt("C3", "A40", "202601040900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                   merged="T1^^^RXA^MR"),
    }
    for i, name in enumerate(order):
        partnership.send("acute", f"{i}.hl7", messages[name])
    assert partnership.held() == []
    (person,) = partnership.patients()
    assert {i["value"] for i in person["identifier"]} == {X, "M1", "T1"}
    visits = {e["identifier"][0]["value"]: e["subject"]["reference"]
              for e in partnership.all("Encounter")}
    assert visits == {"V1": f"Patient/{person['id']}", "V2": f"Patient/{person['id']}"}
    again = partnership.send("acute", "again.hl7", messages["A40"])
    assert (again.held, again.created, again.updated) == (0, 0, 0)


@pytest.mark.parametrize("second_first", [False, True])
def test_two_a40s_merging_one_held_temporary_mrn_into_two_people_hold_the_second(
        partnership: Partnership, second_first: bool) -> None:
    """T1 known only by a held admission; one A40 merges it into X's record, another into
    Ann's (Y). The first gives T1 to its survivor; the second then found T1 there and
    merged the whole of that person into the other (found by review). As when T1 is a
    Patient of its own, the second is held: two people stay two."""
    ann = dict(name="JONES^ANN", born="19500505", address="2 Low St^^Dudley^^DY2 7AA")
    partnership.send("acute", "x.hl7", adt("C1", "A01", "202601020900",
                                           f"{X}^^^NHS^NH~M1^^^RXA^MR", visit="V1"))
    partnership.send("acute", "y.hl7", adt("C2", "A01", "202601020905",
                                           f"{Y}^^^NHS^NH~M2^^^RXA^MR", visit="VY", **ann))
    partnership.send("acute", "t.hl7", adt("C3", "A01", "202601030900", "T1^^^RXA^MR",
                                           visit="V2", address="1 High St^^Dudley^^B63 9ZZ"))
    merges = [adt("C4", "A40", "202601040900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                  merged="T1^^^RXA^MR"),
              adt("C5", "A40", "202601040905", f"{Y}^^^NHS^NH~M2^^^RXA^MR",
                  merged="T1^^^RXA^MR", **ann)]
    for i, message in enumerate(reversed(merges) if second_first else merges):
        partnership.send("acute", f"m{i}.hl7", message)
    assert len(partnership.active()) == 2
    assert sorted(len(partnership.holders(n)) for n in (X, Y)) == [1, 1]
    (held,) = partnership.held()
    assert held[0].startswith("acute/C5/" if not second_first else "acute/C4/")
    assert "was given to Patient/" in held[1]


@pytest.mark.parametrize("hospice_first", [False, True])
def test_an_a40_whose_merged_record_has_an_nhs_number_waits_for_it_in_every_order(
        partnership: Partnership, hospice_first: bool) -> None:
    """MRG-1 gives T1 and NHS number Z; T1's admission is held. Applied at once, the A40
    recorded Z nowhere, so the hospice's record of Z stayed a second person when it came
    after (found by review). It waits for Z's Patient, as before, and merges it."""
    z = nhs_numbers(999000500, 1)[0]
    sends = [("acute", adt("C1", "A01", "202601020900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                           visit="V1")),
             ("acute", adt("C2", "A01", "202601030900", "T1^^^RXA^MR", visit="V2",
                           address="1 High St^^Dudley^^B63 9ZZ")),
             ("acute", adt("C3", "A40", "202601040900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                           merged=f"{z}^^^NHS^NH~T1^^^RXA^MR"))]
    sends.insert(1 if hospice_first else 3, ("hospice", hospice("H1", z)))
    for i, (partner, data) in enumerate(sends):
        partnership.send(partner, f"{i}.{'hl7' if partner == 'acute' else 'jsonl'}", data)
    (person,) = partnership.active()
    assert {i["value"] for i in person["identifier"]} >= {X, "M1", "H1"}
