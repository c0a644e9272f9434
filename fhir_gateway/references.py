"""Literal references (R4 2.3.0.1): `[base/]Type/id[/_history/version]`, read one way.

Search indexing, `_include`, consent, identity and the partners' readers each need the
type, id and version of a reference; one parser keeps them agreeing on what a reference
names. It is deliberately lenient about the id and version (a partner's STU3 id, a version
that is not a FHIR id): callers that need this server's own ids look the id up, and a
reference whose id cannot exist here simply finds nothing. The type must look like a
resource type (capitalised), so `Patient/1/_history/2` is never read as type `_history`.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_LITERAL = re.compile(r"(?:(?P<base>.*)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[^/]+)"
                      r"(?:/_history/(?P<version>.+))?", re.DOTALL)


class LiteralReference(NamedTuple):
    base: str | None  # None: relative (`Patient/1`); else what came before `/Type/id`
    type: str
    id: str
    version: str | None

    @property
    def relative(self) -> bool:
        return self.base is None

    @property
    def unversioned(self) -> str:
        """The reference as written, without its `/_history/version`."""
        local = f"{self.type}/{self.id}"
        return local if self.base is None else f"{self.base}/{local}"


def literal_reference(ref: object) -> LiteralReference | None:
    """The parts of a `Type/id` reference (relative or absolute, a version named or not),
    or None for anything else: `#contained`, `urn:uuid:`, a conditional `Type?query`, an
    anything not ending in `Type/id` (with `/_history/version` or not)."""
    if not isinstance(ref, str):
        return None
    m = _LITERAL.fullmatch(ref)
    if m is None:
        return None
    return LiteralReference(m["base"], m["type"], m["id"], m["version"])
