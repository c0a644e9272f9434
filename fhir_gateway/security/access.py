"""The access interceptor: who is asking (the bearer token), may they ask this (role and
scopes, `policy`), and may they see this resource (role, scopes, partner ownership,
consent, `can_see`) - for every interaction, each Bundle entry and each resource a search,
`_include`, `_revinclude`, `$everything` or history would show.

Chained parameters and `_has` select matches by looking at other resources; the engine
evaluates them without asking who may see those. So a search that uses them is re-checked
here, match by match, over visible resources only: a match is shown only when some
resource this caller may see satisfies each chain or `_has` (otherwise a hidden record
could be probed through a visible one). Counts that would include hidden records
(`_summary=count`, `_count=0`, `_total=estimate|accurate`, judged on the parsed search)
are refused to everyone but auditors on the audit trail.

A partner feed writes its own partner's resources only, and its writes answer nothing
about anyone else's: another's id (live, deleted or consent-hidden) gets the words an
unknown id gets, conditions match the feed's own resources only, and a Provenance or
Consent it writes may name no organisation but its own (consent trusts those names).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

from .. import jsonio
from ..auth.registry import ClientRegistry
from ..auth.scopes import grant
from ..auth.server import REGISTRATION_CLAIM
from ..errors import BadRequest, Conflict, GatewayError, Unprocessable
from ..fhir.derivations import DERIVED_TAG_SYSTEM
from ..fhir.interactions import CURRENT_VERSION, DEFERRED_CHECKS, SEARCH_MODE
from ..fhir.interceptors import BaseInterceptor
from ..fhir.repository import Repository, new_id
from ..fhir.request import FhirRequest, FhirResponse, Interaction
from ..fhir.types import resource_types
from ..pipeline.identity import NHS_CLAIMS, put_claim
from ..references import literal_reference
from ..search.query import SearchRequest, parse_search
from ..search.values import now_instant
from ..store.base import StoreSession, VersionConflict
from ..store.query import (
    ChainPredicate,
    Criterion,
    HasPredicate,
    IndexQuery,
    ReferencePredicate,
    TokenPredicate,
)
from .auditor_view import for_auditor
from .consent import (
    ODS_SYSTEM,
    PARTNER_TAG_SYSTEM,
    UNJUDGED,
    ConsentDecision,
    ConsentPolicy,
    as_list,
    is_privacy_consent,
    last_written,
    local_refs,
    ods_codes,
    reference_ids,
)
from .context import BREAK_GLASS_ROLES, MAX_REASON_CHARS, ROLE_PURPOSES, SecureCaller
from .errors import Forbidden, Unauthorized
from .policy import (
    AUDIT_TYPES,
    EMERGENCY_SUMMARY,
    NHS_NUMBER_SYSTEM,
    WRITES,
    authorize,
    hidden,
    operation_of,
)
from .tokens import AccessTokenVerifier, InvalidToken

_BEARER = re.compile(r"Bearer +([A-Za-z0-9\-_.~+/]+=*)", re.IGNORECASE)
MAX_INNER_MATCHES = 200
#: Targets a feed's Provenance may name (the loader's own name one record's writes).
MAX_FEED_PROVENANCE_TARGETS = 1000
#: how long a claim on an NHS number naming a Patient not stored yet counts as another
#: writer's write in progress (see `_claim_nhs_number`); older, it was left behind
CLAIM_IN_FLIGHT_S = 60
#: req.state keys this module sets (the audit interceptor reads them)
INTERACTION = "security.interaction"
PATIENTS = "security.patients"
OVERRODE = "security.overrode_consent"
_CRITERIA = "security.criteria"


def owned_by(resource: dict[str, Any], partner: str | None) -> bool:
    tags = (resource.get("meta") or {}).get("tag") or []
    return partner is not None and any(
        t.get("system") == PARTNER_TAG_SYSTEM and t.get("code") == partner for t in tags)


def search_params(req: FhirRequest) -> list[tuple[str, str]]:
    params = list(req.params)
    if req.method == "POST" and isinstance(req.body, str):
        params += parse_qsl(req.body, keep_blank_values=True)
    return params


class AccessInterceptor(BaseInterceptor):
    def __init__(self, repository: Repository, *, verifier: AccessTokenVerifier,
                 issuer_for: Callable[[str], str]) -> None:
        self.repository = repository
        self.clients = ClientRegistry(repository.engine)
        self.verifier = verifier
        self.issuer_for = issuer_for
        self.consent = ConsentPolicy(repository)

    # -- on_request ---------------------------------------------------------------------

    def on_request(self, request: FhirRequest, interaction: Interaction) -> None:
        request.state[INTERACTION] = interaction
        caller = request.caller
        if not (isinstance(caller, SecureCaller) and caller.authenticated):
            if interaction.name == "capabilities":
                return
            caller = self.authenticate(request)
            request.caller = caller
        params = search_params(request) if interaction.name == "search-type" else request.params
        authorize(caller, request, interaction, params)
        if interaction.name == "search-type":
            self._check_search(caller, request, interaction.rtype or "", params)
            if caller.role == "feed":
                _own_resources_only(caller, request, params)
        if caller.role == "feed" and interaction.name in WRITES:
            self._check_feed_write(caller, request, interaction)
        if caller.role == "feed" and interaction.name in ("batch", "transaction"):
            _bounded_provenance_targets(request.body)

    def on_response(self, request: FhirRequest, interaction: Interaction,
                    response: FhirResponse) -> None:
        caller = request.caller
        if isinstance(caller, SecureCaller) and caller.role == "auditor":
            for_auditor(response)  # Provenance as who, when, what and why: no text

    def authenticate(self, req: FhirRequest) -> SecureCaller:
        header = req.header("authorization")
        if not header:
            raise Unauthorized("this request needs an access token (Authorization: Bearer); "
                               "see .well-known/smart-configuration", error="")
        m = _BEARER.fullmatch(header.strip())
        if not m:
            raise Unauthorized("the Authorization header must be 'Bearer <access token>'",
                               error="invalid_request")
        try:
            claims = self.verifier.verify(m.group(1), issuer=self.issuer_for(req.base_url),
                                          audience=req.base_url)
        except InvalidToken as exc:
            raise Unauthorized(str(exc)) from exc
        client = self.clients.get(claims["client_id"])
        if client is None:
            raise Unauthorized("the token's client is no longer registered")
        if claims.get(REGISTRATION_CLAIM) != client.created:
            # removed and added again (a leaked key replaced): the earlier registration's
            # tokens end with it
            raise Unauthorized("the token was issued to an earlier registration of this "
                               "client")
        scopes = grant(claims.get("scope"), client.role)
        allowed = ROLE_PURPOSES.get(client.role, ())
        purpose = (req.header("x-purpose-of-use") or (allowed[0] if allowed else "")).strip()
        if purpose not in allowed:
            raise Forbidden(f"X-Purpose-Of-Use {purpose[:20]!r}: the {client.role} role may "
                            f"declare {', '.join(allowed) or 'none'}")
        reason = (req.header("x-break-glass-reason") or "").strip() or None
        if reason is not None:
            if client.role not in BREAK_GLASS_ROLES:
                raise Forbidden(f"the {client.role} role may not break the glass")
            if purpose != "ETREAT":
                raise Forbidden("breaking the glass needs X-Purpose-Of-Use: ETREAT")
            if len(reason) > MAX_REASON_CHARS:
                raise BadRequest(f"X-Break-Glass-Reason is limited to {MAX_REASON_CHARS} "
                                 "characters")
            if not any(c.isalnum() for c in reason):
                # an auditor must be able to read why the objection was overridden
                raise BadRequest("X-Break-Glass-Reason must say why, in words")
        caller = SecureCaller(client_id=client.client_id, role=client.role,
                              organization=client.organization,
                              scopes=frozenset(str(scopes).split()), purpose_of_use=purpose,
                              partner=client.partner, break_glass=reason,
                              token_id=claims.get("jti"))
        caller.memo["scopes"] = scopes
        return caller

    def _check_search(self, caller: SecureCaller, req: FhirRequest, rtype: str,
                      params: list[tuple[str, str]]) -> None:
        if caller.role == "auditor" and any(_searches_text(name) for name, _ in params):
            # the auditor's answers leave out the text a feed wrote (`auditor_view`); a
            # search matching on that text would tell it word by word all the same
            raise Forbidden("the auditor role may not search on text (:text, _text, "
                            "_content); search on codes and references")
        if not any(_guarded(name) for name, _ in params):
            return  # nothing that counts or probes: the plain search needs no guard
        try:
            # Parsed as the search will be (lenient: what strict handling applies too), so
            # the guard sees what is applied, not how the parameter happens to be spelt.
            search = parse_search(rtype, params, self.repository.registry, strict=False,
                                  base_url=req.base_url)
        except GatewayError:
            return  # the search itself fails the same way and reports it
        auditing = caller.role == "auditor" and rtype in AUDIT_TYPES
        if not auditing and _counts(search):
            raise Forbidden("a count (_summary=count, _count=0, _total=estimate or accurate) "
                            "would include records hidden from this client")
        criteria = _probing(search)
        if not criteria:
            return
        for other in _types_in(criteria):
            if not self._type_visible(caller, other):
                raise Forbidden(f"this search looks into {other}, which the {caller.role} "
                                "role may not see")
        req.state[_CRITERIA] = criteria

    def _check_feed_write(self, caller: SecureCaller, req: FhirRequest,
                          interaction: Interaction) -> None:
        """A feed changes its own partner's resources only, and learns nothing from the
        answer about anyone else's: another's record (live, deleted or hidden) is answered
        exactly as an id no one holds, and conditions match its own resources only."""
        rtype, rid = interaction.rtype or "", interaction.rid
        if isinstance(req.body, dict):
            _check_attribution(req.body, caller)
            self._check_provenance_targets(caller, req.body)
            _stamp(req.body, caller)
            body_id = req.body.get("id")
            if rid is None and interaction.name == "update" and isinstance(body_id, str):
                # a conditional update that matches nothing updates-as-creates this id
                self._check_writable(caller, rtype, body_id, interaction.name)
        if rid is not None:
            self._check_writable(caller, rtype, rid, interaction.name)
            return
        self._own_condition(caller, req, interaction)

    def _check_provenance_targets(self, caller: SecureCaller, body: dict[str, Any]) -> None:
        """A feed's Provenance speaks for its own partner's resources only: every target
        must be one of them, or an id no one has written yet (a transaction may list the
        Provenance before what it targets). Another's, live, deleted or hidden, gets one
        answer whatever it is. Otherwise a partner could take the credit for another's
        CPR decision in a crew's summary (and hide their disagreement), or become a holder
        of a record hidden from it. The summary and consent also disbelieve such
        Provenance (`consent.speaks_for`), which covers any stored before this check."""
        if body.get("resourceType") != "Provenance":
            return
        targets = as_list(body.get("target"))
        if len(targets) > MAX_FEED_PROVENANCE_TARGETS:
            # each target costs a look-up of who wrote it: bounded, like a Bundle's size
            raise Unprocessable(
                f"a feed's Provenance may name at most {MAX_FEED_PROVENANCE_TARGETS:,} "
                f"targets; this one names {len(targets):,} (split it)",
                expression="Provenance.target")
        for i, target in enumerate(targets):
            for rtype, rid in local_refs([target]):
                last = last_written(self.repository, rtype, rid)
                if last is None or owned_by(last, caller.partner):
                    continue
                raise Unprocessable(
                    f"{rtype}/{rid} is not one of partner {caller.partner}'s resources: "
                    "a feed's Provenance may target only its own partner's resources",
                    expression=f"Provenance.target[{i}]")

    def before_write(self, request: FhirRequest, resource: dict[str, Any], rid: str | None,
                     session: StoreSession | None) -> None:
        """Checks a write must pass against what the store holds at the moment it is made
        (the interactions call this just before writing, in the write's session)."""
        caller = request.caller
        if not (isinstance(caller, SecureCaller) and caller.authenticated):
            return
        # here, not on_request: a transaction's conditional and urn:uuid references are
        # rewritten to their Patient by now
        _check_consent_patient(resource, request.base_url)
        if resource.get("resourceType") != "Patient":
            return  # the other check here is about Patients
        if rid is None and session is not None:
            # A create names its Patient now, so the NHS number's claim can name it: the
            # create interactions take the id from here, as a transaction's are.
            rid = request.state.setdefault("assigned_id", new_id())
        deferred = request.state.get(DEFERRED_CHECKS)
        if isinstance(deferred, list):  # a transaction entry: judged at its end state
            body = copy.deepcopy(resource)
            deferred.append(lambda: self._check_one_patient_per_person(body, rid, session))
            return
        self._check_one_patient_per_person(resource, rid, session)

    def _check_one_patient_per_person(self, body: dict[str, Any], rid: str | None,
                                      session: StoreSession | None) -> None:
        """409 when another live Patient (`rid` is the one written, None for a new one)
        already holds an NHS number this Patient carries, whoever holds it: a split record
        leaves crews without a summary (two records for one NHS number are refused, never
        chosen between). Read in the write's session, so a Patient an earlier entry of the
        same transaction wrote counts. Another partner's match counts as no match for a
        feed's conditional create, so without this that create would make a second
        Patient too. Saying the number is on the shared record tells a partner of the
        partnership nothing it may not know: the record exists to hold one Patient per
        person. (The pipeline's own writes, merges included, do not come this way.)

        The search gives the readable 409; what makes the rule hold between concurrent
        writers (MongoDB does not serialise them) is the claim each number then gets, in
        the write's session: the unique `person-nhs` record ingest claims numbers with."""
        if body.get("resourceType") != "Patient":
            return
        numbers = _nhs_numbers(body)
        for nhs in sorted(numbers):
            query = IndexQuery(rtype="Patient", criteria=[Criterion(
                "identifier", "token", [TokenPredicate(NHS_NUMBER_SYSTEM, nhs)])], limit=2)
            if any(row.rid != rid for row in self.repository.find(query, session=session).rows):
                raise _held_elsewhere(nhs)
        if session is not None and rid is not None:
            for nhs in sorted(numbers):
                _claim_nhs_number(session, nhs, rid)

    def _check_writable(self, caller: SecureCaller, rtype: str, rid: str, name: str) -> None:
        """Raise, in the words an unknown record gets, unless the feed may write this id.

        Its own resource (live or deleted) it may change; an id no one ever used it may
        create (update-as-create); anyone else's, deleted ones included, it may not touch.
        Deleting an id no one ever used gets the same 404 as deleting another's record, so
        a delete's answer never tells whether someone else holds that id."""
        last = last_written(self.repository, rtype, rid)
        if last is None:
            if name == "delete":
                raise hidden(Interaction(name, rtype, rid))
            return
        if not owned_by(last, caller.partner):
            raise hidden(Interaction(name, rtype, rid))

    def _own_condition(self, caller: SecureCaller, req: FhirRequest,
                       interaction: Interaction) -> None:
        """Narrow a conditional write's condition to the feed's own resources, so another
        partner's (or a hidden) match is no match: nothing of it is changed, returned or
        counted towards "more than one"."""
        create = interaction.name == "create"
        condition = parse_qsl(req.header("if-none-exist") or "", keep_blank_values=True) \
            if create else req.params
        if not [k for k, _ in condition if k not in ("_format", "_pretty")]:
            return
        if any(k.startswith("_has:") or "." in k for k, _ in condition):
            raise Forbidden("a feed's conditional write may not use chains or _has")
        own = ("_tag", f"{PARTNER_TAG_SYSTEM}|{caller.partner}")
        if own in condition:
            return  # narrowed already (a transaction checks an entry before it runs it)
        if create:
            req.headers["if-none-exist"] = urlencode([*condition, own])
        else:
            req.params = [*condition, own]

    # -- can_see ------------------------------------------------------------------------

    def can_see(self, request: FhirRequest, resource: dict[str, Any]) -> bool:
        caller = request.caller
        if not (isinstance(caller, SecureCaller) and caller.authenticated):
            return False
        patients = self._visible(caller, request, resource)
        if patients is None:
            return False
        criteria = request.state.get(_CRITERIA)
        interaction = request.state.get(INTERACTION)
        # only a match was selected by the chain / _has; an include (R4 3.1.1.5.4) was not,
        # even of the searched type, so it has nothing to meet
        if criteria and interaction is not None \
                and request.state.get(SEARCH_MODE) != "include" \
                and resource.get("resourceType") == interaction.rtype \
                and not self._holds_visibly(caller, request, resource, criteria):
            return False
        request.state.setdefault(PATIENTS, set()).update(patients)
        return True

    def history_types(self, request: FhirRequest) -> frozenset[str]:
        """The types a history listing could ever show this caller (role and scopes): the
        versions of any other type are passed over without being read one by one (a
        clinician never sees the audit trail, an auditor sees nothing else)."""
        caller = request.caller
        if not (isinstance(caller, SecureCaller) and caller.authenticated):
            return frozenset()
        return frozenset(t for t in resource_types() if self._type_visible(caller, t))

    def _type_visible(self, caller: SecureCaller, rtype: str) -> bool:
        acts = caller.memo["scopes"].actions(rtype)
        if not ("r" in acts or "s" in acts):
            return False
        if caller.role == "auditor":
            return rtype in AUDIT_TYPES
        return caller.role in ("clinician", "feed") and rtype != "AuditEvent"

    def _visible(self, caller: SecureCaller, req: FhirRequest,
                 resource: dict[str, Any]) -> list[str] | None:
        """The resource's patients when the caller may see it, else None."""
        rtype = resource.get("resourceType") or ""
        acts = caller.memo["scopes"].actions(rtype)
        if not ("r" in acts or "s" in acts):
            return None
        role = caller.role
        if role == "auditor":
            return [] if rtype in AUDIT_TYPES else None
        if role == "feed":
            if not owned_by(resource, caller.partner):
                return None
            return [p for p in self.consent.patients_behind(resource, caller.memo)
                    if p != UNJUDGED]
        if role == "ambulance":
            interaction = req.state.get(INTERACTION)
            summary = operation_of(req) == EMERGENCY_SUMMARY
            searching = interaction is not None and interaction.name == "search-type"
            if not (summary and rtype != "AuditEvent") and not (searching and rtype == "Patient"):
                return None
        elif role != "clinician" or rtype == "AuditEvent":
            return None
        patients = self.consent.patients_behind(resource, caller.memo)
        now = req.state.get(CURRENT_VERSION)
        if isinstance(now, dict):
            # an old version: judged by its own patients and those of the resource as it
            # is now, or one re-filed to a hidden patient would be read through its past
            patients = [*patients, *(p for p in self.consent.patients_behind(now, caller.memo)
                                     if p not in patients)]
        if UNJUDGED in patients:
            return None  # too many deleted targets to judge: fail closed
        for pid in patients:
            if self._decision(caller, pid).hides_from(caller.organization):
                if caller.break_glass is None:
                    return None
                req.state[OVERRODE] = True
        return patients

    def _decision(self, caller: SecureCaller, pid: str) -> ConsentDecision:
        key = f"consent:{pid}"
        if key not in caller.memo:
            caller.memo[key] = self.consent.decide(pid, caller.organization)
        return caller.memo[key]

    def _holds_visibly(self, caller: SecureCaller, req: FhirRequest, resource: dict[str, Any],
                       criteria: list[Criterion]) -> bool:
        """Whether each chain / `_has` criterion is met by resources the caller may see."""
        for criterion in criteria:
            if not any(self._predicate_holds(caller, req, resource, criterion.param, p)
                       for p in criterion.predicates):
                return False
        return True

    def _predicate_holds(self, caller: SecureCaller, req: FhirRequest, resource: dict[str, Any],
                         param_code: str, pred: Any) -> bool:
        if isinstance(pred, ChainPredicate):
            param = self.repository.registry.get(resource["resourceType"], param_code)
            ids = reference_ids(param.evaluate(resource), pred.target_type) if param else []
            if not ids:
                return False
            query = IndexQuery(rtype=pred.target_type, ids=sorted(set(ids)),
                               criteria=list(pred.query.criteria), limit=MAX_INNER_MATCHES)
            inner = _probing_criteria(pred.query.criteria)
        elif isinstance(pred, HasPredicate):
            query = IndexQuery(rtype=pred.source_type, criteria=[
                *pred.query.criteria, Criterion(pred.param, "reference", [
                    ReferencePredicate(resource["resourceType"], resource.get("id"))])],
                limit=MAX_INNER_MATCHES)
            inner = _probing_criteria(pred.query.criteria)
        else:
            return False
        for row in self.repository.find(query).rows:
            other = _loads(row.body)
            if other and self._visible(caller, req, other) is not None and (
                    not inner or self._holds_visibly(caller, req, other, inner)):
                return True
        return False


def _nhs_numbers(patient: dict[str, Any]) -> set[str]:
    return {i["value"] for i in as_list(patient.get("identifier"))
            if isinstance(i, dict) and i.get("system") == NHS_NUMBER_SYSTEM
            and isinstance(i.get("value"), str)}


def _held_elsewhere(nhs: str) -> Conflict:
    return Conflict(f"NHS number {nhs} is already on the shared record: one Patient per "
                    "person. A partner's data about them is linked by ingest (POST "
                    "/ingest/{partner}), not by a second Patient",
                    expression="Patient.identifier")


def _claim_nhs_number(session: StoreSession, nhs: str, rid: str) -> None:
    """Make the number's `person-nhs` claim name Patient `rid`, which is being written
    with it: created when absent (create-only, so of two writers racing for a number one
    fails), or taken over from the Patient it names, which the search just found not to
    hold the number (its number was changed, it was deleted or merged away, or two
    Patients swap numbers). Never released on a delete or a change: ingest holds a
    record whose number's Patient lost it for review (pipeline.identity), and the next
    Patient written with the number takes the claim over. Rewritten on every write, so
    two writers' claims on one number always meet on one record (on MongoDB a write
    conflict). VersionConflict (the write is retried, and then meets the 409) when
    another writer holds or takes the claim meanwhile."""
    held = session.record_get(NHS_CLAIMS, nhs)
    holder = held.get("patient") if isinstance(held, dict) else None
    if isinstance(held, dict) and isinstance(holder, str) and holder != rid:
        # Looked at again, not trusted to the search: a MongoDB server without
        # transactions shows another writer's claim (and Patient) as soon as written.
        stored = session.current("Patient", holder)
        if stored is None:
            # another writer's Patient, still being written - unless the claim was left
            # behind long ago (a process that died mid-write there)
            at = held.get("at")
            if isinstance(at, str) and at > _instant_ago(CLAIM_IN_FLIGHT_S):
                raise VersionConflict(f"NHS number {nhs} is being claimed concurrently")
        elif not stored.deleted and nhs in _nhs_numbers(_loads(stored.body)):
            raise _held_elsewhere(nhs)
    if held is not None and not session.record_delete(NHS_CLAIMS, nhs):
        raise VersionConflict(f"NHS number {nhs} claimed concurrently")
    if not put_claim(session, nhs, {"patient": rid, "at": now_instant()}, create_only=True):
        raise VersionConflict(f"NHS number {nhs} claimed concurrently")


def _instant_ago(seconds: float) -> str:
    """A FHIR instant `seconds` ago, in now_instant's form (so the two compare as text)."""
    return (datetime.now(UTC) - timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _loads(body: str | None) -> dict[str, Any]:
    return jsonio.loads_trusted(body) if body else {}


def _stamp(resource: dict[str, Any], caller: SecureCaller) -> None:
    """Mark a feed's resource as its partner's (and its organisation's)."""
    meta = resource.get("meta")
    if meta is None:
        meta = {}
    tag = meta.get("tag") if isinstance(meta, dict) else None
    if not isinstance(meta, dict) or not (
            tag is None or (isinstance(tag, list) and all(isinstance(t, dict) for t in tag))):
        # named here: stamping would otherwise drop or trip over it before validation
        raise BadRequest("meta must be an object and meta.tag an array of Codings",
                         expression=f"{resource.get('resourceType')}.meta")
    # the gateway's own marks are never a feed's to set (a derived resource is the gateway's)
    tags = [t for t in tag or [] if t.get("system") not in (PARTNER_TAG_SYSTEM, ODS_SYSTEM,
                                                            DERIVED_TAG_SYSTEM)]
    tags.append({"system": PARTNER_TAG_SYSTEM, "code": caller.partner})
    if caller.organization:
        tags.append({"system": ODS_SYSTEM, "code": caller.organization})
    meta["tag"] = tags
    resource["meta"] = meta


def _own_resources_only(caller: SecureCaller, req: FhirRequest,
                        params: list[tuple[str, str]]) -> None:
    """A feed sees its own partner's resources only, so its search asks the index for
    those alone: the same answer, without reading (and hiding one by one) every other
    partner's rows to fill a page or to look for a next one."""
    own = ("_tag", f"{PARTNER_TAG_SYSTEM}|{caller.partner}")
    if own not in params:
        req.params = [*req.params, own]


def _guarded(name: str) -> bool:
    """Whether a parameter (whatever its modifier) could count or probe hidden records:
    what `_check_search` must parse the search to judge."""
    return name.split(":", 1)[0] in ("_summary", "_count", "_total") or \
        name.startswith("_has") or "." in name


def _counts(search: SearchRequest) -> bool:
    """Whether the answer would carry a count of every match, hidden ones included (the
    engine counts what the index holds; the gate cannot filter a number)."""
    return search.summary == "count" or search.count == 0 or \
        search.total in ("estimate", "accurate")


def _bounded_provenance_targets(bundle: Any) -> None:
    """A feed's batch or transaction may name at most MAX_FEED_PROVENANCE_TARGETS
    Provenance targets in all (each Provenance is also bounded on its own)."""
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    total = sum(len(as_list(r.get("target"))) for e in as_list(entries)
                if isinstance(e, dict) and isinstance(r := e.get("resource"), dict)
                and r.get("resourceType") == "Provenance")
    if total > MAX_FEED_PROVENANCE_TARGETS:
        raise Unprocessable(
            f"a feed's Bundle may name at most {MAX_FEED_PROVENANCE_TARGETS:,} Provenance "
            f"targets in all; this one names {total:,} (split it)", expression="Bundle.entry")


def _searches_text(name: str) -> bool:
    """A search parameter that matches a code's words (`:text`, in a chain or `_has`
    too) or the narrative (`_text`, `_content`). (A string parameter an auditor can search
    reads what the gateway wrote: an AuditEvent's own elements.)"""
    parts = name.split(":")
    return parts[0] in ("_text", "_content") or any(m.split(".")[0] == "text"
                                                   for m in parts[1:])


def _check_attribution(resource: dict[str, Any], caller: SecureCaller) -> None:
    """A feed speaks for its own organisation only. Consent decisions trust the ODS codes a
    Provenance names as agents and a Consent names as its organization (`consent.py`): a
    feed naming another organisation there could open a hidden record to it, or lift a
    patient's objection in a partner's name."""
    rtype = resource.get("resourceType")
    if rtype == "Provenance":
        agents = [a for a in as_list(resource.get("agent")) if isinstance(a, dict)]
        named = ods_codes([a.get("who") for a in agents] + [a.get("onBehalfOf") for a in agents])
        if any(code != caller.organization for code in named):
            raise Forbidden("a feed's Provenance may name only its own organisation "
                            f"({caller.organization or 'none registered'}) as an agent")
    elif rtype == "Consent":
        named = ods_codes(as_list(resource.get("organization")) +
                          as_list(resource.get("performer")))
        if any(code != caller.organization for code in named):
            raise Forbidden("a feed's Consent may name only its own organisation "
                            f"({caller.organization or 'none registered'}) as organization "
                            "or performer")
        if is_privacy_consent(resource) and caller.organization not in named:
            raise Forbidden("a feed's patient-privacy Consent must name its own organisation "
                            f"({caller.organization or 'none registered'}) as organization "
                            f"or performer, by identifier ({ODS_SYSTEM})")


def _check_consent_patient(resource: dict[str, Any], base_url: str) -> None:
    """A patient-privacy Consent must name its patient as this server's Patient (relative,
    or absolute at the base the request came to): the consent check finds a person's
    Consents by that reference. One naming the patient at another address, or by
    identifier only, was stored and hid nothing (found by review). Judged as written,
    after a transaction has rewritten its references."""
    if resource.get("resourceType") != "Consent" or not is_privacy_consent(resource):
        return
    patient = resource.get("patient")
    ref = patient.get("reference") if isinstance(patient, dict) else None
    named = literal_reference(ref)
    here = isinstance(ref, str) and named is not None and named.type == "Patient" and (
        named.base is None or ref.startswith(f"{base_url.rstrip('/')}/Patient/"))
    if not here:
        raise Unprocessable(
            "a patient-privacy Consent must name its patient as Patient/<id> on this "
            f"server, not {str(ref)[:200]!r}: a Consent the gateway cannot find would "
            "hide nothing",
            expression="Consent.patient")


def _probing_criteria(criteria: list[Criterion]) -> list[Criterion]:
    return [c for c in criteria if c.kind == "has"
            or any(isinstance(p, ChainPredicate) for p in c.predicates)]


def _probing(search: SearchRequest) -> list[Criterion]:
    return _probing_criteria(search.query.criteria)


def _types_in(criteria: list[Criterion]) -> set[str]:
    out: set[str] = set()
    for c in criteria:
        for p in c.predicates:
            if isinstance(p, ChainPredicate):
                out.add(p.target_type)
                out |= _types_in(p.query.criteria)
            elif isinstance(p, HasPredicate):
                out.add(p.source_type)
                out |= _types_in(p.query.criteria)
    return out
