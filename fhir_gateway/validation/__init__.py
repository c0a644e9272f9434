"""Profile validation: the gateway's profiles (``profiles/``) enforced on every resource.

Public API::

    from fhir_gateway.validation import ProfileValidator, default_validator, is_valid_nhs_number

    validator = default_validator()          # built once per process, from package data
    issues = validator.validate(resource)    # list[fhir_gateway.errors.Issue]
    validator.validate(resource, profile=url)
    validator.profiles_for("Observation")    # supportedProfile URLs
    validator.known(url)

Build-time modules (not used at run time): ``snapshot`` (snapshot generation) and
``build_profiles`` (``make profiles``). ``ProfileValidator`` is imported on first use, so
the build runs with the standard library alone.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from .nhs_number import is_placeholder_nhs_number, is_valid_nhs_number

if TYPE_CHECKING:
    from .validator import ProfileValidator

__all__ = ["CANONICAL", "ProfileValidator", "default_validator", "is_placeholder_nhs_number",
           "is_valid_nhs_number"]

#: The canonical base of the gateway's conformance resources.
CANONICAL = "https://fhir.shared-care-record.example"


def __getattr__(name: str) -> Any:
    if name == "ProfileValidator":
        from .validator import ProfileValidator

        return ProfileValidator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def default_validator() -> ProfileValidator:
    """The process-wide validator over the installed profiles (compiled on first use)."""
    from .validator import ProfileValidator

    return ProfileValidator()

