"""What mapping a partner file produces: one `MappedRecord` or one `Rejection` per record.

These types are the contract between ingestion (readers and mapping) and what is built on
top (identity resolution, storage, provenance). They are frozen and hold only plain data:
FHIR resources are R4 JSON dicts, dates are FHIR date/dateTime strings.

References to the person inside mapped resources are written as `PATIENT_REFERENCE`
(`{"reference": "urn:gateway:patient"}`); the identity stage rewrites them to the resolved
Patient. References between mapped resources are logical references by business
identifier (`{"type": "Encounter", "identifier": {...}}`), valid R4 as they stand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: How a mapped resource refers to the person the record is about.
PATIENT_REFERENCE = "urn:gateway:patient"

#: The NHS number identifier system (DOMAIN.md).
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
#: `meta.tag` system naming the partner feed that wrote a resource over the REST API: the
#: feed may read, change and delete what carries its own tag (security.access).
PARTNER_TAG_SYSTEM = "https://fhir.example.org/shared-care-record/CodeSystem/partner"


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a record came from: enough to cite it in Provenance and to find it again.

    `position` is the human place in the file: "line 7" (CSV: the physical line the row
    starts on; JSON Lines), "message 3" (HL7 v2, counting from 1), "entry 4" (a Bundle).
    `record_id` is the partner's own key for the record (MSH-10, a CSV row key, a client
    id, a Bundle entry's fullUrl), None when the record is too broken to have one.
    `event_time` is when the partner says the event happened (e.g. EVN-2 or MSH-7), a FHIR
    dateTime with offset, or None. `raw` is the record's text exactly as received.
    """

    partner: str
    ods_code: str
    partner_name: str
    file: str
    position: str
    record_id: str | None
    event_time: str | None
    mapping_version: str
    raw: str


@dataclass(frozen=True, slots=True)
class PersonKey:
    """Who a record is about, as the partner identifies them (input to identity matching).

    `nhs_number` is ten digits that pass the Modulus 11 check, or None when the record
    carries none; `nhs_number_given` is the text the partner sent (e.g. "943 476 5919").
    `local_system`/`local_id` is the partner's own identifier for the person (for a
    partner that knows people only by NHS number, the NHS number system and value).
    Names are as the partner wrote them (compare case-insensitively); `given` is the first
    given name. `birth_date` is a FHIR date; `postcode` is upper case with one space
    before the inward code; `gender` is a FHIR administrative-gender code.
    """

    nhs_number: str | None = None
    nhs_number_given: str | None = None
    local_system: str | None = None
    local_id: str | None = None
    family: str | None = None
    given: str | None = None
    birth_date: str | None = None
    postcode: str | None = None
    gender: str | None = None


@dataclass(frozen=True, slots=True)
class BusinessId:
    """A mapped resource's stable business identifier: the same source fact always gives
    the same `(resource_type, system, value)`, so delivering it again updates, not adds."""

    resource_type: str
    system: str
    value: str

    def identifier(self) -> dict[str, str]:
        return {"system": self.system, "value": self.value}


@dataclass(frozen=True, slots=True)
class ItemSet:
    """Every item one `for_each` rule with `otherwise: retract` gave for one source record:
    the whole list as that record states it now (the contacts on a ReSPECT form). An item
    the same source record listed before and lists no longer is retracted; see
    `MappedRecord.item_sets`."""

    rule: str
    resource_type: str
    system: str
    keys: tuple[BusinessId, ...]


@dataclass(frozen=True, slots=True)
class MappedRecord:
    """One source record mapped to FHIR R4.

    `patient` is an R4 Patient dict (no id): the person as this partner knows them. It is a
    partial view: an element it lacks is unknown to this record, not removed (an HL7 A08
    often omits the death fields an earlier A03 carried), so merge it element by element.
    `resources` are R4 resource dicts without ids, each with its business identifier first
    in `identifier` (also listed in `keys`, in the same order).
    `event` is the trigger event where the format has one ("A01", "A03", "A08", "A40").
    `merge_from` is, for a merge (A40), the identifiers the person was known by before.
    `retracted` names facts this record says no longer hold: a rule's condition is false
    for a fact the same source may have asserted before (a register row whose DNACPR flag
    changed from Y to N), so a stored resource with that business identifier is no longer
    current. Retracting what was never stored is a no-op.
    `item_sets` are the lists this record states in full (`ItemSet`): what the same source
    record (same partner and record id) listed before and leaves out now is retracted.
    `warnings` say what was kept but could not be fully coded (a local term missing from a
    ConceptMap that allows it), reported in the run's summary (`Loader`: `warnings`).
    `authoritative` names the Patient elements this partner's word settles over other
    partners' whatever their times (the mapping's `person.authoritative`).
    `cleared`, one entry per resource (same order), names elements the record says no
    longer hold (a rule's `clear`, or HL7's `""` in the fields that fill them), though it
    leaves them out: removed unless a newer record set them; `patient_cleared` the same
    for the Patient.
    """

    source: SourceRef
    person: PersonKey
    patient: dict[str, Any]
    resources: tuple[dict[str, Any], ...] = ()
    keys: tuple[BusinessId, ...] = ()
    event: str | None = None
    merge_from: PersonKey | None = None
    retracted: tuple[BusinessId, ...] = ()
    item_sets: tuple[ItemSet, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    authoritative: tuple[str, ...] = ()
    cleared: tuple[tuple[str, ...], ...] = ()
    #: Patient elements the record deletes (HL7 `""` in the fields that fill them)
    patient_cleared: tuple[str, ...] = ()
    #: where in the source record each resource came from, one per resource (same
    #: order): the item of a list (`respect.contacts[2]`) or the rule (`rule 'cpr'`), so
    #: that a resource refused later is named by its place in the record
    origins: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rejection:
    """A record that could not be mapped, kept with its raw text for review.

    `field` names the source field(s) at fault ("PID-3", "NHS Number", "dob"; several are
    joined with ", "); `reason` is a sentence naming the partner, the file, the position and
    each field with what is wrong with it.
    """

    source: SourceRef
    field: str
    reason: str
