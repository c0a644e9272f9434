"""Date search (R4 3.1.1.4.7) with every prefix (3.1.1.4.5) on date, dateTime, instant and
Period: partial dates are implicit ranges, a Period is an explicit range whose missing end
is unbounded, time zones are corrected for. Searches name a zone whenever they name a time
(R4: "you SHOULD provide a time zone if the time part is present").

`ap` is asserted only where the target overlaps the search range (R4's range reading of
ap) and every other target is far outside the recommended 10% of the gap to now.

Where R4's two readings of "the range above/below the search value" differ (a target that
straddles the start of the search range, for ge/le), the cases below avoid the boundary:
the gateway's documented choice (store/query.py) is pinned once, with its reason, in
test_ge_le_include_a_range_touching_the_search_range."""

from __future__ import annotations

from eol_search_kit import (
    NOT_FOR_CPR,
    care_plan,
    concept,
    encounter,
    flag,
    ids,
    make,
    patient,
    provenance,
    ref,
    refused,
    resus_status,
)
from fastapi.testclient import TestClient

from fhir_gateway.search.compiled import compile_expression
from fhir_gateway.search.extract import values_for
from fhir_gateway.search.registry import default_registry


def seed_birthdates(client: TestClient) -> dict[str, str]:
    return {
        "day": make(client, {"resourceType": "Patient", "birthDate": "1938-03-14"}),
        "month": make(client, {"resourceType": "Patient", "birthDate": "1941-11"}),
        "year": make(client, {"resourceType": "Patient", "birthDate": "1950"}),
        "unknown": make(client, {"resourceType": "Patient", "gender": "female"}),
    }


def test_partial_dates_are_ranges_for_eq(client: TestClient) -> None:
    p = seed_birthdates(client)
    assert ids(client, "Patient", {"birthdate": "1938-03-14"}) == {p["day"]}
    assert ids(client, "Patient", {"birthdate": "eq1938-03"}) == {p["day"]}
    assert ids(client, "Patient", {"birthdate": "1938"}) == {p["day"]}
    assert ids(client, "Patient", {"birthdate": "1941"}) == {p["month"]}
    assert ids(client, "Patient", {"birthdate": "1941-11"}) == {p["month"]}
    assert ids(client, "Patient", {"birthdate": "1941-11-05"}) == set()  # a month is wider
    assert ids(client, "Patient", {"birthdate": "1950-06"}) == set()  # a year is wider
    assert ids(client, "Patient", {"birthdate": "1938,1950"}) == {p["day"], p["year"]}
    assert ids(client, "Patient", {"birthdate:missing": "true"}) == {p["unknown"]}


def test_prefixes_on_dates(client: TestClient) -> None:
    p = seed_birthdates(client)
    assert ids(client, "Patient", {"birthdate": "ne1941"}) == {p["day"], p["year"]}
    assert ids(client, "Patient", {"birthdate": "lt1940"}) == {p["day"]}
    assert ids(client, "Patient", {"birthdate": "gt1945"}) == {p["year"]}
    assert ids(client, "Patient", {"birthdate": "gt1938-03-14"}) == {p["month"], p["year"]}
    assert ids(client, "Patient", {"birthdate": "lt1950"}) == {p["day"], p["month"]}
    assert ids(client, "Patient", {"birthdate": "le1938-03-14"}) == {p["day"]}
    assert ids(client, "Patient", {"birthdate": "ge1950-06"}) == {p["year"]}  # 1950 runs on
    assert ids(client, "Patient", {"birthdate": "sa1941-11-15"}) == {p["year"]}
    assert ids(client, "Patient", {"birthdate": "eb1941-11-15"}) == {p["day"]}
    assert ids(client, "Patient", {"birthdate": "sa1941"}) == {p["year"]}
    assert ids(client, "Patient", {"birthdate": "eb1950"}) == {p["day"], p["month"]}
    assert ids(client, "Patient", [("birthdate", "ge1938"), ("birthdate", "lt1942")]) \
        == {p["day"], p["month"]}
    assert ids(client, "Patient", [("birthdate", "gt1939"), ("birthdate", "lt1941")]) == set()


def test_ge_le_include_a_range_touching_the_search_range(client: TestClient) -> None:
    # R4 3.1.1.4.5 defines "range above the value" as "the specified value and up"; the
    # gateway reads ge as "target ends at or after the search range starts" (and le
    # mirrored), which keeps a month-precise birth date in ge/le of a day in that month.
    p = seed_birthdates(client)
    assert ids(client, "Patient", {"birthdate": "ge1941-11-30"}) == {p["month"], p["year"]}
    assert ids(client, "Patient", {"birthdate": "le1941-11-01"}) == {p["day"], p["month"]}


def test_date_times_with_time_zones(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    morning = resus_status(client, grace, NOT_FOR_CPR, "2026-05-10T09:30:00+01:00")  # 08:30Z
    late = resus_status(client, grace, NOT_FOR_CPR, "2026-05-10T23:30:00+01:00")  # 22:30Z
    after = resus_status(client, grace, NOT_FOR_CPR, "2026-05-11T00:30:00+01:00")  # 23:30Z
    obs = "Observation"
    assert ids(client, obs, {"date": "2026-05-10T08:30:00Z"}) == {morning}
    assert ids(client, obs, {"date": "2026-05-10T09:30:00+01:00"}) == {morning}
    assert ids(client, obs, {"date": "2026-05-10T04:30:00-04:00"}) == {morning}
    assert ids(client, obs, {"date": "2026-05-11T05:00:00+05:30"}) == {after}  # 23:30Z
    assert ids(client, obs, {"date": "2026-05-10T09:30:00Z"}) == set()  # an hour later
    assert ids(client, obs, {"date": "gt2026-05-10T22:00:00Z"}) == {late, after}
    assert ids(client, obs, {"date": "lt2026-05-10T23:00:00+01:00"}) == {morning}
    assert ids(client, obs, {"date": "ge2026-05-10T23:30:00Z"}) == {after}
    assert ids(client, obs, {"date": "le2026-05-10T22:30:00Z"}) == {morning, late}
    assert ids(client, obs, {"date": "sa2026-05-10T22:30:00Z"}) == {after}
    assert ids(client, obs, {"date": "eb2026-05-10T22:30:00Z"}) == {morning}
    assert ids(client, obs, {"date": "ne2026-05-10T22:30:00Z"}) == {morning, after}
    assert ids(client, obs, {"date": "2026-05"}) == {morning, late, after}
    assert ids(client, obs, {"date": "2026"}) == {morning, late, after}
    assert ids(client, obs, {"date": "2025"}) == set()
    # minute precision with a zone: the whole minute
    assert ids(client, obs, {"date": "2026-05-10T23:30+01:00"}) == {late}


def test_escaped_colons_in_a_date_are_handled(client: TestClient) -> None:
    # R4 3.1.1.4.7: "Some user agents may escape the : characters in the URL, and servers
    # SHALL handle this correctly."
    grace = patient(client, "Okafor", "Grace")
    morning = resus_status(client, grace, NOT_FOR_CPR, "2026-05-10T09:30:00+01:00")
    r = client.get("/fhir/Observation?date=2026-05-10T08%3A30%3A00Z")
    assert r.status_code == 200, r.text
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [morning]
    r = client.get("/fhir/Observation?date=ge2026-05-10T09%3A00%3A00%2B01%3A00")
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [morning]


def seed_encounters(client: TestClient) -> dict[str, str]:
    grace = patient(client, "Okafor", "Grace")
    return {
        "visit": encounter(client, grace, {"start": "2026-05-01T10:00:00+01:00",
                                           "end": "2026-05-01T11:30:00+01:00"}),
        "stay": encounter(client, grace, {"start": "2026-05-03T22:10:00+01:00",
                                          "end": "2026-05-09T14:00:00+01:00"}, "IMP"),
        "hospice": encounter(client, grace, {"start": "2026-05-12T08:00:00+01:00"}, "IMP",
                             status="in-progress"),  # ongoing: no end
        "legacy": encounter(client, grace, {"end": "2026-04-20"}, "AMB"),  # start unknown
    }


def test_period_encounter_date(client: TestClient) -> None:
    e = seed_encounters(client)
    enc = "Encounter"
    assert ids(client, enc, {"date": "2026-05-01"}) == {e["visit"]}
    assert ids(client, enc, {"date": "2026-05-05"}) == set()  # the stay is wider than a day
    assert ids(client, enc, {"date": "2026-05"}) == {e["visit"], e["stay"]}
    assert ids(client, enc, {"date": "ne2026-05"}) == {e["hospice"], e["legacy"]}
    assert ids(client, enc, {"date": "ge2026-05-10"}) == {e["hospice"]}
    assert ids(client, enc, {"date": "gt2026-06"}) == {e["hospice"]}  # open end
    assert ids(client, enc, {"date": "lt2026-05-01"}) == {e["legacy"]}  # open start
    assert ids(client, enc, {"date": "le2026-05-01"}) == {e["visit"], e["legacy"]}
    assert ids(client, enc, {"date": "lt2000"}) == {e["legacy"]}
    assert ids(client, enc, {"date": "gt2099"}) == {e["hospice"]}
    assert ids(client, enc, {"date": "sa2026-05-10"}) == {e["hospice"]}
    assert ids(client, enc, {"date": "eb2026-05-01"}) == {e["legacy"]}
    assert ids(client, enc, {"date": "eb2026-05-10"}) == {e["visit"], e["stay"], e["legacy"]}
    assert ids(client, enc, {"date": "sa2026-04-30"}) == {e["visit"], e["stay"], e["hospice"]}
    assert ids(client, enc, [("date", "ge2026-05-02"), ("date", "le2026-05-11")]) \
        == {e["stay"]}


def test_period_care_plan_date(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    current = care_plan(client, grace, "active", {"start": "2026-04-28"})
    previous = care_plan(client, grace, "completed", {"start": "2026-01-05",
                                                      "end": "2026-04-27"})
    undated = care_plan(client, grace, "draft")
    assert ids(client, "CarePlan", {"date": "ge2026-05"}) == {current}
    assert ids(client, "CarePlan", {"date": "le2026-03"}) == {previous}
    assert ids(client, "CarePlan", {"date": "2026-02"}) == set()
    assert ids(client, "CarePlan", {"date": "2026"}) == {previous}
    assert ids(client, "CarePlan", {"date": "eb2026-04-28"}) == {previous}
    assert ids(client, "CarePlan", {"date": "sa2026-04-27"}) == {current}
    assert ids(client, "CarePlan", {"date:missing": "true"}) == {undated}
    assert ids(client, "CarePlan", [("status", "active,completed"),
                                    ("date", "ge2026-04-01")]) == {current, previous}
    assert ids(client, "CarePlan", [("status", "completed"), ("date", "ge2026-05")]) == set()


def test_period_flag_date(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    current = flag(client, grace, {"start": "2026-05-10T09:45:00+01:00"})
    lifted = flag(client, grace, {"start": "2025-11-01", "end": "2026-02-14"},
                  status="inactive")
    assert ids(client, "Flag", {"date": "ge2026-05-10T08:45:00Z"}) == {current}
    assert ids(client, "Flag", {"date": "lt2026-01"}) == {lifted}
    assert ids(client, "Flag", {"date": "2026-05-10T08:45:00Z"}) == set()  # open period
    assert ids(client, "Flag", {"date": "eb2026-05"}) == {lifted}
    assert ids(client, "Flag", {"date": "sa2026-02-14"}) == {current}
    assert ids(client, "Flag", {"date": "ap2025-12"}) == {lifted}  # overlaps; far from May
    assert ids(client, "Flag", {"date": "gt2030"}) == {current}


def test_dates_on_consent_provenance_audit_and_detected_issue(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    adrt = make(client, {"resourceType": "Consent", "status": "active",
                         "scope": concept("http://terminology.hl7.org/CodeSystem/consentscope",
                                          "adr"),
                         "category": [concept("http://loinc.org", "59284-0")],
                         "patient": ref("Patient", grace),
                         "dateTime": "2026-03-02T11:15:00Z",
                         "provision": {"period": {"start": "2026-03-02"}}})
    old = make(client, {"resourceType": "Consent", "status": "inactive",
                        "scope": concept("http://terminology.hl7.org/CodeSystem/consentscope",
                                         "patient-privacy"),
                        "category": [concept("http://loinc.org", "59284-0")],
                        "patient": ref("Patient", grace),
                        "dateTime": "2024-07-19T10:00:00Z",
                        "provision": {"period": {"start": "2024-07-19",
                                                 "end": "2026-03-01"}}})
    assert ids(client, "Consent", {"date": "2026-03-02"}) == {adrt}
    assert ids(client, "Consent", {"date": "lt2025"}) == {old}
    assert ids(client, "Consent", {"period": "ge2026-06"}) == {adrt}
    assert ids(client, "Consent", {"period": "2025"}) == set()
    assert ids(client, "Consent", {"period": "ap2024-10"}) == {old}  # overlaps

    signed = provenance(client, [f"Consent/{adrt}"], "2026-03-02T11:15:42.123Z")
    replayed = provenance(client, [f"Consent/{old}"], "2026-03-04T00:05:00Z")
    assert ids(client, "Provenance", {"recorded": "2026-03-02"}) == {signed}
    assert ids(client, "Provenance", {"recorded": "2026-03-02T11:15:42Z"}) == {signed}
    assert ids(client, "Provenance", {"recorded": "2026-03-02T11:15Z"}) == {signed}
    assert ids(client, "Provenance", {"recorded": "ge2026-03-03T00:00:00Z"}) == {replayed}
    assert ids(client, "Provenance", {"recorded": "2026-03-04T01:05:00+01:00"}) == {replayed}

    dcm = "http://dicom.nema.org/resources/ontology/DCM"
    audit = {"resourceType": "AuditEvent", "type": {"system": dcm, "code": "110110"},
             "agent": [{"requestor": True, "who": {"display": "Dr Ahmed"}}],
             "source": {"observer": {"display": "gateway"}}}
    night = make(client, {**audit, "recorded": "2026-05-10T02:14:00.000Z"})
    day = make(client, {**audit, "recorded": "2026-05-10T14:14:00.000Z"})
    assert ids(client, "AuditEvent", {"date": "2026-05-10"}) == {night, day}
    assert ids(client, "AuditEvent", {"date": "lt2026-05-10T12:00:00Z"}) == {night}
    assert ids(client, "AuditEvent", {"date": "gt2026-05-10T12:00:00+01:00"}) == {day}

    issue = {"resourceType": "DetectedIssue", "status": "final",
             "patient": ref("Patient", grace),
             "code": {"text": "Conflicting resuscitation decisions"}}
    found = make(client, {**issue, "identifiedDateTime": "2026-05-10T10:02:00+01:00"})
    earlier = make(client, {**issue, "identifiedPeriod": {"start": "2026-04-01",
                                                          "end": "2026-04-03"}})
    assert ids(client, "DetectedIssue", {"identified": "2026-05-10"}) == {found}
    assert ids(client, "DetectedIssue", {"identified": "2026-04"}) == {earlier}
    assert ids(client, "DetectedIssue", {"identified": "eb2026-05"}) == {earlier}


def test_dates_on_condition_document_reference_and_death(client: TestClient) -> None:
    grace = make(client, {"resourceType": "Patient",
                          "deceasedDateTime": "2026-05-14T03:20:00+01:00"})
    alive = make(client, {"resourceType": "Patient", "deceasedBoolean": False})
    assert ids(client, "Patient", {"death-date": "2026-05-14T02:20:00Z"}) == {grace}
    assert ids(client, "Patient", {"death-date": "2026-05"}) == {grace}
    assert ids(client, "Patient", {"death-date:missing": "true"}) == {alive}

    onset = make(client, {"resourceType": "Condition", "subject": ref("Patient", grace),
                          "code": concept("http://snomed.info/sct", "254637007"),
                          "onsetDateTime": "2025-11-03", "recordedDate": "2025-11-20"})
    later = make(client, {"resourceType": "Condition", "subject": ref("Patient", grace),
                          "code": concept("http://snomed.info/sct", "271737000"),
                          "onsetPeriod": {"start": "2026-04-01", "end": "2026-04-30"},
                          "recordedDate": "2026-04-02T09:00:00+01:00"})
    assert ids(client, "Condition", {"onset-date": "2025-11"}) == {onset}
    assert ids(client, "Condition", {"onset-date": "2026-04"}) == {later}
    assert ids(client, "Condition", {"onset-date": "gt2026-01"}) == {later}
    assert ids(client, "Condition", {"recorded-date": "lt2026"}) == {onset}
    assert ids(client, "Condition", {"recorded-date": "2026-04-02"}) == {later}

    doc = {"resourceType": "DocumentReference", "status": "current",
           "subject": ref("Patient", grace),
           "content": [{"attachment": {"contentType": "application/pdf"}}]}
    respect = make(client, {**doc, "date": "2026-05-10T09:40:12.000+01:00",
                            "context": {"period": {"start": "2026-05-10"}}})
    plan = make(client, {**doc, "date": "2026-02-01T16:00:00.000Z",
                         "context": {"period": {"start": "2026-02-01", "end": "2026-05-09"}}})
    assert ids(client, "DocumentReference", {"date": "2026-05-10"}) == {respect}
    assert ids(client, "DocumentReference", {"date": "lt2026-03"}) == {plan}
    assert ids(client, "DocumentReference", {"period": "gt2026-06"}) == {respect}
    assert ids(client, "DocumentReference", {"period": "eb2026-05-10"}) == {plan}


def test_malformed_dates_are_refused(client: TestClient) -> None:
    patient(client, "Okafor", "Grace", birthDate="1938-03-14")
    for value in ["23 May 2009", "2026-13", "2026-02-30", "1938-03-14T25:00:00Z", "gt",
                  "2026/05/10", "ge2026-05-10Tnoon", "10-05-2026"]:
        diagnostics = refused(client, "Patient", {"birthdate": value})
        assert "birthdate" in diagnostics, (value, diagnostics)


def test_years_before_1000_sort_before_later_ones() -> None:
    # strftime's %Y gave "26-02-11T..." for the year 26, which sorted after "2026-..."
    from fhir_gateway.search.values import date_range

    assert date_range("0026-02-11")[0] == "0026-02-11T00:00:00.000000"
    assert date_range("0026-02-11")[1] < date_range("2026-07-16")[0]
    assert date_range("2026-07-16T10:30:00+01:00") == ("2026-07-16T09:30:00.000000",
                                                      "2026-07-16T09:30:00.999999")


def _scheduled(client: TestClient, grace: str, timing: dict) -> str:
    return care_plan(client, grace, "active", activity=[
        {"detail": {"status": "scheduled", "scheduledTiming": timing}}])


def test_a_timing_is_dated_by_its_events_and_bounds(client: TestClient) -> None:
    # R4 3.1.1.4.7: for a Timing only the outer limits matter, its events and its
    # repeat.boundsPeriod (open ends unbounded, as for a Period)
    grace = patient(client, "Okafor", "Grace")
    daily = {"frequency": 1, "period": 1, "periodUnit": "d"}
    bounded = _scheduled(client, grace, {"repeat": {
        **daily, "boundsPeriod": {"start": "2024-03-01", "end": "2024-03-31"}}})
    events = _scheduled(client, grace, {"event": ["2024-03-05", "2024-03-20"]})
    both = _scheduled(client, grace, {"event": ["2024-02-20"], "repeat": {
        **daily, "boundsPeriod": {"start": "2024-03-01", "end": "2024-03-10"}}})
    open_end = _scheduled(client, grace, {"repeat": {
        **daily, "boundsPeriod": {"start": "2024-04-01"}}})
    undated = _scheduled(client, grace, {"repeat": {**daily, "boundsDuration": {
        "value": 10, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"}}})
    cp = "CarePlan"
    assert ids(client, cp, {"activity-date": "2024-03"}) == {bounded, events}
    assert ids(client, cp, {"activity-date": "ge2024-03-15"}) == {bounded, events, open_end}
    assert ids(client, cp, {"activity-date": "lt2024-03-01"}) == {both}
    assert ids(client, cp, {"activity-date": "sa2024-03-31"}) == {open_end}
    assert ids(client, cp, {"activity-date": "gt2099"}) == {open_end}
    assert ids(client, cp, {"activity-date": "eb2024-04-01"}) == {bounded, events, both}
    assert ids(client, cp, {"activity-date:missing": "true"}) == {undated}
    order = make(client, {"resourceType": "ServiceRequest", "status": "active",
                          "intent": "order", "subject": ref("Patient", grace),
                          "occurrenceTiming": {"repeat": {
                              "frequency": 2, "period": 1, "periodUnit": "wk",
                              "boundsPeriod": {"start": "2024-03-01", "end": "2024-03-31"}}}})
    assert ids(client, "ServiceRequest", {"occurrence": "2024-03"}) == {order}
    assert ids(client, "ServiceRequest", {"occurrence:missing": "true"}) == set()


def test_compiled_timing_dates_agree_with_fhirpath() -> None:
    resource = {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                "subject": {"reference": "Patient/p"}, "activity": [
                    {"detail": {"status": "scheduled", "scheduledTiming": {
                        "event": ["2024-02-20"], "repeat": {"boundsPeriod": {
                            "start": "2024-03-01", "end": "2024-03-10"}}}}},
                    {"detail": {"status": "scheduled", "scheduledPeriod": {
                        "start": "2024-05-01"}}}]}
    param = default_registry().get("CarePlan", "activity-date")
    assert param is not None and param.expression is not None
    fast = compile_expression(param.expression, "CarePlan")
    assert fast is not None
    slow = [v for n in param.fhirpath()(resource) for v in values_for(param, n)]
    assert sorted(map(repr, slow)) == sorted(
        repr(v) for n in fast(resource) for v in values_for(param, n))
    assert {(v.low[:10], v.high[:10]) for v in slow} == {("2024-02-20", "2024-03-10"),
                                                         ("2024-05-01", "9999-12-31")}
