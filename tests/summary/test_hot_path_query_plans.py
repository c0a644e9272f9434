"""No query that ingestion, a crew's request or a clinician's runs walks a whole type.

Session 19's consent read of a person's merge links (`rtype="Patient"` and a compartment)
let SQLite drive from the type's index: every Patient on the record was walked for each
consent decision, 48 ms a read at 1M resources, and no test on a small store noticed. The
gateway's SQLite has no statistics (it never runs ANALYZE), so the planner chooses on the
shape of the query alone: a plan seen here on the sample feeds is the plan at 1M.

So: the sample partnership loaded through the real pipeline, then, security on, a crew's
summaries and a clinician's reads, searches and consent-hidden reads served, a partner's
writes and the auditors' reports; each SQL statement captured as the store ran it, and each
SELECT's plan read with EXPLAIN QUERY PLAN and the same bound values. A step that walks a
type (a SCAN of a stored table, an index searched on the type alone or on a type and
parameter alone, or, for a statement about one resource, a type's time index) fails the
test, naming the statement.
"""

from __future__ import annotations

import re
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from summary_kit import EXPECTED, NHS, SCT, by_nhs, load_feeds

from fhir_gateway.pipeline.identity import claimed_patient
from fhir_gateway.search.query import parse_search
from fhir_gateway.store import open_store
from fhir_gateway.store.sqlite import SqliteEngine, SqliteSession

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "security"))
from security_kit import Gateway, deny_consent, secured

#: the tables whose rows grow with the record (a walk of one is a walk of the record)
_STORED = ("resources", "versions", "idx_token", "idx_string", "idx_date", "idx_reference",
           "idx_number", "compartment")
_SCAN = re.compile(r"\bSCAN (\w+)")
#: an index of a stored table searched on its type alone, or its type and parameter alone
_TYPE_ONLY = re.compile(r"USING (?:COVERING )?INDEX \w+ \(rtype=\?(?: AND param=\?)?\)")
_TIME_INDEX = re.compile(r"USING (?:COVERING )?INDEX (?:versions_type_updated|versions_updated|"
                         r"resources_type_updated)\b")
_ONE_ID = re.compile(r"\brid\s*=\s*\?")


def walks(plan: list[str], aliases: dict[str, str], *, one_resource: bool = False
          ) -> list[str]:
    """The steps of `plan` that walk a whole type (or the whole record). `one_resource`:
    the statement names one resource's id, so a type's time index (a range of the type's
    history, `_since` or a page's cursor) is a walk too."""
    def walked(step: str) -> bool:
        scanned = _SCAN.search(step)
        return bool((scanned and aliases.get(scanned.group(1), scanned.group(1)) in _STORED)
                    or _TYPE_ONLY.search(step)
                    or (one_resource and _TIME_INDEX.search(step)))

    return [step for step in plan if walked(step)]


def _aliases(sql: str) -> dict[str, str]:
    """Alias -> table, from `FROM table alias` / `JOIN table alias`."""
    return {alias: table for table, alias in
            re.findall(r"(?:FROM|JOIN)\s+(\w+)\s+(?:AS\s+)?(\w+)", sql, re.IGNORECASE)}


Statement = tuple[str, Any]  # SQL and its bound values


class _Recording:
    """A session's connection that notes each statement it runs with its bound values
    (planned with them: SQLite plans a literal differently, e.g. two equal literals in
    OR-ed terms are factored out, which bound values never are)."""

    def __init__(self, conn: sqlite3.Connection, executed: list[Statement]) -> None:
        self._conn = conn
        self._executed = executed

    def execute(self, sql: str, args: Any = ()) -> sqlite3.Cursor:
        self._executed.append((sql, args))
        return self._conn.execute(sql, args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)



@pytest.fixture
def traced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[tuple[Gateway, list[Statement], Path]]:
    path = tmp_path / "store.sqlite3"
    engine = open_store(f"sqlite:///{path}")
    assert isinstance(engine, SqliteEngine)
    statements: list[Statement] = []
    real_init = SqliteSession.__init__

    def recording(self: SqliteSession, conn: Any, *, write: bool) -> None:
        real_init(self, conn if isinstance(conn, _Recording) else _Recording(conn, statements),
                  write=write)

    monkeypatch.setattr(SqliteSession, "__init__", recording)
    load_feeds(engine)  # ingestion's own queries (identity, merges, the held queue) too
    ingested = list(statements)
    with secured(engine) as gw:
        statements[:] = ingested  # the app's start-up (reading its profiles) is no request
        yield gw, statements, path
    engine.close()


def test_no_request_on_the_hot_paths_walks_a_type(
        traced: tuple[Gateway, list[Statement], Path]) -> None:
    gw, statements, path = traced
    people = list(EXPECTED["people"].values())
    hidden = people[0]
    hidden_id = _patient_id(gw, hidden["nhs"])
    assert hidden_id is not None
    gw.put({**deny_consent(hidden_id, "X9H01"), "id": "plan-deny"})
    crew = gw.login("crew", "ambulance", org="RYC")
    ward = gw.login("ward", "clinician", org="B86001")
    for person in people:
        for headers in (crew, {**crew, "Accept": "text/html"}):
            assert gw.http.get(by_nhs(person["nhs"]), headers=headers).status_code in (200, 404)
        if (pid := _patient_id(gw, person["nhs"])) is None:
            continue
        for url in (f"/fhir/Patient/{pid}", f"/fhir/Patient/{pid}/$emergency-summary",
                    f"/fhir/Observation?patient={pid}", f"/fhir/CarePlan?subject=Patient/{pid}",
                    f"/fhir/Patient?identifier={NHS}|{person['nhs']}"):
            assert gw.http.get(url, headers=ward).status_code in (200, 404), url
    glass = {**ward, "X-Purpose-Of-Use": "ETREAT", "X-Break-Glass-Reason": "collapsed at home"}
    assert gw.http.get(f"/fhir/Patient/{hidden_id}", headers=glass).status_code == 200

    assert_no_walks(statements, path)


def test_no_search_feature_or_auditors_report_of_one_patient_walks_a_type(
        traced: tuple[Gateway, list[Statement], Path]) -> None:
    # The clinician's search features that reach across resources, and the auditors'
    # questions about one patient or a period: each narrows by an index, never a type.
    gw, statements, path = traced
    ward = gw.login("ward", "clinician", org="B86001")
    auditor = gw.login("checker", "auditor", scope="system/AuditEvent.rs system/Provenance.rs")
    for person in list(EXPECTED["people"].values())[:12]:
        if (pid := _patient_id(gw, person["nhs"])) is None:
            continue
        assert gw.http.get(f"/fhir/Patient/{pid}", headers=ward).status_code == 200
        for url in (f"/fhir/Patient/{pid}/$everything", f"/fhir/Patient/{pid}/_history",
                    f"/fhir/Observation?patient={pid}&_include=Observation:subject",
                    f"/fhir/Patient?_id={pid}&_revinclude=Provenance:target",
                    f"/fhir/Observation?subject:Patient.identifier={NHS}|{person['nhs']}",
                    f"/fhir/Patient?identifier={NHS}|{person['nhs']},{NHS}|9990000026",
                    f"/fhir/Observation?subject:Patient.identifier={NHS}|{person['nhs']},"
                    f"{NHS}|9990000026",
                    f"/fhir/Patient?family={person['family']},Nosuchname",
                    f"/fhir/Patient?_id={pid}&_has:Observation:patient:status=final",
                    f"/fhir/Patient?_has:Observation:patient:code={SCT}|816301000000100"):
            assert gw.http.get(url, headers=ward).status_code == 200, url
        # one Patient's history with `_since`, a page at a time (the cursor of a later page)
        url = f"/fhir/Patient/{pid}/_history?_since=2020-01-01T00:00:00Z&_count=1"
        pages = 0
        while url and pages < 3:
            page = gw.http.get(url, headers=ward)
            assert page.status_code == 200, page.text
            url = next((link["url"] for link in page.json().get("link", [])
                        if link["relation"] == "next"), None)
            pages += 1
        for url in (f"/audit/report?kind=patient&patient={pid}&from=2026-01-01",
                    f"/fhir/AuditEvent?patient={pid}", f"/fhir/Provenance?patient={pid}",
                    "/audit/report?kind=summary&from=2026-01-01&to=2099-12-31"):
            assert gw.http.get(url, headers=auditor).status_code == 200, url
    assert_no_walks(statements, path)


COUNCIL_CSV = ("Person ID,Title,First Name,Last Name,DOB,Postcode,NHS No (if known),"
               "Service,Service Start,Service End,Provider,Key Worker\n")


def test_no_feed_write_or_review_walks_a_type(
        traced: tuple[Gateway, list[Statement], Path]) -> None:
    # A partner's writes: an ingest over HTTP (one row of a known person, one held), the
    # review queue listed and settled, REST writes plain, conditional and in a transaction.
    gw, statements, path = traced
    feed = {**gw.login("sc-feed", "feed", partner="socialcare", org="SC001",
                       scope="system/*.cruds"), "Content-Type": "application/fhir+json"}
    person = next(p for p in EXPECTED["people"].values() if p["local_ids"])
    rows = (f"SCX1,Mrs,{person['given']},{person['family']},{person['birthDate']},DY1 1AA,"
            f"{person['nhs']},Home care,2026-01-02,,Oakleigh Care Home,Brenda Johnson\n"
            "SCX2,Mrs,Ada,Unheardof,1931-02-03,DY9 9ZZ,,Home care,2026-01-02,,Oakleigh,B J\n")
    resp = gw.http.post("/ingest/socialcare", content=(COUNCIL_CSV + rows).encode(),
                        headers={**feed, "Content-Type": "text/csv"})
    assert resp.status_code == 200, resp.text
    held = gw.http.get("/review/held", headers=feed).json()
    assert len(held) == 1, held
    settled = gw.http.post(f"/review/held/{held[0]['key']}", json={"create": True},
                           headers=feed)
    assert settled.status_code == 200, settled.text
    own = {"resourceType": "Patient", "id": "own", "name": [{"family": "Ownname"}],
           "identifier": [{"system": NHS, "value": "9990000026"}]}
    assert gw.http.put("/fhir/Patient/own", json=own, headers=feed).status_code == 201
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "identifier": [{"system": "urn:example:obs", "value": "o1"}],
           "subject": {"reference": "Patient/own"}}
    created = gw.http.post("/fhir/Observation", json=obs,
                           headers={**feed, "If-None-Exist": "identifier=urn:example:obs|o1"})
    assert created.status_code == 201, created.text
    updated = gw.http.put("/fhir/Observation?identifier=urn:example:obs|o1",
                          json={**obs, "status": "amended"}, headers=feed)
    assert updated.status_code == 200, updated.text
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p", "resource": {"resourceType": "Patient",
                                               "identifier": own["identifier"]},
         "request": {"method": "POST", "url": "Patient",
                     "ifNoneExist": f"identifier={NHS}|9990000026"}},
        {"fullUrl": "urn:uuid:o", "resource": {**obs, "subject": {"reference": "urn:uuid:p"},
                                               "identifier": [{"system": "urn:example:obs",
                                                               "value": "o2"}]},
         "request": {"method": "POST", "url": "Observation"}}]}
    answered = gw.http.post("/fhir", json=bundle, headers=feed)
    assert answered.status_code == 200, answered.text
    oid = created.json()["id"]
    assert gw.http.delete(f"/fhir/Observation/{oid}", headers=feed).status_code in (200, 204)
    assert_no_walks(statements, path)


def assert_no_walks(statements: list[Statement], path: Path) -> None:
    """Every SELECT in `statements` planned on the store at `path`, with its own bound
    values, walks no type."""
    selects = {sql: args for sql, args in statements
               if sql.lstrip().upper().startswith(("SELECT", "WITH"))}
    assert len(selects) > 10  # the requests ran through the recording sessions
    found = []
    with sqlite3.connect(path) as conn:
        for sql, args in sorted(selects.items()):
            plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]
            if bad := walks(plan, _aliases(sql), one_resource=bool(_ONE_ID.search(sql))):
                found.append(f"{sql[:600]}\n    values: {str(args)[:200]}\n    walks: {bad}")
    assert not found, f"{len(found)} statements walk a type:\n\n" + "\n\n".join(found[:5])


def _patient_id(gw: Gateway, nhs: str) -> str | None:
    """The Patient holding `nhs`, or the one merged away that held it; None for a person
    no partner fed."""
    search = parse_search("Patient", [("identifier", f"{NHS}|{nhs}")], gw.repository.registry)
    rows = gw.repository.find(search.query).rows
    if rows:
        return rows[0].rid
    with gw.engine.session(write=False) as s:
        return claimed_patient(s, nhs)


@pytest.mark.parametrize(("plan", "walked"), [
    (["SEARCH r1 USING INDEX resources_type_updated (rtype=?)"], True),
    (["SEARCH r1 USING INDEX sqlite_autoindex_resources_1 (rtype=?)"], True),
    (["SEARCH idx_token USING INDEX idx_token_system (rtype=? AND param=?)"], True),
    (["SCAN r1"], True),
    (["SEARCH r1 USING INTEGER PRIMARY KEY (rowid=?)",
      "SEARCH compartment USING COVERING INDEX compartment_patient (patient=?)"], False),
    (["SEARCH idx_token USING INDEX idx_token_lookup (rtype=? AND param=? AND code=?)"], False),
    (["SCAN json_each VIRTUAL TABLE INDEX 0:"], False),
])
def test_the_plan_reader_tells_a_walk(plan: list[str], walked: bool) -> None:
    assert bool(walks(plan, {"r1": "resources"})) is walked


def test_one_resources_history_read_by_time_is_a_walk() -> None:
    step = "SEARCH versions USING INDEX versions_type_updated (rtype=? AND last_updated>?)"
    assert walks([step], {}, one_resource=True) == [step]
    assert walks([step], {}) == []  # a type's own history is read by time
