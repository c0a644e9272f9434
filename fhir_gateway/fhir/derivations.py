"""Resources the gateway keeps in step with partners' data, in the same transaction.

Like HAPI FHIR's pre-commit storage hooks: a `Derivation` watches some resource types;
the repository tells it of each change to one (the version before and after), and, just
before the write transaction commits, lets it bring its own resources up to date from
what the store then holds. Every write path (REST, Bundles, ingestion, merges, review)
goes through the repository, so none can leave a derived resource stale, and the derived
resource commits, or rolls back, with the data it was derived from.

Keys are the derivation's own (a Patient id for a per-person fact). The work is done once
per key per transaction, after every write in it, so a resource and the Provenance written
beside it are both there when it is judged.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..store.base import StoreSession
    from .repository import Repository

#: rounds of derivation per commit: a derivation's own writes may concern another one
MAX_ROUNDS = 3
#: the tag on every resource a derivation writes (its code names the derivation); a
#: partner feed's writes never carry it (the security layer strips it)
DERIVED_TAG_SYSTEM = "https://fhir.shared-care-record.example/CodeSystem/derived-by-gateway"


def is_derived(resource: dict[str, Any], code: str | None = None) -> bool:
    """Whether the gateway wrote `resource` as a derivation (of `code`, when given)."""
    tags = (resource.get("meta") or {}).get("tag") if isinstance(resource.get("meta"),
                                                                  dict) else None
    return any(isinstance(t, dict) and t.get("system") == DERIVED_TAG_SYSTEM
               and (code is None or t.get("code") == code)
               for t in (tags if isinstance(tags, list) else []))


class Derivation(Protocol):
    #: the resource types whose changes may change what this derivation keeps
    watches: frozenset[str]

    def touched(self, before: dict[str, Any] | None, after: dict[str, Any] | None) -> set[str]:
        """The keys a change from `before` to `after` (None: absent or deleted) concerns."""
        ...

    def bring_up_to_date(self, repository: Repository, session: StoreSession,
                         keys: set[str]) -> None:
        """Make the derived resources for `keys` agree with what `session` now holds."""
        ...


class PendingDerivations:
    """Per open write session: which derivations have keys to bring up to date."""

    def __init__(self, derivations: tuple[Derivation, ...]) -> None:
        self.derivations = derivations
        self.watched = frozenset(t for d in derivations for t in d.watches)
        self._pending: weakref.WeakKeyDictionary[Any, dict[int, set[str]]] = \
            weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def note(self, session: StoreSession, rtype: str, before: dict[str, Any] | None,
             after: dict[str, Any] | None) -> None:
        for i, d in enumerate(self.derivations):
            if rtype not in d.watches:
                continue
            keys = d.touched(before, after)
            if keys:
                with self._lock:
                    self._pending.setdefault(session, {}).setdefault(i, set()).update(keys)

    def run(self, repository: Repository, session: StoreSession) -> None:
        """Before commit: every derivation with pending keys, until none is left."""
        for _round in range(MAX_ROUNDS):
            with self._lock:
                pending = self._pending.pop(session, None)
            if not pending:
                return
            for i, keys in sorted(pending.items()):
                self.derivations[i].bring_up_to_date(repository, session, keys)

    def forget(self, session: StoreSession) -> None:
        with self._lock:
            self._pending.pop(session, None)
