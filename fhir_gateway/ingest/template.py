"""The mapping template language: FHIR JSON written in YAML, with `${...}` for source values.

    status: final                                   a constant
    effectiveDateTime: "${date:DNACPR Date}"        a source field, made a FHIR date
    valueCodeableConcept: "${concept:place-terms:Preferred Place of Death}"
    text: "Usual doctor: ${Usual Doctor}"           text around a value
    deceasedBoolean: {if: {field: PID-30, equals: Y}, then: true}

A placeholder is `${path}` or `${function:path}` or `${function:ConceptMap-id:path}`.
Functions: date, datetime, nhs, postcode, words, key, code, coding, concept, ref_id,
partner (see mappings/README.md). A placeholder that is the whole value may give any JSON value
(an object, a list; a list inside a list is spliced in); one inside text gives text. An
element whose placeholders are all empty is left out, and so is an object that has
placeholders but got nothing from any of them (an identifier whose value is empty), so
optional source fields need no conditions.

Templates are compiled once when the mapping loads (`Compiler.node`, `Compiler.condition`);
a compile error is a `TemplateError` naming where in the template. Rendering never raises:
a source value that cannot be used is recorded as a `FieldError` in the `Context`.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..references import literal_reference
from . import values
from .conceptmaps import ConceptMap
from .errors import FieldError
from .jsonlines import parse_path as json_path
from .jsonlines import walk
from .source import SourceRecord

MAP_FUNCTIONS = frozenset({"code", "coding", "concept"})
VALUE_FUNCTIONS = frozenset({"date", "datetime", "nhs", "postcode", "words", "key", "ref_id"})
PARTNER_ATTRIBUTES = frozenset({"ods_code", "name", "key"})
_PLACEHOLDER = re.compile(r"\$\{([^{}]*)\}")


class TemplateError(ValueError):
    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")


# --- compiled forms ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placeholder:
    function: str | None
    conceptmap: str | None
    path: str
    text: str


@dataclass(frozen=True, slots=True)
class Const:
    value: Any
    dynamic = False


@dataclass(frozen=True, slots=True)
class Value:
    placeholder: Placeholder
    dynamic = True


@dataclass(frozen=True, slots=True)
class Text:
    parts: tuple[str | Placeholder, ...]
    dynamic = True


@dataclass(frozen=True, slots=True)
class Obj:
    items: tuple[tuple[str, Any], ...]
    dynamic: bool


@dataclass(frozen=True, slots=True)
class Lst:
    items: tuple[Any, ...]
    dynamic: bool


@dataclass(frozen=True, slots=True)
class Choice:
    condition: Condition
    then: Any
    otherwise: Any | None
    dynamic = True


@dataclass(frozen=True, slots=True)
class Condition:
    """`op` is one of equals, in, present, before, all, any, not."""

    op: str
    path: str | None = None
    operands: tuple[Any, ...] = ()
    parts: tuple[Condition, ...] = ()


Node = Const | Value | Text | Obj | Lst | Choice


def parse_placeholder(inner: str, where: str, check_path: Callable[[str], None]) -> Placeholder:
    text = "${" + inner + "}"
    head, sep, rest = inner.partition(":")
    name = head.strip()
    function, conceptmap, path = None, None, inner
    if sep and name in MAP_FUNCTIONS:
        conceptmap, sep2, path = rest.partition(":")
        conceptmap = conceptmap.strip()
        if not sep2 or not conceptmap:
            raise TemplateError(where, f"{text}: {name} needs a ConceptMap id and a field, "
                                f"as ${{{name}:conceptmap-id:Field}}")
        function = name
    elif sep and (name in VALUE_FUNCTIONS or name == "partner"):
        function, path = name, rest
    elif sep and re.fullmatch(r"[a-z_]+", name):
        known = sorted(MAP_FUNCTIONS | VALUE_FUNCTIONS | {"partner"})
        raise TemplateError(where, f"{text}: unknown function {name!r} (known: "
                            f"{', '.join(known)})")
    path = path.strip()
    if not path:
        raise TemplateError(where, f"{text} names no field")
    if function == "partner":
        if path not in PARTNER_ATTRIBUTES:
            raise TemplateError(where, f"{text}: partner gives one of "
                                f"{', '.join(sorted(PARTNER_ATTRIBUTES))}")
    else:
        try:
            check_path(path)
        except ValueError as exc:
            raise TemplateError(where, f"{text}: {exc}") from None
    return Placeholder(function, conceptmap, path, text)


@dataclass
class Compiler:
    """Compiles template YAML; `check_path` is the reader's field-path check, and every
    placeholder and condition seen is remembered (for the reader's header check and for
    finding which ConceptMaps to load)."""

    check_path: Callable[[str], None]
    placeholders: list[Placeholder] = field(default_factory=list)
    condition_paths: list[str] = field(default_factory=list)
    aliases: set[str] = field(default_factory=set)

    def check(self, path: str) -> None:
        if path.split(".", 1)[0].split("[", 1)[0] in self.aliases:
            json_path(path)
        else:
            self.check_path(path)

    def node(self, value: Any, where: str) -> Node:
        if isinstance(value, dict):
            if "if" in value:
                return self._choice(value, where)
            items = tuple((str(k), self.node(v, f"{where}.{k}")) for k, v in value.items())
            return Obj(items, any(n.dynamic for _, n in items))
        if isinstance(value, list):
            nodes = tuple(self.node(v, f"{where}[{i}]") for i, v in enumerate(value))
            return Lst(nodes, any(n.dynamic for n in nodes))
        if isinstance(value, str):
            return self._string(value, where)
        return Const(value)

    def _string(self, value: str, where: str) -> Node:
        matches = list(_PLACEHOLDER.finditer(value))
        if not matches:
            if "${" in value:
                raise TemplateError(where, f"{value!r} has an unclosed ${{")
            return Const(value)
        found = [parse_placeholder(m[1], where, self.check) for m in matches]
        self.placeholders.extend(found)
        if len(matches) == 1 and matches[0].span() == (0, len(value)):
            return Value(found[0])
        parts: list[str | Placeholder] = []
        pos = 0
        for m, ph in zip(matches, found, strict=True):
            if m.start() > pos:
                parts.append(value[pos:m.start()])
            parts.append(ph)
            pos = m.end()
        if pos < len(value):
            parts.append(value[pos:])
        return Text(tuple(parts))

    def _choice(self, value: dict[str, Any], where: str) -> Choice:
        extra = set(value) - {"if", "then", "else"}
        if extra or "then" not in value:
            raise TemplateError(where, "a choice is {if: condition, then: value, else: value} "
                                f"(found {', '.join(sorted(value))})")
        other = self.node(value["else"], f"{where}.else") if "else" in value else None
        return Choice(self.condition(value["if"], f"{where}.if"),
                      self.node(value["then"], f"{where}.then"), other)

    def condition(self, value: Any, where: str) -> Condition:
        if not isinstance(value, dict):
            raise TemplateError(where, "a condition is a mapping such as "
                                "{field: DNACPR, equals: Y}")
        for op in ("all", "any"):
            if op in value:
                parts = value[op]
                if set(value) != {op} or not isinstance(parts, list) or not parts:
                    raise TemplateError(where, f"{op} takes a list of conditions, alone")
                return Condition(op, parts=tuple(self.condition(p, f"{where}.{op}[{i}]")
                                                 for i, p in enumerate(parts)))
        if "not" in value:
            if set(value) != {"not"}:
                raise TemplateError(where, "not takes one condition, alone")
            return Condition("not", parts=(self.condition(value["not"], f"{where}.not"),))
        ops = set(value) - {"field"}
        if "field" not in value or len(ops) != 1:
            raise TemplateError(where, "a condition names a field and one test: equals, in, "
                                "present, before (or all, any, not)")
        path = str(value["field"]).strip()
        try:
            self.check(path)
        except ValueError as exc:
            raise TemplateError(where, str(exc)) from None
        self.condition_paths.append(path)
        op = ops.pop()
        operand = value[op]
        if op == "equals":
            return Condition("equals", path, (operand,))
        if op == "in":
            if not isinstance(operand, list) or not operand:
                raise TemplateError(where, "in takes a list of values")
            return Condition("in", path, tuple(operand))
        if op == "present":
            if not isinstance(operand, bool):
                raise TemplateError(where, "present takes true or false")
            return Condition("present", path, (operand,))
        if op == "before":
            if str(operand) != "today":
                try:
                    dt.date.fromisoformat(str(operand))
                except ValueError:
                    raise TemplateError(where, "before takes today or a date "
                                        "YYYY-MM-DD") from None
            return Condition("before", path, (str(operand),))
        raise TemplateError(where, f"unknown test {op!r} (equals, in, present, before, "
                            "all, any, not)")


# --- rendering ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """What rendering needs from the mapping."""

    partner: str
    partner_name: str
    ods_code: str
    date_formats: tuple[str, ...]
    timezone: str
    conceptmaps: dict[str, ConceptMap]
    #: the partner's own FHIR server: an absolute reference under it is the partner's
    #: own resource (`ref_id`); one under any other base names another server's
    fhir_base: str | None = None


@dataclass
class Context:
    """One record's rendering state: scopes for `for_each` items, and what went wrong."""

    record: SourceRecord
    settings: Settings
    today: dt.date
    scopes: dict[str, Any] = field(default_factory=dict)
    #: alias -> where its item is in the record (`admissions[1]`), for naming a field
    scope_paths: dict[str, str] = field(default_factory=dict)
    problems: list[FieldError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: output element path -> source field, for naming the field when FHIR rejects a value
    origins: dict[tuple[str | int, ...], str] = field(default_factory=dict)
    #: (text sent, NHS number) for each `nhs:` value read
    nhs_numbers: list[tuple[str, str]] = field(default_factory=list)
    #: how many times a value was refused (a refusal already listed still counts)
    refusals: int = 0

    def is_null(self, path: str) -> bool:
        """Whether the record says "no value" at `path` outright (HL7's `""`), which
        deletes what the element held; an absent or empty field says nothing."""
        head = path.split(".", 1)[0].split("[", 1)[0]
        if head in self.scopes:
            return False
        is_null = getattr(self.record, "is_null", None)
        return bool(is_null(path)) if is_null is not None else False

    def lookup(self, path: str) -> Any:
        head = path.split(".", 1)[0].split("[", 1)[0]
        if head in self.scopes:
            return walk(self.scopes[head], json_path(path)[1:])
        try:
            return self.record.get(path)
        except FieldError as exc:  # the source says two things where one is read
            self.fail(exc.field, exc.problem)
            return None

    def fail(self, path: str, problem: str) -> None:
        head, dot, rest = path.partition(".")
        if head in self.scope_paths:  # `admission.admitted` -> `admissions[1].admitted`
            path = self.scope_paths[head] + dot + rest
        self.refusals += 1
        if not any(p.field == path and p.problem == problem for p in self.problems):
            self.problems.append(FieldError(path, problem))


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return " ".join(str(value).split()).casefold()


def evaluate(ph: Placeholder, ctx: Context) -> Any:
    s = ctx.settings
    if ph.function == "partner":
        return {"ods_code": s.ods_code, "name": s.partner_name, "key": s.partner}[ph.path]
    value = ctx.lookup(ph.path)
    if value is None or value == [] or value == {}:
        return None
    if ph.function is None:
        return copy.deepcopy(value)
    if ph.function in MAP_FUNCTIONS:
        return _translate(ph, value, ctx)
    if isinstance(value, dict | list):
        ctx.fail(ph.path, f"holds a {type(value).__name__}, where {ph.function} needs text")
        return None
    text = value if isinstance(value, str) else str(value)
    try:
        if ph.function == "date":
            return values.parse_date(text, s.date_formats)
        if ph.function == "datetime":
            return values.parse_datetime(text, tz=s.timezone, date_formats=s.date_formats)
        if ph.function == "nhs":
            number = values.nhs_number(text)
            ctx.nhs_numbers.append((text, number))
            return number
        if ph.function == "postcode":
            return values.postcode(text)
        if ph.function == "words":
            return text.split()
        if ph.function == "key":
            # one part of a key joined with "/": escaped, so that a/b + c and a + b/c stay
            # two keys (two people's contacts made one resource otherwise); "#" too, which
            # the engine puts before the suffix telling apart two items of one key
            return text.replace("%", "%25").replace("/", "%2F").replace("#", "%23")
        if ph.function == "ref_id":
            # Type/id, an absolute URL ending so, or either with /_history/v: the id, never
            # the version (Encounter/E1/_history/2 is E1, not another visit's 2)
            named = literal_reference(text)
            if named is None:
                raise ValueError(f"{text!r} is not a reference of the form Type/id")
            if named.base is not None and not same_server(named.base, s.fhir_base):
                # another server's Encounter/E1 is not this partner's E1: linking it would
                # file the plan under a visit it was never about
                raise ValueError(
                    f"{text!r} names a resource on another server: only a Type/id "
                    "reference, or an entry of the same Bundle, names one of this partner's"
                    + (f" (its server is {s.fhir_base})" if s.fhir_base else
                       " (set fhir_base in the mapping if the partner's server writes its "
                       "own references as absolute URLs)"))
            return named.id
    except ValueError as exc:
        ctx.fail(ph.path, str(exc))
        return None
    raise AssertionError(ph.function)  # compile_node admits no other function


def same_server(base: str, other: str | None) -> bool:
    """Whether two FHIR base URLs name one server: scheme and host in any case, the
    default port written or not, a trailing slash aside."""
    if other is None:
        return False

    def canonical(url: str) -> tuple[str, str, str]:
        parts = urlsplit(url.strip().rstrip("/"))
        scheme = parts.scheme.lower()
        try:
            port = parts.port
        except ValueError:  # not a port: compared as written
            return scheme, parts.netloc.lower(), parts.path
        default = {"https": 443, "http": 80}.get(scheme)
        host = (parts.hostname or "") + (f":{port}" if port not in (None, default) else "")
        return scheme, host, parts.path

    return canonical(base) == canonical(other)


def _translate(ph: Placeholder, value: Any, ctx: Context) -> Any:
    assert ph.conceptmap is not None
    cmap = ctx.settings.conceptmaps[ph.conceptmap]
    term = value if isinstance(value, str) else _scalar_text(value)
    result = cmap.translate(term)
    if not result.known:
        where = f"mappings/conceptmaps/{cmap.id}.json"
        if not cmap.keeps_unmapped:
            ctx.fail(ph.path, f"{term!r} is not a term ConceptMap {cmap.id} knows; add it to "
                     f"{where} (or correct the source)")
            return None
        ctx.warnings.append(f"{ph.path}: {term!r} is not in ConceptMap {cmap.id}; kept as "
                            f"text without a code (add it to {where})")
        return {"text": term} if ph.function == "concept" else None
    if not result.codings:
        return None  # listed as having no standard code (equivalence "unmatched")
    if ph.function == "code":
        return result.codings[0]["code"]
    if ph.function == "coding":
        return dict(result.codings[0])
    return {"coding": [dict(c) for c in result.codings], "text": term}


def test(cond: Condition, ctx: Context) -> bool:
    if cond.op == "all":
        return all(test(c, ctx) for c in cond.parts)
    if cond.op == "any":
        return any(test(c, ctx) for c in cond.parts)
    if cond.op == "not":
        return not test(cond.parts[0], ctx)
    assert cond.path is not None
    value = ctx.lookup(cond.path)
    # An empty object is something sent (a form with nothing filled in: each rule's
    # checks then see its empty fields), unlike a missing field, a null or no repetitions.
    if cond.op == "present":
        return (value is not None and value != []) is cond.operands[0]
    if value is None or value == [] or value == {}:
        return False
    if cond.op in ("equals", "in"):
        wanted = {_scalar_text(v) for v in cond.operands}
        return _scalar_text(value) in wanted
    # before
    try:
        when = values.parse_datetime(str(value), tz=ctx.settings.timezone,
                                     date_formats=ctx.settings.date_formats)
    except ValueError as exc:
        ctx.fail(cond.path, str(exc))
        return False
    limit = ctx.today if cond.operands[0] == "today" else dt.date.fromisoformat(
        cond.operands[0])
    return when[:10] < limit.isoformat() if len(when) >= 10 else False


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == {} or value == ""


#: elements a null never clears: identity, and deaths (said per partner, `merge`)
_NEVER_NULLED = ("identifier", "deceased")


def render_resource(node: Node, ctx: Context, path: tuple[str | int, ...],
                    nulled: list[str] | None = None) -> dict[str, Any]:
    """A resource template's elements: like `render`, but the resource itself is kept even
    when nothing from the source filled it (its fixed elements still say something).
    `nulled` gets the elements that came out empty because the source said "no value"
    outright in a field that fills them (HL7 `""`): the record deletes them. An object
    element is deleted whole only when every field filling it said so; otherwise each
    of its parts that one did (`period.end` from PV1-45 `""`), as the merge keeps parts."""
    if not isinstance(node, Obj):
        value = render(node, ctx, path)
        return value if isinstance(value, dict) else {}
    out: dict[str, Any] = {}
    # only a format with an outright null (HL7's `""`) can delete: the others skip the walk
    sink = nulled if hasattr(ctx.record, "is_null") else None
    for key, child in node.items:
        value = render(child, ctx, (*path, key))
        if not _empty(value):
            out[key] = value
        if sink is None or key.startswith(_NEVER_NULLED):
            continue
        if isinstance(child, Obj):
            if _empty(value) and _said_null(child, ctx, every=True):
                sink.append(key)
                continue
            given = value if isinstance(value, dict) else {}
            sink.extend(f"{key}.{part}" for part, grandchild in child.items
                        if _empty(given.get(part)) and _said_null(grandchild, ctx, every=True))
        elif _empty(value) and _said_null(child, ctx, every=False):
            sink.append(key)
    return out


def _said_null(node: Node, ctx: Context, *, every: bool) -> bool:
    """Whether the source's fields filling `node` said "no value" outright: `every` one of
    them, or any."""
    said = [ctx.is_null(p.path) for p in placeholders_in([node]) if p.function != "partner"]
    return bool(said) and (all(said) if every else any(said))


def render(node: Node, ctx: Context, path: tuple[str | int, ...] = ()) -> Any:
    """The JSON value of `node` for the record in `ctx` (None when empty)."""
    if isinstance(node, Const):
        return copy.deepcopy(node.value)
    if isinstance(node, Value):
        value = evaluate(node.placeholder, ctx)
        if not _empty(value) and node.placeholder.function != "partner":
            ctx.origins[path] = node.placeholder.path
        return None if _empty(value) else value
    if isinstance(node, Text):
        found = [evaluate(p, ctx) if isinstance(p, Placeholder) else None for p in node.parts]
        if all(_empty(v) for p, v in zip(node.parts, found, strict=True)
               if isinstance(p, Placeholder)):
            return None
        sources = [p.path for p in node.parts if isinstance(p, Placeholder)]
        ctx.origins[path] = ", ".join(sources)
        text = "".join(p if isinstance(p, str) else ("" if _empty(v) else str(v))
                       for p, v in zip(node.parts, found, strict=True))
        return " ".join(text.split()) or None
    if isinstance(node, Choice):
        chosen = node.then if test(node.condition, ctx) else node.otherwise
        return None if chosen is None else render(chosen, ctx, path)
    if isinstance(node, Obj):
        out: dict[str, Any] = {}
        filled = False
        for key, child in node.items:
            value = render(child, ctx, (*path, key))
            if not _empty(value):
                out[key] = value
                filled = filled or child.dynamic
        if node.dynamic and not filled:
            return None
        return out or None
    items: list[Any] = []
    for child in node.items:
        value = render(child, ctx, (*path, len(items)))
        if _empty(value):
            continue
        if isinstance(child, Value) and isinstance(value, list):
            items.extend(v for v in value if not _empty(v))
        else:
            items.append(value)
    return items or None


def placeholders_in(nodes: Sequence[Node]) -> list[Placeholder]:
    """Every placeholder in compiled nodes (used to check ConceptMap ids)."""
    found: list[Placeholder] = []
    stack: list[Any] = list(nodes)
    while stack:
        n = stack.pop()
        if isinstance(n, Value):
            found.append(n.placeholder)
        elif isinstance(n, Text):
            found.extend(p for p in n.parts if isinstance(p, Placeholder))
        elif isinstance(n, Obj):
            stack.extend(c for _, c in n.items)
        elif isinstance(n, Lst):
            stack.extend(n.items)
        elif isinstance(n, Choice):
            stack.extend(x for x in (n.then, n.otherwise) if x is not None)
    return found
