"""A held record retried later must not overwrite what the partner sent after it.

Partners without event times (the hospice) order one record's versions only by when they
came. A January line held (no NHS number yet) and retried after June's line for the same
client had been applied rewrote the CPR decision to January's, and left the queue; two
held lines retried together were applied in the order of a hash of their text."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from fhir_gateway import jsonio
from fhir_gateway.fhir.repository import Repository
from fhir_gateway.pipeline.service import IngestService
from fhir_gateway.store.base import StoreEngine
from fhir_gateway.store.query import IndexQuery
from gatewaykit import ENGINES, make_engine

TODAY = dt.date(2026, 11, 22)
COUNCIL = ("Person ID,Title,First Name,Last Name,DOB,Postcode,NHS No (if known),Service,"
           "Service Start,Service End,Provider,Key Worker\r\n"
           "SC9,Ms,Philippa,Quennell,1950-02-03,DY1 4DX,9434765919,Home care,2026-07-01,,"
           "Oakleigh,B J\r\n")


def line(cpr: str, form: str, on: str, *, nhs: bool, words: str = "x") -> bytes:
    client: dict[str, Any] = {
        "clientId": "MSH-1", "name": {"first": "Philippa", "last": "Quennell"},
        "dob": "1950-02-03", "gender": "female",
        "address": {"line": "1 High St", "town": "Dudley", "postcode": "DY1 4DX"},
        "admissions": [],
        "respect": {"formId": form, "version": "3", "completedOn": on, "cpr": cpr,
                    "careFocus": "comfort", "preferredPlaceOfCare": "home",
                    "recommendations": words, "capacity": "has-capacity", "contacts": [],
                    "clinician": {"name": "Dr A", "gmc": "1234567"}}}
    if nhs:
        client["nhsNumber"] = "9434765919"
    return (json.dumps(client) + "\n").encode()


def cpr_decisions(engine: StoreEngine) -> list[tuple[str, str]]:
    rows = Repository(engine).find(IndexQuery(rtype="Observation")).rows
    found = [jsonio.loads_trusted(r.body or "{}") for r in rows]
    return [(o["valueCodeableConcept"]["text"], o["effectiveDateTime"]) for o in found
            if o["code"]["coding"][0]["code"] == "304251008"]


def test_a_held_older_line_does_not_overwrite_the_newer_one_applied(
        engine: StoreEngine) -> None:
    service = IngestService(Repository(engine))
    held = service.ingest("hospice", "jan.jsonl",
                          line("attempt", "RSP-1", "2026-01-10", nhs=False), today=TODAY)
    assert held.held == 1
    june = service.ingest("hospice", "jun.jsonl",
                          line("not-attempt", "RSP-2", "2026-06-01", nhs=True), today=TODAY)
    assert june.rejected == 0 and june.held == 0
    assert cpr_decisions(engine) == [("not-attempt", "2026-06-01")]
    (key, kept), = service.loader.list_held()  # kept, and said why, never applied unseen
    assert kept["record"]["source"]["file"] == "jan.jsonl"
    assert "a newer record with the same id" in kept["reason"]
    versions = Repository(engine).find(IndexQuery(rtype="Observation")).rows[0].version
    again = service.loader.retry_held()  # and again: nothing changes, not even the hold
    assert (again.created, again.updated) == (0, 0)
    assert service.loader.list_held() == [(key, kept)]
    assert Repository(engine).find(IndexQuery(rtype="Observation")).rows[0].version == versions


@pytest.mark.parametrize("kind", ENGINES)
def test_held_lines_of_one_client_are_applied_in_the_order_they_came(
        kind: str, tmp_path: Path) -> None:
    """Two wordings, so that January's key sorts first in one run and June's in the other."""
    orders = set()
    for i, words in enumerate(["Jan recs", "a"]):
        engine = make_engine(kind, tmp_path / str(i))
        try:
            service = IngestService(Repository(engine))
            jan = line("attempt", "RSP-1", "2026-01-10", nhs=False, words=words)
            jun = line("not-attempt", "RSP-2", "2026-06-01", nhs=False, words="Jun recs")
            for name, data in (("jan.jsonl", jan), ("jun.jsonl", jun)):
                assert service.ingest("hospice", name, data, today=TODAY).held == 1
            orders.add(tuple(h["record"]["source"]["file"][:3]
                             for _, h in service.loader.list_held()))
            service.ingest("socialcare", "council.csv", COUNCIL.encode(), today=TODAY)
            assert service.loader.list_held() == []
            assert cpr_decisions(engine) == [("not-attempt", "2026-06-01")]
        finally:
            engine.close()
    assert orders == {("jan", "jun"), ("jun", "jan")}


def test_a_form_delivered_again_after_an_old_one_is_the_later_word(engine: StoreEngine) -> None:
    """June's form held, an old January extract re-run by mistake and held, June's sent
    again: retried in the order they first came, January was applied last."""
    service = IngestService(Repository(engine))
    jun = line("not-attempt", "RSP-2", "2026-06-01", nhs=False, words="Jun recs")
    jan = line("attempt", "RSP-1", "2026-01-10", nhs=False, words="Jan recs")
    for name, data in (("jun.jsonl", jun), ("jan.jsonl", jan), ("jun-again.jsonl", jun)):
        assert service.ingest("hospice", name, data, today=TODAY).held == 1
    service.ingest("socialcare", "council.csv", COUNCIL.encode(), today=TODAY)
    assert cpr_decisions(engine) == [("not-attempt", "2026-06-01")]


def _held_in_conflict(engine: StoreEngine) -> tuple[IngestService, bytes, str]:
    """December's form applied; January's line held, its NHS number another Patient's
    (a typing slip the hospice later corrects)."""
    repo = Repository(engine)
    service = IngestService(repo)
    other = repo.create({"resourceType": "Patient", "name": [{"family": "Other"}],
                         "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number",
                                         "value": OTHER_NHS}]}).stored.rid
    december = line("not-attempt", "RSP-0", "2025-12-01", nhs=True)
    assert service.ingest("hospice", "dec.jsonl", december, today=TODAY).created > 0
    january = {**json.loads(line("attempt", "RSP-1", "2026-01-10", nhs=True)),
               "nhsNumber": OTHER_NHS}
    assert service.ingest("hospice", "jan.jsonl", (json.dumps(january) + "\n").encode(),
                          today=TODAY).held == 1
    (_, held), = service.loader.list_held()
    assert "a newer record" not in held["reason"]
    return service, december, other


OTHER_NHS = "9434765870"


def test_a_line_restating_what_stands_supersedes_an_older_held_line(
        engine: StoreEngine) -> None:
    """June's extract restates December's form unchanged: no Provenance is written, and
    January's held line was left looking like a plain identity conflict, for a reviewer
    to attach over June's word (or a retry to apply once the conflict went)."""
    service, december, other = _held_in_conflict(engine)
    june = service.ingest("hospice", "jun.jsonl", december, today=TODAY)
    assert (june.created, june.updated, june.held) == (0, 0, 0)
    (key, held), = service.loader.list_held()
    assert held["reason"].startswith("a newer record with the same id, received ")
    assert held["record"]["source"]["file"] == "jan.jsonl"
    # the conflict gone, a retry still does not bring January's form back
    Repository(engine).delete("Patient", other)
    service.loader.retry_held()
    assert [k for k, _ in service.loader.list_held()] == [key]
    assert cpr_decisions(engine) == [("not-attempt", "2025-12-01")]


def test_a_line_changing_the_record_marks_the_older_held_line_at_once(
        engine: StoreEngine) -> None:
    service, _, _ = _held_in_conflict(engine)
    june = service.ingest("hospice", "jun.jsonl",
                          line("not-attempt", "RSP-2", "2026-06-01", nhs=True), today=TODAY)
    assert june.updated + june.created > 0
    (_, held), = service.loader.list_held()
    assert held["reason"].startswith("a newer record with the same id, received ")


def test_a_line_of_another_client_leaves_the_held_line_as_it_was(engine: StoreEngine) -> None:
    service, _, _ = _held_in_conflict(engine)
    other = json.loads(line("not-attempt", "RSP-9", "2026-06-01", nhs=False))
    other.update(clientId="MSH-10", name={"first": "Ann", "last": "Else"})
    service.ingest("hospice", "jun.jsonl", (json.dumps(other) + "\n").encode(), today=TODAY)
    (january,) = [h for _, h in service.loader.list_held()
                  if h["record"]["source"]["file"] == "jan.jsonl"]
    assert january["reason"].startswith("NHS number")


def test_a_newer_line_applied_while_a_retry_runs_is_not_overwritten(
        engine: StoreEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A retry chooses its records in a read, then writes: a run overlapping it (an API
    or MLLP delivery) applied June's DNACPR in between, and the retry then applied
    January's "for CPR" form over it."""
    from fhir_gateway.pipeline import loader as loader_module

    repo = Repository(engine)
    service = IngestService(repo)
    assert service.ingest("hospice", "jan.jsonl", line("attempt", "RSP-1", "2026-01-10",
                                                      nhs=False), today=TODAY).held == 1
    repo.create({"resourceType": "Patient", "birthDate": "1950-02-03", "gender": "female",
                 "name": [{"family": "Quennell", "given": ["Philippa"]}],
                 "address": [{"line": ["1 High St"], "city": "Dudley",
                              "postalCode": "DY1 4DX"}],
                 "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number",
                                 "value": "9434765919"}]})
    write_batch = loader_module.Loader._apply_batch
    overlapped = []

    def overlapping(self: Any, batch: Any, summary: Any, held_now: Any, progress: Any,
                    received: Any = None) -> Any:
        if received and not overlapped:  # the retry's first write
            overlapped.append(service.ingest("hospice", "jun.jsonl", line(
                "not-attempt", "RSP-2", "2026-06-01", nhs=True), today=TODAY))
        return write_batch(self, batch, summary, held_now, progress, received)

    monkeypatch.setattr(loader_module.Loader, "_apply_batch", overlapping)
    service.loader.retry_held()
    assert overlapped and overlapped[0].held == 0
    assert cpr_decisions(engine) == [("not-attempt", "2026-06-01")]
    (_, held), = service.loader.list_held()
    assert held["record"]["source"]["file"] == "jan.jsonl"
    assert held["reason"].startswith("a newer record with the same id")


def test_a_reviewer_settles_a_superseded_hold_only_saying_so(engine: StoreEngine) -> None:
    """The queue said the hold was superseded, but attaching it (from an older listing,
    or from its key alone) put January's form back over June's DNACPR unasked."""
    from fhir_gateway.errors import Conflict

    service, _, other = _held_in_conflict(engine)
    service.ingest("hospice", "jun.jsonl", line("not-attempt", "RSP-2", "2026-06-01",
                                                nhs=True), today=TODAY)
    Repository(engine).delete("Patient", other)  # the conflict gone: only the order stands
    (key, held), = service.loader.list_held()
    patient = Repository(engine).find(IndexQuery(rtype="Patient")).rows
    mine = next(r.rid for r in patient if "MSH-1" in (r.body or ""))
    for choice in ({"patient_id": mine, "replace_nhs_number": True}, {}):
        with pytest.raises(Conflict, match="newer record with the same id"):
            service.loader.resolve_held(key, **choice)  # type: ignore[arg-type]
    assert cpr_decisions(engine) == [("not-attempt", "2026-06-01")]
    assert service.loader.list_held() == [(key, held)]
    service.loader.resolve_held(key, patient_id=mine, replace_nhs_number=True,
                                despite_newer=True)  # the reviewer says January stands
    assert cpr_decisions(engine) == [("attempt", "2026-01-10")]
    assert service.loader.list_held() == []


def test_over_http_a_superseded_hold_is_settled_only_with_despite_newer(
        engine: StoreEngine, client: Any) -> None:
    service, _, other = _held_in_conflict(engine)
    service.ingest("hospice", "jun.jsonl", line("not-attempt", "RSP-2", "2026-06-01",
                                                nhs=True), today=TODAY)
    Repository(engine).delete("Patient", other)
    (key, _), = service.loader.list_held()
    refused = client.post(f"/review/held/{key}", json={"create": True})
    assert refused.status_code == 409, refused.text
    assert "despiteNewer" in refused.text
    for body in ({"discard": "old form", "despiteNewer": True},
                 {"create": True, "despiteNewer": "yes"}, {"create": True, "despiteNewer": 1}):
        assert client.post(f"/review/held/{key}", json=body).status_code == 400, body
    assert cpr_decisions(engine) == [("not-attempt", "2026-06-01")]
    discarded = client.post(f"/review/held/{key}", json={"discard": "June's form stands"})
    assert discarded.status_code == 200, discarded.text


def test_a_reviewers_override_over_http_is_on_the_audit_trail(tmp_path: Path) -> None:
    """The CLI's audit names --despite-newer; over HTTP the AuditEvent of an override was
    the same as an ordinary attach's."""
    import base64

    from fastapi.testclient import TestClient

    from fhir_gateway.api.app import create_app
    from fhir_gateway.config import Settings

    engine = make_engine("sqlite", tmp_path)
    app = create_app(Settings(max_body_bytes=1024 * 1024, auth_enabled=False,
                              audit_enabled=True, audit_journal="off"), engine=engine)
    with TestClient(app, base_url="http://gateway.test") as http:
        service = app.state.ingest_service
        service.ingest("hospice", "jan.jsonl", line("attempt", "RSP-1", "2026-01-10",
                                                    nhs=False), today=TODAY)
        service.ingest("hospice", "jun.jsonl", line("not-attempt", "RSP-2", "2026-06-01",
                                                    nhs=True), today=TODAY)
        key = http.get("/review/held").json()[0]["key"]
        pid = Repository(engine).find(IndexQuery(rtype="Patient")).rows[0].rid
        assert http.post(f"/review/held/{key}", json={"patient": pid}).status_code == 409
        r = http.post(f"/review/held/{key}", json={"patient": pid, "despiteNewer": True})
        assert r.status_code == 200, r.text
        events = [jsonio.loads_trusted(row.body or "{}") for row in Repository(engine).find(
            IndexQuery(rtype="AuditEvent", limit=500)).rows]
    queries = sorted(base64.b64decode(e["query"]).decode() for ev in events
                     for e in ev.get("entity", []) if e.get("query")
                     and "POST /review/held" in base64.b64decode(e["query"]).decode())
    assert queries == [f"POST /review/held/{key}", f"POST /review/held/{key} despiteNewer=true"]
