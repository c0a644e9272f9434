"""Messages delivered out of order end as in order, whatever offsets their senders wrote.

The pipeline keeps, per element, the source stamp of the message that set it; an older
message does not overwrite a newer one's elements. Stamps compared event times as written,
so an admission at 10:00+01:00 (09:00 UTC) counted as newer than a discharge at
09:30+00:00, and re-opened the finished stay."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from fhir_gateway import jsonio
from fhir_gateway.fhir.repository import Repository
from fhir_gateway.pipeline.merge import stamp
from fhir_gateway.pipeline.service import IngestService
from fhir_gateway.store.base import StoreEngine
from fhir_gateway.store.query import IndexQuery


def message(control: str, event: str, when: str, discharged: str = "") -> bytes:
    disposition = "01" if discharged else ""
    return "\r".join([
        f"MSH|^~\\&|PAS|RXA|SCR|GATEWAY|{when}||ADT^{event}^ADT_{event}|{control}|P|2.4",
        f"EVN|{event}|{when}",
        "PID|1||9434765919^^^NHS^NH~RXA1^^^RXA^MR||SMITH^ANN||19411103|F",
        "PV1|1|I|WARD 7^BAY C^BED 1^RXA||||C1^THOMPSON^A^^^DR|||300|||||||||V1"
        + "|" * 17 + disposition + "||||||||20260701090000+0000|" + discharged,
    ]).encode() + b"\r"


def the_stay(engine: StoreEngine, *messages: bytes) -> dict[str, Any]:
    service = IngestService(Repository(engine))
    for i, data in enumerate(messages):
        summary = service.ingest("acute", f"m{i}.hl7", data, today=dt.date(2026, 11, 22))
        assert summary.rejected == 0, summary.rejections
    (row,) = Repository(engine).find(IndexQuery(rtype="Encounter")).rows
    return jsonio.loads_trusted(row.body or "{}")


@pytest.mark.parametrize("admitted", ["20260701100000+0100", "20260701090000+0000"])
def test_a_late_admission_does_not_reopen_a_discharge(engine: StoreEngine,
                                                      admitted: str) -> None:
    # discharged 09:30 UTC (written +0000); admitted 09:00 UTC, written either way
    stay = the_stay(engine,
                    message("M2", "A03", "20260701093000+0000", "20260701093000+0000"),
                    message("M1", "A01", admitted))
    assert stay["status"] == "finished"
    assert stay["period"]["end"] == "2026-07-01T09:30:00+00:00"


def test_stamps_compare_instants_not_text() -> None:
    assert stamp("2026-07-01T10:00:00+01:00", "acute", "M1") < \
        stamp("2026-07-01T09:30:00+00:00", "acute", "M2")
    assert stamp(None, "acute", "M1") < stamp("2026-07-01", "acute", "M0")
