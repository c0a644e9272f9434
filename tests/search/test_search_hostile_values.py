"""Values are data, never query syntax: MongoDB operators, regular expressions, SQL LIKE
wildcards, quotes and SQL fragments match literally (so, here, nothing) or are refused
with 400, on every parameter type and modifier, on both engines; and data holding those
characters is found by exactly its own value."""

from __future__ import annotations

from pathlib import Path

import pytest
from eol_search_kit import (
    NHS,
    NOT_FOR_CPR,
    bundle,
    ids,
    make,
    organization,
    patient,
    ref,
    resus_status,
)
from fastapi.testclient import TestClient

from fhir_gateway.store.query import (
    Criterion,
    IndexQuery,
    StringPredicate,
    TokenTextPredicate,
)
from fhir_gateway.store.sqlite import SqliteEngine

HOSTILE = [
    '{"$ne": null}', '{"$gt": ""}', '{"$regex": ".*"}', "$where", ".*", "^.*$", "%", "_",
    "%%", "*", "' OR '1'='1", "x'; DROP TABLE resources;--", '" OR ""="', "1; SELECT 1",
    "') OR 1=1 --", "null", "\\", "\\\\",
]

#: (type, parameter) per parameter kind and modifier
PARAMS = [
    ("Patient", "identifier"), ("Patient", "identifier:text"), ("Patient", "gender"),
    ("Patient", "active"), ("Patient", "telecom"), ("Patient", "_id"), ("Patient", "_tag"),
    ("Patient", "_security"), ("Observation", "code"), ("Observation", "value-concept"),
    ("Observation", "code:text"),
    ("Patient", "family"), ("Patient", "family:exact"), ("Patient", "name:contains"),
    ("Patient", "address-postalcode"), ("Organization", "name"),
    ("Patient", "_profile"), ("Patient", "_source"), ("DocumentReference", "location"),
    ("Observation", "subject:identifier"), ("Observation", "subject:Patient.family"),
    ("Observation", "patient.birthdate"), ("Patient", "_has:Observation:patient:code"),
    ("Patient", "birthdate"), ("Patient", "_lastUpdated"), ("Observation", "date"),
    ("Observation", "value-quantity"), ("RiskAssessment", "probability"),
    ("Observation", "subject"), ("Patient", "general-practitioner"),
    ("Patient", "identifier:of-type"), ("Flag", "date"),
]


def seed(client: TestClient) -> dict[str, str]:
    s = {"grace": patient(client, "Okafor", "Grace", "9434765919", birthDate="1938-03-14",
                          gender="female", active=True,
                          telecom=[{"system": "phone", "value": "07700 900123"}],
                          address=[{"postalCode": "LS6 3BW"}]),
         "tom": patient(client, "O'Neill", "Tom", "9000000009", gender="male")}
    s["obs"] = resus_status(client, s["grace"], NOT_FOR_CPR, "2026-05-10T09:30:00Z")
    s["org"] = organization(client, "RR8", "Leeds Teaching Hospitals NHS Trust")
    return s


def nothing_or_refused(client: TestClient, rtype: str, name: str, value: str) -> None:
    r = client.get(f"/fhir/{rtype}", params={name: value})
    if r.status_code == 400:
        assert r.json()["resourceType"] == "OperationOutcome", r.text
        return
    assert r.status_code == 200, (name, value, r.status_code, r.text)
    matched = [e for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]
    assert matched == [], (name, value, matched)


def test_hostile_values_match_nothing_or_are_refused(client: TestClient) -> None:
    s = seed(client)
    for rtype, name in PARAMS:
        for value in HOSTILE:
            nothing_or_refused(client, rtype, name, value)
    # nothing was changed or dropped by any of it
    assert ids(client, "Patient") == {s["grace"], s["tom"]}
    assert ids(client, "Observation") == {s["obs"]}
    assert ids(client, "Organization") == {s["org"]}
    assert make(client, {"resourceType": "Patient", "gender": "unknown"})


def test_hostile_values_with_prefixes_and_system(client: TestClient) -> None:
    seed(client)
    for value in HOSTILE:
        for name, written in [("identifier", f"{NHS}|{value}"), ("identifier", f"{value}|"),
                              ("identifier", f"|{value}"), ("birthdate", f"ge{value}"),
                              ("_lastUpdated", f"lt{value}")]:
            nothing_or_refused(client, "Patient", name, written)
        for name, written in [("value-quantity", f"gt{value}"),
                              ("value-quantity", f"5|{value}|{value}"),
                              ("value-quantity", f"5||{value}"),
                              ("subject", f"Patient/{value}"),
                              ("subject", f"https://example.org/{value}")]:
            nothing_or_refused(client, "Observation", name, written)


def test_negations_of_hostile_values_keep_everything(client: TestClient) -> None:
    # :not is literal too: no resource has that value, so every resource qualifies
    s = seed(client)
    for value in ('{"$ne": null}', ".*", "%", "' OR '1'='1"):
        assert ids(client, "Patient", {"gender:not": value}) == {s["grace"], s["tom"]}
        assert ids(client, "Patient", {"_tag:not": value}) == {s["grace"], s["tom"]}


def test_hostile_parameter_names_and_result_parameters_are_refused(client: TestClient) -> None:
    seed(client)
    for name in ("family[$ne]", "$where", "family.$ne", "_has", "_has:Observation",
                 "family:$regex", "gender:not:not", "' OR 1=1 --"):
        r = client.get("/fhir/Patient", params={name: "x"})
        assert r.status_code == 400, (name, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    for name, value in [("_sort", '{"$natural": -1}'), ("_sort", "family; DROP TABLE x"),
                        ("_include", "Patient:' OR 1=1"), ("_count", "10; DROP"),
                        ("_count", '{"$gt": 0}'), ("_summary", "$where"),
                        ("_total", "' OR '1'='1"), ("_revinclude", ".*:.*")]:
        r = client.get("/fhir/Patient", params={name: value})
        assert r.status_code == 400, (name, value, r.text)


def test_special_characters_in_data_are_matched_literally(client: TestClient) -> None:
    legacy = "https://legacy-epaccs.example/Id/case"
    underscored = make(client, {"resourceType": "Patient", "identifier": [
        {"system": legacy, "value": "EOL_2026_001"}], "name": [{"family": "St. John"}]})
    dashed = make(client, {"resourceType": "Patient", "identifier": [
        {"system": legacy, "value": "EOL-2026-001"}], "name": [{"family": "Stjohn"}]})
    percent = make(client, {"resourceType": "Patient", "identifier": [
        {"system": legacy, "value": "EOL%2026"}], "name": [{"family": "O'Brien"}]})
    assert ids(client, "Patient", {"identifier": "EOL_2026_001"}) == {underscored}
    assert ids(client, "Patient", {"identifier": "EOL-2026-001"}) == {dashed}
    assert ids(client, "Patient", {"identifier": "EOL%2026"}) == {percent}
    assert ids(client, "Patient", {"identifier": "EOL%"}) == set()
    assert ids(client, "Patient", {"family": "st."}) == {underscored}
    assert ids(client, "Patient", {"family:contains": "."}) == {underscored}
    assert ids(client, "Patient", {"family": "st_"}) == set()
    assert ids(client, "Patient", {"family": "st%"}) == set()
    assert ids(client, "Patient", {"family": "st.*"}) == set()
    assert ids(client, "Patient", {"family:contains": "'"}) == {percent}
    assert ids(client, "Patient", {"family:exact": "O'Brien"}) == {percent}
    assert ids(client, "Patient", {"family:exact": "O_Brien"}) == set()
    assert ids(client, "Patient", {"family:contains": "_"}) == set()
    hospice = organization(client, "NHD01", "St Mary's (100% volunteer) Hospice")
    assert ids(client, "Organization", {"name:contains": "100% vol"}) == {hospice}
    assert ids(client, "Organization", {"name:contains": "100_ vol"}) == set()
    assert ids(client, "Organization", {"name": "st mary's ("}) == {hospice}


def test_hostile_values_in_a_post_search_body(client: TestClient) -> None:
    s = seed(client)
    for value in ('{"$ne": null}', "%", "' OR '1'='1"):
        r = client.post("/fhir/Patient/_search", data={"family": value, "gender": value})
        assert r.status_code == 200, r.text
        assert [e for e in r.json().get("entry", []) if e["search"]["mode"] == "match"] == []
    b = bundle(client, "Observation", {"subject": ref("Patient", s["grace"])["reference"]})
    assert [e["resource"]["id"] for e in b["entry"]] == [s["obs"]]


#: C0 control characters: no FHIR string holds one (but tab, LF and CR)
CONTROLS = ["\x00", "zz\x00", "\x00zz", "\x01", "o\x1f", "\x0b"]


def test_control_characters_in_values_are_refused(client: TestClient) -> None:
    # SQLite's LIKE ends a pattern at NUL, so `family:contains=%00` was "%": every Patient
    s = seed(client)
    for rtype, name in [*PARAMS, ("Patient", "family:contains"), ("Patient", "name")]:
        if name == "_id":
            continue  # matched by equality on the id, never by a pattern
        for value in CONTROLS:
            r = client.get(f"/fhir/{rtype}", params={name: value})
            assert r.status_code == 400, (name, value, r.status_code, r.text)
            assert "control characters" in r.json()["issue"][0]["diagnostics"]
    r = client.post("/fhir/Patient/_search", data={"family:contains": "\x00"})
    assert r.status_code == 400, r.text
    # a conditional delete or update never acts on what such a value would have matched
    assert client.delete("/fhir/Patient", params={"family:contains": "\x00"}).status_code \
        == 400
    r = client.put("/fhir/Patient", params={"family:contains": "\x00"},
                   json={"resourceType": "Patient", "name": [{"family": "Overwritten"}]})
    assert r.status_code == 400, r.text
    assert ids(client, "Patient") == {s["grace"], s["tom"]}
    # tab, LF and CR may be in FHIR strings: whitespace to string search, never refused
    assert ids(client, "Patient", {"family": "okafor\t"}) == {s["grace"]}
    assert ids(client, "Patient", {"name:contains": "o\r\n"}) == {s["grace"], s["tom"]}


@pytest.mark.parametrize("pred", [StringPredicate("contains", "\x00"),
                                  StringPredicate("prefix", "sm\x00"),
                                  TokenTextPredicate("\x00")])
def test_sqlite_refuses_nul_in_a_like_pattern(tmp_path: Path,
                                              pred: StringPredicate) -> None:
    # behind the parser: a NUL that reached LIKE would end the pattern and match all
    engine = SqliteEngine(tmp_path / "store.sqlite3")
    kind, param = ("token", "code") if isinstance(pred, TokenTextPredicate) else \
        ("string", "family")
    query = IndexQuery(rtype="Patient", criteria=[Criterion(param, kind, [pred])])
    try:
        with engine.session(write=False) as session, pytest.raises(ValueError, match="NUL"):
            session.find(query)
    finally:
        engine.close()
