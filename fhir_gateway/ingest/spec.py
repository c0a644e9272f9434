"""Loading a partner mapping (`mappings/<partner>.yaml`) into a checked, compiled `Mapping`.

The file's schema is documented for analysts in mappings/README.md. Everything is checked
when the mapping loads, so a typo fails at start-up with the file and the place in it, not
on the first record: unknown keys, field paths the reader cannot address, unknown
functions, ConceptMaps that do not exist, resource types R4 does not have, duplicate rule
names, date formats and time zones.

YAML is read with every plain scalar as text except `true`, `false` and `null`: a code such
as `01` or `304251008`, a date, or `no` must not silently become a number, a date or a
boolean. (Write `!!int 3` where FHIR wants a number.)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from ..fhir import types
from . import delimited, hl7v2, jsonlines, stu3, values
from .conceptmaps import ConceptMap, load_conceptmap
from .errors import MappingError, UnknownPartner
from .source import ReaderOptions, ReadResult
from .template import (
    Compiler,
    Condition,
    Node,
    Obj,
    Settings,
    TemplateError,
    placeholders_in,
)

#: name -> (read, check_path)
READERS: dict[str, tuple[Callable[[bytes, ReaderOptions], ReadResult],
                         Callable[[str], None]]] = {
    "hl7v2": (hl7v2.read, hl7v2.check_path),
    "csv": (delimited.read, delimited.check_path),
    "jsonl": (jsonlines.read, jsonlines.check_path),
    "fhir-stu3-bundle": (stu3.read, stu3.check_path),
}

PARTNER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
PACKAGE = "fhir_gateway.mappings"

_TOP = {"partner": True, "name": True, "ods_code": True, "mapping_version": True,
        "description": False, "fhir_base": False, "format": True, "record": False, "person": False,
        "patient": True, "merge": False, "resources": False, "unmapped": False}
_FORMAT = {"reader", "encoding", "delimiter", "date_formats", "timezone", "required_segments"}
_RECORD = {"id", "event", "event_time"}
_PERSON = {"local_system", "authoritative"}
_MERGE = {"when", "identifier"}
_UNMAPPED = {"reject_unless"}


class _TextLoader(yaml.SafeLoader):
    """SafeLoader resolving only true/false/null implicitly; every other scalar is text."""


_TextLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag == "tag:yaml.org,2002:null"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_TextLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|false)$"), list("tf"))


@dataclass(frozen=True, slots=True)
class Rule:
    """One `resources` entry: which FHIR resource a record gives, and when."""

    name: str
    resource_type: str
    when: Condition | None
    require: tuple[str, ...]
    expect: tuple[tuple[str, str], ...]  # (element, its source fields): warn when empty
    #: (element, its source fields): an empty source field rejects the record
    refuse_empty: tuple[tuple[str, tuple[str, ...]], ...]
    #: (element, its source fields): a date after today rejects the record (a decision
    #: dated 2062 would otherwise outrank every real one as the newest)
    not_after_today: tuple[tuple[str, tuple[str, ...]], ...]
    retract_otherwise: bool
    #: when this holds, the record says the resource no longer holds (HL7 A13 cancelling
    #: the discharge a place of death came from), whatever `when` says
    retract_when: Condition | None
    #: when this holds, the record says the elements in `clear` no longer hold (an A13
    #: cancelling a discharge: the stay's end and discharge disposition), whatever the
    #: record leaves out; `clear` names top-level elements or `element.part`
    clear_when: Condition | None
    clear: tuple[str, ...]
    for_each: str | None
    alias: str | None
    system: str
    value: Node
    value_fields: tuple[str, ...]
    resource: Node


@dataclass(frozen=True, slots=True)
class Mapping:
    """A partner's mapping, compiled. Build with `load_mapping`."""

    partner: str
    name: str
    ods_code: str
    version: str
    file: str
    reader: ReaderOptions
    settings: Settings
    record_id: tuple[Node, ...]
    event: tuple[Node, ...]
    event_time: tuple[Node, ...]
    local_system: str | None
    #: Patient elements this partner's word settles, whatever other partners say and
    #: when (the practice a person is registered with, from that practice's register)
    authoritative: tuple[str, ...]
    patient: Node
    person_fields: tuple[str, ...]
    merge_when: Condition | None
    merge_identifier: Node | None
    merge_fields: tuple[str, ...]
    rules: tuple[Rule, ...]
    #: a record no rule's `when` takes, and that this does not hold for, is rejected for
    #: review, not dropped (`unmapped.reject_unless`; None: no such check)
    unmapped_unless: Condition | None = None

    def read(self, data: bytes) -> ReadResult:
        return READERS[self.reader.reader][0](data, self.reader)


def _text(value: Any, file: str, where: str, *, required: bool = True) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise MappingError(file, where, "must be text")
    return value.strip()


def _keys(section: Any, allowed: set[str] | dict[str, bool], file: str, where: str) -> dict:
    if not isinstance(section, dict):
        raise MappingError(file, where, "must be a mapping of keys to values")
    unknown = set(section) - set(allowed)
    if unknown:
        raise MappingError(file, where, f"unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                           f"allowed: {', '.join(sorted(allowed))}")
    if isinstance(allowed, dict):
        missing = [k for k, req in allowed.items() if req and k not in section]
        if missing:
            raise MappingError(file, where, f"missing key(s) {', '.join(missing)}")
    return section


def mapping_folders(mapping_dir: str | Path | None) -> list[Traversable]:
    """Where mappings are looked for: `mapping_dir` first (when given), then the package."""
    folders: list[Traversable] = []
    if mapping_dir is not None:
        folders.append(Path(mapping_dir))
    folders.append(resources.files(PACKAGE))
    return folders


def partners(mapping_dir: str | Path | None = None) -> list[str]:
    """The partner names that have a mapping."""
    names = set()
    for folder in mapping_folders(mapping_dir):
        names.update(p.name[:-5] for p in folder.iterdir()
                     if p.name.endswith(".yaml") and PARTNER_NAME.fullmatch(p.name[:-5]))
    return sorted(names)


def load_mapping(partner: str, *, mapping_dir: str | Path | None = None) -> Mapping:
    """The compiled mapping for `partner`, from `mapping_dir` (when given, e.g. a test's
    own mapping) or the installed `fhir_gateway.mappings` package. ConceptMaps are looked
    for in `<folder>/conceptmaps/` in the same order. Raises UnknownPartner or MappingError.
    """
    if not isinstance(partner, str) or not PARTNER_NAME.fullmatch(partner):
        raise UnknownPartner(f"{partner!r} is not a partner name (lower-case letters, digits, "
                             "- and _)")
    folders = mapping_folders(mapping_dir)
    for folder in folders:
        candidate = folder.joinpath(f"{partner}.yaml")
        if candidate.is_file():
            file = f"{partner}.yaml"
            try:
                body = yaml.load(candidate.read_text("utf-8"), Loader=_TextLoader)  # a SafeLoader
            except (yaml.YAMLError, UnicodeDecodeError) as exc:
                raise MappingError(file, "", f"is not valid YAML: {exc}") from exc
            return compile_mapping(body, file=file, partner=partner,
                                   conceptmap_folders=[f.joinpath("conceptmaps") for f in folders])
    raise UnknownPartner(f"no mapping for partner {partner!r} (known: "
                         f"{', '.join(partners(mapping_dir)) or 'none'})")


def compile_mapping(
    body: Any, *, file: str, partner: str, conceptmap_folders: list[Traversable]
) -> Mapping:
    """Check and compile a parsed mapping document (see `load_mapping`)."""
    top = _keys(body, _TOP, file, "")
    if top["partner"] != partner:
        raise MappingError(file, "partner", f"must be {partner!r}, the file's name")
    fmt = _keys(top["format"], _FORMAT, file, "format")
    reader_name = _text(fmt.get("reader"), file, "format.reader")
    if reader_name not in READERS:
        raise MappingError(file, "format.reader", f"unknown reader {reader_name!r}; known: "
                           f"{', '.join(sorted(READERS))}")
    date_formats = fmt.get("date_formats") or ["yyyy-mm-dd"]
    if not isinstance(date_formats, list) or not all(isinstance(f, str) for f in date_formats):
        raise MappingError(file, "format.date_formats", "must be a list such as "
                           "[dd/mm/yyyy, yyyy-mm-dd]")
    date_formats = tuple(date_formats)
    for i, f in enumerate(date_formats):
        try:
            values.check_date_format(str(f))
        except ValueError as exc:
            raise MappingError(file, f"format.date_formats[{i}]", str(exc)) from None
    timezone = _text(fmt.get("timezone", "Europe/London"), file, "format.timezone")
    try:
        values.zone(timezone)
    except ValueError as exc:
        raise MappingError(file, "format.timezone", str(exc)) from None
    delimiter = fmt.get("delimiter")
    if delimiter == "auto":
        delimiter = None
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        raise MappingError(file, "format.delimiter", "must be one character, or auto")
    segments = fmt.get("required_segments") or []
    if not isinstance(segments, list) or not all(isinstance(s, str) for s in segments):
        raise MappingError(file, "format.required_segments", "must be a list of segment names")

    compiler = Compiler(READERS[reader_name][1])
    try:
        parts = _compile_parts(top, compiler, file)
    except TemplateError as exc:
        raise MappingError(file, exc.where, exc.problem) from None

    conceptmaps = _conceptmaps(parts, conceptmap_folders, file)
    fields = frozenset(
        p.path for p in compiler.placeholders
        if p.function != "partner" and p.path.split(".")[0].split("[")[0] not in compiler.aliases
    ) | frozenset(p for p in compiler.condition_paths
                  if p.split(".")[0].split("[")[0] not in compiler.aliases)
    encoding = _text(fmt.get("encoding", "utf-8"), file, "format.encoding")
    try:
        "".encode(encoding)
    except LookupError:
        raise MappingError(file, "format.encoding", f"unknown encoding {encoding!r}") from None
    reader = ReaderOptions(
        reader=reader_name, encoding=encoding, delimiter=delimiter,
        required_segments=tuple(s.strip() for s in segments), timezone=timezone,
        fields=fields,
    )
    fhir_base = top.get("fhir_base")
    if fhir_base is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", str(fhir_base)):
        raise MappingError(file, "fhir_base", "must be the partner's FHIR server base URL, "
                           "such as https://fhir.trust.example.nhs.uk/R4")
    settings = Settings(partner, _text(top["name"], file, "name"),
                        _text(top["ods_code"], file, "ods_code"), date_formats, timezone,
                        conceptmaps, str(fhir_base).rstrip("/") if fhir_base else None)
    return Mapping(
        partner=partner, name=settings.partner_name, ods_code=settings.ods_code,
        version=_text(top["mapping_version"], file, "mapping_version"), file=file,
        reader=reader, settings=settings, **parts,
    )


def _first_of(value: Any, compiler: Compiler, where: str) -> tuple[Node, ...]:
    """A value, or a list of values of which the first non-empty one is used."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    return tuple(compiler.node(v, f"{where}[{i}]" if isinstance(value, list) else where)
                 for i, v in enumerate(items))


def _fields_of(node: Node | None) -> tuple[str, ...]:
    if node is None:
        return ()
    return tuple(dict.fromkeys(p.path for p in placeholders_in([node])
                               if p.function != "partner"))


def _compile_parts(top: dict[str, Any], compiler: Compiler, file: str) -> dict[str, Any]:
    record = _keys(top.get("record") or {}, _RECORD, file, "record")
    person = _keys(top.get("person") or {}, _PERSON, file, "person")
    patient_body = top["patient"]
    if not isinstance(patient_body, dict):
        raise MappingError(file, "patient", "must be a Patient written as a mapping of "
                           "elements (or of ${...} values)")
    patient = compiler.node({k: v for k, v in patient_body.items() if k != "resourceType"},
                            "patient")
    elements = dict(patient.items) if isinstance(patient, Obj) else {}
    person_fields = _fields_of(elements.get("identifier"))
    authoritative = person.get("authoritative") or []
    if not isinstance(authoritative, list) or not all(
            isinstance(n, str) and n in elements and n != "identifier" for n in authoritative):
        raise MappingError(file, "person.authoritative", "must list elements of the patient "
                           "(top-level names, e.g. generalPractitioner; not identifier)")
    merge_when = merge_identifier = None
    merge_fields: tuple[str, ...] = ()
    if top.get("merge") is not None:
        merge = _keys(top["merge"], _MERGE, file, "merge")
        if "identifier" not in merge:
            raise MappingError(file, "merge", "needs identifier: the identifiers the person "
                               "was known by before the merge")
        merge_when = compiler.condition(merge["when"], "merge.when") if "when" in merge else None
        merge_identifier = compiler.node(merge["identifier"], "merge.identifier")
        merge_fields = _fields_of(merge_identifier)
    unmapped_unless = None
    if "unmapped" in top:
        unmapped = _keys(top["unmapped"], _UNMAPPED, file, "unmapped")
        if "reject_unless" not in unmapped:
            raise MappingError(file, "unmapped", "needs reject_unless: the records that may "
                               "go unmapped (the person's own record, say)")
        unmapped_unless = compiler.condition(unmapped["reject_unless"],
                                             "unmapped.reject_unless")
    rules = top.get("resources") or []
    if not isinstance(rules, list):
        raise MappingError(file, "resources", "must be a list of resource rules")
    compiled: list[Rule] = []
    for i, rule in enumerate(rules):
        compiled.append(_rule(rule, compiler, file, f"resources[{i}]"))
    names = [r.name for r in compiled]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise MappingError(file, "resources", f"rule names must differ: {', '.join(dupes)}")
    return {
        "record_id": _first_of(record.get("id"), compiler, "record.id"),
        "event": _first_of(record.get("event"), compiler, "record.event"),
        "event_time": _first_of(record.get("event_time"), compiler, "record.event_time"),
        "local_system": _text(person.get("local_system"), file, "person.local_system",
                              required=False) or None,
        "authoritative": tuple(authoritative),
        "patient": patient, "person_fields": person_fields,
        "merge_when": merge_when, "merge_identifier": merge_identifier,
        "merge_fields": merge_fields, "rules": tuple(compiled),
        "unmapped_unless": unmapped_unless,
    }


def _rule(rule: Any, compiler: Compiler, file: str, where: str) -> Rule:
    rule = _keys(rule, {"name": True, "identifier": True, "resource": True, "when": False,
                        "require": False, "expect": False, "refuse_empty": False,
                        "not_after_today": False,
                        "otherwise": False, "retract_when": False,
                        "clear_when": False, "clear": False,
                        "for_each": False, "as": False}, file, where)
    name = _text(rule["name"], file, f"{where}.name")
    where = f"resources[{name}]"
    otherwise = rule.get("otherwise")
    if otherwise not in (None, "retract"):
        raise MappingError(file, f"{where}.otherwise", "the only choice is retract")
    for_each = rule.get("for_each")
    alias = None
    if for_each is not None:
        for_each = _text(for_each, file, f"{where}.for_each")
        alias = _text(rule.get("as", "item"), file, f"{where}.as")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", alias):
            raise MappingError(file, f"{where}.as", "must be a simple name such as contact")
        try:
            compiler.check(for_each)
        except ValueError as exc:
            raise MappingError(file, f"{where}.for_each", str(exc)) from None
        compiler.aliases.add(alias)
    elif "as" in rule:
        raise MappingError(file, f"{where}.as", "as names the item of for_each")
    identifier = _keys(rule["identifier"], {"system": True, "value": True}, file,
                       f"{where}.identifier")
    system = _text(identifier["system"], file, f"{where}.identifier.system")
    if "${" in system:
        raise MappingError(file, f"{where}.identifier.system", "must be a fixed URL")
    value = compiler.node(identifier["value"], f"{where}.identifier.value")
    body = rule["resource"]
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise MappingError(file, f"{where}.resource", "must be a FHIR resource with a fixed "
                           "resourceType")
    rtype = body["resourceType"]
    if not types.is_resource_type(rtype):
        raise MappingError(file, f"{where}.resource.resourceType",
                           f"{rtype!r} is not an R4 resource type")
    when = compiler.condition(rule["when"], f"{where}.when") if "when" in rule else None
    retract_when = compiler.condition(rule["retract_when"], f"{where}.retract_when") \
        if "retract_when" in rule else None
    clear_when = compiler.condition(rule["clear_when"], f"{where}.clear_when") \
        if "clear_when" in rule else None
    clear = rule.get("clear") or []
    if (clear_when is None) != (not clear) or not isinstance(clear, list) or not all(
            isinstance(p, str) and re.fullmatch(r"[a-z][A-Za-z0-9]*(\.[a-z][A-Za-z0-9]*)?", p)
            for p in clear):
        raise MappingError(file, f"{where}.clear", "clear_when and clear come together: "
                           "clear lists elements (name or name.part, e.g. period.end)")
    if retract_when is not None and for_each is not None:
        raise MappingError(file, f"{where}.retract_when", "a list's items are retracted by "
                           "leaving them out (otherwise: retract), not by a condition")
    lists = {}
    for key in ("require", "expect", "refuse_empty", "not_after_today"):
        names = rule.get(key) or []
        if not isinstance(names, list) or not all(
                isinstance(n, str) and n in body for n in names):
            raise MappingError(file, f"{where}.{key}", "must list elements of the resource "
                               "(top-level names, e.g. valueCodeableConcept)")
        lists[key] = tuple(names)
    resource = compiler.node(body, f"{where}.resource")
    elements = dict(resource.items) if isinstance(resource, Obj) else {}
    return Rule(
        name=name, resource_type=rtype, when=when, require=lists["require"],
        expect=tuple((n, ", ".join(_fields_of(elements.get(n)))) for n in lists["expect"]),
        refuse_empty=tuple((n, _fields_of(elements.get(n))) for n in lists["refuse_empty"]),
        not_after_today=tuple((n, _fields_of(elements.get(n)))
                              for n in lists["not_after_today"]),
        retract_otherwise=otherwise == "retract", retract_when=retract_when,
        clear_when=clear_when, clear=tuple(clear),
        for_each=for_each, alias=alias, system=system, value=value,
        value_fields=_fields_of(value), resource=resource,
    )


def _conceptmaps(parts: dict[str, Any], folders: list[Traversable],
                 file: str) -> dict[str, ConceptMap]:
    nodes: list[Node] = [parts["patient"], *parts["record_id"], *parts["event"],
                         *parts["event_time"]]
    nodes += [n for r in parts["rules"] for n in (r.value, r.resource)]
    if parts["merge_identifier"] is not None:
        nodes.append(parts["merge_identifier"])
    found: dict[str, ConceptMap] = {}
    for ph in _iter_maps(nodes):
        if ph in found:
            continue
        try:
            found[ph] = load_conceptmap(ph, folders)
        except KeyError:
            raise MappingError(file, "", f"uses ConceptMap {ph!r}, but there is no "
                               f"conceptmaps/{ph}.json") from None
    return found


def _iter_maps(nodes: list[Node]) -> Iterator[str]:
    for ph in placeholders_in(nodes):
        if ph.conceptmap:
            yield ph.conceptmap
