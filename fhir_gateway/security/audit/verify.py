"""`fhir-gateway audit verify`: is the audit trail intact?

Checks, over every AuditEvent in the store and every chain head and anchor:
- each event is sealed (it carries a chain link) and was never changed (version 1, and
  its hash recomputes from its content and the previous hash);
- each chain runs 1, 2, ... n without a gap or a repeat, each event pointing at the
  hash of the one before (so nothing was removed or reordered);
- each chain's stored head names its last event (nothing cut off the end);
- each writer's anchors form their own hash chain, and every head an anchor recorded
  is still there with the same hash (a chain cut back past an anchored head, or removed
  whole, is caught; see `chain` for what anchors cannot catch);
- each event's stored history (the version row vread and `_history` serve, a second
  copy on SQLite) is that one version, byte for byte its current content.

Run beside a live gateway it reads anchors and heads before the events, and judges each
chain up to its head as read (`verify`), so events committed meanwhile raise no alarm.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ... import jsonio
from ...fhir.repository import Repository
from ...store.query import IndexQuery
from .chain import (
    ANCHOR_KIND,
    GENESIS,
    HEAD_KIND,
    canonical,
    chain_link,
    content_hash,
)

PAGE = 1000


@dataclass(slots=True)
class Report:
    events: int = 0
    chains: int = 0
    anchors: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        if self.intact:
            return (f"audit trail intact: {self.events} events in {self.chains} chains, "
                    f"{self.anchors} anchors")
        more = f" (and {len(self.problems) - 1} more problems)" if len(self.problems) > 1 \
            else ""
        return f"audit trail NOT intact: {self.problems[0]}{more}"


def _records(repository: Repository, kind: str) -> list[tuple[str, dict[str, Any]]]:
    out, after = [], None
    with repository.engine.session(write=False) as s:
        while True:
            page = s.record_list(kind, after=after, limit=PAGE)
            out += page
            if len(page) < PAGE:
                return out
            after = page[-1][0]


def iter_events(repository: Repository) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Every audit event: (where, version, event)."""
    for name, version, event, _body in _stored_events(repository):
        yield name, version, event


def _stored_events(repository: Repository
                   ) -> Iterator[tuple[str, int, dict[str, Any], str | None]]:
    """Every audit event's current row: (where, version, event, its stored text)."""
    query = IndexQuery(rtype="AuditEvent", limit=PAGE)
    while True:
        found = repository.find(query)
        for stored in found.rows:
            event = jsonio.loads_trusted(stored.body) if stored.body else {}
            yield f"AuditEvent/{stored.rid}", stored.version, event, stored.body
        if len(found.rows) < PAGE:
            break
        query.after = found.keys[-1]


def verify(repository: Repository) -> Report:
    """Check the trail; safe beside a live gateway (its writers keep committing events
    and moving heads). Anchors and heads are read first, then the events: every event up
    to the head as read was committed before the events were read, so each chain is
    judged up to that head. An event past it is newer (judged on its own, and against
    the heads as read after the events); a chain with no head then is a new one."""
    report = Report()
    anchors = _records(repository, ANCHOR_KIND)
    heads = dict(_records(repository, HEAD_KIND))
    links: dict[str, dict[int, tuple[str, str]]] = {}  # chain -> seq -> (prev, hash)
    bodies: dict[str, bytes] = {}  # rid -> digest of the current body (version rows)
    for name, version, event, body in _stored_events(repository):
        report.events += 1
        bodies[name] = _digest(body)
        link = chain_link(event)
        if link is None:
            report.problems.append(f"{name} is not in any chain (added outside the gateway)")
            continue
        chain, seq, prev, digest = link
        if version != 1:
            report.problems.append(f"{name} was changed (version {version})")
        if content_hash(event, prev) != digest:
            report.problems.append(f"{name} ({chain} #{seq}) was edited: its hash does "
                                   "not match its content")
        if seq in links.setdefault(chain, {}):
            report.problems.append(f"{chain} #{seq} appears twice")
        links[chain][seq] = (prev, digest)
    later = dict(_records(repository, HEAD_KIND))  # the heads once the events were read
    chains = set(links) | set(heads)
    report.chains = len(chains | set(later))
    for chain in sorted(chains):
        seqs = links.get(chain, {})
        head = heads.get(chain)
        if head is None and chain in later:
            continue  # begun while the events were read: its events were judged one by one
        upto = head.get("seq", 0) if head is not None else max(seqs, default=0)
        newer = [n for n in seqs if n > upto]
        if newer and max(newer) > (later.get(chain) or {}).get("seq", 0):
            report.problems.append(f"{chain}: #{max(newer)} is past its chain's head "
                                   "(added outside the gateway?)")
        _check_chain(report, chain, {n: v for n, v in seqs.items() if n <= upto}, head)
    _check_anchors(report, links, anchors)
    _check_versions(report, repository, bodies, heads)
    return report


def _digest(body: str | None) -> bytes:
    return hashlib.blake2b((body or "").encode("utf-8"), digest_size=16).digest()


def _check_versions(report: Report, repository: Repository, bodies: dict[str, bytes],
                    heads: dict[str, dict[str, Any]]) -> None:
    """Each event's stored version rows (what vread and _history serve) equal its current
    body: one version, the same bytes. Read in pages of the type's history, not one read
    per event. A version row with no current row read is an event stored since the heads
    were read (past its chain's head then, and not past it now), or one added to the
    history alone."""
    seen: set[str] = set()
    unread: list[tuple[str, tuple[str, int] | None]] = []
    cursor: str | None = None
    while True:
        page = repository.history(rtype="AuditEvent", cursor=cursor, limit=PAGE)
        for stored in page.versions:
            name = f"AuditEvent/{stored.rid}"
            current = bodies.get(name)
            if current is None:
                link = chain_link(jsonio.loads_trusted(stored.body)) if stored.body else None
                unread.append((name, link[:2] if link else None))
                continue
            seen.add(name)
            if stored.version != 1:
                report.problems.append(f"{name} has a version {stored.version} in its "
                                       "history (an AuditEvent is never changed)")
            elif _digest(stored.body) != current:
                report.problems.append(f"{name}: its history (vread, _history) differs "
                                       "from its current content (edited in one copy)")
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    now = dict(_records(repository, HEAD_KIND)) if unread else {}
    for name, link in unread:
        if link is None or not (heads.get(link[0], {}).get("seq", 0) < link[1]
                                <= now.get(link[0], {}).get("seq", 0)):
            report.problems.append(f"{name} is in the history (vread, _history) but not "
                                   "in the store (added there, or left behind)")
    for name in sorted(set(bodies) - seen)[:1000]:
        report.problems.append(f"{name} has no stored version (its history is gone)")


def _check_chain(report: Report, chain: str, seqs: dict[int, tuple[str, str]],
                 head: dict[str, Any] | None) -> None:
    last = max(seqs, default=0)
    missing = [n for n in range(1, last + 1) if n not in seqs]
    if missing:
        report.problems.append(f"{chain}: events {_ranges(missing)} are missing")
    for n in sorted(seqs):
        expected = seqs[n - 1][1] if n - 1 in seqs else (GENESIS if n == 1 else None)
        if expected is not None and seqs[n][0] != expected:
            report.problems.append(f"{chain} #{n} does not follow #{n - 1} (reordered or "
                                   "replaced)")
    if head is None:
        report.problems.append(f"{chain}: no head record")
    elif head.get("seq") != last or (last and head.get("hash") != seqs[last][1]):
        report.problems.append(f"{chain}: the head says #{head.get('seq')} but the chain "
                               f"ends at #{last} (events removed from its end?)")


def _check_anchors(report: Report, links: dict[str, dict[int, tuple[str, str]]],
                   anchors: list[tuple[str, dict[str, Any]]]) -> None:
    by_writer: dict[str, list[dict[str, Any]]] = {}
    for _key, value in anchors:
        by_writer.setdefault(str(value.get("writer")), []).append(value)
    report.anchors = len(anchors)
    for writer, items in by_writer.items():
        prev = GENESIS
        for expected_seq, anchor in enumerate(sorted(items, key=lambda a: a.get("seq", 0)), 1):
            body = {k: v for k, v in anchor.items() if k != "hash"}
            if anchor.get("seq") != expected_seq or anchor.get("prev") != prev or \
                    hashlib.sha256(canonical(body)).hexdigest() != anchor.get("hash"):
                report.problems.append(f"anchor {writer} #{anchor.get('seq')} was altered, "
                                       "removed or reordered")
                break
            prev = anchor["hash"]
            for chain, (seq, digest) in (anchor.get("heads") or {}).items():
                if seq and links.get(chain, {}).get(seq, (None, None))[1] != digest:
                    report.problems.append(f"{chain} #{seq}, anchored by {writer} at "
                                           f"{anchor.get('at')}, is gone or changed")


def _ranges(numbers: list[int]) -> str:
    shown = ", ".join(f"#{n}" for n in numbers[:5])
    return shown + (f" and {len(numbers) - 5} more" if len(numbers) > 5 else "")
