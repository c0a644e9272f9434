"""Partner feeds in, FHIR R4 out: readers and one mapping engine driven by mappings/.

    bytes --reader--> SourceRecord | Unreadable --engine + mappings/<partner>.yaml-->
          MappedRecord | Rejection

Readers (`hl7v2`, `delimited`, `jsonlines`, `stu3`) know formats; the engine (`mapping`)
knows FHIR; what a partner's file means is only in its mapping file and the ConceptMaps
beside it, so a new partner with a known format is a new mapping file. Identity
resolution, storage and provenance build on `MappedRecord` (see `model`).
"""

from .errors import IngestError, MappingError, UnknownPartner
from .mapping import cached_mapping, map_file, map_record
from .model import (
    NHS_NUMBER_SYSTEM,
    PATIENT_REFERENCE,
    BusinessId,
    ItemSet,
    MappedRecord,
    PersonKey,
    Rejection,
    SourceRef,
)
from .spec import Mapping, load_mapping, partners

__all__ = [
    "NHS_NUMBER_SYSTEM",
    "PATIENT_REFERENCE",
    "BusinessId",
    "IngestError",
    "ItemSet",
    "MappedRecord",
    "Mapping",
    "MappingError",
    "PersonKey",
    "Rejection",
    "SourceRef",
    "UnknownPartner",
    "cached_mapping",
    "load_mapping",
    "map_file",
    "map_record",
    "partners",
]
