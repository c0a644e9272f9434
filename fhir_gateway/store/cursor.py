"""Opaque keyset cursors: a position in an ordered listing, safe to hand to a client."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from .base import StoreError

#: a cursor's numbers bind as SQLite / BSON 64-bit integers
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class BadCursor(StoreError):
    """A cursor the gateway did not issue (or one that was altered)."""


def encode_cursor(*key: object) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def history_cursor(version: Any) -> str:
    """The cursor of a history listing after `version` (both engines list versions newest
    first by last_updated, type, id, version: their keyset)."""
    return encode_cursor(version.last_updated, version.rtype, version.rid, version.version)


def _key_part(value: object) -> bool:
    """What a cursor issued here holds: text, a 64-bit integer, or a finite double (a
    number or quantity sort value; -1e308 for a missing one)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return _INT64_MIN <= value <= _INT64_MAX
    if isinstance(value, float):
        return math.isfinite(value)  # json reads NaN and Infinity too
    return isinstance(value, str)


def decode_cursor(cursor: str, width: int | None = None) -> list:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # deep nesting too
        raise BadCursor(f"not a cursor this gateway issued: {cursor[:40]!r}") from exc
    if not isinstance(key, list) or not all(_key_part(k) for k in key):
        raise BadCursor(f"not a cursor this gateway issued: {cursor[:40]!r}")
    if width is not None and len(key) != width:
        raise BadCursor(f"not a cursor of this listing: {cursor[:40]!r}")
    return key
