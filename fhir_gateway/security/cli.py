"""The security commands of `fhir-gateway` (INTERFACE.md): `client add|list|remove`,
`token` and `audit verify`. `cli.py` registers them; each returns the exit status
(0 success, 1 failure with a one-line reason on stderr; argparse gives 2 for usage).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..auth.registry import ROLES


def add_commands(sub: Any) -> None:
    client = sub.add_parser("client", help="register, list or remove OAuth clients")
    csub = client.add_subparsers(dest="client_command", required=True)
    add = csub.add_parser("add", help="register a client (private_key_jwt)")
    add.add_argument("client_id")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--partner", help="whose data a feed writes (a partner with a mapping)")
    add.add_argument("--org", help="the client's ODS organisation code")
    keys = add.add_mutually_exclusive_group(required=True)
    keys.add_argument("--jwks", help="JWK Set file of the client's public keys")
    keys.add_argument("--new-key", help="make an ES384 key pair; write the private key here")
    csub.add_parser("list", help="list registered clients")
    remove = csub.add_parser("remove", help="remove a client (its tokens stop working)")
    remove.add_argument("client_id")
    token = sub.add_parser("token", help="get an access token from a running gateway")
    token.add_argument("client_id")
    token.add_argument("--key", required=True, help="the client's private JWK file")
    token.add_argument("--scope", required=True, help='e.g. "system/Patient.rs"')
    token.add_argument("--url", default="http://127.0.0.1:8080/fhir", help="the FHIR base")
    audit = sub.add_parser("audit", help="the audit trail")
    asub = audit.add_subparsers(dest="audit_command", required=True)
    asub.add_parser("verify", help="exit 0 only when the audit trail is intact")


def run(args: argparse.Namespace, settings: Any) -> int | None:
    """Run a security command; None when `args.command` is not one of them."""
    if args.command == "client":
        return _client(args, settings)
    if args.command == "token":
        return _token(args)
    if args.command == "audit":
        return _audit_verify(settings)
    return None


def _client(args: argparse.Namespace, settings: Any) -> int:
    from ..auth.registry import ClientRegistry, load_jwks_file, new_key_pair, write_private_key
    from ..store import open_store

    store = open_store(settings.store_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        registry = ClientRegistry(store)
        if args.client_command == "add":
            if args.new_key:
                private, public = new_key_pair()
                jwks = {"keys": [public]}
            else:
                jwks = load_jwks_file(args.jwks)
            client = registry.add(args.client_id, role=args.role, jwks=jwks,
                                  partner=args.partner, organization=args.org)
            if args.new_key:
                try:
                    write_private_key(args.new_key, private)
                except Exception:
                    registry.remove(client.client_id)  # no client without its key
                    raise
                print(f"registered {client.client_id} ({client.role}); private key in "
                      f"{args.new_key}")
            else:
                print(f"registered {client.client_id} ({client.role}) with keys "
                      f"{', '.join(client.kids)}")
            return 0
        if args.client_command == "list":
            for c in registry.list():
                print("\t".join([c.client_id, c.role, c.partner or "-", c.organization or "-",
                                 ",".join(c.kids)]))
            return 0
        if not registry.remove(args.client_id):
            print(f"fhir-gateway: no client {args.client_id!r} is registered", file=sys.stderr)
            return 1
        print(f"removed {args.client_id}")
        return 0
    finally:
        store.close()


def _token(args: argparse.Namespace) -> int:
    from ..auth.client import request_token

    response = request_token(args.url, args.client_id, args.key, args.scope)
    print(response["access_token"])
    return 0


def _audit_verify(settings: Any) -> int:
    from ..fhir.repository import Repository
    from ..store import open_store
    from .audit.journal import damaged_journals, journal_directory, recover
    from .audit.verify import verify

    store = open_store(settings.store_url, sqlite_synchronous=settings.sqlite_synchronous)
    try:
        repository = Repository(store)
        # A stopped or crashed server's journal holds events its chain goes on with:
        # stored first, as the next start would, so they are verified too.
        directory = journal_directory(settings.audit_journal, store)
        journal_problems: list[str] = []
        if directory is not None:
            found = recover(repository, directory)
            if found.journals:
                print(f"stored {found.events} audit events from {found.journals} journals "
                      "left by a stopped or crashed server", file=sys.stderr)
            # An acknowledged event that could not be stored is lost from the store,
            # whatever its chains look like: the trail is not intact while its journal
            # waits for review (`.damaged`), this run's or an earlier one's.
            journal_problems = [
                f"audit journal {path} holds events that are not in the store (kept for "
                "review; move it away once reviewed)" for path in damaged_journals(directory)
            ] + found.problems
        report = verify(repository)
    finally:
        store.close()
    report.problems[:0] = journal_problems
    if report.intact:
        print(report.summary())
        return 0
    for problem in report.problems[1:50]:
        print(problem)
    print(f"fhir-gateway: {report.summary()}", file=sys.stderr)
    return 1
