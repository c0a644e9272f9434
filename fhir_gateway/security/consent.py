"""Consent to share: a patient's `Consent` (scope `patient-privacy`) that says deny hides
their record from organisations that do not already hold it.

The deciding Consent is the person's latest active `patient-privacy` Consent: `provision.
type` deny hides, permit (or none) shows. "The person" is the Patient and every Patient
merged with it (`link` replaced-by / replaces, as an HL7 A40 leaves them): a merge moves
the objection to the surviving record, and the merged-away record and the old versions of
its resources, which still name it, stay hidden with it. "Latest" is by `dateTime`, but
never later than the Consent was stored (`meta.lastUpdated`): a date in the future would
otherwise outrank every later decision.
"Organisations that hold the record" are the ODS codes found on the record itself: the
agents of the Provenance written for its resources (what ingest records), the ownership
tags a partner feed's REST writes carry, and the Consent's own `organization`. A caller
whose `--org` is one of them sees the record; anyone else sees nothing of it (every
resource of the patient's compartment, the Patient included, and every Provenance about
one of them), unless they break the glass, which is recorded (see `access` and `audit`).

What a partner feed wrote over REST (it carries the partner tag) speaks for the writer's
own organisation only, the ODS tag the feed write path stamped on it: a Provenance agent
or Consent organization naming anyone else is not believed (the write path refuses such
resources; this also covers any stored before it did). A feed's Provenance holds the
record for its organisation only through the feed's own resources (`speaks_for`): one
targeting another partner's resource counts for nothing. A feed's permit that does not
name its own organisation is not a decision at all; a deny always is (it can only hide).
A feed's permit withdraws an objection only when its organisation recorded that
objection (the deny it follows): the patient withdraws it where they made it. A permit
counts only as a plain yes: one whose period has ended or not begun, or that narrows
itself (to some actors, purposes or data, or with nested provisions), is no decision,
since the gateway applies none of those limits. Any other
feed could otherwise open anyone's record to everyone, by saying so or after writing one
resource about them. Privacy Consents are read in full (past MAX_CONSENTS the record is
taken as objected to), so a flood of Consents cannot push the objection out of view.

Decisions are read from the store for each request (memoised on the request's caller,
never across requests), so a Consent written by any instance or by ingest applies at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import jsonio
from ..errors import NotFound
from ..fhir.repository import Repository
from ..ingest.model import PARTNER_TAG_SYSTEM
from ..references import literal_reference
from ..search.extract import patient_compartment
from ..search.values import BadDate, date_range, now_instant
from ..store.base import StoreSession
from ..store.query import Criterion, IndexQuery, ReferencePredicate, TokenPredicate

CONSENT_SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
MAX_RECORD_SCAN = 5000
#: privacy Consents read for one person; more is taken as an objection (fail closed)
MAX_CONSENTS = 1000
#: Patients of one person followed through merge links (`Patient.link`)
MAX_PERSON_IDS = 20
#: Patients read in one Patient's compartment (it, and those linking to it) at most
MAX_LINKED_ROWS = 100
_MERGE_LINKS = ("replaced-by", "replaces")
#: deleted Provenance targets looked up one by one (their last version) per Provenance
MAX_DELETED_TARGETS = 10
#: stands for the patients of a target not judged (past MAX_DELETED_TARGETS): whatever
#: it is among the patients behind is hidden from everyone consent applies to
UNJUDGED = "#unjudged"
_TARGET_MEMO = "consent.target-patients:"


@dataclass(frozen=True, slots=True)
class ConsentDecision:
    denied: bool
    holders: frozenset[str] = frozenset()  # ODS codes that hold the record (when denied)

    def hides_from(self, organization: str | None) -> bool:
        return self.denied and organization not in self.holders


ALLOWED = ConsentDecision(False)


def reference_ids(value: Any, rtype: str) -> list[str]:
    """Ids of the `rtype` references among FHIRPath result nodes (Reference or string)."""
    out = []
    for node in value:
        ref = node.get("reference") if isinstance(node, dict) else node
        named = literal_reference(ref)
        if named is not None and named.type == rtype:
            out.append(named.id)
    return out


def _merged_with(body: str | None) -> list[str]:
    """The ids of the Patients a stored Patient's merge links (`_MERGE_LINKS`) name."""
    if not body or '"link"' not in body:
        return []
    links = jsonio.loads_trusted(body).get("link") or []
    return [rid for link in (links if isinstance(links, list) else [])
            if isinstance(link, dict) and link.get("type") in _MERGE_LINKS
            for rtype, rid in local_refs([link.get("other")]) if rtype == "Patient"]


class ConsentPolicy:
    def __init__(self, repository: Repository) -> None:
        self.repository = repository
        self._params: dict[str, list[Any]] = {}

    def patients_behind(self, resource: dict[str, Any], memo: dict[str, Any]) -> list[str]:
        """The Patients whose record `resource` tells of: its compartment's and, for a
        Provenance, its targets' (ingest's Provenance names only the resources a record
        changed, which leaves it outside the compartment when the Patient was unchanged;
        it is hidden exactly when a target is) and, for a DetectedIssue, the current
        patients of what it implicates. `memo`: per request, never shared."""
        patients = self.patients_of(resource)
        rtype = resource.get("resourceType")
        if rtype == "Provenance":
            patients += self._target_patients(resource.get("target"), memo)
        elif rtype == "DetectedIssue":
            # it tells of the records it implicates: a decision since re-filed to a hidden
            # person must not be read through an issue about the person it was on
            patients += self._target_patients(resource.get("implicated"), memo)
        return patients

    def patients_of(self, resource: dict[str, Any]) -> list[str]:
        """The Patients whose compartment holds `resource` (R4 CompartmentDefinition)."""
        rtype = resource.get("resourceType")
        if rtype == "Patient":
            return [resource["id"]] if resource.get("id") else []
        params = self._params.get(rtype)
        if params is None:
            codes = patient_compartment().get(rtype, frozenset())
            registry = self.repository.registry
            params = [p for c in sorted(codes) if (p := registry.get(rtype, c)) is not None]
            self._params[rtype] = params
        out: list[str] = []
        for param in params:
            try:
                out += reference_ids(param.evaluate(resource), "Patient")
            except Exception:
                continue
        return out

    def _target_patients(self, references: Any, memo: dict[str, Any]) -> list[str]:
        """The patients of the non-Patient resources `references` name (a Provenance's
        targets): one read for all of them (a deleted target costs a look at its last
        version, up to MAX_DELETED_TARGETS)."""
        compartment = patient_compartment()
        wanted = {(t, i) for t, i in local_refs(references or [])
                  if t != "Patient" and t in compartment}
        todo = sorted(k for k in wanted if f"{_TARGET_MEMO}{k[0]}/{k[1]}" not in memo)
        if todo:
            found = self._current_patients(todo)
            missing = [k for k in todo if k not in found]
            for n, (rtype, rid) in enumerate(missing):
                # past the bound, not judged: fail closed (UNJUDGED hides what it is in)
                found[(rtype, rid)] = [UNJUDGED] if n >= MAX_DELETED_TARGETS else \
                    self.patients_of(last_written(self.repository, rtype, rid) or {})
            for rtype, rid in todo:
                memo[f"{_TARGET_MEMO}{rtype}/{rid}"] = found.get((rtype, rid), [])
        return [p for t, i in sorted(wanted)
                for p in memo.get(f"{_TARGET_MEMO}{t}/{i}", [])]

    def _current_patients(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
        types = sorted({t for t, _ in keys})
        ids = sorted({i for _, i in keys})
        query = IndexQuery(rtype=None, types=types, ids=ids, limit=len(types) * len(ids))
        out: dict[tuple[str, str], list[str]] = {}
        for row in self.repository.find(query).rows:
            if (row.rtype, row.rid) in keys and row.body:
                out[(row.rtype, row.rid)] = self.patients_of(jsonio.loads_trusted(row.body))
        return out

    def decide(self, patient_id: str, organization: str | None = None) -> ConsentDecision:
        """The person's decision. With `organization`, its holders are worked out for that
        organisation alone (`hides_from` is right for it, the holders set says nothing
        of others): far cheaper, which matters on every read of a hidden record."""
        person, complete = self.person(patient_id)
        consents = self._privacy_consents(person) if complete else None
        if consents is None:  # more than any person has, or the person not read in full:
            # judged as an objection
            return ConsentDecision(True, frozenset(self._holders(person, {},
                                                                 only=organization)))
        active = sorted((c for c in consents if c.get("status") == "active"
                         and _decides(c)), key=_decided_when, reverse=True)
        for i, consent in enumerate(active):
            if (consent.get("provision") or {}).get("type") == "deny":
                return ConsentDecision(True, frozenset(self._holders(
                    person, consent, only=organization)))
            writer = _writer_organization(consent)
            older_deny = next((c for c in active[i + 1:]
                               if (c.get("provision") or {}).get("type") == "deny"), None)
            if writer is None or older_deny is None or writer in _recorders(older_deny):
                return ALLOWED
            # another organisation's permit: it cannot withdraw an objection it did not
            # record (any feed could otherwise open anyone's record), so no decision
        return ALLOWED

    def _privacy_consents(self, person: list[str]) -> list[dict[str, Any]] | None:
        """Every `patient-privacy` Consent of the person, or None past MAX_CONSENTS: a
        decision is never made on part of them (a flood of others would push the
        objection out of view)."""
        query = IndexQuery(rtype="Consent", criteria=[
            Criterion("patient", "reference",
                      [ReferencePredicate("Patient", pid) for pid in person]),
            Criterion("scope", "token", [TokenPredicate(CONSENT_SCOPE_SYSTEM,
                                                        "patient-privacy")])],
            limit=MAX_CONSENTS + 1)
        rows = self.repository.find(query).rows
        if len(rows) > MAX_CONSENTS:
            return None
        return [jsonio.loads_trusted(r.body) for r in rows if r.body]

    def person_of(self, patient_id: str) -> list[str]:
        """`patient_id` and the Patients merged with it (`person`, without saying whether
        all were found: for the auditors' reports, which name what they find)."""
        return self.person(patient_id)[0]

    def person(self, patient_id: str,
               session: StoreSession | None = None) -> tuple[list[str], bool]:
        """`patient_id` and the Patients merged with it (`link` replaced-by / replaces),
        followed a level at a time both ways: the Patients each one's merge links name,
        and those whose merge links name it (a second merge rewrote the middle record's
        links, dropping its "replaces": from the survivor the first record merged away
        was out of reach, and its Consent hid nothing). One read per Patient: its
        compartment holds it and every Patient linking to it, by any kind of link. Also
        whether the person was read in full: not when a read was cut at MAX_LINKED_ROWS,
        or the person reached MAX_PERSON_IDS (Patients written to link to someone, by a
        feed say, could otherwise push the real merged record out of view). `session`:
        read in it (a write's transaction, a request's snapshot)."""
        person, level = [patient_id], [patient_id]
        while level:
            ids, level = sorted(level), []
            for pid in ids:
                rows = self.repository.find(IndexQuery(
                    rtype="Patient", compartment=pid, limit=MAX_LINKED_ROWS + 1),
                    session=session).rows
                if len(rows) > MAX_LINKED_ROWS:
                    return person, False
                for row in rows:
                    named = _merged_with(row.body)
                    for rid in named if row.rid == pid else [row.rid] if pid in named else []:
                        if rid in person:
                            continue
                        if len(person) >= MAX_PERSON_IDS:
                            return person, False
                        person.append(rid)
                        level.append(rid)
        return person, True

    def _holders(self, person: list[str], consent: dict[str, Any], *,
                 only: str | None = None) -> set[str]:
        """The ODS codes that hold the record of `person` (its Patients' ids). With
        `only`: {only} if it does, else empty; then a body that cannot name it (its text
        lacks the code: stored bodies are the gateway's own JSON, which never escapes a
        letter or digit) is not parsed, and the search stops at the first proof. Wrongly
        skipping a body could only hide more."""
        holders = set(vouched_codes(consent, ods_codes(consent.get("organization") or [])))
        if only is not None and only in holders:
            return {only}

        def may_name(body: str) -> bool:
            return only is None or only in body

        rows = [row for pid in person for row in self.repository.find(IndexQuery(
            rtype=None, compartment=pid, limit=MAX_RECORD_SCAN)).rows]
        patient_id = person[0]
        bodies: dict[tuple[str, str], str] = {}
        parsed: dict[tuple[str, str], dict[str, Any]] = {}

        def resource(key: tuple[str, str]) -> dict[str, Any]:
            if key not in parsed:
                parsed[key] = jsonio.loads_trusted(bodies[key]) if bodies.get(key) else {}
            return parsed[key]

        provenance: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row.body is None:
                continue
            key = (row.rtype, row.rid)
            bodies[key] = row.body
            if not may_name(row.body):
                continue
            for tag in _tags(resource(key)):
                if tag.get("system") == ODS_SYSTEM and tag.get("code"):
                    holders.add(tag["code"])
            if row.rtype == "Provenance":
                provenance[row.rid] = resource(key)
        if only is not None and only in holders:
            return {only}
        if ("Patient", patient_id) not in bodies:  # a Provenance may target the Patient
            parsed[("Patient", patient_id)] = last_written(self.repository, "Patient",
                                                           patient_id) or {}
            bodies[("Patient", patient_id)] = ""

        def held_by(prov: dict[str, Any]) -> list[str]:
            # its agents hold the record only if it speaks for something on the record
            if any(speaks_for(prov, resource(key)) for key in local_refs(prov.get("target"))
                   if key in bodies):
                return _agents(prov)
            return []

        for prov in provenance.values():
            holders.update(held_by(prov))
        if only is not None and only in holders:
            return {only}
        targets = [ReferencePredicate(rtype, rid) for rtype, rid in bodies]
        for i in range(0, len(targets), 200):
            query = IndexQuery(rtype="Provenance", criteria=[
                Criterion("target", "reference", targets[i:i + 200])], limit=MAX_RECORD_SCAN)
            for row in self.repository.find(query).rows:
                if row.body is None or row.rid in provenance or not may_name(row.body):
                    continue
                provenance[row.rid] = prov = jsonio.loads_trusted(row.body)
                holders.update(held_by(prov))
                if only is not None and only in holders:
                    return {only}
        return holders if only is None else holders & {only}


def _decided_when(consent: dict[str, Any]) -> tuple[str, str]:
    """When a Consent was decided, for ordering: its `dateTime` as a UTC instant, but no
    later than it was stored; then when it was stored."""
    stored = str((consent.get("meta") or {}).get("lastUpdated") or "")
    try:
        said = date_range(str(consent.get("dateTime") or ""))[0]
    except BadDate:
        said = ""
    return (min(said, stored) if said and stored else said or stored), stored


def _recorders(consent: dict[str, Any]) -> set[str]:
    """The organisations that recorded a Consent: those it names that its writer can
    speak for (`vouched_codes`), and a partner feed's own (its ODS tag)."""
    named = set(vouched_codes(consent, ods_codes(consent.get("organization") or [])))
    writer = _writer_organization(consent)
    return named | ({writer} if writer else set())


def _writer_organization(consent: dict[str, Any]) -> str | None:
    """The organisation a partner feed wrote `consent` for (its ODS tag), None for what
    the gateway wrote itself."""
    if not _feed_written(consent):
        return None
    return next((str(t["code"]) for t in _tags(consent)
                 if t.get("system") == ODS_SYSTEM and t.get("code")), "")


def last_written(repository: Repository, rtype: str, rid: str) -> dict[str, Any] | None:
    """The resource as last written, before any deletion (whose it was and whom it was
    about outlive it); None if there never was one, {} if its last two versions are both
    deletions. One read."""
    try:
        versions = repository.history(rtype=rtype, rid=rid, limit=2).versions
    except NotFound:
        return None
    live = next((v for v in versions if v.body), None)
    return jsonio.loads_trusted(live.body) if live is not None and live.body else {}


def is_privacy_consent(consent: dict[str, Any]) -> bool:
    codings = (consent.get("scope") or {}).get("coding") if isinstance(
        consent.get("scope"), dict) else None
    return any(isinstance(c, dict) and c.get("system") == CONSENT_SCOPE_SYSTEM
               and c.get("code") == "patient-privacy" for c in as_list(codings))


def vouched_codes(resource: dict[str, Any], codes: list[str]) -> list[str]:
    """The ODS codes among `codes` that the resource's writer can speak for: every one for
    what the gateway wrote itself (ingest carries no partner tag); for a partner feed's
    REST write, only the writer's own organisation, as the feed write path stamped it
    (`access._stamp`, which drops any ODS or partner tag the feed sent)."""
    if not _feed_written(resource):
        return codes
    own = {t.get("code") for t in _tags(resource) if t.get("system") == ODS_SYSTEM}
    return [c for c in codes if c in own]


def speaks_for(prov: dict[str, Any], target: dict[str, Any]) -> bool:
    """Whether Provenance `prov` may say who wrote `target`: one the gateway wrote itself
    (ingest: no partner tag) for anything; a partner feed's only for that partner's own
    resources (the same partner tag). Another partner's Provenance on a resource would
    take the credit for it: a crew's summary naming the wrong source for a CPR decision
    (and hiding a disagreement), a record hidden by consent opening to the writer's
    organisation. The feed write path refuses such targets (`access`); this also covers
    any stored before it did."""
    partners = {t.get("code") for t in _tags(prov) if t.get("system") == PARTNER_TAG_SYSTEM}
    return not partners or any(t.get("system") == PARTNER_TAG_SYSTEM and t.get("code") in
                               partners for t in _tags(target))


def _feed_written(resource: dict[str, Any]) -> bool:
    return any(t.get("system") == PARTNER_TAG_SYSTEM for t in _tags(resource))


def _tags(resource: dict[str, Any]) -> list[dict[str, Any]]:
    meta = resource.get("meta")
    tags = meta.get("tag") if isinstance(meta, dict) else None
    return [t for t in tags if isinstance(t, dict)] if isinstance(tags, list) else []


def _agents(prov: dict[str, Any]) -> list[str]:
    """The organisations a Provenance vouchably names as agents (record holders)."""
    agents = [a for a in prov.get("agent") or [] if isinstance(a, dict)]
    return vouched_codes(prov, ods_codes(a.get("who") for a in agents))


def _decides(consent: dict[str, Any]) -> bool:
    """Whether a Consent takes part in the decision. A deny always does (at worst it hides
    too much); so does what the gateway wrote itself. A feed's permit does only when it
    names its writer's organisation and no other, so no feed lifts an objection in another
    organisation's name."""
    provision = consent.get("provision")
    if isinstance(provision, dict) and provision.get("type") == "deny":
        return True
    if not _plain(provision):
        return False
    if not _feed_written(consent):
        return True
    named = ods_codes([*as_list(consent.get("organization")),
                       *as_list(consent.get("performer"))])
    return bool(named) and vouched_codes(consent, named) == named


#: a permit's provision elements that narrow it (to some actors, purposes, data, ...): the
#: gateway does not apply them, so a permit carrying one is not taken as a plain yes
_NARROWING = ("actor", "action", "securityLabel", "purpose", "class", "code",
              "dataPeriod", "data", "provision")


def _plain(provision: Any) -> bool:
    """Whether a permit's provision (None: a Consent without one) says yes to everyone, now:
    none of `_NARROWING`, and its period, if any, covering this moment. Anything else is
    no decision (the objection before it stands): reading a permit that ended, or one
    with a nested deny, as a plain yes showed a hidden record (found by review)."""
    if provision is None:
        return True
    if not isinstance(provision, dict) or any(provision.get(k) for k in _NARROWING):
        return False
    period = provision.get("period")
    if period is None:
        return True
    if not isinstance(period, dict):
        return False
    now = now_instant().rstrip("Z")  # (date_range gives UTC without the Z)
    try:
        start = period.get("start")
        end = period.get("end")
        if start is not None and date_range(str(start))[0] > now:
            return False
        return end is None or date_range(str(end))[1] >= now
    except BadDate:
        return False


def as_list(value: Any) -> list[Any]:
    """`value` when it is a JSON array, else empty (bodies are checked after access)."""
    return value if isinstance(value, list) else []


def local_refs(nodes: Any) -> list[tuple[str, str]]:
    """(type, id) of each Reference among `nodes` that names a resource as `Type/id`,
    relative, versioned or absolute (taken as this record's: the cautious reading)."""
    out = []
    for node in nodes if isinstance(nodes, list) else []:
        ref = node.get("reference") if isinstance(node, dict) else None
        named = literal_reference(ref)
        if named is not None:
            out.append((named.type, named.id))
    return out


def ods_codes(references: Any) -> list[str]:
    """The ODS codes of References given by identifier (how Provenance agents and Consent
    organizations name partners)."""
    out = []
    for ref in references:
        ident = ref.get("identifier") if isinstance(ref, dict) else None
        if isinstance(ident, dict) and ident.get("system") == ODS_SYSTEM and ident.get("value"):
            out.append(str(ident["value"]))
    return out
