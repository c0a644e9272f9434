"""Literal references (R4 2.3.0.1): `[base/]Type/id[/_history/version]`, read one way.

Search indexing, `_include`, consent, identity and the partners' readers each need the
type, id and version of a reference; one parser keeps them agreeing on what a reference
names. What each accepts stays the caller's rule: the index takes only relative
references to an id this server could hold (`has_fhir_id`), consent any base, cautiously.

The parser is lenient where leniency is the cautious reading: whitespace around the
reference is ignored (`Patient/p1\n` is p1, as the regexes before it read it, so a
resource cannot leave its patient's compartment, and their consent, by a stray newline),
and any version, even an empty one (`Patient/p1/_history/`), still names the resource.
It is strict where a wrong reading would move data: the type must look like a resource
type (capitalised: `Patient/1/_history/2` is never type `_history`) and an id holds no
whitespace.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

_LITERAL = re.compile(r"(?:(?P<base>.*)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[^/\s]+)"
                      r"(?:/_history/(?P<version>.*))?", re.DOTALL)
#: FHIR R4 id: 1-64 of [A-Za-z0-9-.] (R4 2.24.0.3, `id` datatype)
FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_RELATIVE = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})")


class LiteralReference(NamedTuple):
    base: str | None  # None: relative (`Patient/1`); else what came before `/Type/id`
    type: str
    id: str
    version: str | None  # as written after `/_history/` (may be empty), else None

    @property
    def relative(self) -> bool:
        return self.base is None

    @property
    def has_fhir_id(self) -> bool:
        """Whether the id is one this server could hold (else it names nothing here)."""
        return FHIR_ID.fullmatch(self.id) is not None

    @property
    def unversioned(self) -> str:
        """The reference without its `/_history/version` (and surrounding whitespace)."""
        local = f"{self.type}/{self.id}"
        return local if self.base is None else f"{self.base}/{local}"


def literal_reference(ref: object) -> LiteralReference | None:
    """The parts of a `Type/id` reference (relative or absolute, a version named or not),
    or None for anything else: `#contained`, `urn:uuid:`, a conditional `Type?query`,
    anything not ending in `Type/id` (with `/_history/version` or not)."""
    if not isinstance(ref, str):
        return None
    # consent reads the same few references for every resource of a record it judges:
    # remembered (short ones only, so no partner's text can fill the memory)
    return _parsed(ref) if len(ref) <= _REMEMBERED_CHARS else _parse(ref)


def _parse(ref: str) -> LiteralReference | None:
    m = _RELATIVE.fullmatch(ref)  # nearly every reference: one cheap match
    if m is not None:
        return LiteralReference(None, m[1], m[2], None)
    m = _LITERAL.fullmatch(ref.strip())
    if m is None:
        return None
    return LiteralReference(m["base"], m["type"], m["id"], m["version"])


_REMEMBERED_CHARS = 256
_parsed = lru_cache(maxsize=16384)(_parse)
