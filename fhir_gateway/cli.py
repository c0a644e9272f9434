"""`fhir-gateway`: the command line (INTERFACE.md).

Exit status: 0 success, 2 usage error (argparse), 1 failure with a one-line reason on
stderr. Commands that later issues add (ingest, client, token, audit, demo) are
registered here as they land, never before.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys
from collections.abc import Sequence
from dataclasses import replace

from .cliargs import port_number, positive
from .config import BASE_URL_NEEDED, DEFAULT_STORE, Settings, base_url_problem
from .pipeline import cli as ingest_cli
from .security import cli as security_cli
from .summary import cli as summary_cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fhir-gateway",
                                     description="Shared care record FHIR gateway")
    parser.add_argument("--store", default=None,
                        help=f"store URL (env FHIR_GATEWAY_STORE; default {DEFAULT_STORE})")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the FHIR API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=port_number, default=8080)
    serve.add_argument("--workers", type=positive, default=1)
    serve.add_argument("--store", dest="sub_store", default=None, help=argparse.SUPPRESS)
    serve.add_argument("--log-level", default="info",
                       choices=["critical", "error", "warning", "info", "debug"])
    security_cli.add_commands(sub)
    ingest_cli.add_commands(sub)
    summary_cli.add_commands(sub)
    _store_on_every_command(parser)
    return parser


def _store_on_every_command(parser: argparse.ArgumentParser) -> None:
    """`--store` after the command too (`fhir-gateway ingest --store URL ...`), as INTERFACE
    says every command takes it: on each leaf command, where a later default cannot undo
    it (a nested parser's values are copied over its parent's)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in {id(p): p for p in action.choices.values()}.values():
                nested = any(isinstance(a, argparse._SubParsersAction) for a in sub._actions)
                if nested:
                    _store_on_every_command(sub)
                elif not any("--store" in a.option_strings for a in sub._actions):
                    sub.add_argument("--store", dest="sub_store", default=None,
                                     help=argparse.SUPPRESS)


def _usage_problem(args: argparse.Namespace) -> str | None:
    """Option combinations argparse cannot express: usage errors (exit 2), not failures."""
    if args.command == "client" and args.client_command == "add":
        if args.role == "feed" and args.partner is None:
            return "a feed client needs --partner (whose data it writes)"
        if args.role != "feed" and args.partner is not None:
            return "--partner is for feed clients only"
        from .ingest.spec import partners

        if args.partner is not None and args.partner not in (known := partners()):
            return (f"--partner {args.partner!r} has no mapping (known: "
                    f"{', '.join(known)})")
    if (args.command == "review" and args.review_command == "resolve"
            and args.replace_nhs_number and args.create):
        return "--replace-nhs-number needs --patient (the Patient whose number it corrects)"
    if (args.command == "review" and args.review_command == "resolve"
            and args.despite_differences and args.create):
        return "--despite-differences goes with --patient (the Patient to attach it to)"
    return None


def listen_base_url(host: str, port: int) -> str | None:
    """`http://HOST:PORT/fhir` for the address `serve` listens on (an IPv6 address in
    brackets), or None for a wildcard host (every address: no one URL clients use)."""
    bare = host.strip("[]")
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return None if bare in ("", "*", "0") else f"http://{bare}:{port}/fhir"
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:0.0.0.0 binds every address too
    if address.is_unspecified or (mapped is not None and mapped.is_unspecified):
        return None
    return f"http://[{bare}]:{port}/fhir" if address.version == 6 else f"http://{bare}:{port}/fhir"


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import os

    import uvicorn

    from .store import open_store

    # The token endpoint and the tokens' issuer and audience come from the base URL, never
    # from a request's Host header (config.Settings.public_base_url): derived from where
    # the server listens unless set, and refused for a wildcard host with auth on.
    listening = listen_base_url(args.host, args.port)
    if settings.public_base_url is None and listening is not None:
        settings = replace(settings, public_base_url=listening)
    if settings.public_base_url is None and settings.auth_enabled:
        print(f"fhir-gateway: --host {args.host} listens on every address, so the URL "
              f"clients use is not known: {BASE_URL_NEEDED}", file=sys.stderr, flush=True)
        return 2
    problem = base_url_problem(settings)
    if problem is not None:
        print(f"fhir-gateway: {problem}", file=sys.stderr, flush=True)
        return 2
    # Open the store once here so a bad URL or unreachable server is one line and exit 1,
    # not a traceback from inside uvicorn's start-up.
    engine = open_store(settings.store_url, sqlite_synchronous=settings.sqlite_synchronous)
    single_writer = getattr(engine, "transactions", True) is False
    engine.close()
    if single_writer and args.workers > 1:
        # without transactions, writers take turns within one process only (store.mongo)
        print("fhir-gateway: this MongoDB server runs no transactions (a standalone "
              "server): serve it with --workers 1, or use a replica set", file=sys.stderr,
              flush=True)
        return 2
    # What uvicorn's start-up would stop on with a traceback and exit 3, said in one line
    # first: the signing keys, and the address being free.
    if settings.auth_enabled and settings.signing_keys_file:
        from .auth.keys import load_key_file

        load_key_file(settings.signing_keys_file)  # SigningKeyError: one line, exit 1
    try:
        host = args.host.strip("[]")
        family = socket.getaddrinfo(host, args.port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]  # ::1 is IPv6
        socket.create_server((host, args.port), family=family).close()
    except OSError as exc:  # socket.gaierror too: a host name that does not resolve
        print(f"fhir-gateway: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
              file=sys.stderr, flush=True)
        return 1
    # Workers are separate processes: they read the store URL and base URL from the
    # environment (`api.asgi`).
    os.environ["FHIR_GATEWAY_STORE"] = settings.store_url
    if settings.public_base_url is not None:
        os.environ["FHIR_GATEWAY_BASE_URL"] = settings.public_base_url
    logging.basicConfig(level=args.log_level.upper(), format="%(message)s")
    base = (settings.public_base_url or f"http://{args.host}:{args.port}/fhir").rstrip("/")
    print(f"FHIR base: {base}  (store {settings.store_url})", file=sys.stderr, flush=True)
    if settings.auth_enabled:
        store = "" if settings.store_url == DEFAULT_STORE else f" --store {settings.store_url}"
        prog = sys.argv[0] if sys.argv and sys.argv[0].endswith("fhir-gateway") \
            else "fhir-gateway"  # e.g. .venv/bin/fhir-gateway under `make run`
        print("Every /fhir call needs an access token. To get one:\n"
              f"  {prog}{store} client add me --role clinician --org Y00001 "
              "--new-key me.jwk\n"
              f"  TOKEN=$({prog} token me --key me.jwk --scope 'system/*.rs' "
              f"--url {base})\n"
              f"  curl -H \"Authorization: Bearer $TOKEN\" {base}/Patient",
              file=sys.stderr, flush=True)
    else:
        print("Auth is OFF (FHIR_GATEWAY_AUTH=off): for tests and benches only.",
              file=sys.stderr, flush=True)
    try:
        uvicorn.run("fhir_gateway.api.asgi:app", host=args.host, port=args.port,
                    workers=args.workers, log_level=args.log_level, access_log=False)
    except SystemExit as exc:  # uvicorn's "Application startup failed" is exit 3
        if exc.code in (0, None):
            return 0
        print("fhir-gateway: the server stopped during start-up (the log above says why)",
              file=sys.stderr, flush=True)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    problem = _usage_problem(args)
    if problem is not None:
        parser.error(problem)  # exits 2
    store = getattr(args, "sub_store", None) or args.store
    try:
        settings = Settings.from_env(store_url=store)  # a mistyped variable: one line
        if args.command == "serve":
            return _serve(args, settings)
        status = security_cli.run(args, settings)
        if status is not None:
            return status
        if args.command in ("ingest", "demo", "review", "mllp"):
            return ingest_cli.run(args, settings)
        if args.command == "conflicts":
            return summary_cli.run(args, settings)
    except Exception as exc:
        print(f"fhir-gateway: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    sys.exit(main())
