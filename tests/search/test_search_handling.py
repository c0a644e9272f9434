"""Unknown and unsupported parameters (R4 3.1.1.3): 400 with an OperationOutcome naming
the valid parameters under `Prefer: handling=strict` (the gateway's default); ignored and
reported in an OperationOutcome entry (search.mode = outcome) under `handling=lenient`,
with the self link listing only the parameters used (3.1.1.6). Unsupported modifiers are
refused (3.1.1.4.4: "Server SHALL reject any search request that contains ... a modifier
that the server does not support"). Empty parameters are ignored (3.1.1.3). Search by
POST [base]/[type]/_search with a form body (3.1.1.2)."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from eol_search_kit import (
    FORM,
    LENIENT,
    NHS,
    NOT_FOR_CPR,
    STRICT,
    bundle,
    entries,
    ids,
    listed,
    make,
    patient,
    refused,
    resus_status,
    self_link,
)
from fastapi.testclient import TestClient


def seed(client: TestClient) -> dict[str, str]:
    return {"grace": patient(client, "Okafor", "Grace", "9434765919", gender="female"),
            "tom": patient(client, "O'Neill", "Tom", "9000000009", gender="male")}


def test_unknown_parameter_is_refused_by_default_naming_valid_ones(client: TestClient) -> None:
    seed(client)
    for headers in (None, STRICT):
        diagnostics = refused(client, "Patient", {"gender": "female", "shoe-size": "6"},
                              headers=headers)
        assert "shoe-size" in diagnostics
        for valid in ("birthdate", "family", "identifier", "gender", "_id"):
            assert valid in diagnostics, valid
    r = client.get("/fhir/Patient", params={"shoe-size": "6"})
    issue = r.json()["issue"][0]
    assert issue["code"] == "not-supported" and issue["expression"] == ["shoe-size"]


def test_parameters_of_another_type_and_unsupported_ones_are_refused(
        client: TestClient) -> None:
    seed(client)
    refused(client, "Patient", {"code": "304251008"})  # an Observation parameter
    for name in ("_text", "_content", "_list", "_filter", "_query", "_type"):
        assert name in refused(client, "Patient", {name: "x"}), name


def test_unsupported_modifiers_are_refused(client: TestClient) -> None:
    seed(client)
    for name, value in [("gender:exact", "female"), ("family:text", "okafor"),
                        ("birthdate:exact", "1938"), ("identifier:below", f"{NHS}|"),
                        ("identifier:in", "http://example.org/ValueSet/x"),
                        ("family:sounds-like", "ocafor"), ("gender:missing", "maybe")]:
        diagnostics = refused(client, "Patient", {name: value})
        assert name.split(":")[0] in diagnostics, (name, diagnostics)


def test_unsupported_modifier_is_refused_even_when_lenient(client: TestClient) -> None:
    # "SHALL reject" (3.1.1.4.4) is not relaxed by handling=lenient, which is about
    # unknown parameters: ignoring :below would return every resuscitation decision.
    s = seed(client)
    resus_status(client, s["grace"], NOT_FOR_CPR, "2026-05-10T09:30:00Z")
    refused(client, "Observation", {"value-concept:below": f"http://snomed.info/sct|{NOT_FOR_CPR}"},
            headers=LENIENT)


def test_lenient_ignores_unknown_parameters_and_says_so(client: TestClient) -> None:
    s = seed(client)
    b = bundle(client, "Patient", [("gender", "female"), ("shoe-size", "6"),
                                   ("_filter", "name eq x")], headers=LENIENT)
    assert listed(b) == [s["grace"]]
    assert b["total"] == 1  # the outcome entry is not a match
    (outcome,) = entries(b, "outcome")
    assert outcome["resource"]["resourceType"] == "OperationOutcome"
    issues = outcome["resource"]["issue"]
    assert {i["severity"] for i in issues} == {"warning"}
    text = " ".join(i["diagnostics"] for i in issues)
    assert "shoe-size" in text and "_filter" in text
    assert ids(client, "Patient", {"shoe-size": "6"}, headers=LENIENT) == {s["grace"], s["tom"]}


def test_self_link_lists_only_the_parameters_used(client: TestClient) -> None:
    # R4 3.1.1.6: "the server SHALL return the parameters that were actually used to
    # process the search ... encoded in the self link"
    seed(client)
    b = bundle(client, "Patient", [("gender", "female"), ("shoe-size", "6")], headers=LENIENT)
    used = dict(parse_qsl(urlsplit(self_link(b)).query))
    assert used.get("gender") == "female"
    assert "shoe-size" not in used


def test_empty_parameters_are_ignored(client: TestClient) -> None:
    # R4 3.1.1.3: "Empty parameters are not an error - they are just ignored by the server"
    s = seed(client)
    nameless = make(client, {"resourceType": "Patient", "gender": "unknown"})
    everyone = {s["grace"], s["tom"], nameless}
    assert ids(client, "Patient", {"gender": "female", "family": ""}) == {s["grace"]}
    assert ids(client, "Patient", {"family": ""}) == everyone  # string
    assert ids(client, "Patient", {"gender": ""}) == everyone  # token
    assert ids(client, "Patient", {"identifier": ""}) == everyone
    assert ids(client, "Patient", {"birthdate": ""}) == everyone  # date
    assert ids(client, "Patient", {"general-practitioner": ""}) == everyone  # reference


def test_format_and_pretty_are_accepted_when_strict(client: TestClient) -> None:
    s = seed(client)
    assert ids(client, "Patient", [("gender", "male"), ("_format", "json"),
                                   ("_pretty", "true")], headers=STRICT) == {s["tom"]}


def test_search_by_post_form_body(client: TestClient) -> None:
    s = seed(client)
    r = client.post("/fhir/Patient/_search", content=b"gender=male", headers=FORM)
    assert r.status_code == 200, r.text
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [s["tom"]]
    body = f"identifier={NHS}%7C9434765919&family=okaf".encode()
    r = client.post("/fhir/Patient/_search", content=body, headers=FORM)
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [s["grace"]]
    # parameters in the URL and the body are combined
    r = client.post("/fhir/Patient/_search?gender=female", content=b"family=o", headers=FORM)
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [s["grace"]]
    # the self link is expressed as a GET search (3.1.1.6)
    self_url = next(link["url"] for link in r.json()["link"] if link["relation"] == "self")
    assert urlsplit(self_url).path == "/fhir/Patient"
    assert dict(parse_qsl(urlsplit(self_url).query)) == {"gender": "female", "family": "o"}


def test_search_by_post_with_a_json_body_is_refused_not_widened(client: TestClient) -> None:
    seed(client)
    # the criteria would be ignored and every patient returned
    r = client.post("/fhir/Patient/_search", json={"family": "ZZZ"},
                    headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 415, r.text
    assert "form body" in r.json()["issue"][0]["diagnostics"]


def test_search_by_post_with_sort_paging_and_errors(client: TestClient) -> None:
    s = seed(client)
    r = client.post("/fhir/Patient/_search", content=b"_sort=-family&_count=1", headers=FORM)
    assert r.status_code == 200
    page = r.json()
    assert [e["resource"]["id"] for e in page["entry"]] == [s["grace"]]  # okafor > o'neill
    nxt = next(link["url"] for link in page["link"] if link["relation"] == "next")
    r = client.get(nxt.removeprefix("http://gateway.test"))
    assert [e["resource"]["id"] for e in r.json()["entry"]] == [s["tom"]]
    r = client.post("/fhir/Patient/_search", content=b"shoe-size=6", headers=FORM)
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


def test_lenient_refuses_a_known_parameter_whose_value_cannot_be_read(
        client: TestClient) -> None:
    # handling=lenient is about unknown parameters (3.1.1.3). Dropping a known one whose
    # value is unreadable would widen the search to every patient: another person's
    # DNACPR decision shown for the one asked about.
    s = seed(client)
    hers = resus_status(client, s["grace"], NOT_FOR_CPR, "2026-05-10T09:30:00Z")
    resus_status(client, s["tom"], NOT_FOR_CPR, "2026-05-11T09:30:00Z")
    for params in ({"patient": f"Patient/{s['grace']} "}, {"subject": "Patient/b_b"},
                   {"patient": "9434765919/x/y"},
                   {"patient": s["grace"], "date": "2025-1-1"},
                   {"patient": s["grace"], "date": "2024-13-01"},
                   {"patient": s["grace"], "value-quantity": "lots"},
                   {"subject:Patient.birthdate": "1938-13"},
                   {"patient": s["grace"], "_count": "many"},
                   {"patient": s["grace"], "_summary": "everything"}):
        for headers in (LENIENT, STRICT, None):
            refused(client, "Observation", params, headers=headers)
    # unknown names are still ignored, and reported, under lenient
    b = bundle(client, "Observation", [("patient", s["grace"]), ("shoe-size", "6")],
               headers=LENIENT)
    assert listed(b) == [hers]
    assert "shoe-size" in entries(b, "outcome")[0]["resource"]["issue"][0]["diagnostics"]


def test_values_and_criteria_are_capped_before_the_store(client: TestClient) -> None:
    """~500 OR values or ~990 criteria made SQLite refuse the query ("Expression tree is
    too large"): a 500. Both are capped at parse time (so on MongoDB too): 400 too-costly
    naming the parameter, under lenient handling too; at the caps, the search runs."""
    from urllib.parse import urlencode

    from fhir_gateway.search.query import MAX_CRITERIA, MAX_VALUES_PER_PARAM

    seed(client)
    many = ",".join(f"n{i}" for i in range(MAX_VALUES_PER_PARAM + 1))
    for headers in (None, LENIENT):
        r = client.get(f"/fhir/Patient?family={many}", headers=headers)
        assert r.status_code == 400, r.text
        issue = r.json()["issue"][0]
        assert issue["code"] == "too-costly" and issue["expression"] == ["family"]
        assert f"at most {MAX_VALUES_PER_PARAM}" in issue["diagnostics"]
    repeated = "&".join(f"family=n{i}" for i in range(MAX_CRITERIA + 1))
    r = client.get(f"/fhir/Patient?{repeated}")
    assert r.status_code == 400 and r.json()["issue"][0]["code"] == "too-costly", r.text
    assert client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers={
        "Content-Type": "application/fhir+json",
        "If-None-Exist": f"family={many}"}).status_code == 400
    assert client.delete(f"/fhir/Patient?{repeated}").status_code == 400
    # at the caps, the worst case (every criterion full of values) runs on both engines
    at_caps = [("identifier", ",".join(f"{NHS}|{9000000000 + i}"
                                       for i in range(MAX_VALUES_PER_PARAM)))
               for _ in range(MAX_CRITERIA)]
    r = client.post("/fhir/Patient/_search", content=urlencode(at_caps).encode(),
                    headers=FORM)
    assert r.status_code == 200, r.text[:300]
    assert bundle(client, "Patient", {"family": "Okafor,nobody"})["total"] == 1
