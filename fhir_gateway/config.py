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

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        values: dict[str, object] = {
            "store_url": env.get("FHIR_GATEWAY_STORE", DEFAULT_STORE),
            "max_body_bytes": int(env.get("FHIR_GATEWAY_MAX_BODY_BYTES", 16 * 1024 * 1024)),
            "sqlite_synchronous": env.get("FHIR_GATEWAY_SQLITE_SYNCHRONOUS", "FULL"),
            "public_base_url": env.get("FHIR_GATEWAY_BASE_URL") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
