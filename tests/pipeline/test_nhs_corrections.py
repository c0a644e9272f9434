"""A partner's NHS-number correction, applied by the operator (`review resolve KEY
--patient ID --replace-nhs-number`).

The hospital first knew a man as MRN M1 under a wrong NHS number X, then sent an A08
keeping M1 but giving his right number Y: held, since M1's Patient holds another number.
The correction must leave one Patient findable by Y only, and never let X lead a record,
or a crew's search, to him again: X may be another person's. Each test drives real feed
text through `IngestService`, on SQLite and mongomock."""

from __future__ import annotations

import identity_kit
import pytest
from fastapi.testclient import TestClient
from identity_kit import COUNCIL_HEAD, GP_HEAD, NHS, X, Y, adt, hospice, nhs_numbers

from fhir_gateway.errors import BadRequest, Conflict, Unprocessable
from fhir_gateway.store.base import StoreEngine
from fhir_gateway.store.query import Criterion, IndexQuery, TokenPredicate

DNACPR, FOR_CPR = "450476008", "450475007"


class Partnership(identity_kit.Partnership):
    def held(self) -> list[tuple[str, str]]:
        return [(k, h["reason"]) for k, h in self.loader.list_held()]

    def holders(self, nhs: str) -> list[str]:
        query = IndexQuery(rtype="Patient", criteria=[
            Criterion("identifier", "token", [TokenPredicate(NHS, nhs)])])
        return [r.rid for r in self.repo.find(query).rows]

    def nhs_of(self, rid: str) -> list[str]:
        patient = next(p for p in self.patients() if p["id"] == rid)
        return [i["value"] for i in patient.get("identifier", []) if i["system"] == NHS]

    def cpr(self) -> list[tuple[str, str]]:
        """(subject, value code) of every stored CPR decision."""
        return sorted((o["subject"]["reference"], o["valueCodeableConcept"]["coding"][0]["code"])
                      for o in self.all("Observation")
                      if o["code"]["coding"][0]["code"] == "304251008")


@pytest.fixture
def p(engine: StoreEngine) -> Partnership:
    return Partnership(engine)


def gp_row(nhs: str, dnacpr: str, when: str = "10/01/2026") -> bytes:
    return (GP_HEAD + f"{nhs},SMITH,John,01/01/1940,M,Y90028,Dr A,01/01/2026,Red,Home,"
            f"01/01/2026,{dnacpr},{when},Plan,01/02/2026,,\n").encode()


def corrected_number(p: Partnership, old: str = X, new: str = Y) -> tuple[str, str]:
    """The hold of the hospital's correction, and the Patient (NHS `old`, MRN M1)."""
    p.send("acute", "a.hl7", adt("C1", "A01", "202601010900", f"{old}^^^NHS^NH~M1^^^RXA^MR",
                                 visit="V1"))
    assert p.send("acute", "b.hl7", adt("C2", "A08", "202601020900",
                                        f"{new}^^^NHS^NH~M1^^^RXA^MR", visit="V1")).held == 1
    (key, reason), = p.held()
    assert "another NHS number" in reason
    (patient,) = p.holders(old)
    return key, patient


def test_the_correction_replaces_the_number_and_the_old_one_leads_nowhere(
        p: Partnership) -> None:
    key, patient = corrected_number(p)
    with pytest.raises(Conflict, match="--replace-nhs-number"):
        p.loader.resolve_held(key, patient_id=patient)  # a plain attach says what to do
    done = p.loader.resolve_held(key, patient_id=patient, replace_nhs_number=True)
    assert (done.updated, done.held, done.rejected) == (1, 0, 0)
    assert p.held() == []
    assert len(p.patients()) == 1
    assert p.nhs_of(patient) == [Y]
    assert p.holders(Y) == [patient] and p.holders(X) == []
    (visit,) = p.all("Encounter")
    assert visit["subject"]["reference"] == f"Patient/{patient}"
    again = p.send("acute", "c.hl7", adt("C3", "A08", "202601030900",
                                         f"{Y}^^^NHS^NH~M1^^^RXA^MR", visit="V1"))
    assert (again.held, again.rejected) == (0, 0)
    # a record giving X with no id of the person's is held; its reason does not give Y
    # (a feed may read it without being allowed to see him)
    assert p.send("hospice", "h1.jsonl", hospice("H1", X)).held == 1
    (_, reason), = p.held()
    assert f"NHS number {X} was on Patient/{patient} until a reviewer replaced it" in reason
    assert Y not in reason
    assert len(p.patients()) == 1


def test_a_record_still_giving_the_old_number_is_filed_without_it(p: Partnership) -> None:
    """The hospice still has X: a reviewer says its record is his, and from then on the
    hospice's own id for him vouches, so its records are filed on him without X."""
    key, patient = corrected_number(p)
    p.loader.resolve_held(key, patient_id=patient, replace_nhs_number=True)
    assert p.send("hospice", "h1.jsonl", hospice("H1", X, "not-attempt")).held == 1
    (hold, _), = p.held()
    with pytest.raises(Conflict, match=r"taken off .* as wrong"):
        p.loader.resolve_held(hold, patient_id=patient, replace_nhs_number=True)
    p.loader.resolve_held(hold, patient_id=patient)
    assert p.nhs_of(patient) == [Y]
    assert p.cpr() == [(f"Patient/{patient}", DNACPR)]
    later = p.send("hospice", "h2.jsonl", hospice("H1", X, "attempt", "2026-03-01"))
    assert (later.held, later.rejected) == (0, 0)
    assert p.cpr() == [(f"Patient/{patient}", FOR_CPR)]
    assert p.holders(X) == [] and len(p.patients()) == 1


def test_the_old_number_leads_nowhere_after_an_a40_either(
        p: Partnership, client: TestClient) -> None:
    """A40 merges follow an NHS number's claim to the survivor: a corrected number's must
    not be followed, or X would lead to whoever the corrected record was merged into."""
    key, patient = corrected_number(p)
    p.loader.resolve_held(key, patient_id=patient, replace_nhs_number=True)
    (z,) = nhs_numbers(999000300, 1)
    p.send("acute", "z.hl7", adt("C5", "A01", "202601040900", f"{z}^^^NHS^NH~M5^^^RXA^MR",
                                 visit="V5"))
    p.send("acute", "m.hl7", adt("C6", "A40", "202601050900", f"{z}^^^NHS^NH~M5^^^RXA^MR",
                                 merged=f"{Y}^^^NHS^NH~M1^^^RXA^MR"))
    (survivor,) = p.holders(z)
    assert [q["id"] for q in p.active()] == [survivor]
    assert p.send("hospice", "h9.jsonl", hospice("H9", X, "not-attempt")).held == 1
    assert p.cpr() == []
    r = client.get(f"/fhir/Patient/$emergency-summary?identifier={NHS}|{X}")
    assert r.status_code == 404, r.text
    (hold, _), = p.held()
    p.loader.resolve_held(hold)  # X is someone else's: a Patient of their own
    assert len(p.holders(X)) == 1 and p.holders(X) != [survivor]


@pytest.mark.parametrize(("old", "new"), [(X, Y), (Y, X)])
def test_the_gp_resources_keyed_by_the_old_number_follow_the_correction(
        p: Partnership, old: str, new: str) -> None:
    """The GP keys its resources by the NHS number itself: left under the old number, its
    withdrawal of the DNACPR (sent under the new one once the register is corrected) would
    find nothing, and the DNACPR would stay. It also orders its records by that number
    (it sends no event times): when the new number sorts before the old, its rows were
    judged older than what it had said under the old one, and changed nothing."""
    key, patient = corrected_number(p, old, new)
    assert p.send("gp", "reg.csv", gp_row(old, "Y")).held == 0
    assert p.cpr() == [(f"Patient/{patient}", DNACPR)]
    p.loader.resolve_held(key, patient_id=patient, replace_nhs_number=True)
    withdrawn = p.send("gp", "reg2.csv", gp_row(new, "N"))
    assert (withdrawn.held, withdrawn.rejected) == (0, 0)
    assert p.cpr() == []  # "N" withdraws the GP's decision
    plans = [c for c in p.all("CarePlan") if c["status"] == "active"]
    assert len(plans) == 1
    assert len(p.patients()) == 1 and p.nhs_of(patient) == [new]


def test_a_correction_that_would_give_two_resources_one_key_is_refused(
        p: Partnership) -> None:
    """The GP corrected its register first: its resources are under Y on the Patient the
    register made, and under X on the hospital's copy. Re-keying the copy's would make two
    of each under one key (every later GP row for him then rejected): refused."""
    p.send("acute", "a.hl7", adt("C1", "A01", "202601010900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                 visit="V1"))
    p.send("gp", "reg.csv", gp_row(X, "Y"))
    p.send("gp", "reg2.csv", gp_row(Y, "Y"))
    (copy,) = p.holders(X)
    (person,) = p.holders(Y)
    assert p.send("acute", "b.hl7", adt("C2", "A08", "202601020900",
                                        f"{Y}^^^NHS^NH~M1^^^RXA^MR", visit="V1")).held == 1
    (key, _), = p.held()
    before = sorted((r["id"], r["meta"]["versionId"]) for r in p.all("Observation"))
    with pytest.raises(Conflict, match="already holds"):
        p.loader.resolve_held(key, patient_id=person, replace_nhs_number=True)
    assert [k for k, _ in p.held()] == [key]
    assert sorted((r["id"], r["meta"]["versionId"]) for r in p.all("Observation")) == before
    assert p.holders(X) == [copy]


def test_a_partner_without_event_times_may_correct_a_number_a_message_set(
        p: Partnership) -> None:
    """The "delivered late" guard compared an un-timed hospice record with the ADT message
    that set the number: an un-timed stamp sorts before every timed one, so no hospice or
    council correction could ever be applied."""
    p.send("acute", "a.hl7", adt("C1", "A01", "202601010900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                 visit="V1"))
    p.send("hospice", "h1.jsonl", hospice("H1", X))
    assert p.send("hospice", "h2.jsonl", hospice("H1", Y, "not-attempt", "2026-02-01")).held == 1
    (key, _), = p.held()
    (patient,) = p.holders(X)
    p.loader.resolve_held(key, patient_id=patient, replace_nhs_number=True)
    assert p.nhs_of(patient) == [Y]
    assert p.cpr() == [(f"Patient/{patient}", DNACPR)]


def test_on_a_patient_stored_before_the_number_was_stamped_the_guard_still_holds(
        p: Partnership) -> None:
    from fhir_gateway.pipeline.loader import NHS_STAMP
    from fhir_gateway.pipeline.merge import ELEMENT_STAMPS

    p.send("acute", "b.hl7", adt("C2", "A08", "202601020900", f"{Y}^^^NHS^NH~M1^^^RXA^MR",
                                 visit="V1"))
    (patient,) = p.holders(Y)
    with p.repo.transaction() as s:  # as an older gateway left it: no NHS_STAMP
        times = s.record_get(ELEMENT_STAMPS, f"Patient/{patient}")
        s.record_put(ELEMENT_STAMPS, f"Patient/{patient}",
                     {k: v for k, v in times.items() if k != NHS_STAMP})
    assert p.send("acute", "a.hl7", adt("C1", "A01", "202601010900",
                                        f"{X}^^^NHS^NH~M1^^^RXA^MR", visit="V1")).held == 1
    (key, _), = p.held()
    with pytest.raises(Conflict, match="set by a newer record"):
        p.loader.resolve_held(key, patient_id=patient, replace_nhs_number=True)
    assert p.nhs_of(patient) == [Y]


def test_the_old_number_with_the_persons_id_but_another_birth_date_is_held(
        p: Partnership) -> None:
    """The corrected-away number points away from him: his MRN alone (mistyped, reused)
    does not file another person's message, their death with it, on him."""
    key, patient = corrected_number(p)
    p.loader.resolve_held(key, patient_id=patient, replace_nhs_number=True)
    other = p.send("acute", "c.hl7", adt("C7", "A08", "202601060900",
                                         f"{X}^^^NHS^NH~M1^^^RXA^MR", name="JONES^MARY",
                                         born="19550505", visit="V1"))
    assert other.held == 1
    (_, reason), = p.held()
    assert "born 1955-05-05" in reason
    person = next(q for q in p.patients() if q["id"] == patient)
    assert person["birthDate"] == "1940-01-01" and person["name"][0]["family"] == "SMITH"


def test_after_a_merge_the_hold_names_the_person_it_leads_to(p: Partnership) -> None:
    p.send("acute", "a.hl7", adt("C1", "A01", "202601010900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                 visit="V1"))
    p.send("hospice", "h1.jsonl", hospice("H1", Y))
    (person,) = p.holders(Y)
    p.send("acute", "b.hl7", adt("C2", "A08", "202601020900", f"{Y}^^^NHS^NH~M1^^^RXA^MR",
                                 visit="V1"))
    (key, _), = p.held()
    p.loader.resolve_held(key, patient_id=person, replace_nhs_number=True)
    assert p.send("gp", "reg.csv", gp_row(X, "Y")).held == 1
    (hold, reason), = p.held()
    assert f"was on Patient/{person} until" in reason
    p.loader.resolve_held(hold, patient_id=person)  # "attach it there" works
    assert p.nhs_of(person) == [Y]


def test_a_correction_to_a_number_another_patient_holds_merges_the_wrong_copy_in(
        p: Partnership) -> None:
    """The hospice knows him under Y: two Patients for one person, and a crew searching Y
    finds no hospital data. The correction merges the wrong-number copy in."""
    p.send("acute", "a.hl7", adt("C1", "A01", "202601010900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                 visit="V1"))
    p.send("hospice", "h1.jsonl", hospice("H1", Y, "not-attempt"))
    (copy,) = p.holders(X)
    (person,) = p.holders(Y)
    assert p.send("acute", "b.hl7", adt("C2", "A08", "202601020900",
                                        f"{Y}^^^NHS^NH~M1^^^RXA^MR", visit="V1")).held == 1
    (key, _), = p.held()
    with pytest.raises(Conflict, match=f"NHS number {Y} is on Patient/{person}"):
        p.loader.resolve_held(key, patient_id=copy, replace_nhs_number=True)
    p.loader.resolve_held(key, patient_id=person, replace_nhs_number=True)
    assert p.held() == []
    (live,) = p.active()
    assert live["id"] == person and p.nhs_of(person) == [Y]
    assert {"M1", "H1"} <= {i["value"] for i in live["identifier"]}
    assert p.holders(X) == []
    (visit,) = p.all("Encounter")
    assert visit["subject"]["reference"] == f"Patient/{person}"
    merged = next(q for q in p.patients() if q["id"] == copy)
    assert merged["active"] is False
    assert merged["link"] == [{"other": {"reference": f"Patient/{person}"},
                               "type": "replaced-by"}]
    # the original message resent: its MRN vouches, so it is his, filed without X
    resent = p.send("acute", "a2.hl7", adt("C1", "A01", "202601010900",
                                           f"{X}^^^NHS^NH~M1^^^RXA^MR", visit="V1"))
    assert (resent.held, resent.rejected) == (0, 0)
    assert p.nhs_of(person) == [Y] and p.holders(X) == []


def test_an_older_message_cannot_correct_a_newer_number(p: Partnership) -> None:
    """Out of order: the A08 with the right number Y came first, the original A01 with X
    after it, held for the same reason a correction is. Applied as a correction, it would
    put the old, wrong number back over the right one."""
    p.send("acute", "b.hl7", adt("C2", "A08", "202601020900", f"{Y}^^^NHS^NH~M1^^^RXA^MR",
                                 visit="V1"))
    assert p.send("acute", "a.hl7", adt("C1", "A01", "202601010900",
                                        f"{X}^^^NHS^NH~M1^^^RXA^MR", visit="V1")).held == 1
    (key, _), = p.held()
    (patient,) = p.holders(Y)
    with pytest.raises(Conflict, match="set by a newer record"):
        p.loader.resolve_held(key, patient_id=patient, replace_nhs_number=True)
    assert p.nhs_of(patient) == [Y] and [k for k, _ in p.held()] == [key]


def test_a_replacement_names_the_records_person_only(p: Partnership) -> None:
    key, patient = corrected_number(p)
    (w,) = nhs_numbers(999000400, 1)
    p.send("hospice", "r1.jsonl", hospice("R1", w, postcode="DY9 9ZZ"))
    (other,) = p.holders(w)
    with pytest.raises(Conflict, match="not one of the held record's candidates"):
        p.loader.resolve_held(key, patient_id=other, replace_nhs_number=True)
    assert p.nhs_of(other) == [w] and p.nhs_of(patient) == [X]
    assert [k for k, _ in p.held()] == [key]


def test_a_replacement_the_record_does_not_support_is_refused_and_the_hold_kept(
        p: Partnership) -> None:
    key, patient = corrected_number(p)
    with pytest.raises(BadRequest):
        p.loader.resolve_held(key, replace_nhs_number=True)  # replaced on which Patient?
    # another live Patient holds the corrected number, and the chosen one is not it
    p.send("acute", "w.hl7", adt("C9", "A01", "202601050900",
                                 f"{Y}^^^NHS^NH~M9^^^RXA^MR", visit="V9"))
    (w,) = p.holders(Y)
    with pytest.raises(Conflict, match=f"NHS number {Y} is on Patient/{w}"):
        p.loader.resolve_held(key, patient_id=patient, replace_nhs_number=True)
    assert [k for k, _ in p.held()] == [key]
    assert p.holders(X) == [patient]


def test_a_held_record_without_an_nhs_number_replaces_none(p: Partnership) -> None:
    _, patient = corrected_number(p)
    row = ("SC900001,Mrs,Ada,Secretname,1931-02-03,DY1 1AA,,Home care,2026-01-02,,"
           "Oakleigh Care Home,Brenda Johnson\n")
    assert p.send("socialcare", "c.csv", (COUNCIL_HEAD + row).encode()).held == 1
    key = next(k for k, _ in p.held() if k.startswith("socialcare"))
    with pytest.raises(Conflict, match="not one of the held record's candidates"):
        p.loader.resolve_held(key, patient_id=patient, replace_nhs_number=True)
    assert p.holders(X) == [patient] and len(p.held()) == 2


def test_a_replacement_with_no_number_to_replace_is_refused(p: Partnership) -> None:
    # the GP's key is the NHS number itself: a GP row held for its birth date names no
    # local id, so there is no copy under a wrong number, and the Patient holds the row's
    p.send("hospice", "h.jsonl", hospice("H1", X))
    row = (GP_HEAD + f"{X},DOE,Jane,02/03/1985,F,Y90028,Dr A,01/01/2026,Red,Home,"
           "01/01/2026,Y,01/02/2026,Plan,01/02/2026,,\n").encode()
    assert p.send("gp", "reg.csv", row).held == 1
    ((key, _),) = p.held()
    (patient,) = p.holders(X)
    with pytest.raises(Conflict, match="holds no other NHS number to replace"):
        p.loader.resolve_held(key, patient_id=patient, replace_nhs_number=True)
    assert [k for k, _ in p.held()] == [key] and p.holders(X) == [patient]


def test_over_http_a_feed_cannot_replace_an_nhs_number(p: Partnership,
                                                      client: TestClient) -> None:
    key, patient = corrected_number(p)
    r = client.post(f"/review/held/{key}", json={"patient": patient, "replaceNhsNumber": True})
    assert r.status_code == 403, r.text
    assert "fhir-gateway review resolve" in r.json()["issue"][0]["diagnostics"]
    plain = client.post(f"/review/held/{key}",
                        json={"patient": patient, "replaceNhsNumber": False})
    assert plain.status_code == 409, plain.text  # asks no replacement: the plain refusal
    assert [k for k, _ in p.held()] == [key] and p.holders(X) == [patient]


def test_a_record_without_a_number_is_unprocessable_as_a_correction(p: Partnership) -> None:
    """Reached only through a candidate: a council row (no NHS number) matching him."""
    _, patient = corrected_number(p)
    row = ("SC1,Mr,John,Smith,1940-01-01,DY1 4DX,,Home care,2026-01-02,,"
           "Oakleigh Care Home,Brenda Johnson\n")
    p.send("socialcare", "c.csv", (COUNCIL_HEAD + row).encode())
    p.send("socialcare", "c2.csv", (COUNCIL_HEAD + row.replace("SC1,", "SC2,")).encode())
    ((key, hold),) = [(k, h) for k, h in p.loader.list_held() if k.startswith("socialcare")]
    assert patient in hold["candidates"]
    with pytest.raises(Unprocessable, match="gives no NHS number"):
        p.loader.resolve_held(key, patient_id=patient, replace_nhs_number=True)


# -- discarding held records ------------------------------------------------------------------


def test_a_record_discarded_while_a_retry_runs_is_not_applied(
        p: Partnership, monkeypatch: pytest.MonkeyPatch) -> None:
    """The retry listed the holds in one session and applied them in another: a hold a
    reviewer discarded in between was applied anyway (both discarded and on the record)."""
    from fhir_gateway.pipeline.loader import Loader

    row = ("SC1,Mr,John,Smith,1940-01-01,DY1 4DX,,Home care,2026-01-02,,"
           "Oakleigh Care Home,Brenda Johnson\n")
    assert p.send("socialcare", "c.csv", (COUNCIL_HEAD + row).encode()).held == 1
    (key, _), = p.held()
    original = Loader._apply_batch

    def discard_first(self: Loader, batch: list, *args: object, **kwargs: object) -> None:
        if any(i.source.partner == "socialcare" for i in batch) and p.held():
            self.discard_held(key, reason="a test row", by="reviewer")  # the retry's batch
        original(self, batch, *args, **kwargs)

    monkeypatch.setattr(Loader, "_apply_batch", discard_first)
    p.send("hospice", "h1.jsonl", hospice("H1", X))  # now someone to match: retried
    assert [k.rpartition("@")[0] for k, _ in p.loader.list_discarded()] == [key]
    assert p.all("CarePlan") == [c for c in p.all("CarePlan")
                                 if "socialcare" not in str(c.get("identifier"))]
    assert all("SC1" not in str(q.get("identifier")) for q in p.patients())


def test_each_discard_of_a_record_is_kept(p: Partnership) -> None:
    row = (b"SC9,Mrs,Ada,Secretname,1931-02-03,DY1 1AA,,Home care,2026-01-02,,"
           b"Oakleigh Care Home,Brenda Johnson\n")
    for who in ("alice", "bob"):
        assert p.send("socialcare", "c.csv", COUNCIL_HEAD.encode() + row).held == 1
        (key, _), = p.held()
        p.loader.discard_held(key, reason=f"{who}'s reason", by=who)
    kept = p.loader.list_discarded()
    assert sorted(v["discarded"]["by"] for _, v in kept) == ["alice", "bob"]


def test_the_correcting_partner_giving_the_old_number_again_later_is_held(
        p: Partnership) -> None:
    """After the hospital's correction X -> Y, a newer message of its own gives X again
    (its system undid the correction, or the correction was wrong): filing it without X
    left that unsaid. Held; a reviewer's attachment files it as before. An older message
    delivered late is the correction's past: filed without X, as before."""
    key, patient = corrected_number(p)
    p.loader.resolve_held(key, patient_id=patient, replace_nhs_number=True)
    late = p.send("acute", "l.hl7", adt("C0", "A08", "202601011200",
                                        f"{X}^^^NHS^NH~M1^^^RXA^MR", visit="V1"))
    assert (late.held, late.rejected) == (0, 0)
    undone = p.send("acute", "u.hl7", adt("C9", "A08", "202601090900",
                                          f"{X}^^^NHS^NH~M1^^^RXA^MR", visit="V1"))
    assert undone.held == 1
    (hold, reason), = p.held()
    assert f"NHS number {X} was replaced on Patient/{patient}" in reason
    assert "this newer record gives it again" in reason and Y not in reason
    assert p.nhs_of(patient) == [Y]
    done = p.loader.resolve_held(hold, patient_id=patient)
    assert (done.held, done.rejected) == (0, 0)
    assert p.nhs_of(patient) == [Y] and p.holders(X) == []


def test_another_partner_giving_the_old_number_with_its_own_id_is_filed(
        p: Partnership) -> None:
    """Only the correcting partner's own newer word is news: another partner still using
    the old number under its id for the person is the usual lag."""
    p.send("acute", "a.hl7", adt("C1", "A01", "202601010900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                 visit="V1"))
    p.send("hospice", "h1.jsonl", hospice("H1", X))
    (patient,) = p.holders(X)
    assert p.send("acute", "b.hl7", adt("C2", "A08", "202601020900",
                                        f"{Y}^^^NHS^NH~M1^^^RXA^MR", visit="V1")).held == 1
    (key, _), = p.held()
    p.loader.resolve_held(key, patient_id=patient, replace_nhs_number=True)
    again = p.send("hospice", "h2.jsonl", hospice("H1", X, "not-attempt", "2026-02-01"))
    assert (again.held, again.rejected) == (0, 0)
    assert p.nhs_of(patient) == [Y]
