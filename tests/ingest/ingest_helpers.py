"""Helpers for the ingestion tests: map bytes with a shipped mapping, split the results."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from fhir_gateway.ingest import MappedRecord, Rejection, map_file
from fhir_gateway.ingest.spec import Mapping

ROOT = Path(__file__).resolve().parents[2]
FEEDS = ROOT / "tests" / "fixtures" / "feeds"
TODAY = dt.date(2026, 11, 22)


def run(partner: str | Mapping, data: bytes | str, filename: str = "test-file",
        **kwargs: Any) -> list[MappedRecord | Rejection]:
    if isinstance(data, str):
        data = data.encode("utf-8")
    kwargs.setdefault("today", TODAY)
    return list(map_file(partner, filename, data, **kwargs))


def mapped(results: list[Any]) -> list[MappedRecord]:
    return [r for r in results if isinstance(r, MappedRecord)]


def rejected(results: list[Any]) -> list[Rejection]:
    return [r for r in results if isinstance(r, Rejection)]


def only(results: list[Any]) -> MappedRecord:
    """The single record mapped, failing with the rejection reasons otherwise."""
    assert not rejected(results), [r.reason for r in rejected(results)]
    assert len(results) == 1, results
    return results[0]


def of_type(record: MappedRecord, rtype: str) -> list[dict[str, Any]]:
    return [r for r in record.resources if r["resourceType"] == rtype]


def by_code(record: MappedRecord, code: str) -> list[dict[str, Any]]:
    return [r for r in record.resources if r["resourceType"] == "Observation"
            and any(c.get("code") == code for c in r["code"].get("coding", []))]


def assert_valid_r4(resource: dict[str, Any]) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
