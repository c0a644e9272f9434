"""Helpers for the emergency summary tests (a plain module: tests/summary is on sys.path
for its own tests): the partner sample feeds loaded through the real pipeline, and a
reader for the document Bundle the operation returns."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from fhir_gateway.fhir.repository import Repository
from fhir_gateway.fhir.validation import check_resource
from fhir_gateway.ingest import load_mapping
from fhir_gateway.pipeline.service import IngestService
from fhir_gateway.store.base import StoreEngine
from fhir_gateway.validation import is_valid_nhs_number

FEEDS = Path(__file__).resolve().parents[1] / "fixtures" / "feeds"
EXPECTED = json.loads((FEEDS / "expected.json").read_text())
TODAY = dt.date(2026, 11, 22)
NHS = "https://fhir.nhs.uk/Id/nhs-number"
SCT = "http://snomed.info/sct"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
DEATH_LOCATION = "https://fhir.shared-care-record.example/CodeSystem/death-location-type"
PLACES = {"10": "hospital", "21": "home", "30": "hospice", "40": "care-home"}
CPR = {"450476008": "not-attempt", "450475007": "attempt"}
FILES = [("acute", "acute/adt.hl7"), ("gp", "gp/palliative_register.csv"),
         ("hospice", "hospice/clients.jsonl"), ("socialcare", "socialcare/services.csv"),
         *(("community", f"community/{p.name}")
           for p in sorted((FEEDS / "community").iterdir()))]
PARTNER_BY_ODS = {load_mapping(p).ods_code: p for p in dict(FILES)}
SUMMARY = "/fhir/Patient/$emergency-summary"
CPR_URL = "https://fhir.shared-care-record.example/StructureDefinition/SCR-CPRDecision"

TITLES = {
    "deceased": "Deceased",
    "conflict": "Partners disagree on CPR",
    "cpr": "Resuscitation (CPR) decision",
    "respect": "ReSPECT recommendations and care focus",
    "places": "Preferred place of care and of death",
    "legal": "Legal: advance decision (ADRT), Lasting Power of Attorney",
    "contacts": "Contacts",
    "team": "Care team and 24-hour numbers",
    "alerts": "Alerts",
    "about": "About this summary",
}


def pin_today(monkeypatch: Any, today: dt.date) -> None:
    """Make the operation judge review dates against `today` (Europe/London)."""
    from fhir_gateway.summary import operation

    real = operation.emergency_summary

    def pinned(*args: Any, **kwargs: Any) -> Any:
        return real(*args, **{"today": today, **kwargs})

    monkeypatch.setattr(operation, "emergency_summary", pinned)


def load_feeds(engine: StoreEngine,
               files: list[tuple[str, str]] | None = None) -> Repository:
    """Every sample feed (or `files`, in that order) through the real pipeline, as
    tests/pipeline does; the one record held for review is settled as a new person, as a
    reviewer would. Stored CPR-conflict issues are judged on the feeds' own day, as their
    summaries are."""
    from fhir_gateway.summary.conflicts import CprConflictRecord

    repo = Repository(engine, derivations=(CprConflictRecord(lambda: TODAY),))
    service = IngestService(repo)
    for partner, name in FILES if files is None else files:
        service.ingest(partner, name, (FEEDS / name).read_bytes(), today=TODAY)
    for key, _ in service.loader.list_held():
        service.loader.resolve_held(key)
    return repo


def by_nhs(nhs: str) -> str:
    return f"{SUMMARY}?identifier={NHS}|{nhs}"


def hospice_contacts() -> dict[str, list[dict[str, Any]]]:
    """NHS number -> the contacts on the person's ReSPECT form (hospice feed)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for line in (FEEDS / "hospice" / "clients.jsonl").read_text().splitlines():
        if line.strip():
            client = json.loads(line)
            respect = client.get("respect") or {}
            out[client.get("nhsNumber", "")] = list(respect.get("contacts") or [])
    return out


RULES_TODAY = dt.date(2026, 6, 1)  # "today" of the small records
GP, HOSPICE, ACUTE = ("X9G01", "Borough GP"), ("X9H01", "Borough Hospice"), ("RXA", "Acute")


def valid_nhs(start: int) -> str:
    """The first valid NHS number from 999 000 0000 + start (a range never issued)."""
    n = 9_990_000_000 + start
    while not is_valid_nhs_number(str(n)):
        n += 1
    return str(n)


class Record:
    """One person's record, written as partners' feeds would (each write with a Provenance
    naming the partner and the version it made)."""

    def __init__(self, http: TestClient, pid: str = "p1", nhs: str | None = None,
                 **patient: Any) -> None:
        self.repo: Repository = http.app.state.fhir_router.repository
        self.pid, self.nhs = pid, nhs or valid_nhs(1)
        self.n = 0
        self.patient = self.put({"resourceType": "Patient", "id": pid, "name": [
            {"family": "Example", "given": ["Ann"]}], "birthDate": "1940-02-03",
            "identifier": [{"system": NHS, "value": self.nhs}], **patient}, GP)

    def put(self, resource: dict[str, Any], partner: tuple[str, str] | None,
            recorded: str = "2026-05-01T10:00:00Z") -> dict[str, Any]:
        if "id" not in resource:
            self.n += 1
            resource = {**resource, "id": f"{self.pid}-{resource['resourceType'].lower()}"
                                          f"-{self.n}"}
        stored = self.repo.update(resource, rtype=resource["resourceType"], rid=resource["id"])
        body = json.loads(stored.stored.body)
        if partner is not None:
            self.repo.create({
                "resourceType": "Provenance",
                "target": [{"reference": f"{body['resourceType']}/{body['id']}/_history/"
                                         f"{body['meta']['versionId']}"}],
                "recorded": recorded,
                "agent": [{"who": {"identifier": {
                    "system": "https://fhir.nhs.uk/Id/ods-organization-code",
                    "value": partner[0]}, "display": partner[1]}}],
                "entity": [{"role": "source", "what": {"display": f"{partner[1]} feed"}}]})
        return body

    def cpr(self, decision: str, when: str, partner: tuple[str, str] | None,
            **more: Any) -> dict[str, Any]:
        code = {"not-attempt": "450476008", "attempt": "450475007"}[decision]
        return self.put({"resourceType": "Observation", "status": "final",
                         "code": {"coding": [{"system": SCT, "code": "304251008"}]},
                         "subject": {"reference": f"Patient/{self.pid}"},
                         "effectiveDateTime": when,
                         "valueCodeableConcept": {"coding": [{"system": SCT, "code": code}]},
                         **more}, partner)


class Doc:
    """A document Bundle, read the way a consumer would: a reference resolved to an entry
    by R4's rules (3.3.1.4.1): an absolute URL or `urn:` is an entry's fullUrl; a relative
    one resolves only against the RESTful fullUrl of the entry that holds it."""

    def __init__(self, bundle: dict[str, Any]) -> None:
        self.bundle = bundle
        self.entries = bundle["entry"]
        self.composition = self.entries[0]["resource"]
        self.composition_url = self.entries[0]["fullUrl"]
        self.by_url = {e["fullUrl"]: e["resource"] for e in self.entries}
        self.by_ref = _ByReference(self.by_url, self.composition_url)

    def resolve(self, reference: str, container: str) -> dict[str, Any] | None:
        """The entry `reference` (found in the entry whose fullUrl is `container`) names."""
        return _resolve(self.by_url, reference, container)

    def section(self, key: str) -> dict[str, Any] | None:
        return next((s for s in self.composition["section"] if s["title"] == TITLES[key]),
                    None)

    def titles(self) -> list[str]:
        return [s["title"] for s in self.composition["section"]]

    def cited(self, key: str) -> list[dict[str, Any]]:
        section = self.section(key)
        return [self.by_ref[e["reference"]] for e in (section or {}).get("entry", [])]

    def text(self, key: str) -> str:
        section = self.section(key)
        return section["text"]["div"] if section else ""

    def of_type(self, rtype: str) -> list[dict[str, Any]]:
        return [e["resource"] for e in self.entries if e["resource"]["resourceType"] == rtype]

    def partner_of(self, resource: dict[str, Any]) -> str | None:
        """The partner named by a Provenance in the Bundle for the resource's version."""
        ref = f"{resource['resourceType']}/{resource['id']}/_history/" \
              f"{resource['meta']['versionId']}"
        for prov in self.of_type("Provenance"):
            if any(t["reference"] == ref for t in prov["target"]):
                ods = prov["agent"][0]["who"]["identifier"]["value"]
                return PARTNER_BY_ODS.get(ods, ods)
        return None


def _resolve(by_url: dict[str, dict[str, Any]], reference: str,
             container: str) -> dict[str, Any] | None:
    reference = reference.split("/_history/")[0]
    if "://" in reference or reference.startswith("urn:"):
        return by_url.get(reference)
    root = re.match(r"^(https?://.+/)[A-Za-z]+/[A-Za-z0-9\-.]{1,64}$", container)
    return by_url.get(root.group(1) + reference) if root else None


class _ByReference(Mapping[str, dict[str, Any]]):
    """The Composition's references, resolved as `Doc.resolve` does."""

    def __init__(self, by_url: dict[str, dict[str, Any]], container: str) -> None:
        self._by_url, self._container = by_url, container

    def __getitem__(self, reference: str) -> dict[str, Any]:
        found = _resolve(self._by_url, reference, self._container)
        if found is None:
            raise KeyError(f"{reference} does not resolve from {self._container}")
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_url)

    def __len__(self) -> int:
        return len(self._by_url)


def document(http: TestClient, url: str, **headers: str) -> Doc:
    """GET a summary that must answer 200 with a valid R4 Bundle."""
    resp = http.get(url, headers=headers)
    assert resp.status_code == 200, resp.text
    doc = Doc(resp.json())
    check_resource(doc.bundle, expected_type="Bundle")
    return doc


def headline(doc: Doc) -> str:
    return doc.composition["text"]["div"]


def cpr_of(obs: dict[str, Any]) -> str:
    return CPR[obs["valueCodeableConcept"]["coding"][0]["code"]]


def code_of(resource: dict[str, Any]) -> str:
    return resource["code"]["coding"][0]["code"]
