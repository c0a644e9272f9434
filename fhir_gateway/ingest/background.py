"""Mapping partner files in a second process while the caller stores what is mapped.

Reading, parsing, mapping and the R4 model check of each record need nothing from the
store, so a child process does them for a whole run of files and streams the results, in
file order, through a bounded queue: the parent (the one store writer) never waits for
mapping once the queue has filled, and at most `depth` chunks are in flight, so memory
stays bounded whatever the size of the files. The records are exactly what `map_file`
gives in-process (same code, same order); only the process differs.

The child is started with "spawn" (never fork): the parent may hold open SQLite
connections and threads. Starting it costs about a second of imports, so small inputs
are mapped in-process (`map_paths` decides).
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import pickle
import queue as queue_module
import resource
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .errors import IngestError
from .mapping import map_file
from .model import MappedRecord, Rejection

#: Below this many bytes in all, files are mapped in-process (no child to start).
BACKGROUND_MIN_BYTES = 1024 * 1024
CHUNK = 64  # records per message: pickling many small messages costs more than it saves
DEPTH = 32  # chunks in flight at most
#: The largest peak RSS (KiB) a mapping child of this process reported (bench/ingest.py).
child_peak_rss_kib = 0


def map_paths(partner: str, paths: Sequence[Path], *, today: dt.date | None = None,
              on_unreadable: Callable[[str], None] | None = None,
              on_file: Callable[[str], None] | None = None,
              background: bool | None = None) -> Iterator[MappedRecord | Rejection]:
    """Every record of `paths` (one partner's files) in order, as `map_file` maps them.
    A file that cannot be read is reported to `on_unreadable` ("path: reason") and
    skipped; `on_file` is told each file's name as its records start. `background`: map
    in a child process (None: when the files hold at least BACKGROUND_MIN_BYTES)."""
    if background is None:
        background = _size(paths) >= BACKGROUND_MIN_BYTES
    if background:
        return _in_child(partner, list(paths), today, on_unreadable, on_file)
    return _here(partner, paths, today, on_unreadable, on_file)


def _size(paths: Sequence[Path]) -> int:
    total = 0
    for path in paths:
        try:
            total += path.stat().st_size
        except OSError:
            continue  # reported when it is read
    return total


def _here(partner: str, paths: Sequence[Path], today: dt.date | None,
          on_unreadable: Callable[[str], None] | None,
          on_file: Callable[[str], None] | None) -> Iterator[MappedRecord | Rejection]:
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            if on_unreadable:
                on_unreadable(f"{path}: {exc.strerror}")
            continue
        name = file_label(path)
        if on_file:
            on_file(name)
        yield from map_file(partner, name, data, today=today)


def file_label(path: Path | str) -> str:
    """The file's name as stored text: a name that is not UTF-8 (a latin-1 é, which the
    file system hands over as a surrogate escape) would make every record naming it
    unwritable (no UTF-8 text holds the escape), so its bad bytes are shown as U+FFFD;
    control characters (FHIR text cannot carry them; Provenance names the file) as `?`."""
    name = path.name if isinstance(path, Path) else path
    text = os.fsencode(name).decode("utf-8", "replace")
    return "".join("?" if ord(c) < 32 or ord(c) == 127 else c for c in text)


def _produce(partner: str, paths: list[Path], today: dt.date | None,
             out: Any) -> None:
    """The child: map every file and send ("items", [...]) chunks, ("file", name),
    ("unreadable", text), then ("done", (its peak RSS in KiB, records sent)) or ("error",
    pickled exception)."""
    try:
        chunk: list[MappedRecord | Rejection] = []
        sent = 0

        def flush() -> None:
            nonlocal sent
            if chunk:
                out.put(("items", list(chunk)))
                sent += len(chunk)
                chunk.clear()

        def unreadable(text: str) -> None:
            out.put(("unreadable", text))

        def file_started(name: str) -> None:
            flush()
            out.put(("file", name))

        for item in _here(partner, paths, today, unreadable, file_started):
            chunk.append(item)
            if len(chunk) >= CHUNK:
                flush()
        flush()
        out.put(("done", (_peak_rss_kib(), sent)))
    except BaseException as exc:  # sent to the parent, which raises it
        out.put(("error", _portable(exc)))


def _peak_rss_kib() -> int:
    """This process's own peak RSS. VmHWM belongs to the memory map, which exec replaced;
    ru_maxrss also counts the parent's pages the child shared before exec."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _portable(exc: BaseException) -> bytes:
    """The exception pickled, or an IngestError with its text when it does not survive
    pickling (an exception whose constructor takes other arguments than its message)."""
    try:
        data = pickle.dumps(exc)
        pickle.loads(data)
        return data
    except Exception:
        return pickle.dumps(IngestError(f"{type(exc).__name__}: {exc}"))


def _in_child(partner: str, paths: list[Path], today: dt.date | None,
              on_unreadable: Callable[[str], None] | None,
              on_file: Callable[[str], None] | None) -> Iterator[MappedRecord | Rejection]:
    ctx = multiprocessing.get_context("spawn")
    channel: Any = ctx.Queue(maxsize=DEPTH)
    child = ctx.Process(target=_produce, args=(partner, paths, today, channel),
                        name=f"fhir-gateway map {partner}", daemon=True)
    child.start()
    try:
        yield from _received(channel, child, partner, on_unreadable, on_file)
    finally:
        # Also when the consumer stops early (an exception while storing): no orphan.
        if child.is_alive():
            child.terminate()
        child.join(timeout=10)
        channel.close()
        channel.cancel_join_thread()


def _received(channel: Any, child: Any, partner: str,
              on_unreadable: Callable[[str], None] | None,
              on_file: Callable[[str], None] | None) -> Iterator[MappedRecord | Rejection]:
    """The child's messages turned back into records (and `on_file`/`on_unreadable`
    calls), until it says it is done; raises what it raised, or if it died."""
    received = 0
    while True:
        try:
            kind, payload = channel.get(timeout=1.0)
        except queue_module.Empty:
            if not child.is_alive():
                raise IngestError(f"the mapping process for {partner} stopped "
                                  f"(exit code {child.exitcode}) before the end of "
                                  "the files; nothing after the last stored record "
                                  "was read") from None
            continue
        if kind == "items":
            received += len(payload)
            yield from payload
        elif kind == "file":
            if on_file:
                on_file(payload)
        elif kind == "unreadable":
            if on_unreadable:
                on_unreadable(payload)
        elif kind == "error":
            raise pickle.loads(payload)
        else:
            peak, sent = payload
            if sent != received:
                # a queue drops a message it cannot pickle, with only a traceback on
                # the child's stderr: never let that pass as a complete run
                raise IngestError(f"the mapping process for {partner} sent {sent} "
                                  f"records but {received} arrived; the run is "
                                  "incomplete (loading the files again is safe)")
            # The child's own peak (RUSAGE_CHILDREN would count the parent's pages
            # the child shared before exec).
            global child_peak_rss_kib
            child_peak_rss_kib = max(child_peak_rss_kib, int(peak))
            return
