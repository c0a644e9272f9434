"""The summary as a FHIR `document` Bundle (R4 3.3): the Composition first, then the
Patient, the DetectedIssue for partners who disagree, every resource a section cites,
and the Provenance of each (which partner sent it, when).

Stored resources keep their server URL as `fullUrl`; what the summary makes (the
Composition, the DetectedIssue) is identified by `urn:uuid:`, so it cites stored resources
by that absolute URL: R4 resolves a relative reference only from an entry whose fullUrl
is a RESTful URL (3.3.1.4.1), never from a `urn:uuid:` one. The DetectedIssue's id is
derived from the decisions it implicates, so the same disagreement always has the same id.
"""

from __future__ import annotations

import uuid
from typing import Any

from .. import jsonio
from . import terms as t
from .facts import Facts, between_partners
from .words import Section, patient_name

XHTML = "http://www.w3.org/1999/xhtml"
EMPTY_REASON = "http://terminology.hl7.org/CodeSystem/list-empty-reason"
AUTHOR = "Shared care record gateway (a summary of partners' records)"
#: sections whose emptiness is a finding ("none recorded"), not just prose
FACT_SECTIONS = frozenset({"cpr", "respect", "places", "legal", "contacts", "team", "alerts"})


def _issue_text(facts: Facts) -> str:
    if between_partners(facts.cpr):
        return "Partners hold different current CPR decisions"
    # one partner's decisions the dates cannot order, or decisions whose recorder is not
    # on the record: "partners" would say more than is known
    return "The shared record holds different current CPR decisions"


def detected_issue(facts: Facts, *, identified: str,
                   base_url: str = "") -> dict[str, Any] | None:
    """The SCR-DetectedIssue for partners whose current CPR decisions differ, else None."""
    if not facts.conflict:
        return None
    from .words import conflict_detail

    versions = sorted(f"{f.ref}/_history/{(f.resource.get('meta') or {}).get('versionId')}"
                      for f in facts.cpr)
    issue_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "emergency-summary/cpr-conflict/"
                              + "|".join(versions)))
    return {
        "resourceType": "DetectedIssue",
        "id": issue_id,
        "meta": {"profile": [t.DETECTED_ISSUE_PROFILE]},
        "status": "preliminary",
        "code": {"coding": [{"system": t.DETECTED_ISSUE_TYPE, "code": "partner-conflict",
                             "display": "Partners disagree"}],
                 "text": _issue_text(facts)},
        "severity": "high",
        "patient": {"reference": _full_url(base_url, f"Patient/{facts.patient['id']}")},
        "identifiedDateTime": identified,
        "implicated": [{"reference": _full_url(base_url, f.ref)} for f in facts.cpr],
        "detail": conflict_detail(facts.cpr),
    }


def bundle(facts: Facts, sections: list[Section], *, base_url: str, generated: str) -> str:
    """The document Bundle as JSON text. Stored resources go in as the store holds their
    text (what a read returns), not decoded and encoded again."""
    patient = facts.patient
    composition_id = str(uuid.uuid4())
    issue = detected_issue(facts, identified=generated, base_url=base_url)
    composition: dict[str, Any] = {
        "resourceType": "Composition",
        "id": composition_id,
        "text": {"status": "generated", "div": _div(_headline(sections))},
        "status": "final",
        "type": {"coding": [dict(t.SUMMARY_TYPE)], "text": "Emergency care summary"},
        "subject": {"reference": _full_url(base_url, f"Patient/{patient['id']}"),
                    "display": patient_name(patient, facts.today)},
        "date": generated,
        "author": [{"display": AUTHOR}],
        "title": "Emergency care summary",
        "section": [_section(s, issue, base_url) for s in sections],
    }
    entries = [_entry(f"urn:uuid:{composition_id}", jsonio.dumps_generated(composition))]
    seen: set[str] = set()

    def add(resource: dict[str, Any]) -> None:
        ref = f"{resource['resourceType']}/{resource['id']}"
        if ref not in seen:
            seen.add(ref)
            body = facts.bodies.get(ref) or jsonio.dumps(resource)
            entries.append(_entry(_full_url(base_url, ref), body))

    add(patient)
    if issue is not None:
        entries.append(_entry(f"urn:uuid:{issue['id']}", jsonio.dumps_generated(issue)))
    cited = facts.cited()
    for fact in cited:
        add(fact.resource)
    for source in (facts.patient_source, *(f.source for f in cited)):
        if source.provenance is not None:
            add(source.provenance)
    bundle_id = str(uuid.uuid4())
    head = jsonio.dumps_generated({"resourceType": "Bundle", "id": bundle_id,
                         "identifier": {"system": "urn:ietf:rfc:3986",
                                        "value": f"urn:uuid:{bundle_id}"},
                         "type": "document", "timestamp": generated})
    return f'{head[:-1]},"entry":[{",".join(entries)}]}}'


def _entry(full_url: str, resource_json: str) -> str:
    return f'{{"fullUrl":{jsonio.dumps_generated(full_url)},"resource":{resource_json}}}'


def _section(section: Section, issue: dict[str, Any] | None,
             base_url: str) -> dict[str, Any]:
    out: dict[str, Any] = {"title": section.title,
                           "text": {"status": "generated", "div": _div(_body(section))}}
    refs = [{"reference": _full_url(base_url, r)} for r in section.refs]
    if section.key == "conflict" and issue is not None:
        refs.insert(0, {"reference": f"urn:uuid:{issue['id']}"})
    if refs:
        out["entry"] = refs
    elif section.key in FACT_SECTIONS:
        # "Nil Known" only when the whole record was read: cut off, what a machine reads
        # must not say the opposite of the warning a person reads
        code, display = ("nilknown", "Nil Known") if section.read_all \
            else ("unavailable", "Unavailable")
        out["emptyReason"] = {"coding": [{"system": EMPTY_REASON, "code": code,
                                          "display": display}],
                              "text": section.empty}
    return out


def _headline(sections: list[Section]) -> str:
    parts = list(dict.fromkeys(f"<p><b>{_e(s.headline)}</b></p>" for s in sections
                               if s.headline))
    cpr = next((s for s in sections if s.key == "cpr"), None)
    if cpr is not None:
        parts += [f"<p>{_e(n)}</p>" for n in cpr.notes]
    return "".join(parts)


def _body(section: Section) -> str:
    parts = []
    if section.headline:
        parts.append(f"<p><b>{_e(section.headline)}</b></p>")
    if section.items:
        lis = []
        for i in section.items:
            head = " - ".join(_e(x) for x in (i.text, i.when, i.status) if x)
            lines = [f"<b>{head}</b>", *(_e(d) for d in i.details),
                     f"Source: {_e(i.source)}" if i.source else ""]
            lis.append("<li>" + "<br/>".join(x for x in lines if x) + "</li>")
        parts.append("<ul>" + "".join(lis) + "</ul>")
    elif section.empty:
        parts.append(f"<p>{_e(section.empty)}</p>")
    parts += [f"<p>{_e(n)}</p>" for n in section.notes]
    return "".join(parts)


def _div(inner: str) -> str:
    return f'<div xmlns="{XHTML}">{inner or "<p>-</p>"}</div>'


def _e(text: str) -> str:
    return t.escaped(text)


def _full_url(base_url: str, ref: str) -> str:
    return f"{base_url}/{ref}" if base_url else ref
