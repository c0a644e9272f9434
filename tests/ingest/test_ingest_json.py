"""JSON Lines (hospice mapping) and FHIR STU3 Bundles (community mapping)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from ingest_helpers import by_code, mapped, of_type, only, rejected, run

from fhir_gateway.ingest import Rejection, stu3
from fhir_gateway.ingest.mapping import cached_mapping

CLIENT: dict[str, Any] = {
    "clientId": "MSH-1", "nhsNumber": "9434765919",
    "name": {"first": "Patricia Ann", "last": "White"}, "dob": "1961-11-03", "gender": "female",
    "address": {"line": "1 High St", "town": "Dudley", "postcode": "dy1 4dx"},
    "admissions": [
        {"id": "ADM-1", "unit": "IPU", "admitted": "2026-07-01T08:48",
         "discharged": "2026-07-09T08:48", "reason": "respite"},
        {"id": "ADM-2", "unit": "Day Hospice", "admitted": "2026-01-05T10:00"},
    ],
    "respect": {
        "formId": "RSP-1", "version": "3", "completedOn": "2026-07-16", "cpr": "not-attempt",
        "careFocus": "comfort", "preferredPlaceOfCare": "home",
        "recommendations": "Comfort-focused care only", "capacity": "has-capacity",
        "contacts": [
            {"name": "Peter White", "relationship": "son", "phone": "07700 900502", "lpa": True},
            {"name": "Ann Green", "relationship": "neighbour", "phone": "07700 900503",
             "lpa": False},
        ],
        "clinician": {"name": "Dr Smith", "gmc": "6000676"},
    },
}


def client(**changes: Any) -> str:
    body = json.loads(json.dumps(CLIENT))
    for key, value in changes.items():
        target = body
        *path, last = key.split("__")
        for step in path:
            target = target[step]
        if value is None:
            target.pop(last, None)
        else:
            target[last] = value
    return json.dumps(body)


def test_a_client_with_a_respect_form() -> None:
    record = only(run("hospice", client() + "\n", "clients.jsonl"))
    assert record.source.position == "line 1" and record.source.record_id == "MSH-1"
    assert record.person.local_id == "MSH-1" and record.person.nhs_number == "9434765919"
    assert record.person.postcode == "DY1 4DX"
    [cpr] = by_code(record, "304251008")
    assert cpr["valueCodeableConcept"]["coding"][0]["code"] == "450476008"
    assert cpr["effectiveDateTime"] == "2026-07-16"
    assert cpr["performer"][0]["identifier"] == {
        "system": "https://fhir.hl7.org.uk/Id/gmc-number", "value": "6000676"}
    [place] = by_code(record, "preferred-place-of-care")
    assert place["valueCodeableConcept"]["coding"][0]["code"] == "21"
    [plan] = of_type(record, "CarePlan")
    assert plan["description"] == "Comfort-focused care only"
    assert {"system": "https://hospice.example.org.uk/Id/respect-form",
            "value": "RSP-1"} in plan["identifier"]
    son, neighbour = of_type(record, "RelatedPerson")
    codes = [c["code"] for r in son["relationship"] for c in r.get("coding", [])]
    assert codes == ["C", "SONC", "HPOWATT"]
    assert [c["code"] for r in neighbour["relationship"] for c in r.get("coding", [])] == [
        "C", "NBOR"]
    stay, day = of_type(record, "Encounter")
    assert stay["status"] == "finished" and stay["class"]["code"] == "IMP"
    assert stay["period"] == {"start": "2026-07-01T08:48:00+01:00",
                              "end": "2026-07-09T08:48:00+01:00"}
    assert day["status"] == "in-progress" and day["period"] == {
        "start": "2026-01-05T10:00:00+00:00"}


def test_a_client_without_a_form_retracts_what_the_form_said() -> None:
    record = only(run("hospice", client(respect=None)))
    assert by_code(record, "304251008") == [] and of_type(record, "CarePlan") == []
    retracted = {k.system.rsplit("/", 1)[1] for k in record.retracted}
    assert retracted == {"respect-plan", "cpr-decision", "preferred-place-of-care"}
    # ...and its contacts: the list the form stated is now empty
    [contacts] = record.item_sets
    assert contacts.resource_type == "RelatedPerson" and contacts.keys == ()


def test_the_contacts_are_a_list_stated_in_full() -> None:
    record = only(run("hospice", client()))
    [contacts] = record.item_sets
    assert [k.value for k in contacts.keys] == ["MSH-1/Peter White/son",
                                                "MSH-1/Ann Green/neighbour"]
    assert set(contacts.keys) == {k for k in record.keys if k.resource_type == "RelatedPerson"}
    # the admissions are not: a record may list only recent ones
    assert {i.resource_type for i in record.item_sets} == {"RelatedPerson"}


def test_bad_lines_are_rejected_and_reading_goes_on() -> None:
    text = "\n".join([client(), "{not json", "", "[1, 2]", client(clientId="MSH-2")]) + "\n"
    results = run("hospice", text, "clients.jsonl")
    assert [r.source.position for r in results] == ["line 1", "line 2", "line 4", "line 5"]
    bad_json, array = rejected(results)
    assert "line 2" in bad_json.reason and "not valid JSON" in bad_json.reason
    assert "clients.jsonl" in bad_json.reason and bad_json.source.raw == "{not json"
    assert "not an object" in array.reason
    assert len(mapped(results)) == 2


def test_crlf_and_a_byte_order_mark() -> None:
    results = run("hospice", b"\xef\xbb\xbf" + (client() + "\r\n" + client() + "\r\n").encode())
    assert len(mapped(results)) == 2


def test_bad_nhs_number_and_date_are_both_named() -> None:
    [bad] = run("hospice", client(nhsNumber="12345", dob="not-a-date"), "clients.jsonl")
    assert bad.field == "nhsNumber, dob"
    for part in ("hospice", "clients.jsonl", "line 1", "nhsNumber", "dob"):
        assert part in bad.reason


def test_an_unknown_place_term_rejects_the_record_naming_field_and_term() -> None:
    [bad] = run("hospice", client(respect__preferredPlaceOfCare="nursing-home"))
    assert isinstance(bad, Rejection) and bad.field == "respect.preferredPlaceOfCare", bad
    assert "'nursing-home'" in bad.reason and "hospice-place" in bad.reason


def test_an_unknown_cpr_value_rejects_the_record() -> None:
    [bad] = run("hospice", client(respect__cpr="maybe"))
    assert bad.field == "respect.cpr"
    assert "hospice-cpr" in bad.reason


def test_an_lpa_flag_other_than_true_or_false_rejects_the_record() -> None:
    """Whether someone may speak for the person is never guessed: "yes" is not read as
    "not an attorney"; false and a missing flag record nothing."""
    for flag in ("yes", "Y", 1):
        contacts = [{"name": "Jo", "relationship": "son", "phone": "1", "lpa": flag}]
        [bad] = run("hospice", client(respect__contacts=contacts))
        assert isinstance(bad, Rejection), flag
        assert bad.field == "respect.contacts[0].lpa" and "hospice-lpa" in bad.reason
    for contact in ({"lpa": False}, {}):
        contacts = [{"name": "Jo", "relationship": "son", "phone": "1", **contact}]
        record = only(run("hospice", client(respect__contacts=contacts)))
        [person] = of_type(record, "RelatedPerson")
        assert [c["code"] for r in person["relationship"] for c in r.get("coding", [])] == [
            "C", "SONC"]
        assert len(person["relationship"]) == 2 and not record.warnings


def test_a_form_completed_after_today_is_rejected_and_named_once() -> None:
    [bad] = run("hospice", client(respect__completedOn="2062-03-05"))
    assert isinstance(bad, Rejection) and bad.field == "respect.completedOn"
    assert bad.reason.count("after today") == 1, bad.reason


def test_a_problem_in_a_list_item_is_named_by_its_place_in_the_list() -> None:
    admissions = [{"id": "A1", "unit": "IPU", "admitted": "2026-02-26T08:48"},
                  {"id": "A2", "unit": "IPU", "admitted": "2026-02-30T08:48"}]
    [bad] = run("hospice", client(admissions=admissions))
    assert isinstance(bad, Rejection) and bad.field == "admissions[1].admitted", bad
    assert "admissions[1].admitted: '2026-02-30T08:48' is not a real date" in bad.reason


def test_an_admission_without_an_id_cannot_be_kept_up_to_date() -> None:
    admissions = [{"unit": "IPU", "admitted": "2026-07-01T08:48"}]
    [bad] = run("hospice", client(admissions=admissions))
    assert bad.field == "admissions[0].id"


def test_an_unknown_relationship_is_kept_as_text() -> None:
    contacts = [{"name": "Jo", "relationship": "godson", "phone": "1", "lpa": False}]
    record = only(run("hospice", client(respect__contacts=contacts)))
    [person] = of_type(record, "RelatedPerson")
    assert {"text": "godson"} in person["relationship"]
    assert record.warnings


@pytest.mark.parametrize(("renamed", "field"), [("respect", "respect"),
                                              ("nhsNumber", "nhsNumber")])
def test_a_field_spelt_otherwise_is_refused_not_read_as_absent(renamed: str,
                                                               field: str) -> None:
    """`ReSPECT` for `respect` read as "no form", which retracts every decision on it
    without a word; `NHS_Number` for `nhsNumber` as a client without a number."""
    line = json.loads(client())
    line[{"respect": "ReSPECT", "nhsNumber": "NHS_Number"}[renamed]] = line.pop(renamed)
    [bad] = run("hospice", json.dumps(line))
    assert isinstance(bad, Rejection) and bad.field == field
    assert "spelt otherwise" in bad.reason


def test_the_same_contact_twice_is_kept_once_with_a_warning() -> None:
    contact = {"name": "Jo", "relationship": "son", "phone": "1", "lpa": True}
    record = only(run("hospice", client(respect__contacts=[contact, contact])))
    assert len(of_type(record, "RelatedPerson")) == 1
    assert any("respect.contacts[1] repeats an earlier item exactly" in w
               for w in record.warnings)


def test_two_contacts_the_identifier_cannot_tell_apart_are_both_kept() -> None:
    """Two different contacts with one key: the second was left out with a warning only,
    an LPA holder among them (two unnamed friends); refusing the record instead held up
    the whole form, its CPR decision too."""
    neighbour = {"relationship": "friend", "phone": "1", "lpa": False}
    daughter = {"relationship": "friend", "phone": "2", "lpa": True}
    record = only(run("hospice", client(respect__contacts=[neighbour, daughter])))
    people = of_type(record, "RelatedPerson")
    assert [p["telecom"][0]["value"] for p in people] == ["1", "2"]
    keys = [p["identifier"][0]["value"] for p in people]
    assert all(k.startswith("MSH-1//friend#") for k in keys) and len(set(keys)) == 2
    [contacts] = record.item_sets  # both are the list stated in full
    assert [k.value for k in contacts.keys] == keys
    # keyed by what each says, not by place: the other order, or the second listed
    # again, gives the same two
    for again in ([daughter, neighbour], [neighbour, daughter, daughter]):
        other = only(run("hospice", client(respect__contacts=again)))
        assert sorted(p["identifier"][0]["value"]
                      for p in of_type(other, "RelatedPerson")) == sorted(keys)


def test_a_contact_key_keeps_its_parts_apart() -> None:
    """The key joined client id, name and relationship with "/": client `C/1`'s contact
    Ann and client `C`'s contact `1/Ann` were one resource, two people's contacts made
    one (left in session 16)."""
    def key(client_id: str, name: str) -> str:
        contact = {"name": name, "relationship": "son", "phone": "1", "lpa": False}
        record = only(run("hospice", client(clientId=client_id, respect__contacts=[contact])))
        [person] = of_type(record, "RelatedPerson")
        return person["identifier"][0]["value"]

    assert key("C/1", "Ann") != key("C", "1/Ann")
    assert key("C/1", "Ann") == "C%2F1/Ann/son" and key("C", "1/Ann") == "C/1%2FAnn/son"
    assert key("C", "50% Ann#2") == "C/50%25 Ann%232/son"
    assert key("MSH-1", "Peter White") == "MSH-1/Peter White/son"  # as stored before


def test_a_son_and_a_husband_of_one_name_are_two_contacts() -> None:
    son = {"name": "John Smith", "relationship": "son", "phone": "1", "lpa": False}
    husband = {"name": "John Smith", "relationship": "husband", "phone": "2", "lpa": True}
    record = only(run("hospice", client(respect__contacts=[son, husband])))
    people = of_type(record, "RelatedPerson")
    assert len(people) == 2 and not record.warnings
    assert [any(c.get("code") == "HPOWATT" for r in p["relationship"]
                for c in r.get("coding", [])) for p in people] == [False, True]


# --- STU3 ---------------------------------------------------------------------------------


def bundle(*entries: dict[str, Any]) -> str:
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": list(entries)})


PATIENT = {"fullUrl": "urn:uuid:pat-1", "resource": {
    "resourceType": "Patient", "id": "CMT1",
    "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"},
                   {"system": "https://community.example.nhs.uk/Id/patient", "value": "CMT1"}],
    "name": [{"family": "Jackson", "given": ["Ronald"]}], "gender": "male",
    "birthDate": "1928-08-13"}}
VISIT = {"fullUrl": "urn:uuid:enc-1", "resource": {
    "resourceType": "Encounter", "id": "CMT1-E0", "status": "finished",
    "class": {"system": "http://hl7.org/fhir/v3/ActCode", "code": "HH"},
    "subject": {"reference": "urn:uuid:pat-1"},
    "reason": [{"text": "breathless"}],
    "period": {"start": "2026-01-27T09:47", "end": "2026-07-27T10:32"}}}
PLAN = {"fullUrl": "urn:uuid:cp-1", "resource": {
    "resourceType": "CarePlan", "id": "CMT1-CP", "status": "suspended", "intent": "plan",
    "context": {"reference": "urn:uuid:enc-1"},
    "definition": [{"reference": "PlanDefinition/community-palliative-pathway"}],
    "subject": {"reference": "urn:uuid:pat-1"},
    "activity": [{"detail": {"status": "in-progress", "description": "Pressure area care"}}]}}


def test_stu3_entries_become_r4() -> None:
    results = run("community", bundle(PATIENT, VISIT, PLAN), "bundle-1.json")
    patient_only, visit, plan = mapped(results)
    assert [r.source.position for r in results] == ["entry 1", "entry 2", "entry 3"]
    assert patient_only.resources == () and patient_only.person.local_id == "CMT1"
    [encounter] = visit.resources
    assert encounter["class"]["system"] == "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    assert encounter["period"] == {"start": "2026-01-27T09:47:00+00:00",
                                   "end": "2026-07-27T10:32:00+01:00"}
    assert encounter["reasonCode"] == [{"text": "breathless"}]
    [careplan] = plan.resources
    assert careplan["status"] == "on-hold"
    assert careplan["instantiatesCanonical"] == ["PlanDefinition/community-palliative-pathway"]
    assert careplan["encounter"] == {"type": "Encounter", "identifier": {
        "system": "https://community.example.nhs.uk/Id/encounter", "value": "CMT1-E0"}}
    assert "context" not in careplan and "definition" not in careplan
    # the record id is the resource's type and id (fullUrls may be minted per extract)
    assert plan.source.record_id == "CarePlan/CMT1-CP"


@pytest.mark.parametrize("subject", ["urn:uuid:pat-1", "https://c.example/fhir/Patient/CMT1",
                                     "https://c.example/fhir/Patient/CMT1/_history/3",
                                     "#p", {"system": "https://fhir.nhs.uk/Id/nhs-number",
                                            "value": "9434765919"}])
def test_a_visits_subject_in_each_form_stu3_servers_send_finds_its_patient(
        subject: Any) -> None:
    """A Patient entry without an id (known by its urn:uuid fullUrl), an absolute URL to a
    Patient entry, a contained Patient and a reference by NHS number were all refused,
    "the record has neither an NHS number nor the partner's own identifier"."""
    patient = {**PATIENT, "resource": {**PATIENT["resource"]}}
    visit = {**VISIT, "resource": {**VISIT["resource"]}}
    if subject == "urn:uuid:pat-1":
        del patient["resource"]["id"]
    if isinstance(subject, str) and subject.startswith("https:"):
        # an absolute reference is found by fullUrl alone (its version dropped)
        patient["fullUrl"] = subject.partition("/_history/")[0]
    if subject == "#p":
        visit["resource"]["contained"] = [{**PATIENT["resource"], "id": "p"}]
    visit["resource"]["subject"] = {"identifier": subject} if isinstance(subject, dict) \
        else {"reference": subject}
    *_, mapped_visit = mapped(run("community", bundle(patient, visit), "bundle-1.json"))
    assert mapped_visit.person.nhs_number == "9434765919"
    [encounter] = mapped_visit.resources
    assert encounter["resourceType"] == "Encounter"


def test_a_primitive_extension_is_not_a_misspelt_field() -> None:
    """`_birthDate` (FHIR JSON's data-absent-reason beside no birthDate) was taken for a
    misspelling of `birthDate`, and the person's whole Bundle rejected."""
    resource = {k: v for k, v in PATIENT["resource"].items() if k != "birthDate"}
    resource["_birthDate"] = {"extension": [{
        "url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason",
        "valueCode": "unknown"}]}
    results = run("community", bundle({**PATIENT, "resource": resource}, VISIT),
                  "bundle-1.json")
    assert not any(isinstance(r, Rejection) for r in results), results


@pytest.mark.parametrize("subject", ["urn:uuid:nobody",
                                     "https://gp-system.example/fhir/Patient/CMT1"])
def test_a_subject_naming_no_patient_says_so(subject: str) -> None:
    """Another server's Patient with the id of this Bundle's is not this Bundle's."""
    patient = {**PATIENT, "fullUrl": "https://c.example/fhir/Patient/CMT1"}
    visit = {**VISIT, "resource": {**VISIT["resource"], "subject": {"reference": subject}}}
    _, bad = run("community", bundle(patient, visit), "bundle-1.json")
    assert isinstance(bad, Rejection) and bad.field == "subject"
    assert subject in bad.reason and "neither a Patient entry of this Bundle" in bad.reason


def test_a_context_naming_an_encounter_version_names_that_encounter() -> None:
    """`Encounter/CMT1-E0/_history/2` was read as Encounter `2`: another visit's."""
    plan = {**PLAN, "resource": {**PLAN["resource"],
                                 "context": {"reference": "Encounter/CMT1-E0/_history/2"}}}
    *_, mapped_plan = mapped(run("community", bundle(PATIENT, VISIT, plan), "bundle-1.json"))
    [careplan] = mapped_plan.resources
    assert careplan["encounter"]["identifier"]["value"] == "CMT1-E0"


def test_a_context_naming_another_servers_encounter_is_refused_not_linked() -> None:
    """Another server's `Encounter/CMT1-E0` was linked to this trust's visit of that id
    (left in session 18): the plan would be filed under a visit it was never about."""
    foreign = "https://acute.example/fhir/Encounter/CMT1-E0"
    plan = {**PLAN, "resource": {**PLAN["resource"], "context": {"reference": foreign}}}
    patient, visit, bad = run("community", bundle(PATIENT, VISIT, plan), "bundle-1.json")
    assert not isinstance(patient, Rejection) and not isinstance(visit, Rejection)
    assert isinstance(bad, Rejection) and bad.source.position == "entry 3", bad
    assert bad.field == "resource.encounter.reference" and foreign in bad.reason
    assert "another server" in bad.reason and "fhir_base" in bad.reason


@pytest.mark.parametrize("base", ["https://c.example/fhir", "https://c.example/fhir/"])
def test_a_context_under_the_partners_own_fhir_base_is_linked(base: str) -> None:
    """A trust whose server writes its own references as absolute URLs says so in its
    mapping (`fhir_base`), and those name its own visits."""
    community = cached_mapping("community")
    own = dataclasses.replace(community, settings=dataclasses.replace(
        community.settings, fhir_base=base.rstrip("/")))
    plan = {**PLAN, "resource": {**PLAN["resource"], "context": {
        "reference": f"{base.rstrip('/')}/Encounter/CMT1-E9/_history/3"}}}
    *_, mapped_plan = mapped(run(own, bundle(PATIENT, VISIT, plan), "bundle-1.json"))
    [careplan] = mapped_plan.resources
    assert careplan["encounter"]["identifier"]["value"] == "CMT1-E9"
    other = {**PLAN, "resource": {**PLAN["resource"], "context": {
        "reference": "https://c.example/fhir-other/Encounter/CMT1-E9"}}}
    *_, bad = run(own, bundle(PATIENT, VISIT, other), "bundle-1.json")
    assert isinstance(bad, Rejection) and "its server is https://c.example/fhir" in bad.reason


@pytest.mark.parametrize("ref", ["https://c.example/fhir/Encounter/CMT1-E0/_history/1",
                                 "https://c.example/fhir/Encounter/CMT1-E0 ",
                                 "Encounter/CMT1-E0/_history/1"])
def test_a_context_naming_an_entry_of_the_bundle_by_its_fullurl_is_linked(ref: str) -> None:
    """A version (or a stray space) after the entry's fullUrl hid the entry, and the
    context was refused as another server's (review 21 of bcee770)."""
    visit = {**VISIT, "fullUrl": "https://c.example/fhir/Encounter/CMT1-E0"}
    plan = {**PLAN, "fullUrl": "https://c.example/fhir/CarePlan/CMT1-CP",
            "resource": {**PLAN["resource"], "context": {"reference": ref}}}
    *_, mapped_plan = mapped(run("community", bundle(PATIENT, visit, plan), "bundle-1.json"))
    [careplan] = mapped_plan.resources
    assert careplan["encounter"]["identifier"]["value"] == "CMT1-E0"


@pytest.mark.parametrize("ref", ["https://C.EXAMPLE/fhir/Encounter/CMT1-E9",
                                 "HTTPS://c.example/fhir/Encounter/CMT1-E9",
                                 "https://c.example:443/fhir/Encounter/CMT1-E9"])
def test_the_partners_own_server_is_known_however_its_url_is_spelt(ref: str) -> None:
    community = cached_mapping("community")
    own = dataclasses.replace(community, settings=dataclasses.replace(
        community.settings, fhir_base="https://c.example/fhir"))
    plan = {**PLAN, "resource": {**PLAN["resource"], "context": {"reference": ref}}}
    *_, mapped_plan = mapped(run(own, bundle(PATIENT, VISIT, plan), "bundle-1.json"))
    assert mapped_plan.resources[0]["encounter"]["identifier"]["value"] == "CMT1-E9"


def test_a_relative_context_in_another_servers_entry_is_that_servers() -> None:
    """R4 resolves `Encounter/CMT1-E0` in an entry whose fullUrl is another server's
    against that server: it was linked to the trust's own CMT1-E0."""
    plan = {**PLAN, "fullUrl": "https://acute.example/fhir/CarePlan/CMT1-CP",
            "resource": {**PLAN["resource"], "context": {"reference": "Encounter/CMT1-E0"}}}
    *_, bad = run("community", bundle(PATIENT, VISIT, plan), "bundle-1.json")
    assert isinstance(bad, Rejection) and "another server" in bad.reason
    assert "https://acute.example/fhir/Encounter/CMT1-E0" in bad.reason


@pytest.mark.parametrize("context", [{"reference": "EpisodeOfCare/CMT1-E0"},
                                     {"reference": "https://c.example/fhir/EpisodeOfCare/E0"},
                                     {"reference": "urn:uuid:ep-1", "type": "EpisodeOfCare"}])
def test_a_plan_in_an_episode_of_care_is_not_linked_to_an_encounter(
        context: dict[str, Any]) -> None:
    """STU3's context may be an EpisodeOfCare; renamed to R4's encounter, its id found the
    home visit Encounter of the same id, a link the partner never made."""
    plan = {**PLAN, "resource": {**PLAN["resource"], "context": context}}
    *_, mapped_plan = mapped(run("community", bundle(PATIENT, VISIT, plan), "bundle-1.json"))
    [careplan] = mapped_plan.resources
    assert "encounter" not in careplan and "context" not in careplan


def test_an_entry_no_rule_reads_is_rejected_for_review_not_dropped() -> None:
    # a DNACPR sent as a Flag (the older end-of-life form) must be seen, not counted as
    # "unchanged" and lost
    flag = {"fullUrl": "urn:uuid:f-1", "resource": {
        "resourceType": "Flag", "id": "F1", "status": "active",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "450476008"}]},
        "subject": {"reference": "urn:uuid:pat-1"}}}
    patient, bad = run("community", bundle(PATIENT, flag), "bundle-1.json")
    assert not isinstance(patient, Rejection)  # the person's own entry needs no rule
    assert isinstance(bad, Rejection) and bad.field == "resource.resourceType", bad
    assert bad.source.position == "entry 2" and "'Flag'" in bad.reason
    assert "kept for review" in bad.reason


def test_stu3_to_r4_tables() -> None:
    assert stu3.r4_system("http://hl7.org/fhir/v3/RoleCode") == (
        "http://terminology.hl7.org/CodeSystem/v3-RoleCode")
    assert stu3.r4_system("http://hl7.org/fhir/v2/0203") == (
        "http://terminology.hl7.org/CodeSystem/v2-0203")
    assert stu3.r4_system("http://snomed.info/sct") == "http://snomed.info/sct"
    converted = stu3.to_r4({"resourceType": "CarePlan", "status": "cancelled",
                            "definition": [{"reference": "https://example.org/pathway.pdf"}],
                            "activity": [{"detail": {"definition": {
                                "reference": "PlanDefinition/x"}}}]})
    assert converted["status"] == "revoked"
    assert converted["instantiatesUri"] == ["https://example.org/pathway.pdf"]
    assert converted["activity"][0]["detail"]["instantiatesCanonical"] == ["PlanDefinition/x"]
    # an activity not to be done ("do not admit to hospital") keeps its meaning
    dont = stu3.to_r4({"resourceType": "CarePlan", "activity": [{"detail": {
        "status": "not-started", "prohibited": True, "description": "Hospital admission"}}]})
    assert dont["activity"][0]["detail"] == {"status": "not-started", "doNotPerform": True,
                                             "description": "Hospital admission"}



def test_stu3_activity_elements_r4_changed_are_converted_not_refused() -> None:
    # valid STU3: statusReason was a string (R4: CodeableConcept), category left R4 (kept
    # in FHIR's cross-version extension); before, each such care plan was rejected
    category = {"coding": [{"system": "http://hl7.org/fhir/care-plan-activity-category",
                            "code": "procedure"}]}
    plan = {"fullUrl": "urn:uuid:cp-2", "resource": {
        **{k: v for k, v in PLAN["resource"].items() if k != "context"}, "id": "CMT1-CP2",
        "activity": [{"detail": {"status": "cancelled", "statusReason": "patient declined",
                                 "category": category, "description": "Syringe driver"}}]}}
    _patient, converted = mapped(run("community", bundle(PATIENT, plan)))
    [careplan] = converted.resources
    detail = careplan["activity"][0]["detail"]
    assert detail["statusReason"] == {"text": "patient declined"}
    assert detail["extension"] == [{
        "url": "http://hl7.org/fhir/3.0/StructureDefinition/extension-"
               "CarePlan.activity.detail.category",
        "valueCodeableConcept": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/care-plan-activity-category",
            "code": "procedure"}]}}]
    assert "category" not in detail


def test_an_invalid_entry_is_rejected_the_others_are_read() -> None:
    broken = json.loads(json.dumps(VISIT))
    broken["resource"]["period"]["start"] = "the 27th"
    results = run("community", bundle(PATIENT, broken, PLAN), "bundle-2.json")
    [bad] = rejected(results)
    assert bad.source.position == "entry 2" and bad.field == "Encounter.period.start"
    assert "bundle-2.json" in bad.reason and "community" in bad.reason
    assert len(mapped(results)) == 2


def test_an_impossible_local_date_time_rejects_its_entry_only() -> None:
    """A local date-time that looks right but is no date (month 13) is that entry's
    problem, kept with its raw text; the Bundle's other entries are read."""
    broken = json.loads(json.dumps(VISIT))
    broken["resource"]["period"]["start"] = "2026-13-45T09:47"
    results = run("community", bundle(PATIENT, broken, PLAN), "bundle-3.json")
    [bad] = rejected(results)
    assert bad.source.position == "entry 2" and "date-time" in bad.reason
    assert "2026-13-45T09:47" in bad.source.raw
    assert len(mapped(results)) == 2
    assert VISIT["resource"]["period"]["start"] == "2026-01-27T09:47"  # input untouched


def test_entries_of_an_invalid_patient_are_rejected() -> None:
    broken = json.loads(json.dumps(PATIENT))
    broken["resource"]["gender"] = 7
    results = run("community", bundle(broken, VISIT))
    assert [r.field for r in rejected(results)] == ["Patient.gender", "subject"]


def test_a_patient_with_a_bad_nhs_number_is_rejected() -> None:
    broken = json.loads(json.dumps(PATIENT))
    broken["resource"]["identifier"][0]["value"] = "9434765918"
    results = run("community", bundle(broken, VISIT))
    assert all("check digit" in r.reason for r in results) and len(rejected(results)) == 2


def test_files_that_are_not_bundles() -> None:
    for text in ("{oops", json.dumps({"resourceType": "Patient"}), json.dumps([1])):
        [bad] = run("community", text, "bundle-x.json")
        assert bad.source.position == "file"
        assert "bundle-x.json" in bad.reason


def test_a_partners_patient_keeps_only_the_nhs_number_and_its_own_identifier() -> None:
    # Its copy of a hospital MRN would be added to the shared Patient on its say-so, and
    # the next record with that MRN linked to this person by it (tests/pipeline).
    copied = {"system": "https://acute.example.nhs.uk/Id/mrn", "value": "M5"}
    patient = {**PATIENT, "resource": {**PATIENT["resource"], "identifier": [
        *PATIENT["resource"]["identifier"], copied, {"value": "no-system"}]}}
    [record] = mapped(run("community", bundle(patient), "bundle-1.json"))
    assert record.patient["identifier"] == PATIENT["resource"]["identifier"]
    assert any("left out identifiers under None, https://acute.example.nhs.uk/Id/mrn" in w
               for w in record.warnings), record.warnings


def test_a_form_with_a_blank_cpr_is_rejected_not_retracted() -> None:
    # The form is there; its CPR answer is not: kept for review, nothing retracted (a
    # client with no form at all retracts what the form said: see above).
    for changes in ({"respect__cpr": ""}, {"respect__cpr": None}, {"respect__cpr": " "}):
        [bad] = run("hospice", client(**changes))
        assert isinstance(bad, Rejection) and bad.field == "respect.cpr", (changes, bad)
        assert "never reads an empty value" in bad.reason


def test_an_empty_form_object_is_rejected_not_retracted() -> None:
    # "respect": {} is a form sent with nothing in it, not "no form": retracting would
    # delete the hospice's DNACPR because a serializer left out null keys
    [bad] = run("hospice", client(respect={}))
    assert isinstance(bad, Rejection) and bad.field == "respect.cpr", bad
    assert "never reads an empty value" in bad.reason
    record = only(run("hospice", client(respect=[])))  # no forms at all: retracts
    assert by_code(record, "304251008") == []


def test_two_forms_sent_as_a_list_are_rejected_not_read_as_the_first() -> None:
    older = {**CLIENT["respect"], "formId": "RSP-0", "cpr": "attempt",
             "completedOn": "2025-01-05"}
    [bad] = run("hospice", client(respect=[older, CLIENT["respect"]]))
    assert isinstance(bad, Rejection), bad
    assert "respect.cpr" in bad.field.split(", ")
    assert "holds a list of 2 items where one is read" in bad.reason
    # a list of one form is that form
    record = only(run("hospice", client(respect=[CLIENT["respect"]])))
    [cpr] = by_code(record, "304251008")
    assert cpr["valueCodeableConcept"]["coding"][0]["code"] == "450476008"


def test_a_name_twice_in_one_form_rejects_the_line() -> None:
    line = client().replace('"cpr": "not-attempt"', '"cpr": "attempt", "cpr": "not-attempt"')
    assert line.count('"cpr"') == 2
    [bad] = run("hospice", line + "\n")
    assert isinstance(bad, Rejection) and "appears twice in one object" in bad.reason


def test_text_where_an_object_is_expected_is_rejected_not_dropped() -> None:
    [bad] = run("hospice", client(name="Patricia White"))
    assert isinstance(bad, Rejection) and "name.last" in bad.field.split(", "), bad
    assert "holds str where an object is expected" in bad.reason
    [bad] = run("hospice", client(address="1 High St, Dudley DY1 4DX"))
    assert isinstance(bad, Rejection) and "address.postcode" in bad.field.split(", "), bad


def test_an_entry_without_a_resource_id_is_known_by_its_full_url() -> None:
    plan = {**PLAN, "resource": {k: v for k, v in PLAN["resource"].items() if k != "id"}}
    results = run("community", bundle(PATIENT, plan), "bundle-1.json")
    # marked so it sorts before every resource id: a minted uuid outranks no later extract
    assert results[1].source.record_id == "(no resource id) urn:uuid:cp-1"
    assert results[1].source.record_id < "CarePlan/CMT1-CP"
