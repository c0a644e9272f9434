"""The summary as a printable page for a crew's tablet (`Accept: text/html`).

Same sections and sentences as the document's narrative (`words`). Large type; a
deceased banner first when the record says so; then the CPR decision in a coloured box
(red: not for CPR, green: for CPR, amber: partners disagree - both shown, grey: none
current; the sentence naming each partner's decision when they disagree, as the
document's "Partners disagree on CPR" section says it); then every other section, each
fact with its source partner and dates.
No scripts, no external resources (a Content-Security-Policy says so too); every value
from the record is escaped.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from . import terms as t
from .words import Item, Section, day, patient_name

MEDIA_TYPE = "text/html; charset=utf-8"
#: sent with the page: nothing but its own inline styles may load or run
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
}
_CSP_META = ('<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
             'style-src \'unsafe-inline\'">')
#: box colours (background, text): tests look for these in the rendered pixels
TONES = {
    "not-attempt": ("#a50021", "#ffffff"),
    "attempt": ("#00703c", "#ffffff"),
    "conflict": ("#ffbf47", "#0b0c0c"),
    "expired": ("#505a5f", "#ffffff"),
    "none": ("#505a5f", "#ffffff"),
    "deceased": ("#0b0c0c", "#ffffff"),
}
_STYLE = """
@page { size: A4; margin: 10mm; }
* { box-sizing: border-box; }
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; font-size: 22px;
       line-height: 1.3; margin: 0; padding: 16px; color: #0b0c0c; background: #ffffff;
       overflow-wrap: anywhere;
       -webkit-print-color-adjust: exact; print-color-adjust: exact; }
.banner, .box { padding: 14px 18px; margin: 0 0 14px 0; border-radius: 6px; }
.banner h1, .box h1 { font-size: 40px; margin: 0 0 6px 0; letter-spacing: 0.5px; }
.who { font-size: 24px; font-weight: bold; margin: 0 0 8px 0; }
ul { margin: 4px 0 4px 0; padding-left: 26px; }
li { margin: 0 0 8px 0; }
.fact { font-weight: bold; }
.meta { font-size: 19px; }
.status { font-weight: bold; text-decoration: underline; }
section.card { border-top: 3px solid #0b0c0c; padding: 6px 0 2px 0; margin: 0 0 8px 0; }
section.card h2 { font-size: 26px; margin: 0 0 4px 0; }
footer { font-size: 18px; border-top: 1px solid #505a5f; margin-top: 10px; padding-top: 6px; }
@media print { body { font-size: 12pt; padding: 0; } .banner h1, .box h1 { font-size: 22pt; }
               section.card h2 { font-size: 14pt; } .meta, footer { font-size: 10pt; } }
"""


def page(sections: list[Section], patient: dict[str, Any], today: date) -> str:
    """The whole page; `sections` as `words.sections` made them."""
    name = patient_name(patient, today)
    body: list[str] = []
    by_key = {s.key: s for s in sections}
    if "deceased" in by_key:
        body.append(_box(by_key["deceased"], "banner", None))
    # The disagreement section lists the same decisions as the CPR box: its sentence
    # (who records what, when) goes in the box, so the page says what the document says.
    conflict = by_key["conflict"].notes if "conflict" in by_key else ()
    body.append(_box(by_key["cpr"], "box", _identity(patient, name), conflict))
    for s in sections:
        if s.key in ("deceased", "cpr", "conflict", "about"):
            continue
        body.append(_card(s))
    if "about" in by_key:
        body.append("<footer>" + "".join(f"<p>{_e(n)}</p>" for n in by_key["about"].notes)
                    + "</footer>")
    return ("<!DOCTYPE html>\n<html lang=\"en-GB\"><head><meta charset=\"utf-8\">"
            f"{_CSP_META}<meta name=\"viewport\" content=\"width=device-width, "
            f"initial-scale=1\"><title>Emergency care summary: {_e(name)}</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def error_page(status: int, message: str) -> str:
    """A page for a request the summary cannot answer (bad NHS number, unknown person, an
    internal error)."""
    titles = {400: "Check the request", 401: "Sign-in needed", 403: "Not allowed",
              404: "No record found", 409: "Record found, not shown",
              500: "Summary could not be made"}
    title = titles.get(status, "Cannot show")
    # a record that exists but cannot be shown must never read as "no record": a crew
    # would take the person for one with no plan
    found = ("<p>This person has a record on the shared record, which may hold a care "
             "plan or a CPR decision. Use the patient's own forms and ask their "
             "clinicians.</p>") if status == 409 else ""
    return ("<!DOCTYPE html>\n<html lang=\"en-GB\"><head><meta charset=\"utf-8\">"
            f"{_CSP_META}<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
            f"<div class=\"box\" style=\"background:#505a5f;color:#ffffff\">"
            f"<h1>{_e(title.upper())}</h1><p>{_e(message)}</p>{found}</div>"
            f"<p class=\"meta\">HTTP status {status}. Nothing is shown from any record.</p>"
            "</body></html>\n")


def _box(section: Section, css: str, identity: str | None,
         more: tuple[str, ...] = ()) -> str:
    bg, fg = TONES.get(section.tone, TONES["none"])
    parts = [f'<div class="{css}" style="background:{bg};color:{fg}">',
             f"<h1>{_e(section.headline or section.title)}</h1>"]
    if identity:
        parts.append(f'<p class="who">{identity}</p>')
    parts.append(_items(section.items))
    parts += [f"<p>{_e(n)}</p>" for n in (*more, *section.notes)]
    parts.append("</div>")
    return "".join(parts)


def _card(section: Section) -> str:
    inner = _items(section.items) if section.items else f"<p>{_e(section.empty)}</p>"
    notes = "".join(f"<p>{_e(n)}</p>" for n in section.notes)
    return f'<section class="card"><h2>{_e(section.title)}</h2>{inner}{notes}</section>'


def _items(items: tuple[Item, ...]) -> str:
    if not items:
        return ""
    lis = []
    for i in items:
        head = f'<span class="fact">{_e(i.text)}</span>'
        if i.when:
            head += f" - {_e(i.when)}"
        if i.status:
            head += f' - <span class="status">{_e(i.status)}</span>'
        lines = [head, *(_e(d) for d in i.details)]
        if i.source:
            lines.append(f'<span class="meta">Source: {_e(i.source)}</span>')
        lis.append("<li>" + "<br>".join(lines) + "</li>")
    return "<ul>" + "".join(lis) + "</ul>"


def _identity(patient: dict[str, Any], name: str) -> str:
    nhs = t.nhs_number_of(patient)
    parts = [f"<bdi>{_e(name)}</bdi>"]  # a right-to-left name cannot reorder the rest
    if nhs:
        parts.append(f"NHS number {_e(t.spaced(nhs))}")
    if patient.get("birthDate"):
        parts.append(f"born {_e(day(str(patient['birthDate'])))}")
    if patient.get("gender"):
        parts.append(_e(str(patient["gender"])))
    return " &middot; ".join(parts)


def _e(text: str) -> str:
    return t.escaped(text)
