"""The mapping engine: a partner file's bytes in, `MappedRecord`s and `Rejection`s out.

    map_file(partner, filename, data)  ->  Iterator[MappedRecord | Rejection]

For each record the reader gives, the engine renders the mapping's `record` fields, the
`patient` template (from which the `PersonKey` is taken), the `merge` identifiers and each
resource rule (`when`, `for_each`, business identifier, resource template). Every Patient
and resource is then checked with the fhir.resources R4B model, so what leaves here is
valid R4 structure. Any unusable source value, and any value FHIR refuses, rejects the
whole record, with every problem found named by its source field; the file goes on.

Nothing here knows a partner: all of that is in the mapping files.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from .. import jsonio
from ..fhir import json_types
from . import values
from .errors import FieldError
from .model import (
    NHS_NUMBER_SYSTEM,
    BusinessId,
    ItemSet,
    MappedRecord,
    PersonKey,
    Rejection,
    SourceRef,
)
from .source import SourceRecord, Unreadable, control_character, foreign_encoding
from .spec import Mapping, Rule, load_mapping, mapping_folders
from .template import (
    Condition,
    Const,
    Context,
    Lst,
    Node,
    Obj,
    render,
    render_resource,
    test,
)

_cache: dict[tuple[str, str], tuple[tuple[Any, ...], Mapping]] = {}


def _signature(partner: str, mapping_dir: str | Path | None) -> tuple[Any, ...]:
    """File names and modification times a mapping depends on (to reload on edit)."""
    stamp: list[Any] = []
    for folder in mapping_folders(mapping_dir):
        if not isinstance(folder, Path):  # e.g. a zipped install: it cannot change
            continue
        for path in (folder / f"{partner}.yaml", *sorted(folder.glob("conceptmaps/*.json"))):
            try:
                stamp.append((str(path), path.stat().st_mtime_ns))
            except OSError:
                continue
    return tuple(stamp)


def cached_mapping(partner: str, *, mapping_dir: str | Path | None = None) -> Mapping:
    """`load_mapping`, reloaded only when the mapping or a ConceptMap file changed."""
    key = (partner, str(mapping_dir))
    signature = _signature(partner, mapping_dir)
    hit = _cache.get(key)
    if hit is not None and hit[0] == signature:
        return hit[1]
    mapping = load_mapping(partner, mapping_dir=mapping_dir)
    _cache[key] = (signature, mapping)
    return mapping


def map_file(
    partner: str | Mapping,
    filename: str,
    data: bytes,
    *,
    mapping_dir: str | Path | None = None,
    today: dt.date | None = None,
) -> Iterator[MappedRecord | Rejection]:
    """Map every record of one partner file, in file order.

    `partner` is a partner name (its mapping is loaded from `mapping_dir` or the installed
    package) or an already loaded `Mapping`. `filename` is the file's name as it should be
    cited (no directories needed). `today` is the date conditions such as `before: today`
    compare with (default: today in the mapping's time zone). Raises only for a bad or
    unknown mapping (`MappingError`, `UnknownPartner`), before reading anything.
    """
    mapping = partner if isinstance(partner, Mapping) else cached_mapping(
        partner, mapping_dir=mapping_dir)
    if today is None:
        today = dt.datetime.now(values.zone(mapping.settings.timezone)).date()
    name = Path(filename).name or filename
    wide = foreign_encoding(data, mapping.reader.encoding)
    if wide is not None:  # one rejection for the file, kept readable for review
        codec, problem = wide
        yield _reject(_source(mapping, name, "whole file", None, None,
                              data.decode(codec, errors="replace")),
                      [FieldError("file", problem)])
        return
    records = mapping.read(data)
    while True:
        try:
            item = next(records)
        except StopIteration:
            return
        except Exception as exc:  # a reader bug must not lose what was already read
            source = _source(mapping, name, "rest of the file", None, None, "")
            yield _reject(source, [FieldError("file", f"could not be read further "
                                              f"({type(exc).__name__}: {exc})")])
            return
        if isinstance(item, Unreadable):
            source = _source(mapping, name, item.position, item.record_id, None, item.raw)
            yield _reject(source, [FieldError(item.field, item.problem)])
            continue
        try:
            yield map_record(mapping, name, item, today=today)
        except Exception as exc:  # an engine bug: keep the record for review, go on
            source = _source(mapping, name, item.position, None, None, item.raw)
            yield _reject(source, [FieldError("record", "could not be mapped because of an "
                                              f"error in the gateway ({type(exc).__name__}: "
                                              f"{exc}); please report it")])


def _source(mapping: Mapping, file: str, position: str, record_id: str | None,
            event_time: str | None, raw: str) -> SourceRef:
    return SourceRef(
        partner=mapping.partner, ods_code=mapping.ods_code, partner_name=mapping.name,
        file=file, position=position, record_id=record_id, event_time=event_time,
        mapping_version=mapping.version, raw=raw,
    )


def _reject(source: SourceRef, problems: list[FieldError]) -> Rejection:
    ident = f" ({source.record_id})" if source.record_id else ""
    details = "; ".join(f"{p.field}: {p.problem}" for p in problems)
    reason = (f"{source.partner} record at {source.file} {source.position}{ident} was "
              f"rejected. {details}.")
    fields = ", ".join(dict.fromkeys(p.field for p in problems))
    return Rejection(source=source, field=fields, reason=reason)


def _first_value(nodes: tuple[Node, ...], ctx: Context, path: str) -> Any:
    for node in nodes:
        value = render(node, ctx, (path,))
        if value is not None:
            return value
    return None


def map_record(
    mapping: Mapping, filename: str, record: SourceRecord, *, today: dt.date
) -> MappedRecord | Rejection:
    """Map one record read from `filename` (see `map_file`)."""
    ctx = Context(record=record, settings=mapping.settings, today=today)
    record_id = _as_text(_first_value(mapping.record_id, ctx, "record.id"))
    event = _as_text(_first_value(mapping.event, ctx, "record.event"))
    event_time = _as_text(_first_value(mapping.event_time, ctx, "record.event_time"))
    source = _source(mapping, filename, record.position, record_id, event_time, record.raw)

    patient_nulled: list[str] = []
    patient = {"resourceType": "Patient",
               **render_resource(mapping.patient, ctx, ("Patient",), patient_nulled)}
    _own_identifiers_only(patient, mapping, ctx)
    person = _person(patient, mapping, ctx)
    merge_from = _merge_from(mapping, ctx)
    resources: list[dict[str, Any]] = []
    keys: list[BusinessId] = []
    cleared: list[tuple[str, ...]] = []
    origins: list[str] = []
    retracted: list[BusinessId] = []
    item_sets: list[ItemSet] = []
    if not ctx.problems:
        _check(patient, ctx, "Patient")
    taken = False
    for rule in mapping.rules:  # also after a problem, so that every problem is named
        first = len(keys)
        taken |= _apply(rule, ctx, resources, keys, retracted, cleared, origins,
                        restated=event_time is None)
        if rule.for_each is not None and rule.retract_otherwise:
            if record_id is None:
                ctx.fail("record.id", f"is empty, so what rule {rule.name!r} listed before "
                         "for this record cannot be found and kept up to date")
            item_sets.append(ItemSet(rule.name, rule.resource_type, rule.system,
                                     tuple(keys[first:])))
    if not taken and mapping.unmapped_unless is not None \
            and not test(mapping.unmapped_unless, ctx):
        _unmapped(mapping.unmapped_unless, ctx)
    if ctx.problems:
        return _reject(source, ctx.problems)
    return MappedRecord(
        source=source, person=person, patient=patient, resources=tuple(resources),
        keys=tuple(keys), event=event, merge_from=merge_from, retracted=tuple(retracted),
        item_sets=tuple(item_sets), warnings=tuple(dict.fromkeys(ctx.warnings)),
        authoritative=mapping.authoritative,
        cleared=tuple(cleared) if any(cleared) else (),
        patient_cleared=tuple(patient_nulled), origins=tuple(origins),
    )


def _unmapped(unless: Condition, ctx: Context) -> None:
    """Reject a record no rule takes: a partner's DNACPR sent in a form the mapping does
    not read yet must be seen, not dropped as if nothing had come."""
    paths = _condition_paths(unless) or ["record"]
    said = ", ".join(f"{p} {v!r}" for p in paths if (v := ctx.lookup(p)) is not None)
    ctx.fail(paths[0], f"no rule of this mapping reads a record like this one"
             f"{f' ({said})' if said else ''}: it is kept for review, nothing is stored")


def _condition_paths(cond: Condition) -> list[str]:
    if cond.path is not None:
        return [cond.path]
    return [p for part in cond.parts for p in _condition_paths(part)]


def _refused_empty(rule: Rule, body: dict[str, Any], ctx: Context) -> bool:
    """Whether an element the rule lists under `refuse_empty` came out empty because its
    source field was empty (present in the record, or inside an object that is): then the
    record is rejected, naming the field. A blank CPR cell is not "no decision": left to
    `require`/`otherwise: retract`, it would delete the partner's DNACPR unseen. (A value
    its ConceptMap lists as having no code, a register's N say, is not empty.)"""
    refused = False
    for element, fields in rule.refuse_empty:
        if body.get(element) is not None:
            continue
        for path in fields:
            parent = path.rsplit(".", 1)[0] if "." in path else None
            # an absent or null parent is no form at all; an empty one ({}) is a form
            # sent with nothing in it, refused like a blank field
            if not _blank(ctx.lookup(path)) or (parent is not None and ctx.lookup(
                    parent) in (None, [])):
                continue
            ctx.fail(path, f"is empty, and rule {rule.name!r} never reads an empty value as "
                     "none: the record is kept for review and what is stored stays")
            refused = True
    return refused


def _in_the_future(rule: Rule, body: dict[str, Any], ctx: Context) -> bool:
    """Whether an element the rule lists under `not_after_today` holds a date after today
    (the date as written, in the sender's time zone): then the record is rejected, naming
    the field. Such a date is a slip (2062 for 2026); kept, it would outrank every real
    decision as the newest."""
    late = False
    for element, fields in rule.not_after_today:
        value = body.get(element)
        if isinstance(value, str) and _local_date(value, ctx) > ctx.today.isoformat():
            ctx.fail(", ".join(fields) or element, f"is {value[:10]}, after today "
                     f"({ctx.today}): it dates something that has already happened (a "
                     "decision, a form, a death), so it must be a mistake")
            late = True
    return late


def _local_date(value: str, ctx: Context) -> str:
    """The date of a FHIR date or dateTime in the mapping's time zone (00:30+01:00 on 23
    November is still 22 November in London, in winter); a date, or a partial one, as
    written (dates of any precision sort as text against a full one)."""
    if len(value) > 10 and "T" in value:
        try:
            when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value[:10]
        if when.tzinfo is not None:
            return when.astimezone(values.zone(ctx.settings.timezone)).date().isoformat()
    return value[:10]


def _blank(value: Any) -> bool:
    return value is None or value == [] or value == {} or (
        isinstance(value, str) and not value.strip())


def _own_identifiers_only(patient: dict[str, Any], mapping: Mapping, ctx: Context) -> None:
    """Keep on a partner's Patient only the NHS number and the partner's own identifier
    (`person.local_system`). An identifier it holds under another system (its copy of a
    hospital MRN, say) would be added to the shared Patient on its say-so alone, and the
    next record carrying that identifier linked to this person by it: a wrong or stale
    copy would merge two people. What is left out is named in the record's warnings."""
    identifiers = patient.get("identifier")
    if not isinstance(identifiers, list):
        return
    kept = [i for i in identifiers if isinstance(i, dict) and i.get("system") in (
        NHS_NUMBER_SYSTEM, mapping.local_system)]
    dropped = sorted({str(i.get("system")) if isinstance(i, dict) else "?"
                      for i in identifiers if i not in kept})
    if dropped:
        ctx.warnings.append(
            f"Patient.identifier: left out identifiers under {', '.join(dropped)}: a "
            "partner's Patient carries only the NHS number and its own identifier")
        patient["identifier"] = kept


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _nhs_identifiers(identifiers: list[Any], ctx: Context, field: str) -> str | None:
    """Validate and normalise every NHS number identifier in place; the number, or None."""
    found: set[str] = set()
    for ident in identifiers:
        if not isinstance(ident, dict) or ident.get("system") != NHS_NUMBER_SYSTEM:
            continue
        given = str(ident.get("value", ""))
        try:
            ident["value"] = values.nhs_number(given)
        except ValueError as exc:
            ctx.fail(field, str(exc))
            continue
        found.add(ident["value"])
    if len(found) > 1:
        ctx.fail(field, f"gives two different NHS numbers ({', '.join(sorted(found))})")
        return None
    return found.pop() if found else None


def _first(items: Any) -> Any:
    """The first element of a JSON list, or None (tolerates what a template passed on)."""
    return items[0] if isinstance(items, list) and items else None


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _local_id(identifiers: list[Any], system: str | None) -> str | None:
    return next((_text_or_none(i.get("value")) for i in identifiers
                 if isinstance(i, dict) and system and i.get("system") == system), None)


def _nhs_given(ctx: Context, nhs: str | None) -> str | None:
    return next((text for text, number in ctx.nhs_numbers if number == nhs), nhs)


def _person(patient: dict[str, Any], mapping: Mapping, ctx: Context) -> PersonKey:
    identifiers = patient.get("identifier")
    identifiers = identifiers if isinstance(identifiers, list) else []
    field = ", ".join(mapping.person_fields) or "Patient.identifier"
    nhs = _nhs_identifiers(identifiers, ctx, field)
    local = _local_id(identifiers, mapping.local_system)
    if nhs is None and local is None and not ctx.problems:
        ctx.fail(field, "the record has neither an NHS number nor the partner's own "
                 "identifier for the person, so whom it is about is unknown")
    died = patient.get("deceasedDateTime")
    if isinstance(died, str) and _local_date(died, ctx) > ctx.today.isoformat():
        ctx.fail(_origin(ctx, ("Patient", "deceasedDateTime")) or "Patient.deceasedDateTime",
                 f"gives the date of death {died}, which is after today ({ctx.today})")
    born = _text_or_none(patient.get("birthDate"))
    if born and born[:10] > ctx.today.isoformat():  # dates of any precision sort as text
        ctx.fail(_origin(ctx, ("Patient", "birthDate")) or "Patient.birthDate",
                 f"gives the birth date {born}, which is after today ({ctx.today})")
    if isinstance(died, str) and born:
        # compared at the shorter precision: a mistyped year must not become the person's
        # date of death (1940 for someone born in 1948)
        death_day, birth_day = _local_date(died, ctx), born[:10]
        shared = min(len(death_day), len(birth_day))
        if death_day[:shared] < birth_day[:shared]:
            ctx.fail(_origin(ctx, ("Patient", "deceasedDateTime"))
                     or "Patient.deceasedDateTime",
                     f"gives the date of death {died}, which is before the birth date {born}")
    name = _first(patient.get("name"))
    name = name if isinstance(name, dict) else {}
    address = _first(patient.get("address"))
    code = _text_or_none(address.get("postalCode")) if isinstance(address, dict) else None
    return PersonKey(
        nhs_number=nhs, nhs_number_given=_nhs_given(ctx, nhs),
        local_system=mapping.local_system if local else None, local_id=local,
        family=_text_or_none(name.get("family")), given=_text_or_none(_first(name.get("given"))),
        birth_date=born,
        # only a real postcode helps match a person ("NFA" is shared by many)
        postcode=values.uk_postcode(code) if code else None,
        gender=_text_or_none(patient.get("gender")),
    )


def _merge_from(mapping: Mapping, ctx: Context) -> PersonKey | None:
    if mapping.merge_identifier is None:
        return None
    if mapping.merge_when is not None and not test(mapping.merge_when, ctx):
        return None
    identifiers = render(mapping.merge_identifier, ctx, ("merge",))
    identifiers = identifiers if isinstance(identifiers, list) else []
    field = ", ".join(mapping.merge_fields) or "merge.identifier"
    nhs = _nhs_identifiers(identifiers, ctx, field)
    local = _local_id(identifiers, mapping.local_system)
    if nhs is None and local is None:
        ctx.fail(field, "a merge must say which identifiers the person had before; "
                 "none was found")
        return None
    return PersonKey(nhs_number=nhs, nhs_number_given=_nhs_given(ctx, nhs),
                     local_system=mapping.local_system if local else None, local_id=local)


def _items(rule: Rule, ctx: Context) -> list[Any]:
    if rule.for_each is None:
        return [None]
    found = ctx.lookup(rule.for_each)
    if found is None:
        return []
    return found if isinstance(found, list) else [found]


def _apply(rule: Rule, ctx: Context, resources: list[dict[str, Any]],
           keys: list[BusinessId], retracted: list[BusinessId],
           cleared: list[tuple[str, ...]], origins: list[str], *,
           restated: bool = False) -> bool:
    """Apply `rule` to the record; whether it took the record (its `when` held, or its
    `retract_when`, for some item). `restated`: the record has no event time, so it
    restates each resource whole (an extract row, a form): an element of the rule's
    resource it leaves out is cleared, not kept from an older record (a new ReSPECT form
    without a completion date must not show the old form's date and signer)."""
    taken = False
    split: set[str] = set()  # identifier values two differing items share
    for i, item in enumerate(_items(rule, ctx)):
        ctx.scopes = {rule.alias: item} if rule.alias else {}
        ctx.scope_paths = {rule.alias: f"{rule.for_each}[{i}]"} \
            if rule.alias and rule.for_each else {}
        before = ctx.refusals
        value = render(rule.value, ctx, ("identifier",))
        refused_key = value is None and ctx.refusals > before  # already named by its field
        known = ctx.refusals
        body = None
        if rule.retract_when is not None and test(rule.retract_when, ctx):
            taken = True
            if value is not None:
                retracted.append(BusinessId(rule.resource_type, rule.system, str(value)))
            continue
        nulled: list[str] = []
        if rule.when is None or test(rule.when, ctx):
            taken = True
            body = render_resource(rule.resource, ctx, (rule.resource_type,), nulled)
            if _refused_empty(rule, body, ctx) or _in_the_future(rule, body, ctx):
                continue  # the record is rejected: nothing retracted, nothing kept
            if any(body.get(name) is None for name in rule.require):
                body = None  # e.g. a local term its ConceptMap lists as having no code
        if refused_key:
            continue
        if body is None:
            # (an item of a list stated in full is retracted by being left out of it,
            # which an older record cannot do: `ItemSet`)
            if rule.retract_otherwise and rule.for_each is None and value is not None:
                retracted.append(BusinessId(rule.resource_type, rule.system, str(value)))
            continue
        if value is None:
            fields = ", ".join(rule.value_fields) or rule.name
            ctx.fail(fields, f"is empty, so the {rule.resource_type} of rule {rule.name!r} "
                     "has no business identifier and cannot be kept up to date")
            continue
        key = BusinessId(rule.resource_type, rule.system, str(value))
        extra = [i for i in body.get("identifier", []) if i != key.identifier()]
        resource = {"resourceType": rule.resource_type, "identifier": [key.identifier(), *extra],
                    **{k: v for k, v in body.items() if k not in ("resourceType", "identifier")}}
        if key in keys and rule.for_each is None:  # two rules, one identifier
            ctx.fail(f"rule {rule.name!r}", f"gives the identifier {key.value!r} an earlier "
                     "rule gave: fix the mapping")
            continue
        if key in keys or str(value) in split:
            # Items the identifier cannot tell apart (one contact listed twice with two
            # numbers): each is kept, keyed also by what it says, so their order does not
            # matter. Dropping one would lose it unseen (an LPA holder perhaps); refusing
            # the record would hold up the whole form, its CPR decision too.
            if key in keys:
                k = keys.index(key)
                keys[k] = _by_content(key, resources[k])
                resources[k] = {**resources[k],
                                "identifier": [keys[k].identifier(),
                                               *resources[k]["identifier"][1:]]}
                split.add(str(value))
            key = _by_content(key, resource)
            if key in keys:
                ctx.warnings.append(f"{rule.name}: {_item_path(rule, i)} repeats an earlier "
                                    "item exactly and is kept once")
                continue
            resource = {**resource, "identifier": [key.identifier(), *extra]}
        # A value already refused is reported once, by its field, not again by the model.
        if ctx.refusals == known and _check(resource, ctx, rule.name):
            resources.append(resource)
            keys.append(key)
            origins.append(_item_path(rule, i))
            clear = rule.clear if rule.clear_when is not None and test(rule.clear_when,
                                                                       ctx) else ()
            absent = tuple(k for k in _elements(rule.resource) if k not in resource) + tuple(
                f"identifier|{system}" for system in _identifier_systems(rule.resource)
                if not any(i.get("system") == system for i in resource["identifier"])
            ) if restated else ()
            cleared.append(tuple(dict.fromkeys((*clear, *nulled, *absent))))
            ctx.warnings.extend(
                f"{rule.name}: {element} is empty{f' ({fields})' if fields else ''}; the "
                f"{rule.resource_type} is kept without it"
                for element, fields in rule.expect if element not in resource)
    ctx.scopes, ctx.scope_paths = {}, {}
    return taken


def _by_content(key: BusinessId, resource: dict[str, Any]) -> BusinessId:
    """`key` made particular to what `resource` says (`value#` and a digest of it)."""
    said = {k: v for k, v in resource.items() if k != "identifier"}
    digest = hashlib.sha256(jsonio.canonical(said).encode()).hexdigest()[:8]
    return BusinessId(key.resource_type, key.system, f"{key.value}#{digest}")


def _elements(template: Node) -> tuple[str, ...]:
    """The top-level element names a resource template can give."""
    if isinstance(template, Obj):
        return tuple(name for name, _ in template.items)
    if isinstance(template, Const) and isinstance(template.value, dict):
        return tuple(template.value)
    return ()


def _identifier_systems(template: Node) -> tuple[str, ...]:
    """The systems of the extra identifiers a resource template gives (a form's id):
    restated without one, the resource no longer has that identifier."""
    items = dict(template.items) if isinstance(template, Obj) else {}
    found = items.get("identifier")
    entries = found.items if isinstance(found, Lst) else ()
    out = []
    for entry in entries:
        fields = dict(entry.items) if isinstance(entry, Obj) else {}
        system = fields.get("system")
        if isinstance(system, Const) and isinstance(system.value, str):
            out.append(system.value)
    return tuple(out)


def _item_path(rule: Rule, index: int) -> str:
    """The source path of one item of a rule (`respect.contacts[1]`), or the rule's name."""
    return f"{rule.for_each}[{index}]" if rule.for_each else f"rule {rule.name!r}"


#: the steps of a FHIRPath location: `Patient.name[0].given` -> Patient, name, 0, given
_STEPS = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _check(resource: dict[str, Any], ctx: Context, rule: str) -> bool:
    """Check `resource` with the R4B model; each problem is named by its source field."""
    rtype = resource["resourceType"]
    try:
        get_fhir_model_class(rtype).model_validate(resource)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(p for p in err.get("loc", ()) if p != "__root__")
            element = ".".join([rtype, *map(str, loc)])
            field = _origin(ctx, (rtype, *loc)) or f"{rule} ({element})"
            if err.get("type") == "missing":
                ctx.fail(field, f"leaves {element} empty, which FHIR R4 requires")
                continue
            shown = err.get("input")
            value = f" {shown!r}" if isinstance(shown, str | int | float) else ""
            ctx.fail(field, f"gives {element} the value{value}, which FHIR R4 does not "
                     f"allow ({err.get('msg', 'invalid')})")
        return False
    except (ValueError, TypeError) as exc:
        ctx.fail(rule, f"makes an invalid {rtype}: {exc}")
        return False
    mistyped = [(i.expression[0], i.diagnostics) for i in
                json_types.problems(resource, get_fhir_model_class(rtype), rtype)]
    control = control_character(resource, rtype)  # only what the mapping made FHIR text
    if control is not None:
        mistyped.append((control[0], f"{control[0]} {control[1]}"))
    for element, problem in mistyped:  # a source's "true" where FHIR has a boolean, a NUL
        loc = tuple(int(i) if i else name for name, i in _STEPS.findall(element))
        ctx.fail(_origin(ctx, loc) or f"{rule} ({element})", problem)
    return not mistyped


def _origin(ctx: Context, path: tuple[Any, ...]) -> str | None:
    """The source field behind the element at `path` (or its nearest parent)."""
    for end in range(len(path), 0, -1):
        found = ctx.origins.get(path[:end])
        if found:
            return found
    return None

