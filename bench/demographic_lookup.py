"""The identity lookup of a record without an NHS number (name, birth date, postcode) on a
store of N Patients in one postcode district, in-process: the lookup as the gateway runs
it (`identity._postcode_spellings`: the postcode spaced and compact) side by side with the
shape it had until session 16 (the district's outward code as a prefix, which read every
Patient of the district). Microseconds per lookup, medians of rounds over 200 lookups.

    .venv/bin/python bench/demographic_lookup.py --patients 5000 --rounds 3
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time

from fhir_gateway.fhir.repository import Repository
from fhir_gateway.ingest.model import PersonKey
from fhir_gateway.pipeline import identity
from fhir_gateway.pipeline.identity import canonical_postcode
from fhir_gateway.search.values import date_range, normalize
from fhir_gateway.store import open_store
from fhir_gateway.store.query import Criterion, IndexQuery, RangePredicate, StringPredicate

LETTERS = "ABDEFGHJLNPQRSTUWXYZ"


def query(person: PersonKey, postcodes: list[str]) -> IndexQuery:
    lo, hi = date_range(person.birth_date or "")
    return IndexQuery(rtype="Patient", criteria=[
        Criterion("address-postalcode", "string",
                  [StringPredicate("prefix", p) for p in postcodes]),
        Criterion("birthdate", "date", [RangePredicate("eq", lo, hi)]),
        Criterion("family", "string", [StringPredicate("prefix", normalize(person.family or ""))]),
    ], limit=50)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_store(f"sqlite:///{tmp}/lookup.sqlite3")
        repo = Repository(engine, profiles=lambda r, profile=None: [])
        people = []
        with repo.transaction() as s:
            for _ in range(args.patients):
                postcode = f"DY1 {rng.randrange(1, 10)}{rng.choice(LETTERS)}{rng.choice(LETTERS)}"
                family = rng.choice(["Smith", "Jones", "Taylor", "Brown", "Patel"])
                given = rng.choice(["Ann", "John", "Mary"])
                born = f"19{rng.randrange(25, 70)}-0{rng.randrange(1, 10)}-1{rng.randrange(10)}"
                repo.create({"resourceType": "Patient", "name": [{"family": family,
                             "given": [given]}], "birthDate": born,
                             "address": [{"postalCode": postcode}]}, session=s)
                people.append(PersonKey(nhs_number=None, local_system="x", local_id=None,
                                        family=family, given=given, birth_date=born,
                                        postcode=postcode, gender=None))
        shapes = {
            "gateway (postcode, two spellings)":
                lambda p: identity._postcode_spellings(p.postcode or ""),
            "before session 16 (outward code)":
                lambda p: [normalize(canonical_postcode(p.postcode or "")[:-3])],
        }
        sample = rng.sample(people, 200)
        times: dict[str, list[float]] = {name: [] for name in shapes}
        with engine.session(write=False) as s:
            for _ in range(args.rounds):
                for name, postcodes in shapes.items():
                    started = time.perf_counter()
                    for person in sample:
                        repo.find(query(person, postcodes(person)), session=s)
                    times[name].append((time.perf_counter() - started) / len(sample) * 1e6)
        engine.close()
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values):,.0f} us per lookup "
              f"({', '.join(f'{v:,.0f}' for v in values)}), {args.patients:,} Patients "
              "in one district")


if __name__ == "__main__":
    main()
