"""The audit trail: an AuditEvent for every interaction, hash-chained per writer, and
`audit verify` failing on any edited, removed or reordered record."""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

from fhir_gateway.security.audit.chain import HEAD_KIND, chain_link
from fhir_gateway.store.base import NewVersion
from gatewaykit import conflict_once
from security_kit import Gateway, patient

FHIR_JSON = {"Content-Type": "application/fhir+json"}


def _by_request(gw: Gateway, request_id: str) -> list[dict[str, Any]]:
    return [e for e in gw.audit_events()
            if any((ent.get("what") or {}).get("identifier", {}).get("value") == request_id
                   for ent in e.get("entity", []))]


def test_every_interaction_allowed_or_refused_has_a_balp_shaped_event(gw: Gateway) -> None:
    gw.put(patient("p1", "9434765919", "Jones"))
    h = gw.login("ward", "clinician", org="RXX01")
    cases = [
        ("GET", "/fhir/Patient/p1", h, 200, "read", "0"),
        ("GET", "/fhir/Patient?name=Jones", h, 200, "search-type", "0"),
        ("GET", "/fhir/Patient/p1", {}, 401, "read", "4"),
        ("DELETE", "/fhir/Patient/p1", h, 404, "delete", "4"),
        ("GET", "/fhir/Nonsense/1", h, 404, "read", "4"),
    ]
    for i, (method, url, headers, status, subtype, outcome) in enumerate(cases):
        rid = f"req-{i}"
        resp = gw.http.request(method, url, headers={**headers, "X-Request-Id": rid})
        assert resp.status_code == status, (url, resp.text)
        events = _by_request(gw, rid)
        assert len(events) == 1, (url, events)
        event = events[0]
        assert event["type"]["code"] == "rest"
        assert event["subtype"][0]["code"] == subtype and event["outcome"] == outcome
        client = event["agent"][0]
        if headers:
            assert client["altId"] == "ward" and client["requestor"] is True
            assert client["purposeOfUse"][0]["coding"][0]["code"] == "TREAT"
            assert event["agent"][1]["who"]["identifier"]["value"] == "RXX01"
        assert chain_link(event) is not None
    read = _by_request(gw, "req-0")[0]
    assert {"reference": "Patient/p1"} in [e.get("what") for e in read["entity"]]
    search = _by_request(gw, "req-1")[0]
    query = next(e["query"] for e in search["entity"] if "query" in e)
    assert base64.b64decode(query).decode() == "GET Patient?name=Jones"


def test_each_bundle_entry_is_audited(gw: Gateway) -> None:
    gw.put(patient("p1", "9434765919", "Jones"))
    h = gw.login("ward", "clinician")
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/p1"}},
        {"request": {"method": "GET", "url": "Patient/nope"}}]}
    gw.http.post("/fhir", json=bundle, headers={**h, **FHIR_JSON, "X-Request-Id": "b1"})
    events = _by_request(gw, "b1")
    assert sorted(e["subtype"][0]["code"] for e in events) == ["batch", "read", "read"]
    assert sorted(e["outcome"] for e in events) == ["0", "0", "4"]


def test_a_write_and_its_audit_event_commit_together(gw: Gateway) -> None:
    feed = gw.login("gp-feed", "feed", partner="gp", scope="system/*.cruds")
    created = gw.http.post("/fhir/Patient", json={"resourceType": "Patient"},
                           headers={**feed, **FHIR_JSON, "X-Request-Id": "w1"})
    assert created.status_code == 201
    (event,) = _by_request(gw, "w1")
    chain = chain_link(event)[0]
    assert chain.rsplit("-", 1)[1].startswith("t")  # an in-transaction slot's chain
    written = f"Patient/{created.json()['id']}"
    assert {"reference": f"{written}/_history/1"} in [e.get("what") for e in event["entity"]]
    assert {"reference": written} in [e.get("what") for e in event["entity"]]


def test_verify_passes_on_an_intact_trail_under_concurrency(gw: Gateway) -> None:
    gw.put(patient("p1", "9434765919", "Jones"))
    h = gw.login("ward", "clinician")
    feed = gw.login("gp-feed", "feed", partner="gp", scope="system/*.cruds")
    errors: list[Any] = []

    def work(n: int) -> None:
        for i in range(15):
            if i % 5 == 0:
                r = gw.http.post("/fhir/Observation", headers={**feed, **FHIR_JSON}, json={
                    "resourceType": "Observation", "status": "final", "code": {"text": "x"}})
            else:
                r = gw.http.get("/fhir/Patient/p1", headers=h)
            if r.status_code >= 300:
                errors.append(r.text)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    report = gw.verify()
    assert report.intact, report.problems
    assert report.events >= 90 and report.chains >= 2


def _tamper(gw: Gateway, event: dict[str, Any], *, body: dict[str, Any] | None,
            version: int = 1) -> None:
    """Change the store directly, as someone with database access might."""
    with gw.engine.session(write=True) as s:
        current = s.current("AuditEvent", event["id"])
        s.put(NewVersion("AuditEvent", event["id"], current.version + 1,
                         current.last_updated, json.dumps(body) if body else None))


def _events_in_chain(gw: Gateway) -> list[dict[str, Any]]:
    gw.put(patient("p1", "9434765919", "Jones"))
    h = gw.login("ward", "clinician")
    for _ in range(4):
        gw.http.get("/fhir/Patient/p1", headers=h)
    events = [e for e in gw.audit_events() if chain_link(e)[0].endswith("-w")]
    assert gw.verify().intact
    return sorted(events, key=lambda e: chain_link(e)[1])


def test_verify_fails_on_an_edited_event(gw: Gateway) -> None:
    events = _events_in_chain(gw)
    edited = {**events[2], "outcome": "4"}
    _tamper(gw, events[2], body=edited)
    report = gw.verify()
    assert not report.intact and any("edited" in p for p in report.problems)


def test_verify_fails_on_a_removed_event(gw: Gateway) -> None:
    events = _events_in_chain(gw)
    _tamper(gw, events[1], body=None)
    report = gw.verify()
    assert not report.intact and any("missing" in p for p in report.problems)


def test_verify_fails_on_reordered_events(gw: Gateway) -> None:
    events = _events_in_chain(gw)
    first, second = events[1], events[2]
    swapped_a = {**second, "id": first["id"]}
    swapped_b = {**first, "id": second["id"]}
    _tamper(gw, first, body=swapped_a)
    _tamper(gw, second, body=swapped_b)
    assert not gw.verify().intact


def test_verify_catches_a_chain_cut_back_with_its_head(gw: Gateway) -> None:
    events = _events_in_chain(gw)
    gw.http.app.state.security.trail.close()  # writes a final anchor naming every head
    last = events[-1]
    chain, seq, prev, _ = chain_link(last)
    _tamper(gw, last, body=None)
    with gw.engine.session(write=True) as s:  # hide the cut: move the head back too
        s.record_put(HEAD_KIND, chain, {"seq": seq - 1, "hash": prev})
    report = gw.verify()
    assert not report.intact and any("anchored" in p for p in report.problems), report.problems


def test_reports_as_json_and_csv(gw: Gateway) -> None:
    gw.put(patient("p1", "9434765919", "Jones"))
    ward = gw.login("ward", "clinician", org="RXX01")
    gw.http.get("/fhir/Patient/p1", headers=ward)
    gw.http.get("/fhir/Patient/p1", headers=ward)
    auditor = gw.login("audit-team", "auditor", org="X26")
    who = gw.http.get("/audit/report?kind=patient&patient=p1", headers=auditor).json()
    assert [(r["client"], r["organisation"], r["purpose"]) for r in who["rows"]] == \
        [("ward", "RXX01", "TREAT")] * 2
    summary = gw.http.get("/audit/report?kind=summary&from=2000-01-01", headers=auditor).json()
    assert {"organisation": "RXX01", "purpose": "TREAT", "outcome": "allowed",
            "count": 2} in summary["rows"]
    # getting a token is no access to anyone's record: not counted among the accesses
    assert [r for r in summary["rows"] if r["organisation"] == "RXX01"] == [
        {"organisation": "RXX01", "purpose": "TREAT", "outcome": "allowed", "count": 2}]
    csv = gw.http.get("/audit/report?kind=patient&patient=p1&_format=csv", headers=auditor)
    assert csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines()[0].startswith("recorded,client,role,organisation,purpose")
    assert len(csv.text.splitlines()) == 3
    # a report with no rows still names its columns
    for kind, header in (("break-glass", "recorded,client,role,organisation,purpose"),
                         ("summary&from=2099-01-01", "organisation,purpose,outcome,count")):
        empty = gw.http.get(f"/audit/report?kind={kind}&_format=csv", headers=auditor)
        lines = empty.text.splitlines()
        assert empty.status_code == 200 and len(lines) == 1 and lines[0].startswith(header)
    # the same as an AuditEvent search
    search = gw.http.get("/fhir/AuditEvent?patient=Patient/p1&agent:identifier="
                         "https://fhir.nhs.uk/Id/ods-organization-code|RXX01",
                         headers=auditor).json()
    assert len(search["entry"]) == 2
    assert gw.http.get("/audit/report?kind=patient&patient=p1", headers=ward).status_code == 403
    assert gw.http.get("/audit/report?kind=nonsense", headers=auditor).status_code == 400


def test_a_report_period_is_one_date_each_end(gw: Gateway) -> None:
    """`from=2099-01-01,le2000` went into the AuditEvent search as two values, either
    matching: a wider period than asked. A bad date is named as `from`/`to`, not `date`."""
    auditor = gw.login("audit-team", "auditor", org="X26")
    ward = gw.login("ward", "clinician", org="RXX01")
    gw.http.get("/fhir/metadata", headers=ward)
    for query, named in (("from=2099-01-01,le2000", "from"), ("to=31/12/2026", "to"),
                         ("from=2026-01-01|x", "from"),
                         # an offset past R4's +14:00 shifted the period by 99 hours;
                         # full-width digits were read as a year
                         ("from=2026-01-01T00:00:00%2B99:00", "from"),
                         ("from=%EF%BC%92%EF%BC%90%EF%BC%92%EF%BC%96", "from"),
                         # which one counts would be a guess
                         ("from=2026&from=2025", "from"), ("_format=csv&_format=json",
                                                           "_format")):
        r = gw.http.get(f"/audit/report?kind=summary&{query}", headers=auditor)
        assert r.status_code == 400, (query, r.text)
        assert r.json()["issue"][0]["expression"] == [named]
    fine = gw.http.get("/audit/report?kind=summary&from=2026-01-01&to=2099-12-31T23:59:59Z",
                       headers=auditor)
    assert fine.status_code == 200, fine.text


def test_audit_events_are_found_by_last_updated(gw: Gateway) -> None:
    """`_lastUpdated` (meta, stamped by the trail when it seals) is indexed like any
    other resource's: an auditor's "since" query finds the reads, a later bound none."""
    gw.put(patient("p1", "9434765919", "Jones"))
    ward = gw.login("ward", "clinician", org="RXX01")
    assert gw.http.get("/fhir/Patient/p1", headers=ward).status_code == 200
    auditor = gw.login("audit-team", "auditor", org="X26")
    since = gw.http.get("/fhir/AuditEvent?_lastUpdated=ge2000-01-01&patient=Patient/p1",
                        headers=auditor).json()
    assert [e["resource"]["meta"]["versionId"] for e in since["entry"]] == ["1"]
    later = gw.http.get("/fhir/AuditEvent?_lastUpdated=ge2999-01-01", headers=auditor).json()
    assert later.get("entry", []) == []


def test_an_auditor_refused_because_the_trail_cannot_catch_up_is_audited(
        gw: Gateway, monkeypatch: Any) -> None:
    from fhir_gateway.security.audit.chain import AuditUnavailable

    auditor = gw.login("audit-team", "auditor", scope="system/AuditEvent.rs")
    trail = gw.http.app.state.security.trail
    real_catch_up = trail.catch_up

    def stuck(*args: Any, **kwargs: Any) -> None:
        raise AuditUnavailable("the audit trail is behind")

    monkeypatch.setattr(trail, "catch_up", stuck)
    assert gw.http.get("/fhir/AuditEvent", headers=auditor).status_code == 503
    monkeypatch.setattr(trail, "catch_up", real_catch_up)
    failed = [e for e in gw.audit_events() if e["outcome"] == "8"]
    assert len(failed) == 1, failed
    assert failed[0]["agent"][0]["who"]["identifier"]["value"] == "audit-team"


def test_a_rolled_back_transaction_attempt_leaves_no_audit_events(gw: Gateway,
                                                                   monkeypatch: Any) -> None:
    # The first attempt creates a Patient, then meets a concurrent writer and is rolled
    # back; the retry stores another id. Only what was stored is audited: no event says
    # the rolled-back Patient was created.
    from fhir_gateway.fhir import bundles

    assigned: list[str] = []
    real_new_id = bundles.new_id
    monkeypatch.setattr(bundles, "new_id", lambda: (assigned.append(real_new_id()),
                                                    assigned[-1])[1])
    conflicts = conflict_once(monkeypatch, gw.repository, "Observation")
    feed = gw.login("gp-feed", "feed", partner="gp", scope="system/*.cruds")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"text": "CPR"}, "subject": {"reference": "urn:uuid:p1"}},
         "request": {"method": "POST", "url": "Observation"}}]}
    r = gw.http.post("/fhir", json=bundle, headers={**feed, **FHIR_JSON, "X-Request-Id": "t1"})
    assert r.status_code == 200, r.text
    assert conflicts == ["Observation"]
    stored = r.json()["entry"][0]["resource"]["id"]
    rolled_back = [rid for rid in assigned if rid != stored and rid != r.json()["entry"][1][
        "resource"]["id"]]
    assert rolled_back  # the first attempt's ids
    events = _by_request(gw, "t1")
    named = {(e.get("what") or {}).get("reference", "").split("/_history")[0]
             for event in events for e in event["entity"]}
    assert f"Patient/{stored}" in named
    assert not {f"Patient/{rid}" for rid in rolled_back} & named
    assert sorted(e["subtype"][0]["code"] for e in events) == ["create", "create",
                                                               "transaction"]


def test_a_report_is_never_cut_short_in_silence(gw: Gateway, monkeypatch: Any) -> None:
    """More events than a listing may hold: refused, naming how to narrow it; the
    accesses summary counts every event however many pages they take."""
    from fhir_gateway.security.audit import reports

    monkeypatch.setattr(reports, "PAGE", 2)
    monkeypatch.setattr(reports, "MAX_ROWS", 3)
    gw.put(patient("p1", "9434765919", "Jones"))
    ward = gw.login("ward", "clinician", org="RXX01")
    for _ in range(5):
        assert gw.http.get("/fhir/Patient/p1", headers=ward).status_code == 200
    auditor = gw.login("audit-team", "auditor", org="X26")
    listing = gw.http.get("/audit/report?kind=patient&patient=p1", headers=auditor)
    assert listing.status_code == 400, listing.text
    issue = listing.json()["issue"][0]
    assert issue["code"] == "too-costly"
    assert "more than 3 audit events" in issue["diagnostics"]
    summary = gw.http.get("/audit/report?kind=summary", headers=auditor).json()
    assert {"organisation": "RXX01", "purpose": "TREAT", "outcome": "allowed",
            "count": 5} in summary["rows"]


def test_who_accessed_a_person_includes_the_records_merged_into_theirs(gw: Gateway) -> None:
    """An A40 merge joins two Patients into one person: reads of the merged-away id before
    the merge are accesses to this person's record too, asked by either id."""
    gw.put(patient("p1", "9434765919", "Jones"))
    gw.put(patient("p2", "9434765870", "Jones"))
    ward = gw.login("ward", "clinician", org="RXX01")
    assert gw.http.get("/fhir/Patient/p2", headers=ward).status_code == 200
    gw.put({**patient("p2", "9434765870", "Jones"),
            "link": [{"other": {"reference": "Patient/p1"}, "type": "replaced-by"}]})
    gw.put({**patient("p1", "9434765919", "Jones"),
            "link": [{"other": {"reference": "Patient/p2"}, "type": "replaces"}]})
    assert gw.http.get("/fhir/Patient/p1", headers=ward).status_code == 200
    auditor = gw.login("audit-team", "auditor", org="X26")
    for asked in ("p1", "p2"):
        rows = gw.http.get(f"/audit/report?kind=patient&patient={asked}",
                           headers=auditor).json()["rows"]
        assert sorted(r["patients"] for r in rows) == ["p1", "p2"], (asked, rows)
