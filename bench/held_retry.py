"""One small run (an MLLP message: one HL7 ADT) with N records held for review, as the
gateway runs it (a hold judged again only when its identity keys' tokens changed:
`pipeline.identity`) side by side with every hold judged again after every run (what the
gateway did until session 19, and still does for a repository built without the tokens:
`Repository(derivations=())`). Two stores get the same held records (council rows of
people no Patient matches, no NHS number); then, alternately, each ingests one ADT
message of a new person. Milliseconds per run, medians over the rounds.

    .venv/bin/python bench/held_retry.py --held 2000 --rounds 5
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from fhir_gateway.demo import numbered_nhs_number as nhs_number
from fhir_gateway.fhir.repository import Repository
from fhir_gateway.pipeline.service import IngestService
from fhir_gateway.store import open_store

COUNCIL_HEAD = ("Person ID,Title,First Name,Last Name,DOB,Postcode,NHS No (if known),Service,"
                "Service Start,Service End,Provider,Key Worker\n")


def council_rows(n: int) -> bytes:
    rng = random.Random(7)
    rows = [f"SCB{i:06d},Ms,Given{i},Family{rng.randrange(10**6)},"
            f"19{rng.randrange(20, 60)}-0{rng.randrange(1, 10)}-1{rng.randrange(10)},"
            f"B{rng.randrange(10, 99)} {rng.randrange(1, 10)}XX,,Home care,2025-07-08,,"
            "Oakleigh Care Home,Brenda Johnson" for i in range(n)]
    return (COUNCIL_HEAD + "\n".join(rows) + "\n").encode()


def adt(i: int) -> bytes:
    """An A01 of a new person (an NHS number no Patient holds yet)."""
    when = "202601020900"
    return ("\r".join([
        f"MSH|^~\\&|PAS|RXA|SCR|GATEWAY|{when}||ADT^A01^ADT_A01|B{i}|P|2.4",
        f"EVN|A01|{when}",
        f"PID|1||{nhs_number(i)}^^^NHS^NH~BM{i}^^^RXA^MR||BENCH^PERSON{i}||19400101|M|||"
        f"1 High St^^Dudley^^WV{i % 90 + 10} 1ZZ",
        f"PV1|1|I|WARD 7^BAY C^BED 1^RXA|||||||300|||||||||BV{i}" + "|" * 25 + when,
    ]) + "\r").encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--held", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = council_rows(args.held)
    with tempfile.TemporaryDirectory() as tmp:
        services = {}
        for name, derivations in (("tokens", None), ("every hold", ())):
            engine = open_store(f"sqlite:///{Path(tmp) / name.replace(' ', '-')}.sqlite3")
            service = IngestService(Repository(engine, derivations=derivations))
            loaded = service.ingest("socialcare", "services.csv", rows)
            services[name] = service
            print(f"{name}: {loaded.held} held of {loaded.read} rows")
        times: dict[str, list[float]] = {name: [] for name in services}
        for i in range(args.rounds):
            for name, service in services.items():
                start = time.perf_counter()
                run = service.ingest("acute", f"m{i}.hl7", adt(i))
                times[name].append((time.perf_counter() - start) * 1000)
                assert run.created > 0 and run.held == 0, run.counts()
        base = statistics.median(times["every hold"])
        for name, runs in times.items():
            median = statistics.median(runs)
            print(f"{name:>10}: one ADT run {median:8.1f} ms median "
                  f"({', '.join(f'{t:.0f}' for t in runs)}), {median / base:.2f}x")


if __name__ == "__main__":
    main()
