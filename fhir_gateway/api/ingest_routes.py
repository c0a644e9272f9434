"""Partner feeds over HTTP (`POST /ingest/{partner}`) and the identity review queue.

The body is the partner's file as it stands (HL7 v2, CSV, NDJSON or an STU3 Bundle),
answered with the same summary as `fhir-gateway ingest --json`. The security layer decides
who may: only that partner's feed client may load its files, and every ingest, allowed or
refused, is audited (`security.http.authorize_ingest` / `record_ingest`). The answer counts
and names that partner's records only (`Loader.ingest`): another partner's held record
that the run's retry applies is applied, but reported to the operator's log, never here.

The review queue holds partners' raw records (names, birth dates, NHS numbers) that are
not part of the shared record yet. Over HTTP (auth on) each partner's own feed client
lists and resolves that partner's records only, as it writes only that partner's data;
another partner's record answers as absent. Clinicians (read-only on the shared record)
and other roles are refused. Every request, allowed or refused, is audited.
`fhir-gateway review` on the gateway's host sees the whole queue.

A held record's candidates and reason, and a refused resolve, name Patients by internal
id (the pipeline writes them for the operator). Over HTTP (auth on) a caller sees an id
only where it may see that Patient (the access interceptor's `can_see`, as for any read):
other ids leave the candidates, and in text become "another record" (and the CLI hint
`(--patient ID)` is dropped), so a feed learns no consent-hidden Patient's id, nor that
the person is on the record under it; a text naming such a Patient also loses the NHS
numbers and dates it gives that are not in the feed's own record (that Patient's).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from .. import jsonio
from ..errors import (
    BadRequest,
    GatewayError,
    Issue,
    NotFound,
    Unavailable,
    UnsupportedMediaType,
)
from ..store.base import StoreBusy, StoreUnavailable
from .http import FHIR_JSON, content_type, error_response, read_body, to_fhir_request

#: (`application/json+fhir`: the JSON type DSTU2 named, which STU3 systems still send)
FEED_TYPES = {"x-application/hl7-v2+er7", "application/hl7-v2", "text/csv", "text/plain",
              "application/x-ndjson", "application/fhir+json", "application/json+fhir",
              "application/json", "application/octet-stream"}
#: how the pipeline's words name a Patient: `Patient/ID`, and the CLI hint `(--patient ID)`
_ID = r"([A-Za-z0-9\-.]{0,63}[A-Za-z0-9\-])"  # a FHIR id, less a sentence's full stop
_NAMED_PATIENT = re.compile(rf"Patient/{_ID}")
_PATIENT_HINT = re.compile(rf" ?\(--patient {_ID}\)")
OTHER_RECORD = "another record"
#: what the pipeline's words say of a Patient besides its id: an NHS number, a date (born)
_PERSONAL = re.compile(r"\b(?:\d{10}|\d{4}(?:-\d{2}(?:-\d{2})?)?)\b")
WITHHELD = "[withheld]"

router = APIRouter()


def _base(request: Request) -> str:
    """The FHIR base tokens are issued for: the app's (FHIR_GATEWAY_BASE_URL honoured)."""
    return str(request.app.state.fhir_base(request))


def _caller(request: Request) -> Any:
    """Who is asking (401 without a valid token); None with auth off."""
    sec = request.app.state.security
    if sec.access is None:
        return None
    return sec.access.authenticate(to_fhir_request(request, "$review", None, _base(request)))


def _check_reviewer(caller: Any, *, settles: bool = False) -> None:
    """Only a partner's feed client reviews (its own partner's records), within its
    token's scopes: the queue holds records of every type, so listing it needs read on
    all types, and settling a hold writes to the shared record as an ingest does (create
    and update on all types)."""
    from ..security.errors import Forbidden

    if caller is None:
        return  # auth off
    if caller.role != "feed" or not getattr(caller, "partner", None):
        raise Forbidden("the review queue is for each partner's own feed client: it holds "
                        "partners' records not yet in the shared record")
    scopes = caller.memo["scopes"]
    if settles and not (scopes.allows("*", "c") and scopes.allows("*", "u")):
        raise Forbidden("settling a held record needs system/*.cu (create and update) "
                        "scope: it writes to the shared record")
    if not settles and not scopes.allows("*", "r"):
        raise Forbidden("the review queue needs system/*.r (read) scope: it holds "
                        "records of every type")


def _mine(caller: Any, partner: str | None) -> bool:
    return caller is None or partner == caller.partner


def _held_partner(value: dict[str, Any]) -> str | None:
    return ((value.get("record") or {}).get("source") or {}).get("partner")


def _visible_patients(request: Request, caller: Any, ids: Iterable[str]) -> set[str]:
    """The ids among `ids` of Patients `caller` may see: all with auth off, none for a
    caller who is not known. Blocking (store reads): run it in a thread."""
    sec = request.app.state.security
    wanted = set(ids)
    if sec.access is None:
        return wanted
    if caller is None or not wanted:
        return set()
    asking = _asking(request, caller)
    return {pid for pid in wanted if _standing(sec, asking, pid) == "shown"}


def _asking(request: Request, caller: Any) -> Any:
    """The review request as the access policy judges it, on behalf of `caller`."""
    asking = to_fhir_request(request, "$review", None, _base(request))
    asking.caller = caller
    return asking


def _standing(sec: Any, asking: Any, pid: str) -> str:
    """Patient `pid` to the caller `asking` is for, from one read: "shown", "hidden"
    (stored, not deleted, not visible to it) or "absent" (a deletion too)."""
    try:
        stored = sec.repository.read("Patient", pid)
    except GatewayError:
        return "absent"
    return "shown" if sec.access.can_see(asking, jsonio.loads_trusted(stored.body)) \
        else "hidden"


def _named_ids(texts: Iterable[str]) -> set[str]:
    return {m.group(1) for text in texts for pattern in (_NAMED_PATIENT, _PATIENT_HINT)
            for m in pattern.finditer(text)}


def _redactor(visible: set[str]) -> Callable[..., str]:
    """Rewrites the pipeline's words so they name only the `visible` Patients. A text that
    names another Patient also loses the NHS numbers and dates it gives ("which holds NHS
    number ...", "born ...": that Patient's) except those in `own`, the caller's own
    record's text (what it sent it knows)."""
    def redact(text: str, own: str = "") -> str:
        if _named_ids([text]) - visible:
            text = _PERSONAL.sub(lambda m: m.group(0) if m.group(0) in own else WITHHELD,
                                 text)
        text = _PATIENT_HINT.sub(lambda m: m.group(0) if m.group(1) in visible else "", text)
        return _NAMED_PATIENT.sub(
            lambda m: m.group(0) if m.group(1) in visible else OTHER_RECORD, text)
    return redact


async def _redaction_for(request: Request, caller: Any,
                         texts: Iterable[str], ids: Iterable[str] = ()
                         ) -> tuple[set[str], Callable[..., str]]:
    """The Patient ids `caller` may see among those named, and a redactor for texts."""
    named = _named_ids(texts) | set(ids)
    if not named:  # nothing to check (most answers): no store reads, no thread hop
        return set(), _redactor(set())
    visible = await run_in_threadpool(_visible_patients, request, caller, named)
    return visible, _redactor(visible)


async def _error_for(request: Request, caller: Any, error: GatewayError,
                     own: str = "") -> Response:
    """`error` as an OperationOutcome naming only Patients the caller may see (`own`: the
    text of the caller's record it is about)."""
    outcome = error.outcome()
    issues = [i for i in outcome.get("issue", []) if isinstance(i.get("diagnostics"), str)]
    _, redact = await _redaction_for(request, caller, [i["diagnostics"] for i in issues])
    for issue in issues:
        issue["diagnostics"] = redact(issue["diagnostics"], own)
    return Response(content=jsonio.dump_bytes(outcome), status_code=error.status,
                    headers=error.headers, media_type=FHIR_JSON)


async def _audited(request: Request, caller: Any, status: int, what: str,
                   patient: str | None = None, wrote: Iterable[str] = ()) -> None:
    """`wrote`: the Patients a settled hold wrote (a Patient it created among them)."""
    from ..fhir.request import Caller
    from ..security.http import record_review

    named = {*([patient] if patient else []), *wrote}
    await run_in_threadpool(record_review, request.app.state.security, request,
                            caller or Caller(), _base(request), status, what, named)


@router.post("/ingest/{partner}")
async def ingest(request: Request, partner: str, filename: str | None = None) -> Response:
    from ..fhir.request import Caller
    from ..ingest import MappingError, UnknownPartner
    from ..ingest.background import file_label
    from ..pipeline.loader import committed_before
    from ..security.http import authorize_ingest, record_ingest

    sec, base = request.app.state.security, _base(request)
    caller: Any = Caller()
    try:
        caller = authorize_ingest(sec, request, partner, base)
        ctype = content_type(request)
        if ctype and ctype not in FEED_TYPES:
            raise UnsupportedMediaType(f"Content-Type {ctype!r} is not a partner feed format")
        # a partner's whole extract can be large; the limit (settings) still bounds memory
        data = await read_body(request, request.app.state.max_feed_bytes)
        if not data.removeprefix(b"\xef\xbb\xbf").strip():  # (a failed export's mark alone)
            raise BadRequest("the body is empty: send the partner's file")
        service = request.app.state.ingest_service
        try:
            summary = await run_in_threadpool(service.ingest, partner,
                                              file_label(filename or f"{partner}-upload"),
                                              data)
        except UnknownPartner as exc:
            raise NotFound(str(exc)) from exc
        except MappingError as exc:  # raised before anything is read
            raise Unavailable(f"the gateway's mapping for partner {partner!r} does not load "
                              f"({exc}): nothing was read; the operator must correct it, "
                              "then send the file again") from exc
        except StoreUnavailable as exc:
            # each batch commits alone: earlier ones may be stored (and a record loaded
            # again changes nothing), so not "nothing was written"
            raise StoreBusy(f"the store could not take the file ({exc}); records before "
                            "that point may be stored already, and loading them again "
                            "changes nothing: resend the whole file later") from exc
    except GatewayError as exc:
        try:  # a run that failed part way names the Patients its committed batches wrote
            await run_in_threadpool(record_ingest, sec, request, caller, partner, base,
                                    exc.status, committed_before(exc))
        except GatewayError as audit_failed:  # never a bare 500
            return error_response(audit_failed)
        return error_response(exc)
    try:
        await run_in_threadpool(record_ingest, sec, request, caller, partner, base, 200,
                                summary)  # its counts, and the Patients it wrote
    except GatewayError as exc:  # the audit trail failed; the records are committed
        return error_response(_stored_unaudited(request, partner, summary, exc))
    answer = summary.to_json()
    _, redact = await _redaction_for(request, caller,
                                     [r["reason"] for r in answer["rejections"]])
    answer["rejections"] = [{**r, "reason": redact(r["reason"])} for r in answer["rejections"]]
    return JSONResponse(answer, status_code=200)


def _stored_unaudited(request: Request, partner: str, summary: Any,
                      error: Exception) -> GatewayError:
    """The answer when the file's records were committed but the audit record of the
    ingest could not be written: a 500 saying what was stored (never "try again": a
    resent file would be loaded again), logged loudly."""
    from ..security.gate import unaudited_after_commit

    counts = ", ".join(f"{k} {v}" for k, v in summary.counts().items())
    failure = unaudited_after_commit(f"POST /ingest/{partner} ({counts})",
                                     getattr(request.state, "request_id", ""), error)
    message = f"{failure.diagnostics}; stored: {counts}"
    return type(failure)(message, issues=[Issue(message, code="exception",
                                                severity="fatal")])


@router.get("/review/held")
async def held(request: Request) -> Response:
    caller = None
    try:
        caller = _caller(request)
        _check_reviewer(caller)
    except GatewayError as exc:
        await _audited(request, caller, exc.status, "GET /review/held")
        return error_response(exc)
    loader = request.app.state.ingest_service.loader
    items = [(k, v) for k, v in await run_in_threadpool(loader.list_held)
             if _mine(caller, _held_partner(v))]
    visible, redact = await _redaction_for(
        request, caller, [v["reason"] for _, v in items],
        [c for _, v in items for c in v["candidates"]])
    await _audited(request, caller, 200, f"GET /review/held ({len(items)} listed)")
    return JSONResponse([{"key": k, "reason": redact(v["reason"], _raw(v)),
                          "candidates": [c for c in v["candidates"] if c in visible],
                          "source": v["record"]["source"]} for k, v in items])


@router.get("/review/rejected")
async def rejected(request: Request) -> Response:
    caller = None
    try:
        caller = _caller(request)
        _check_reviewer(caller)
    except GatewayError as exc:
        await _audited(request, caller, exc.status, "GET /review/rejected")
        return error_response(exc)
    loader = request.app.state.ingest_service.loader
    items = [(k, v) for k, v in await run_in_threadpool(loader.list_rejected)
             if _mine(caller, v.get("partner"))]
    _, redact = await _redaction_for(request, caller,
                                     [str(v.get("reason", "")) for _, v in items])
    await _audited(request, caller, 200, f"GET /review/rejected ({len(items)} listed)")
    return JSONResponse([{"key": k, **v, "reason": redact(str(v.get("reason", "")))}
                         for k, v in items])


@router.post("/review/held/{key:path}")
async def resolve(request: Request, key: str) -> Response:
    """Body: `{"patient": "<id>"}` to attach (with `"despiteDifferences": true` to a
    Patient the hold did not offer whose birth date, family name or sex contradicts the
    record's), `{"create": true}` for a new Patient, or `{"discard": "<why>"}` to take it
    off the queue unapplied (kept, with who and why). `"despiteNewer": true` settles a
    hold that a newer record of the same id superseded (refused 409 without it).
    `"replaceNhsNumber"` is refused (403): the operator's CLI does that."""
    from ..fhir.interactions import require_id
    from ..fhir.repository import unknown as not_known
    from ..security.errors import Forbidden

    caller, patient, discard, own = None, None, None, ""
    overrides: list[str] = []  # a reviewer's "all the same" is audited with the choice
    try:
        caller = _caller(request)
        _check_reviewer(caller, settles=True)
        choice = jsonio.parse(await read_body(request, 64 * 1024))
        if not isinstance(choice, dict) or [choice.get("create") is True,
                                            isinstance(choice.get("patient"), str),
                                            isinstance(choice.get("discard"), str)
                                            ].count(True) != 1 or any(
                choice.get(k) is not None and not ok for k, ok in (
                    ("create", choice.get("create") is True),
                    ("patient", isinstance(choice.get("patient"), str)),
                    ("discard", isinstance(choice.get("discard"), str)))):
            # a mistyped second choice is a second choice too: refused, not ignored
            # one choice: with two, which one the reviewer meant is a guess
            raise BadRequest('send one of {"patient": "<id>"}, {"create": true} or '
                             '{"discard": "<why>"}')
        chosen = next(k for k in ("create", "patient", "discard") if choice.get(k) is not None)
        despite = _override(choice, "despiteDifferences", chosen, ("patient",))
        newer = _override(choice, "despiteNewer", chosen, ("patient", "create"))
        overrides = [k for k, on in (("despiteDifferences", despite), ("despiteNewer", newer))
                     if on]
        if choice.get("replaceNhsNumber") not in (None, False):
            # It changes how every partner's records find the person (theirs with the old
            # number are held from then on): the partnership's operator decides, not one feed.
            raise Forbidden("replacing a Patient's NHS number is for the partnership's "
                            "operator: fhir-gateway review resolve KEY --patient ID "
                            "--replace-nhs-number")
        discard = choice.get("discard") if isinstance(choice.get("discard"), str) else None
        patient = require_id(choice["patient"]) if isinstance(choice.get("patient"), str) \
            else None
        loader = request.app.state.ingest_service.loader
        held = await run_in_threadpool(_held_record, loader, key)
        if not _mine(caller, None if held is None else _held_partner(held)):
            raise NotFound(f"no held record {key!r}")  # another partner's: as absent
        own = _raw(held)
        shown = True  # whether the caller may see the Patient (so learn how it differs)
        if patient is not None and request.app.state.security.access is not None:
            standing = await run_in_threadpool(_standing, request.app.state.security,
                                               _asking(request, caller), patient)
            if standing == "absent":
                raise not_known("Patient", patient)  # a deletion too: as an absent id
            shown = standing == "shown"
        if discard is not None:
            by = getattr(caller, "client_id", None) or "anonymous (auth off)"
            await run_in_threadpool(loader.discard_held, key, reason=discard, by=by)
        else:
            summary = await run_in_threadpool(loader.resolve_held, key, patient_id=patient,
                                              despite_differences=despite,
                                              compare=shown, despite_newer=newer)
    except GatewayError as exc:
        await _audited(request, caller, exc.status, _choice(key, overrides), patient)
        return await _error_for(request, caller, exc, own)  # e.g. a 409 naming the holder
    if discard is not None:
        await _audited(request, caller, 200, f"POST /review/held/{key} (discarded)")
        return JSONResponse({"discarded": key})
    wrote = summary.patients.union(*summary.others_patients.values())
    await _audited(request, caller, 200, _choice(key, overrides), patient, wrote)
    return JSONResponse(summary.counts())


_CHOICE_SHAPES = {"patient": '{"patient": "<id>"}', "create": '{"create": true}'}


def _override(choice: dict[str, Any], name: str, chosen: str, goes_with: tuple[str, ...]) -> bool:
    """A reviewer's "all the same" flag: true or false (absent is false), and only beside a
    choice it can qualify; anything else is refused rather than read as either."""
    value = choice.get(name)
    if value is None or value is False:
        return False
    if value is True and chosen in goes_with:
        return True
    raise BadRequest(f'"{name}" is true or false, and goes with '
                     + " or ".join(_CHOICE_SHAPES[k] for k in goes_with))


def _choice(key: str, overrides: list[str]) -> str:
    """The review request as audited: the overrides said, as the CLI's command says
    `--despite-newer`."""
    return " ".join([f"POST /review/held/{key}", *(f"{k}=true" for k in overrides)])


def _raw(held: dict[str, Any]) -> str:
    source = held.get("record", {}).get("source", {}) if isinstance(held, dict) else {}
    raw = source.get("raw") if isinstance(source, dict) else None
    return raw if isinstance(raw, str) else ""


def _held_record(loader: Any, key: str) -> dict[str, Any] | None:
    with loader.repo.engine.session(write=False) as s:
        value = s.record_get("held", key)
    return value if isinstance(value, dict) else None
