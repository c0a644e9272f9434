"""Merging what partners say of a death: "deceased: true" from one and a date of death
from another say the same, and the date says more, so the record keeps the date in
whatever order the records arrive; a later "not deceased" still corrects it."""

from __future__ import annotations

import itertools

import pytest

from fhir_gateway.pipeline.merge import merge, stamp

GP = stamp("2026-03-02T09:00:00Z", "gp", "g1")          # older
ACUTE = stamp("2026-03-04T12:00:00Z", "acute", "a1")    # newer


def merged(*records: tuple[dict[str, object], str]) -> dict[str, object]:
    result: dict[str, object] | None = None
    times: dict[str, str] = {}
    for incoming, when in records:
        result, times = merge(result, {"resourceType": "Patient", **incoming}, times, when)
    assert result is not None
    return result


@pytest.mark.parametrize("order", list(itertools.permutations([0, 1])))
def test_a_date_of_death_is_kept_when_another_partner_says_only_deceased(
        order: tuple[int, ...]) -> None:
    records = [({"deceasedDateTime": "2026-03-01"}, GP), ({"deceasedBoolean": True}, ACUTE)]
    result = merged(*(records[i] for i in order))
    assert result.get("deceasedDateTime") == "2026-03-01"
    assert "deceasedBoolean" not in result


def test_a_newer_not_deceased_still_corrects_a_date_of_death() -> None:
    later = stamp("2026-03-05T08:00:00Z", "gp", "g2")
    result = merged(({"deceasedDateTime": "2026-03-01"}, GP),
                    ({"deceasedBoolean": False}, later))
    assert result.get("deceasedBoolean") is False and "deceasedDateTime" not in result
