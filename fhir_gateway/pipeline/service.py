"""One entry point for partner data, shared by the CLI, `POST /ingest/{partner}` and MLLP."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

from ..fhir.repository import Repository
from ..ingest import map_file
from ..ingest.background import map_paths
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

    def ingest_paths(self, partner: str, paths: Sequence[Path], *,
                     progress: Callable[[int], None] | None = None,
                     on_unreadable: Callable[[str], None] | None = None,
                     on_file: Callable[[str], None] | None = None) -> Summary:
        """Several files of one partner as one run (`fhir-gateway ingest PATH...`): held
        records are retried once, after the last file, not after each one. Large inputs
        are mapped in a second process while this one stores (`ingest.background`)."""
        return self.loader.ingest(
            map_paths(partner, paths, on_unreadable=on_unreadable, on_file=on_file),
            progress=progress)
