"""Feed text for the identity tests: valid NHS numbers, HL7 ADT messages, hospice lines."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from fhir_gateway import jsonio
from fhir_gateway.fhir.repository import Repository
from fhir_gateway.pipeline.service import IngestService
from fhir_gateway.store.base import StoreEngine
from fhir_gateway.store.query import IndexQuery

TODAY = dt.date(2026, 11, 22)
NHS = "https://fhir.nhs.uk/Id/nhs-number"
ADDRESS = "1 High St^^Dudley^^DY1 4DX"
COUNCIL_HEAD = ("Person ID,Title,First Name,Last Name,DOB,Postcode,NHS No (if known),Service,"
                "Service Start,Service End,Provider,Key Worker\n")
GP_HEAD = ("NHS Number,Surname,Forename,Date of Birth,Sex,Practice Code,Usual GP,"
           "Palliative Register Date,GSF Code,Preferred Place of Death,PPD Recorded,DNACPR,"
           "DNACPR Date,Care Plan Summary,Last Reviewed,Date of Death,Place of Death\n")


def nhs_numbers(start: int, n: int) -> list[str]:
    """`n` valid (Modulus 11) NHS numbers from the never-issued 999 range."""
    out, i = [], start
    while len(out) < n:
        digits = str(i)
        check = 11 - sum(int(c) * w for c, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if check != 10:
            out.append(digits + str(0 if check == 11 else check))
        i += 1
    return out


X, Y = nhs_numbers(999000200, 2)


def adt(control: str, event: str, when: str, pid3: str, name: str = "SMITH^JOHN",
        born: str = "19400101", address: str = ADDRESS, visit: str | None = None,
        merged: str | None = None) -> bytes:
    segments = [f"MSH|^~\\&|PAS|RXA|SCR|GATEWAY|{when}||ADT^{event}^ADT_A01|{control}|P|2.4",
                f"EVN|{event}|{when}", f"PID|1||{pid3}||{name}||{born}|M|||{address}"]
    if merged:
        segments.append(f"MRG|{merged}")
    if visit:
        segments.append(f"PV1|1|I|WARD 7^BAY C^BED 1^RXA|||||||300|||||||||{visit}"
                        + "|" * 25 + when)
    return ("\r".join(segments) + "\r").encode()


def hospice(client: str, nhs: str | None, cpr: str = "attempt",
            completed: str = "2026-01-05", postcode: str = "DY1 4DX") -> bytes:
    line: dict[str, Any] = {
        "clientId": client, "name": {"first": "John", "last": "Smith"}, "dob": "1940-01-01",
        "gender": "male", "address": {"line": "1 High St", "town": "Dudley",
                                      "postcode": postcode},
        "admissions": [],
        "respect": {"formId": f"RSP-{client}", "version": "3", "completedOn": completed,
                    "cpr": cpr, "careFocus": "comfort", "preferredPlaceOfCare": "home",
                    "recommendations": "x", "capacity": "has-capacity", "contacts": [],
                    "clinician": {"name": "Dr A", "gmc": "1234567"}}}
    if nhs:
        line["nhsNumber"] = nhs
    return (json.dumps(line) + "\n").encode()


class Partnership:
    """The five partners' feeds into one store, as `fhir-gateway ingest` loads them."""

    def __init__(self, engine: StoreEngine) -> None:
        self.repo = Repository(engine)
        self.service = IngestService(self.repo)
        self.loader = self.service.loader

    def send(self, partner: str, name: str, data: bytes) -> Any:
        return self.service.ingest(partner, name, data, today=TODAY)

    def all(self, rtype: str) -> list[dict[str, Any]]:
        return [jsonio.loads_trusted(r.body) for r in
                self.repo.find(IndexQuery(rtype=rtype)).rows if r.body]

    def patients(self) -> list[dict[str, Any]]:
        return self.all("Patient")

    def active(self) -> list[dict[str, Any]]:
        return [p for p in self.patients() if p.get("active", True) is not False]
