"""Parsing `?name[:modifier]=value` once, at the edge, into a neutral `IndexQuery`.

Engines never see FHIR syntax. Every value is split and typed here (R4 3.1.1.4); an
unknown parameter or modifier is an error naming the valid ones under
`Prefer: handling=strict` (the default) and is reported but ignored under `lenient`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import BadRequest, Issue
from ..fhir.validation import is_valid_id
from ..store.base import Criterion, IndexQuery
from ..store.predicates import (
    MissingPredicate,
    Predicate,
    RangePredicate,
    ReferencePredicate,
    StringPredicate,
    TokenPredicate,
    TokenTextPredicate,
)
from .registry import SearchParam, SearchRegistry
from .values import BadDate, date_range, normalize, number_range

#: Parameters about the result set, not the match (R4 3.1.1.5, and `_cursor` for paging).
RESULT_PARAMS = frozenset({"_count", "_format", "_pretty", "_summary", "_elements",
                           "_total", "_cursor"})
DEFAULT_COUNT = 50
MAX_COUNT = 1000
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_MODIFIERS = {
    "token": {"not", "missing", "text"},
    "string": {"exact", "contains", "missing"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "reference": {"missing"},
    "uri": {"missing"},
}


@dataclass(slots=True)
class SearchRequest:
    query: IndexQuery
    count: int = DEFAULT_COUNT
    cursor: str | None = None
    summary: str | None = None
    elements: list[str] | None = None
    ignored: list[str] = field(default_factory=list)  # lenient: what was not applied


def split_values(raw: str) -> list[str]:
    """Split at commas not escaped with a backslash; unescape `\\,` `\\|` `\\$` `\\\\`."""
    parts = re.split(r"(?<!\\),", raw)
    return [re.sub(r"\\([,|$\\])", r"\1", p) for p in parts]


def _split_pipe(value: str) -> tuple[str | None, str]:
    m = re.search(r"(?<!\\)\|", value)
    if not m:
        return None, value
    return value[: m.start()], value[m.end():]


def parse_search(
    rtype: str,
    params: list[tuple[str, str]],
    registry: SearchRegistry,
    *,
    strict: bool = True,
) -> SearchRequest:
    request = SearchRequest(query=IndexQuery(rtype=rtype))
    problems: list[Issue] = []
    for name, raw in params:
        base, _, modifier = name.partition(":")
        try:
            if base in RESULT_PARAMS:
                _result_param(request, base, raw)
            elif base == "_id":
                ids = split_values(raw)
                request.query.ids = sorted(set(ids) & set(request.query.ids or ids))
            else:
                param = registry.get(rtype, base)
                if param is None or not param.indexed:
                    known = ", ".join(sorted(["_id", *(
                        p for p, sp in registry.params(rtype).items() if sp.indexed)]))
                    why = "is not a search parameter of" if param is None else \
                        "is not supported (yet) for"
                    raise BadRequest(
                        f"{base!r} {why} {rtype}; supported: {known}", code="not-supported",
                        expression=name)
                request.query.criteria.append(_criterion(param, modifier, raw))
        except BadRequest as exc:
            if strict:
                problems.extend(exc.issues)
            else:
                request.ignored.append(f"{name}={raw}: {exc.diagnostics}")
    if problems:
        raise BadRequest(problems[0].diagnostics, issues=problems)
    return request


def _result_param(request: SearchRequest, name: str, raw: str) -> None:
    if name == "_count":
        if not raw.isdigit():
            raise BadRequest(f"_count must be a whole number, not {raw!r}", expression="_count")
        request.count = min(int(raw), MAX_COUNT)
    elif name == "_cursor":
        request.cursor = raw
    elif name == "_summary":
        if raw not in ("true", "false", "count", "text", "data"):
            raise BadRequest(f"_summary {raw!r} is not one of true, false, count, text, data")
        request.summary = raw
    elif name == "_elements":
        request.elements = [e.strip() for e in raw.split(",") if e.strip()]


def _criterion(param: SearchParam, modifier: str, raw: str) -> Criterion:
    allowed = _MODIFIERS.get(param.type, set())
    is_type_modifier = param.type == "reference" and modifier and modifier[0].isupper()
    if modifier and modifier not in allowed and not is_type_modifier:
        raise BadRequest(
            f"modifier :{modifier} is not supported on {param.type} parameter {param.code!r}"
            f" (supported: {', '.join(sorted(allowed)) or 'none'})",
            code="not-supported", expression=f"{param.code}:{modifier}")
    kind = param.type
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise BadRequest(f"{param.code}:missing must be true or false, not {raw!r}")
        return Criterion(param.code, kind, [MissingPredicate(raw == "true")])
    preds = [_predicate(param, modifier, v) for v in split_values(raw)]
    return Criterion(param.code, kind, preds, negate=modifier == "not")


def _predicate(param: SearchParam, modifier: str, value: str) -> Predicate:
    t = param.type
    if t == "token":
        if modifier == "text":
            return TokenTextPredicate(normalize(value))
        system, code = _split_pipe(value)
        if system is None:
            return TokenPredicate(None, code)
        return TokenPredicate(system, code or None)  # "|code": system "" = none
    if t == "string":
        if modifier == "exact":
            return StringPredicate("exact", value)
        return StringPredicate("contains" if modifier == "contains" else "prefix",
                               normalize(value))
    if t == "uri":
        return StringPredicate("exact", value)
    if t == "date":
        op, text = _prefix(value)
        try:
            lo, hi = date_range(text)
        except BadDate as exc:
            raise BadRequest(f"{param.code}: {exc}", expression=param.code) from exc
        return RangePredicate(op, lo, hi)
    if t in ("number", "quantity"):
        op, text = _prefix(value)
        number = text.split("|", 1)[0]
        try:
            lo, hi = number_range(number)
        except ValueError as exc:
            raise BadRequest(f"{param.code}: {exc}", expression=param.code) from exc
        return RangePredicate(op, lo, hi)
    if t == "reference":
        return _reference(param, modifier, value)
    raise BadRequest(f"{param.code}: {t} parameters are not supported", code="not-supported")


def _prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES and not value[:2].isdigit():
        return value[:2], value[2:]
    return "eq", value


def _reference(param: SearchParam, modifier: str, value: str) -> ReferencePredicate:
    if "://" in value:
        return ReferencePredicate(None, None, url=value)
    parts = value.split("/")
    if len(parts) == 2 and parts[0][:1].isupper():
        rtype, rid = parts
    elif len(parts) == 1:
        rtype, rid = (modifier or None), value
    else:
        raise BadRequest(f"{param.code}: {value!r} is not Type/id, id or an absolute URL",
                         expression=param.code)
    if modifier and rtype != modifier:
        raise BadRequest(f"{param.code}:{modifier} cannot match {value!r}",
                         expression=param.code)
    if not is_valid_id(rid):
        raise BadRequest(f"{param.code}: {rid!r} is not a FHIR id", expression=param.code)
    if rtype is None and len(param.targets) == 1:
        rtype = param.targets[0]
    return ReferencePredicate(rtype, rid)
