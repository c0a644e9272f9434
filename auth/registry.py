"""The OAuth client registry: who may ask for tokens, with which keys, in which role.

Clients are system records in the store (kind `oauth-client`), never in a process's
memory, so a client that `fhir-gateway client add` registers (or `client remove` takes
away) is seen by every running instance on its next request. A client authenticates with
`private_key_jwt` only: the registry holds its public keys as a JWK Set, each with a `kid`,
RSA (2048 bits or more, for RS384) or EC P-384 (for ES384). Private key material is
refused, so a leaked registry leaks no credential.

    RegistryError            a registration the registry refuses (bad JWKS, bad role...)
     └── ClientExists        that client id is already registered
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from joserfc import jwk

from ..ingest.errors import MappingError, UnknownPartner
from ..ingest.mapping import cached_mapping
from ..ingest.spec import partners
from ..search.values import now_instant
from ..store.base import StoreEngine

KIND = "oauth-client"
ROLES = ("clinician", "ambulance", "feed", "auditor", "admin")
#: JWS algorithms a client may sign its assertion with (SMART Backend Services).
CLIENT_ALGORITHMS = ("RS384", "ES384")
MIN_RSA_BITS = 2048
MAX_KEYS = 10
_CLIENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}")
_ODS = re.compile(r"[A-Z0-9]{3,12}")
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class RegistryError(ValueError):
    """A registration the registry refuses; the message says what to fix."""


class ClientExists(RegistryError):
    """The client id is already registered."""


@dataclass(frozen=True, slots=True)
class Client:
    """A registered client (also authlib's ClientMixin for the token endpoint)."""

    client_id: str
    role: str
    jwks: dict[str, Any]
    partner: str | None = None
    organization: str | None = None  # ODS code: who is asking, for consent and audit
    created: str = ""
    _keys: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_record(cls, client_id: str, record: dict[str, Any]) -> Client:
        return cls(client_id=client_id, role=record["role"], jwks=record["jwks"],
                   partner=record.get("partner"), organization=record.get("organization"),
                   created=record.get("created", ""))

    def to_record(self) -> dict[str, Any]:
        return {"role": self.role, "jwks": self.jwks, "partner": self.partner,
                "organization": self.organization, "created": self.created}

    @property
    def kids(self) -> list[str]:
        return [k["kid"] for k in self.jwks["keys"]]

    def key(self, kid: str) -> jwk.Key | None:
        """The public key registered under `kid` (kids are unique per client)."""
        if kid not in self._keys:
            found = [k for k in self.jwks["keys"] if k.get("kid") == kid]
            if len(found) != 1:
                return None
            self._keys[kid] = jwk.import_key(found[0])
        return self._keys[kid]

    # -- authlib ClientMixin ------------------------------------------------------------

    def get_client_id(self) -> str:
        return self.client_id

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "private_key_jwt" and endpoint == "token"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "client_credentials"


def validate_jwks(value: Any) -> dict[str, Any]:
    """A client's JWK Set, checked: public RSA (>= 2048 bits) or EC P-384 keys, unique kids."""
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
        raise RegistryError('the JWKS must be a JSON object {"keys": [...]}')
    keys = value["keys"]
    if not 1 <= len(keys) <= MAX_KEYS:
        raise RegistryError(f"the JWKS must hold 1 to {MAX_KEYS} keys, not {len(keys)}")
    out, kids = [], set()
    for i, key in enumerate(keys):
        where = f"key {i + 1}"
        if not isinstance(key, dict):
            raise RegistryError(f"{where} is not a JSON object")
        kid = key.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > 200:
            raise RegistryError(f"{where} has no kid; every key needs one (SMART Backend Services)")
        if kid in kids:
            raise RegistryError(f"kid {kid!r} is used twice; a kid must pick exactly one key")
        kids.add(kid)
        if any(m in key for m in _PRIVATE_MEMBERS):
            raise RegistryError(f"key {kid!r} holds private key material; register the public "
                                "half only")
        kty, alg = key.get("kty"), key.get("alg")
        if kty == "RSA":
            if alg not in (None, "RS384"):
                raise RegistryError(f"key {kid!r}: an RSA key is used with RS384, not {alg!r}")
        elif kty == "EC":
            if key.get("crv") != "P-384" or alg not in (None, "ES384"):
                raise RegistryError(f"key {kid!r}: an EC key must be P-384 for ES384")
        else:
            raise RegistryError(f"key {kid!r}: kty {kty!r}; use RSA (RS384) or EC P-384 (ES384)")
        try:
            imported = jwk.import_key(key)
        except Exception as exc:  # joserfc raises several kinds for a malformed key
            raise RegistryError(f"key {kid!r} is not a valid JWK: {exc}") from exc
        if kty == "RSA":
            bits = imported.raw_value.key_size
            if bits < MIN_RSA_BITS:
                raise RegistryError(f"key {kid!r}: RSA keys need {MIN_RSA_BITS} bits, not {bits}")
        public = imported.as_dict(private=False)
        public.update({"kid": kid, "alg": "RS384" if kty == "RSA" else "ES384"})
        out.append(public)
    return {"keys": out}


def load_jwks_file(path: str | Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RegistryError(f"cannot read the JWKS file {path}: {exc.strerror}") from exc
    try:
        return validate_jwks(json.loads(text))
    except ValueError as exc:
        raise RegistryError(f"{path}: {exc}") from exc


def new_key_pair() -> tuple[dict[str, Any], dict[str, Any]]:
    """A fresh ES384 (P-384) key pair as (private JWK, public JWK), kid = RFC 7638 thumbprint."""
    key = jwk.ECKey.generate_key("P-384", private=True)
    kid = key.thumbprint()
    private = {**key.as_dict(private=True), "kid": kid, "alg": "ES384"}
    public = {**key.as_dict(private=False), "kid": kid, "alg": "ES384"}
    return private, public


def write_private_key(path: str | Path, private_jwk: dict[str, Any]) -> None:
    """Write a private JWK to a new file readable by its owner only (mode 0600)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise RegistryError(f"{path} exists; choose a new file for the private key") from exc
    except OSError as exc:
        raise RegistryError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(private_jwk, f, indent=2)
        f.write("\n")


class ClientRegistry:
    """Clients in the store's system records (see module docstring)."""

    def __init__(self, engine: StoreEngine) -> None:
        self.engine = engine

    def add(self, client_id: str, *, role: str, jwks: dict[str, Any],
            partner: str | None = None, organization: str | None = None) -> Client:
        if not _CLIENT_ID.fullmatch(client_id):
            raise RegistryError(f"client id {client_id[:80]!r}: use 1-64 of A-Z a-z 0-9 . _ -")
        if role not in ROLES:
            raise RegistryError(f"role {role!r}: one of {', '.join(ROLES)}")
        if role == "feed" and partner is None:
            raise RegistryError("a feed client needs --partner (whose data it writes)")
        if role != "feed" and partner is not None:
            raise RegistryError("--partner is for feed clients only")
        if partner is not None:
            # the installed mappings, not a fixed list: a sixth partner is a mapping file,
            # and one that does not load (a draft) would take the feed's files and fail each
            try:
                cached_mapping(partner)
            except UnknownPartner as exc:
                raise RegistryError(f"partner {partner!r} has no mapping (known: "
                                    f"{', '.join(partners())})") from exc
            except MappingError as exc:
                raise RegistryError(f"partner {partner!r}'s mapping does not load: {exc}"
                                    ) from exc
        if organization is not None and not _ODS.fullmatch(organization):
            raise RegistryError(f"--org {organization!r} is not an ODS code (A-Z 0-9, 3-12)")
        client = Client(client_id=client_id, role=role, jwks=validate_jwks(jwks),
                        partner=partner, organization=organization, created=now_instant())
        with self.engine.session(write=True) as s:
            if not s.record_put(KIND, client_id, client.to_record(), create_only=True):
                raise ClientExists(f"client {client_id!r} is already registered; "
                                   "remove it first to change it")
        return client

    def get(self, client_id: str) -> Client | None:
        if not isinstance(client_id, str) or not _CLIENT_ID.fullmatch(client_id):
            return None
        with self.engine.session(write=False) as s:
            record = s.record_get(KIND, client_id)
        return Client.from_record(client_id, record) if record is not None else None

    def list(self) -> list[Client]:
        out: list[Client] = []
        after = None
        with self.engine.session(write=False) as s:
            while True:
                page = s.record_list(KIND, after=after, limit=500)
                out += [Client.from_record(k, v) for k, v in page]
                if len(page) < 500:
                    return out
                after = page[-1][0]

    def remove(self, client_id: str) -> bool:
        with self.engine.session(write=True) as s:
            return s.record_delete(KIND, client_id)
