"""One entry point for partner data, shared by the CLI, `POST /ingest/{partner}` and MLLP."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from datetime import date

from ..fhir.repository import Repository
from ..ingest import map_file
from .loader import Loader, Summary


class IngestService:
    def __init__(self, repository: Repository) -> None:
        self.loader = Loader(repository)

    def ingest(self, partner: str, filename: str, data: bytes, *,
               progress: Callable[[int], None] | None = None,
               today: date | None = None) -> Summary:
        """Map and load one partner file. Unknown partner: `ingest.UnknownPartner`.
        `today` pins what "current" means for date rules (tests); default: today."""
        return self.loader.ingest(map_file(partner, filename, data, today=today),
                                  progress=progress)

    def ingest_files(self, partner: str, files: Iterable[tuple[str, bytes]], *,
                     progress: Callable[[int], None] | None = None,
                     today: date | None = None) -> Summary:
        """Several files of one partner as one run (`fhir-gateway ingest PATH...`): held
        records are retried once, after the last file, not after each one. `files` is
        read lazily, so one file at a time is held in memory."""
        records = itertools.chain.from_iterable(
            map_file(partner, name, data, today=today) for name, data in files)
        return self.loader.ingest(records, progress=progress)
