"""The official HL7 R4 examples round-trip unchanged apart from `meta`.

Fixtures: tests/fixtures/r4-examples (hl7.fhir.r4.examples@4.0.1, CC0; see SOURCE.md).
Each example goes through create, read, update and history; every stored version must
equal the example byte-for-byte in canonical form (sorted keys, decimals as written),
once `meta.versionId`/`meta.lastUpdated` are set aside.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import simplejson
from fastapi.testclient import TestClient

from fhir_gateway import jsonio
from gatewaykit import FHIR_JSON

EXAMPLES = Path(__file__).parent / "fixtures" / "r4-examples"
TYPES = ["Patient", "Encounter", "CarePlan", "Consent", "Observation", "Provenance"]
FILES = sorted(p for t in TYPES for p in (EXAMPLES / t).glob("*.json"))


def canonical(resource: dict, *, drop_id: bool = False) -> str:
    body = copy.deepcopy(resource)
    meta = body.get("meta") or {}
    for key in ("versionId", "lastUpdated", "tag"):
        meta.pop(key, None)
    if not meta:
        body.pop("meta", None)
    if drop_id:
        body.pop("id", None)
    return simplejson.dumps(body, use_decimal=True, sort_keys=True)


def test_fixtures_cover_every_type() -> None:
    counts = {t: len(list((EXAMPLES / t).glob("*.json"))) for t in TYPES}
    assert all(n > 0 for n in counts.values()), counts
    assert sum(counts.values()) == len(FILES) >= 100


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_round_trips(client: TestClient, path: Path) -> None:
    raw = path.read_bytes()
    example = jsonio.parse(raw)
    rtype = example["resourceType"]

    created = client.post(f"/fhir/{rtype}", content=raw, headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    body = jsonio.parse(created.content)  # not .json(): floats would hide lost precision
    rid = body["id"]
    assert canonical(body, drop_id=True) == canonical(example, drop_id=True)

    read = jsonio.parse(client.get(f"/fhir/{rtype}/{rid}").content)
    assert canonical(read, drop_id=True) == canonical(example, drop_id=True)

    # Update with the example's own content (a tag makes it a real change, not a no-op).
    changed = {**example, "id": rid,
               "meta": {**example.get("meta", {}), "tag": [{"code": "round-trip"}]}}
    updated = client.put(f"/fhir/{rtype}/{rid}", content=jsonio.dump_bytes(changed),
                         headers=FHIR_JSON)
    assert updated.status_code == 200, updated.text
    assert updated.headers["etag"] == 'W/"2"'

    history = jsonio.parse(client.get(f"/fhir/{rtype}/{rid}/_history").content)["entry"]
    assert [e["resource"]["meta"]["versionId"] for e in history] == ["2", "1"]
    for entry in history:
        assert canonical(entry["resource"], drop_id=True) == canonical(example, drop_id=True)
