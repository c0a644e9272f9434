"""An AuditEvent's index values without FHIRPath (and no compartment: see below).

An AuditEvent is written for every request, so how it is stored is on the hot path. Its
shape is fixed (`events.audit_event`), so the elements each R4 AuditEvent search parameter
selects are picked directly here and typed by the same extractor functions the generic
path uses (`search.extract.values_for`); a parameter not listed falls back to its FHIRPath.
A test checks the result equals the generic extractor's on every event shape written.

AuditEvents are not put in the Patient compartment, though R4 lists them there: a
patient's `$everything` would otherwise wade through every read of their record, and
the audit trail is sharded by writer, not by patient (SCALE.md). `patient=` searches use
the index, not the compartment, and still work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...search.extract import _companions, values_for
from ...search.registry import SearchParam, SearchRegistry
from ...store.base import IndexEntry


def _agents(event: dict[str, Any]) -> list[dict[str, Any]]:
    return event.get("agent") or []


def _entities(event: dict[str, Any]) -> list[dict[str, Any]]:
    return event.get("entity") or []


def _present(values: list[Any]) -> list[Any]:
    return [v for v in values if v is not None]


def _flat(values: list[Any]) -> list[Any]:
    return [x for v in values if v for x in (v if isinstance(v, list) else [v])]


def _union(nodes: list[Any]) -> list[Any]:
    """FHIRPath `|`: equal nodes once."""
    out: list[Any] = []
    for node in nodes:
        if node not in out:
            out.append(node)
    return out


def _is_patient(ref: Any) -> bool:
    return isinstance(ref, dict) and str(ref.get("reference", "")).startswith("Patient/")


NODES: dict[str, Callable[[dict[str, Any]], list[Any]]] = {
    "action": lambda e: _present([e.get("action")]),
    "address": lambda e: _present([(a.get("network") or {}).get("address") for a in _agents(e)]),
    "agent": lambda e: _present([a.get("who") for a in _agents(e)]),
    "agent-name": lambda e: _present([a.get("name") for a in _agents(e)]),
    "agent-role": lambda e: _flat([a.get("role") for a in _agents(e)]),
    "altid": lambda e: _present([a.get("altId") for a in _agents(e)]),
    "date": lambda e: _present([e.get("recorded")]),
    "entity": lambda e: _present([x.get("what") for x in _entities(e)]),
    "entity-name": lambda e: _present([x.get("name") for x in _entities(e)]),
    "entity-role": lambda e: _present([x.get("role") for x in _entities(e)]),
    "entity-type": lambda e: _present([x.get("type") for x in _entities(e)]),
    "outcome": lambda e: _present([e.get("outcome")]),
    "patient": lambda e: _union([a["who"] for a in _agents(e) if _is_patient(a.get("who"))]
                                + [x["what"] for x in _entities(e) if _is_patient(x.get("what"))]),
    "policy": lambda e: _flat([a.get("policy") for a in _agents(e)]),
    "site": lambda e: _present([(e.get("source") or {}).get("site")]),
    "source": lambda e: _present([(e.get("source") or {}).get("observer")]),
    "subtype": lambda e: e.get("subtype") or [],
    "type": lambda e: _present([e.get("type")]),
}


_MEMO: dict[tuple[str, str], tuple[IndexEntry, ...]] = {}
_MEMO_SIZE = 4096


def _entries(param: SearchParam, node: Any) -> tuple[IndexEntry, ...]:
    """A node's index entries, memoised: most nodes (codings, the client, the gateway)
    repeat from event to event, and `values_for` is a pure function of (param, node)."""
    key = (param.code, repr(node))
    found = _MEMO.get(key)
    if found is None:
        found = (*(IndexEntry(param.code, v) for v in values_for(param, node)),
                 *_companions(param, node))
        if len(_MEMO) >= _MEMO_SIZE:
            _MEMO.clear()
        _MEMO[key] = found
    return found


def audit_index(registry: SearchRegistry, event: dict[str, Any]) -> list[IndexEntry]:
    entries: list[IndexEntry] = []
    for code, param in registry.params("AuditEvent").items():
        if not param.indexed:
            continue
        pick = NODES.get(code)
        for node in pick(event) if pick else param.evaluate(event):
            entries.extend(_entries(param, node))
    return entries
