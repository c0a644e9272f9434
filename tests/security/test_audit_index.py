"""The audit trail's fast index equals the generic extractor's, on every event shape."""

from __future__ import annotations

from typing import Any

from fhir_gateway.search.extract import IndexExtractor
from fhir_gateway.search.registry import SearchRegistry, default_registry
from fhir_gateway.security.audit.events import DCM, audit_event
from fhir_gateway.security.audit.index import audit_index, stamped_index
from fhir_gateway.security.context import SecureCaller
from fhir_gateway.store.base import IndexEntry


def test_fast_index_equals_the_generic_extractor() -> None:
    registry = default_registry()
    generic = IndexExtractor(registry)
    callers = [None, SecureCaller(client_id="ward", role="clinician", organization="RXX01",
                                  purpose_of_use="TREAT"),
               SecureCaller(client_id="crew", role="ambulance", purpose_of_use="ETREAT",
                            break_glass="collapsed")]
    shapes = [dict(subtype="read", status=200, what="Patient/p1", patients={"p1"}),
              dict(subtype="search-type", status=200, query="GET Patient?name=x",
                   patients={"p1", "p2"}, request_id="r1"),
              dict(subtype="create", status=201, what="Observation/o1/_history/1",
                   patients={"p1"}),
              dict(subtype="delete", status=404, description="404 gone"),
              dict(subtype="110122", subtype_system=DCM, status=400, action="E",
                   event_type={"system": DCM, "code": "110114"})]
    for caller in callers:
        for shape in shapes:
            event = audit_event(caller=caller, observer="gw", destination="http://x/fhir",
                                overrode_consent=True, **shape)
            fast = sorted(map(repr, audit_index(registry, event)))
            assert fast == sorted(map(repr, generic.extract(event).entries)), (caller, shape)


def test_stamped_event_index_equals_the_generic_extractor_on_the_stored_body() -> None:
    """What the trail stores (index of the unstamped event plus `_lastUpdated` from the
    stamp) is what the generic extractor finds in the stored, stamped event."""
    registry = default_registry()
    caller = SecureCaller(client_id="ward", role="clinician", organization="RXX01",
                          purpose_of_use="TREAT")
    event = audit_event(caller=caller, observer="gw", destination="http://x/fhir",
                        subtype="read", status=200, what="Patient/p1", patients={"p1"})
    stamped = "2026-11-23T02:30:00.123+00:00"
    stored = {**event, "meta": {"versionId": "1", "lastUpdated": stamped}}
    trail = sorted(map(repr, [*audit_index(registry, event), *stamped_index(registry, stamped)]))
    assert trail == sorted(map(repr, generic_entries(registry, stored)))
    assert any(e.param == "_lastUpdated" for e in stamped_index(registry, stamped))


def generic_entries(registry: SearchRegistry, resource: dict[str, Any]) -> list[IndexEntry]:
    return IndexExtractor(registry).extract(resource).entries
