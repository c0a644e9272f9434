"""The current facts of one person's record, per section of the emergency summary.

Where they come from: one bounded read per type the summary uses of the Patient's
compartment (R4 CompartmentDefinition/patient; the audit trail keeps AuditEvents out of
it; types it does not use are never read, so they cannot crowd out the ones it does), then
the Provenance of each resource used (those that also target the Patient are in the
compartment already; for the others, one bounded search on `target` per resource). Each
resource passes `visible` (the interceptors' `can_see`) before it is used: what this
caller may not see is neither shown nor allowed to shape what is shown. When a read of a
type is cut off by its bound, the summary says, in its headline, that it may be incomplete.

What "current" means (the rules a crew relies on):
- Source: the partner named (ODS code) by the Provenance of the version that last changed
  the resource's content: its current version's, except that versions an A40 merge made by
  only re-pointing the resource to the surviving Patient (Provenance activity "merge",
  `pipeline.merge.REPOINT_ACTIVITY`) are passed over to the version before them. A
  Provenance naming the resource without a version also counts. A feed's REST write is
  its tags' (the partner and ODS code the gateway stamped on it): its Provenance counts
  only when it names that same ODS code. Only an ODS code identifies a source: a
  Provenance naming a person or organisation without one leaves the resource "source not
  recorded" (the name is shown), and then each resource is a source of its own
  (unsourced facts are never merged into one source, nor supersede each other).
- CPR decision: an Observation coded 304251008 valued 450476008 / 450475007, or an
  Observation coded 450476008 / 450475007 itself (date: `effective[x]`, a period by its
  start); an active Flag coded 450476008 / 450475007 (the NHS England end of life model; date:
  `period.start`); an active advance-directive Consent (scope `adr`) of category `dnr`,
  i.e. not for CPR (date: `dateTime`). A resuscitation-status record (Observation or Flag
  coded 304251008) whose value the summary cannot read is a decision "not understood",
  shown with its words, source and date, and it counts in conflicts: never dropped.
  Per source only the newest decision counts (by date, compared at the coarser precision
  of the two, then by when it was stored): older ones are superseded and not shown. Two
  that the dates cannot order (the same day, one without a time; or one undated) and that
  differ are both current: a conflict, not a choice.
- Review date: `Flag.period.end`, `Consent.provision.period.end`, or on an Observation the
  review-date extension (`terms.REVIEW_DATE_EXTENSION`). A decision whose review date is
  before today (Europe/London; a dateTime counts on its London day, a partial date such as
  "2026-06" at the end of its period) has expired: it is shown as expired, never as
  current, and its source has no current decision.
- Conflict: the sources' current decisions differ. All are shown, newest first, with
  dates and sources; none is chosen.
- Death: the Patient's `deceased[x]`, or a current place-of-death record: either means the
  record says the person has died.
- Preferred place of care / of death, place of death, ReSPECT and other end of life care
  plans, ADRT / LPA, end of life alerts: the newest per source and kind. Plans count when
  active or on hold and not replaced (`replaces`) by a plan of the same source (ODS code)
  that has taken effect (active, on hold, completed, revoked; never a draft or one of
  unknown status). Another source's plan that says it replaces one leaves it shown, with
  the claim said. A plan whose period has ended is shown as expired.
- Contacts: every active RelatedPerson; care team: active CareTeams and the registered GP.
- Records marked entered-in-error or cancelled are never facts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ..fhir.derivations import is_derived
from ..fhir.interactions import FhirContext, visible
from ..fhir.request import FhirRequest
from ..ingest import IngestError, Mapping, cached_mapping
from ..pipeline.merge import ELEMENT_STAMPS, is_repoint, said_not_deceased
from ..pipeline.provenance import LAST_FED
from ..references import literal_reference
from ..security.consent import PARTNER_TAG_SYSTEM, ConsentPolicy, ods_codes, speaks_for
from ..store.base import StoredVersion
from ..store.query import Criterion, IndexQuery, ReferencePredicate, SortKey
from . import terms as t
from .dates import after, day, has_passed, review_day, sortable, span

#: Each type of the compartment is read in one query of at most this many resources; a
#: record that holds more is summarised from the first ones and the summary says, in its
#: headline, that it may be incomplete.
MAX_COMPARTMENT = 5000
#: Provenance read per resource (newest first: one per version the partners wrote).
MAX_PROVENANCE = 50
#: Types the summary reads; everything else in the compartment is skipped unparsed.
USED_TYPES = frozenset({"Observation", "CarePlan", "RelatedPerson", "Consent", "Flag",
                        "CareTeam", "DetectedIssue", "Provenance"})
#: what the summary reads, in order: the Patient and every type it uses (the operation
#: refuses a caller whose scopes cannot read all of them)
READ_TYPES = ("Patient", *sorted(USED_TYPES))
ACTIVE_PLAN = frozenset({"active", "on-hold"})
#: plan statuses that have taken effect: only such a plan replaces what it `replaces` (a
#: draft, or one whose status is unknown, has replaced nothing yet)
TOOK_EFFECT = ACTIVE_PLAN | {"completed", "revoked"}
ON_HOLD = "ON HOLD: its author has suspended it; check before acting on it"
LPA_HELD = "Holds Lasting Power of Attorney for health and welfare"
#: a contact's relationship end still to come, in words (not a date to review by)
RELATIONSHIP_ENDS = "relationship ends"
#: a decision the summary holds but cannot read (`Fact.code`)
NOT_UNDERSTOOD = "not-understood"
#: a record whose value is missing, in words
NO_VALUE = "no value recorded"


@dataclass(frozen=True, slots=True)
class Source:
    """Who said it: the organisation (ODS code) a Provenance or a feed's tags name, and
    when received. Only the ODS code identifies a source (`key`): a name alone never makes
    two facts one source's, so neither can supersede the other."""

    ods: str | None = None
    name: str | None = None  # the organisation's (or partner feed's) name
    recorded: str | None = None  # when the gateway received it
    record: str | None = None  # the partner's source record, in words
    provenance: dict[str, Any] | None = None
    #: a person a Provenance names without an organisation's ODS code: shown, never a key
    person: str | None = None

    @property
    def key(self) -> str:
        return self.ods or ""

    @property
    def known(self) -> bool:
        return bool(self.ods or self.name)


NO_SOURCE = Source()
#: what the Patient itself says (GP practice, death) was merged from several partners'
#: records: no single Provenance speaks for one element of it
MERGED = "the person's details as merged from partners' records"


@dataclass(frozen=True, slots=True)
class Fact:
    """One current fact: the resource that holds it, in words, with its source and date."""

    kind: str  # cpr | plan | place | death-place | legal | contact | team | alert | issue
    resource: dict[str, Any]
    text: str
    date: str | None = None
    code: str | None = None  # machine value (the CPR decision, a place code, ...)
    group: str = ""  # facts of one source are compared within a group (kind of place...)
    details: tuple[str, ...] = ()
    review: str | None = None
    expired: bool = False
    source: Source = NO_SOURCE
    #: sources of other partners' plans that say they replace this one (not honoured)
    claimed_by: tuple[Source, ...] = ()
    #: False when its date must not decide what it replaces (not confirmed, or dated
    #: after today): it is shown beside its source's others, never over them
    orderable: bool = True
    #: what its date is, where not what its kind's dates are (`words.DATE_WORDS`)
    date_words: str | None = None
    #: False when it must not replace its source's older facts, though newer ones replace
    #: it (a decision for a period only)
    replaces: bool = True
    #: what its review date is, where not a date to review by (a relationship's end)
    review_words: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.resource['resourceType']}/{self.resource['id']}"

    @property
    def newness(self) -> tuple[str, str]:
        return sortable(self.date), str((self.resource.get("meta") or {})
                                         .get("lastUpdated") or "")


@dataclass(slots=True)
class Facts:
    patient: dict[str, Any]
    today: date
    patient_source: Source = NO_SOURCE
    cpr: list[Fact] = field(default_factory=list)  # current decisions, newest first
    cpr_expired: list[Fact] = field(default_factory=list)
    plans: list[Fact] = field(default_factory=list)  # ReSPECT first, then other plans
    places: list[Fact] = field(default_factory=list)  # preferred places, newest first
    death_places: list[Fact] = field(default_factory=list)
    legal: list[Fact] = field(default_factory=list)
    contacts: list[Fact] = field(default_factory=list)
    team: list[Fact] = field(default_factory=list)
    alerts: list[Fact] = field(default_factory=list)
    #: the alerts that mention CPR or resuscitation (in their words, not coded)
    cpr_alerts: list[Fact] = field(default_factory=list)
    last_fed: str | None = None
    truncated: bool = False
    #: said first with the CPR decision: how the record was found when that is not plain
    #: (an NHS number or id merged into this record)
    found_as: str | None = None
    #: "Type/id" -> the stored JSON text of each resource read (sent as is, not re-encoded)
    bodies: dict[str, str] = field(default_factory=dict)
    #: partner feeds whose newest word is that the person has not died (HL7 PID-30 N),
    #: while another's death stands: a disagreement the summary shows, never settles
    alive_said_by: tuple[str, ...] = ()

    @property
    def conflict(self) -> bool:
        return len({f.code for f in self.cpr}) > 1

    @property
    def deceased(self) -> str | None:
        """The date (or "yes") of death the Patient holds, else None."""
        when = self.patient.get("deceasedDateTime")
        if when:
            return str(when)
        return "yes" if self.patient.get("deceasedBoolean") is True else None

    @property
    def died(self) -> bool:
        """Whether the record says this person has died: the Patient says so, or a
        partner has recorded a place of death."""
        return bool(self.deceased or self.death_places)

    @property
    def has_plan(self) -> bool:
        """Whether any emergency care plan is recorded (CPR, ReSPECT, ADRT, LPA)."""
        return bool(self.cpr or self.cpr_expired or self.plans or self.legal)

    def cited(self) -> list[Fact]:
        seen: set[str] = set()
        out = []
        for f in (*self.death_places, *self.cpr, *self.cpr_expired, *self.plans,
                  *self.places, *self.legal, *self.contacts, *self.team, *self.alerts):
            if f.ref not in seen:
                seen.add(f.ref)
                out.append(f)
        return out


# -- gathering --------------------------------------------------------------------------


def gather(ctx: FhirContext, req: FhirRequest, patient: dict[str, Any], *,
           today: date) -> Facts:
    """The facts of `patient` (already read and visible) that this caller may see."""
    pid = patient["id"]
    resources: list[dict[str, Any]] = []
    bodies: dict[str, str] = {}
    # the Patients merged into this one too: a partner whose system knows only the
    # merged-away record goes on writing to it (its later DNACPR must not be missed)
    person, whole = ConsentPolicy(ctx.repository).person(pid, ctx.session)
    rows, truncated = [], not whole  # merged records left unread: maybe not every fact
    for each in person:
        found, cut = _compartment_rows(ctx, each)
        rows += found
        truncated |= cut
    whom = {f"Patient/{each}" for each in person}
    for row in rows:
        if f"{row.rtype}/{row.rid}" in bodies:
            continue  # in two of the person's compartments
        resource = visible(ctx, req, row)
        if resource is not None and row.body is not None \
                and _about(resource, whom, req.base_url):
            resources.append(resource)
            bodies[f"{row.rtype}/{row.rid}"] = row.body
    provenances = [r for r in resources if r["resourceType"] == "Provenance"]
    candidates = [f for r in resources for f in _facts_of(r, today)]
    candidates += _patient_facts(patient) + _patient_contacts(patient, today)
    replacing = [(r, refs) for r in resources if r["resourceType"] == "CarePlan"
                 and r.get("status") in TOOK_EFFECT and (refs := _replaces(r))]
    sources = _sources(ctx, req, [patient, *(f.resource for f in candidates),
                                  *(r for r, _ in replacing)], provenances, bodies)
    merged = Source(name=MERGED, recorded=(patient.get("meta") or {}).get("lastUpdated"))
    candidates = [dataclasses.replace(f, source=merged if f.resource is patient
                                      else sources.get(f.ref, NO_SOURCE))
                  for f in candidates]
    claims: dict[str, list[Source]] = {}
    for r, refs in replacing:
        for ref in refs:
            claims.setdefault(ref, []).append(sources.get(_plain(r), NO_SOURCE))
    facts = _select(patient, candidates, today, claims)
    facts.patient_source = sources.get(f"Patient/{pid}", NO_SOURCE)
    facts.truncated = truncated
    if ctx.session is not None and facts.died:
        times = ctx.session.record_get(ELEMENT_STAMPS, f"Patient/{pid}") or {}
        since = facts.deceased if facts.deceased != "yes" else None
        if not facts.deceased:
            since = max((f.date for f in facts.death_places if f.date), key=sortable,
                        default=None)
        facts.alive_said_by = tuple(_partner_name(p) for p in
                                    said_not_deceased(patient, times, since))
    # what partners fed: the gateway's own derivations (a conflict issue a daily refresh
    # rewrites) would make a stale record look freshly fed
    times = [str((r.get("meta") or {}).get("lastUpdated") or "") for r in (patient, *resources)
             if not is_derived(r)]
    times += [received_at(p) or "" for p in provenances]
    times += [s.recorded or "" for s in sources.values()]
    if ctx.session is not None:  # a delivery that changed nothing fed it too
        fed = ctx.session.record_get(LAST_FED, f"Patient/{pid}") or {}
        times += [v for v in fed.values() if isinstance(v, str)]
    facts.last_fed = max((x for x in times if x), key=sortable, default=None)
    facts.bodies = bodies
    return facts


#: the element that says whom a resource of each type the summary reads is about
_ABOUT = {"Observation": "subject", "CarePlan": "subject", "Flag": "subject",
          "CareTeam": "subject", "Consent": "patient", "DetectedIssue": "patient",
          "RelatedPerson": "patient"}


def _about(resource: dict[str, Any], person: set[str], base_url: str) -> bool:
    """Whether `resource` is about the person (one of `person`'s "Patient/id"). The
    compartment holds more: a decision naming the person as its performer, a plan as its
    author, is another person's fact, and must never be shown as theirs. (A Provenance is
    read for its targets, whoever it names.)"""
    element = _ABOUT.get(resource["resourceType"])
    if element is None:
        return True
    ref = resource.get(element)
    named = _named(ref, base_url)
    if resource["resourceType"] == "CareTeam" and (named is None or named[0] != "Patient"):
        # a team about a household (a Group) or no one: theirs when they are a member
        return any((m := _named(p.get("member"), base_url)) is not None
                   and f"{m[0]}/{m[1]}" in person
                   for p in _dicts(resource.get("participant")))
    return named is not None and f"{named[0]}/{named[1]}" in person


def _named(ref: Any, base_url: str) -> tuple[str, str] | None:
    """The (type, id) a Reference names on this server (relative, or under its base)."""
    named = literal_reference(ref.get("reference")) if isinstance(ref, dict) else None
    if named is None or (named.base is not None
                         and _local(named.unversioned, base_url) == named.unversioned):
        return None
    return named.type, named.id


def between_partners(decisions: list[Fact]) -> bool:
    """Whether differing decisions are each a different, known partner's: only then is it
    partners who disagree (one partner's own undated decisions, or ones whose recorder is
    not on the record, are records that disagree)."""
    sources = [f.source.key for f in decisions]
    return all(sources) and len(set(sources)) == len(sources)


def _compartment_rows(ctx: FhirContext, pid: str) -> tuple[list[StoredVersion], bool]:
    """The patient's resources of the types the summary uses, and whether some were left
    unread. One bounded read usually holds them all; when it does not, each type is read
    on its own (bounded too), so a type the summary uses is never crowded out by another
    (thousands of Observations must not push the Consents out of the read)."""
    def read(types: list[str]) -> list[StoredVersion]:
        return ctx.repository.find(IndexQuery(rtype=None, compartment=pid, types=types,
                                              limit=MAX_COMPARTMENT + 1),
                                   session=ctx.session).rows

    rows = read(sorted(USED_TYPES))
    if len(rows) <= MAX_COMPARTMENT:
        return rows, False
    rows, truncated = [], False
    for rtype in sorted(USED_TYPES):
        found = read([rtype])
        # Provenance cut off loses no fact: each fact's is searched for by its target.
        truncated |= len(found) > MAX_COMPARTMENT and rtype != "Provenance"
        rows += found[:MAX_COMPARTMENT]
    return rows, truncated


def _select(patient: dict[str, Any], candidates: list[Fact], today: date,
            claims: dict[str, list[Source]]) -> Facts:
    """`claims`: per plan, the sources of the plans that say they replace it and have
    taken effect, whatever their status now (a form replaced stays replaced when its
    replacement is revoked)."""
    by_kind: dict[str, list[Fact]] = {}
    for f in candidates:
        if f.review and review_day(f.review) is None and UNREADABLE_REVIEW not in f.details:
            f = dataclasses.replace(f, details=(*f.details, UNREADABLE_REVIEW))
        f = dataclasses.replace(f, expired=has_passed(f.review, today))
        if _unconfirmed(f.resource):
            # a preliminary decision must not replace the partner's final one
            f = dataclasses.replace(f, orderable=False)
        if after(f.date, today) and f.date_words == "started":
            # a plan that starts later: said so, and it replaces nothing yet
            f = dataclasses.replace(f, orderable=False, date_words="starts")
        elif after(f.date, today):
            # a slip of the year (2062 for 2026) must not fix a decision for decades
            f = dataclasses.replace(f, orderable=False, details=(*f.details, FUTURE_DATE))
        if f.kind in ("contact", "lpa-holder") and f.expired:
            if f.kind == "lpa-holder":
                continue  # the relationship has ended: they hold no power of attorney now
            f = dataclasses.replace(f, code=None, expired=False, review=None, details=(
                *(d for d in f.details if d != LPA_HELD), f"Relationship ended {day(f.review)}"))
        by_kind.setdefault(f.kind, []).append(f)
    decisions = newest_per_source(by_kind.get("cpr", []))
    plans = _not_replaced(by_kind.get("plan", []), claims)
    # a partner's DetectedIssue is an alert too ("signed DNACPR form seen at home")
    alerts: list[Fact] = []
    cpr_alerts: list[Fact] = []
    for f in by_kind.get("issue", []) + newest_per_source(by_kind.get("alert", [])):
        if _mentions_cpr(f):  # read once: shown with its CPR words, and pointed to
            f = _with_cpr_words(f)
            cpr_alerts.append(f)
        alerts.append(f)
    plans = sorted(newest_per_source(plans), key=lambda f: f.group)  # stable: newest first
    legal = newest_per_source(by_kind.get("legal", []))
    # a plan or an advance decision that records CPR (coded in a plan's activity, or in
    # words: an ADRT refusing CPR) is pointed to as an alert is: the decision the crew
    # needs may be written only there
    cpr_alerts += [p for f in (*plans, *legal) if (p := _saying_cpr(f)) is not None]
    return Facts(
        patient=patient, today=today,
        cpr=[f for f in decisions if not f.expired],
        cpr_expired=[f for f in decisions if f.expired],
        plans=plans,
        places=newest_per_source(by_kind.get("place", [])),
        death_places=newest_per_source(by_kind.get("death-place", [])),
        legal=legal + by_kind.get("lpa-holder", []),
        contacts=by_kind.get("contact", []),
        team=by_kind.get("team", []),
        alerts=alerts,
        cpr_alerts=cpr_alerts,
    )


def _not_replaced(plans: list[Fact], claims: dict[str, list[Source]]) -> list[Fact]:
    """The plans no plan of their own source replaces. A partner replaces only its own
    forms: another's plan that says it replaces one leaves both shown, the claim said."""
    out = []
    for f in plans:
        by = claims.get(f.ref, [])
        if any(s.key and s.key == f.source.key for s in by):
            continue
        out.append(dataclasses.replace(f, claimed_by=tuple(by)) if by else f)
    return out


def _saying_cpr(plan: Fact) -> Fact | None:
    """A plan or advance decision with the words that say CPR shown, if it says CPR: in
    words, or coded in a plan's activity (a ReSPECT plan's "not for attempted CPR"); else
    None."""
    coded = [t.CPR_WORDS[d] for a in _dicts(plan.resource.get("activity"))
             if isinstance(a.get("detail"), dict)
             and (d := t.cpr_decision(a["detail"].get("code")))]
    said = t.plan_cpr_texts(plan.text, *_alert_concepts(plan.resource))
    if not coded and not said:
        return None
    plan = _with_cpr_words(plan, [x for x in said if x != plan.text])
    return dataclasses.replace(plan, details=(
        *plan.details, *(f"Its activity records: {w}" for w in dict.fromkeys(coded))))


def _mentions_cpr(alert: Fact) -> bool:
    return t.mentions_cpr(alert.text, *_alert_concepts(alert.resource))


def _alert_concepts(r: dict[str, Any]) -> list[Any]:
    """What an alert says besides its line: its code and value, a plan's title,
    description and categories, its notes, a consent's document title, and a
    DetectedIssue's evidence and mitigations ("DNACPR form seen; crew told" may be said
    only there)."""
    attachment = r.get("sourceAttachment") if isinstance(r.get("sourceAttachment"),
                                                         dict) else {}
    out: list[Any] = [r.get("code"), r.get("valueCodeableConcept"), r.get("valueString"),
                      r.get("title"), r.get("description"), *_dicts(r.get("category")),
                      *(n.get("text") for n in _dicts(r.get("note"))),
                      attachment.get("title")]
    if r.get("resourceType") == "DetectedIssue":
        out += [m.get("action") for m in _dicts(r.get("mitigation"))]
        for e in _dicts(r.get("evidence")):
            out += _dicts(e.get("code"))
            out += [d.get("display") for d in _dicts(e.get("detail"))]
    for a in _dicts(r.get("activity")):  # a plan's
        detail = a.get("detail") if isinstance(a.get("detail"), dict) else {}
        out += [detail.get("code"), detail.get("description")]
    return out


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def _with_cpr_words(alert: Fact, texts: list[str] | None = None) -> Fact:
    """An alert that says CPR, with the words that say it shown: the headline sends the
    crew to read it, and its one line of text can leave them out (a coding's display
    shown over the code's text, a value, the code beside a DetectedIssue's detail). Each
    such text its line (or its details) does not already hold is shown: a line saying
    "DNACPR" must not hide a text beside it saying the DNACPR was withdrawn. `texts`: the
    texts that say CPR, where not an alert's (a plan's, `terms.plan_cpr_texts`)."""
    r = alert.resource
    shown = {_plain_words(x) for line in (alert.text, *alert.details)
             for x in (line, *line.split(": "))}
    texts = t.cpr_texts(*_alert_concepts(r)) if texts is None else texts
    said = [x for x in texts if _plain_words(x) not in shown]
    if not said:
        return alert
    return dataclasses.replace(alert, details=(*alert.details, *(f"Says: {x}" for x in said)))


def _plain_words(text: str) -> str:
    """`text` as compared for "already shown": case and spacing aside."""
    return " ".join(text.casefold().split())


def _partner_name(partner: str) -> str:
    """A partner feed as the crew should read it: its name and ODS code."""
    mapping = _mapping_of(partner)
    if mapping is None:
        return partner or "a partner not recorded"
    return f"{mapping.name} ({mapping.ods_code})"


def _mapping_of(partner: str) -> Mapping | None:
    """The partner's mapping (name, ODS code), None for a partner the gateway has none of."""
    try:
        return cached_mapping(partner)
    except IngestError:
        return None


def newest_per_source(facts: Iterable[Fact]) -> list[Fact]:
    """Per (source, group), the newest fact; all of them newest first.

    "Newest" is a partial order: dates are compared at the coarser precision of the two
    (a date-only value is no earlier than a time on the same day), and an undated fact
    cannot be ordered at all. A source's facts that no other of its facts is known to
    follow are all current; of those, one per value (`code`; a fact without one, such as
    a plan, is a value of its own) is kept (`_preferred`: a current one before an expired
    one, then the newer), so values the dates cannot order that disagree are all shown
    (a conflict), never one picked. A fact without a known
    source is a source of its own: unsourced facts of different resources are never taken
    for one partner's."""
    groups: dict[tuple[str, str], list[Fact]] = {}
    for f in facts:
        key = (f.source.key or f"unsourced:{f.ref}", f.group)
        groups.setdefault(key, []).append(f)
    out: list[Fact] = []
    for group in groups.values():
        # f is known to be older than g when f's latest possible moment is before g's
        # earliest: so the current ones are those whose latest is not before the
        # latest earliest moment of the group (undated ones always are)
        spans = [(f, span(f.date) if f.orderable else None) for f in group]
        latest_start = max((m[0] for f, m in spans if m and f.replaces), default=None)
        top = [f for f, m in spans if m is None or latest_start is None
               or m[1] >= latest_start]
        by_value: dict[str, Fact] = {}
        for f in top:
            # a fact with no coded value (a plan: its words are its value) is a value of
            # its own: two forms the dates cannot order are both shown, never one of them
            value = f"code:{f.code}" if f.code is not None else f"ref:{f.ref}"
            if value not in by_value or _preferred(f) > _preferred(by_value[value]):
                by_value[value] = f
        out += by_value.values()
    return sorted(out, key=lambda f: f.newness, reverse=True)


#: Observation statuses that record a decision made (others: registered, preliminary,
#: unknown; cancelled and entered-in-error are no fact at all)
CONFIRMED = frozenset({"final", "amended", "corrected"})
FUTURE_DATE = "Dated after today: check the date (it does not replace the others)"


def _unconfirmed(resource: dict[str, Any]) -> bool:
    return resource.get("resourceType") == "Observation" and \
        resource.get("status") not in (None, *CONFIRMED)


def _preferred(fact: Fact) -> tuple[bool, tuple[str, str]]:
    """Which of one source's same-value facts the dates cannot order is shown: a current
    one before an expired one (an expired one stored later must not hide a current
    decision), then the more precisely dated and newer, then the last stored."""
    return not fact.expired, fact.newness


#: said with a fact whose review date cannot be read as a date
UNREADABLE_REVIEW = ("A review date was recorded but cannot be read: check with the source "
                     "whether this decision is still current")


def _replaces(resource: dict[str, Any]) -> list[str]:
    out = []
    for ref in resource.get("replaces") or []:
        named = literal_reference(ref.get("reference") if isinstance(ref, dict) else None)
        if named is not None:
            out.append(f"{named.type}/{named.id}")
    return out


# -- sources (Provenance) ---------------------------------------------------------------


def _sources(ctx: FhirContext, req: FhirRequest, resources: list[dict[str, Any]],
             known: list[dict[str, Any]], bodies: dict[str, str]) -> dict[str, Source]:
    """Per "Type/id", the source of its current version (Provenance read are added to
    `bodies`)."""
    by_target: dict[str, list[dict[str, Any]]] = {}
    seen: set[str] = set()

    def index(prov: dict[str, Any]) -> None:
        seen.add(prov["id"])
        for target in prov.get("target") or []:
            ref = target.get("reference") if isinstance(target, dict) else None
            if isinstance(ref, str):
                by_target.setdefault(_local(ref, req.base_url), []).append(prov)

    def read(targets: list[dict[str, Any]]) -> bool:
        """Read the Provenance of `targets`, newest first; False when the bound cut it."""
        limit = MAX_PROVENANCE * len(targets)
        query = IndexQuery(rtype="Provenance", criteria=[Criterion("target", "reference", [
            ReferencePredicate(r["resourceType"], r["id"]) for r in targets])],
            sort=[SortKey("recorded", "date", descending=True)], limit=limit)
        rows = ctx.repository.find(query, session=ctx.session).rows
        for row in rows:
            if row.rid not in seen:
                prov = visible(ctx, req, row)
                if prov is not None and row.body is not None:
                    bodies[f"Provenance/{row.rid}"] = row.body
                    index(prov)
        return len(rows) < limit

    for prov in known:
        index(prov)
    unique = list({_plain(r): r for r in resources}.values())
    # The resources still without a source: one search for all of them (it drives from
    # the `target` index). If the bound cut it, one resource's many Provenances may have
    # crowded out another's: then each is read on its own, as the bound means per resource.
    missing = [r for r in unique if _authored(r, by_target) is None]
    if missing and not read(missing) and len(missing) > 1:
        for r in missing:
            # Rows came newest first: if any of r's own (versioned) Provenances came,
            # its newest did, and reading r alone could not change its source.
            if _authored(r, by_target) is None:
                read([r])
    out = {}
    partner_ods: dict[str, str | None] = {}
    for r in unique:
        provs = _authored(r, by_target) or [p for p in by_target.get(_plain(r)) or []
                                            if speaks_for(p, r)]
        named = source_of(max(provs, key=lambda p: sortable(p.get("recorded")))) \
            if provs else None
        out[_plain(r)] = _credited(named, _tagged_source(r, partner_ods))
    return out


def _credited(named: Source | None, tagged: Source) -> Source:
    """The source a resource is credited to, from its Provenance (`named`) and its tags.

    A partner feed's REST write carries the tags the gateway stamped on it (its partner
    and organisation): they say whose it is. Its Provenance counts only when it names that
    same organisation (it adds when received and the source record); one naming another
    organisation, or none, would let a feed credit its decision to someone else, or make
    two partners' decisions one source's and hide their disagreement. Otherwise the
    Provenance's organisation; a Provenance naming no organisation leaves the resource
    a source of its own (its person's name is shown, never used to group)."""
    if not tagged.known:
        return named or NO_SOURCE
    if named is not None and named.ods and named.ods == tagged.ods:
        return named
    return dataclasses.replace(tagged, person=named.person if named else None)


def _authored(resource: dict[str, Any],
              by_target: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]] | None:
    """The Provenances of the version that last changed `resource`'s content: its current
    version's, passing over versions a merge only re-pointed to the surviving Patient
    (their Provenance names the partner that sent the merge, not the content's author);
    None when that version has no Provenance read."""
    version = str((resource.get("meta") or {}).get("versionId") or "")
    while version:
        # only a Provenance that may speak for the resource: another partner's would
        # take the credit for it (and hide a disagreement with it)
        provs = [p for p in by_target.get(f"{_plain(resource)}/_history/{version}") or []
                 if speaks_for(p, resource)]
        if not provs:
            return None
        authored = [p for p in provs if not is_repoint(p)]
        if authored:
            return authored
        version = str(int(version) - 1) if version.isdigit() and int(version) > 1 else ""
    return None


def source_of(prov: dict[str, Any]) -> Source:
    """The organisation a Provenance names (the first agent's `who` or `onBehalfOf` with
    an ODS code, and its display), and the first person it names by display only."""
    ods = name = person = None
    for agent in prov.get("agent") or []:
        if not isinstance(agent, dict):
            continue
        for who in (agent.get("who"), agent.get("onBehalfOf")):
            if not isinstance(who, dict):
                continue
            code = next(iter(ods_codes([who])), None)
            display = str(who["display"]) if who.get("display") else None
            if code and ods is None:
                ods, name = code, display
            elif not code and person is None:
                person = display
    record = None
    for entity in prov.get("entity") or []:
        what = entity.get("what") or {}
        if entity.get("role") == "source" and isinstance(what, dict):
            record = what.get("display") or (what.get("identifier") or {}).get("value")
    return Source(ods=ods, name=name, recorded=received_at(prov), record=record,
                  provenance=prov, person=person)


def received_at(prov: dict[str, Any]) -> str | None:
    """When a Provenance says its target was received: its `recorded`, the writer's own
    word, but never later than the gateway stored the Provenance (a clock error or a
    typo saying 2030 would make a stale record look fresh to a crew)."""
    recorded = prov.get("recorded")
    stored = (prov.get("meta") or {}).get("lastUpdated")
    if isinstance(stored, str) and (not isinstance(recorded, str)
                                    or sortable(recorded) > sortable(stored)):
        return stored
    return recorded if isinstance(recorded, str) else None


def _tagged_source(resource: dict[str, Any], partner_ods: dict[str, str | None]) -> Source:
    """The partner and organisation the gateway stamped on a feed's REST write (a partner
    tag without an organisation's: that partner's ODS code from its mapping);
    `partner_ods` remembers the mappings read."""
    tags = [g for g in (resource.get("meta") or {}).get("tag") or [] if isinstance(g, dict)]
    ods = next((str(g["code"]) for g in tags if g.get("system") == t.ODS_SYSTEM
                and g.get("code")), None)
    partner = next((str(g["code"]) for g in tags if g.get("system") == PARTNER_TAG_SYSTEM
                    and g.get("code")), None)
    if not (ods or partner):
        return NO_SOURCE
    if ods is None and partner is not None:
        if partner not in partner_ods:
            mapping = _mapping_of(partner)  # (looking checks the files: once per summary)
            partner_ods[partner] = (mapping.ods_code or None) if mapping else None
        ods = partner_ods[partner]
    return Source(ods=ods, name=partner,
                  recorded=(resource.get("meta") or {}).get("lastUpdated"))


def _plain(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _local(ref: str, base_url: str) -> str:
    if base_url and ref.startswith(base_url + "/"):
        return ref[len(base_url) + 1:]
    return ref


# -- what each resource says ------------------------------------------------------------


def _facts_of(r: dict[str, Any], today: date) -> list[Fact]:
    if r.get("status") in t.NOT_A_FACT:
        return []
    if r["resourceType"] in _DAY_READERS:
        return _DAY_READERS[r["resourceType"]](r, today)
    reader = _READERS.get(r["resourceType"])
    facts = reader(r) if reader else []
    if not facts and (unread := _unread_saying_cpr(r)):
        return [unread]
    return facts


#: the current records the summary reads by their codes alone, with what they are called
#: and when they were made; one under codes it does not know
_UNREAD: dict[str, tuple[str, Callable[[dict[str, Any]], bool],
                         Callable[[dict[str, Any]], Any]]] = {
    "Observation": ("Recorded observation", lambda r: True, lambda r: effective(r)),
    "CarePlan": ("Recorded care plan", lambda r: r.get("status") in ACTIVE_PLAN,
                 lambda r: r.get("created") or _period_start(r)),
    "Consent": ("Recorded consent", lambda r: r.get("status") == "active",
                lambda r: r.get("dateTime")),
}


def _unread_saying_cpr(r: dict[str, Any]) -> Fact | None:
    """A current record the summary cannot read by its codes (a plan under a partner's
    local category, "DNR" under a local code) that says CPR in words: an alert, so the
    headline sends the crew to it, never dropped unseen while the summary says no plan
    is recorded."""
    kind = _UNREAD.get(r["resourceType"])
    if kind is None or not kind[1](r) or not t.mentions_cpr(*_alert_concepts(r)):
        return None
    what, _, when = kind
    label = next((x for x in (t.words_for(r.get("code"), ""), r.get("title"),
                              t.words_for(next(iter(_dicts(r.get("category"))), None), ""))
                  if isinstance(x, str) and x.strip()), "no title")
    return Fact("alert", r, f"{what}: {label}", _text_or_none(when(r)),
                group=f"unread/{_plain(r)}",
                details=("Recorded under codes the summary does not read: check it with "
                         "the source",))


def _period_start(r: dict[str, Any]) -> Any:
    period = r.get("period")
    return period.get("start") if isinstance(period, dict) else None


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _observation(r: dict[str, Any]) -> list[Fact]:
    code, value, when = r.get("code"), r.get("valueCodeableConcept"), effective(r)
    parts = [c for c in _dicts(r.get("component")) if _codes_cpr(c.get("code"))]
    if _codes_cpr(code) and (not parts or any(k.startswith("value") for k in r)):
        return [_cpr_observation(r)]
    if parts:
        # a panel (a form's) with the resuscitation status as a component: its decision
        # is read as the component gives it, never passed over
        facts = [_cpr_observation({**{k: v for k, v in r.items() if not k.startswith(
            "value")}, **{k: v for k, v in c.items() if k == "code" or k.startswith("value")}})
            for c in parts]
        if len({f.code for f in facts}) == 1:
            return [dataclasses.replace(facts[0], resource=r, details=(
                *facts[0].details, f"Recorded as a part of: {t.words_for(code)}"))]
        return [Fact("cpr", r, not_understood("; ".join(f.text for f in facts)), when,
                     NOT_UNDERSTOOD, details=(f"Recorded as parts of: {t.words_for(code)}",))]
    kind = t.PLACE_KINDS.get(t.has_code(code, t.EOL_OBSERVATION, t.PLACE_KINDS) or "")
    if kind is not None:
        what = "Preferred place of care" if kind == "care" else "Preferred place of death"
        return [Fact("place", r, f"{what}: {_place_words(r)}", when,
                     _first_code(value), group=kind)]
    if t.has_code(code, t.EOL_OBSERVATION, {t.PLACE_OF_DEATH}):
        return [Fact("death-place", r, f"Place of death: {_place_words(r)}", when,
                     _first_code(value))]
    finding = t.has_code(code, t.SCT, t.PPD_FINDINGS)
    if finding:
        return [Fact("place", r, t.words_for(code), when, finding, group="death")]
    legal = t.has_code(code, t.SCT, t.ADRT_CODES | t.LPA_CODES)
    if legal and not _affirms(r):
        # "has an ADRT: false" is no ADRT held, and no sure absence of one either
        return [Fact("legal", r, f"{LEGAL_NOT_UNDERSTOOD}: {t.words_for(code)} (value: "
                                 f"{_value_words(r)})", when, NOT_UNDERSTOOD, group=legal)]
    if legal:
        return [Fact("legal", r, t.words_for(code), when, legal, group=legal)]
    alert = t.has_code(code, t.SCT, t.ALERT_CODES)
    if alert:
        text = t.words_for(code) + (f": {t.words_for(value)}" if value else "")
        return [Fact("alert", r, text, when, alert, group=alert)]
    return []


def _codes_cpr(code: Any) -> bool:
    """Whether `code` is the resuscitation status, or a CPR decision coded as a finding."""
    return t.has_code(code, t.SCT, {t.CPR_CODE}) or t.has_code(code, t.SCT, t.CPR_DECISIONS)


def _cpr_observation(r: dict[str, Any]) -> Fact:
    """A resuscitation-status Observation: a decision, or one recorded but not understood
    (shown with its words, never dropped)."""
    decision = _observation_decision(r)
    details = [f"Decided by {p['display']}" for p in r.get("performer") or []
               if isinstance(p, dict) and p.get("display")]
    details += [f"Recorded on: {d['display']}" for d in r.get("derivedFrom") or []
                if isinstance(d, dict) and d.get("display")]
    if _unconfirmed(r):
        details.append(f"Status: {r['status']}")
    sent, review = _review_extension(r)
    if sent and review is None:
        # a review date was sent but cannot be read: whether the decision has expired
        # is unknown, and the crew is told so rather than shown nothing
        details.append(UNREADABLE_REVIEW)
    ended = _period_end(r)
    if ended is not None and (not sent or review is not None):
        # a decision for a period only (CPR for the weeks of a procedure) lapses with it:
        # past its end, or its review date if that comes first, it is expired
        end_day, review_on = review_day(ended), review_day(review) if review else None
        if end_day is None:
            details.append(UNREADABLE_REVIEW)
        elif review_on is None or end_day < review_on:
            review = ended
    # (nor does it replace the decision it interrupted: shown beside it, never over it,
    # though the partner's newer decisions replace it)
    if decision is None:
        return Fact("cpr", r, not_understood(_value_words(r)), effective(r),
                    NOT_UNDERSTOOD, details=tuple(details), review=review,
                    replaces=ended is None)
    return Fact("cpr", r, t.CPR_WORDS[decision], effective(r), decision,
                details=tuple(details), review=review, replaces=ended is None)


def _period_end(r: dict[str, Any]) -> str | None:
    period = r.get("effectivePeriod")
    end = period.get("end") if isinstance(period, dict) else None
    return end if isinstance(end, str) and end else None


def effective(r: dict[str, Any]) -> str | None:
    """When an Observation took effect: R4's `effective[x]` as a dateTime, an instant or a
    period's start (a decision dated by a period is not undated)."""
    for value in (r.get("effectiveDateTime"), r.get("effectiveInstant"),
                  (r.get("effectivePeriod") or {}).get("start")
                  if isinstance(r.get("effectivePeriod"), dict) else None):
        if isinstance(value, str) and value:
            return value
    return None


def _observation_decision(r: dict[str, Any]) -> str | None:
    """The decision an Observation records, when it can be read: coded 304251008 with a
    decision as its value, or coded as the decision itself (as a Flag is) with no value or
    the same decision as its value (any other value is not understood)."""
    valued = t.cpr_decision(r.get("valueCodeableConcept"))
    if t.has_code(r.get("code"), t.SCT, {t.CPR_CODE}):
        return valued
    coded = t.cpr_decision(r.get("code"))
    if coded is None:
        return None  # coded as both decisions
    has_value = any(k.startswith("value") for k in r)
    if not has_value or r.get("valueBoolean") is True or valued == coded:
        return coded
    return None


#: SNOMED CT "Yes" (qualifier value): a finding's value that affirms it
YES = "373066001"
LEGAL_NOT_UNDERSTOOD = "Recorded but not understood (check with the source)"


def _affirms(r: dict[str, Any]) -> bool:
    """Whether a finding Observation (coded as what it finds: "has an ADRT") says it
    holds: it has no value, or its value is true or SNOMED CT "Yes". Any other value
    (false, "No", a number, text) is not read as the finding held."""
    values = {k: v for k, v in r.items() if k.startswith("value")}
    if not values:
        return True
    return values.get("valueBoolean") is True or \
        bool(t.has_code(values.get("valueCodeableConcept"), t.SCT, {YES}))


def not_understood(words: str) -> str:
    return f"CPR status recorded but not understood: {words}"


def _place_words(r: dict[str, Any]) -> str:
    """A place as coded, else as the partner wrote it (a `valueString`), else not stated."""
    if r.get("valueCodeableConcept") is not None:
        return t.words_for(r["valueCodeableConcept"])
    words = _value_words(r)
    return "not stated" if words == NO_VALUE else words


def _value_words(r: dict[str, Any]) -> str:
    """A record's value in words, whatever its type."""
    for key, value in r.items():
        if key == "valueCodeableConcept":
            return t.words_for(value, NO_VALUE)
        if isinstance(value, bool) and key.startswith("value"):
            return "true" if value else "false"  # as FHIR writes it
        if key.startswith("value") and value not in (None, "", [], {}):
            return str(value)
    note = next((n.get("text") for n in r.get("note") or [] if isinstance(n, dict)
                 and n.get("text")), None)
    return str(note) if note else NO_VALUE


def _careplan(r: dict[str, Any]) -> list[Fact]:
    if r.get("status") not in ACTIVE_PLAN:
        return []
    categories = r.get("category") or []
    rank = next((i for i, code in enumerate((*t.RESPECT_PLANS, *t.OTHER_PLANS))
                 if any(t.has_code(c, t.SCT, {code}) for c in categories)), None)
    if rank is None:
        return []
    respect = rank < len(t.RESPECT_PLANS)
    label = next((c.get("text") for c in categories if isinstance(c, dict) and c.get("text")),
                 None) or t.words_for(categories[0] if categories else None)
    text = f"{label}: {r['title']}" if r.get("title") and r.get("title") != label else label
    details = []
    if r.get("description"):
        details.append(("Recommendations: " if respect else "") + str(r["description"]))
    details += [str(n["text"]) for n in r.get("note") or [] if isinstance(n, dict)
                and n.get("text")]
    author = r.get("author") if isinstance(r.get("author"), dict) else {}
    if author.get("display"):
        details.append(f"Signed by {author['display']}")
    if r.get("status") == "on-hold":
        details.insert(0, ON_HOLD)
    period = r.get("period") or {}
    # a plan without `created` is dated by when it started, and said so
    return [Fact("plan", r, text, r.get("created") or period.get("start"),
                 group=f"{rank}", details=tuple(details), review=period.get("end"),
                 date_words=None if r.get("created") else "started")]


def _related_person(r: dict[str, Any], today: date) -> list[Fact]:
    if r.get("active") is False:
        return []
    chosen = current_name(r.get("name"), today)
    return _contact(r, r, _name(chosen) if chosen else "Name not recorded", today)


def _patient_contacts(patient: dict[str, Any], today: date) -> list[Fact]:
    """The Patient's own `contact`s (next of kin, as R4 and UK Core hold them)."""
    out: list[Fact] = []
    for c in patient.get("contact") or []:
        if isinstance(c, dict):
            name = _name(c["name"]) if isinstance(c.get("name"), dict) else (
                str((c.get("organization") or {}).get("display") or "Name not recorded")
                if isinstance(c.get("organization"), dict) else "Name not recorded")
            out += _contact(patient, c, name, today)
    return out


def _contact(r: dict[str, Any], c: dict[str, Any], name: str, today: date) -> list[Fact]:
    """A contact's facts: `c` holds its relationship, telecom and period (a RelatedPerson,
    or one of a Patient's `contact`s), `r` is the resource cited."""
    relations, lpa = [], False
    for rel in c.get("relationship") or []:
        if t.has_code(rel, t.ROLE_CODE, {"HPOWATT"}):
            lpa = True
        elif not t.has_code(rel, t.CONTACT_ROLE, {"C"}):
            relations.append(t.words_for(rel, ""))
    telecoms, phone = _telecoms(c, today)
    details = [", ".join(x for x in relations if x)] if any(relations) else []
    details += telecoms
    if not phone:
        details.append("No current phone number recorded" if telecoms
                       else "No phone number recorded")
    if lpa:
        details.append(LPA_HELD)
    # the relationship's end, as a review date: one that has passed ends the LPA too
    ended = (c.get("period") or {}).get("end") if isinstance(c.get("period"), dict) else None
    out = [Fact("contact", r, name, code="lpa" if lpa else None, details=tuple(details),
                review=ended, review_words=RELATIONSHIP_ENDS)]
    if lpa:
        out.append(Fact("lpa-holder", r, f"Lasting Power of Attorney (health and welfare): "
                                         f"{name}", details=tuple(details[:-1]), review=ended,
                        review_words=RELATIONSHIP_ENDS))
    return out


def _consent(r: dict[str, Any]) -> list[Fact]:
    if r.get("status") != "active" or not t.has_code(r.get("scope"), t.CONSENT_SCOPE, {"adr"}):
        return []
    categories = r.get("category") or []
    review = ((r.get("provision") or {}).get("period") or {}).get("end")
    where = (r.get("sourceAttachment") or {}).get("title")
    details = (f"Where it is kept: {where}",) if where else ()
    if any(t.has_code(c, t.CONSENT_CATEGORY, {"dnr"}) for c in categories):
        # a DNR directive whose provision codes the status says which it is (HL7 Germany's
        # DoNotResuscitateOrder records "For resuscitation" so); one it cannot read, or
        # coding both, is shown as not understood, never as the category's DNACPR
        provision = r.get("provision") if isinstance(r.get("provision"), dict) else {}
        said = _dicts(provision.get("code"))
        decisions = {t.cpr_decision(c) for c in said}
        decision = next(iter(decisions)) if len(decisions) == 1 else None
        if not said:
            decision = "not-attempt"
        if decision is None:
            words = "; ".join(t.words_for(c) for c in said)
            return [Fact("cpr", r, not_understood(words), r.get("dateTime"), NOT_UNDERSTOOD,
                         details=("Recorded as a DNACPR directive", *details), review=review)]
        return [Fact("cpr", r, t.CPR_WORDS[decision], r.get("dateTime"), decision,
                     details=("Recorded as a DNACPR directive", *details), review=review)]
    label = t.words_for(categories[0] if categories else None, "Advance directive")
    code = next((c.get("code") for cat in categories for c in t.codings(cat)), label)
    return [Fact("legal", r, label, r.get("dateTime"), code, group=str(code),
                 details=details, review=review)]


def _flag(r: dict[str, Any]) -> list[Fact]:
    if r.get("status") != "active":
        return []
    period = r.get("period") or {}
    decision = t.cpr_decision(r.get("code"))
    if decision:
        return [Fact("cpr", r, t.CPR_WORDS[decision], period.get("start"), decision,
                     details=("Recorded as an alert flag",), review=period.get("end"))]
    if _codes_cpr(r.get("code")):
        # a resuscitation-status alert that does not say which (or says both): the crew
        # must see it
        words = (r.get("code") or {}).get("text") or "no decision stated"
        return [Fact("cpr", r, not_understood(str(words)), period.get("start"),
                     NOT_UNDERSTOOD, details=("Recorded as an alert flag",),
                     review=period.get("end"))]
    return [Fact("alert", r, t.words_for(r.get("code"), "Alert"), period.get("start"),
                 group=f"flag/{r['id']}", review=period.get("end"))]


def _care_team(r: dict[str, Any], today: date) -> list[Fact]:
    if r.get("status") not in (None, "active"):
        return []
    details = []
    for p in r.get("participant") or []:
        member = (p.get("member") or {}).get("display") if isinstance(p, dict) else None
        roles = ", ".join(t.words_for(x, "") for x in p.get("role") or []) if member else ""
        if member:
            details.append(f"{member}" + (f" ({roles})" if roles else ""))
    telecoms, phone = _telecoms(r, today)
    details += telecoms
    return [Fact("team", r, str(r.get("name") or "Care team"), code="phone" if phone else None,
                 details=tuple(details))]


#: ContactPoint.system in words (anything else, or none: "Number")
TELECOM_WORDS = {"phone": "Phone", "sms": "Phone (text messages)", "email": "Email",
                 "fax": "Fax", "pager": "Pager", "url": "Web"}
#: systems a crew can ring; a number sent with no system (or `other`) may be one, so it
#: is listed as a number to try, never dismissed as "no phone number"
PHONE_SYSTEMS = frozenset({"phone", "sms", None, "other"})


def _telecoms(r: dict[str, Any], today: date) -> tuple[list[str], bool]:
    """`r`'s telecoms in words, each labelled by its system: current phone numbers first,
    then the rest; and whether a current phone number is among them. One marked `old`, or
    whose period has ended, is said to be not current and comes last (an old number must
    never look like one to ring)."""
    phones: list[str] = []
    others: list[str] = []
    old: list[str] = []
    for c in r.get("telecom") or []:
        if not isinstance(c, dict) or not c.get("value"):
            continue
        use = c.get("use") if c.get("use") in ("home", "work", "mobile", "temp") else None
        words = f"{TELECOM_WORDS.get(str(c.get('system')), 'Number')} {c['value']}" + (
            f" ({use})" if use else "")
        period = c.get("period") if isinstance(c.get("period"), dict) else {}
        end = period.get("end")
        if c.get("use") == "old":
            old.append(f"Not current (marked old): {words}")
        elif end and review_day(str(end)) is None:
            old.append(f"Check before use (its end date {end} cannot be read): {words}")
        elif end and has_passed(str(end), today):
            old.append(f"Not current (ended {day(str(end))}): {words}")
        else:
            (phones if c.get("system") in PHONE_SYSTEMS else others).append(words)
    return phones + others + old, bool(phones)


#: the code of the derived tag (`fhir.derivations`) on the gateway's stored CPR-conflict
#: DetectedIssue (`conflicts`)
CONFLICT_TAG_CODE = "cpr-conflict"


def is_stored_conflict(resource: dict[str, Any]) -> bool:
    """Whether `resource` is the gateway's stored CPR-conflict issue: it carries the
    gateway's derived tag, which a partner feed's writes never do."""
    return resource.get("resourceType") == "DetectedIssue" \
        and is_derived(resource, CONFLICT_TAG_CODE)


def is_cpr_record(r: dict[str, Any]) -> bool:
    """Whether `r` holds a CPR decision the summary counts (status and kind as now)."""
    return r.get("resourceType") in ("Observation", "Flag", "Consent") and any(
        f.kind == "cpr" for f in _facts_of(r, date.min))


def _detected_issue(r: dict[str, Any]) -> list[Fact]:
    if is_stored_conflict(r):
        return []  # the gateway's own record of a conflict the summary works out afresh
    return [Fact("issue", r, f"Recorded issue: {r.get('detail') or t.words_for(r.get('code'))}",
                 r.get("identifiedDateTime"))]


def _patient_facts(patient: dict[str, Any]) -> list[Fact]:
    out = []
    for gp in patient.get("generalPractitioner") or []:
        if not isinstance(gp, dict):
            continue
        ods = (gp.get("identifier") or {}).get("value")
        label = gp.get("display") or (f"GP practice {ods}" if ods else None)
        if label:
            out.append(Fact("team", patient, f"Registered GP practice: {label}"))
    return out


_READERS: dict[str, Callable[[dict[str, Any]], list[Fact]]] = {
    "Observation": _observation, "CarePlan": _careplan, "Consent": _consent, "Flag": _flag,
    "DetectedIssue": _detected_issue,
}
#: readers whose words depend on the day (a phone number whose period has ended)
_DAY_READERS: dict[str, Callable[[dict[str, Any], date], list[Fact]]] = {
    "RelatedPerson": _related_person, "CareTeam": _care_team,
}


def _review_extension(r: dict[str, Any]) -> tuple[bool, str | None]:
    """Whether a review date was sent, and it (`valueDate` or `valueDateTime`) when it
    reads as a date."""
    for ext in r.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == t.REVIEW_DATE_EXTENSION:
            value = ext.get("valueDate") or ext.get("valueDateTime")
            return True, value if isinstance(value, str) and sortable(value) else None
    return False, None


def _first_code(concept: Any) -> str | None:
    return next((str(c["code"]) for c in t.codings(concept) if c.get("code")), None)


#: HumanName.use values that say the name is not the one the person goes by now
_FORMER_NAME = frozenset({"old", "maiden", "anonymous"})


def current_name(names: Any, today: date) -> dict[str, Any] | None:
    """The name to show a crew: official, else usual, else another in use; one marked
    old, maiden or anonymous, or whose period has ended, only when no other is recorded
    (a former name makes the crew doubt the record, or trust the wrong one)."""
    found = [n for n in (names if isinstance(names, list) else []) if isinstance(n, dict)]
    current = [n for n in found if n.get("use") not in _FORMER_NAME and not has_passed(
        str((n.get("period") if isinstance(n.get("period"), dict) else {}).get("end") or ""),
        today)]
    for use in ("official", "usual"):
        chosen = next((n for n in current if n.get("use") == use), None)
        if chosen is not None:
            return chosen
    return (current or found or [None])[0]


def _name(name: dict[str, Any]) -> str:
    if name.get("text"):
        return str(name["text"])
    parts = [*(name.get("prefix") or []), *(name.get("given") or []), name.get("family")]
    return " ".join(str(p) for p in parts if p) or "Name not recorded"
