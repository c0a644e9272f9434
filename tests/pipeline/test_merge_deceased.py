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


# Each partner's newest word on a death is kept; "not deceased" (HL7 PID-30 N) corrects
# only what that partner said. The GP feed has no event times, so its stamps sort before
# any of the hospital's: the hospital's "not deceased" must not outrank the GP's death.
GP_DIED = ({"deceasedDateTime": "2026-05-20"}, stamp(None, "gp", "g9"))
ACUTE_DIED = ({"deceasedDateTime": "2026-05-01T10:00:00+01:00"},
              stamp("2026-05-01T10:00:00Z", "acute", "a1"))
ACUTE_ALIVE = ({"deceasedBoolean": False}, stamp("2026-05-02T10:00:00Z", "acute", "a2"))


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_one_partners_correction_never_undoes_anothers_death(order: tuple[int, ...]) -> None:
    records = [GP_DIED, ACUTE_DIED, ACUTE_ALIVE]
    result = merged(*(records[i] for i in order))
    assert result.get("deceasedDateTime") == "2026-05-20"  # the GP's; the acute's withdrawn
    assert "deceasedBoolean" not in result


@pytest.mark.parametrize("order", list(itertools.permutations(range(2))))
def test_a_partners_correction_undoes_its_own_death_in_any_order(
        order: tuple[int, ...]) -> None:
    records = [ACUTE_DIED, ACUTE_ALIVE]
    result = merged(*(records[i] for i in order))
    assert result.get("deceasedBoolean") is False and "deceasedDateTime" not in result


def test_a_death_stored_before_statements_were_kept_per_partner_is_no_ones_to_withdraw(
        ) -> None:
    # element stamps written by earlier code hold only "deceased", and its stamp may be
    # the hospital's beside the GP's date (the newer stamp was kept): no partner's "not
    # deceased" can tell it withdrew that death
    stored = {"resourceType": "Patient", "deceasedDateTime": "2026-05-20"}
    times = {"deceased": ACUTE_DIED[1]}
    for alive in (ACUTE_ALIVE[1], stamp("2026-05-02T10:00:00Z", "gp", "g10")):
        result, _ = merge(stored, {"resourceType": "Patient", "deceasedBoolean": False},
                          times, alive)
        assert result.get("deceasedDateTime") == "2026-05-20"
        assert "deceasedBoolean" not in result
    # a stored "not deceased" is its stamp's partner's, which a death of another outranks
    stored = {"resourceType": "Patient", "deceasedBoolean": False}
    result, _ = merge(stored, {"resourceType": "Patient", "deceasedDateTime": "2026-05-20"},
                      {"deceased": ACUTE_ALIVE[1]}, GP_DIED[1])
    assert result.get("deceasedDateTime") == "2026-05-20"


@pytest.mark.parametrize("order", list(itertools.permutations(range(2))))
def test_one_partners_date_outlasts_its_own_later_deceased_true(
        order: tuple[int, ...]) -> None:
    # the hospital's A03 gives the date; a later A08 says only PID-30 Y
    records = [ACUTE_DIED, ({"deceasedBoolean": True}, stamp("2026-05-03T10:00:00Z",
                                                             "acute", "a3"))]
    result = merged(*(records[i] for i in order))
    assert result.get("deceasedDateTime") == "2026-05-01T10:00:00+01:00"
    assert "deceasedBoolean" not in result


def _stamped(when: str, rid: str) -> str:
    return stamp(f"2026-05-{when}T10:00:00Z", "acute", rid)


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
def test_one_partners_withdrawn_date_does_not_come_back_in_any_order(
        order: tuple[int, ...]) -> None:
    # the hospital: a date (1st), "not deceased" (2nd), then "deceased: true" (3rd).
    # Its word is "true" without the withdrawn date, whatever the order, and again after
    # any of the messages is delivered twice.
    records = [({"deceasedDateTime": "2026-05-01"}, _stamped("01", "a1")),
               ({"deceasedBoolean": False}, _stamped("02", "a2")),
               ({"deceasedBoolean": True}, _stamped("03", "a3"))]
    sequence = [records[i] for i in order]
    for again in range(4):
        result = merged(*sequence, *([records[again]] if again < 3 else []))
        assert result.get("deceasedBoolean") is True, (order, again, result)
        assert "deceasedDateTime" not in result


def test_of_one_partners_dates_the_newest_is_kept_in_any_order() -> None:
    records = [({"deceasedDateTime": "2026-05-01"}, _stamped("01", "a1")),
               ({"deceasedDateTime": "2026-05-02"}, _stamped("02", "a2")),
               ({"deceasedBoolean": True}, _stamped("03", "a3"))]
    for order in itertools.permutations(range(3)):
        assert merged(*(records[i] for i in order))["deceasedDateTime"] == "2026-05-02"


# A partner without event times (the community trust, the GP register) stamps every
# delivery of one record alike: its next extract is that record's word now. A corrected
# date of death, or "not deceased" after a death recorded in error, was dropped as "said
# before", so a living person stayed DECEASED on the crew's summary.
CMTY = stamp(None, "community", "Patient/C1")


@pytest.mark.parametrize(("first", "then", "expect"), [
    ({"deceasedDateTime": "2026-10-12"}, {"deceasedBoolean": False},
     {"deceasedBoolean": False}),
    ({"deceasedBoolean": False}, {"deceasedDateTime": "2026-11-01"},
     {"deceasedDateTime": "2026-11-01"}),
    ({"deceasedDateTime": "2026-10-12"}, {"deceasedDateTime": "2026-10-21"},
     {"deceasedDateTime": "2026-10-21"}),
    ({"deceasedBoolean": True}, {"deceasedDateTime": "2026-10-21"},
     {"deceasedDateTime": "2026-10-21"}),
])
def test_an_untimed_records_next_delivery_is_its_word_on_the_death(
        first: dict[str, object], then: dict[str, object],
        expect: dict[str, object]) -> None:
    result = merged((first, CMTY), (then, CMTY))
    assert {k: v for k, v in result.items() if k.startswith("deceased")} == expect
    # and the same again changes nothing
    again = merged((first, CMTY), (then, CMTY), (then, CMTY))
    assert again == result


def test_one_untimed_records_correction_leaves_another_records_word() -> None:
    """Two records of one partner (two rows of the register): each keeps its own word."""
    row1, row2 = stamp(None, "gp", "~1"), stamp(None, "gp", "~2")
    result = merged(({"deceasedDateTime": "2026-10-12"}, row1),
                    ({"deceasedBoolean": False}, row2),
                    ({"deceasedDateTime": "2026-10-12"}, row1))
    assert result == merged(({"deceasedDateTime": "2026-10-12"}, row1),
                            ({"deceasedBoolean": False}, row2))


@pytest.mark.parametrize("order", list(itertools.permutations(range(2))))
def test_one_messages_date_and_deceased_true_keep_the_date_in_either_order(
        order: tuple[int, ...]) -> None:
    """Two HL7 messages under one control id and time (a PAS reusing MSH-10): a timed
    stamp names one message, whose "true" carries its date; only an un-timed record's
    next delivery restates its word."""
    when = stamp("2026-05-01T09:30:00Z", "acute", "M1")
    records = [({"deceasedDateTime": "2026-05-01T09:30:00+01:00"}, when),
               ({"deceasedBoolean": True}, when)]
    result = merged(*(records[i] for i in order))
    assert result.get("deceasedDateTime") == "2026-05-01T09:30:00+01:00"
