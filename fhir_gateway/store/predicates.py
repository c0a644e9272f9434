"""Typed search predicates: the neutral language every engine compiles.

The FHIR layer parses `?param=value` once into these; an engine only translates them to
SQL or a MongoDB filter. Values here are always data: engines bind them as parameters
(SQLite) or place them as literal values (MongoDB), never splice them into query text.
"""

from __future__ import annotations

from dataclasses import dataclass

#: A token predicate's system: ANY_SYSTEM matches any system (including none); NO_SYSTEM
#: matches only values without a system (`|code`).
ANY_SYSTEM: None = None
NO_SYSTEM = ""


@dataclass(frozen=True, slots=True)
class TokenPredicate:
    system: str | None  # None = any system; "" = no system
    code: str | None  # None = any code (`system|`)


@dataclass(frozen=True, slots=True)
class TokenTextPredicate:
    """`:text`: the normalised display/text starts with (or contains) this."""

    text: str


@dataclass(frozen=True, slots=True)
class StringPredicate:
    mode: str  # "prefix" (default, on normalised text), "exact", "contains"
    text: str


@dataclass(frozen=True, slots=True)
class RangePredicate:
    """Date or number comparison of the stored [low, high] range with the search range."""

    op: str  # eq ne lt gt le ge sa eb ap
    low: object
    high: object


@dataclass(frozen=True, slots=True)
class ReferencePredicate:
    target_type: str | None  # None = any type
    target_id: str | None
    url: str | None = None  # absolute or canonical match on the written reference


@dataclass(frozen=True, slots=True)
class MissingPredicate:
    missing: bool


Predicate = (
    TokenPredicate
    | TokenTextPredicate
    | StringPredicate
    | RangePredicate
    | ReferencePredicate
    | MissingPredicate
)
