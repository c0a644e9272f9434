"""A format asked for twice is read one way by every part of the gateway.

The HTTP edge read the first `Accept` header and the last `_format`; the summary the
first `_format` and the last `Accept`. So the edge could refuse (406) a request the
summary would have answered with its page, or judge a page request as JSON."""

from __future__ import annotations

from fastapi.testclient import TestClient
from summary_kit import Record, by_nhs


def test_accept_sent_twice_is_one_list(http: TestClient) -> None:
    rec = Record(http)
    r = http.get(by_nhs(rec.nhs), headers=[("accept", "application/fhir+xml"),
                                            ("accept", "text/html;q=0.9")])
    assert r.status_code == 200, r.text[:300]
    assert r.headers["content-type"].startswith("text/html")
    assert "<html" in r.text.lower()


def test_accept_sent_twice_for_json_and_xml_gets_json(http: TestClient) -> None:
    rec = Record(http)
    r = http.get(by_nhs(rec.nhs), headers=[("accept", "application/fhir+xml"),
                                            ("accept", "application/fhir+json")])
    assert r.status_code == 200, r.text[:300]
    assert r.json()["resourceType"] == "Bundle"


def test_format_given_twice_is_refused_saying_so(http: TestClient) -> None:
    rec = Record(http)
    for formats in (("json", "html"), ("html", "json")):
        query = "&".join(f"_format={f}" for f in formats)
        r = http.get(f"{by_nhs(rec.nhs)}&{query}",
                     headers={"accept": "application/fhir+json"})
        assert r.status_code == 400, r.text[:300]
        assert "_format is given more than once" in r.text
    r = http.get("/fhir/Patient?_format=json&_format=json")
    assert r.status_code == 400
    assert r.json()["resourceType"] == "OperationOutcome"


def test_a_bundle_entry_asking_for_the_page_is_refused_not_a_500(http: TestClient) -> None:
    """The operation chose its HTML page for an entry's `_format=html`, and the Bundle then
    read the page as JSON: the entry (batch) or the whole request (transaction) was a 500."""
    rec = Record(http)
    url = f"{by_nhs(rec.nhs).removeprefix('/fhir/')}&_format=html"
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": url}},
        {"request": {"method": "GET", "url": by_nhs(rec.nhs).removeprefix("/fhir/")}}]}
    r = http.post("/fhir", json=batch, headers={"content-type": "application/fhir+json"})
    assert r.status_code == 200, r.text[:300]
    refused, answered = r.json()["entry"]
    assert refused["response"]["status"] == "406"
    assert "_format" in refused["response"]["outcome"]["issue"][0]["diagnostics"]
    assert answered["response"]["status"].startswith("200")
    assert answered["resource"]["type"] == "document"
    transaction = {**batch, "type": "transaction", "entry": batch["entry"][:1]}
    r = http.post("/fhir", json=transaction, headers={"content-type": "application/fhir+json"})
    assert r.status_code == 406, r.text[:300]
    assert r.json()["resourceType"] == "OperationOutcome"


def test_an_unescaped_plus_in_format_is_still_fhir_json(http: TestClient) -> None:
    """`_format=application/fhir+json` with the `+` unescaped reads as a space: it was
    refused 406, and in a transaction entry it sank the whole Bundle."""
    assert http.get("/fhir/Patient?_format=application/fhir+json").status_code == 200
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Patient?_format=application/fhir+json"}}]}
    r = http.post("/fhir", json=transaction, headers={"content-type": "application/fhir+json"})
    assert r.status_code == 200, r.text[:300]
