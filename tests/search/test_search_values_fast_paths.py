"""The shortcuts in search/values.py give what the general code gives."""

from __future__ import annotations

import random
import unicodedata

import pytest

from fhir_gateway.search import values
from fhir_gateway.search.values import BadDate, date_range, normalize


def _normalize_in_full(text: str) -> str:
    """`normalize` without its ASCII shortcut."""
    decomposed = unicodedata.normalize("NFKD", text.translate(values._CONTROLS_AS_SPACE))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())


def test_ascii_normalize_is_the_full_normalize() -> None:
    rnd = random.Random(5)
    texts = [chr(i) + "Ab  c" for i in range(128)]
    texts += ["".join(chr(rnd.randrange(128)) for _ in range(rnd.randrange(16)))
              for _ in range(20000)]
    for text in texts:
        assert text.isascii()
        assert normalize(text) == _normalize_in_full(text), repr(text)
    for text in ("Zoë", "ﬁle", "Ångström", "İstanbul", "Straße"):  # the full path
        assert normalize(text) == _normalize_in_full(text)


@pytest.mark.parametrize("text", ["2026", "2026-02", "2024-02-29", " 2026-07-16 ",
                                  "2026-07-16T10:30:00+01:00", "2026-07-16T10:30:00.1Z"])
def test_cached_date_range_is_the_date_range(text: str) -> None:
    assert date_range(text) == values._date_range(text)
    assert date_range(text) == values._date_range(text)  # from the cache


@pytest.mark.parametrize("text", ["2025-02-29", "x", "", "2026-13"])
def test_a_bad_date_fails_every_time(text: str) -> None:
    for _ in range(2):
        with pytest.raises(BadDate):
            date_range(text)


def test_a_date_that_is_not_text_is_a_bad_date() -> None:
    """A JSON number or object where FHIR has a date string is a BadDate (the index leaves
    it out with a warning), not an AttributeError (which answered 500: session 12)."""
    with pytest.raises(BadDate):
        date_range(5)  # type: ignore[arg-type]
    with pytest.raises(BadDate):
        date_range({"start": "2026"})  # type: ignore[arg-type]  # unhashable: uncached
