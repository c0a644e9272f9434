"""SMART scopes (App Launch 2.0 syntax, v1 names mapped) and each role's ceiling.

A scope here is `system/<Type|*>.<cruds>`: the letters, in that order, allow create,
read, update, delete and search. SMART v1 names map onto them: `.read` = `.rs`,
`.write` = `.cud`, `.*` = `.cruds`. Backend services act for a system, so `patient/` and
`user/` scopes, granular scopes with a `?query`, and anything else are not granted.

A token never carries more than its client's role allows: the granted scope is the
request intersected with the role's ceiling. The role still decides more than scopes can
say (an ambulance may only use the emergency summary and look a Patient up by NHS number,
a feed may only change its own partner's data): see `fhir_gateway.security.policy`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ..fhir.types import resource_types

ACTIONS = "cruds"
_V2 = re.compile(r"system/(\*|[A-Z][A-Za-z]{1,63})\.(c?r?u?d?s?)")
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_V1_RE = re.compile(r"system/(\*|[A-Z][A-Za-z]{1,63})\.(read|write|\*)")

ROLE_CEILING = {
    "clinician": "system/*.rs",
    "ambulance": "system/*.rs",
    "feed": "system/*.cruds",
    "auditor": "system/AuditEvent.rs system/Provenance.rs",
    "admin": "",
}


@dataclass(frozen=True, slots=True)
class Scopes:
    """Granted permissions: resource type ("*" for all) -> allowed action letters."""

    grants: tuple[tuple[str, frozenset[str]], ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> Scopes:
        merged: dict[str, set[str]] = {}
        for item in (text or "").split():
            m = _V2.fullmatch(item)
            if m and m.group(2):
                merged.setdefault(m.group(1), set()).update(m.group(2))
                continue
            m = _V1_RE.fullmatch(item)
            if m:
                merged.setdefault(m.group(1), set()).update(_V1[m.group(2)])
        return cls(tuple(sorted((t, frozenset(a)) for t, a in merged.items())))

    def actions(self, rtype: str) -> frozenset[str]:
        out: set[str] = set()
        for t, acts in self.grants:
            if t == "*" or t == rtype:
                out |= acts
        return frozenset(out)

    def allows(self, rtype: str, action: str) -> bool:
        return any((t == "*" or t == rtype) and action in acts for t, acts in self.grants)

    def intersect(self, ceiling: Scopes) -> Scopes:
        out: dict[str, set[str]] = {}
        for t, acts in self.grants:
            for ct, cacts in ceiling.grants:
                if t == "*" or ct == "*" or t == ct:
                    typ = ct if t == "*" else t
                    common = acts & cacts
                    if common:
                        out.setdefault(typ, set()).update(common)
        if "*" in out:  # a wildcard grant covers the same letters on named types
            out = {t: a for t, a in out.items() if t == "*" or not a <= out["*"]}
        return Scopes(tuple(sorted((t, frozenset(a)) for t, a in out.items())))

    def __bool__(self) -> bool:
        return bool(self.grants)

    def __str__(self) -> str:
        return " ".join(f"system/{t}.{''.join(c for c in ACTIONS if c in acts)}"
                        for t, acts in self.grants)


def role_ceiling(role: str) -> Scopes:
    return Scopes.parse(ROLE_CEILING.get(role, ""))


def supported_scopes() -> list[str]:
    """What `.well-known/smart-configuration` advertises."""
    return ["system/*.rs", "system/*.cruds", "system/*.read", "system/*.write",
            "system/Patient.rs", "system/AuditEvent.rs", "system/Provenance.rs"]


@functools.lru_cache(maxsize=256)
def grant(requested: str | None, role: str) -> Scopes:
    """The scopes a client of `role` gets when it asks for `requested`: never one naming
    a type that is not an R4 resource type (`system/Foo.rs`: a token should say only what
    it allows). Memoised: every request works its token's scopes out again, and `Scopes`
    is immutable."""
    granted = Scopes.parse(requested).intersect(role_ceiling(role))
    known = resource_types()
    return Scopes(tuple((t, a) for t, a in granted.grants if t == "*" or t in known))
