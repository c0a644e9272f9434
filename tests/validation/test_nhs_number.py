"""The NHS number Modulus 11 check, and that the profile's FHIRPath (scr-nhs-1) agrees."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from fhir_gateway.validation import is_valid_nhs_number
from fhir_gateway.validation.invariants import compile_invariant
from fhir_gateway.validation.nhs_number import check_digit
from validation_kit import REPO


@pytest.mark.parametrize("number", ["9434765919", "9990000018", "4010232137", "0000000000"])
def test_valid(number: str) -> None:
    assert is_valid_nhs_number(number)


@pytest.mark.parametrize("number", [
    "9434765918",     # wrong check digit
    "943 476 5919",   # spaces are not part of the FHIR value
    "943-476-5919",
    "943476591",      # nine digits
    "94347659190",    # eleven
    "943476591X",
    "",
    "\uff19\uff14\uff13\uff14\uff17\uff16\uff15\uff19\uff11\uff19",  # full-width digits
])
def test_invalid(number: str) -> None:
    assert not is_valid_nhs_number(number)


def test_check_value_10_means_no_valid_number() -> None:
    prefix = next(f"{n:09d}" for n in range(100000000, 100001000)
                  if check_digit(f"{n:09d}") is None)
    assert all(not is_valid_nhs_number(prefix + d) for d in "0123456789")


def test_check_value_11_means_zero() -> None:
    def weighted(nine: str) -> int:
        return sum(int(d) * w for d, w in zip(nine, range(10, 1, -1), strict=True))

    prefix = next(f"{n:09d}" for n in range(100000000, 100001000)
                  if weighted(f"{n:09d}") % 11 == 0)
    assert is_valid_nhs_number(prefix + "0")


def test_not_a_string() -> None:
    assert not is_valid_nhs_number(9434765919)  # type: ignore[arg-type]


def test_profile_fhirpath_agrees_with_python() -> None:
    """scr-nhs-1 as published in SCR-Patient gives the same answer as the Python check."""
    sd = json.loads((REPO / "profiles" / "generated" /
                     "StructureDefinition-SCR-Patient.json").read_text())
    (expression,) = {c["expression"] for e in sd["snapshot"]["element"]
                     for c in e.get("constraint", []) if c["key"] == "scr-nhs-1"}
    rng = random.Random(1580)
    samples = ["9434765919", "9434765918", "943476591", "94347659190", "abcdefghij",
               "943 476 5919"]
    for _ in range(150):
        prefix = f"{rng.randrange(10**9):09d}"
        samples.extend(prefix + d for d in rng.sample("0123456789", 3))
    invariant = compile_invariant({"key": "scr-nhs-1", "expression": expression})
    assert invariant is not None
    for number in samples:
        assert invariant.check(number, {}) == is_valid_nhs_number(number), number


NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


@pytest.mark.parametrize(("resource", "where"), [
    ({"resourceType": "Patient", "identifier": [{"system": NHS_SYSTEM,
                                                 "value": "943 476 5919"}]},
     "Patient.identifier[0].value"),
    ({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
      "subject": {"identifier": {"system": NHS_SYSTEM, "value": "9434765918"}}},
     "Observation.subject.identifier.value"),
])
def test_an_nhs_number_is_checked_where_no_gateway_profile_applies(
        validator: Any, resource: dict[str, Any], where: str) -> None:
    """A Patient written over REST with no profile and its NHS number spaced ("943 476
    5919") was stored, and then found by no search: the emergency summary for 9434765919
    said no record was known (review 21)."""
    issues = validator.validate(resource)
    assert [i.expression for i in issues if i.severity == "error"] == [(where,)]
    assert "scr-nhs-1" in issues[0].diagnostics
    fixed = json.loads(json.dumps(resource).replace("943 476 5919", "9434765919")
                       .replace("9434765918", "9434765919"))
    assert [i for i in validator.validate(fixed) if i.severity == "error"] == []
