"""End-to-end ingestion throughput: a synthetic partnership's five feeds into SQLite.

Parse, map, validate (profiles), identity, index, provenance, commit: resources stored
per second (created + updated), records per second, CPU per resource (this process, and
the mapping process apart), and the process's peak RSS. With
`--compare-validation` the same load runs with profile validation off too (a fresh store
each time, interleaved rounds), and the on/off ratio is printed: the profiles issue asks
that validation not halve ingestion. `--compare-derivations` does the same with the
repository's derivations (the stored CPR-conflict DetectedIssue) on and off.

    .venv/bin/python bench/ingest.py --people 2000 --rounds 3 --compare-validation
    .venv/bin/python bench/ingest.py --people 2000 --rounds 3 --compare-derivations
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fhir_gateway.demo import write_partnership
from fhir_gateway.fhir.repository import Repository
from fhir_gateway.ingest import background as background_mapping
from fhir_gateway.ingest.background import map_paths
from fhir_gateway.pipeline.cli import BULK_CACHE_MIB
from fhir_gateway.pipeline.loader import BATCH_RECORDS, BATCH_SECONDS, Loader
from fhir_gateway.store import open_store


class NoProfiles:
    """Validation off: every resource passes, none is given a profile."""

    def profiles_for(self, resource_type: str) -> list[str]:
        return []

    def validate(self, resource: dict[str, Any], *, profile: str | None = None) -> list[Any]:
        return []


def load(feeds: dict[str, list[Path]], *, validate: bool, synchronous: str,
         background: bool | None, cache_mib: int,
         batch: tuple[int, float], derive: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="fhir-ingest-bench-") as tmp:
        engine = open_store(f"sqlite:///{tmp}/bench.sqlite3", sqlite_synchronous=synchronous,
                            sqlite_cache_mib=cache_mib or None)
        repo = Repository(engine, profiles=None if validate else NoProfiles().validate,
                          derivations=None if derive else ())
        loader = Loader(repo, profiles=None if validate else NoProfiles(),  # type: ignore[arg-type]
                        batch_records=batch[0], batch_seconds=batch[1])
        totals = {"read": 0, "created": 0, "updated": 0, "unchanged": 0, "rejected": 0,
                  "held": 0}
        started = time.perf_counter()
        cpu = time.process_time()
        children = _children_cpu()
        for partner, paths in feeds.items():
            # One run per partner, as `fhir-gateway ingest --partner P FILE...` does
            # (mapping in a second process for large inputs, unless --map-in-process).
            begun = time.perf_counter()
            summary = loader.ingest(map_paths(partner, paths, background=background))
            for key, value in summary.counts().items():
                totals[key] += value
            took = time.perf_counter() - begun
            print(f"  {partner}: {summary.read:,} records, "
                  f"{summary.created + summary.updated:,} resources stored in {took:.0f} s "
                  f"({(summary.created + summary.updated) / took:,.0f}/s), "
                  f"{summary.held} held, {summary.rejected} rejected", file=sys.stderr)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        children = _children_cpu() - children
        size = sum(f.stat().st_size for f in Path(tmp).iterdir())
        engine.close()
    stored = totals["created"] + totals["updated"]
    return {**totals, "seconds": elapsed, "resources_per_s": stored / elapsed, "bytes": size,
            "records_per_s": totals["read"] / elapsed,
            "cpu_us": cpu / stored * 1e6, "child_cpu_us": children / stored * 1e6}


def _children_cpu() -> float:
    """CPU seconds of this process's ended children (the mapping processes): on a shared
    machine CPU per resource is steadier than wall time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    parser.add_argument("--compare-validation", action="store_true")
    parser.add_argument("--compare-derivations", action="store_true",
                        help="also load with the repository's derivations off")
    parser.add_argument("--map-in-process", action="store_true",
                        help="map in this process too (default: as the CLI, a second "
                             "process maps large inputs while this one stores)")
    parser.add_argument("--cache-mib", type=int, default=BULK_CACHE_MIB,
                        help="SQLite page cache of the writer, as `fhir-gateway ingest` sets "
                             f"it ({BULK_CACHE_MIB}); 0: SQLite's default (2 MiB)")
    parser.add_argument("--batch-records", type=int, default=BATCH_RECORDS,
                        help=f"records per store transaction at most ({BATCH_RECORDS})")
    parser.add_argument("--batch-seconds", type=float, default=BATCH_SECONDS,
                        help=f"longest a store transaction stays open ({BATCH_SECONDS})")
    args = parser.parse_args()
    background = False if args.map_in_process else None
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="fhir-demo-") as tmp:
        started = time.perf_counter()
        feeds = write_partnership(Path(tmp), people=args.people)
        generated = time.perf_counter() - started
        size = sum(p.stat().st_size for paths in feeds.values() for p in paths)
        print(f"feeds: {sum(len(v) for v in feeds.values()):,} files, {size / 2**20:,.0f} MiB, "
              f"written in {generated:.0f} s", file=sys.stderr)
        # (label, validation, derivations)
        modes = [("on", True, True)]
        if args.compare_validation:
            modes.append(("validation off", False, True))
        if args.compare_derivations:
            modes.append(("derivations off", True, False))
        results: dict[str, list[dict[str, Any]]] = {m[0]: [] for m in modes}
        for r in range(args.rounds):
            for label, validate, derive in (modes if r % 2 == 0 else list(reversed(modes))):
                results[label].append(load(feeds, validate=validate, derive=derive,
                                           synchronous=args.synchronous,
                                           background=background, cache_mib=args.cache_mib,
                                           batch=(args.batch_records, args.batch_seconds)))
                last = results[label][-1]
                print(f"round {r + 1} {label}: "
                      f"{last['resources_per_s']:,.0f} resources/s "
                      f"({last['created'] + last['updated']:,} in {last['seconds']:.1f} s), "
                      f"CPU {last['cpu_us']:,.0f} us/resource (+ mapping process "
                      f"{last['child_cpu_us']:,.0f})", file=sys.stderr)
    load_after = os.getloadavg()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = background_mapping.child_peak_rss_kib / 1024
    print(f"\ningestion: {args.people:,} people, five feeds, SQLite synchronous="
          f"{args.synchronous}, cache {args.cache_mib or 2} MiB, batches of {args.batch_records} "
          f"records / {args.batch_seconds} s, {args.rounds} rounds (medians), "
          "mapping "
          f"{'in process' if args.map_in_process else 'in a second process when large'}")
    print(f"machine: nproc {os.cpu_count()}, Python {platform.python_version()}, load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"{'mode':<16}{'records/s':>12}{'resources/s':>14}{'stored':>10}"
          f"{'rejected':>10}{'held':>6}{'seconds':>9}{'cpu us/res':>12}{'+mapping':>10}")
    medians = {}
    for mode, runs in results.items():
        med = statistics.median(r["resources_per_s"] for r in runs)
        medians[mode] = med
        print(f"{mode:<16}"
              f"{statistics.median(r['records_per_s'] for r in runs):>12,.0f}{med:>14,.0f}"
              f"{runs[0]['created'] + runs[0]['updated']:>10,}{runs[0]['rejected']:>10}"
              f"{runs[0]['held']:>6}{statistics.median(r['seconds'] for r in runs):>9.0f}"
              f"{statistics.median(r['cpu_us'] for r in runs):>12,.0f}"
              f"{statistics.median(r['child_cpu_us'] for r in runs):>10,.0f}")
    if "validation off" in medians:
        print(f"ratio validation on/off: {medians['on'] / medians['validation off']:.2f} "
              "(goal: >= 0.5)")
    if "derivations off" in medians:
        print(f"ratio derivations on/off: {medians['on'] / medians['derivations off']:.2f}")
    print(f"store: {results['on'][0]['bytes'] / 2**30:,.2f} GiB on disk at the end "
          "(database, WAL)")
    print(f"peak RSS: this process {rss_mb:,.0f} MB (feed generation included), "
          f"mapping process {child_mb:,.0f} MB"
          f"{'' if child_mb else ' (not used)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
