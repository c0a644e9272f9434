"""Snapshot generation (used at build time for UK Core's differential-only profiles)."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_gateway.validation.snapshot import SnapshotError, generate

CORE = "http://hl7.org/fhir/StructureDefinition/"


def el(eid: str, min_: int = 0, max_: str = "*", *types: str, **more: Any) -> dict[str, Any]:
    out = {"id": eid, "path": eid, "min": min_, "max": max_, **more}
    if types:
        out["type"] = [{"code": t} for t in types]
    return out


IDENTIFIER = {"url": CORE + "Identifier", "snapshot": {"element": [
    el("Identifier", 0, "*"), el("Identifier.system", 0, "1", "uri"),
    el("Identifier.value", 0, "1", "string")]}}
BASE = {"url": CORE + "Thing", "snapshot": {"element": [
    el("Thing", 0, "*"), el("Thing.identifier", 0, "*", "Identifier"),
    el("Thing.status", 0, "1", "code"), el("Thing.part", 0, "*", "BackboneElement"),
    el("Thing.part.name", 0, "1", "string"),
    {**el("Thing.part.part", 0, "*"), "contentReference": "#Thing.part"}]}}


def resolve(url: str) -> dict[str, Any] | None:
    return {IDENTIFIER["url"]: IDENTIFIER}.get(url)


def profile(*diff: dict[str, Any]) -> dict[str, Any]:
    return {"url": "http://example.org/P", "differential": {"element": list(diff)}}


def ids(sd: dict[str, Any]) -> list[str]:
    return [e["id"] for e in sd["snapshot"]["element"]]


def test_slice_with_unfolded_children() -> None:
    sd = generate(profile(
        {"id": "Thing.identifier", "path": "Thing.identifier",
         "slicing": {"discriminator": [{"type": "value", "path": "system"}], "rules": "open"}},
        {"id": "Thing.identifier:nhs", "path": "Thing.identifier", "sliceName": "nhs",
         "max": "1"},
        {"id": "Thing.identifier:nhs.system", "path": "Thing.identifier.system", "min": 1,
         "fixedUri": "https://fhir.nhs.uk/Id/nhs-number"},
        {"id": "Thing.status", "path": "Thing.status", "min": 1},
    ), BASE, resolve)
    assert ids(sd) == [
        "Thing", "Thing.identifier", "Thing.identifier:nhs", "Thing.identifier:nhs.system",
        "Thing.identifier:nhs.value", "Thing.status", "Thing.part", "Thing.part.name",
        "Thing.part.part"]
    by_id = {e["id"]: e for e in sd["snapshot"]["element"]}
    assert by_id["Thing.identifier:nhs"]["min"] == 0
    assert by_id["Thing.identifier:nhs"]["max"] == "1"
    assert by_id["Thing.identifier:nhs.system"]["fixedUri"] == "https://fhir.nhs.uk/Id/nhs-number"
    assert by_id["Thing.identifier:nhs.system"]["path"] == "Thing.identifier.system"
    assert by_id["Thing.status"]["min"] == 1
    assert "snapshot" not in BASE["snapshot"]["element"][0]  # the base is not changed
    assert BASE["snapshot"]["element"][2]["min"] == 0


def test_content_reference_is_unfolded() -> None:
    sd = generate(profile({"id": "Thing.part.part.name", "path": "Thing.part.part.name",
                           "min": 1}), BASE, resolve)
    assert "Thing.part.part.name" in ids(sd)


def test_constraints_are_added_to_the_base() -> None:
    base = {**BASE, "snapshot": {"element": [
        {**BASE["snapshot"]["element"][0], "constraint": [{"key": "b-1"}]},
        *BASE["snapshot"]["element"][1:]]}}
    sd = generate(profile({"id": "Thing", "path": "Thing", "constraint": [{"key": "p-1"}]}),
                  base, resolve)
    assert [c["key"] for c in sd["snapshot"]["element"][0]["constraint"]] == ["b-1", "p-1"]


def test_cardinality_cannot_be_widened() -> None:
    with pytest.raises(SnapshotError, match="max"):
        generate(profile({"id": "Thing.status", "path": "Thing.status", "max": "*"}),
                 BASE, resolve)


def test_unknown_element_is_an_error_not_dropped() -> None:
    with pytest.raises(SnapshotError, match=r"Thing\.colour"):
        generate(profile({"id": "Thing.colour", "path": "Thing.colour", "min": 1}),
                 BASE, resolve)
