"""A sixth partner with a known format is a mapping file (and its ConceptMaps), no Python.

The care home here sends `;`-separated CSV with dd-Mon-yyyy dates and its own words for
a DNAR decision and for where a resident wishes to die; its mapping and ConceptMaps are
written by this test alone, beside no code change. It reuses a shipped ConceptMap too.
"""

from __future__ import annotations

import json
from pathlib import Path

from ingest_helpers import by_code, mapped, rejected, run

MAPPING = """\
partner: carehome
name: Meadow View Nursing Home
ods_code: X9K01
mapping_version: "0.1.0"
format:
  reader: csv
  delimiter: ";"
  date_formats: [dd-Mon-yyyy]
record:
  id: "${Resident No}"
person:
  local_system: https://meadowview.example/Id/resident
patient:
  identifier:
    - system: https://fhir.nhs.uk/Id/nhs-number
      value: "${nhs:NHS Number}"
    - system: https://meadowview.example/Id/resident
      value: "${Resident No}"
  name: [{family: "${Surname}", given: ["${words:First Names}"]}]
  gender: "${code:hl7v2-sex:Gender}"
  birthDate: "${date:Born}"
resources:
  - name: cpr-decision
    require: [valueCodeableConcept]
    otherwise: retract
    identifier:
      system: https://fhir.shared-care-record.example/Id/carehome/cpr-decision
      value: "${Resident No}"
    resource:
      resourceType: Observation
      status: final
      code: {coding: [{system: http://snomed.info/sct, code: "304251008"}]}
      subject: {reference: "urn:gateway:patient"}
      effectiveDateTime: "${date:DNAR Signed}"
      valueCodeableConcept: "${concept:carehome-dnar:DNAR}"
  - name: preferred-place-of-death
    require: [valueCodeableConcept]
    identifier:
      system: https://fhir.shared-care-record.example/Id/carehome/preferred-place-of-death
      value: "${Resident No}"
    resource:
      resourceType: Observation
      status: final
      code:
        coding:
          - system: https://fhir.shared-care-record.example/CodeSystem/end-of-life-observation
            code: preferred-place-of-death
      subject: {reference: "urn:gateway:patient"}
      effectiveDateTime: "${date:Wishes Recorded}"
      valueCodeableConcept: "${concept:carehome-place:Wishes to die at}"
"""


def conceptmap(map_id: str, target: str, elements: list[tuple[str, str | None]]) -> dict:
    return {
        "resourceType": "ConceptMap", "id": map_id, "status": "draft",
        "group": [{"target": target, "element": [
            {"code": term, "target": [{"code": code, "equivalence": "equivalent"}
                                      if code else {"equivalence": "unmatched"}]}
            for term, code in elements]}],
    }


def make_partner(folder: Path) -> Path:
    (folder / "carehome.yaml").write_text(MAPPING)
    maps = folder / "conceptmaps"
    maps.mkdir()
    for body in (
        conceptmap("carehome-dnar", "http://snomed.info/sct",
                   [("Yes", "450476008"), ("No", None)]),
        conceptmap("carehome-place",
                   "https://fhir.shared-care-record.example/CodeSystem/death-location-type",
                   [("Here", "40"), ("Hospital", "10"), ("Own home", "21")]),
    ):
        (maps / f"{body['id']}.json").write_text(json.dumps(body))
    return folder


FILE = "\n".join([
    "Resident No;NHS Number;Surname;First Names;Gender;Born;DNAR;DNAR Signed;"
    "Wishes to die at;Wishes Recorded",
    "R1;943 476 5919;Ward;Jean Mary;F;28-Jun-1930;Yes;02-Mar-2026;Here;02-Mar-2026",
    "R2;;Smith;Peter;M;22-Feb-1933;No;;Hospital;10-Jan-2026",
    "R3;9434765918;Green;Ann;F;01-Jan-1940;Yes;02-Mar-2026;Here;02-Mar-2026",
]) + "\n"


def test_a_care_home_feed_with_a_mapping_written_for_the_test(tmp_path: Path) -> None:
    results = run("carehome", FILE, "residents.csv", mapping_dir=make_partner(tmp_path))
    first, second = mapped(results)
    assert first.source.partner == "carehome" and first.source.ods_code == "X9K01"
    assert first.person.nhs_number == "9434765919" and first.person.local_id == "R1"
    assert first.person.birth_date == "1930-06-28" and first.person.gender == "female"
    [cpr] = by_code(first, "304251008")
    assert cpr["valueCodeableConcept"]["coding"][0]["code"] == "450476008"
    assert cpr["effectiveDateTime"] == "2026-03-02"
    [ppd] = by_code(first, "preferred-place-of-death")
    assert ppd["valueCodeableConcept"]["coding"][0]["code"] == "40"

    assert second.person.nhs_number is None and second.person.local_id == "R2"
    assert by_code(second, "304251008") == []
    assert [k.value for k in second.retracted] == ["R2"]

    [bad] = rejected(results)
    assert bad.field == "NHS Number"
    for part in ("carehome", "residents.csv", "line 4", "check digit"):
        assert part in bad.reason


def test_the_shipped_partners_are_untouched_by_it(tmp_path: Path) -> None:
    make_partner(tmp_path)
    from fhir_gateway.ingest import partners

    assert "carehome" in partners(tmp_path)
    assert "carehome" not in partners()
