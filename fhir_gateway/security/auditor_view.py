"""What an auditor sees of a Provenance: who, when, which record, what kind of activity
and why, in codes and references; never text.

Auditors see no clinical content (DOMAIN.md), and a Provenance a feed writes can carry
text anywhere: a narrative, contained resources, a coding's display, a reference's
display, an extension. Refusing each at write time would never be complete, so the
auditor's answer keeps only the elements that say who did what to which record, and is
tagged SUBSETTED, as R4 requires of a resource with elements left out.
"""

from __future__ import annotations

from typing import Any

from .. import jsonio
from ..fhir.request import FhirResponse
from ..fhir.subsetting import SUBSETTED


def for_auditor(response: FhirResponse) -> None:
    """Reduce every Provenance in `response` (a read, or any Bundle of them) in place."""
    if response.raw is not None and response.media_type is None:
        if '"Provenance"' not in response.raw:
            return
        response.resource, response.raw = jsonio.loads_trusted(response.raw), None
    if isinstance(response.resource, dict):
        response.resource = _reduced(response.resource)


def _reduced(resource: dict[str, Any]) -> dict[str, Any]:
    if resource.get("resourceType") == "Provenance":
        return provenance_for_auditor(resource)
    if resource.get("resourceType") == "Bundle" and isinstance(resource.get("entry"), list):
        entries = []
        for entry in resource["entry"]:
            if isinstance(entry, dict):
                entry = dict(entry)
                if isinstance(entry.get("resource"), dict):
                    entry["resource"] = _reduced(entry["resource"])
                response = entry.get("response")
                if isinstance(response, dict) and isinstance(response.get("outcome"), dict):
                    entry["response"] = {**response, "outcome": _reduced(response["outcome"])}
            entries.append(entry)
        return {**resource, "entry": entries}
    return resource


def provenance_for_auditor(p: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: p[k] for k in ("resourceType", "id", "recorded",
                                             "occurredDateTime", "policy") if k in p}
    out["meta"] = _meta(p.get("meta"))
    if isinstance(p.get("occurredPeriod"), dict):
        out["occurredPeriod"] = {k: v for k, v in p["occurredPeriod"].items()
                                 if k in ("start", "end")}
    _put(out, "target", [_reference(r) for r in _items(p.get("target"))])
    _put(out, "location", _reference(p.get("location")))
    _put(out, "reason", [_concept(c) for c in _items(p.get("reason"))])
    _put(out, "activity", _concept(p.get("activity")))
    _put(out, "agent", [_agent(a) for a in _items(p.get("agent"))])
    _put(out, "entity", [_entity(e) for e in _items(p.get("entity"))])
    return out


def _meta(meta: Any) -> dict[str, Any]:
    """Version, time, profiles, and labels as codes; the tag SUBSETTED once."""
    meta = meta if isinstance(meta, dict) else {}
    out: dict[str, Any] = {k: meta[k] for k in ("versionId", "lastUpdated", "source")
                           if isinstance(meta.get(k), str)}
    if isinstance(meta.get("profile"), list):
        out["profile"] = [x for x in meta["profile"] if isinstance(x, str)]
    for key in ("security", "tag"):
        codes = [_code(c) for c in _items(meta.get(key)) if isinstance(c, dict)]
        _put(out, key, codes)
    if not any(t.get("system") == SUBSETTED["system"] and t.get("code") == SUBSETTED["code"]
               for t in out.get("tag", [])):
        out["tag"] = [*out.get("tag", []), SUBSETTED]
    return out


def _code(c: dict[str, Any]) -> dict[str, Any]:
    return {k: c[k] for k in ("system", "version", "code") if isinstance(c.get(k), str)}


def _agent(a: Any) -> dict[str, Any] | None:
    if not isinstance(a, dict):
        return None
    out: dict[str, Any] = {}
    _put(out, "type", _concept(a.get("type")))
    _put(out, "role", [_concept(c) for c in _items(a.get("role"))])
    _put(out, "who", _reference(a.get("who")))
    _put(out, "onBehalfOf", _reference(a.get("onBehalfOf")))
    return out or None


def _entity(e: Any) -> dict[str, Any] | None:
    if not isinstance(e, dict):
        return None
    out: dict[str, Any] = {k: e[k] for k in ("role",) if isinstance(e.get(k), str)}
    _put(out, "what", _reference(e.get("what")))
    _put(out, "agent", [_agent(a) for a in _items(e.get("agent"))])
    return out or None


def _reference(r: Any) -> dict[str, Any] | None:
    if not isinstance(r, dict):
        return None
    out: dict[str, Any] = {k: r[k] for k in ("reference", "type") if isinstance(r.get(k), str)}
    ident = r.get("identifier")
    if isinstance(ident, dict):
        kept = {k: ident[k] for k in ("system", "value", "use") if isinstance(ident.get(k), str)}
        if kept:
            out["identifier"] = kept
    return out or None


def _concept(c: Any) -> dict[str, Any] | None:
    if not isinstance(c, dict):
        return None
    codings = [_code(x) for x in _items(c.get("coding")) if isinstance(x, dict)]
    codings = [x for x in codings if x]
    return {"coding": codings} if codings else None


def _items(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    if isinstance(value, list):
        value = [v for v in value if v]
    if value:
        out[key] = value
