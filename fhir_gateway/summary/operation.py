"""`$emergency-summary` (INTERFACE.md): the entry the router calls. No HTTP framework here.

    GET Patient/$emergency-summary?identifier=https://fhir.nhs.uk/Id/nhs-number|NNNNNNNNNN
    GET Patient/{id}/$emergency-summary

`Accept: text/html` (preferred over FHIR JSON) gives the printable page; anything else the
FHIR `document` Bundle. Both come from the same facts and sentences.

Scopes: an authenticated caller whose token's scopes cannot read every type the summary
uses (`facts.READ_TYPES`) is refused, 403, naming the scopes it needs. Scopes are the
client's configuration, not the patient's wish: a summary made without, say, Provenance or
Consent would look complete while hiding who recorded a decision or a DNACPR directive.
(Consent hiding a record is different: that is the patient's wish, and break-glass exists.)

The person: by NHS number (ten digits, spaces allowed, Modulus 11 checked: 400 naming the
problem) or by id; 404 when unknown and, in the same words, when this caller may not see
them (consent): "not there" and "not for you" look alike. A Patient merged into another
(`link` replaced-by) is summarised as the record it was merged into, and the summary says
so first. An A40 merge takes the NHS number off the merged-away Patient (two Patients must
never hold one), so an NHS number no Patient holds is looked up in the pipeline's claim on
it (`person-nhs`): when that names a merged-away Patient, its survivor is summarised.
Every resource read goes through `visible` (the interceptors' `can_see`), so role, consent
and break-glass apply resource by resource, and the audit interceptor sees whose record
was shown.

A page request that fails (400, 404, 409, or 500 for an unexpected error) gets a page
saying why, with the same status; a JSON request gets the OperationOutcome.
"""

from __future__ import annotations

import logging
from datetime import date, datetime
from typing import Any

from .. import jsonio
from ..auth.scopes import Scopes
from ..errors import BadRequest, Conflict, GatewayError, Gone, NotFound
from ..fhir.interactions import FhirContext, read_visible, require_id, visible
from ..fhir.repository import unknown as not_known
from ..fhir.request import FhirRequest, FhirResponse
from ..pipeline.identity import MAX_MERGE_HOPS, claimed_patient, merge_links, replaced_by
from ..search.values import now_instant
from ..security.errors import Forbidden
from ..store.base import StoredVersion
from ..store.query import Criterion, IndexQuery, TokenPredicate
from ..validation import is_placeholder_nhs_number, is_valid_nhs_number
from . import document, html
from . import terms as t
from .facts import READ_TYPES, gather
from .terms import LONDON
from .words import sections

log = logging.getLogger("fhir_gateway.summary")
#: matches read for one NHS number (more than one is refused, never guessed between)
MAX_MATCHES = 5
#: merges followed from a merged-away record to the one that holds its facts now
_PASSIVE = frozenset({"_format", "_pretty"})
_HTML = ("text/html", "application/xhtml+xml")
_PAGE_FORMATS = frozenset({"html", *_HTML})
_JSON = ("application/fhir+json", "application/json", "application/json+fhir")


def emergency_summary(ctx: FhirContext, req: FhirRequest, rtype: str, rid: str | None = None,
                      *, today: date | None = None, now: str | None = None) -> FhirResponse:
    """The summary of one Patient. `today` (Europe/London) decides which review dates
    have passed; `now` stamps the document; both default to the clock."""
    page = wants_page(next((v for k, v in req.params if k == "_format"), None),
                      req.header("accept"))
    try:
        if rtype != "Patient":
            raise NotFound(f"$emergency-summary is an operation on Patient, not {rtype}")
        require_scopes(req)
        if ctx.session is not None:
            return _summary(ctx, req, rid, page, today, now)
        # One read transaction: the person, their facts and the Provenance of each come
        # from one snapshot of the store, whatever partners write meanwhile.
        with ctx.repository.engine.session(write=False) as session:
            return _summary(FhirContext(ctx.repository, ctx.interceptors, session=session),
                            req, rid, page, today, now)
    except GatewayError as exc:
        if not page:
            raise
        return error_page(exc)
    except Exception:
        if not page:
            raise  # the HTTP edge answers it as a FHIR OperationOutcome (500)
        # a crew's browser gets a page saying the summary failed, not JSON it cannot read
        log.exception("emergency summary failed (request %s)", req.request_id)
        return error_page(GatewayError(
            "the emergency summary could not be made because of an internal error"
            + (f"; quote request id {req.request_id}" if req.request_id else "")
            + ". Use the patient's own forms and ask their clinicians."))


def error_page(exc: GatewayError) -> FhirResponse:
    """A refused page request's answer: a page saying why, with the error's status and
    headers (WWW-Authenticate too). Also used by the HTTP edge for refusals that come
    before the operation runs (no token, wrong role)."""
    return FhirResponse(exc.status, raw=html.error_page(exc.status, exc.diagnostics),
                        headers={**exc.headers, **html.HEADERS}, media_type=html.MEDIA_TYPE)


def _summary(ctx: FhirContext, req: FhirRequest, rid: str | None, page: bool,
             today: date | None, now: str | None) -> FhirResponse:
    patient, body, found_as = find_patient(ctx, req, rid)
    generated = now or now_instant()
    facts = gather(ctx, req, patient, today=today or datetime.now(LONDON).date())
    facts.found_as = found_as
    facts.bodies.setdefault(f"Patient/{patient['id']}", body)
    said = sections(facts, generated=generated)
    if page:
        return FhirResponse(200, raw=html.page(said, patient, facts.today),
                            headers=dict(html.HEADERS), media_type=html.MEDIA_TYPE)
    return FhirResponse(200, raw=document.bundle(facts, said, base_url=req.base_url,
                                                 generated=generated),
                        headers={"Cache-Control": "no-store"})


def require_scopes(req: FhirRequest) -> None:
    """Refuse (403) a caller whose scopes cannot read every type the summary uses: what
    they would hide (a partner's decision, its source, a DNACPR directive) would leave a
    summary that looks complete and is wrong. Without a caller (auth off) there are no
    scopes to judge."""
    caller = req.caller
    if caller.role is None:
        return
    granted = Scopes.parse(" ".join(sorted(caller.scopes)))
    # read or search opens a type to `can_see`: the same test, so exactly what would be
    # hidden is refused
    missing = [rtype for rtype in READ_TYPES if not granted.actions(rtype) & {"r", "s"}]
    if missing:
        raise Forbidden(
            "the emergency summary reads " + ", ".join(READ_TYPES) + "; this token's "
            "scopes do not allow reading " + ", ".join(missing) + ", so a CPR decision, "
            "a DNACPR directive or who recorded it could be hidden. Ask for system/*.rs, "
            "or add " + " ".join(f"system/{rtype}.rs" for rtype in missing))


def wants_page(fmt: str | None, accept: str | None) -> bool:
    """Whether to answer with the printable page: `_format` decides when it is given (it
    overrides Accept, R4 3.1.0.1.10: `html` or an HTML media type), else `Accept`."""
    if fmt is not None:  # a media type's parameters (charset) do not change the format
        return fmt.split(";")[0].strip().lower() in _PAGE_FORMATS
    return prefers_html(accept)


def prefers_html(accept: str | None) -> bool:
    """Whether `Accept` ranks an HTML type above every FHIR JSON type (RFC 9110 12.5.1;
    `*/*` counts for JSON, the FHIR default)."""
    if not accept:
        return False
    best = {"html": 0.0, "json": 0.0}
    for part in accept.split(","):
        kind, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for p in params:
            name, _, value = p.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        kind = kind.lower()
        if kind in _HTML:
            best["html"] = max(best["html"], q)
        elif kind in _JSON or kind in ("*/*", "application/*"):
            best["json"] = max(best["json"], q)
    return best["html"] > 0 and best["html"] > best["json"]


def find_patient(ctx: FhirContext, req: FhirRequest,
                 rid: str | None) -> tuple[dict[str, Any], str, str | None]:
    """The Patient asked for (by id, or by the `identifier` NHS number), its stored text,
    and, when it is the survivor of a merge rather than the record asked for, a sentence
    saying so; 404 when unknown or not visible to this caller, in the same words."""
    if rid is not None:
        _no_params(req, set())
        unknown = not_known("Patient", rid)
        # 404 (or 410, only to a caller who could see what was deleted) unless visible
        stored = read_visible(ctx, req, "Patient", require_id(rid))
        found = [(jsonio.loads_trusted(stored.body or "{}"), stored)]
        asked = f"Patient/{rid}"
    else:
        nhs = nhs_number(req)
        unknown = NotFound(f"no record is known for NHS number {t.spaced(nhs)}",
                           expression="identifier")
        query = IndexQuery(rtype="Patient", criteria=[Criterion(
            "identifier", "token", [TokenPredicate(t.NHS_NUMBER_SYSTEM, nhs)])],
            limit=MAX_MATCHES)
        found = [(p, row) for row in ctx.repository.find(query, session=ctx.session).rows
                 if (p := visible(ctx, req, row)) is not None]
        if not found:
            found = _merged_away(ctx, req, nhs)
        if not found:
            raise unknown
        if len(found) > 1:
            # a merged-away record that kept the number and its survivor are one person
            survivors = {(m[0]["id"] if m is not None else p["id"]): (p, row)
                         for p, row in found for m in [_merged_into(ctx, req, p, row)]}
            found = list(survivors.values()) if len(survivors) == 1 else found
        if len(found) > 1:
            raise Conflict(f"{len(found)} records hold NHS number {t.spaced(nhs)}; the "
                           "summary will not choose between them: ask for them to be merged",
                           expression="identifier")
        asked = f"NHS number {t.spaced(nhs)}"
    shown = _merged_into(ctx, req, *found[0])
    if shown is None:  # merged into a record this caller may not see (or never there)
        raise unknown
    patient, stored = shown
    found_as = None
    if patient["id"] != found[0][0]["id"]:
        found_as = (f"Found by {asked}, which was merged into this record "
                    f"({_known_as(patient)}): this is the surviving record, holding what "
                    "partners recorded under both.")
    return patient, stored.body or "", found_as


def nhs_number(req: FhirRequest) -> str:
    """The NHS number of `identifier=system|NNNNNNNNNN`, checked (400 naming the problem)."""
    _no_params(req, {"identifier"})
    values = [v for k, v in req.params if k == "identifier"]
    example = f"identifier={t.NHS_NUMBER_SYSTEM}|NNNNNNNNNN"
    if len(values) != 1:
        raise BadRequest(f"give exactly one NHS number: {example}", expression="identifier")
    system, bar, value = values[0].rpartition("|")
    if bar and system != t.NHS_NUMBER_SYSTEM:
        raise BadRequest(f"the identifier must be an NHS number ({example}), not "
                         f"{system[:100]!r}", expression="identifier")
    digits = value.replace(" ", "")
    if len(digits) != 10 or not digits.isascii() or not digits.isdigit():
        raise BadRequest(f"NHS number {value[:40]!r} is not ten digits", expression="identifier")
    if not is_valid_nhs_number(digits):
        raise BadRequest(f"NHS number {t.spaced(digits)} is not valid: its check digit "
                         "(Modulus 11) is wrong; check the number", expression="identifier")
    if is_placeholder_nhs_number(digits):
        raise BadRequest(f"{t.spaced(digits)} is a placeholder, not an NHS number; check the "
                         "number", expression="identifier")
    return digits


def _no_params(req: FhirRequest, allowed: set[str]) -> None:
    unknown = sorted({k for k, _ in req.params} - allowed - _PASSIVE)
    if unknown:
        takes = ", ".join(sorted(allowed)) or "no parameters"
        raise BadRequest(f"$emergency-summary takes {takes}; not {', '.join(unknown)}",
                         code="not-supported")


def _merged_into(ctx: FhirContext, req: FhirRequest, patient: dict[str, Any],
                 stored: StoredVersion) -> tuple[dict[str, Any], StoredVersion] | None:
    """The Patient `patient` was last merged into (A into B, then B into C: C), else
    `patient` itself; None when the chain leads to one this caller may not see or that
    was never there (the two look the same). A merged-away record is never summarised in
    its place: its facts moved on, so it would say "no plan recorded" about a person who
    has one. A chain this caller can see to be broken (round in a circle, longer than any
    merge makes, into a deletion) is a 409 saying so: a crew told "no record is known"
    would take it for a person with no plan."""
    first = patient["id"]
    seen = [first]
    while (survivor_id := replaced_by(patient)) is not None or merge_links(patient):
        if survivor_id is None:
            # merged into a record named some other way (an absolute URL, an identifier),
            # which ingestion does not follow either: never summarised in its place, and
            # never "not known"
            raise Conflict(f"Patient/{patient['id']} was merged into "
                           f"{merge_links(patient)[0][:200]}, which this gateway cannot "
                           "follow: ask for the record it was merged into")
        if survivor_id in seen or len(seen) > MAX_MERGE_HOPS:
            path = " -> ".join(f"Patient/{rid}" for rid in [*seen, survivor_id][:4])
            raise Conflict(f"Patient/{first} was merged, but its merge links "
                           + ("lead round in a circle" if survivor_id in seen else
                              f"run past {MAX_MERGE_HOPS} merges")
                           + f" ({path}{' ...' if len(seen) > 3 else ''}): the record "
                           "they lead to cannot be found; ask for the links to be repaired")
        try:
            stored = read_visible(ctx, req, "Patient", survivor_id)
        except Gone:  # raised only to a caller who may know the survivor was there
            raise Conflict(f"Patient/{patient['id']} was merged into "
                           f"Patient/{survivor_id}, which has since been deleted: the "
                           "record cannot be summarised; ask for the merge to be "
                           "repaired") from None
        except GatewayError:
            return None
        seen.append(survivor_id)
        patient = jsonio.loads_trusted(stored.body or "{}")
    return patient, stored


def _merged_away(ctx: FhirContext, req: FhirRequest,
                 nhs: str) -> list[tuple[dict[str, Any], StoredVersion]]:
    """The merged-away Patient the pipeline made for `nhs` (an A40 took the number off
    it), when this caller may see it; else nothing. Only a Patient that really was
    merged (a replaced-by link) counts: the claim alone never stands for a record."""
    rid = claimed_patient(ctx.session, nhs) if ctx.session is not None else None
    if rid is None:
        return []
    try:
        stored = ctx.repository.read("Patient", rid, session=ctx.session)
    except GatewayError:
        return []
    patient = visible(ctx, req, stored)
    if patient is None or replaced_by(patient) is None:
        return []
    return [(patient, stored)]


def _known_as(patient: dict[str, Any]) -> str:
    nhs = t.nhs_number_of(patient)
    return f"NHS number {t.spaced(nhs)}" if nhs else f"Patient/{patient['id']}"
