"""Consent to share: a patient's `Consent` (scope `patient-privacy`) that says deny hides
their record from organisations that do not already hold it.

The deciding Consent is the patient's latest active `patient-privacy` Consent (by
`dateTime`, then `meta.lastUpdated`): `provision.type` deny hides, permit (or none) shows.
"Organisations that hold the record" are the ODS codes found on the record itself: the
agents of the Provenance written for its resources (what ingest records), the ownership
tags a partner feed's REST writes carry, and the Consent's own `organization`. A caller
whose `--org` is one of them sees the record; anyone else sees nothing of it (every
resource of the patient's compartment, the Patient included), unless they break the
glass, which is recorded (see `access` and `audit`).

Decisions are read from the store for each request (memoised on the request's caller,
never across requests), so a Consent written by any instance or by ingest applies at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .. import jsonio
from ..fhir.repository import Repository
from ..search.extract import patient_compartment
from ..store.query import Criterion, IndexQuery, ReferencePredicate, TokenPredicate

CONSENT_SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
PARTNER_TAG_SYSTEM = "https://fhir.example.org/shared-care-record/CodeSystem/partner"
MAX_RECORD_SCAN = 5000
_REF = re.compile(r"^(?:.*/)?([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/.*)?$")


@dataclass(frozen=True, slots=True)
class ConsentDecision:
    denied: bool
    holders: frozenset[str] = frozenset()  # ODS codes that hold the record (when denied)

    def hides_from(self, organization: str | None) -> bool:
        return self.denied and organization not in self.holders


ALLOWED = ConsentDecision(False)


def reference_ids(value: Any, rtype: str) -> list[str]:
    """Ids of the `rtype` references among FHIRPath result nodes (Reference or string)."""
    out = []
    for node in value:
        ref = node.get("reference") if isinstance(node, dict) else node
        m = _REF.match(ref) if isinstance(ref, str) else None
        if m and m.group(1) == rtype:
            out.append(m.group(2))
    return out


class ConsentPolicy:
    def __init__(self, repository: Repository) -> None:
        self.repository = repository
        self._params: dict[str, list[Any]] = {}

    def patients_of(self, resource: dict[str, Any]) -> list[str]:
        """The Patients whose compartment holds `resource` (R4 CompartmentDefinition)."""
        rtype = resource.get("resourceType")
        if rtype == "Patient":
            return [resource["id"]] if resource.get("id") else []
        params = self._params.get(rtype)
        if params is None:
            codes = patient_compartment().get(rtype, frozenset())
            registry = self.repository.registry
            params = [p for c in sorted(codes) if (p := registry.get(rtype, c)) is not None]
            self._params[rtype] = params
        out: list[str] = []
        for param in params:
            try:
                out += reference_ids(param.evaluate(resource), "Patient")
            except Exception:
                continue
        return out

    def decide(self, patient_id: str) -> ConsentDecision:
        query = IndexQuery(rtype="Consent", criteria=[
            Criterion("patient", "reference", [ReferencePredicate("Patient", patient_id)]),
            Criterion("scope", "token", [TokenPredicate(CONSENT_SCOPE_SYSTEM,
                                                        "patient-privacy")])],
            limit=100)
        consents = [jsonio.loads_trusted(r.body) for r in self.repository.find(query).rows
                    if r.body]
        active = [c for c in consents if c.get("status") == "active"]
        if not active:
            return ALLOWED
        latest = max(active, key=lambda c: (c.get("dateTime") or "",
                                            (c.get("meta") or {}).get("lastUpdated") or ""))
        if (latest.get("provision") or {}).get("type") != "deny":
            return ALLOWED
        return ConsentDecision(True, frozenset(self._holders(patient_id, latest)))

    def _holders(self, patient_id: str, consent: dict[str, Any]) -> set[str]:
        holders = set(_ods_codes(consent.get("organization") or []))
        rows = self.repository.find(IndexQuery(rtype=None, compartment=patient_id,
                                               limit=MAX_RECORD_SCAN)).rows
        targets = []
        for row in rows:
            if row.body is None:
                continue
            resource = jsonio.loads_trusted(row.body)
            for tag in (resource.get("meta") or {}).get("tag") or []:
                if tag.get("system") == ODS_SYSTEM and tag.get("code"):
                    holders.add(tag["code"])
            if resource.get("resourceType") == "Provenance":
                holders.update(_ods_codes(a.get("who") for a in resource.get("agent") or []))
            targets.append(ReferencePredicate(row.rtype, row.rid))
        for i in range(0, len(targets), 200):
            query = IndexQuery(rtype="Provenance", criteria=[
                Criterion("target", "reference", targets[i:i + 200])], limit=MAX_RECORD_SCAN)
            for row in self.repository.find(query).rows:
                prov = jsonio.loads_trusted(row.body) if row.body else {}
                holders.update(_ods_codes(a.get("who") for a in prov.get("agent") or []))
        return holders


def _ods_codes(references: Any) -> list[str]:
    out = []
    for ref in references:
        ident = ref.get("identifier") if isinstance(ref, dict) else None
        if isinstance(ident, dict) and ident.get("system") == ODS_SYSTEM and ident.get("value"):
            out.append(str(ident["value"]))
    return out
