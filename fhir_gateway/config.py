"""Settings, from keyword arguments or the environment (`FHIR_GATEWAY_*`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_STORE = "sqlite:///var/gateway.sqlite3"
#: why a served gateway with auth on needs FHIR_GATEWAY_BASE_URL (one line, for stderr)
BASE_URL_NEEDED = (
    "set FHIR_GATEWAY_BASE_URL to the FHIR base URL clients use (e.g. "
    "https://gateway.example.org/fhir): with auth on, the token endpoint a client's "
    "assertion is made for and the access tokens' issuer and audience are built from it; "
    "taken from each request's Host header instead, an assertion a client made for "
    "another server could be replayed here for a token")


@dataclass(frozen=True, slots=True)
class Settings:
    store_url: str = DEFAULT_STORE
    #: largest request body accepted (413 above it)
    max_body_bytes: int = 16 * 1024 * 1024
    #: largest partner file `POST /ingest/{partner}` accepts (413 above it): a partner's
    #: whole extract, larger than any FHIR request
    max_feed_bytes: int = 256 * 1024 * 1024
    #: SQLite `synchronous`: FULL makes every acknowledged write survive kill -9 and power loss
    sqlite_synchronous: str = "FULL"
    #: the public FHIR base URL (env FHIR_GATEWAY_BASE_URL). With auth on, the token
    #: endpoint (the assertions' `aud`) and the access tokens' `iss` and `aud` are built
    #: from it, so a served gateway always has one: `fhir-gateway serve` derives it from
    #: --host/--port (and refuses a wildcard host without it), and the ASGI entry point
    #: (`api.asgi`) refuses to start without it. Only an app made in-process by
    #: `create_app` (tests: TestClient's http://testserver) falls back, when it is None,
    #: to the request's own base URL, which comes from the Host header the caller chose.
    public_base_url: str | None = None
    #: OAuth 2.0 (SMART Backend Services) on every /fhir call; off only for tests and benches
    #: of pure FHIR behaviour (env FHIR_GATEWAY_AUTH=off)
    auth_enabled: bool = True
    #: an AuditEvent for every interaction; None (the default) follows `auth_enabled`
    #: (env FHIR_GATEWAY_AUDIT=on|off)
    audit_enabled: bool | None = None
    #: a JWK Set of private EC P-384 keys every instance reads (first signs); else the
    #: gateway keeps rotating keys in the store
    signing_keys_file: str | None = None
    signing_key_rotation_s: int = 24 * 3600
    #: access token lifetime, at most 300 s (SMART Backend Services)
    token_lifetime_s: int = 300
    #: how often each audit writer anchors every chain's head
    audit_anchor_interval_s: float = 60.0
    #: where audit events are journalled before they are stored (security/audit/journal):
    #: None = beside a SQLite database file, else straight to the store; "off" = straight
    #: to the store; else a directory (env FHIR_GATEWAY_AUDIT_JOURNAL)
    audit_journal: str | None = None

    @property
    def auditing(self) -> bool:
        return self.auth_enabled if self.audit_enabled is None else self.audit_enabled

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = {
            "store_url": env.get("FHIR_GATEWAY_STORE", DEFAULT_STORE),
            "max_body_bytes": _bytes(env, "FHIR_GATEWAY_MAX_BODY_BYTES", 16 * 1024 * 1024),
            "max_feed_bytes": _bytes(env, "FHIR_GATEWAY_MAX_FEED_BYTES", 256 * 1024 * 1024),
            "sqlite_synchronous": _synchronous(env.get("FHIR_GATEWAY_SQLITE_SYNCHRONOUS",
                                                       "FULL")),
            "public_base_url": env.get("FHIR_GATEWAY_BASE_URL") or None,
            "auth_enabled": _flag(env.get("FHIR_GATEWAY_AUTH", "on"), "FHIR_GATEWAY_AUTH"),
            "audit_enabled": (_flag(env["FHIR_GATEWAY_AUDIT"], "FHIR_GATEWAY_AUDIT")
                              if env.get("FHIR_GATEWAY_AUDIT") else None),
            "signing_keys_file": env.get("FHIR_GATEWAY_SIGNING_KEYS") or None,
            "audit_journal": checked_journal(env.get("FHIR_GATEWAY_AUDIT_JOURNAL") or None),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def base_url_problem(settings: Settings) -> str | None:
    """Why a served gateway cannot start with these settings' public base URL (one line),
    or None: with auth on it needs one, and whatever is set must be an http(s) URL."""
    url = settings.public_base_url
    if url is None:
        return BASE_URL_NEEDED if settings.auth_enabled else None
    try:
        parts = urlsplit(url)
        absolute = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        absolute = False
    if not absolute or parts.query or parts.fragment:
        return (f"FHIR_GATEWAY_BASE_URL={url[:200]!r} is not an http(s) URL without query "
                "or fragment (e.g. https://gateway.example.org/fhir)")
    return None


def _bytes(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{name}={text!r}: give a number of bytes (16777216, not "
                         "16MiB)") from None
    if value < 1:
        raise ValueError(f"{name}={text!r}: give a number of bytes above 0")
    return value


#: SQLite `synchronous` levels a served gateway takes: OFF would acknowledge writes a
#: power cut can lose, which the gateway promises never to do
SYNCHRONOUS = ("FULL", "NORMAL", "EXTRA")


def _synchronous(value: str) -> str:
    if value.strip().upper() not in SYNCHRONOUS:
        raise ValueError(f"FHIR_GATEWAY_SQLITE_SYNCHRONOUS={value!r}: use FULL (the "
                         "default), NORMAL or EXTRA")
    return value.strip().upper()


def journal_off(value: str | None) -> bool:
    """Whether an audit journal setting says `off` (in any case)."""
    return value is not None and value.strip().lower() == "off"


def checked_journal(value: str | None) -> str | None:
    """Checked before any command writes (a CLI ingest committed, then failed auditing):
    `off` in any case, or an absolute directory (a relative one lands wherever the command
    was started, where `audit verify` run elsewhere would not find acknowledged events)."""
    if value is None or journal_off(value):
        return value
    if not os.path.isabs(value):
        raise ValueError(f"FHIR_GATEWAY_AUDIT_JOURNAL={value!r}: give an absolute "
                         "directory, or off")
    return value


def _flag(value: str, name: str) -> bool:
    text = value.strip().lower()
    if text in ("on", "1", "true", "yes"):
        return True
    if text in ("off", "0", "false", "no"):
        return False
    raise ValueError(f"{name}={value!r}: use on or off")
