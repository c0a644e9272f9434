"""A Patient's identifiers gather every partner's local id (they link records to the
person); any other resource's identifiers are what its newest record says, like its other
elements: a ReSPECT form replaced by a new one must not be found by the old form's id."""

from __future__ import annotations

import datetime as dt
import json

from fhir_gateway import jsonio
from fhir_gateway.fhir.repository import Repository
from fhir_gateway.pipeline.service import IngestService
from fhir_gateway.store.base import StoreEngine
from fhir_gateway.store.query import IndexQuery

FORM_SYSTEM = "https://hospice.example.org.uk/Id/respect-form"


def client(form: str) -> bytes:
    line = {"clientId": "MSH-1", "nhsNumber": "9434765919",
            "name": {"first": "Ann", "last": "Smith"}, "dob": "1941-11-03",
            "gender": "female", "address": {"line": "1 High St", "town": "Dudley",
                                            "postcode": "DY1 4DX"},
            "admissions": [],
            "respect": {"formId": form, "version": "3", "completedOn": "2026-07-16",
                        "cpr": "not-attempt", "careFocus": "comfort",
                        "preferredPlaceOfCare": "home", "recommendations": "x",
                        "capacity": "has-capacity", "contacts": [],
                        "clinician": {"name": "Dr A", "gmc": "1234567"}}}
    return (json.dumps(line) + "\n").encode()


def test_a_replaced_forms_id_does_not_stay_on_the_plan(engine: StoreEngine) -> None:
    service = IngestService(Repository(engine))
    for i, form in enumerate(["RSP-OLD", "RSP-NEW"]):
        summary = service.ingest("hospice", f"clients{i}.jsonl", client(form),
                                 today=dt.date(2026, 11, 22))
        assert summary.rejected == 0, summary.rejections
    (row,) = Repository(engine).find(IndexQuery(rtype="CarePlan")).rows
    plan = jsonio.loads_trusted(row.body or "{}")
    forms = [i["value"] for i in plan["identifier"] if i.get("system") == FORM_SYSTEM]
    assert forms == ["RSP-NEW"]
    (patient_row,) = Repository(engine).find(IndexQuery(rtype="Patient")).rows
    patient = jsonio.loads_trusted(patient_row.body or "{}")
    assert len(patient["identifier"]) == 2  # the NHS number and the hospice's client id


def test_an_identifier_under_a_system_the_record_does_not_write_stays() -> None:
    """A feed's own id on a resource it wrote over the REST API is not the register's to
    take away; the form id, which the record does write, is replaced."""
    from fhir_gateway.pipeline.merge import merge, stamp

    key = {"system": "https://example.org/Id/cpr-decision", "value": "9434765919"}
    own = {"system": "https://example.org/Id/feed-observation", "value": "OBS-1"}
    stored = {"resourceType": "Observation", "identifier": [
        key, own, {"system": FORM_SYSTEM, "value": "RSP-OLD"}]}
    incoming = {"resourceType": "Observation", "identifier": [
        key, {"system": FORM_SYSTEM, "value": "RSP-NEW"}]}
    merged, _ = merge(stored, incoming, {}, stamp(None, "hospice", "MSH-1"))
    assert merged["identifier"] == [key, {"system": FORM_SYSTEM, "value": "RSP-NEW"}, own]


def test_a_new_form_leaving_out_its_date_and_signer_does_not_keep_the_old_ones(
        engine: StoreEngine) -> None:
    """A hospice line restates the form whole: a new form (for CPR now) without a
    completion date or clinician kept the old form's date and signer, so the crew read
    "FOR ATTEMPTED CPR - decided 16 Jul 2026, Dr A", and a contact's removed phone stayed."""
    service = IngestService(Repository(engine))
    old = json.loads(client("RSP-OLD"))
    old["respect"]["contacts"] = [{"name": "Jo", "relationship": "son", "phone": "0700"}]
    new = json.loads(json.dumps(old))
    new["respect"].update(formId="RSP-NEW", cpr="attempt", recommendations=None,
                          contacts=[{"name": "Jo", "relationship": "son"}])
    del new["respect"]["completedOn"], new["respect"]["clinician"]
    for i, line in enumerate([old, new]):
        summary = service.ingest("hospice", f"clients{i}.jsonl",
                                 (json.dumps(line) + "\n").encode(),
                                 today=dt.date(2026, 11, 22))
        assert summary.rejected == 0, summary.rejections
    repo = Repository(engine)

    def only(rtype: str) -> dict:
        (row,) = repo.find(IndexQuery(rtype=rtype)).rows
        return jsonio.loads_trusted(row.body or "{}")

    plan, contact = only("CarePlan"), only("RelatedPerson")
    (cpr,) = [jsonio.loads_trusted(r.body or "{}") for r in repo.find(
        IndexQuery(rtype="Observation")).rows if '"304251008"' in (r.body or "")]
    assert cpr["valueCodeableConcept"]["coding"][0]["code"] == "450475007"
    assert "effectiveDateTime" not in cpr and "performer" not in cpr
    assert not {"created", "author", "description"} & set(plan)
    assert "telecom" not in contact
    again = service.ingest("hospice", "clients1.jsonl", (json.dumps(new) + "\n").encode(),
                           today=dt.date(2026, 11, 22))
    assert (again.created, again.updated) == (0, 0)  # the same line again: no new versions


def test_a_new_form_without_a_form_id_does_not_keep_the_old_ones(engine: StoreEngine) -> None:
    """Restated without `formId`, the plan still carried the old form's id: the old id found
    the new form, and the crew's summary named it."""
    service = IngestService(Repository(engine))
    new = json.loads(client("RSP-NEW"))
    del new["respect"]["formId"]
    for i, data in enumerate([client("RSP-OLD"), (json.dumps(new) + "\n").encode()]):
        summary = service.ingest("hospice", f"clients{i}.jsonl", data,
                                 today=dt.date(2026, 11, 22))
        assert summary.rejected == 0, summary.rejections
    (row,) = Repository(engine).find(IndexQuery(rtype="CarePlan")).rows
    plan = jsonio.loads_trusted(row.body or "{}")
    assert [i for i in plan["identifier"] if i.get("system") == FORM_SYSTEM] == []
    assert len(plan["identifier"]) == 1  # its own key stays
