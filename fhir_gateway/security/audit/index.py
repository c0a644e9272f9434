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

import functools
from collections.abc import Callable
from dataclasses import dataclass
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
    "_id": lambda e: _present([e.get("id")]),
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


#: Parameters whose elements are the same for every request of one client (its agents,
#: the gateway as source, the event type): their entries are memoised per group, keyed by
#: the group's elements, so a request pays one `repr` per group instead of one per node.
GROUPS: dict[str, tuple[str, ...]] = {
    "agent": ("address", "agent", "agent-name", "agent-role", "altid", "policy"),
    "source": ("site", "source"),
    "type": ("action", "outcome", "subtype", "type"),
}
_GROUP_OF = {code: group for group, codes in GROUPS.items() for code in codes}
_GROUP_INPUT: dict[str, Callable[[dict[str, Any]], Any]] = {
    "agent": lambda e: e.get("agent"),
    "source": lambda e: e.get("source"),
    "type": lambda e: (e.get("action"), e.get("outcome"), e.get("subtype"), e.get("type")),
}
#: Set by the trail when it stamps `meta` (`stamped_index`); the event has no `meta` yet.
META_PARAMS = frozenset({"_lastUpdated", "_profile", "_security", "_source", "_tag"})

#: Parameters of `_Plan.each` whose nodes repeat (codings): memoised per node. The others
#: (the id, the date, references naming this request's patient and resource) are new
#: with nearly every event and would only churn the memo.
REPEATING = frozenset({"entity-name", "entity-role", "entity-type"})

_MEMO: dict[tuple[str, str], tuple[IndexEntry, ...]] = {}
_MEMO_SIZE = 4096


def _remember(key: tuple[str, str], make: Callable[[], tuple[IndexEntry, ...]]
              ) -> tuple[IndexEntry, ...]:
    found = _MEMO.get(key)
    if found is None:
        found = make()
        if len(_MEMO) >= _MEMO_SIZE:
            _MEMO.clear()
        _MEMO[key] = found
    return found


def _node_entries(param: SearchParam, node: Any) -> tuple[IndexEntry, ...]:
    return (*(IndexEntry(param.code, v) for v in values_for(param, node)),
            *_companions(param, node))


def _entries(param: SearchParam, node: Any) -> tuple[IndexEntry, ...]:
    """A node's index entries, memoised: most nodes (codings, the client, the gateway)
    repeat from event to event, and `values_for` is a pure function of (param, node)."""
    return _remember((param.code, repr(node)), lambda: _node_entries(param, node))


@dataclass(frozen=True, slots=True)
class _Plan:
    """What to index for an AuditEvent under one registry, worked out once: the grouped
    parameters, and each other one with how its nodes are read and turned into entries."""

    groups: tuple[tuple[str, tuple[tuple[SearchParam, Callable[..., list[Any]]], ...]], ...]
    each: tuple[tuple[SearchParam, Callable[..., list[Any]],
                      Callable[[SearchParam, Any], tuple[IndexEntry, ...]]], ...]


@functools.cache  # a registry per gateway (tests make more): each keeps its plan
def _plan(registry: SearchRegistry) -> _Plan:
    params = {code: p for code, p in registry.params("AuditEvent").items()
              if p.indexed and code not in META_PARAMS}
    grouped: dict[str, list[tuple[SearchParam, Callable[..., list[Any]]]]] = {}
    each: list[tuple[SearchParam, Callable[..., list[Any]],
                     Callable[[SearchParam, Any], tuple[IndexEntry, ...]]]] = []
    for code, param in params.items():
        pick = NODES.get(code)
        if pick is not None and code in _GROUP_OF:
            grouped.setdefault(_GROUP_OF[code], []).append((param, pick))
        else:
            each.append((param, pick or param.evaluate,
                         _entries if code in REPEATING else _node_entries))
    return _Plan(tuple((g, tuple(ps)) for g, ps in grouped.items()), tuple(each))


def _group_entries(params: tuple[tuple[SearchParam, Callable[..., list[Any]]], ...],
                   event: dict[str, Any]) -> tuple[IndexEntry, ...]:
    return tuple(e for param, pick in params for node in pick(event)
                 for e in _node_entries(param, node))


def audit_index(registry: SearchRegistry, event: dict[str, Any]) -> list[IndexEntry]:
    """The index entries of an AuditEvent not yet stamped (no `meta`): every indexed
    parameter but those on `meta`, which `stamped_index` adds when the trail stamps it."""
    plan = _plan(registry)
    entries: list[IndexEntry] = []
    for group, params in plan.groups:
        entries.extend(_remember((f"group:{group}", repr(_GROUP_INPUT[group](event))),
                                 functools.partial(_group_entries, params, event)))
    for param, pick, entries_of in plan.each:
        for node in pick(event):
            entries.extend(entries_of(param, node))
    return entries


def stamped_index(registry: SearchRegistry, stamped: str) -> tuple[IndexEntry, ...]:
    """The `_lastUpdated` entry of an event stamped `stamped` (its `meta.lastUpdated`)."""
    param = registry.params("AuditEvent").get("_lastUpdated")
    if param is None or not param.indexed:
        return ()
    return _node_entries(param, stamped)
