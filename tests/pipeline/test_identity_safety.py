"""Identity after merges, reviews and partners' copies of each other's identifiers.

A wrong identity decision is the worst defect a shared record can have: two people joined
means one person's CPR decision is shown for another; one person split leaves a crew with
no decision. Each test here drives real feed text through `IngestService` on SQLite and
mongomock, and failed before the fix it names."""

from __future__ import annotations

import json

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

from fhir_gateway import jsonio
from fhir_gateway.errors import Conflict, Gone
from fhir_gateway.pipeline.loader import from_json
from fhir_gateway.store.base import StoreEngine
from fhir_gateway.store.query import IndexQuery


class Partnership(identity_kit.Partnership):
    def held(self) -> list[tuple[str, str]]:
        return [(k, h["reason"]) for k, h in self.service.loader.list_held()]


@pytest.fixture
def partnership(engine: StoreEngine) -> Partnership:
    return Partnership(engine)


def merged_pair(p: Partnership) -> None:
    """The hospital knew one man twice (M1/NHS X, M2/NHS Y), the hospice as H1 with Y;
    then an A40 merges M2 into M1."""
    p.send("acute", "a.hl7", adt("C1", "A01", "202601010900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                 visit="V1"))
    p.send("acute", "b.hl7", adt("C2", "A01", "202601020900", f"{Y}^^^NHS^NH~M2^^^RXA^MR",
                                 visit="V2"))
    p.send("hospice", "h1.jsonl", hospice("H1", Y))
    p.send("acute", "m.hl7", adt("C3", "A40", "202601030900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                 merged=f"{Y}^^^NHS^NH~M2^^^RXA^MR"))
    assert len(p.active()) == 1


def test_after_a_merge_the_merged_away_records_ids_lead_to_the_survivor(
        partnership: Partnership) -> None:
    # The merge copies M2 and H1 to the survivor and leaves them on the old record: both
    # hold them, and each later record carrying one was held for ever ("2 Patients hold").
    merged_pair(partnership)
    (survivor,) = partnership.active()
    dnacpr = partnership.send("hospice", "h2.jsonl", hospice("H1", X, "not-attempt",
                                                            "2026-02-01"))
    late = partnership.send("acute", "late.hl7", adt("C4", "A03", "202601040900",
                                                     "M2^^^RXA^MR", visit="V2"))
    assert (dnacpr.held, late.held) == (0, 0), partnership.held()
    decisions = [o for r in partnership.repo.find(IndexQuery(rtype="Observation")).rows
                 if "304251008" in json.dumps(o := jsonio.loads_trusted(r.body))]
    newest = max(decisions, key=lambda o: o["effectiveDateTime"])
    assert newest["valueCodeableConcept"]["coding"][0]["code"] == "450476008"
    assert newest["subject"]["reference"] == f"Patient/{survivor['id']}"


def test_a_death_recorded_on_the_merged_away_record_stays_on_the_survivor(
        partnership: Partnership) -> None:
    # The GP records the death against NHS Y (Patient B); the hospital then merges B into
    # A (A40). The one record left must still say the person died. (A GP row for Y sent
    # after the merge is held for review instead: see above.)
    spaced = f"{Y[:3]} {Y[3:6]} {Y[6:]}"
    gp = (GP_HEAD + f"{spaced},SMITH,John,01/01/1940,M,Y90028,Dr Clarke,29/11/2025,Red,"
          "Home,25/12/2025,N,,Plan,11/03/2026,20/05/2026,Home\n").encode()
    partnership.send("acute", "b.hl7", adt("C2", "A01", "202601020900",
                                           f"{Y}^^^NHS^NH~M2^^^RXA^MR", visit="V2"))
    assert partnership.send("gp", "gp.csv", gp).updated == 1
    merged_pair(partnership)
    (survivor,) = partnership.active()
    assert survivor.get("deceasedDateTime") == "2026-05-20", survivor


def test_a_merge_the_store_refuses_is_rejected_and_the_file_goes_on(
        partnership: Partnership) -> None:
    # The GP's Patient for Y holds only the NHS number; an A40 merging it into A would
    # leave it with no identifier, which its profile refuses. That A40 is rejected for
    # review with the reason; it must not stop the file (it raised out of ingest).
    spaced = f"{Y[:3]} {Y[3:6]} {Y[6:]}"
    partnership.send("gp", "gp.csv", (
        GP_HEAD + f"{spaced},SMITH,John,01/01/1940,M,Y90028,Dr Clarke,29/11/2025,Red,"
        "Home,25/12/2025,N,,Plan,11/03/2026,,\n").encode())
    partnership.send("acute", "a.hl7", adt("C1", "A01", "202601010900",
                                           f"{X}^^^NHS^NH~M1^^^RXA^MR", visit="V1"))
    after = adt("C4", "A01", "202601040900", f"{X}^^^NHS^NH~M1^^^RXA^MR", visit="V4")
    result = partnership.send("acute", "m.hl7", adt(
        "C3", "A40", "202601030900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
        merged=f"{Y}^^^NHS^NH") + after)
    assert result.rejected == 1 and result.created == 1, result.to_json()
    (rejection,) = result.rejections
    assert rejection["position"] == "message 1" and rejection["field"] == "Patient.identifier"
    assert "was refused" in rejection["reason"]
    assert len(partnership.active()) == 2  # nothing of the merge was written


def test_a_demographic_match_on_a_merged_away_record_finds_the_survivor(
        partnership: Partnership) -> None:
    merged_pair(partnership)
    (survivor,) = partnership.active()
    council = COUNCIL_HEAD + "SC1,Mr,John,Smith,1940-01-01,DY1 4DX,,Home care,2026-02-01,,A,B\n"
    summary = partnership.send("socialcare", "s.csv", council.encode())
    assert summary.held == 0, partnership.held()
    plans = [jsonio.loads_trusted(r.body) for r in partnership.repo.find(
        IndexQuery(rtype="CarePlan")).rows]
    council_plans = [c for c in plans if "SC1" in json.dumps(c)]
    assert council_plans and all(c["subject"]["reference"] == f"Patient/{survivor['id']}"
                                 for c in council_plans)


def test_a_merged_away_nhs_number_is_held_even_when_a_local_id_matches(
        partnership: Partnership) -> None:
    # Y now belongs to the survivor (the A40 said so). A council record for a Patient
    # with no NHS number, now carrying Y, must not take Y to that third Patient.
    merged_pair(partnership)
    partnership.send("socialcare", "s1.csv", (
        COUNCIL_HEAD + "SC1,Mr,John,Smith,1940-01-01,B63 8EE,,Home care,2026-01-01,,A,B\n"
    ).encode())
    (key,) = [k for k, _ in partnership.held() if "SC1" in k]
    partnership.service.loader.resolve_held(key)  # a reviewer: a new Patient for SC1
    again = partnership.send("socialcare", "s2.csv", (
        COUNCIL_HEAD + f"SC1,Mr,John,Smith,1940-01-01,B63 8EE,{Y},Meals,2026-02-01,,A,B\n"
    ).encode())
    assert again.held == 1
    assert any("merged into" in reason for k, reason in partnership.held() if "SC1" in k)
    holders = [p for p in partnership.patients()
               if any(i.get("value") == Y for i in p.get("identifier", []))]
    assert holders == []  # still on no Patient: the merge took it off the old record


def test_a_reviewers_attachment_sticks(partnership: Partnership) -> None:
    # NHS X on Patient A (GP), H1 on Patient B (hospice, NHS Y); the hospice then sends
    # H1 with X: held. The reviewer attaches it to A; the next delivery must follow.
    partnership.send("acute", "a.hl7", adt("C1", "A01", "202601010900", f"{X}^^^NHS^NH",
                                           visit="V1"))
    partnership.send("hospice", "h1.jsonl", hospice("H1", Y))
    partnership.send("hospice", "h2.jsonl", hospice("H1", X, "not-attempt", "2026-02-01"))
    (key, reason), = partnership.held()
    assert "local id H1" in reason
    a = next(p for p in partnership.patients()
             if any(i.get("value") == X for i in p.get("identifier", [])))
    partnership.service.loader.resolve_held(key, patient_id=a["id"])
    again = partnership.send("hospice", "h3.jsonl", hospice("H1", X, "not-attempt",
                                                           "2026-02-01"))
    assert (again.held, again.created, again.updated) == (0, 0, 0), partnership.held()
    holding_h1 = [p["id"] for p in partnership.patients()
                  if any(i.get("value") == "H1" for i in p.get("identifier", []))]
    assert holding_h1 == [a["id"]]


def test_a_reviewer_cannot_make_a_second_patient_for_a_live_nhs_number(
        partnership: Partnership) -> None:
    # as above: H1 with X is held; X is on Patient A. "A new Patient" would make two
    # records for one person (which one would a crew's NHS number search find?)
    partnership.send("acute", "a.hl7", adt("C1", "A01", "202601010900", f"{X}^^^NHS^NH",
                                           visit="V1"))
    partnership.send("hospice", "h1.jsonl", hospice("H1", Y))
    partnership.send("hospice", "h2.jsonl", hospice("H1", X, "not-attempt", "2026-02-01"))
    (key, _), = partnership.held()
    a = next(p for p in partnership.patients()
             if any(i.get("value") == X for i in p.get("identifier", [])))
    with pytest.raises(Conflict, match=f"NHS number {X} is on Patient/{a['id']}"):
        partnership.service.loader.resolve_held(key)
    assert [k for k, _ in partnership.held()] == [key]  # still held, nothing written
    assert len(partnership.patients()) == 2
    partnership.service.loader.resolve_held(key, patient_id=a["id"])
    assert partnership.held() == []


def test_over_http_the_second_patient_is_a_409_naming_the_patient(
        partnership: Partnership, client: TestClient) -> None:
    partnership.send("acute", "a.hl7", adt("C1", "A01", "202601010900", f"{X}^^^NHS^NH",
                                           visit="V1"))
    partnership.send("hospice", "h1.jsonl", hospice("H1", Y))
    partnership.send("hospice", "h2.jsonl", hospice("H1", X, "not-attempt", "2026-02-01"))
    (key, _), = partnership.held()
    r = client.post(f"/review/held/{key}", json={"create": True})
    assert r.status_code == 409, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert f"NHS number {X} is on Patient/" in outcome["issue"][0]["diagnostics"]
    assert [k for k, _ in partnership.held()] == [key]


def test_a_partners_copy_of_another_partners_identifier_links_nobody(
        partnership: Partnership) -> None:
    # The community trust's Patient carries an acute MRN (a stale copy). An emergency
    # admission with only that MRN, of a different woman, must not join his record.
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{
        "fullUrl": "urn:uuid:c1", "resource": {
            "resourceType": "Patient", "id": "C1",
            "identifier": [{"system": NHS, "value": X},
                           {"system": "https://community.example.nhs.uk/Id/patient",
                            "value": "C1"},
                           {"system": "https://acute.example.nhs.uk/Id/mrn", "value": "M5"}],
            "name": [{"family": "Jackson", "given": ["Ronald"]}], "birthDate": "1928-08-13",
            "address": [{"postalCode": "DY1 4DX"}]}}]}
    community = partnership.send("community", "bundle-1.json", json.dumps(bundle).encode())
    assert community.created == 1
    (ronald,) = partnership.patients()
    assert {i["system"] for i in ronald["identifier"]} == {
        NHS, "https://community.example.nhs.uk/Id/patient"}
    emergency = partnership.send("acute", "e.hl7", adt(
        "E1", "A01", "202601010900", "M5^^^RXA^MR", name="PATEL^ASHA", born="19550505",
        address="9 Low Rd^^Halesowen^^B63 8EE", visit="V9"))
    assert emergency.updated == 0
    (still,) = [p for p in partnership.patients() if p["id"] == ronald["id"]]
    assert still["name"][0]["family"] == "Jackson" and still["birthDate"] == "1928-08-13"


def test_a_merge_that_comes_before_its_records_is_held_then_applied(
        partnership: Partnership) -> None:
    # Out of order (A40, then the two admissions it merges) must end as in order: one
    # active Patient holding both stays. The A40 was dropped, leaving one person as two.
    merge = partnership.send("acute", "m.hl7", adt(
        "C3", "A40", "202601030900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
        merged=f"{Y}^^^NHS^NH~M2^^^RXA^MR"))
    assert merge.held == 1
    assert any("merges away is not known yet" in r for _, r in partnership.held())
    partnership.send("acute", "a.hl7", adt("C1", "A01", "202601010900",
                                           f"{X}^^^NHS^NH~M1^^^RXA^MR", visit="V1"))
    partnership.send("acute", "b.hl7", adt("C2", "A01", "202601020900",
                                           f"{Y}^^^NHS^NH~M2^^^RXA^MR", visit="V2"))
    (survivor,) = partnership.active()
    assert partnership.held() == []
    stays = [jsonio.loads_trusted(r.body) for r in partnership.repo.find(
        IndexQuery(rtype="Encounter")).rows]
    assert len(stays) == 2
    assert {e["subject"]["reference"] for e in stays} == {f"Patient/{survivor['id']}"}


def test_a_merge_applied_once_is_not_held_when_sent_again(partnership: Partnership) -> None:
    merged_pair(partnership)
    again = partnership.send("acute", "m2.hl7", adt(
        "C3", "A40", "202601030900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
        merged=f"{Y}^^^NHS^NH~M2^^^RXA^MR"))
    assert again.held == 0 and partnership.held() == []


def test_a_merge_naming_a_record_already_merged_elsewhere_is_held(
        partnership: Partnership) -> None:
    # M2 was merged into M1's Patient. A later A40 "merge M2 into M3" must not merge the
    # record M2 now leads to (M1's, a whole other record) into M3: it is held for review.
    merged_pair(partnership)
    (first,) = partnership.active()
    z = nhs_numbers(999000400, 1)[0]
    partnership.send("acute", "c.hl7", adt("C5", "A01", "202601050900",
                                           f"{z}^^^NHS^NH~M3^^^RXA^MR", visit="V3"))
    later = partnership.send("acute", "m3.hl7", adt(
        "C6", "A40", "202601060900", f"{z}^^^NHS^NH~M3^^^RXA^MR", merged="M2^^^RXA^MR"))
    assert later.held == 1
    assert any(reason.startswith("HL7 A40: the record it merges away") for _, reason in
               partnership.held())
    assert len(partnership.active()) == 2
    still = next(p for p in partnership.patients() if p["id"] == first["id"])
    assert any(i.get("value") == X for i in still["identifier"])


def test_an_nhs_number_given_with_another_birth_date_is_held(partnership: Partnership) -> None:
    """A council row for someone else carrying this man's (valid) NHS number, mistyped or
    copied, used to be filed on him and overwrite his name and birth date."""
    p = partnership
    p.send("acute", "a.hl7", adt("C1", "A01", "202601010900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                 visit="V1"))
    summary = p.send("socialcare", "s.csv", (
        COUNCIL_HEAD + f"SC7,Mr,Bob,Jones,05/05/1962,B63 9ZZ,{X},Home care,2025-07-08,,"
        "Dudley Homecare Ltd,A\n").encode())
    assert summary.held == 1 and summary.created == 0
    ((_, reason),) = p.held()
    assert "born 1940-01-01" in reason and "born 1962-05-05" in reason
    (patient,) = p.patients()
    assert patient["birthDate"] == "1940-01-01" and patient["name"][0]["family"] == "SMITH"


def test_the_partners_own_id_vouches_for_its_corrected_birth_date(
        partnership: Partnership) -> None:
    p = partnership
    p.send("acute", "a.hl7", adt("C1", "A01", "202601010900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                 visit="V1"))
    summary = p.send("acute", "b.hl7", adt("C2", "A08", "202601020900",
                                           f"{X}^^^NHS^NH~M1^^^RXA^MR", born="19400110"))
    assert summary.held == 0
    (patient,) = p.patients()
    assert patient["birthDate"] == "1940-01-10"


@pytest.mark.parametrize("placeholder", ["0000000000", "1111111111", "5555555555"])
def test_a_placeholder_nhs_number_links_nobody(partnership: Partnership,
                                               placeholder: str) -> None:
    """One digit ten times passes Modulus 11: two council clients sent with it became one
    Patient with both care plans."""
    p = partnership
    summary = p.send("socialcare", "s.csv", (
        COUNCIL_HEAD
        + f"SC1,Mr,John,Smith,1940-01-01,DY1 4DX,{placeholder},Home care,2025-01-01,,P,A\n"
        + f"SC2,Mrs,Jane,Jones,1950-02-02,B63 9ZZ,{placeholder},Home care,2025-02-02,,P,A\n"
    ).encode())
    assert summary.rejected == 2 and p.patients() == []
    assert all("placeholder" in r["reason"] for r in summary.rejections)


def test_a_demographic_match_holding_another_id_of_the_partners_is_held(
        partnership: Partnership) -> None:
    """The hospital gave this person another MRN: by its own account someone else, though
    name, birth date and postcode match."""
    p = partnership
    p.send("acute", "a.hl7", adt("C1", "A01", "202601010900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                 visit="V1"))
    summary = p.send("acute", "b.hl7", adt("C2", "A01", "202601020900", "M2^^^RXA^MR",
                                           visit="V2"))
    assert summary.held == 1
    ((_, reason),) = p.held()
    assert "M1" in reason and "M2" in reason
    (patient,) = p.patients()
    assert [i["value"] for i in patient["identifier"]] == [X, "M1"]


def a40_messages() -> dict[str, bytes]:
    first, second = nhs_numbers(999000300, 2)
    main = f"{first}^^^NHS^NH~RXA111^^^RXA^MR"
    dup = f"{second}^^^NHS^NH~RXA222^^^RXA^MR"
    return {
        "admitted": adt("M1", "A01", "202601011000", main, visit="V1",
                        address="1 High St^^Dudley^^DY1 1AA"),
        "duplicate": adt("M2", "A01", "202601021000", dup, visit="V2",
                         address="1 High St^^Dudley^^B63 9ZZ"),
        "merged": adt("M3", "A40", "202601031000", main, merged=dup),
        # a day after the merge, filed by the merged-away MRN: the person has moved
        "moved": adt("M4", "A08", "202601041000", "RXA222^^^RXA^MR",
                     address="1 High St^^Dudley^^B63 9ZZ"),
    }


@pytest.mark.parametrize("order", [("admitted", "duplicate", "merged", "moved"),
                                   ("admitted", "duplicate", "moved", "merged"),
                                   ("moved", "merged", "duplicate", "admitted")])
def test_a_merge_ends_the_same_in_any_delivery_order(partnership: Partnership,
                                                     order: tuple[str, ...]) -> None:
    """The A08 for the merged-away MRN (4 Jan) delivered before the A40 (3 Jan) stayed on
    the record merged away: the survivor kept the old postcode, unlike in event order."""
    messages = a40_messages()
    for i, name in enumerate(order):
        summary = partnership.send("acute", f"{i}.hl7", messages[name])
        assert summary.rejected == 0, summary.rejections
    partnership.service.loader.retry_held()
    (survivor,) = partnership.active()
    assert survivor["address"][0]["postalCode"] == "B63 9ZZ"
    assert sorted(i["value"] for i in survivor["identifier"])[-2:] == ["RXA111", "RXA222"]


def test_a_gp_row_with_another_birth_date_is_held_until_a_reviewer_attaches_it(
        partnership: Partnership) -> None:
    """The GP's own key for a person is the NHS number, so it vouched for itself: a row
    for someone else carrying this man's number filed their DNACPR on him."""
    p = partnership
    p.send("hospice", "h.jsonl", hospice("H1", X))  # John Smith, born 1940-01-01
    row = (GP_HEAD + f"{X},DOE,Jane,02/03/1985,F,Y90028,Dr A,01/01/2026,Red,Home,"
           "01/01/2026,Y,01/02/2026,Plan,01/02/2026,,\n").encode()
    summary = p.send("gp", "reg.csv", row)
    assert summary.held == 1 and summary.created == summary.updated == 0
    ((key, reason),) = p.held()
    assert "born 1940-01-01" in reason and "born 1985-03-02" in reason
    # a reviewer decides it is him after all (his birth date was mistyped): it sticks
    (patient,) = p.patients()
    p.service.loader.resolve_held(key, patient_id=patient["id"])
    again = p.send("gp", "reg2.csv", row)
    assert again.held == 0, p.held()


def cpr_codes(p: Partnership) -> list[str]:
    return sorted(o["valueCodeableConcept"]["coding"][0]["code"]
                  for r in p.repo.find(IndexQuery(rtype="Observation")).rows
                  if "304251008" in json.dumps(o := jsonio.loads_trusted(r.body)))


def test_an_older_extract_delivered_again_does_not_settle_a_newer_hold(
        partnership: Partnership) -> None:
    """Day 2's line (a new DNACPR, a mistyped NHS number) was held; day 1's file sent
    again applied its line for the same client as "unchanged" and deleted the hold: the
    DNACPR was then nowhere, neither held, rejected nor stored."""
    p = partnership
    day1 = hospice("H1", X, "attempt", "2026-01-05")
    p.send("hospice", "day1.jsonl", day1)
    assert p.send("hospice", "day2.jsonl", hospice("H1", Y, "not-attempt",
                                                   "2026-02-01")).held == 1
    again = p.send("hospice", "day1.jsonl", day1)
    assert (again.held, again.rejected) == (0, 0)
    assert [k.rsplit("/", 1)[0] for k, _ in p.held()] == ["hospice/H1"]
    (_, waiting), = p.service.loader.list_held()
    assert '"cpr": "not-attempt"' in waiting["record"]["source"]["raw"]
    assert cpr_codes(p) == ["450475007"]  # still only day 1's "attempt"


def test_held_records_sharing_a_control_id_are_each_kept(partnership: Partnership) -> None:
    """Holds were keyed by partner and record id alone: a second held message reusing an
    MSH-10 control id (a PAS counter reset) overwrote the first, and a third, applied
    under the same id, deleted the hold. Each acknowledged admission was then gone."""
    p = partnership
    smith = adt("1001", "A01", "202506010900", "RXA111^^^RXA^MR", visit="V1")
    jones = adt("1001", "A01", "202506020900", "RXA222^^^RXA^MR", name="JONES^MARY",
                born="19500505", visit="V2")
    assert p.send("acute", "d1.hl7", smith).held == 1
    assert p.send("acute", "d2.hl7", jones).held == 1
    applied = p.send("acute", "d3.hl7", adt("1001", "A01", "202506030900",
                                            f"{X}^^^NHS^NH~RXA333^^^RXA^MR", visit="V3"))
    assert (applied.created, applied.held) == (2, 0)
    held = {h["record"]["person"]["family"]: k for k, h in p.service.loader.list_held()}
    assert sorted(held) == ["JONES", "SMITH"]
    assert all(k.startswith("acute/1001/") for k in held.values())
    assert p.send("acute", "d1.hl7", smith).held == 1  # the same message: the same hold
    assert len(p.held()) == 2


def test_a_held_record_is_settled_once(partnership: Partnership) -> None:
    """A reviewer's choice read the hold in one session and applied the record in
    another: two reviewers settling one record at once both applied it (each told 200),
    the record ending on the second one's Patient. The hold is now checked inside the
    choice's transaction; the one that comes second is told it was settled meanwhile."""
    p = partnership
    for control, nhs, mrn in (("C1", X, "M1"), ("C2", Y, "M2")):  # two men alike
        p.send("acute", f"{control}.hl7", adt(control, "A01", "202601010900",
                                              f"{nhs}^^^NHS^NH~{mrn}^^^RXA^MR", visit=mrn))
    council = COUNCIL_HEAD + "SC1,Mr,John,Smith,1940-01-01,DY1 4DX,,Home care,2026-02-01,,A,B\n"
    assert p.send("socialcare", "c.csv", council.encode()).held == 1
    loader = p.service.loader
    (key, held), = loader.list_held()
    first, second = held["candidates"]
    record = from_json(held["record"])
    assert loader.resolve_held(key, patient_id=first).created >= 1
    with pytest.raises(Conflict, match="settled meanwhile"):  # the other, a moment later
        loader._settle_by_reviewer(key, record, held["received"], second)
    on_second = [r for r in p.repo.find(IndexQuery(rtype="CarePlan")).rows
                 if second in (r.body or "")]
    assert on_second == [] and p.held() == []


def test_a_reviewers_refused_choice_is_an_error_and_leaves_the_hold(
        engine: StoreEngine) -> None:
    """Over HTTP a refused choice answered 200 with bare counts ("rejected": 1, "held":
    0) while the record stayed held, and filed a rejected entry for it. (The choice, a
    Patient holding another NHS number, was refused by the profiles, 422; since session
    13 it is refused before, 409, pointing to the operator's correction.)"""
    from fhir_gateway.api.app import create_app
    from fhir_gateway.config import Settings

    p = Partnership(engine)
    p.send("hospice", "h1.jsonl", hospice("H1", X))
    assert p.send("hospice", "h2.jsonl", hospice("H1", Y, completed="2026-02-01")).held == 1
    (key, held), = p.service.loader.list_held()
    app = create_app(Settings(auth_enabled=False), engine=engine)
    with TestClient(app) as http:
        r = http.post(f"/review/held/{key}", json={"patient": held["candidates"][0]})
        assert r.status_code == 409, r.text
        assert "--replace-nhs-number" in r.json()["issue"][0]["diagnostics"]
        both = http.post(f"/review/held/{key}", json={"create": True, "patient": "x"})
        assert both.status_code == 400, both.text
    assert [k for k, _ in p.service.loader.list_held()] == [key]
    assert p.service.loader.list_rejected() == []


def test_a_withdrawn_form_is_credited_as_a_deletion(partnership: Partnership) -> None:
    """The Provenance of a retraction said UPDATE for versions that are deletions: from
    the trail an auditor could not tell a withdrawn CPR decision from a changed one."""
    p = partnership
    p.send("hospice", "h1.jsonl", hospice("H1", X, "not-attempt"))
    line = json.loads(hospice("H1", X))
    line["respect"] = []  # no form now: the earlier one is withdrawn
    withdrawn = p.send("hospice", "h2.jsonl", (json.dumps(line) + "\n").encode())
    assert withdrawn.updated >= 2 and cpr_codes(p) == []
    provs = [jsonio.loads_trusted(r.body) for r in
             p.repo.find(IndexQuery(rtype="Provenance")).rows if "h2.jsonl" in (r.body or "")]
    activities = {pr["activity"]["coding"][0]["code"]: pr["target"] for pr in provs}
    assert set(activities) <= {"UPDATE", "DELETE"} and "DELETE" in activities
    for target in activities["DELETE"]:
        rtype, rid, _, _version = target["reference"].split("/")
        with pytest.raises(Gone):
            p.repo.read(rtype, rid)
    for target in activities.get("UPDATE", []):  # what is left there is no deletion
        rtype, rid, _, _version = target["reference"].split("/")
        assert p.repo.read(rtype, rid).body


def test_a_hold_kept_under_the_old_key_is_settled_or_replaced(partnership: Partnership) -> None:
    """Holds stored before the key held the text's hash are keyed "partner/record id":
    the record held again is listed once (under its new key); applied, it goes."""
    p = partnership
    loader = p.service.loader
    p.send("hospice", "h1.jsonl", hospice("H1", X))
    day2 = hospice("H1", Y, "not-attempt", "2026-02-01")
    assert p.send("hospice", "h2.jsonl", day2).held == 1
    (key, held), = loader.list_held()
    with p.repo.transaction() as s:  # as an older version of the gateway kept it
        s.record_delete("held", key)
        s.record_put("held", "hospice/H1", held)
    assert p.send("hospice", "h2.jsonl", day2).held == 1
    assert [k for k, _ in loader.list_held()] == [key]
    (patient,) = p.active()
    # two NHS numbers: the reviewer is told (409 since session 13, 422 from the profile
    # before), and how a correction is applied
    with pytest.raises(Conflict, match="--replace-nhs-number"):
        loader.resolve_held(key, patient_id=patient["id"])
    assert [k for k, _ in loader.list_held()] == [key]


def test_an_applied_record_settles_its_hold_kept_under_the_old_key(
        partnership: Partnership) -> None:
    p = partnership
    loader = p.service.loader
    for control, nhs, mrn in (("C1", X, "M1"), ("C2", Y, "M2")):  # two men alike
        p.send("acute", f"{control}.hl7", adt(control, "A01", "202601010900",
                                              f"{nhs}^^^NHS^NH~{mrn}^^^RXA^MR", visit=mrn))
    council = COUNCIL_HEAD + "SC1,Mr,John,Smith,1940-01-01,DY1 4DX,,Home care,2026-02-01,,A,B\n"
    assert p.send("socialcare", "c.csv", council.encode()).held == 1
    (key, held), = loader.list_held()
    with p.repo.transaction() as s:  # as an older version of the gateway kept it
        s.record_delete("held", key)
        s.record_put("held", "socialcare/SC1", held)
    assert loader.resolve_held("socialcare/SC1", patient_id=held["candidates"][0]).created
    assert loader.list_held() == []


def test_a_resource_this_partner_wrote_into_stays_its_own_whatever_its_tags(
        partnership: Partnership) -> None:
    """Before ingestion ignored other feeds' REST resources, it merged a partner's record
    into one and kept that feed's tag. Ignored for its tag alone, such a resource was
    left with the stale CPR decision beside a second copy the next record made."""
    from fhir_gateway.ingest.model import PARTNER_TAG_SYSTEM

    p = partnership
    p.send("hospice", "h1.jsonl", hospice("H1", X, "attempt", "2026-01-05"))
    (row,) = [r for r in p.repo.find(IndexQuery(rtype="Observation")).rows
              if "304251008" in (r.body or "")]
    tagged = jsonio.loads_trusted(row.body or "{}")
    tagged["meta"]["tag"] = [{"system": PARTNER_TAG_SYSTEM, "code": "community"}]
    p.repo.update(tagged, rtype="Observation", rid=row.rid)  # as an older gateway left it
    assert p.send("hospice", "h2.jsonl", hospice("H1", X, "not-attempt",
                                                 "2026-03-01")).rejected == 0
    assert cpr_codes(p) == ["450476008"]


def test_one_message_resent_with_other_line_ends_is_held_once(
        partnership: Partnership) -> None:
    """Keys hash the record's text: the same held message sent with CR, CRLF and LF line
    ends was listed three times, and a reviewer making a new Patient for each listing
    made three Patients in turn, each merged into the next."""
    p = partnership
    message = adt("CZ", "A01", "202606010900", "RXA9^^^RXA^MR", visit="VZ")
    for name, text in (("cr.hl7", message), ("crlf.hl7", message.replace(b"\r", b"\r\n")),
                       ("lf.hl7", message.replace(b"\r", b"\n"))):
        assert p.send("acute", name, text).held == 1
    (key,) = [k for k, _ in p.held()]
    p.service.loader.resolve_held(key)
    assert p.held() == [] and len(p.active()) == 1

