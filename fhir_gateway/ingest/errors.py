"""Ingestion's exceptions.

    IngestError                 base of every error this package raises to its caller
     ├── UnknownPartner         no mapping file for the partner name given
     └── MappingError           a mapping, ConceptMap or CodeSystem file is wrong (names
                                the file and where in it); found when it is loaded

    FieldError                  internal: one source field's value is unusable; the engine
                                collects these into a `Rejection`, they never escape

Bad *data* never raises out of `map_file`: a record that cannot be read or mapped becomes
a `Rejection`. Only a bad *mapping* (the gateway's own configuration) raises.
"""

from __future__ import annotations

from typing import Any


class IngestError(Exception):
    """Base of the errors ingestion raises to its caller."""


class UnknownPartner(IngestError):
    """There is no mapping for this partner name."""


class MappingError(IngestError):
    """A mapping file (or a ConceptMap / CodeSystem beside it) is invalid."""

    def __init__(self, file: str, where: str, problem: str) -> None:
        self.file = file
        self.where = where
        self.problem = problem
        at = f" at {where}" if where else ""
        super().__init__(f"{file}{at}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:  # pickled whole (a mapping child sends it)
        return type(self), (self.file, self.where, self.problem)


class FieldError(Exception):
    """A source field's value cannot be used (bad check digit, impossible date, ...)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.field, self.problem)
