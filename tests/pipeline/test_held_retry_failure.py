"""A run whose held-record retry fails part way (the store going away) still says which
Patients the retry had written before it failed: the caller's audit record of the failed
run names them (`loader.committed_before`)."""

from __future__ import annotations

from typing import Any

import pytest
from identity_kit import COUNCIL_HEAD, Partnership

from fhir_gateway.pipeline.loader import Loader, committed_before
from fhir_gateway.store.base import StoreEngine, StoreUnavailable

ROWS = (COUNCIL_HEAD
        + "SC1,Mr,John,Smith,1940-01-01,DY1 4DX,,Home care,2026-02-01,,A,B\n"
        + "SC2,Mrs,Ann,Jones,1941-02-02,DY2 7AA,,Home care,2026-02-01,,A,B\n").encode()


def _person(family: str, given: str, born: str, postcode: str) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family, "given": [given]}],
            "birthDate": born, "address": [{"postalCode": postcode}]}


def test_a_retry_failing_part_way_names_the_patients_it_had_written(
        engine: StoreEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    p = Partnership(engine)
    assert p.send("socialcare", "s.csv", ROWS).held == 2
    john = p.repo.create(_person("Smith", "John", "1940-01-01", "DY1 4DX")).stored.rid
    ann = p.repo.create(_person("Jones", "Ann", "1941-02-02", "DY2 7AA")).stored.rid
    real, calls = Loader._apply_in, []

    def second_fails(self: Loader, s: Any, item: Any, *args: Any) -> None:
        calls.append(item.person.local_id)
        if len(calls) == 2:
            raise StoreUnavailable("the disk went away")
        real(self, s, item, *args)

    monkeypatch.setattr(Loader, "_apply_in", second_fails)
    with pytest.raises(StoreUnavailable) as failed:
        p.loader.ingest(iter(()))
    first = {"SC1": john, "SC2": ann}[calls[0]]
    partial = committed_before(failed.value)
    assert partial is not None
    assert partial.others_patients == {"socialcare": {first}}
    assert [h["record"]["person"]["local_id"] for _, h in p.loader.list_held()] == [calls[1]]
