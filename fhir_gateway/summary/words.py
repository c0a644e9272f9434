"""The summary in words: sections of plain sentences, shared by the FHIR document's
narrative and the printable page, so both always say the same thing.

Order: deceased (when the record says so: the Patient's death, or a partner's place of
death) first; then partners' disagreement on CPR; then the CPR decision; ReSPECT and other
plans; preferred places; legal; contacts; care team; alerts; and what the summary is made
from (when the record was last fed). When a read was cut off, the CPR headline says the
summary may be incomplete: never "no plan recorded".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from .dates import UNREADABLE_DATE, day, london_moment
from .facts import MERGED, NOT_UNDERSTOOD, Fact, Facts, Source, between_partners, current_name

#: what a fact's date is, by kind
DATE_WORDS = {"cpr": "decided", "plan": "completed", "place": "recorded",
              "death-place": "died", "legal": "recorded", "lpa-holder": "",
              "contact": "", "team": "", "alert": "recorded", "issue": "identified"}
HEADLINES = {"not-attempt": "NOT FOR ATTEMPTED CPR", "attempt": "FOR ATTEMPTED CPR",
             NOT_UNDERSTOOD: "CPR STATUS RECORDED BUT NOT UNDERSTOOD"}
#: the CPR box's colour per decision (a status not understood is a warning, as a conflict)
TONES = {"not-attempt": "not-attempt", "attempt": "attempt", NOT_UNDERSTOOD: "conflict"}
INCOMPLETE = "SUMMARY MAY BE INCOMPLETE"


@dataclass(frozen=True, slots=True)
class Item:
    text: str
    details: tuple[str, ...] = ()
    when: str = ""  # "decided 22 Jul 2026"
    source: str = ""  # "Borough Hospice (X9H01), received 23 Nov 2026 00:59"
    status: str = ""  # "EXPIRED: ..."
    ref: str | None = None  # the resource cited


@dataclass(frozen=True, slots=True)
class Section:
    key: str
    title: str
    items: tuple[Item, ...] = ()
    notes: tuple[str, ...] = ()  # sentences not about one resource
    empty: str = ""  # said when there is nothing to list
    headline: str = ""  # the CPR box / banners
    tone: str = ""  # deceased | conflict | not-attempt | attempt | expired | none
    read_all: bool = True  # False: the record was read cut off, so "none" is not known

    @property
    def refs(self) -> list[str]:
        return list(dict.fromkeys(i.ref for i in self.items if i.ref))


def instant(value: str | None) -> str:
    """An instant in London time, to the minute, with the clock's zone: '23 Nov 2026 00:59
    GMT' (the night the clocks go back shows 01:30 twice; the zone tells them apart)."""
    if not value:
        return ""
    try:
        moment = london_moment(str(value))
    except ValueError:
        return f"{value} ({UNREADABLE_DATE})"
    return f"{moment.day} {moment:%b %Y %H:%M %Z}"


def patient_name(patient: dict[str, Any], today: date) -> str:
    n = current_name(patient.get("name"), today)
    if n is None:
        return "Name not recorded"
    if n.get("text"):
        return str(n["text"])
    return " ".join(str(x) for x in (*(n.get("given") or []), n.get("family")) if x) \
        or "Name not recorded"


def source_words(source: Source) -> str:
    who = source_words_short(source) if source.known else "source not recorded"
    if source.person:  # named by a Provenance without an organisation: shown, not trusted
        who += f", recorded by {source.person}"
    if not source.recorded:
        return who
    verb = "last changed" if source.name == MERGED else "received"
    return f"{who}, {verb} {instant(source.recorded)}"


def item(fact: Fact) -> Item:
    verb = fact.date_words or DATE_WORDS.get(fact.kind, "dated")
    when = f"{verb} {day(fact.date)}".strip() if fact.date else \
        ("date not recorded" if verb else "")
    status = ""
    if fact.expired:
        status = f"EXPIRED: review date {day(fact.review)} has passed; not current"
    elif fact.review:
        status = f"{fact.review_words or 'review by'} {day(fact.review)}"
    details = fact.details
    if fact.claimed_by:
        details = (*details, claim_words(fact.claimed_by))
    return Item(fact.text, details, when, source_words(fact.source), status, fact.ref)


def claim_words(sources: tuple[Source, ...]) -> str:
    """Said with a plan that another source's plan says it replaces."""
    who = " and ".join(dict.fromkeys(source_words_short(s) for s in sources))
    return (f"{who} holds a plan that says it replaces this one. A partner's plan "
            "replaces only that partner's own, so both are shown: check which is current.")


def sections(facts: Facts, *, generated: str) -> list[Section]:
    out = []
    if facts.died:
        out.append(_deceased(facts))
    if facts.conflict:
        who = conflict_between(facts.cpr)
        out.append(Section("conflict", f"{who.capitalize()} disagree on CPR",
                           tuple(item(f) for f in facts.cpr),
                           notes=(conflict_detail(facts.cpr),),
                           headline=f"{who.upper()} DISAGREE ON CPR", tone="conflict"))
    out.append(_cpr(facts))
    out.append(_plans(facts))
    out.append(Section("places", "Preferred place of care and of death",
                       tuple(item(f) for f in facts.places),
                       empty="No preferred place of care or of death recorded."))
    out.append(Section("legal", "Legal: advance decision (ADRT), Lasting Power of Attorney",
                       tuple(item(f) for f in facts.legal),
                       empty="No advance decision to refuse treatment or Lasting Power of "
                             "Attorney recorded."))
    out.append(Section("contacts", "Contacts", tuple(item(f) for f in facts.contacts),
                       empty="No contacts recorded."))
    # Partners' records do not say which numbers answer at night: the section never
    # lets a daytime number pass for a 24-hour one.
    phones = any(f.code == "phone" for f in facts.team)
    out.append(Section("team", "Care team and 24-hour numbers",
                       tuple(item(f) for f in facts.team),
                       notes=(TEAM_HOURS_UNKNOWN,) if phones else
                       () if facts.truncated else (NO_TEAM_PHONE,),
                       empty="No care team recorded."))
    out.append(Section("alerts", "Alerts", tuple(item(f) for f in facts.alerts),
                       empty="No alerts recorded."))
    out.append(_about(facts, generated))
    if facts.truncated:
        # what was not read may hold what a section lacks: never say there is none
        out = [replace(s, empty=NOT_IN_WHAT_WAS_READ, read_all=False) if s.empty else s
               for s in out]
    return out


NOT_IN_WHAT_WAS_READ = ("None found in what was read; the record is larger than the summary "
                        "reads at once, so there may be some.")


TEAM_HOURS_UNKNOWN = "The record does not say which of these numbers answer 24 hours."
NO_TEAM_PHONE = "No care team phone number recorded."


def conflict_between(decisions: list[Fact]) -> str:
    """Who disagrees: "partners" when each decision is a different, known partner's, else
    "records" (one partner's own decisions its dates cannot order, or decisions whose
    recorder is not on the record): never a disagreement between partners the record does
    not show. The DetectedIssue's text says the same (`document._issue_text`)."""
    return "partners" if between_partners(decisions) else "records"


def conflict_detail(decisions: list[Fact]) -> str:
    """One sentence naming every partner's current decision, newest first."""
    parts = [f"{source_words_short(f.source)} records '{f.text}' ({day(f.date) or 'undated'})"
             for f in decisions]
    return "; ".join(parts) + "."


def source_words_short(source: Source) -> str:
    if not source.known:
        return "An unnamed source" + (f" (recorded by {source.person})" if source.person
                                      else "")
    return f"{source.name} ({source.ods})" if source.name and source.ods and \
        source.name != source.ods else (source.name or source.ods or "")


def last_fed_words(facts: Facts) -> str:
    return f"Record last fed {instant(facts.last_fed)}." if facts.last_fed else \
        "No partner has fed this record."


def _deceased(facts: Facts) -> Section:
    when = facts.deceased or ""
    dated = bool(when) and when != "yes"
    items = [item(f) for f in facts.death_places]
    if facts.deceased or facts.alive_said_by:
        text = ("The shared record says this person has died"
                + (f" ({day(when)})." if dated else ".")) if facts.deceased else \
            "The person's details say this person has not died."
        merged = Source(name=MERGED,
                        recorded=(facts.patient.get("meta") or {}).get("lastUpdated"))
        items.insert(0, Item(text, ref=f"Patient/{facts.patient['id']}",
                             source=source_words(merged)))
    if facts.alive_said_by:
        # a partner's newest word is "not died" beside a death that stands (one partner
        # cannot withdraw another's), or beside a place of death still on record after
        # the person's details were corrected: neither is chosen
        notes = (f"Records disagree on whether this person has died: the newest message "
                 f"from {', '.join(facts.alive_said_by)} says they have not died, while "
                 "a record of the death stands. Check before acting on either.",) \
            if facts.deceased else \
            ("Records disagree on whether this person has died: a place of death is "
             "recorded, but the person's details say they have not died (a death "
             "recorded in error may have been corrected). Check before acting on "
             "either.",)
        return Section("deceased", "Deceased", tuple(items), notes=notes,
                       headline="RECORDS DISAGREE ON WHETHER THIS PERSON HAS DIED",
                       tone="conflict")
    # without a date of death on the person's details, a partner recorded where the
    # person died: that says they died
    notes = () if facts.deceased else (
        "The shared record says this person has died: a place of death is recorded. The "
        "person's details hold no date of death.",)
    return Section("deceased", "Deceased", tuple(items), notes=notes,
                   headline="DECEASED" + (f" {day(when)}" if dated else ""),
                   tone="deceased")


def _plans(facts: Facts) -> Section:
    per_kind = Counter((f.source.key or f.ref, f.group) for f in facts.plans)
    notes = ("One partner holds more than one current form or plan of one kind, with dates "
             "that cannot tell which is newer: read each.",) \
        if any(n > 1 for n in per_kind.values()) else ()
    return Section("respect", "ReSPECT recommendations and care focus",
                   tuple(item(f) for f in facts.plans), notes=notes,
                   empty="No ReSPECT form or end of life care plan recorded.")


def _cpr(facts: Facts) -> Section:
    # an alert that mentions CPR is listed here whatever else is: without a current coded
    # decision it is the crew's lead; beside one, it may say the opposite
    alerts = tuple(item(f) for f in facts.cpr_alerts)
    items = (*(item(f) for f in (*facts.cpr, *facts.cpr_expired)), *alerts)
    notes: tuple[str, ...] = ()
    if facts.conflict:
        who = conflict_between(facts.cpr)
        headline, tone = f"{who.upper()} DISAGREE ON CPR", "conflict"
        notes = ("Their newest decisions differ. The summary does not choose: check the "
                 "patient's forms and clinicians.",)
        if len({f.source.key or f.ref for f in facts.cpr}) < len(facts.cpr):
            notes += ("One partner holds more than one of these, with dates that cannot "
                      "tell which is newer.",)
        if any(not f.source.key for f in facts.cpr):
            notes += ("Who recorded one or more of these is not on the record, so whether "
                      "one replaced another cannot be told: all are shown.",)
    elif facts.cpr:
        code = facts.cpr[0].code or ""
        headline, tone = HEADLINES[code], TONES[code]
        if code == NOT_UNDERSTOOD:
            notes = ("A CPR status is recorded in a form the summary cannot read: check "
                     "the record and the patient's forms.",)
        elif len(facts.cpr) > 1:
            notes = (f"{len(facts.cpr)} partners record the same decision.",)
    elif facts.cpr_expired:
        headline, tone = "NO CURRENT CPR DECISION", "expired"
        notes = ("Every CPR decision on the record has passed its review date.",)
    elif facts.truncated:
        # what was not read may hold a plan: never say there is none
        headline, tone = f"{INCOMPLETE}: NO CPR DECISION FOUND IN WHAT WAS READ", "conflict"
    elif alerts:  # (a coded decision, current or expired, keeps its headline above)
        headline, tone = "NO CODED CPR DECISION FOUND: READ THE ALERT" + (
            "S" if len(alerts) > 1 else ""), "conflict"
    elif not facts.has_plan:
        headline, tone = "NO EMERGENCY CARE PLAN RECORDED", "none"
        notes = ("No CPR decision, ReSPECT form, advance decision or Lasting Power of "
                 "Attorney is recorded on the shared record.", last_fed_words(facts))
    else:
        headline, tone = "NO CPR DECISION RECORDED", "none"
    if alerts:
        notes += (CPR_ALERT_BESIDE_WORDS if facts.cpr or facts.cpr_expired
                  else CPR_ALERT_WORDS,)
    if facts.truncated:
        if INCOMPLETE not in headline:
            headline = f"{headline} ({INCOMPLETE})"
        notes = (TRUNCATED_WORDS, *notes)
    if facts.found_as:
        notes = (facts.found_as, *notes)
    return Section("cpr", "Resuscitation (CPR) decision", items, notes=notes,
                   empty="No CPR decision recorded.", headline=headline, tone=tone)


CPR_ALERT_WORDS = ("An alert mentions CPR or resuscitation, but no CPR decision is recorded "
                   "in a form the summary can read: read the alert and check the "
                   "patient's forms.")
CPR_ALERT_BESIDE_WORDS = ("An alert also mentions CPR or resuscitation: read it before "
                          "acting, it may say something different from the decision above.")
TRUNCATED_WORDS = ("WARNING: this record is larger than the summary reads at once; some "
                   "facts may be missing. Check the full record.")


def _about(facts: Facts, generated: str) -> Section:
    notes = [last_fed_words(facts), f"Summary made {instant(generated)} from the shared "
             "record; each fact shows the partner that sent it and when."]
    if facts.truncated:
        notes.append(TRUNCATED_WORDS)
    return Section("about", "About this summary", notes=tuple(notes))
