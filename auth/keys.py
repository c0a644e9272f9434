"""The gateway's own signing keys: what signs access tokens, and the JWKS that checks them.

Keys are shared by every instance. Either an operator gives a key file (a JWK Set of
private EC P-384 keys, `FHIR_GATEWAY_SIGNING_KEYS`) that all instances read: the first key
signs, every key verifies, so a rotation is "put the new key first, keep the old one
second until its tokens have expired". Or the gateway keeps its keys in the store's
system records (kind `signing-key`), one key per rotation period (`gw-<period>`), created
by whichever instance first needs it (`create_only`, so racing instances agree). The key
of the current period signs; the previous period's key stays published so tokens it
signed keep verifying until they expire: at most two keys are live.

In-process caches here only save store reads; a kid not in the cache is looked up again
(at most once a second per kid), so a key another instance made is found at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from joserfc import jwk

from ..store.base import StoreEngine, VersionConflict

KIND = "signing-key"
ALGORITHM = "ES384"
DEFAULT_ROTATION_S = 24 * 3600
_REFRESH_S = 30.0
#: tries at making this period's key when other instances race to make it too
_CREATE_ATTEMPTS = 3


class SigningKeyError(RuntimeError):
    """The signing keys cannot be loaded (bad key file)."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    kid: str
    key: jwk.ECKey
    period: int  # -1 for keys from a key file

    def public_jwk(self) -> dict[str, Any]:
        return {**self.key.as_dict(private=False), "kid": self.kid, "alg": ALGORITHM,
                "use": "sig"}


def _import(data: dict[str, Any], where: str) -> jwk.ECKey:
    if data.get("kty") != "EC" or data.get("crv") != "P-384" or "d" not in data:
        raise SigningKeyError(f"{where}: signing keys must be private EC P-384 keys (ES384)")
    try:
        return jwk.ECKey.import_key(data)
    except Exception as exc:  # joserfc raises several kinds for a malformed key
        raise SigningKeyError(f"{where}: not a valid JWK: {exc}") from exc


def load_key_file(path: str | Path) -> list[SigningKey]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SigningKeyError(f"cannot read the signing key file {path}: {exc}") from exc
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not keys:
        raise SigningKeyError(f'{path}: expected a JWK Set {{"keys": [...]}} with at least one key')
    out = []
    for i, item in enumerate(keys):
        key = _import(item, f"{path} key {i + 1}")
        out.append(SigningKey(item.get("kid") or key.thumbprint(), key, -1))
    if len({k.kid for k in out}) != len(out):
        raise SigningKeyError(f"{path}: two keys share a kid")
    return out


class KeyRing:
    def __init__(self, engine: StoreEngine, *, key_file: str | Path | None = None,
                 rotation_s: int = DEFAULT_ROTATION_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.rotation_s = rotation_s
        self.clock = clock
        self._file_keys = load_key_file(key_file) if key_file else None
        self._lock = threading.Lock()
        self._live: dict[str, SigningKey] = {}
        self._loaded_at = -1e18
        self._loaded_period = None
        self._misses: dict[str, float] = {}

    # -- public ------------------------------------------------------------------------

    def signing_key(self) -> SigningKey:
        if self._file_keys:
            return self._file_keys[0]
        period = self._period()
        key = self._live_keys(period).get(self._kid(period))
        return key or self._create(period)

    def verification_key(self, kid: str) -> SigningKey | None:
        if self._file_keys:
            return next((k for k in self._file_keys if k.kid == kid), None)
        period = self._period()
        key = self._live_keys(period).get(kid)
        if key is None and self._may_retry(kid):
            key = self._live_keys(period, force=True).get(kid)
        return key

    def jwks(self) -> dict[str, Any]:
        if self._file_keys:
            return {"keys": [k.public_jwk() for k in self._file_keys]}
        period = self._period()
        self.signing_key()  # make sure the current key exists before it is published
        return {"keys": [k.public_jwk() for k in sorted(
            self._live_keys(period, force=True).values(), key=lambda k: -k.period)]}

    # -- store-held keys ---------------------------------------------------------------

    def _period(self) -> int:
        return int(self.clock() // self.rotation_s)

    @staticmethod
    def _kid(period: int) -> str:
        return f"gw-{period}"

    def _may_retry(self, kid: str) -> bool:
        now = time.monotonic()
        with self._lock:
            if now - self._misses.get(kid, -1e18) < 1.0:
                return False
            if len(self._misses) > 1000:
                self._misses.clear()
            self._misses[kid] = now
            return True

    def _live_keys(self, period: int, *, force: bool = False) -> dict[str, SigningKey]:
        now = time.monotonic()
        if (not force and period == self._loaded_period
                and now - self._loaded_at < _REFRESH_S):
            return self._live
        live = {}
        with self.engine.session(write=False) as s:
            for p in (period, period - 1):  # the current key and the one before it
                record = s.record_get(KIND, self._kid(p))
                if record is not None:
                    live[self._kid(p)] = SigningKey(self._kid(p), _import(record["jwk"], KIND), p)
        with self._lock:
            self._live, self._loaded_at, self._loaded_period = live, now, period
        return live

    def _create(self, period: int) -> SigningKey:
        kid = self._kid(period)
        for _attempt in range(_CREATE_ATTEMPTS):
            key = jwk.ECKey.generate_key("P-384", private=True)
            try:
                with self.engine.session(write=True) as s:
                    s.record_put(KIND, kid, {"jwk": key.as_dict(private=True),
                                             "created": self.clock()}, create_only=True)
                    # Keys two periods old sign nothing live any more: drop them.
                    for old, _ in s.record_list(KIND):
                        if old.startswith("gw-") and old[3:].lstrip("-").isdigit() \
                                and int(old[3:]) < period - 1:
                            s.record_delete(KIND, old)
            except VersionConflict:
                # Another instance made it (or dropped the same old key) at the same
                # moment; on MongoDB that aborts this whole transaction. Its key is read
                # below, in a fresh session; if it is not there yet, try again.
                pass
            found = self._live_keys(period, force=True).get(kid)
            if found is not None:
                return found
        raise SigningKeyError(f"could not create or read the signing key {kid}: the store "
                              "kept reporting concurrent writers")
