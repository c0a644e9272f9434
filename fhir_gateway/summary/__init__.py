"""`$emergency-summary`: what an ambulance crew needs, from every partner, in one document.

    operation.emergency_summary(ctx, req, rtype, rid)   the HTTP-free entry (router calls it)
     ├── facts.gather(...)        the current facts per section, from the patient's record
     │                            (compartment + Provenance), each resource checked by
     │                            the interceptors' `can_see`
     ├── words.sections(facts)    the same facts as sections of plain sentences
     ├── document.bundle(...)     a FHIR `document` Bundle: Composition first, DetectedIssue
     │                            for partners who disagree, cited resources, Provenance
     └── html.page(...)           the printable page (Accept: text/html): same sentences

Rules (what "current" means) are in `facts`; wording in `words`.
"""

from __future__ import annotations

__all__ = ["emergency_summary"]


def __getattr__(name: str) -> object:
    if name == "emergency_summary":
        from .operation import emergency_summary

        return emergency_summary
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
