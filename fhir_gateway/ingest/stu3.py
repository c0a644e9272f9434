"""FHIR STU3 Bundle reader: one `SourceRecord` per entry, its resource converted to R4.

Each entry's resource is checked with the fhir.resources STU3 model, then converted to R4
by the tables below (renamed elements, changed codes, moved code system URLs). A record's
fields are `resource` (the R4 dict), `patient` (the R4 Patient the resource is about: its
subject/patient, or itself), `fullUrl` and `entry` (its number, from 1). References
between entries of the Bundle are rewritten from the entry's fullUrl to `Type/id`.

Date-times with a time but no offset ("2026-01-27T09:47", which STU3 forbids as R4 does)
are read as local time in the mapping's time zone and completed before the check, so a
sender's omission is repaired openly rather than the whole Bundle rejected.

An entry that fails the STU3 check (or whose Patient does) is `Unreadable`, naming the
element; the other entries are still read. A file that is not a Bundle is one `Unreadable`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fhir.resources.STU3 import get_fhir_model_class
from pydantic import ValidationError

from .. import jsonio
from ..errors import BadRequest
from ..references import literal_reference
from .jsonlines import JsonRecord, parse_path
from .source import ReaderOptions, ReadResult, Unreadable
from .values import parse_datetime

check_path = parse_path

# --- STU3 -> R4, as data -----------------------------------------------------------------

#: Elements renamed (or re-typed) between STU3 and R4, per resource type and path.
#: "@canonical" turns STU3 `definition` references into R4 instantiatesCanonical (a FHIR
#: resource) or instantiatesUri (anything else).
#: "@encounter": STU3's `context` (an Encounter or an EpisodeOfCare) is R4's `encounter`
#: (an Encounter only); a context naming an EpisodeOfCare goes to the cross-version
#: extension, never into `encounter`, where an Encounter with the same id would be linked.
RENAMED: dict[str, dict[str, str]] = {
    "CarePlan": {"context": "@encounter", "definition": "@canonical"},
    # "do not admit": STU3's prohibited is R4's doNotPerform (same meaning, renamed)
    "CarePlan.activity.detail": {"definition": "@canonical", "prohibited": "doNotPerform",
                                 # a string in STU3, a CodeableConcept in R4
                                 "statusReason": "@text",
                                 # gone in R4: kept in FHIR's cross-version extension
                                 "category": "@extension"},
    "Observation": {"context": "@encounter"},
    "Condition": {"context": "@encounter"},
    "Procedure": {"context": "@encounter", "definition": "@canonical"},
    "DiagnosticReport": {"context": "@encounter"},
    "MedicationRequest": {"context": "@encounter"},
    "Encounter": {"incomingReferral": "basedOn", "reason": "reasonCode"},
}

#: FHIR's extension URL for an STU3 element R4 dropped (+ "CarePlan.activity.detail....")
CROSS_VERSION = "http://hl7.org/fhir/3.0/StructureDefinition/extension-"

#: Codes whose meaning moved (STU3 code -> R4 code), per resource type and element.
RECODED: dict[tuple[str, str], dict[str, str]] = {
    ("CarePlan", "status"): {"suspended": "on-hold", "cancelled": "revoked"},
    ("Procedure", "status"): {"suspended": "on-hold", "aborted": "stopped"},
}

#: Code systems that left hl7.org/fhir for terminology.hl7.org in R4 (beyond v2/v3).
MOVED_SYSTEMS: dict[str, str] = {
    f"http://hl7.org/fhir/{name}": f"http://terminology.hl7.org/CodeSystem/{name}"
    for name in (
        "observation-category", "condition-clinical", "condition-ver-status",
        "condition-category", "allergy-intolerance-clinical", "encounter-special-arrangements",
        "discharge-disposition", "admit-source", "diet", "consentcategorycodes",
        "consentscope", "consentaction", "flag-category", "care-plan-activity-category",
        "medication-request-category", "allergyintolerance-clinical",
    )
}
_V3 = re.compile(r"http://hl7\.org/fhir/v3/(.+)")
_V2 = re.compile(r"http://hl7\.org/fhir/v2/(\d{4})")
_LOCAL_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?")


def r4_system(url: str) -> str:
    """The R4 URL of an STU3 code system URL (unchanged when it did not move)."""
    m = _V3.fullmatch(url)
    if m:
        return f"http://terminology.hl7.org/CodeSystem/v3-{m[1]}"
    m = _V2.fullmatch(url)
    if m:
        return f"http://terminology.hl7.org/CodeSystem/v2-{m[1]}"
    return MOVED_SYSTEMS.get(url, url)


def _canonical(value: Any) -> tuple[str, list[str]]:
    refs = value if isinstance(value, list) else [value]
    urls = [r.get("reference") for r in refs if isinstance(r, dict) and r.get("reference")]
    fhir = all(_names_resource(u) for u in urls)
    return ("instantiatesCanonical" if fhir else "instantiatesUri"), urls


def _names_resource(url: str) -> bool:
    """`Type/id`, or an http(s) URL ending so: a canonical, not a bare URI."""
    named = literal_reference(url)
    return named is not None and named.version is None and named.has_fhir_id \
        and (named.base is None or re.fullmatch(r"https?://\S+", named.base) is not None)


def _names_episode(reference: Any) -> bool:
    """Whether an STU3 Reference points to an EpisodeOfCare (by type or by its URL)."""
    if not isinstance(reference, dict):
        return False
    named = literal_reference(reference.get("reference"))
    return "EpisodeOfCare" in (reference.get("type"), named and named.type)


def _convert(node: Any, path: str) -> Any:
    if isinstance(node, list):
        return [_convert(item, path) for item in node]
    if not isinstance(node, dict):
        return node
    renames = RENAMED.get(path, {})
    out: dict[str, Any] = {}
    for key, value in node.items():
        child = f"{path}.{key}"
        target = renames.get(key, key)
        if target == "@canonical":
            name, urls = _canonical(value)
            out.setdefault(name, []).extend(urls)
            continue
        if target == "@text":
            out[key] = {"text": value} if isinstance(value, str) else _convert(value, child)
            continue
        if target == "@encounter":
            if _names_episode(value):
                out.setdefault("extension", []).append({
                    "url": f"{CROSS_VERSION}{child}", "valueReference": value})
            else:
                out["encounter"] = _convert(value, child)
            continue
        if target == "@extension":
            # R4's rule for an element another version has and R4 has not (R4 2.6.2.3)
            out.setdefault("extension", []).append({
                "url": f"{CROSS_VERSION}{child}",
                "valueCodeableConcept": _convert(value, child)})
            continue
        converted = _convert(value, child)
        if key == "system" and isinstance(converted, str):
            converted = r4_system(converted)
        recode = RECODED.get((path, key))
        if recode and isinstance(converted, str):
            converted = recode.get(converted, converted)
        head, _, rest = target.partition(".")
        if rest:
            out.setdefault(head, {})[rest] = converted
        else:
            out[target] = converted
    return out


def to_r4(resource: dict[str, Any]) -> dict[str, Any]:
    """An STU3 resource dict converted to R4 (a new dict)."""
    return _convert(resource, str(resource.get("resourceType")))


# --- reading -----------------------------------------------------------------------------


def _complete_local_datetimes(node: Any, tz: str) -> Any:
    if isinstance(node, dict):
        return {k: _complete_local_datetimes(v, tz) for k, v in node.items()}
    if isinstance(node, list):
        return [_complete_local_datetimes(v, tz) for v in node]
    if isinstance(node, str) and _LOCAL_DATETIME.fullmatch(node):
        return parse_datetime(node, tz=tz)
    return node


def _stu3_problem(resource: Any) -> tuple[str, str] | None:
    """(element, problem) when `resource` is not a valid STU3 resource, else None."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        return "resource", "is not a FHIR resource (no resourceType)"
    rtype = resource["resourceType"]
    try:
        model = get_fhir_model_class(rtype)
    except (KeyError, ValueError, AttributeError, ImportError):
        return "resourceType", f"{rtype!r} is not an STU3 resource type"
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        return f"{rtype}.{where}".rstrip("."), f"{err.get('msg', 'invalid')}{more}"
    except (ValueError, TypeError) as exc:
        return rtype, str(exc)
    return None


#: One entry, read like a JSON Lines record (its fields by path)
BundleEntry = JsonRecord


def _subject_patient(subject: Any, resource: dict[str, Any],
                     patients: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The Patient an entry is about: a Patient entry named by its fullUrl (an absolute
    URL or urn:uuid) or by `Patient/id`; a contained Patient (`#id`); or, for a reference
    by identifier
    only, a Patient holding just that identifier (the NHS number or the trust's own id,
    which identity resolves like any other)."""
    if not isinstance(subject, dict):
        return None
    ref = subject.get("reference")
    if isinstance(ref, str):
        if ref.startswith("#"):
            return next((c for c in resource.get("contained") or [] if isinstance(c, dict)
                         and c.get("resourceType") == "Patient" and c.get("id") == ref[1:]),
                        None)
        if ref in patients:
            return patients[ref]
        named = literal_reference(ref)
        if ":" in ref:  # absolute: R4 resolves it by an entry's fullUrl alone (a version
            # dropped), else it is another server's Patient, whatever its id (3.3.1.4.1)
            return patients.get(named.unversioned if named else ref)
        if named is not None and named.type == "Patient":  # Patient/id/_history/v
            return patients.get(f"Patient/{named.id}")
        return None
    ident = subject.get("identifier")
    if isinstance(ident, dict) and ident.get("system") and ident.get("value"):
        return {"resourceType": "Patient", "identifier": [ident]}
    return None


def _rewrite_refs(node: Any, targets: dict[str, str], base: str | None = None) -> Any:
    """References to entries of the Bundle rewritten `Type/id`: by fullUrl or `Type/id`,
    a version dropped first (R4 3.3.1.4.1), so `.../Encounter/E0/_history/1` names the
    entry E0 and is not taken for another server's. Any other relative reference in an
    entry whose fullUrl is a server's URL is that server's (`base`), made absolute: in an
    entry of another server, `Encounter/E0` is not this partner's E0."""
    if isinstance(node, dict):
        out = {k: _rewrite_refs(v, targets, base) for k, v in node.items()}
        ref = out.get("reference")
        if isinstance(ref, str):
            named = literal_reference(ref)
            if base is not None and named is not None and named.relative:
                ref = f"{base}/{ref.strip()}"  # found only by an entry's fullUrl
                named = literal_reference(ref)
                out["reference"] = ref
            target = targets.get(ref) or targets.get(ref.strip()) or (
                targets.get(named.unversioned) if named is not None else None)
            if target is not None:
                out["reference"] = target
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, targets, base) for v in node]
    return node


def _server_base(full_url: Any) -> str | None:
    """The server base of an entry's RESTful fullUrl (`https://x/fhir/CarePlan/1`), else
    None (a urn:uuid, or none)."""
    named = literal_reference(full_url) if isinstance(full_url, str) else None
    if named is None or named.base is None or "://" not in named.base:
        return None
    return named.base


def read(data: bytes, options: ReaderOptions) -> ReadResult:
    text = data.decode("utf-8", errors="replace")
    try:
        bundle = jsonio.parse(data, where="the file")
    except BadRequest as exc:
        yield Unreadable("file", text, "Bundle", str(exc))
        return
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        yield Unreadable("file", text, "Bundle", "is not a FHIR Bundle")
        return
    entries = bundle.get("entry", [])  # none at all: an empty Bundle (R4 JSON has no [])
    if not isinstance(entries, list):
        yield Unreadable("file", text, "Bundle.entry", "the Bundle has no list of entries")
        return
    yield from _entries(entries, options)


def _entries(entries: list[Any], options: ReaderOptions) -> Iterator[BundleEntry | Unreadable]:
    checked: list[tuple[str, str, dict[str, Any] | None, tuple[str, str] | None]] = []
    targets: dict[str, str] = {}  # fullUrl or Type/id -> Type/id
    broken: set[str] = set()  # Type/id of entries that failed the check
    for number, entry in enumerate(entries, start=1):
        raw = jsonio.dumps(entry)
        resource = entry.get("resource") if isinstance(entry, dict) else None
        problem: tuple[str, str] | None = None
        if isinstance(resource, dict):
            try:  # builds a new tree: the parsed Bundle is left as it was
                resource = _complete_local_datetimes(resource, options.timezone)
            except (ValueError, OverflowError) as exc:  # this entry only, not the Bundle
                problem = ("resource", f"has a date-time that is not valid: {exc}")
        problem = problem or _stu3_problem(resource)
        checked.append((f"entry {number}", raw, resource, problem))
        if isinstance(resource, dict) and isinstance(resource.get("id"), str):
            local = f"{resource.get('resourceType')}/{resource['id']}"
            targets[local] = local
            if isinstance(entry.get("fullUrl"), str):
                targets[entry["fullUrl"]] = local
            if problem is not None:
                broken.add(local)
        elif isinstance(entry, dict) and isinstance(entry.get("fullUrl"), str) \
                and problem is not None:
            broken.add(entry["fullUrl"])  # an entry without an id is known by its fullUrl
    converted = {
        i: to_r4(_rewrite_refs(res, targets, _server_base(
            entries[i].get("fullUrl") if isinstance(entries[i], dict) else None)))
        for i, (_, _, res, problem) in enumerate(checked)
        if res is not None and problem is None
    }
    patients: dict[str, dict[str, Any]] = {}
    for i, r in converted.items():
        if r.get("resourceType") == "Patient":
            if r.get("id"):
                patients[f"Patient/{r['id']}"] = r
            full_url = entries[i].get("fullUrl") if isinstance(entries[i], dict) else None
            if isinstance(full_url, str):
                patients.setdefault(full_url, r)  # (an entry without an id: by its fullUrl)
    for i, (position, raw, _, problem) in enumerate(checked):
        if problem is not None:
            yield Unreadable(position, raw, problem[0], problem[1])
            continue
        resource = converted[i]
        patient: dict[str, Any] | None = resource
        if resource.get("resourceType") != "Patient":
            subject = resource.get("subject") if "subject" in resource \
                else resource.get("patient")
            ref = subject.get("reference") if isinstance(subject, dict) else None
            if ref in broken:
                yield Unreadable(position, raw, "subject", f"its Patient ({ref}) is not valid, "
                                 "so whom it is about is unknown")
                continue
            patient = _subject_patient(subject, resource, patients)
            if patient is None and isinstance(ref, str):
                yield Unreadable(position, raw, "subject", f"names {ref!r}, which is neither "
                                 "a Patient entry of this Bundle (by fullUrl or Patient/id) "
                                 "nor a contained Patient, so whom it is about is unknown")
                continue
        fields = {"resource": resource, "patient": patient,
                  "fullUrl": entries[i].get("fullUrl"), "entry": i + 1}
        yield BundleEntry(position, raw, fields)
