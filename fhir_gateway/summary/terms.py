"""Codes the summary recognises (DOMAIN.md, profiles/) and the plain words it uses for them."""

from __future__ import annotations

import html
import itertools
import re
import unicodedata
from typing import Any
from zoneinfo import ZoneInfo

SCT = "http://snomed.info/sct"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
CANONICAL = "https://fhir.shared-care-record.example"
EOL_OBSERVATION = f"{CANONICAL}/CodeSystem/end-of-life-observation"
DETECTED_ISSUE_TYPE = f"{CANONICAL}/CodeSystem/detected-issue-type"
DETECTED_ISSUE_PROFILE = f"{CANONICAL}/StructureDefinition/SCR-DetectedIssue"
#: Proposed (no profile defines it yet): the date a CPR decision Observation is to be
#: reviewed by, as `valueDate` or `valueDateTime`. Flags and Consents carry theirs in
#: `period.end` / `provision.period.end`, which R4 defines.
REVIEW_DATE_EXTENSION = f"{CANONICAL}/StructureDefinition/review-date"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
CONSENT_CATEGORY = "http://terminology.hl7.org/CodeSystem/consentcategorycodes"
ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
CONTACT_ROLE = "http://terminology.hl7.org/CodeSystem/v2-0131"

#: the crews' and partners' calendar: review dates and "today" are London days
LONDON = ZoneInfo("Europe/London")


def nhs_number_of(patient: dict[str, Any]) -> str | None:
    """The Patient's NHS number, or None."""
    return next((str(i.get("value")) for i in patient.get("identifier") or []
                 if isinstance(i, dict) and i.get("system") == NHS_NUMBER_SYSTEM), None)


def spaced(nhs: str) -> str:
    """An NHS number as people write it (3 3 4); anything else as it is."""
    return f"{nhs[:3]} {nhs[3:6]} {nhs[6:]}" if len(nhs) == 10 else nhs


SUMMARY_TYPE = {"system": SCT, "code": "861421000000109",
                "display": "End of life care coordination summary"}

CPR_CODE = "304251008"  # Resuscitation status (observable entity)
NOT_FOR_CPR = "450476008"
FOR_CPR = "450475007"
#: SNOMED CT value -> the decision as expected.json names it; with the older findings
#: "Not for resuscitation" and "For resuscitation" some systems still code decisions by
CPR_DECISIONS = {NOT_FOR_CPR: "not-attempt", FOR_CPR: "attempt",
                 "304253006": "not-attempt", "304252001": "attempt"}
CPR_WORDS = {"not-attempt": "Not for attempted CPR", "attempt": "For attempted CPR"}

#: CarePlan categories shown with the ReSPECT recommendations, in the order shown
RESPECT_PLANS = ("1382601000000107", "735324008")  # ReSPECT form, treatment escalation plan
OTHER_PLANS = ("736366004", "736373009")  # advance care plan, end of life care plan

ADRT_CODES = frozenset({"816301000000100", "816321000000109"})
LPA_CODES = frozenset({"816361000000101", "816381000000105"})
#: end-of-life status findings a crew should see first (prognosis, anticipatory meds)
ALERT_CODES = ("511401000000102", "955231000000109", "376201000000102", "414937009",
               "526631000000108")
#: "preferred place of death: declined / not appropriate / undecided / unable to express"
PPD_FINDINGS = frozenset({"766391000000108", "517131000000106", "517161000000101",
                          "517111000000103"})
PLACE_KINDS = {"preferred-place-of-care": "care", "preferred-place-of-death": "death"}
PLACE_OF_DEATH = "place-of-death"

#: statuses that make a record not a fact at all (withdrawn, or recorded in error)
NOT_A_FACT = frozenset({"entered-in-error", "cancelled"})


def codings(concept: Any) -> list[dict[str, Any]]:
    if not isinstance(concept, dict):
        return []
    return [c for c in concept.get("coding") or [] if isinstance(c, dict)]


def has_code(concept: Any, system: str, codes: Any) -> str | None:
    """The first code of `concept` in `system` that is one of `codes`, else None."""
    for c in codings(concept):
        if c.get("system") == system and c.get("code") in codes:
            return str(c["code"])
    return None


def cpr_decision(concept: Any) -> str | None:
    """The CPR decision `concept` codes ("attempt" or "not-attempt"); None when it codes
    none, or both: a record saying "for" and "not for" CPR decides nothing, so it is
    shown as not understood, never read by whichever coding comes first."""
    found = {CPR_DECISIONS[str(c["code"])] for c in codings(concept)
             if c.get("system") == SCT and c.get("code") in CPR_DECISIONS}
    return found.pop() if len(found) == 1 else None


#: words that make an alert one about CPR ("DNACPR in place", "not for resus"): an alert
#: in text only is no decision the summary can read, but the crew must be sent to it.
#: How alerts write CPR decisions: DNACPR (the unified uDNACPR form, plurals, "DNACPRed",
#: and the letter slips DNAPCR, DNACRP, DANCPR), DNAR, DNR, NFR, NTBR ("not to be
#: resuscitated"), CPR, resus... and its common misspellings (rescus, resucitation,
#: ressuscitation), "not for 2222 (crash, cardiac arrest) call", "allow natural death", the
#: ReSPECT form (so written, in capitals, or "respect form/plan" in any case: the English
#: word "respect" alone is not a form). A term is bounded by letters only, so one glued to
#: an underscore or a digit (NOT_FOR_CPR, DNACPR2024) counts. Matching too much only sends
#: the crew to read an alert; missing one is the unsafe mistake.
CPR_MENTION = re.compile(
    r"(?<![A-Za-z])(?:"
    r"u?(?:DNA?CPR|DNAPCR|DNACRP|DANCPR)(?:s|'?e?d)?|DNAR(?:s|'?e?d)?|DNR(?:s|'?e?d)?"
    r"|NFRs?|NTBR|CPR|re(?:s|ss|sc|ssc)u(?:s|ss|sc|c)[A-Za-z]*"
    r"|not\s+for\s+(?:a\s+|the\s+)?(?:2222|crash|(?:cardiac\s+)?arrest)\s+(?:team\s+)?calls?"
    r"|allow(?:ing)?\s+(?:a\s+)?natural\s+death"
    r"|(?-i:ReSPECT|RESPECT)|respect\s+(?:form|plan)"
    r"|recommended\s+summary\s+plan\s+for\s+emergency\s+care"
    r")(?![A-Za-z])", re.IGNORECASE)
#: a word broken across lines by a hyphen, or by the line break alone (DNAC-\nPR)
_WRAPPED = re.compile(r"(?<=[A-Za-z])-?[ \t]*\r?\n[ \t]*(?=[A-Za-z])")


def mentions_cpr(*concepts: Any) -> bool:
    """Whether any of `concepts` (CodeableConcepts, or plain text) says CPR or
    resuscitation in its text or a coding's display: as read, so letters written wide,
    split by zero-width characters, dressed in combining marks, escaped as HTML, or broken
    across lines count."""
    return any(_says_cpr(text) for text in _texts(concepts))


def cpr_texts(*concepts: Any) -> list[str]:
    """The texts among `concepts` that `mentions_cpr` reads as saying CPR."""
    return [text for text in _texts(concepts) if _says_cpr(text)]


#: the ReSPECT form named: every ReSPECT plan names it, so in a plan's own words the name
#: says nothing of what the form recommends on CPR
_RESPECT_NAME = re.compile(
    r"(?<![A-Za-z])(?:(?-i:ReSPECT|RESPECT)|respect\s+(?:form|plan)"
    r"|recommended\s+summary\s+plan\s+for\s+emergency\s+care)(?![A-Za-z])", re.IGNORECASE)


def plan_cpr_texts(*concepts: Any) -> list[str]:
    """The texts among `concepts` (a plan's words) that say CPR besides naming the
    ReSPECT form: "ReSPECT recommendations" is every ReSPECT plan's title."""
    return [text for text in _texts(concepts) if _says_cpr(_RESPECT_NAME.sub(" ", text))]


def _texts(concepts: tuple[Any, ...]) -> list[str]:
    texts: dict[str, None] = {}  # each text once (a Flag's text is its code's text too)
    for concept in concepts:
        for x in [concept] if isinstance(concept, str) else \
                [concept.get("text") if isinstance(concept, dict) else None,
                 *(c.get("display") for c in codings(concept))]:
            if isinstance(x, str):
                texts[x] = None
    return list(texts)


def _says_cpr(text: str) -> bool:
    read = _letters(text)
    if CPR_MENTION.search(read):
        return True
    unwrapped = _WRAPPED.sub("", read)
    return unwrapped != read and bool(CPR_MENTION.search(_SPELT_OUT.sub(_joined_if_cpr,
                                                                         unwrapped)))


def _letters(text: str) -> str:
    """`text` as its letters read: HTML entities a partner left escaped decoded,
    compatibility forms folded (DNACPR in wide letters), format characters and combining
    marks dropped, Cyrillic and Greek letters that look Latin read as Latin (DNACPR with a
    Cyrillic Es), and letters spelt out one by one joined where they spell a CPR term
    (D.N.A.C.P.R., D N A C P R, D-N-R, D/N/R)."""
    if "&" in text:
        text = html.unescape(text)
    if not text.isascii():  # (nearly every text is ASCII: nothing to fold)
        # (look-alikes read before folding too: NFKD turns a lunate sigma into a sigma)
        folded = unicodedata.normalize("NFKD", text.translate(_LOOKALIKES)).translate(
            _LOOKALIKES)
        text = "".join(c for c in folded if unicodedata.category(c) not in ("Cf", "Mn", "Me"))
    return _SPELT_OUT.sub(_joined_if_cpr, text)


def _joined_if_cpr(found: re.Match[str]) -> str:
    """Letters spelt out one by one, joined where they spell a CPR term: the whole run
    (`D N R`, `D.N.A.C.P.R.`), the run less a one-letter word beside it (`a D N R form`,
    `D N R a copy at home`), or one group of it where it holds several (`D.N.R. G.P.
    aware`, `D.N.R/N.F.R`). Never a stretch inside a group, nor one across groups:
    `s.c. p.r.n.` and `c. p.r. o.d.` are abbreviations, not CPR. After a title, the first
    group is a name (`Dr D.N.R. Patel`, but `Dr K. D.N.R. agreed` holds DNR). Any other
    run spelling a term counts, even before a capitalised word (`D.N.R. Family aware`):
    sending the crew to read an alert is the safe mistake, missing a DNR the unsafe one."""
    text = found.group()
    starts = [i for i, c in enumerate(text) if c.isalpha()]
    letters = "".join(text[i] for i in starts).upper()
    between = [text[a + 1:b] for a, b in itertools.pairwise(starts)]
    n = len(starts)
    titled = bool(_TITLE_BEFORE.search(found.string[max(0, found.start() - 8):found.start()]))
    spans: list[tuple[int, int]] = []
    if not titled:
        spans.append((0, n))
        if n > 3 and any(c.isspace() for c in between[0]):
            spans.append((1, n))  # a word before it: "a D N R"
        if n > 3 and any(c.isspace() for c in between[-1]):
            spans.append((0, n - 1))  # a word after it: "D N R a copy"
    for boundary in (_GROUP_BREAK, _SLASH_BREAK):
        cuts = [0, *(i + 1 for i, sep in enumerate(between) if boundary.search(sep)), n]
        groups = list(itertools.pairwise(cuts))
        if titled:
            groups = groups[1:]  # the initials of the name the title begins
        spans += groups
    for first, stop in spans:
        if letters[first:stop] in _SPELT_TERMS:
            last = starts[stop - 1] + 1
            return f"{text[:starts[first]]}{letters[first:stop]} {text[last:]}"
    return text


#: between two groups of spelt-out letters: a stop (or dash) then a space (`D.N.R. G.P.`)
_GROUP_BREAK = re.compile(r"[^\s]\s|\s[^\s]")
#: or a slash between groups (`D.N.R/N.F.R`)
_SLASH_BREAK = re.compile(r"/")


#: Cyrillic and Greek capitals and small letters drawn like Latin ones
_LOOKALIKES = str.maketrans(
    "\u0410\u0412\u0421\u0415\u041d\u0406\u041a\u041c\u041e\u0420\u0422\u0425\u0423"  # Cyrillic
    "\u0430\u0441\u0435\u0456\u043e\u0440\u0445\u0443"  # Cyrillic small
    "\u0391\u0392\u0395\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4\u03a5\u03a7"  # Greek
    "\u03bd\u03bf\u03c1"  # Greek small
    "\u0405\u0455\u0501\u0408\u0458\u04bb\u03f9\u03f2",  # Dze, komi de, je, shha, lunate sigma
    "ABCEHIKMOPTXY" "aceiopxy" "ABEHIKMNOPTYX" "vop" "SsdJjhCc")
#: CPR terms a writer may spell out letter by letter
_SPELT_TERMS = frozenset({"DNACPR", "UDNACPR", "DNAR", "DNR", "NFR", "NTBR", "CPR"})
#: letters spelt out one by one: D.N.A.C.P.R., D. N. R., D N A C P R, D-N-R, D / N / R,
#: and with any Unicode dash between them
_SPELT_OUT = re.compile(r"(?<![A-Za-z])[A-Za-z]"
                        r"(?:(?:\s*[./\-\u2010-\u2015\u2212]\s*|\s+)[A-Za-z](?![A-Za-z]))+\.?")
#: a title just before initials (`Dr D.N.R. Patel`): a name, not a decision
_TITLE_BEFORE = re.compile(r"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof)\.?\s*$")


def words_for(concept: Any, fallback: str = "not stated") -> str:
    """How a CodeableConcept reads: its first display, else its text, else a code."""
    if not isinstance(concept, dict):
        return fallback
    for c in codings(concept):
        if c.get("display"):
            return str(c["display"])
    if concept.get("text"):
        return str(concept["text"])
    for c in codings(concept):
        if c.get("code"):
            return str(c["code"])
    return fallback


#: Unicode bidirectional controls: in a name they can redraw the rest of a line backwards
#: (an NHS number or birth date read reversed); record text never needs them. (Other
#: format characters stay: Persian needs ZWNJ, Sinhala and emoji ZWJ, the Welsh flag its
#: tags; `mentions_cpr` reads through them.)
_BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
#: what XML 1.0 does not allow: the narrative must stay well-formed XHTML
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
#: combining marks kept on one letter (Hindi and pointed Hebrew stack three); more only
#: paint over the lines around them (a name drawn across "NOT FOR ATTEMPTED CPR")
MAX_MARKS = 4


def escaped(text: Any) -> str:
    """Record text made safe for the page and the narrative: bidirectional controls
    removed, stacks of combining marks cut to MAX_MARKS, characters XML forbids replaced
    by U+FFFD, markup escaped."""
    return html.escape(_NOT_XML.sub("\ufffd", _plain(str(text))), quote=True)


def _plain(text: str) -> str:
    if text.isascii():  # nearly every text: nothing to do
        return text
    out: list[str] = []
    marks = 0
    for c in _BIDI_CONTROLS.sub("", text):
        kind = unicodedata.category(c)
        if kind != "Cf":  # a joiner keeps the letter going: its marks still count
            marks = marks + 1 if kind in ("Mn", "Me") else 0
        if marks <= MAX_MARKS:
            out.append(c)
    return "".join(out)
