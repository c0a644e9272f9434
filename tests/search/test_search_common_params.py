"""Parameters for all resources (R4 3.1.1.4.1): _id (exact, case-sensitive), _lastUpdated
(a date parameter on the meta.lastUpdated the server assigned), _tag and _security
(tokens on meta.tag and meta.security), _profile and _source (uris on meta.profile and
meta.source), on several resource types."""

from __future__ import annotations

from typing import Any

from eol_search_kit import (
    CONFIDENTIALITY,
    NOT_FOR_CPR,
    consent,
    create,
    flag,
    ids,
    ordered,
    patient,
    put,
    refused,
)
from fastapi.testclient import TestClient

TAGS = "https://fhir.leeds-eol.example/CodeSystem/record-tag"
UK_CORE = "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
EOL_PROFILE = "https://fhir.leeds-eol.example/StructureDefinition/EolPatient"


def test_id(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    tom = patient(client, "O'Neill", "Tom")
    ann = patient(client, "Brennan", "Ann")
    assert ids(client, "Patient", {"_id": grace}) == {grace}
    assert ids(client, "Patient", {"_id": f"{grace},{tom}"}) == {grace, tom}
    assert ids(client, "Patient", [("_id", f"{grace},{tom}"), ("_id", f"{tom},{ann}")]) == {tom}
    assert ids(client, "Patient", [("_id", grace), ("_id", tom)]) == set()
    assert ids(client, "Patient", {"_id": grace.upper()}) == set()  # case-sensitive
    assert ids(client, "Patient", {"_id": grace[:8]}) == set()  # exact, no prefix
    assert ids(client, "Patient", [("_id", f"{grace},{tom}"), ("family", "o'n")]) == {tom}
    alert = flag(client, grace, {"start": "2026-05-10"})
    assert ids(client, "Flag", {"_id": alert}) == {alert}
    assert ids(client, "Flag", {"_id": grace}) == set()  # a Patient's id, not a Flag's


def test_last_updated_uses_the_server_assigned_instant(client: TestClient) -> None:
    stored = [create(client, {"resourceType": "Patient", "gender": g})
              for g in ("female", "male", "other")]
    lu = [r["meta"]["lastUpdated"] for r in stored]
    assert lu[0] < lu[1] < lu[2]
    first, second, third = (r["id"] for r in stored)
    assert ids(client, "Patient", {"_lastUpdated": lu[1]}) == {second}
    assert ids(client, "Patient", {"_lastUpdated": f"ge{lu[1]}"}) == {second, third}
    assert ids(client, "Patient", {"_lastUpdated": f"gt{lu[1]}"}) == {third}
    assert ids(client, "Patient", {"_lastUpdated": f"le{lu[1]}"}) == {first, second}
    assert ids(client, "Patient", {"_lastUpdated": f"lt{lu[1]}"}) == {first}
    assert ids(client, "Patient", {"_lastUpdated": f"ne{lu[1]}"}) == {first, third}
    assert ids(client, "Patient", [("_lastUpdated", f"gt{lu[0]}"),
                                   ("_lastUpdated", f"lt{lu[2]}")]) == {second}
    assert ids(client, "Patient", {"_lastUpdated": f"ge{lu[0][:10]}"}) == {first, second, third}
    assert ids(client, "Patient", {"_lastUpdated": f"lt{lu[0][:10]}"}) == set()
    assert ids(client, "Patient", {"_lastUpdated": "lt2000"}) == set()
    # an update moves the resource's lastUpdated on
    updated = put(client, {**stored[0], "active": True})
    assert updated["meta"]["lastUpdated"] > lu[2]
    assert ids(client, "Patient", {"_lastUpdated": f"gt{lu[2]}"}) == {first}
    assert ordered(client, "Patient", {"_sort": "_lastUpdated"}) == [second, third, first]


def tagged(client: TestClient, rtype: str, meta: dict[str, Any],
           **body: Any) -> str:
    return create(client, {"resourceType": rtype, "meta": meta, **body})["id"]


def test_tag(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    review = {"tag": [{"system": TAGS, "code": "needs-review"}]}
    epaccs = {"tag": [{"system": TAGS, "code": "epaccs"},
                      {"system": "https://other.example/tags", "code": "needs-review"}]}
    c1 = consent(client, grace, "adr", "dnr", meta=review)
    c2 = consent(client, grace, "patient-privacy", "npp", meta=epaccs)
    c3 = consent(client, grace, "adr", "acd")
    assert ids(client, "Consent", {"_tag": f"{TAGS}|needs-review"}) == {c1}
    assert ids(client, "Consent", {"_tag": "needs-review"}) == {c1, c2}
    assert ids(client, "Consent", {"_tag": f"{TAGS}|"}) == {c1, c2}
    assert ids(client, "Consent", {"_tag": f"{TAGS}|epaccs,{TAGS}|needs-review"}) == {c1, c2}
    assert ids(client, "Consent", {"_tag:not": f"{TAGS}|needs-review"}) == {c2, c3}
    assert ids(client, "Consent", {"_tag:missing": "true"}) == {c3}
    assert ids(client, "Consent", [("_tag", "needs-review"), ("scope", "adr")]) == {c1}
    f = flag(client, grace, {"start": "2026-05-10"}, meta=review)
    assert ids(client, "Flag", {"_tag": f"{TAGS}|needs-review"}) == {f}


def test_security(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    restricted = {"security": [{"system": CONFIDENTIALITY, "code": "R"}]}
    normal = {"security": [{"system": CONFIDENTIALITY, "code": "N"}]}
    doc = {"status": "current", "subject": {"reference": f"Patient/{grace}"},
           "content": [{"attachment": {"contentType": "application/pdf"}}]}
    d_r = tagged(client, "DocumentReference", restricted, **doc)
    d_n = tagged(client, "DocumentReference", normal, **doc)
    d_none = tagged(client, "DocumentReference", {}, **doc)
    assert ids(client, "DocumentReference", {"_security": f"{CONFIDENTIALITY}|R"}) == {d_r}
    assert ids(client, "DocumentReference", {"_security": "R,N"}) == {d_r, d_n}
    assert ids(client, "DocumentReference", {"_security:not": f"{CONFIDENTIALITY}|R"}) \
        == {d_n, d_none}
    assert ids(client, "DocumentReference", {"_security:missing": "true"}) == {d_none}
    obs = {"status": "final", "code": {"coding": [{"system": "http://snomed.info/sct",
                                                   "code": "304251008"}]},
           "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct",
                                                "code": NOT_FOR_CPR}]}}
    o_r = tagged(client, "Observation", restricted, **obs)
    tagged(client, "Observation", normal, **obs)
    assert ids(client, "Observation", {"_security": "R"}) == {o_r}


def test_profile_and_source(client: TestClient) -> None:
    uk = tagged(client, "Patient", {"profile": [UK_CORE], "source": "https://fhir.gp.example/B86071"})
    both = tagged(client, "Patient", {"profile": [UK_CORE, EOL_PROFILE],
                                      "source": "https://fhir.hospice.example/NHD01"})
    plain = tagged(client, "Patient", {})
    assert ids(client, "Patient", {"_profile": UK_CORE}) == {uk, both}
    assert ids(client, "Patient", {"_profile": EOL_PROFILE}) == {both}
    assert ids(client, "Patient", {"_profile": f"{UK_CORE},{EOL_PROFILE}"}) == {uk, both}
    assert ids(client, "Patient", {"_profile": UK_CORE.lower()}) == set()  # uri: exact
    assert ids(client, "Patient", {"_profile": "https://fhir.hl7.org.uk/"}) == set()
    assert ids(client, "Patient", {"_profile:missing": "true"}) == {plain}
    assert ids(client, "Patient", {"_source": "https://fhir.gp.example/B86071"}) == {uk}
    assert ids(client, "Patient", {"_source": "https://fhir.gp.example"}) == set()
    refused(client, "Patient", {"_profile:below": "https://fhir.hl7.org.uk/"})


def test_deleted_and_superseded_content_is_not_found(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    kept = flag(client, grace, {"start": "2026-05-10"})
    gone = flag(client, grace, {"start": "2026-05-11"})
    assert client.delete(f"/fhir/Flag/{gone}").status_code in (200, 204)
    assert ids(client, "Flag", {"patient": grace}) == {kept}
    assert ids(client, "Flag", {"_id": gone}) == set()
    # a decision reversed: only the current version's values are searchable
    stored = create(client, {"resourceType": "Observation", "status": "final",
                             "code": {"coding": [{"system": "http://snomed.info/sct",
                                                  "code": "304251008"}]},
                             "valueCodeableConcept": {"coding": [
                                 {"system": "http://snomed.info/sct", "code": "450475007"}]},
                             "subject": {"reference": f"Patient/{grace}"}})
    stored["valueCodeableConcept"] = {"coding": [{"system": "http://snomed.info/sct",
                                                  "code": NOT_FOR_CPR}]}
    put(client, stored)
    assert ids(client, "Observation", {"value-concept": "450475007"}) == set()
    assert ids(client, "Observation", {"value-concept": NOT_FOR_CPR}) == {stored["id"]}
