"""Parsing `?name[:modifier]=value` once, at the edge, into a neutral `IndexQuery`.

Engines never see FHIR syntax. Every value is split and typed here (R4 3.1.1.4). An
unknown or unsupported parameter is an error naming the valid ones under
`Prefer: handling=strict` (the default) and is reported but ignored under `lenient`; a
known parameter whose value cannot be read, and an unsupported modifier, are errors under
either handling, since ignoring them would widen the result to other people's records.
What belongs to the result rather than the match (`_sort`, `_count`, `_include`,
`_revinclude`, `_summary`, `_elements`, `_total`) is parsed into `SearchRequest` too.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..errors import BadRequest, Issue
from ..fhir.types import is_resource_type
from ..fhir.validation import is_valid_id
from ..store.query import (
    ChainPredicate,
    Criterion,
    HasPredicate,
    IndexQuery,
    MissingPredicate,
    Predicate,
    RangePredicate,
    ReferencePredicate,
    SortKey,
    StringPredicate,
    TokenPredicate,
    TokenTextPredicate,
)
from .registry import SearchParam, SearchRegistry
from .values import BadDate, date_range, normalize, number_range, number_value, whole_number

DEFAULT_COUNT = 50
MAX_COUNT = 1000
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
#: Parameters that change the result, not the match (R4 3.1.1.5), plus `_cursor` (paging).
RESULT_PARAMS = frozenset({"_count", "_format", "_pretty", "_summary", "_elements",
                           "_total", "_cursor", "_sort", "_include", "_revinclude"})
#: Common parameters the specification defines but this gateway does not implement.
UNSUPPORTED = frozenset({"_text", "_content", "_list", "_query", "_filter", "_contained",
                         "_containedType", "_type"})
#: At most this many values in one parameter (`family=a,b,...`, ORed) and this many
#: criteria in one search (repeated parameters, ANDed). SQLite refuses an expression tree
#: deeper than 1000, and the store's SQL nests about two levels per OR value and one per
#: criterion (a 500 at ~496 values or ~987 criteria): these limits stay well under that,
#: combined too, and far above what a clinical search needs. Checked here, above the
#: store, so MongoDB callers meet the same limits.
MAX_VALUES_PER_PARAM = 100
MAX_CRITERIA = 100
#: distinct `_sort` parameters (each later page compares every key before its own)
MAX_SORT_KEYS = 5
_MODIFIERS = {
    "token": {"not", "missing", "text", "of-type"},
    "string": {"exact", "contains", "missing"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "reference": {"missing", "identifier"},
    "uri": {"missing"},
}


@dataclass(frozen=True, slots=True)
class Include:
    """`_include` / `_revinclude`: follow `source_type`.`param` (to `target_type`)."""

    source_type: str
    param: str  # "*" for every reference parameter of source_type
    target_type: str | None = None
    iterate: bool = False


@dataclass(slots=True)
class SearchRequest:
    query: IndexQuery
    count: int = DEFAULT_COUNT
    cursor: str | None = None
    summary: str | None = None
    elements: list[str] | None = None
    total: str | None = None  # none | estimate | accurate
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # lenient: what was not applied
    #: the parameters actually applied, for the self link (R4 3.1.1.6)
    used: list[tuple[str, str]] = field(default_factory=list)


_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
#: C0 control characters but tab, LF and CR (which FHIR strings may hold): no stored value
#: holds one, and in a value they become query syntax (SQLite's LIKE stops at NUL)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def split_values(raw: str) -> list[str]:
    """Split at commas not escaped with a backslash; unescape `\\,` `\\|` `\\$` `\\\\`."""
    parts = _UNESCAPED_COMMA.split(raw)
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
    base_url: str = "",
) -> SearchRequest:
    """`base_url` is this server's FHIR base: a reference given as an absolute URL under
    it is the local reference it names (R4 3.1.1.4.12)."""
    parser = _Parser(rtype, registry, base_url)
    request = SearchRequest(query=IndexQuery(rtype=rtype))
    criteria = [name for name, raw in params
                if raw != "" and name.partition(":")[0] not in RESULT_PARAMS]
    if len(criteria) > MAX_CRITERIA:
        raise BadRequest(f"{len(criteria)} search criteria; at most {MAX_CRITERIA} per search",
                         code="too-costly", expression=criteria[MAX_CRITERIA])
    problems: list[Issue] = []
    for name, raw in params:
        if raw == "" or name in ("_format", "_pretty"):
            continue  # R4 3.1.1.3: empty parameters are ignored, not an error
        try:
            if name.partition(":")[0] not in RESULT_PARAMS:
                values = len(_UNESCAPED_COMMA.split(raw))
                if values > MAX_VALUES_PER_PARAM:  # never ignored, even when lenient
                    raise BadRequest(f"{name}: {values} values; at most "
                                     f"{MAX_VALUES_PER_PARAM} per parameter",
                                     code="too-costly", expression=name)
            parser.apply(request, name, raw)
        except UnknownParameter as exc:
            if strict:
                problems.extend(exc.issues)
            else:
                request.ignored.append(f"{name}={raw}: {exc.diagnostics}")
        except BadRequest as exc:  # a bad value or an unsupported modifier: never ignored
            problems.extend(exc.issues)
        else:
            if name != "_cursor":
                request.used.append((name, raw))
    if problems:
        raise BadRequest(problems[0].diagnostics, issues=problems)
    return request


class UnknownParameter(BadRequest):
    """A parameter this server does not know or support (R4 3.1.1.3): the only thing
    `handling=lenient` ignores."""


class UnsupportedModifier(BadRequest):
    """A modifier the server does not support: refused even under `handling=lenient`,
    since ignoring it would widen the result (R4 3.1.1.4.4: the server SHALL reject)."""


class _Parser:
    def __init__(self, rtype: str, registry: SearchRegistry, base_url: str = "") -> None:
        self.rtype = rtype
        self.registry = registry
        self.base_url = base_url.rstrip("/")

    def apply(self, request: SearchRequest, name: str, raw: str) -> None:
        base, _, modifier = name.partition(":")
        if base in RESULT_PARAMS:
            self.result_param(request, base, modifier, raw)
        elif base == "_has":
            request.query.criteria.append(self.has(name, raw))
        elif base == "_id" and not modifier:
            ids = split_values(raw)
            request.query.ids = [i for i in ids if request.query.ids is None
                                 or i in request.query.ids]
        elif "." in base or "." in modifier:
            request.query.criteria.append(self.chain(name, raw))
        else:
            param = self.param(self.rtype, base, name)
            if param.type == "reference" and self.base_url and modifier != "identifier":
                # an absolute reference to this server is the local one it names; only a
                # value that starts with the base (an identifier's system may hold it too)
                prefix = self.base_url + "/"
                raw = ",".join(v.removeprefix(prefix) for v in _UNESCAPED_COMMA.split(raw))
            request.query.criteria.append(_criterion(param, modifier, raw))

    def param(self, rtype: str, code: str, name: str) -> SearchParam:
        if code in UNSUPPORTED:
            raise UnknownParameter(f"{code} is not supported by this server",
                                   code="not-supported", expression=name)
        param = self.registry.get(rtype, code)
        if param is None or not param.indexed:
            known = ", ".join(sorted(
                p for p, sp in self.registry.params(rtype).items() if sp.indexed))
            why = "is not a search parameter of" if param is None else \
                "is not supported (yet) for"
            raise UnknownParameter(f"{code!r} {why} {rtype}; supported: {known}",
                                   code="not-supported", expression=name)
        return param

    def chain(self, name: str, raw: str) -> Criterion:
        head, _, rest = name.partition(".")
        if "." in rest:
            raise UnknownParameter(f"{name}: chains deeper than one level are not supported",
                                   code="not-supported", expression=name)
        code, _, type_modifier = head.partition(":")
        ref = self.param(self.rtype, code, name)
        if ref.type != "reference":
            raise BadRequest(f"{name}: {code} is a {ref.type} parameter; only references chain",
                             expression=name)
        inner_code, _, inner_modifier = rest.partition(":")
        if type_modifier:
            if ref.targets and type_modifier not in ref.targets:
                raise BadRequest(f"{name}: {code} cannot point to {type_modifier}",
                                 expression=name)
            targets = [type_modifier]
        else:
            targets = [t for t in ref.targets if self.registry.get(t, inner_code)]
            if len(targets) != 1:
                raise BadRequest(
                    f"{name}: say which type {code} points to, e.g. "
                    f"{code}:{(targets or ref.targets or ('Patient',))[0]}.{inner_code}",
                    expression=name)
        target = targets[0]
        inner = _criterion(self.param(target, inner_code, name), inner_modifier, raw)
        return Criterion(code, "reference",
                         [ChainPredicate(target, IndexQuery(rtype=target, criteria=[inner]))])

    def has(self, name: str, raw: str) -> Criterion:
        parts = name.split(":")
        if len(parts) < 4 or parts[3] == "_has":
            raise BadRequest(f"{name}: expected _has:Type:reference:parameter=value "
                             "(one level)", expression=name)
        source, ref_code, inner_code = parts[1], parts[2], parts[3]
        inner_modifier = ":".join(parts[4:])
        ref = self.param(source, ref_code, name) if self.registry.has_type(source) else None
        if ref is None:
            raise BadRequest(f"{name}: {source!r} is not a resource type", expression=name)
        if ref.type != "reference" or (ref.targets and self.rtype not in ref.targets):
            raise BadRequest(f"{name}: {source}.{ref_code} does not point to {self.rtype}",
                             expression=name)
        inner = _criterion(self.param(source, inner_code, name), inner_modifier, raw)
        return Criterion("_has", "has", [HasPredicate(
            source, ref_code, IndexQuery(rtype=source, criteria=[inner]))])

    def result_param(self, request: SearchRequest, name: str, modifier: str, raw: str) -> None:
        if modifier and name not in ("_include", "_revinclude"):
            # Refused even under lenient handling: dropping the modifier would apply the
            # value anyway (`_summary:x=count` counting past the gate's guard).
            raise UnsupportedModifier(f"{name}:{modifier}: {name} takes no modifier",
                                      code="not-supported", expression=f"{name}:{modifier}")
        if name == "_count":
            count = whole_number(raw)
            if count is None:
                raise BadRequest(f"_count must be a whole number, not {raw[:40]!r}",
                                 expression="_count")
            request.count = min(count, MAX_COUNT)
            if request.count == 0:  # R4 3.1.1.5.3: the same as _summary=count
                request.summary = "count"
        elif name == "_cursor":
            request.cursor = raw
        elif name == "_summary":
            if raw not in ("true", "false", "count", "text", "data"):
                raise BadRequest(f"_summary {raw!r} is not one of true, false, count, text, "
                                 "data", expression="_summary")
            request.summary = None if raw == "false" else raw
        elif name == "_total":
            if raw not in ("none", "estimate", "accurate"):
                raise BadRequest(f"_total {raw!r} is not one of none, estimate, accurate",
                                 expression="_total")
            request.total = raw
        elif name == "_elements":
            request.elements = [e.strip() for e in raw.split(",") if e.strip()]
        elif name == "_sort":
            # A repeated _sort adds inner sort orders (R4 3.1.1.9). A parameter sorted on
            # already adds nothing (its ties are equal on it), and each key costs every
            # later page a comparison per key before it: a few distinct keys only.
            for key in (self.sort_key(k.strip()) for k in raw.split(",") if k.strip()):
                if all(k.param != key.param for k in request.query.sort):
                    request.query.sort.append(key)
            if len(request.query.sort) > MAX_SORT_KEYS:
                raise BadRequest(f"{len(request.query.sort)} _sort parameters; at most "
                                 f"{MAX_SORT_KEYS} per search", code="too-costly",
                                 expression="_sort")
        elif name in ("_include", "_revinclude"):
            if modifier not in ("", "iterate", "recurse"):
                raise BadRequest(f"{name}:{modifier} is not supported", expression=name)
            inc = self.include(name, raw, iterate=bool(modifier))
            (request.includes if name == "_include" else request.revincludes).append(inc)

    def sort_key(self, key: str) -> SortKey:
        desc = key.startswith("-")
        code = key.lstrip("-")
        param = self.param(self.rtype, code, "_sort")
        return SortKey(code, param.type, descending=desc)

    def include(self, name: str, raw: str, *, iterate: bool) -> Include:
        parts = raw.split(":")
        if len(parts) not in (2, 3):
            raise BadRequest(f"{name}={raw}: expected Type:parameter[:TargetType]",
                             expression=name)
        source, code = parts[0], parts[1]
        target = parts[2] if len(parts) == 3 else None
        if code != "*":
            param = self.param(source, code, name) if self.registry.has_type(source) else None
            if param is None or param.type != "reference":
                raise BadRequest(f"{name}={raw}: not a reference parameter of {source}",
                                 expression=name)
        return Include(source, code, target, iterate)


def _criterion(param: SearchParam, modifier: str, raw: str) -> Criterion:
    allowed = _MODIFIERS.get(param.type, set())
    is_type_modifier = param.type == "reference" and modifier[:1].isupper()
    if is_type_modifier and (not is_resource_type(modifier)
                             or (param.targets and modifier not in param.targets)):
        # `:Foo`, or a chain inside `_has` (`subject:Patient.name`): refused, not read as
        # a type nothing has (an empty result a client takes for "none")
        raise BadRequest(f"{param.code}:{modifier}: {param.code} refers to "
                         + (" or ".join(param.targets) if param.targets else "resources")
                         + f", and {modifier!r} is not one of those types (a chain inside "
                         "_has is not supported)", expression=f"{param.code}:{modifier}")
    if modifier and modifier not in allowed and not is_type_modifier:
        raise UnsupportedModifier(
            f"modifier :{modifier} is not supported on {param.type} parameter {param.code!r}"
            f" (supported: {', '.join(sorted(allowed)) or 'none'})",
            code="not-supported", expression=f"{param.code}:{modifier}")
    if modifier == "missing":
        if raw not in ("true", "false"):
            raise BadRequest(f"{param.code}:missing must be true or false, not {raw!r}",
                             expression=param.code)
        return Criterion(param.code, param.type, [MissingPredicate(raw == "true")])
    if _CONTROL.search(raw):
        raise BadRequest(f"{param.code}: a search value may not hold control characters",
                         expression=param.code)
    if modifier in ("of-type", "identifier"):
        # Indexed under a companion parameter: see search/extract.py.
        preds = [_companion_token(param, modifier, v) for v in split_values(raw)]
        return Criterion(f"{param.code}:{modifier}", "token", preds)
    preds = [_predicate(param, modifier, v) for v in split_values(raw)]
    return Criterion(param.code, param.type, preds, negate=modifier == "not")


def _companion_token(param: SearchParam, modifier: str, value: str) -> TokenPredicate:
    if modifier == "of-type":
        parts = re.split(r"(?<!\\)\|", value)
        if len(parts) != 3 or not all(parts):
            raise BadRequest(f"{param.code}:of-type needs system|code|value, not {value!r}",
                             expression=param.code)
        return TokenPredicate(f"{parts[0]}|{parts[1]}", parts[2])
    system, code = _split_pipe(value)
    return TokenPredicate(system if system else None, code)


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
        text = normalize(value)
        if not text:  # e.g. only control characters: it would match every value
            raise BadRequest(f"{param.code}: {value!r} has nothing to search for",
                             expression=param.code)
        return StringPredicate("contains" if modifier == "contains" else "prefix", text)
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
        return _number(param, value)
    if t == "reference":
        return _reference(param, modifier, value)
    raise BadRequest(f"{param.code}: {t} parameters are not supported", code="not-supported")


def _number(param: SearchParam, value: str) -> RangePredicate:
    op, text = _prefix(value)
    parts = re.split(r"(?<!\\)\|", text)
    if len(parts) not in (1, 3) or (len(parts) == 3 and param.type != "quantity"):
        raise BadRequest(f"{param.code}: {value!r} is not [prefix]number[|system|code]",
                         expression=param.code)
    try:
        exact = number_value(parts[0])
        lo, hi = number_range(parts[0])
    except ValueError as exc:
        raise BadRequest(f"{param.code}: {exc}", expression=param.code) from exc
    # R4 3.1.1.4.2: eq and ne compare with the range the written precision implies,
    # half-open (100 is [99.5, 100.5)); gt lt ge le sa eb compare with the value itself.
    # Engines compare [low, high] inclusively and a stored number is the double nearest
    # its decimal, so `< hi` is `<= the double just below hi`.
    if op in ("eq", "ne"):
        hi = math.nextafter(hi, -math.inf)
    elif op == "ap":  # R4 leaves "approximately" to the server: 10% either side
        spread = abs(exact) * 0.1
        lo, hi = lo - spread, hi + spread
    else:
        lo = hi = exact
    system = parts[1] or None if len(parts) == 3 else None
    code = parts[2] or None if len(parts) == 3 else None
    return RangePredicate(op, lo, hi, system, code)


def _prefix(value: str) -> tuple[str, str]:
    if len(value) > 2 and value[:2] in PREFIXES:
        return value[:2], value[2:]
    return "eq", value


def _reference(param: SearchParam, modifier: str, value: str) -> ReferencePredicate:
    if "://" in value or value.startswith("urn:"):
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
