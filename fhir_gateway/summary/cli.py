"""`fhir-gateway conflicts refresh`: every person's stored CPR-conflict DetectedIssue worked
out again (`conflicts.refresh_all`). Writes keep the issues in step by themselves; this is
for what no write announces: a store loaded by a gateway older than the stored issues, and
decisions whose review date has passed since (run it daily)."""

from __future__ import annotations

import argparse
import json
import sys

from ..config import Settings


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    conflicts = sub.add_parser("conflicts",
                               help="the stored DetectedIssues of partners' CPR conflicts")
    csub = conflicts.add_subparsers(dest="conflicts_command", required=True)
    refresh = csub.add_parser("refresh", help="work every person's out again (after an "
                                              "upgrade, and daily for review dates)")
    refresh.add_argument("--json", action="store_true", help="print the counts as JSON")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from ..fhir.repository import Repository
    from ..pipeline.cli import audit_write
    from ..store import open_store
    from .conflicts import refresh_all

    engine = open_store(settings.store_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        repository = Repository(engine)
        done = refresh_all(repository)
        audit_write(repository, settings, done, command="fhir-gateway conflicts refresh",
                    destination="cli:conflicts", subtype="update",
                    description="stored CPR-conflict DetectedIssues worked out again by the "
                                "command line")
    finally:
        engine.close()
    counts = done.counts()
    print(json.dumps(counts) if args.json else ", ".join(f"{k} {v}" for k, v in counts.items()))
    if done.failed:
        print(f"fhir-gateway: {done.failed} person(s) failed; the log names them",
              file=sys.stderr)
        return 1
    return 0
