#!/usr/bin/env python3
"""What profile validation costs: µs per resource, and throughput with it on and off.

What it measures
    1. ``ProfileValidator.validate`` on a typical Patient (NHS number with verification
       status, two partner identifiers, name, telecom, address), Encounter (an inpatient
       stay from ADT) and Observation (a CPR decision), each naming its gateway profile:
       the median over `--rounds` of the mean time of `--number` calls, in µs. Beside it,
       for scale, the R4B model check every write already pays
       (``fhir_gateway.fhir.validation.check_resource``).
    2. Throughput of the write path that exists today (R4B check, then
       ``Repository.create`` on a fresh SQLite file, ``synchronous`` as given) with profile
       validation off and on, alternating, and the ratio on/off. The issue's bar: validation
       must not halve ingestion throughput (ratio above 0.5).

    For the lead: :func:`ingestion_throughput` times any ingestion callable with validation
    on and off the same way, once partner ingestion exists, e.g.
    ``ingestion_throughput(lambda validate: run_feed(path, validate=validate))``.

Usage
    .venv/bin/python bench/validation.py [--number 2000] [--rounds 5] [--writes 500]
        [--synchronous FULL|NORMAL] [--json bench/out/validation.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fhir_gateway.fhir.repository import Repository
from fhir_gateway.fhir.validation import check_resource
from fhir_gateway.store import open_store
from fhir_gateway.validation import default_validator

SCR = "https://fhir.shared-care-record.example/StructureDefinition/"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"


def typical_patient(n: int = 0) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "meta": {"profile": [SCR + "SCR-Patient"]},
        "identifier": [
            {"extension": [{
                "url": "https://fhir.hl7.org.uk/StructureDefinition/"
                       "Extension-UKCore-NHSNumberVerificationStatus",
                "valueCodeableConcept": {"coding": [{
                    "system": "https://fhir.hl7.org.uk/CodeSystem/"
                              "UKCore-NHSNumberVerificationStatusEngland",
                    "code": "01", "display": "Number present and verified"}]}}],
             "system": NHS, "value": "9434765919"},
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                  "code": "MR"}]},
             "system": "https://fhir.shared-care-record.example/Id/acute-mrn",
             "value": f"RX1-{n:06d}"},
            {"system": "https://fhir.shared-care-record.example/Id/gp-patient",
             "value": f"GP-{n:06d}"},
        ],
        "name": [{"use": "official", "family": "Evans", "given": ["Margaret", "Anne"],
                  "prefix": ["Mrs"]}],
        "telecom": [{"system": "phone", "value": "01632 960 123", "use": "home"},
                    {"system": "phone", "value": "07700 900 456", "use": "mobile"}],
        "gender": "female",
        "birthDate": "1941-03-09",
        "address": [{"use": "home", "line": ["12 Station Road"], "city": "Exampleton",
                     "postalCode": "ZZ99 3VZ"}],
        "generalPractitioner": [{"identifier": {"system": ODS, "value": "Y00001"}}],
    }


def typical_encounter(n: int = 0) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "meta": {"profile": [SCR + "SCR-Encounter"]},
        "identifier": [{"system": "https://fhir.shared-care-record.example/Id/"
                                  "acute-visit-number", "value": f"V{n:08d}"}],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                  "code": "IMP", "display": "inpatient encounter"},
        "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "183452005",
                              "display": "Emergency hospital admission"}]}],
        "subject": {"reference": "Patient/scr-patient-example"},
        "period": {"start": "2026-01-14T03:12:00+00:00", "end": "2026-01-20T11:00:00+00:00"},
        "location": [{"location": {"display": "Ward 7"}, "status": "completed"}],
        "serviceProvider": {"identifier": {"system": ODS, "value": "RX1"}},
    }


def typical_observation(n: int = 0) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "meta": {"profile": [SCR + "SCR-CPRDecision"]},
        "status": "final",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "304251008",
                             "display": "Resuscitation status"}]},
        "subject": {"reference": "Patient/scr-patient-example"},
        "effectiveDateTime": "2026-01-10T14:30:00+00:00",
        "performer": [{"display": "Dr A Example"}],
        "valueCodeableConcept": {"coding": [{
            "system": "http://snomed.info/sct", "code": "450476008",
            "display": "Not for attempted cardiopulmonary resuscitation"}]},
    }


TYPICAL = {"Patient": typical_patient, "Encounter": typical_encounter,
           "Observation": typical_observation}


def per_call_us(fn: Callable[[], Any], *, number: int, rounds: int) -> float:
    """Median over rounds of the mean µs per call."""
    fn()  # warm-up (first use compiles the plans)
    means = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        means.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(means)


def ingestion_throughput(ingest: Callable[[bool], int], *, rounds: int = 3) -> dict[str, Any]:
    """Resources per second of ``ingest(validate)`` with validation off and on.

    `ingest` runs one ingestion (from a fresh store, each call) and returns how many
    resources it wrote. Off and on alternate, `rounds` times each; the result has the
    median resources/s for each and ``ratio`` = median of the per-round on/off ratios.
    """
    off, on, ratios = [], [], []
    for r in range(rounds):
        pair = {}
        for validate in ((False, True) if r % 2 == 0 else (True, False)):
            start = time.perf_counter()
            count = ingest(validate)
            pair[validate] = count / (time.perf_counter() - start)
        off.append(pair[False])
        on.append(pair[True])
        ratios.append(pair[True] / pair[False])
    return {"off_per_s": statistics.median(off), "on_per_s": statistics.median(on),
            "ratio": statistics.median(ratios), "rounds": rounds}


def write_path(writes: int, synchronous: str) -> Callable[[bool], int]:
    """The write path as it exists now: R4B check, profile check, Repository.create."""
    validator = default_validator()
    makers = list(TYPICAL.values())

    def ingest(validate: bool) -> int:
        with tempfile.TemporaryDirectory() as tmp:
            engine = open_store(f"sqlite:///{Path(tmp) / 'bench.sqlite3'}",
                                sqlite_synchronous=synchronous)
            repo = Repository(engine)
            try:
                for n in range(writes):
                    resource = makers[n % len(makers)](n)
                    check_resource(resource)
                    if validate:
                        errors = [i for i in validator.validate(resource)
                                  if i.severity == "error"]
                        if errors:
                            raise SystemExit(f"typical resource rejected: {errors}")
                    repo.create(resource)
            finally:
                engine.close()
        return writes

    return ingest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--writes", type=int, default=500)
    parser.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    validator = default_validator()
    start = time.perf_counter()
    type(validator)()  # what building one costs (the default one is built once, above)
    build_ms = (time.perf_counter() - start) * 1e3
    rows = {}
    for rtype, make in TYPICAL.items():
        resource = make()
        issues = [i for i in validator.validate(resource) if i.severity == "error"]
        if issues:
            raise SystemExit(f"typical {rtype} rejected: {issues}")
        rows[rtype] = {
            "profile_us": per_call_us(lambda r=resource: validator.validate(r),
                                      number=args.number, rounds=args.rounds),
            "r4b_model_us": per_call_us(lambda r=resource: check_resource(r),
                                        number=max(args.number // 4, 1), rounds=args.rounds),
        }
    print(f"ProfileValidator() build: {build_ms:.0f} ms (once per process)")
    print(f"{'resource':<12} {'profile validation':>20} {'R4B model check':>18}")
    for rtype, row in rows.items():
        print(f"{rtype:<12} {row['profile_us']:>17.1f} µs {row['r4b_model_us']:>15.1f} µs")

    through = ingestion_throughput(write_path(args.writes, args.synchronous),
                                   rounds=args.rounds)
    print(f"\nwrite path (R4B check + Repository.create, SQLite synchronous="
          f"{args.synchronous}, {args.writes} resources, Patient/Encounter/Observation):")
    print(f"  validation off: {through['off_per_s']:.0f} resources/s")
    print(f"  validation on:  {through['on_per_s']:.0f} resources/s")
    verdict = "ok" if through["ratio"] > 0.5 else "FAILS the bar"
    print(f"  on/off ratio:   {through['ratio']:.3f} (must stay above 0.5: {verdict})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"per_resource": rows, "write_path": through,
                                         "build_ms": build_ms, "args": vars(args)},
                                        default=str, indent=2))
    return 0 if through["ratio"] > 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
