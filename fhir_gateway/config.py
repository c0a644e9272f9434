"""Settings, from keyword arguments or the environment (`FHIR_GATEWAY_*`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_STORE = "sqlite:///var/gateway.sqlite3"


@dataclass(frozen=True, slots=True)
class Settings:
    store_url: str = DEFAULT_STORE
    #: largest request body accepted (413 above it)
    max_body_bytes: int = 16 * 1024 * 1024
    #: SQLite `synchronous`: FULL makes every acknowledged write survive kill -9 and power loss
    sqlite_synchronous: str = "FULL"
    #: the public base URL, when the gateway sits behind a proxy; else taken from the request
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
            "max_body_bytes": int(env.get("FHIR_GATEWAY_MAX_BODY_BYTES", 16 * 1024 * 1024)),
            "sqlite_synchronous": env.get("FHIR_GATEWAY_SQLITE_SYNCHRONOUS", "FULL"),
            "public_base_url": env.get("FHIR_GATEWAY_BASE_URL") or None,
            "auth_enabled": _flag(env.get("FHIR_GATEWAY_AUTH", "on"), "FHIR_GATEWAY_AUTH"),
            "audit_enabled": (_flag(env["FHIR_GATEWAY_AUDIT"], "FHIR_GATEWAY_AUDIT")
                              if env.get("FHIR_GATEWAY_AUDIT") else None),
            "signing_keys_file": env.get("FHIR_GATEWAY_SIGNING_KEYS") or None,
            "audit_journal": env.get("FHIR_GATEWAY_AUDIT_JOURNAL") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]


def _flag(value: str, name: str) -> bool:
    text = value.strip().lower()
    if text in ("on", "1", "true", "yes"):
        return True
    if text in ("off", "0", "false", "no"):
        return False
    raise ValueError(f"{name}={value!r}: use on or off")
