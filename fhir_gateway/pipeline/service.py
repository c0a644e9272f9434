"""One entry point for partner data, shared by the CLI, `POST /ingest/{partner}` and MLLP."""

from __future__ import annotations

from collections.abc import Callable
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
