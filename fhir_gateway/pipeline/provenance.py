"""The Provenance written for every record that created or changed something.

It names the partner (ODS code and name), the source record (its id, file and position),
when the gateway received it, when the partner says it happened, and the mapping version.
"""

from __future__ import annotations

from typing import Any

from ..ingest.model import SourceRef

ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
SOURCE_RECORD_SYSTEM = "https://fhir.example.org/shared-care-record/Id/source-record"
MAPPING_POLICY = "https://fhir.example.org/shared-care-record/mapping"
#: system records, keyed `Patient/<id>`: when each partner last sent a record about the
#: person that changed nothing (which writes no Provenance), `{partner: received}`
LAST_FED = "last-fed"


def provenance(source: SourceRef, targets: list[tuple[str, str, int, bool]],
               received: str, *, deleted: bool = False) -> dict[str, Any]:
    """`targets`: (type, id, version, created) of each resource this record wrote;
    `deleted`: the versions are the deletions a record's retraction made (activity
    DELETE, so an auditor can tell a withdrawn CPR decision from a changed one)."""
    activity = "DELETE" if deleted else "CREATE" if all(t[3] for t in targets) else "UPDATE"
    out: dict[str, Any] = {
        "resourceType": "Provenance",
        "target": [{"reference": f"{t}/{i}/_history/{v}"} for t, i, v, _ in targets],
        "recorded": received,
        "policy": [f"{MAPPING_POLICY}/{source.partner}/{source.mapping_version}"],
        "activity": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
            "code": activity}]},
        "agent": [{
            "type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                "code": "author"}]},
            "who": {"identifier": {"system": ODS_SYSTEM, "value": source.ods_code},
                    "display": source.partner_name},
        }],
        "entity": [{
            "role": "source",
            "what": {
                "identifier": {"system": f"{SOURCE_RECORD_SYSTEM}/{source.partner}",
                               "value": source.record_id or source.position},
                "display": f"{source.partner_name}: {source.file}, {source.position}",
            },
        }],
    }
    if source.event_time:
        out["occurredDateTime"] = source.event_time
    return out
