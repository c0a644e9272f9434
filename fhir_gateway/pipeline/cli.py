"""`fhir-gateway ingest`, `demo`, `review` and `mllp`: partner data from the command line.

INTERFACE.md: `ingest --partner NAME PATH... [--json]` prints a summary (records read,
resources created, updated, unchanged, rejected, held for review); `--json` prints it as
one JSON object and exits 0 even when some records were rejected (1 only when nothing
could be read: a file could not be opened, or held nothing at all; an extract with no
records, a CSV header alone, exits 0). A progress bar (rich) is drawn only on a terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..cliargs import port_number, positive
from ..config import Settings


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    ingest = sub.add_parser("ingest", help="load partner files into the shared record")
    ingest.add_argument("--partner", required=True, help="acute, gp, hospice, ...")
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ingest.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo = sub.add_parser("demo", help="write (and load) a synthetic partnership")
    demo.add_argument("--people", type=positive, default=500)
    demo.add_argument("--out", type=Path, default=None,
                      help="write the feeds here and do not load them")
    demo.add_argument("--seed", type=int, default=20261122)
    review = sub.add_parser("review", help="records held for identity review")
    rsub = review.add_subparsers(dest="review_command", required=True)
    rsub.add_parser("list", help="list held and rejected records")
    resolve = rsub.add_parser("resolve", help="settle a held record")
    resolve.add_argument("key")
    who = resolve.add_mutually_exclusive_group(required=True)
    who.add_argument("--patient", help="attach it to this Patient id")
    who.add_argument("--create", action="store_true", help="make a new Patient for it")
    resolve.add_argument("--replace-nhs-number", action="store_true",
                         help="with --patient: the record corrects the person's NHS number; "
                              "the one on the Patient is replaced by the record's")
    resolve.add_argument("--despite-differences", action="store_true",
                         help="with --patient: attach it although the Patient is not one "
                              "of the hold's candidates and its birth date, family name or sex "
                              "contradicts the record's")
    resolve.add_argument("--despite-newer", action="store_true",
                         help="settle it although a newer record of the same id was applied "
                              "after it was held (it will bring back what that one changed)")
    discard = rsub.add_parser("discard", help="take a held record off the queue unapplied "
                                              "(kept, with who, when and why)")
    discard.add_argument("key")
    discard.add_argument("--reason", required=True,
                         help="why (kept with the record, not in the audit trail)")
    mllp = sub.add_parser("mllp", help="an MLLP listener for an HL7 v2 feed")
    mllp.add_argument("--host", default="127.0.0.1")
    mllp.add_argument("--port", type=port_number, required=True)
    mllp.add_argument("--partner", default="acute")


#: The SQLite page cache of a bulk load's one writer (`ingest`, `demo`): see SqliteEngine.
BULK_CACHE_MIB = 256


def _service(settings: Settings, *, bulk: bool = False) -> Any:
    from ..fhir.repository import Repository
    from ..store import open_store
    from .service import IngestService

    store = open_store(settings.store_url, sqlite_synchronous=settings.sqlite_synchronous,
                       sqlite_cache_mib=BULK_CACHE_MIB if bulk else None)
    return IngestService(Repository(store))


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "ingest":
        return _ingest(args, settings)
    if args.command == "demo":
        return _demo(args, settings)
    if args.command == "review":
        return _review(args, settings)
    if args.command == "mllp":
        return _mllp(args, settings)
    return 2


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from ..ingest.background import file_label
    from .loader import committed_before

    service = _service(settings, bulk=True)
    unreadable: list[str] = []
    command = f"fhir-gateway ingest --partner {args.partner} " \
        + " ".join(file_label(Path(p)) for p in args.paths)
    description = f"ingest of {args.partner} files by the command line"
    try:
        total = _load(service, args, unreadable)
    except Exception as exc:
        # the batches before the failure are committed: the trail still names their Patients
        partial = committed_before(exc)
        if partial is not None and (partial.patients or any(partial.counts().values())):
            audit_write(service.loader.repo, settings, partial, command=command,
                        destination=f"cli:{args.partner}",
                        description=f"{description}, stopped part way by an error ({exc})")
        raise
    audit_write(service.loader.repo, settings, total, command=command,
                destination=f"cli:{args.partner}", description=description)
    counts = total.counts()
    if args.json:
        print(json.dumps({**total.to_json(), "unreadable": unreadable}))
    else:
        print(", ".join(f"{k} {v}" for k, v in counts.items()))
        for r in total.rejections:
            print(f"rejected: {r['reason']}", file=sys.stderr)
        for w in total.warnings:
            print(f"warning: {w['partner']} {w['file']} {w['position']}: {w['warning']}",
                  file=sys.stderr)
        for u in unreadable:
            print(f"unreadable: {u}", file=sys.stderr)
        # the operator's view: other partners' held records this run's retry applied
        # (left out of the counts above, which answer for this partner's records only)
        for partner, c in sorted(total.others.items()):
            print(f"also retried {c['retried']} held {partner} record(s): "
                  + ", ".join(f"{k} {v}" for k, v in c.items() if k != "retried"),
                  file=sys.stderr)
    if total.read == 0:
        if unreadable or not all(_holds_anything(Path(p)) for p in args.paths):
            print("fhir-gateway: nothing could be read", file=sys.stderr)
            return 1
        # the partner's extract lists nobody today (a CSV header alone, a Bundle with no
        # entries): not a failure, so a scheduled load does not page the operator
        print("fhir-gateway: the files hold no records (an empty extract)", file=sys.stderr)
    return 0


def _holds_anything(path: Path) -> bool:
    """Whether `path` holds more than white space (and a UTF-8 byte-order mark): a
    zero-byte or blank file is a failed copy, not an extract (read in blocks: a damaged
    file can be large)."""
    try:
        with path.open("rb") as f:
            first = True
            while block := f.read(1 << 16):
                if first and block.startswith(b"\xef\xbb\xbf"):
                    block = block[3:]
                first = False
                if block.strip():
                    return True
    except OSError:
        return False
    return False


def _load(service: Any, args: argparse.Namespace, unreadable: list[str]) -> Any:
    """All the files as one run: held records are retried once, after the last file."""
    if not args.json and sys.stderr.isatty():
        from rich.progress import Progress, SpinnerColumn, TextColumn

        with Progress(SpinnerColumn(), TextColumn("{task.description}"),
                      TextColumn("{task.completed} records"), transient=True) as bar:
            task = bar.add_task(args.partner, total=None)
            return service.ingest_paths(
                args.partner, args.paths, on_unreadable=unreadable.append,
                on_file=lambda name: bar.update(task, description=f"{args.partner}: {name}"),
                progress=lambda n: bar.advance(task, n))
    return service.ingest_paths(args.partner, args.paths, on_unreadable=unreadable.append)


def audit_write(repository: Any, settings: Settings, summary: Any, *, command: str,
                destination: str, description: str, subtype: str = "create") -> None:
    """The AuditEvents of a command that wrote the shared record (`ingest`, `demo`,
    `review resolve`, `conflicts refresh`), as the HTTP routes record theirs: an
    operator's writes are on the trail too, naming the Patients written. The agent is the
    operating-system user."""
    if not settings.auditing:
        return
    text = ", ".join(f"{k} {v}" for k, v in summary.counts().items())
    try:
        _record(repository, settings, summary, text, command=command,
                destination=destination, description=description, subtype=subtype)
    except Exception as exc:
        # the writes are committed: an operator told only of the failure would think
        # nothing happened (and a resolve retried finds no held record)
        raise RuntimeError(f"stored ({text}), but the audit record of it could not be "
                           f"written: {exc}") from exc


def _record(repository: Any, settings: Settings, summary: Any, text: str, *, command: str,
            destination: str, description: str, subtype: str) -> None:
    import os

    from ..fhir.request import Caller
    from ..security import open_trail
    from ..security.audit.events import audit_events, held_retry_events

    trail = open_trail(repository, settings)
    try:
        observer, request_id = f"fhir-gateway {trail.instance}", f"cli-{os.getpid()}"
        trail.record(audit_events(
            subtype=subtype, action={"create": "C", "delete": "D"}.get(subtype, "U"),
            status=200,
            caller=Caller(client_id=f"cli:{operator()}"),
            observer=observer, destination=destination, request_id=request_id,
            patients=summary.patients, query=command[:500],
            description=f"{description}: {text}")
            + held_retry_events(summary, observer=observer, destination=destination,
                                request_id=request_id))
    finally:
        trail.close()


def operator() -> str:
    """The operating-system user running the command, as the trail names it; a uid with no
    user entry (a container run as an arbitrary uid) is named by its number."""
    import getpass
    import os

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid:{os.getuid()}"


def _deliveries(kept: dict[str, Any]) -> dict[str, str]:
    """When a held or rejected record first came, and last came if it came again."""
    return {k: kept[k] for k in ("received", "last_received") if isinstance(kept.get(k), str)}


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    import tempfile

    from ..demo import write_partnership

    if args.out is not None:
        files = write_partnership(args.out, people=args.people, seed=args.seed)
        print(f"wrote {sum(len(v) for v in files.values())} files for {args.people} people "
              f"under {args.out}", file=sys.stderr)
        return 0
    # loaded, then removed: what a record needs for review (its raw text) is in the store
    with tempfile.TemporaryDirectory(prefix="fhir-gateway-demo-") as tmp:
        files = write_partnership(Path(tmp), people=args.people, seed=args.seed)
        print(f"wrote {sum(len(v) for v in files.values())} files for {args.people} people "
              "to load", file=sys.stderr)
        service = _service(settings, bulk=True)
        for partner, paths in files.items():
            summary = service.ingest_paths(partner, paths)
            audit_write(service.loader.repo, settings, summary,
                        command=f"fhir-gateway demo --people {args.people}",
                        destination=f"cli:{partner}",
                        description=f"synthetic {partner} feed loaded by the demo")
            print(f"{partner} ({len(paths)} file{'s' if len(paths) > 1 else ''}): " +
                  ", ".join(f"{k} {v}" for k, v in summary.counts().items()),
                  file=sys.stderr)
    return 0


def _review(args: argparse.Namespace, settings: Settings) -> int:
    loader = _service(settings).loader
    if args.review_command == "list":
        for key, held in loader.list_held():
            print(json.dumps({"key": key, "reason": held["reason"],
                              "candidates": held["candidates"],
                              "position": held["record"]["source"]["position"],
                              "file": held["record"]["source"]["file"],
                              **_deliveries(held)}))
        for key, rejected in loader.list_rejected():
            print(json.dumps({"rejected": key, "reason": rejected["reason"],
                              **_deliveries(rejected)}))
        for key, discarded in loader.list_discarded():
            print(json.dumps({"discarded": key.rpartition("@")[0] or key,
                              "held_because": discarded["reason"],
                              **discarded["discarded"]}))
        return 0
    if args.review_command == "discard":
        from .loader import Summary

        loader.discard_held(args.key, reason=args.reason, by=f"cli:{operator()}")
        # the reviewer's words stay with the record: auditors see no free text
        audit_write(loader.repo, settings, Summary(),
                    command=f"fhir-gateway review discard {args.key}",
                    destination=f"cli:review/{args.key}",
                    description=f"held record {args.key} discarded by a reviewer",
                    subtype="delete")
        print(json.dumps({"discarded": args.key}))
        return 0
    summary = loader.resolve_held(args.key, patient_id=None if args.create else args.patient,
                                  replace_nhs_number=args.replace_nhs_number,
                                  despite_differences=args.despite_differences,
                                  despite_newer=args.despite_newer)
    choice = "--create" if args.create else f"--patient {args.patient}"
    if args.replace_nhs_number:
        choice += " --replace-nhs-number"
    if args.despite_differences:
        choice += " --despite-differences"
    if args.despite_newer:
        choice += " --despite-newer"
    audit_write(loader.repo, settings, summary,
                command=f"fhir-gateway review resolve {args.key} {choice}",
                destination=f"cli:review/{args.key}",
                description=f"held record {args.key} settled by a reviewer ({choice})",
                subtype="create" if args.create else "update")
    print(json.dumps(summary.counts()))
    if summary.rejected or summary.held:
        # not settled: the reviewer must hear why, and a script must not take it as done
        for r in summary.rejections:
            print(f"fhir-gateway: rejected: {r['reason']}", file=sys.stderr)
        if summary.held:
            print("fhir-gateway: the record is still held for review", file=sys.stderr)
        return 1
    return 0


def _mllp(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import contextlib

    from ..ingest import cached_mapping, map_file
    from ..mllp import loader_processor, serve
    from ..security import open_trail

    cached_mapping(args.partner)  # an unknown partner: one line now, not AR for ever
    service = _service(settings)
    # every message stored is audited, durably before its ACK (mllp.LoaderProcessor)
    trail = open_trail(service.loader.repo, settings) if settings.auditing else None
    process = loader_processor(service.loader, args.partner, map_file, trail)

    def listening(port: int) -> None:  # said once bound, so a sender may connect
        print(f"MLLP listening on {args.host}:{port} for {args.partner}", file=sys.stderr,
              flush=True)

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args.host, args.port, process, ready=listening))
    finally:
        if trail is not None:
            trail.close()
    return 0
