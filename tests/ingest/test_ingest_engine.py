"""The mapping engine and mapping files: template rules, load-time checks, packaging."""

from __future__ import annotations

import json
import re
import textwrap
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from ingest_helpers import ROOT, mapped, of_type, only, run

from fhir_gateway.ingest import (
    MappingError,
    UnknownPartner,
    load_mapping,
    mapping,
    partners,
)
from fhir_gateway.ingest.conceptmaps import parse_conceptmap

PARTNERS = ["acute", "community", "gp", "hospice", "socialcare"]

BASE = """\
partner: lab
name: Test lab
ods_code: X9T01
mapping_version: "0.1"
format: {reader: jsonl, date_formats: [dd/mm/yyyy]}
record: {id: "${id}"}
person: {local_system: https://lab.example/Id/person}
patient:
  identifier:
    - {system: https://fhir.nhs.uk/Id/nhs-number, value: "${nhs:nhs}"}
    - {system: https://lab.example/Id/person, value: "${id}"}
  birthDate: "${date:dob}"
"""


def write(tmp_path: Path, body: str, name: str = "lab") -> Path:
    (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(body))
    return tmp_path


def lab(tmp_path: Path, resources_yaml: str, *lines: dict[str, Any]) -> list[Any]:
    write(tmp_path, BASE + textwrap.dedent(resources_yaml))
    text = "\n".join(json.dumps(line) for line in lines)
    return run("lab", text, "lab.jsonl", mapping_dir=tmp_path)


def test_the_five_partners_ship_in_the_package() -> None:
    assert partners() == PARTNERS
    package = resources.files("fhir_gateway.mappings")
    assert (ROOT / "mappings" / "README.md").is_file()
    for name in PARTNERS:
        mapping_ = load_mapping(name)
        assert mapping_.partner == name and mapping_.ods_code and mapping_.version
    maps = [p for p in package.joinpath("conceptmaps").iterdir() if p.name.endswith(".json")]
    assert len(maps) >= 10


def test_shipped_conceptmaps_and_codesystems_are_valid_r4() -> None:
    from fhir.resources.R4B import get_fhir_model_class

    folder = resources.files("fhir_gateway.mappings")
    local_codes: dict[str, set[str]] = {}
    published = resources.files("fhir_gateway.profiles").joinpath("generated")
    for path in published.iterdir():
        if not path.name.startswith("CodeSystem-"):
            continue
        body = json.loads(path.read_text())
        get_fhir_model_class("CodeSystem").model_validate(body)
        local_codes[body["url"]] = {c["code"] for c in body["concept"]}
    for path in folder.joinpath("conceptmaps").iterdir():
        body = json.loads(path.read_text())
        assert body["id"] == path.name.removesuffix(".json")
        parse_conceptmap(body, path.name)
        for group in body["group"]:  # codes in the project's own code systems must exist
            for element in group["element"]:
                for target in element["target"]:
                    if group["target"] in local_codes and "code" in target:
                        assert target["code"] in local_codes[group["target"]], target


def test_no_partner_is_named_in_python() -> None:
    names = re.compile(r"\b(acute|gp|hospice|socialcare|community)\b", re.IGNORECASE)
    for path in (ROOT / "fhir_gateway" / "ingest").glob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            assert not names.search(line), f"{path.name}:{number}: {line.strip()}"


@pytest.mark.parametrize("name", ["../gp", "GP", "", "gp/../acute", "x" * 80])
def test_partner_names_are_checked(name: str) -> None:
    with pytest.raises(UnknownPartner):
        load_mapping(name)


def test_an_unknown_partner() -> None:
    with pytest.raises(UnknownPartner, match="known: acute"):
        load_mapping("pharmacy")


@pytest.mark.parametrize(("change", "message"), [
    ("colour: blue\n", "unknown key"),
    ("resources:\n  - {name: a, identifier: {system: s, value: x}, resource: "
     "{resourceType: Flagg}}\n", "not an R4 resource type"),
    ("resources:\n  - {name: a, identifier: {system: s, value: x}, resource: "
     "{resourceType: Flag, code: '${code:no-such-map:x}'}}\n", "no-such-map"),
    ("resources:\n  - {name: a, identifier: {system: s, value: x}, resource: "
     "{resourceType: Flag, code: '${dat:x}'}}\n", "unknown function 'dat'"),
    ("resources:\n  - {name: a, identifier: {system: s, value: x}, when: {field: x, "
     "is: 1}, resource: {resourceType: Flag}}\n", "unknown test 'is'"),
    ("resources:\n  - {name: a, identifier: {system: s, value: x}, resource: "
     "{resourceType: Flag}}\n  - {name: a, identifier: {system: s, value: x}, "
     "resource: {resourceType: Flag}}\n", "must differ"),
    ("resources:\n  - {name: a, identifier: {system: s, value: '${x'}, resource: "
     "{resourceType: Flag}}\n", "unclosed"),
    ("resources:\n  - {name: a, for_each: xs, identifier: {system: s, value: x}, "
     "retract_when: {field: x, present: true}, resource: {resourceType: Flag}}\n",
     "leaving them out"),
    ("resources:\n  - {name: a, not_after_today: [issued], identifier: {system: s, "
     "value: x}, resource: {resourceType: Flag}}\n", "must list elements"),
    ("resources:\n  - {name: a, clear: [period.end], identifier: {system: s, "
     "value: x}, resource: {resourceType: Flag}}\n", "come together"),
    ("resources:\n  - {name: a, clear_when: {field: x, present: true}, clear: "
     "['period[0]'], identifier: {system: s, value: x}, resource: {resourceType: Flag}}\n",
     "come together"),
    ("fhir_base: c.example/fhir\n", "FHIR server base URL"),
])
def test_mapping_mistakes_are_found_when_it_loads(tmp_path: Path, change: str,
                                                  message: str) -> None:
    write(tmp_path, BASE + change)
    with pytest.raises(MappingError, match=message) as caught:
        load_mapping("lab", mapping_dir=tmp_path)
    assert "lab.yaml" in str(caught.value)


@pytest.mark.parametrize("listed", ["[telecom]", "[identifier]", "generalPractitioner"])
def test_authoritative_lists_elements_of_the_patient(tmp_path: Path, listed: str) -> None:
    write(tmp_path, BASE.replace("person: {local_system: https://lab.example/Id/person}",
                                 "person: {local_system: https://lab.example/Id/person, "
                                 f"authoritative: {listed}}}"))
    with pytest.raises(MappingError, match=r"person\.authoritative"):
        load_mapping("lab", mapping_dir=tmp_path)


def test_a_bad_field_path_is_found_when_it_loads(tmp_path: Path) -> None:
    body = BASE.replace("format: {reader: jsonl", "format: {reader: hl7v2").replace(
        '"${id}"', '"${PID-3.x}"')
    write(tmp_path, body)
    with pytest.raises(MappingError, match="not an HL7 v2 field path"):
        load_mapping("lab", mapping_dir=tmp_path)


def test_a_mapping_must_carry_its_partner_name(tmp_path: Path) -> None:
    write(tmp_path, BASE, name="other")
    with pytest.raises(MappingError, match="must be 'other'"):
        load_mapping("other", mapping_dir=tmp_path)


def test_yaml_scalars_stay_text(tmp_path: Path) -> None:
    records = lab(tmp_path, """\
        resources:
          - name: flag
            when: {field: code, equals: 01}
            identifier: {system: https://lab.example/Id/flag, value: "${id}"}
            resource:
              resourceType: Flag
              status: active
              code: {coding: [{system: http://snomed.info/sct, code: 304251008}], text: no}
              subject: {reference: "urn:gateway:patient"}
        """, {"id": "1", "nhs": "9434765919", "code": "01"})
    [flag] = of_type(only(records), "Flag")
    assert flag["code"] == {"coding": [{"system": "http://snomed.info/sct",
                                        "code": "304251008"}], "text": "no"}


def test_empty_values_drop_their_elements(tmp_path: Path) -> None:
    records = lab(tmp_path, """\
        resources:
          - name: flag
            identifier: {system: https://lab.example/Id/flag, value: "${id}"}
            resource:
              resourceType: Flag
              status: active
              code: {text: "Seen by ${who} on ${date:when}"}
              subject: {reference: "urn:gateway:patient"}
              author: {type: Practitioner, identifier: {system: https://x, value: "${who}"}}
              period: {start: "${date:when}", end: "${date:until}"}
        """, {"id": "1", "nhs": "9434765919", "who": "", "when": "02/03/2026"},
        {"id": "2", "nhs": "9434765919"})
    first, second = records
    [flag] = of_type(first, "Flag")
    assert flag["code"] == {"text": "Seen by on 2026-03-02"}
    assert "author" not in flag
    assert flag["period"] == {"start": "2026-03-02"}
    # Nothing for Flag.code (1..1) in the second: rejected, not stored half-made.
    assert second.field == "flag (Flag.code)"
    assert "leaves Flag.code empty, which FHIR R4 requires" in second.reason


def test_choices_require_for_each_and_retraction(tmp_path: Path) -> None:
    records = lab(tmp_path, """\
        resources:
          - name: flag
            require: [code]
            otherwise: retract
            identifier: {system: https://lab.example/Id/flag, value: "${id}"}
            resource:
              resourceType: Flag
              status: {if: {field: ended, present: true}, then: inactive, else: active}
              code: {text: "${alert}"}
              subject: {reference: "urn:gateway:patient"}
          - name: note
            for_each: notes
            as: note
            identifier: {system: https://lab.example/Id/note, value: "${id}/${note.n}"}
            resource:
              resourceType: Flag
              status: active
              code: {text: "${note.text}"}
              subject: {reference: "urn:gateway:patient"}
        """,
        {"id": "1", "nhs": "9434765919", "alert": "falls", "ended": "yes",
         "notes": [{"n": 1, "text": "a"}, {"n": 2, "text": "b"}]},
        {"id": "1", "nhs": "9434765919"})
    with_alert, without = mapped(records)
    assert [f["status"] for f in with_alert.resources] == ["inactive", "active", "active"]
    assert [k.value for k in with_alert.keys] == ["1", "1/1", "1/2"]
    assert without.resources == ()
    assert [(k.system, k.value) for k in without.retracted] == [
        ("https://lab.example/Id/flag", "1")]
    # notes are not stated in full (no `otherwise: retract`): none retracted when absent
    assert with_alert.item_sets == without.item_sets == ()


NOTES_IN_FULL = """\
    resources:
      - name: note
        for_each: notes
        as: note
        otherwise: retract
        when: {field: note.text, present: true}
        identifier: {system: https://lab.example/Id/note, value: "${id}/${note.n}"}
        resource:
          resourceType: Flag
          status: active
          code: {text: "${note.text}"}
          subject: {reference: "urn:gateway:patient"}
    """


def test_a_list_stated_in_full_names_every_item_it_gives(tmp_path: Path) -> None:
    full, blank_item, empty, none = mapped(lab(
        tmp_path, NOTES_IN_FULL,
        {"id": "1", "nhs": "9434765919", "notes": [{"n": 1, "text": "a"}, {"n": 2, "text": "b"}]},
        {"id": "1", "nhs": "9434765919", "notes": [{"n": 1, "text": "a"}, {"n": 2}]},
        {"id": "1", "nhs": "9434765919", "notes": []},
        {"id": "1", "nhs": "9434765919"}))
    assert [[k.value for k in r.item_sets[0].keys] for r in (full, blank_item, empty, none)] \
        == [["1/1", "1/2"], ["1/1"], [], []]
    assert {r.item_sets[0].rule for r in (full, blank_item, empty, none)} == {"note"}
    # an item whose `when` fails is left out of the list, not retracted on its own: a
    # retraction would not be weighed against a newer record's list
    assert blank_item.retracted == ()


def test_a_list_stated_in_full_needs_the_record_id(tmp_path: Path) -> None:
    [bad] = lab(tmp_path, NOTES_IN_FULL,
                {"nhs": "9434765919", "notes": [{"n": 1, "text": "a"}]})
    assert bad.field == "record.id", bad.reason
    assert "rule 'note'" in bad.reason


def test_a_value_fhir_refuses_is_named_by_its_source_field(tmp_path: Path) -> None:
    records = lab(tmp_path, """\
        resources:
          - name: flag
            identifier: {system: https://lab.example/Id/flag, value: "${id}"}
            resource:
              resourceType: Flag
              status: active
              code: {text: x}
              subject: {reference: "urn:gateway:patient"}
              period: {start: "${started}"}
        """, {"id": "1", "nhs": "9434765919", "started": "yesterday"})
    [bad] = records
    assert bad.field == "started"
    assert "Flag.period.start" in bad.reason and "'yesterday'" in bad.reason


def test_a_record_about_nobody_is_rejected(tmp_path: Path) -> None:
    [bad] = lab(tmp_path, "", {"nhs": "", "dob": "01/01/1950"})
    assert "neither an NHS number nor" in bad.reason


def test_an_engine_failure_rejects_the_record_and_the_file_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = mapping.map_record
    calls = iter([RuntimeError("boom"), None])

    def flaky(*args: Any, **kwargs: Any) -> Any:
        problem = next(calls)
        if problem:
            raise problem
        return real(*args, **kwargs)

    monkeypatch.setattr(mapping, "map_record", flaky)
    records = lab(tmp_path, "", {"id": "1", "nhs": "9434765919"},
                  {"id": "2", "nhs": "9434765919"})
    assert "error in the gateway (RuntimeError: boom)" in records[0].reason
    assert mapped(records)[0].source.record_id == "2"


def test_an_edited_mapping_is_reloaded(tmp_path: Path) -> None:
    write(tmp_path, BASE)
    first = mapping.cached_mapping("lab", mapping_dir=tmp_path)
    assert mapping.cached_mapping("lab", mapping_dir=tmp_path) is first
    path = tmp_path / "lab.yaml"
    path.write_text(BASE.replace('"0.1"', '"0.2"'))
    import os
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert mapping.cached_mapping("lab", mapping_dir=tmp_path).version == "0.2"


@pytest.mark.parametrize("partner", PARTNERS)
def test_damaged_files_never_raise_and_never_hit_an_engine_error(partner: str) -> None:
    """Cut, flipped, inserted and deleted bytes: every record ends as a MappedRecord or a
    Rejection, and no Rejection is the engine's own failure."""
    import random

    from ingest_helpers import FEEDS

    sample = {"acute": "acute/adt.hl7", "gp": "gp/palliative_register.csv",
              "hospice": "hospice/clients.jsonl", "socialcare": "socialcare/services.csv",
              "community": "community/bundle-00006.json"}[partner]
    data = (FEEDS / sample).read_bytes()
    rnd = random.Random(partner)
    noise = [b"|", b"^", b"~", b"\\", b"&", b'"', b",", b";", b"\r", b"\n", b"{", b"}",
             b"\x0b", b"\x1c", b"MSH|", b'""', b"\xff"]
    for _ in range(40):
        damaged = bytearray(data)
        at = rnd.randrange(len(damaged))
        match rnd.randrange(4):
            case 0:
                del damaged[at:]
            case 1:
                for _ in range(rnd.randint(1, 20)):
                    damaged[rnd.randrange(len(damaged))] = rnd.randrange(256)
            case 2:
                damaged[at:at] = b"".join(rnd.choice(noise) for _ in range(rnd.randint(1, 10)))
            case _:
                del damaged[at:at + rnd.randint(1, 50)]
        for result in run(partner, bytes(damaged)):
            assert "error in the gateway" not in getattr(result, "reason", ""), result
