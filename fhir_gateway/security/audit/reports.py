"""The auditors' reports, each an AuditEvent search (so an auditor can run the same search
against `/fhir/AuditEvent` with a FHIR client) summarised:

- `patient_access(patients)`: who accessed a person's record: when, which client and
  organisation, for what purpose, what they did, and whether they broke the glass
  (`AuditEvent?patient=Patient/{id},Patient/{id2}`: every Patient an A40 merge joined
  into the person, since the accesses before a merge name the id read then); an access
  that touched more than `events.MAX_PATIENT_ENTITIES` patients is found through the
  continuation event that names the person;
- `access_summary(start, end)`: accesses per organisation and purpose over a period
  (`AuditEvent?date=ge{start}&date=le{end}`), each interaction counted once (not its
  continuation events, which only name more of its patients: `events.audit_events`),
  token requests left out (authenticating reads no one's record);
- `break_glass(start, end)`: break-glass events to review
  (`AuditEvent?policy=<break-glass policy>&date=...`).
Rows are JSON objects; `to_csv` renders any report as CSV.

A report is never cut short in silence: the accesses summary counts every matching event;
a report listing events refuses (400, `too-costly`) when more than `MAX_ROWS` match,
asking for a shorter period, rather than leave an auditor reading part of the trail as if
it were all of it.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterator
from typing import Any

from ... import jsonio
from ...errors import BadRequest
from ...fhir.repository import Repository
from ...search.query import parse_search
from ..consent import ODS_SYSTEM
from .events import BREAK_GLASS_POLICY, CLIENT_SYSTEM, DCM, PURPOSE_SYSTEM, is_continuation

#: the DICOM event type of a token request's AuditEvent (security.http)
USER_AUTHENTICATION = "110114"

PAGE = 500
MAX_ROWS = 100_000


def searches(kind: str, *, patients: list[str] | None = None, start: str | None = None,
             end: str | None = None) -> list[tuple[str, str]]:
    """The AuditEvent search parameters a report runs."""
    params: list[tuple[str, str]] = []
    if kind == "patient":
        params.append(("patient", ",".join(f"Patient/{p}" for p in patients or [])))
    if kind == "break-glass":
        params.append(("policy", BREAK_GLASS_POLICY))
    if start:
        params.append(("date", f"ge{start}"))
    if end:
        params.append(("date", f"le{end}"))
    return params


def _events(repository: Repository, params: list[tuple[str, str]], *,
            max_rows: int | None = None) -> Iterator[dict[str, Any]]:
    """Every AuditEvent the search finds, page by page; more than `max_rows` is refused."""
    search = parse_search("AuditEvent", params, repository.registry, strict=True)
    query = search.query
    query.limit = PAGE
    seen = 0
    while True:
        found = repository.find(query)
        seen += len(found.rows)
        if max_rows is not None and seen > max_rows:
            raise BadRequest(f"more than {max_rows:,} audit events match this report; "
                             "ask for a shorter period with from= and to=",
                             code="too-costly", expression="from")
        for row in found.rows:
            if row.body:
                yield jsonio.loads_trusted(row.body)
        if len(found.rows) < PAGE:
            return
        query.after = found.keys[-1]


def row(event: dict[str, Any]) -> dict[str, Any]:
    """The columns every report shows for one event."""
    client = org = purpose = role = None
    break_glass = reason = None
    for agent in event.get("agent") or []:
        ident = (agent.get("who") or {}).get("identifier") or {}
        if ident.get("system") == CLIENT_SYSTEM:
            client = ident.get("value")
            for concept in agent.get("purposeOfUse") or []:
                for coding in concept.get("coding") or []:
                    if coding.get("system") == PURPOSE_SYSTEM and coding.get("code") != "BTG":
                        purpose = coding.get("code")
            for concept in agent.get("role") or []:
                role = next((c.get("code") for c in concept.get("coding") or []), role)
            break_glass = BREAK_GLASS_POLICY in (agent.get("policy") or [])
        elif ident.get("system") == ODS_SYSTEM:
            org = ident.get("value")
    patients = []
    for entity in event.get("entity") or []:
        ref = (entity.get("what") or {}).get("reference") or ""
        if (entity.get("role") or {}).get("code") == "1" and ref.startswith("Patient/"):
            patients.append(ref[len("Patient/"):])
        if entity.get("description") == "break-glass":
            reason = next((d.get("valueString") for d in entity.get("detail") or []
                           if d.get("type") == "reason"), None)
    subtype = next((c.get("code") for c in event.get("subtype") or []), None)
    return {"recorded": event.get("recorded"), "client": client, "role": role,
            "organisation": org, "purpose": purpose, "interaction": subtype,
            "outcome": event.get("outcome"), "break_glass": bool(break_glass),
            "break_glass_reason": reason, "patients": " ".join(patients),
            "audit_event": event.get("id")}


def patient_access(repository: Repository, patients: list[str], *, start: str | None = None,
                   end: str | None = None) -> list[dict[str, Any]]:
    """`patients`: the ids of one person (the one asked for first)."""
    rows = [row(e) for e in _events(repository, searches("patient", patients=patients,
                                                          start=start, end=end),
                                    max_rows=MAX_ROWS)]
    return sorted(rows, key=lambda r: r["recorded"] or "")


def break_glass(repository: Repository, *, start: str | None = None,
                end: str | None = None) -> list[dict[str, Any]]:
    rows = [row(e) for e in _events(repository, searches("break-glass", start=start, end=end),
                                    max_rows=MAX_ROWS)
            if not is_continuation(e)]  # one access to review, however many patients
    return sorted(rows, key=lambda r: r["recorded"] or "")


def access_summary(repository: Repository, *, start: str | None = None,
                   end: str | None = None) -> list[dict[str, Any]]:
    counts: Counter[tuple[str, str, str]] = Counter()
    for event in _events(repository, searches("summary", start=start, end=end)):
        if is_continuation(event):
            continue  # more patients of an access already counted (events.audit_events)
        if _is_token_request(event):
            continue  # authenticating reads no record (AuditEvent?type=110114 lists them)
        r = row(event)
        if r["client"] is None:
            continue  # refused before anyone was identified: not an access
        outcome = "allowed" if r["outcome"] == "0" else "refused"
        counts[(r["organisation"] or "", r["purpose"] or "", outcome)] += 1
    return [dict(zip(SUMMARY_COLUMNS, (org, purpose, outcome, n), strict=True))
            for (org, purpose, outcome), n in sorted(counts.items())]


def _is_token_request(event: dict[str, Any]) -> bool:
    kind = event.get("type") if isinstance(event.get("type"), dict) else {}
    return kind.get("system") == DCM and kind.get("code") == USER_AUTHENTICATION


#: the accesses summary's columns (`access_summary`)
SUMMARY_COLUMNS = ("organisation", "purpose", "outcome", "count")


def columns(kind: str | None) -> list[str]:
    """A report's CSV header: the same with no rows as with many, so a spreadsheet or
    script reading an empty period still finds its columns."""
    return list(SUMMARY_COLUMNS) if kind == "summary" else list(row({}))


def to_csv(rows: list[dict[str, Any]], fieldnames: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fieldnames, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _safe_cell(v) for k, v in r.items()})
    return out.getvalue()


def _safe_cell(value: Any) -> Any:
    """Keep a spreadsheet from running a cell as a formula (CSV injection)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
