"""Status codes the shared record reads are checked on every resource, with a gateway
profile or without: `entered in error` (a typo for `entered-in-error`) was stored, and a
decision recorded in error would have counted as current. A reviewer's script found it."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_gateway.validation import default_validator
from fhir_gateway.validation.validator import BASE_STATUS_BINDINGS


@pytest.mark.parametrize(("resource", "element"), [
    ({"resourceType": "Observation", "status": "entered in error", "code": {"text": "x"}},
     "Observation.status"),
    ({"resourceType": "Encounter", "status": "done", "class": {"code": "IMP"}},
     "Encounter.status"),
    ({"resourceType": "CarePlan", "status": "actve", "intent": "plan",
      "subject": {"reference": "Patient/p"}}, "CarePlan.status"),
    ({"resourceType": "CarePlan", "status": "active", "intent": "plans",
      "subject": {"reference": "Patient/p"}}, "CarePlan.intent"),
    ({"resourceType": "Consent", "status": "Active", "scope": {"text": "x"},
      "category": [{"text": "x"}]}, "Consent.status"),
    ({"resourceType": "DetectedIssue", "status": "open"}, "DetectedIssue.status"),
])
def test_a_status_outside_its_value_set_is_refused(resource: dict[str, Any],
                                                   element: str) -> None:
    (issue,) = default_validator().validate(resource)
    assert issue.code == "code-invalid" and issue.expression == (element,)


@pytest.mark.parametrize("status", ["final", "amended", "corrected", "cancelled",
                                    "entered-in-error", "preliminary", "registered",
                                    "unknown"])
def test_every_r4_observation_status_passes(status: str) -> None:
    assert default_validator().validate(
        {"resourceType": "Observation", "status": status, "code": {"text": "x"}}) == []


def test_every_binding_checked_is_one_the_package_can_enumerate() -> None:
    terminology = default_validator().terminology
    for bindings in BASE_STATUS_BINDINGS.values():
        for _, url in bindings:
            assert terminology.codes(url) is not None, url
