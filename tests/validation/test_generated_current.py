"""The committed profile JSON is current, complete, and does not contradict UK Core.

`make profiles` (fhir_gateway/validation/build_profiles.py) needs node, npm and the npm
registry (SUSHI and the FHIR R4 package), so this test does not re-run it. Instead the
build records in profiles/generated/manifest.json a sha256 of every input (the FSH, SUSHI's
config and lock file, the build and snapshot code, each UK Core file) and of every output;
here, offline, the inputs are hashed again and must match (else: run `make profiles`), and
the outputs must be exactly the files the build wrote (no hand edits).
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any

import pytest

from fhir_gateway.validation import CANONICAL
from fhir_gateway.validation.build_profiles import input_hashes
from validation_kit import REPO, UKCORE

OUT = REPO / "profiles" / "generated"

MANIFEST = json.loads((OUT / "manifest.json").read_text())
DEFINITIONS = [json.loads(p.read_text()) for p in sorted(OUT.glob("StructureDefinition-*.json"))]
PROFILES = {sd["id"]: sd for sd in DEFINITIONS if sd["kind"] == "resource"}
EXTENSIONS = {sd["id"]: sd for sd in DEFINITIONS if sd["type"] == "Extension"}


def test_inputs_unchanged_since_generation() -> None:
    current = input_hashes(UKCORE, REPO)
    changed = sorted(k for k in set(current) | set(MANIFEST["inputs"])
                     if current.get(k) != MANIFEST["inputs"].get(k))
    assert changed == [], f"inputs changed since `make profiles`; run it again: {changed}"


def test_outputs_are_what_the_build_wrote() -> None:
    on_disk = {p.relative_to(OUT).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in OUT.rglob("*.json") if p.name != "manifest.json"}
    assert on_disk == MANIFEST["outputs"]


def test_the_make_target_exists() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "\nprofiles:" in makefile
    assert "fhir_gateway.validation.build_profiles" in makefile


def test_installed_package_carries_the_definitions() -> None:
    generated = resources.files("fhir_gateway.profiles").joinpath("generated")
    assert generated.joinpath("manifest.json").is_file()
    assert generated.joinpath("StructureDefinition-SCR-Patient.json").is_file()
    assert generated.joinpath("r4").joinpath("ValueSet-observation-status.json").is_file()


def _ukcore(name: str) -> dict[str, Any] | None:
    path = UKCORE / "structuredefinitions" / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


@pytest.mark.parametrize("sd_id", sorted(PROFILES))
def test_profile_shape(sd_id: str) -> None:
    sd = PROFILES[sd_id]
    assert sd["url"] == f"{CANONICAL}/StructureDefinition/{sd_id}"
    assert sd["derivation"] == "constraint" and sd["kind"] == "resource"
    assert sd["snapshot"]["element"] and sd["differential"]["element"]
    assert sd["description"]
    uk = _ukcore(f"UKCore-{sd['type']}")
    if uk is not None:
        assert sd["baseDefinition"] == uk["url"]
    else:  # DetectedIssue: UK Core has no profile
        assert sd["baseDefinition"] == f"http://hl7.org/fhir/StructureDefinition/{sd['type']}"
    ids = [e["id"] for e in sd["snapshot"]["element"]]
    assert len(ids) == len(set(ids)), "duplicate element ids in the snapshot"


def test_every_definition_is_a_profile_or_an_extension() -> None:
    assert sorted(sd["id"] for sd in DEFINITIONS) == sorted([*PROFILES, *EXTENSIONS])
    assert "review-date" in EXTENSIONS


@pytest.mark.parametrize("sd_id", sorted(EXTENSIONS))
def test_extension_shape(sd_id: str) -> None:
    sd = EXTENSIONS[sd_id]
    assert sd["url"] == f"{CANONICAL}/StructureDefinition/{sd_id}"
    assert (sd["derivation"], sd["kind"]) == ("constraint", "complex-type")
    assert sd["baseDefinition"] == "http://hl7.org/fhir/StructureDefinition/Extension"
    assert sd["context"] and sd["description"]
    value = next(e for e in sd["snapshot"]["element"] if e["id"] == "Extension.value[x]")
    assert value["min"] == 1 and value["type"]


def _max(value: str) -> float:
    return float("inf") if value == "*" else int(value)


@pytest.mark.parametrize("sd_id", sorted(PROFILES))
def test_does_not_contradict_ukcore(sd_id: str) -> None:
    """Every constraint in UK Core's differential holds in our snapshot, at least as tight."""
    sd = PROFILES[sd_id]
    uk = _ukcore(f"UKCore-{sd['type']}")
    if uk is None:
        return
    ours = {e["id"]: e for e in sd["snapshot"]["element"]}
    for u in uk["differential"]["element"]:
        e = ours.get(u["id"])
        assert e is not None, u["id"]
        if "min" in u:
            assert e["min"] >= u["min"], u["id"]
        if "max" in u:
            assert _max(e["max"]) <= _max(u["max"]), u["id"]
        for key, value in u.items():
            if key.startswith(("fixed", "pattern")):
                assert e.get(key) == value, u["id"]
        if u.get("binding", {}).get("strength") == "required":
            assert e["binding"]["strength"] == "required", u["id"]
        for t in u.get("type", []):
            assert t["code"] in [x["code"] for x in e["type"]], u["id"]


def test_project_code_systems_say_why_they_exist() -> None:
    for path in OUT.glob("CodeSystem-*.json"):
        cs = json.loads(path.read_text())
        assert cs["url"].startswith(CANONICAL)
        assert "project code system" in cs["description"].lower(), path.name
        assert cs["content"] == "complete"


def test_no_ukcore_code_system_holds_death_location_types() -> None:
    """Why SCR-DeathLocationType exists: no UK Core CodeSystem has the codes 10..50."""
    wanted = {"10", "21", "22", "30", "40", "50"}
    for path in (UKCORE / "codesystems").glob("*.json"):
        codes = {c["code"] for c in json.loads(path.read_text()).get("concept", [])}
        assert not wanted <= codes, path.name


def test_unchecked_bindings_are_recorded() -> None:
    assert set(MANIFEST["unchecked_required_bindings"]) == {
        "http://hl7.org/fhir/ValueSet/all-languages",
        "http://hl7.org/fhir/ValueSet/observation-triggeredbytype",
    }
