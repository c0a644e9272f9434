"""The NHS number check digit (Modulus 11), as NHS England specifies it.

Multiply the first nine digits by 10, 9, ..., 2 and add the products; r = sum mod 11;
the check digit is 11 - r, where 11 means 0 and 10 means the number is invalid (no NHS
number is issued with it). The tenth digit must equal the check digit.
943 476 5919 is valid; the range 999 000 0000 to 999 999 9999 is never issued (test use).
"""

from __future__ import annotations

_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2)
_DIGITS = frozenset("0123456789")


def check_digit(first_nine: str) -> int | None:
    """The check digit for nine digits, or None when the Modulus 11 result is 10."""
    total = sum(int(d) * w for d, w in zip(first_nine, _WEIGHTS, strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    if check == 10:
        return None
    return check


def is_valid_nhs_number(text: str) -> bool:
    """True when `text` is exactly ten ASCII digits whose last is the Modulus 11 check digit.

    No spaces or separators are accepted: FHIR carries the NHS number as ten digits.
    """
    if not isinstance(text, str) or len(text) != 10 or not _DIGITS.issuperset(text):
        return False
    return check_digit(text[:9]) == int(text[9])


def is_placeholder_nhs_number(digits: str) -> bool:
    """One digit ten times (`0000000000`, `1111111111`): passes Modulus 11 but is never
    issued; systems write it when they have no number, so it must link nobody."""
    return len(digits) == 10 and len(set(digits)) == 1
