"""Mapping in a second process gives exactly what mapping in-process gives, in order;
unreadable files are reported, configuration errors reach the caller, and a consumer that
stops early leaves no child process behind."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest
from ingest_helpers import FEEDS, TODAY

from fhir_gateway.ingest import IngestError, UnknownPartner, map_file
from fhir_gateway.ingest.background import map_paths

COMMUNITY = sorted((FEEDS / "community").glob("bundle-*.json"))
ACUTE = [FEEDS / "acute" / "adt.hl7", FEEDS / "acute" / "adt-redelivered.hl7"]


@pytest.mark.parametrize(("partner", "paths"), [("community", COMMUNITY), ("acute", ACUTE)])
def test_child_maps_exactly_what_the_parent_would(partner: str, paths: list[Path]) -> None:
    here = [item for p in paths for item in map_file(partner, p.name, p.read_bytes(),
                                                     today=TODAY)]
    files: list[str] = []
    there = list(map_paths(partner, paths, today=TODAY, background=True,
                           on_file=files.append))
    assert there == here and len(here) > 10
    assert files == [p.name for p in paths]


def test_unreadable_files_are_reported_and_the_rest_mapped(tmp_path: Path) -> None:
    missing = tmp_path / "gone.json"
    unreadable: list[str] = []
    there = list(map_paths("community", [COMMUNITY[0], missing, COMMUNITY[1]], today=TODAY,
                           background=True, on_unreadable=unreadable.append))
    here = [item for p in COMMUNITY[:2] for item in map_file("community", p.name,
                                                             p.read_bytes(), today=TODAY)]
    assert there == here
    assert len(unreadable) == 1 and unreadable[0].startswith(f"{missing}: ")


def test_configuration_error_in_the_child_reaches_the_caller() -> None:
    with pytest.raises(UnknownPartner):
        list(map_paths("pharmacy", COMMUNITY[:1], background=True))


def test_stopping_early_ends_the_child() -> None:
    records = map_paths("community", COMMUNITY, today=TODAY, background=True)
    first = next(records)
    assert first is not None
    assert multiprocessing.active_children()  # the child is mapping
    records.close()  # what happens when storing fails mid-run
    assert multiprocessing.active_children() == []


def test_portable_error_keeps_the_text_of_an_unpicklable_exception() -> None:
    import pickle

    from fhir_gateway.ingest.background import _portable

    class Odd(Exception):
        def __init__(self, a: str, b: str) -> None:
            super().__init__(f"{a}/{b}")

    error = pickle.loads(_portable(Odd("x", "y")))
    assert isinstance(error, IngestError)
    assert "Odd: x/y" in str(error)


def test_a_mapping_error_crosses_from_the_child_whole() -> None:
    import pickle

    from fhir_gateway.ingest.background import _portable
    from fhir_gateway.ingest.errors import FieldError, MappingError

    error = pickle.loads(_portable(MappingError("gp.yaml", "fields[2]", "no such element")))
    assert type(error) is MappingError
    assert (error.file, error.where, error.problem) == ("gp.yaml", "fields[2]",
                                                        "no such element")
    field = pickle.loads(pickle.dumps(FieldError("PID-3", "bad check digit")))
    assert (field.field, field.problem) == ("PID-3", "bad check digit")


class _Channel:
    """The child's side of the queue, scripted: what reached the parent."""

    def __init__(self, messages: list[tuple[str, object]]) -> None:
        self.messages = messages

    def get(self, timeout: float) -> tuple[str, object]:
        return self.messages.pop(0)


class _Child:
    exitcode = None

    def is_alive(self) -> bool:
        return True


def test_records_lost_on_the_way_from_the_child_fail_the_run() -> None:
    # A queue drops a message it cannot pickle (a traceback on the child's stderr, no
    # error): the child says how many records it sent, and a shortfall is an error.
    from fhir_gateway.ingest.background import _received

    here = [item for item in map_file("community", COMMUNITY[0].name,
                                      COMMUNITY[0].read_bytes(), today=TODAY)]
    assert len(here) > 1
    whole = [("items", here), ("done", (1000, len(here)))]
    assert list(_received(_Channel(whole), _Child(), "community", None, None)) == here
    short = [("items", here[:1]), ("done", (1000, len(here)))]
    with pytest.raises(IngestError, match=f"sent {len(here)} records but 1 arrived"):
        list(_received(_Channel(short), _Child(), "community", None, None))


def test_a_files_name_is_stored_as_text_fhir_can_carry() -> None:
    import os
    from pathlib import Path

    from fhir_gateway.ingest.background import file_label

    assert file_label(Path(os.fsdecode(b"na\xe9me.csv"))) == "na\ufffdme.csv"
    assert file_label("reg\x01ister\nline.csv") == "reg?ister?line.csv"
    assert file_label(Path("/feeds/gp register.csv")) == "gp register.csv"
