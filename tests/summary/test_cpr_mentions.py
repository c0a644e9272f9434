"""Which partner free text the crew's summary reads as being about CPR.

An alert saying DNACPR in words, with no coded decision, must turn the headline from "no
emergency care plan recorded" to "read the alert". Each case here is a way a reviewer
showed real alert text was missed (or wrongly read). Missing one is the unsafe mistake;
a needless "read the alert" is the safe one. The headline itself is tested end to end in
test_summary_review7.py; these call the reader directly."""

from __future__ import annotations

import pytest

from fhir_gateway.summary.terms import mentions_cpr

READ_AS_CPR = [
    # misspellings of resuscitation, and letter slips in DNACPR
    "Not for rescus", "Not for resucitation", "Do not rescusitate", "not for ressuscitation",
    "DNAPCR in place", "DNACRP signed",
    # the ReSPECT form in any casing with "form", in capitals, or by its full name
    "RESPECT FORM IN PLACE", "Respect form completed 12/05/26", "ReSpect plan at home",
    "Recommended Summary Plan for Emergency Care and Treatment completed",
    # glued to an underscore or a digit (local alert codes)
    "NOT_FOR_CPR", "DNACPR_IN_PLACE", "DNACPR2024 signed, form at home",
    # spelt out, then another abbreviation; two terms by a slash; a titled initial first
    "D.N.R. G.P. aware", "D.N.A.C.P.R. N.O.K. aware", "D.N.R/N.F.R",
    "Seen by Dr K. D.N.R. agreed with family", "Reviewed by Dr S. D N R, form at home",
    # other UK wording and inflections
    "Pt is NTBR - discussed with family", "Not for 2222 call", "Not for crash call",
    "Not for cardiac arrest call", "Allow natural death", "NFRs discussed with son",
    "DNACPRed by GP 03/05", "DNAR'd on last admission",
    # broken across lines, or left HTML-escaped
    "Not for re-\nsuscitation", "DNAC-\nPR in place", "DNAC&shy;PR in place",
    "D&#46;N&#46;R&#46; in place",
    # look-alike letters NFKD would otherwise fold into others
    "Not for re\u0455u\u0455", "Not for \u03f9PR",
]

NOT_CPR = [
    "Just in case meds: midazolam 2.5 mg s.c. p.r.n. for agitation", "morphine s/c p/r",
    "Diclofenac 100 mg c. p.r. o.d.", "Visits from D.N. (R. Jones)", "CRP 12 on admission",
    "Postcode CR0 1PR", "rescue medication in the fridge", "please respect her privacy",
    "Key holder Dr D.N.R. Patel", "result awaited",
]


@pytest.mark.parametrize("text", READ_AS_CPR)
def test_real_ways_of_writing_a_cpr_decision_are_read(text: str) -> None:
    assert mentions_cpr(text)


@pytest.mark.parametrize("text", NOT_CPR)
def test_ordinary_clinical_text_is_not_read_as_cpr(text: str) -> None:
    assert not mentions_cpr(text)

