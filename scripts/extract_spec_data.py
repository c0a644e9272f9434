"""Extract the FHIR R4 specification data the gateway uses from the official examples package.

Source: the npm package ``hl7.fhir.r4.examples@4.0.1`` published by HL7 (FHIR R4 4.0.1,
licence CC0-1.0). The gateway must not depend on a network fetch or on the whole 190 MB
package at run time, so this script reduces it to small, committed, reviewable files:

``fhir_gateway/data/r4_resource_types.json``
    Every concrete R4 resource type (StructureDefinitions in ``Bundle-resources.json`` with
    kind=resource, derivation=specialization, abstract=false).
``fhir_gateway/data/search_parameters.json``
    Every SearchParameter of the base specification (``Bundle-searchParams.json``), reduced to
    the fields a search implementation needs; FHIRPath expressions are copied unchanged.
``fhir_gateway/data/r4b_model_gaps.json``
    Where the R4B models of ``fhir.resources`` (which the gateway uses to validate R4 content)
    do not fit R4: R4 resource types with no R4B model, and R4 types whose official examples
    fail R4B validation, with counts, a short error and a best-effort cause for each failure.
``tests/fixtures/r4-examples/<Type>/<file>.json`` and ``tests/fixtures/r4-examples/SOURCE.md``
    Byte-identical copies of every official Patient, Encounter, CarePlan, Consent, Observation
    and Provenance example, for tests.

Every JSON output records the package it came from and the package file(s) it was read from.
Output is deterministic: re-running with the same package and the same ``fhir.resources``
version rewrites byte-identical files (files whose content is unchanged are not rewritten).

Usage (from the repository root)::

    .venv/bin/python scripts/extract_spec_data.py [PATH]

PATH is the ``.tgz`` made by ``npm pack hl7.fhir.r4.examples@4.0.1``, or the folder it unpacks
to (``package/``) or its parent. Without PATH the script runs ``npm pack`` in a temporary
directory. Only the standard library and ``fhir.resources`` are used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import fhir.resources
from fhir.resources.R4B import fhirtypes as r4b_fhirtypes
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource as R4BResource
from pydantic import ValidationError  # installed with fhir.resources

PACKAGE_NAME = "hl7.fhir.r4.examples"
PACKAGE_VERSION = "4.0.1"
PACKAGE_SPEC = f"{PACKAGE_NAME}@{PACKAGE_VERSION}"
SOURCE = f"npm {PACKAGE_SPEC} (HL7 FHIR R4 4.0.1, CC0)"
# shasum npm reports for the published tarball (checked only when a .tgz is read).
TARBALL_SHA1 = "537ea7db3f3c7b3575fe2eaa7808bad21261cca3"

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = REPO_ROOT / "fhir_gateway" / "data"
FIXTURE_DIR = REPO_ROOT / "tests" / "fixtures" / "r4-examples"
FIXTURE_TYPES = ("CarePlan", "Consent", "Encounter", "Observation", "Patient", "Provenance")

# Bundles that only package the specification's own definitions (profiles, extensions, search
# parameters, terminology, registries) rather than being examples: a collection Bundle whose
# every entry has one of these types. They are not validated (see "skipped" in the output).
CONFORMANCE_TYPES = frozenset(
    {
        "CapabilityStatement",
        "CodeSystem",
        "CompartmentDefinition",
        "ConceptMap",
        "NamingSystem",
        "OperationDefinition",
        "SearchParameter",
        "StructureDefinition",
        "ValueSet",
    }
)

# Causes attached to each R4B validation error (best effort, derived from the R4 definitions).
CAUSE_R4_INVALID = "required-in-r4-too (the R4 example itself breaks R4 cardinality)"
CAUSE_MODEL_CHANGE = "r4b-model-change (element present/optional in R4, absent/required in R4B)"
CAUSE_PRIMITIVE_EXT = "fhir.resources-rejects-valid-r4-primitive-extension (_element)"
CAUSE_UNKNOWN_IN_R4 = "element-unknown-in-r4-too"
CAUSE_VALUE = "value-rejected (type, pattern or constraint)"

Json = Any


# --------------------------------------------------------------------------- package access


def obtain_package(arg: str | None, workdir: Path) -> Path:
    """Return the ``package/`` folder, downloading or unpacking into ``workdir`` as needed."""
    if arg is None:
        print(f"npm pack {PACKAGE_SPEC} ...", file=sys.stderr)
        subprocess.run(
            ["npm", "pack", PACKAGE_SPEC, "--silent"],
            cwd=workdir,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        tarballs = sorted(workdir.glob("*.tgz"))
        if len(tarballs) != 1:
            raise SystemExit(f"npm pack produced {len(tarballs)} tarballs in {workdir}")
        path = tarballs[0]
    else:
        path = Path(arg)
    if path.is_file():
        sha1 = hashlib.sha1(path.read_bytes()).hexdigest()
        if sha1 != TARBALL_SHA1:
            print(f"warning: {path} sha1 {sha1} != published {TARBALL_SHA1}", file=sys.stderr)
        with tarfile.open(path, "r:gz") as tar:
            tar.extractall(workdir / "unpacked", filter="data")
        path = workdir / "unpacked"
    if (path / "package" / "package.json").is_file():
        path = path / "package"
    manifest_file = path / "package.json"
    if not manifest_file.is_file():
        raise SystemExit(f"{path} is not an npm package folder (no package.json)")
    manifest = json.loads(manifest_file.read_bytes())
    if (manifest.get("name"), manifest.get("version")) != (PACKAGE_NAME, PACKAGE_VERSION):
        raise SystemExit(
            f"expected {PACKAGE_SPEC}, found {manifest.get('name')}@{manifest.get('version')}"
        )
    return path


def resource_files(package: Path) -> list[Path]:
    """Every resource file of the package (all ``*.json`` except the npm manifest), sorted."""
    return sorted(p for p in package.glob("*.json") if p.name != "package.json")


def load_bundle_resources(package: Path, name: str) -> list[dict[str, Json]]:
    bundle = json.loads((package / name).read_bytes())
    return [entry["resource"] for entry in bundle.get("entry", [])]


# --------------------------------------------------------------------------- output helpers


def _inline(value: Json) -> str:
    return json.dumps(value, ensure_ascii=True, separators=(", ", ": "))


def render(document: dict[str, Json]) -> str:
    """Two-level pretty JSON: top-level keys and their list items / dict entries one per line."""
    lines = ["{"]
    items = list(document.items())
    for index, (key, value) in enumerate(items):
        comma = "," if index < len(items) - 1 else ""
        if isinstance(value, list) and value:
            inner = [f"    {_inline(item)}" for item in value]
            lines.append(f"  {_inline(key)}: [\n" + ",\n".join(inner) + f"\n  ]{comma}")
        elif isinstance(value, dict) and value:
            inner = [f"    {_inline(k)}: {_inline(v)}" for k, v in value.items()]
            lines.append(f"  {_inline(key)}: {{\n" + ",\n".join(inner) + f"\n  }}{comma}")
        else:
            lines.append(f"  {_inline(key)}: {_inline(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_if_changed(path: Path, data: bytes) -> None:
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_json(path: Path, document: dict[str, Json]) -> None:
    text = render(document)
    json.loads(text)  # the hand-rolled layout must stay valid JSON
    write_if_changed(path, text.encode("utf-8"))
    print(f"wrote {path.relative_to(REPO_ROOT)} ({path.stat().st_size:,} bytes)")


# --------------------------------------------------------------------------- (a) types


def concrete_resource_types(structure_definitions: list[dict[str, Json]]) -> list[str]:
    return sorted(
        sd["type"]
        for sd in structure_definitions
        if sd.get("resourceType") == "StructureDefinition"
        and sd.get("kind") == "resource"
        and sd.get("derivation") == "specialization"
        and sd.get("abstract") is False
    )


# --------------------------------------------------------------------------- (b) search params


def reduce_search_parameter(sp: dict[str, Json]) -> dict[str, Json]:
    reduced: dict[str, Json] = {
        "url": sp["url"],
        "code": sp["code"],
        "base": list(sp.get("base", [])),
        "type": sp["type"],
        "expression": sp.get("expression"),
        "xpathUsage": sp.get("xpathUsage"),
        "target": list(sp.get("target", [])),
        "multipleOr": sp.get("multipleOr"),
        "multipleAnd": sp.get("multipleAnd"),
        "comparator": list(sp.get("comparator", [])),
        "modifier": list(sp.get("modifier", [])),
        "chain": list(sp.get("chain", [])),
    }
    reduced["component"] = [
        {"definition": c.get("definition"), "expression": c.get("expression")}
        for c in sp.get("component", [])
    ]
    return reduced


# --------------------------------------------------------------------------- (c) R4 definitions


class R4Definitions:
    """Element definitions of R4 resources and data types, to explain R4B validation errors."""

    def __init__(self, structure_definitions: list[dict[str, Json]]) -> None:
        self.elements: dict[str, dict[str, dict[str, Json]]] = {}
        for sd in structure_definitions:
            if sd.get("resourceType") != "StructureDefinition":
                continue
            if sd.get("derivation") != "specialization" or sd.get("kind") == "logical":
                continue
            self.elements[sd["type"]] = {
                el["path"]: el for el in sd.get("snapshot", {}).get("element", [])
            }

    def _child(self, type_name: str, parent: str, name: str) -> tuple[dict[str, Json], str] | None:
        """Element ``parent.name`` of ``type_name`` and the type chosen for a choice element."""
        elements = self.elements.get(type_name, {})
        element = elements.get(f"{parent}.{name}")
        if element is not None:
            codes = [t["code"] for t in element.get("type", [])]
            return element, codes[0] if len(codes) == 1 else ""
        for path, candidate in elements.items():
            if not path.endswith("[x]") or path.count(".") != parent.count(".") + 1:
                continue
            stem = path[len(parent) + 1 : -3]
            if not (path.startswith(parent + ".") and name.startswith(stem)):
                continue
            suffix = name[len(stem) :]
            for t in candidate.get("type", []):
                if t["code"][:1].upper() + t["code"][1:] == suffix:
                    return candidate, t["code"]
        return None

    def resolve(self, root: dict[str, Json], loc: tuple[int | str, ...]) -> dict[str, Json] | None:
        """R4 element definition for a pydantic error location in ``root``, if it has one.

        A final ``_name`` (primitive extension) resolves to the primitive element ``name``,
        returned with the extra key ``"_primitiveExtension": True``.
        """
        type_name = str(root.get("resourceType", ""))
        parent = type_name
        data: Json = root
        for position, part in enumerate(loc):
            if isinstance(part, int):
                data = data[part] if isinstance(data, list) and part < len(data) else None
                continue
            last = position == len(loc) - 1
            underscore = part.startswith("_") and last
            found = self._child(type_name, parent, part[1:] if underscore else part)
            if found is None:
                return None
            element, code = found
            if last:
                if not underscore:
                    return element
                if code[:1].islower():  # primitive types have lower-case names
                    return {**element, "_primitiveExtension": True}
                return None
            data = data.get(part) if isinstance(data, dict) else None
            reference = element.get("contentReference")
            if reference:
                parent = reference.lstrip("#")
            elif code in ("BackboneElement", "Element"):
                parent = element["path"]
            elif code == "Resource" and isinstance(data, dict) and "resourceType" in data:
                type_name = parent = str(data["resourceType"])
            elif code in self.elements:
                type_name = parent = code
            else:
                return None
        return None


def classify_error(error: dict[str, Json], root: dict[str, Json], r4: R4Definitions) -> str:
    kind = str(error.get("type", ""))
    loc = tuple(error.get("loc", ()))
    if kind == "extra_forbidden":
        element = r4.resolve(root, loc)
        if element is None:
            return CAUSE_UNKNOWN_IN_R4
        if element.get("_primitiveExtension"):
            return CAUSE_PRIMITIVE_EXT
        return CAUSE_MODEL_CHANGE
    if kind.endswith("missing"):
        element = r4.resolve(root, loc)
        if element is not None and int(element.get("min", 0)) >= 1:
            return CAUSE_R4_INVALID
        return CAUSE_MODEL_CHANGE
    return CAUSE_VALUE


def short_error(error: dict[str, Json]) -> str:
    loc = ".".join(str(part) for part in error.get("loc", ())) or "<root>"
    text = f"{loc}: {error.get('msg', '')}"
    value = error.get("input")
    if isinstance(value, str):
        text += f" (input {value[:40]!a})"
    return text


def r4b_resource_types() -> list[str]:
    """Concrete resource types that have a model in ``fhir.resources.R4B``."""
    names = []
    for attribute in dir(r4b_fhirtypes):
        if not attribute.endswith("Type") or attribute == "Type":
            continue
        name = attribute[: -len("Type")]
        model = r4b_model(name)
        if model is not None and name not in ("Resource", "DomainResource"):
            names.append(name)
    return sorted(names)


def r4b_model(name: str) -> type[Any] | None:
    try:
        model = get_fhir_model_class(name)
    except ValueError:
        return None
    if isinstance(model, type) and issubclass(model, R4BResource) and model.__name__ == name:
        return model
    return None


def is_conformance_bundle(resource: dict[str, Json]) -> bool:
    if resource.get("resourceType") != "Bundle" or resource.get("type") != "collection":
        return False
    types = {e.get("resource", {}).get("resourceType") for e in resource.get("entry", [])}
    return bool(types) and types <= CONFORMANCE_TYPES


def validate_examples(
    files: list[Path], r4: R4Definitions
) -> tuple[dict[str, Json], dict[str, dict[str, Json]]]:
    """Validate every example with its R4B model; return the summary and per-file results."""
    per_type: dict[str, Counter[str]] = defaultdict(Counter)
    results: dict[str, dict[str, Json]] = {}
    failures: list[dict[str, Json]] = []
    skipped: list[dict[str, Json]] = []
    no_model: list[dict[str, Json]] = []
    for path in files:
        raw = path.read_bytes()
        resource = json.loads(raw)
        type_name = resource["resourceType"]
        if is_conformance_bundle(resource):
            entry_types = Counter(e["resource"]["resourceType"] for e in resource["entry"])
            skipped.append(
                {
                    "file": path.name,
                    "reason": "conformance bundle (definitions, not an example)",
                    "entries": dict(sorted(entry_types.items())),
                }
            )
            continue
        per_type[type_name]["files"] += 1
        model = r4b_model(type_name)
        if model is None:
            no_model.append({"file": path.name, "resourceType": type_name})
            continue
        per_type[type_name]["validated"] += 1
        try:
            model.model_validate_json(raw)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            causes = sorted({classify_error(error, resource, r4) for error in errors})
            failure = {
                "file": path.name,
                "resourceType": type_name,
                "errorCount": len(errors),
                "firstError": short_error(errors[0]),
                "causes": causes,
            }
            failures.append(failure)
            results[path.name] = failure
            per_type[type_name]["failed"] += 1
        else:
            results[path.name] = {"file": path.name, "resourceType": type_name}

    by_type = []
    for type_name in sorted(per_type):
        counts = per_type[type_name]
        if not counts["failed"]:
            continue
        type_failures = [f for f in failures if f["resourceType"] == type_name]
        cause_counts: Counter[str] = Counter(c for f in type_failures for c in f["causes"])
        by_type.append(
            {
                "resourceType": type_name,
                "failed": counts["failed"],
                "checked": counts["validated"],
                "causes": dict(sorted(cause_counts.items())),
                "exampleFile": type_failures[0]["file"],
                "exampleError": type_failures[0]["firstError"],
            }
        )
    checked = {
        t: {
            "files": per_type[t]["files"],
            "validated": per_type[t]["validated"],
            "failed": per_type[t]["failed"],
        }
        for t in sorted(per_type)
    }
    validated = sum(c["validated"] for c in per_type.values())
    failed = len(failures)
    summary: dict[str, Json] = {
        "totals": {
            "packageFiles": len(files),
            "skippedConformanceBundles": len(skipped),
            "examplesConsidered": len(files) - len(skipped),
            "examplesWithoutR4BModel": len(no_model),
            "examplesValidated": validated,
            "passed": validated - failed,
            "failed": failed,
        },
        "typesWithR4BFailures": by_type,
        "checkedByType": checked,
        "failures": failures,
        "examplesWithoutR4BModel": no_model,
        "skipped": skipped,
    }
    return summary, results


# --------------------------------------------------------------------------- (d) fixtures


def write_fixtures(
    files: list[Path], results: dict[str, dict[str, Json]], prune: bool
) -> dict[str, list[str]]:
    copied: dict[str, list[str]] = {t: [] for t in FIXTURE_TYPES}
    for path in files:
        type_name = json.loads(path.read_bytes())["resourceType"]
        if type_name in copied:
            target = FIXTURE_DIR / type_name / path.name
            write_if_changed(target, path.read_bytes())
            copied[type_name].append(path.name)
    for type_name, names in copied.items():
        for stale in sorted(
            set(p.name for p in (FIXTURE_DIR / type_name).glob("*.json")) - set(names)
        ):
            stale_path = FIXTURE_DIR / type_name / stale
            if prune:
                stale_path.unlink()
                print(f"removed stale fixture {stale_path.relative_to(REPO_ROOT)}")
            else:
                print(
                    f"warning: stale fixture {stale_path.relative_to(REPO_ROOT)} "
                    "(not in the package; re-run with --prune to remove)",
                    file=sys.stderr,
                )
    failing = sorted(
        f"{type_name}/{name}: {results[name]['firstError']}"
        for type_name, names in copied.items()
        for name in names
        if "firstError" in results.get(name, {})
    )
    lines = [
        "# Official FHIR R4 examples",
        "",
        "Generated by `scripts/extract_spec_data.py`; do not edit by hand.",
        "",
        f"Every example whose `resourceType` is {', '.join(FIXTURE_TYPES)},",
        f"from the npm package `{PACKAGE_SPEC}` (HL7 International, FHIR R4 4.0.1,",
        "<http://hl7.org/fhir/R4>), copied byte for byte into `<resourceType>/` with the",
        "package's file names. Licence: CC0-1.0 (public domain dedication), as declared in",
        "the package's `package.json` and on <http://hl7.org/fhir/R4/license.html>.",
        "",
        "Regenerate (from the repository root):",
        "",
        "```sh",
        f"npm pack {PACKAGE_SPEC} --pack-destination /tmp",
        f".venv/bin/python scripts/extract_spec_data.py /tmp/{PACKAGE_NAME}-{PACKAGE_VERSION}.tgz",
        "```",
        "",
        "(or run the script with no argument and it runs `npm pack` itself).",
        "",
        "| Type | Files |",
        "| --- | ---: |",
        *(f"| {t} | {len(copied[t])} |" for t in FIXTURE_TYPES),
        f"| total | {sum(len(v) for v in copied.values())} |",
        "",
        f"Validated against the R4B models of fhir.resources {fhir.resources.__version__}: ",
    ]
    if failing:
        lines[-1] += "these fail:"
        lines += ["", *(f"- {item}" for item in failing)]
    else:
        lines[-1] += "all pass."
    write_if_changed(FIXTURE_DIR / "SOURCE.md", ("\n".join(lines) + "\n").encode("utf-8"))
    return copied


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("package", nargs="?", help="tarball or unpacked folder (default: npm pack)")
    parser.add_argument("--prune", action="store_true", help="delete fixtures not in the package")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        package = obtain_package(args.package, Path(tmp))
        files = resource_files(package)
        definitions = load_bundle_resources(package, "Bundle-resources.json")
        data_types = load_bundle_resources(package, "Bundle-types.json")
        search_parameters = load_bundle_resources(package, "Bundle-searchParams.json")

        types = concrete_resource_types(definitions)
        write_json(
            DATA_DIR / "r4_resource_types.json",
            {
                "source": SOURCE,
                "sourceFile": "package/Bundle-resources.json",
                "selection": "StructureDefinition kind=resource, derivation=specialization, "
                "abstract=false",
                "count": len(types),
                "resourceTypes": types,
            },
        )
        print(f"R4 concrete resource types: {len(types)}")

        parameters = sorted(
            (
                reduce_search_parameter(sp)
                for sp in search_parameters
                if sp.get("resourceType") == "SearchParameter"
            ),
            key=lambda p: p["url"],
        )
        write_json(
            DATA_DIR / "search_parameters.json",
            {
                "source": SOURCE,
                "sourceFile": "package/Bundle-searchParams.json",
                "count": len(parameters),
                "parameters": parameters,
            },
        )
        print(
            f"search parameters: {len(parameters)} "
            f"({sum(p['expression'] is None for p in parameters)} without expression)"
        )

        compartment = next(
            d for d in definitions
            if d.get("resourceType") == "CompartmentDefinition" and d.get("code") == "Patient"
        )
        members = {
            r["code"]: r.get("param") or []
            for r in compartment["resource"]  # type: ignore[union-attr]
            if r.get("param")
        }
        write_json(
            DATA_DIR / "compartment_patient.json",
            {
                "source": SOURCE,
                "sourceFile": "package/Bundle-resources.json (CompartmentDefinition/patient)",
                "url": compartment["url"],
                "resources": dict(sorted(members.items())),
            },
        )
        print(f"Patient compartment: {len(members)} resource types")

        elements: dict[str, Json] = {}
        for sd in definitions:
            if sd.get("resourceType") != "StructureDefinition" or sd.get("name") not in types:
                continue
            mandatory, summary = [], []
            for el in sd["snapshot"]["element"]:  # type: ignore[index]
                path = el["path"].split(".")
                if len(path) != 2:
                    continue
                name = path[1].removesuffix("[x]")
                if int(el.get("min", 0)) >= 1:
                    mandatory.append(name)
                if el.get("isSummary"):
                    summary.append(name)
            elements[sd["name"]] = {"mandatory": mandatory, "summary": summary}
        write_json(
            DATA_DIR / "r4_elements.json",
            {
                "source": SOURCE,
                "sourceFile": "package/Bundle-resources.json (StructureDefinition snapshots: "
                "top-level elements with min >= 1, and isSummary; choice elements without [x])",
                "types": dict(sorted(elements.items())),
            },
        )
        print(f"element flags for {len(elements)} resource types")

        r4 = R4Definitions(definitions + data_types)
        r4b_types = r4b_resource_types()
        summary, results = validate_examples(files, r4)
        without_model = [t for t in types if r4b_model(t) is None]
        gaps: dict[str, Json] = {
            "source": SOURCE,
            "sourceFile": "package/*.json (every resource file; conformance bundles skipped, "
            "listed under skipped); R4 types from package/Bundle-resources.json",
            "validator": f"fhir.resources {fhir.resources.__version__} R4B models: "
            "get_fhir_model_class(resourceType).model_validate_json(<file bytes>)",
            "totals": summary["totals"],
            "r4TypesWithoutR4BModel": without_model,
            "r4bTypesNotInR4": sorted(set(r4b_types) - set(types)),
            "typesWithR4BFailures": summary["typesWithR4BFailures"],
            "checkedByType": summary["checkedByType"],
            "failures": summary["failures"],
            "examplesWithoutR4BModel": summary["examplesWithoutR4BModel"],
            "skipped": summary["skipped"],
        }
        write_json(DATA_DIR / "r4b_model_gaps.json", gaps)
        totals = summary["totals"]
        print(f"R4 types without R4B model ({len(without_model)}): {', '.join(without_model)}")
        print(
            f"examples: {totals['examplesConsidered']} considered, "
            f"{totals['examplesValidated']} validated, {totals['failed']} fail R4B, "
            f"{totals['examplesWithoutR4BModel']} have no R4B model, "
            f"{totals['skippedConformanceBundles']} conformance bundles skipped"
        )
        for item in summary["typesWithR4BFailures"]:
            print(
                f"  {item['resourceType']}: {item['failed']}/{item['checked']} fail "
                f"e.g. {item['exampleFile']}: {item['exampleError']}"
            )

        copied = write_fixtures(files, results, args.prune)
        print(
            f"fixtures in {FIXTURE_DIR.relative_to(REPO_ROOT)}: "
            + ", ".join(f"{t} {len(n)}" for t, n in copied.items())
        )
        fixture_failures = [
            n for names in copied.values() for n in names if "firstError" in results.get(n, {})
        ]
        print(f"fixtures failing R4B: {', '.join(fixture_failures) or 'none'}")
        for type_name, names in copied.items():
            for name in names:
                copy = FIXTURE_DIR / type_name / name
                if copy.read_bytes() != (package / name).read_bytes():
                    raise SystemExit(f"{copy} is not byte-identical to the package file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
