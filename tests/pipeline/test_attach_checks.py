"""A reviewer's attachment of a held record to a Patient the hold did not offer.

A held record with no NHS number and no match has no candidates: the reviewer finds the
person some other way and types a Patient id. Mistyped, that id files this person's facts
(a DNACPR among them) on someone else. So an attachment to a Patient that is not a
candidate and whose birth date, family name or sex contradicts the record's is refused, with
nothing written, unless the reviewer says to attach it all the same. Real feed text
through `IngestService`, on SQLite and mongomock (the CLI and HTTP spellings are
tested beside the other review commands)."""

from __future__ import annotations

import json

import identity_kit
import pytest
from identity_kit import X, Y, adt, hospice

from fhir_gateway.errors import Conflict
from fhir_gateway.store.base import StoreEngine


class Partnership(identity_kit.Partnership):
    def held(self) -> list[tuple[str, dict]]:
        return self.loader.list_held()

    def patient_of(self, nhs: str) -> str:
        (rid,) = [p["id"] for p in self.patients()
                  if any(i["value"] == nhs for i in p.get("identifier", []))]
        return rid

    def cpr_subjects(self) -> list[str]:
        return [o["subject"]["reference"] for o in self.all("Observation")
                if o["code"]["coding"][0]["code"] == "304251008"]


@pytest.fixture
def p(engine: StoreEngine) -> Partnership:
    p = Partnership(engine)
    # John Smith, born 1 January 1940 (the hospice record's person), and Mary Jones
    p.send("acute", "a.hl7", adt("A1", "A01", "202601010900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                 visit="V1"))
    p.send("acute", "b.hl7", adt("B1", "A01", "202601010905", f"{Y}^^^NHS^NH~M2^^^RXA^MR",
                                 name="JONES^MARY", born="19510707",
                                 address="9 Low Rd^^Dudley^^DY3 3ZZ", visit="V2"))
    # no NHS number, and a postcode no one on the record has: held, no candidates
    assert p.send("hospice", "h.jsonl", hospice("H1", None, cpr="not-attempt",
                                                postcode="DY9 9QQ")).held == 1
    return p


def test_a_patient_contradicting_the_record_is_refused_and_nothing_is_written(
        p: Partnership) -> None:
    (key, held), = p.held()
    assert not held.get("candidates")
    mary = p.patient_of(Y)
    with pytest.raises(Conflict) as refused:
        p.loader.resolve_held(key, patient_id=mary)
    said = str(refused.value)
    assert f"Patient/{mary} is not one of the held record's candidates" in said
    assert "birth date and family name differ" in said
    assert "born 1940-01-01, family name Smith" in said and "--despite-differences" in said
    assert [k for k, _ in p.held()] == [key]
    assert p.cpr_subjects() == []
    assert not any(i["system"].endswith("hospice") or "hospice" in i["system"]
                   for i in next(q for q in p.patients() if q["id"] == mary)["identifier"])


def test_said_all_the_same_it_is_attached(p: Partnership) -> None:
    (key, _), = p.held()
    mary = p.patient_of(Y)
    done = p.loader.resolve_held(key, patient_id=mary, despite_differences=True)
    assert (done.held, done.rejected) == (0, 0)
    assert p.held() == []
    assert p.cpr_subjects() == [f"Patient/{mary}"]


def test_a_patient_agreeing_with_the_record_needs_no_more(p: Partnership) -> None:
    (key, _), = p.held()
    john = p.patient_of(X)
    done = p.loader.resolve_held(key, patient_id=john)
    assert (done.held, done.rejected) == (0, 0)
    assert p.cpr_subjects() == [f"Patient/{john}"]


def test_only_a_birth_date_or_only_a_name_is_enough_to_refuse(p: Partnership) -> None:
    (key, _), = p.held()
    p.send("acute", "c.hl7", adt("C1", "A01", "202601010910",
                                 f"{identity_kit.nhs_numbers(999000300, 1)[0]}^^^NHS^NH"
                                 "~M3^^^RXA^MR", name="SMITH^JOHN", born="19450505", visit="V3"))
    p.send("acute", "d.hl7", adt("D1", "A01", "202601010915",
                                 f"{identity_kit.nhs_numbers(999000400, 1)[0]}^^^NHS^NH"
                                 "~M4^^^RXA^MR", name="SMYTHE^JOHN", born="19400101", visit="V4"))
    other_date = p.patient_of(identity_kit.nhs_numbers(999000300, 1)[0])
    other_name = p.patient_of(identity_kit.nhs_numbers(999000400, 1)[0])
    with pytest.raises(Conflict, match="its birth date differs from the record's"):
        p.loader.resolve_held(key, patient_id=other_date)
    with pytest.raises(Conflict, match="its family name differs from the record's"):
        p.loader.resolve_held(key, patient_id=other_name)
    assert p.cpr_subjects() == []


def test_a_candidate_the_hold_offered_is_the_reviewers_choice(engine: StoreEngine) -> None:
    """The hold's reason has said how a candidate differs: choosing it is not refused."""
    p = Partnership(engine)
    p.send("acute", "a.hl7", adt("A1", "A01", "202601010900", f"{X}^^^NHS^NH~M1^^^RXA^MR",
                                 visit="V1"))
    # the hospice's record gives the number, but another birth date: held, one candidate
    line = json.loads(hospice("H1", X, cpr="not-attempt"))
    line["dob"] = "1940-02-02"
    assert p.send("hospice", "h.jsonl", (json.dumps(line) + "\n").encode()).held == 1
    (key, held), = p.held()
    john = p.patient_of(X)
    assert held["candidates"] == [john]
    done = p.loader.resolve_held(key, patient_id=john)
    assert (done.held, done.rejected) == (0, 0)
    assert p.cpr_subjects() == [f"Patient/{john}"]


@pytest.mark.parametrize(("recorded", "on_patient"), [
    ("O'Brien", "OBrien"), ("O'Brien", "O Brien"), ("O'Brien", "O\u2019Brien"),
    ("Smith-Jones", "Smith Jones"), ("Smith-Jones", "Smith"), ("Jones", "Smith-Jones"),
    ("McDonald", "MacDonald"), ("Zoë", "ZOE"), ("de la Cruz", "DELACRUZ")])
def test_one_family_name_spelt_the_ways_partners_spell_it_agrees(recorded: str,
                                                                 on_patient: str) -> None:
    """Spelling differences are why records are held in the first place: refusing them
    would make the reviewer's override routine, and the check worthless."""
    from fhir_gateway.ingest.model import PersonKey
    from fhir_gateway.pipeline.identity import contradictions
    from fhir_gateway.store.base import StoredVersion

    patient = StoredVersion("Patient", "p", 1, "2026-01-01T00:00:00Z", False, json.dumps(
        {"resourceType": "Patient", "name": [{"family": on_patient}]}))
    person = PersonKey(family=recorded)
    assert contradictions(patient, person) == []
    other = PersonKey(family="Taylor")
    assert contradictions(patient, other) == ["family name"]


@pytest.mark.parametrize(("recorded", "on_patient"), [
    ("Al-Sayed", "Al-Hashimi"), ("Van Dyke", "Van Rijn"), ("De Souza", "De Silva"),
    ("Le Roux", "Le Blanc"), ("Smith-Jones", "Smith-Brown"), ("Smith", "Jones")])
def test_families_sharing_a_particle_or_one_part_are_not_one(recorded: str,
                                                             on_patient: str) -> None:
    """A mistyped id landing on Yusuf Al-Hashimi filed Fatima Al-Sayed's DNACPR on him:
    every part counted alone, particles too."""
    from fhir_gateway.ingest.model import PersonKey
    from fhir_gateway.pipeline.identity import contradictions
    from fhir_gateway.store.base import StoredVersion

    patient = StoredVersion("Patient", "p", 1, "2026-01-01T00:00:00Z", False, json.dumps(
        {"resourceType": "Patient", "name": [{"family": on_patient}]}))
    assert contradictions(patient, PersonKey(family=recorded)) == ["family name"]


def sexed(message: bytes, code: str) -> bytes:
    return message.replace(b"||19400101|M|||", f"||19400101|{code}|||".encode())


def test_a_patient_of_the_other_sex_is_refused_where_name_and_birth_date_agree(
        p: Partnership) -> None:
    """Mary Smith and John Smith born the same day: with only the birth date and family
    name compared, a mistyped id filed John's DNACPR on Mary with no refusal."""
    (key, _), = p.held()  # the hospice's John Smith, male, born 1940-01-01
    mary, unknown = identity_kit.nhs_numbers(999000500, 2)
    p.send("acute", "e.hl7", sexed(adt("E1", "A01", "202601010920",
                                       f"{mary}^^^NHS^NH~M5^^^RXA^MR", name="SMITH^MARY",
                                       visit="V5"), "F"))
    p.send("acute", "f.hl7", sexed(adt("F1", "A01", "202601010925",
                                       f"{unknown}^^^NHS^NH~M6^^^RXA^MR", name="SMITH^J",
                                       visit="V6"), "U"))
    with pytest.raises(Conflict, match=r"its sex differs from the record's \(born "
                                       r"1940-01-01, family name Smith, sex male\)"):
        p.loader.resolve_held(key, patient_id=p.patient_of(mary))
    assert p.cpr_subjects() == [] and len(p.held()) == 1
    # a sex recorded as unknown contradicts nothing
    done = p.loader.resolve_held(key, patient_id=p.patient_of(unknown))
    assert (done.held, done.rejected) == (0, 0)
    assert p.cpr_subjects() == [f"Patient/{p.patient_of(unknown)}"]


def test_several_differences_are_named_together() -> None:
    from fhir_gateway.ingest.model import PersonKey
    from fhir_gateway.pipeline.identity import contradictions
    from fhir_gateway.store.base import StoredVersion

    patient = StoredVersion("Patient", "p", 1, "2026-01-01T00:00:00Z", False, json.dumps(
        {"resourceType": "Patient", "gender": "female", "birthDate": "1951-07-07",
         "name": [{"family": "Jones"}]}))
    person = PersonKey(family="Smith", birth_date="1940-01-01", gender="male")
    assert contradictions(patient, person) == ["birth date", "family name", "sex"]
    assert contradictions(patient, PersonKey(gender="other")) == []
    assert contradictions(patient, PersonKey(gender=None)) == []
