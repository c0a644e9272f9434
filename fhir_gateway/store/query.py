"""The neutral query language every engine compiles: typed predicates, criteria, sort keys.

The FHIR layer parses `?param=value` once into an `IndexQuery`; an engine only translates
it to SQL or a MongoDB filter. Values here are always data: engines bind them as
parameters (SQLite) or place them as literal values (MongoDB), never splice them into
query text.

Order: results come sorted by the `sort` keys, then (rtype, rid) ascending. The tie-break
never changes when a resource is updated, so keyset paging neither repeats nor loses a
resource that exists throughout (a resource created meanwhile may or may not be seen).
A missing sort value sorts lowest (first ascending, last descending) on both engines.
Keyset paging: `after` is the key of the last row of the previous page, as returned in
`FindResult.keys`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    system: str | None = None  # quantity: the unit's system, when the search names one
    code: str | None = None  # quantity: the unit's code


@dataclass(frozen=True, slots=True)
class ReferencePredicate:
    target_type: str | None  # None = any type
    target_id: str | None
    url: str | None = None  # absolute or canonical match on the written reference


@dataclass(frozen=True, slots=True)
class MissingPredicate:
    missing: bool


@dataclass(frozen=True, slots=True)
class ChainPredicate:
    """A reference whose target, of `target_type`, matches `query` (chained parameter)."""

    target_type: str
    query: IndexQuery


@dataclass(frozen=True, slots=True)
class HasPredicate:
    """Resources referenced through `source_type`.`param` by sources matching `query`
    (`_has`, reverse chaining); used with a Criterion of kind "has"."""

    source_type: str
    param: str
    query: IndexQuery


Predicate = (
    TokenPredicate
    | TokenTextPredicate
    | StringPredicate
    | RangePredicate
    | ReferencePredicate
    | MissingPredicate
    | ChainPredicate
    | HasPredicate
)


@dataclass(slots=True)
class Criterion:
    """One search test: a parameter, the index kind it lives in, and OR-ed predicates.

    `negate` (token `:not`) selects resources having no value that matches any predicate.
    """

    param: str
    kind: str  # token | string | uri | date | reference | number | quantity | has
    predicates: list[Predicate]
    negate: bool = False


@dataclass(frozen=True, slots=True)
class SortKey:
    param: str
    kind: str
    descending: bool = False


@dataclass(slots=True)
class IndexQuery:
    """A neutral search: current, non-deleted resources meeting every criterion."""

    rtype: str | None
    criteria: list[Criterion] = field(default_factory=list)
    ids: list[str] | None = None  # _id
    #: only resources in this Patient's compartment ($everything), optionally of `types`
    compartment: str | None = None
    types: list[str] | None = None
    since: str | None = None  # last_updated >= since (a FHIR instant)
    sort: list[SortKey] = field(default_factory=list)
    after: tuple[object, ...] | None = None
    limit: int | None = None


class QueryTooBroad(ValueError):
    """An inner query (chain, _has) matched more resources than an engine will carry."""


#: How many ids a chain or _has may carry from its inner query (MongoDB has no joins).
MAX_INNER_IDS = 10_000
