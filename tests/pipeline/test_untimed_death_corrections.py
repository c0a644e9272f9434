"""A partner without event times corrects what it said of a death in its next extract.

The GP register and the community trust send whole extracts with no event time: every
delivery of one row is stamped alike. Their correction of a date of death, or their
"not deceased" after a death recorded in error, answered "unchanged" and was dropped: a
living person stayed DECEASED on the crew's summary. Real feed text through
`IngestService`, on SQLite and mongomock."""

from __future__ import annotations

import json

import identity_kit
import pytest
from identity_kit import GP_HEAD, NHS, X

from fhir_gateway.store.base import StoreEngine


@pytest.fixture
def p(engine: StoreEngine) -> identity_kit.Partnership:
    return identity_kit.Partnership(engine)


def gp_row(died: str) -> bytes:
    return (GP_HEAD + f"{X},SMITH,John,01/01/1940,M,Y90028,Dr A,01/01/2026,Red,Home,"
            f"01/01/2026,Y,10/01/2026,Plan,01/02/2026,{died},Home\n").encode()


def community(**patient: object) -> bytes:
    resource = {"resourceType": "Patient", "id": "CM1",
                "identifier": [{"system": NHS, "value": X},
                               {"system": "https://community.example.nhs.uk/Id/patient",
                                "value": "CM1"}],
                "name": [{"family": "Smith", "given": ["John"]}], "gender": "male",
                "birthDate": "1940-01-01", **patient}
    return json.dumps({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:pat-CM1", "resource": resource}]}).encode()


def death(p: identity_kit.Partnership) -> dict[str, object]:
    (patient,) = p.patients()
    return {k: v for k, v in patient.items() if k.startswith("deceased")}


def test_the_gp_registers_corrected_date_of_death_is_taken(
        p: identity_kit.Partnership) -> None:
    p.send("gp", "reg1.csv", gp_row("12/10/2026"))
    assert death(p) == {"deceasedDateTime": "2026-10-12"}
    again = p.send("gp", "reg2.csv", gp_row("21/10/2026"))
    assert again.rejected == 0 and again.updated >= 1
    assert death(p) == {"deceasedDateTime": "2026-10-21"}
    same = p.send("gp", "reg3.csv", gp_row("21/10/2026"))
    assert same.updated == 0 and same.created == 0  # the same extract again: no-op


def test_the_community_trusts_not_deceased_after_a_death_in_error_is_taken(
        p: identity_kit.Partnership) -> None:
    p.send("community", "c1.json", community(deceasedDateTime="2026-10-12"))
    assert death(p) == {"deceasedDateTime": "2026-10-12"}
    fixed = p.send("community", "c2.json", community(deceasedBoolean=False))
    assert fixed.updated == 1, fixed
    assert death(p) == {"deceasedBoolean": False}
    # and a death it records later is taken too
    p.send("community", "c3.json", community(deceasedDateTime="2026-11-01"))
    assert death(p) == {"deceasedDateTime": "2026-11-01"}
