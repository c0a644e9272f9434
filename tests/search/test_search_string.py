"""String search (R4 3.1.1.4.8): starts-with by default, case- and accent-insensitive;
:exact (whole value, case and accents kept); :contains (anywhere); HumanName and Address
parts; :missing; OR and AND; escaping (3.1.1.4.19)."""

from __future__ import annotations

from eol_search_kit import ids, make, organization, practitioner, ref
from fastapi.testclient import TestClient


def seed_people(client: TestClient) -> dict[str, str]:
    return {
        "sian": make(client, {"resourceType": "Patient", "name": [
            {"use": "official", "family": "Llewellyn-Jones", "given": ["Siân", "Mair"],
             "prefix": ["Mrs"]}],
            "address": [{"line": ["4 Ffordd y Môr"], "city": "Llandudno",
                         "postalCode": "LL30 2AB", "country": "Wales"}]}),
        "zoe": make(client, {"resourceType": "Patient", "name": [
            {"family": "Ökafor", "given": ["Zoë"]},
            {"use": "maiden", "family": "Brennan", "given": ["Zoë"]}],
            "address": [{"line": ["12 Chapel Lane", "Headingley"], "city": "Leeds",
                         "district": "West Yorkshire", "postalCode": "LS6 3BW"}]}),
        "tom": make(client, {"resourceType": "Patient", "name": [
            {"family": "O'Neill", "given": ["Thomas", "Evelyn"], "suffix": ["OBE"]}],
            "address": [{"line": ["Flat 2, 80 Otley Road"], "city": "Leeds",
                         "postalCode": "LS16 5JT"}]}),
        "nameless": make(client, {"resourceType": "Patient", "gender": "unknown"}),
    }


def test_default_is_case_and_accent_insensitive_starts_with(client: TestClient) -> None:
    p = seed_people(client)
    assert ids(client, "Patient", {"family": "okaf"}) == {p["zoe"]}
    assert ids(client, "Patient", {"family": "OKAFOR"}) == {p["zoe"]}
    assert ids(client, "Patient", {"family": "Ökafor"}) == {p["zoe"]}
    assert ids(client, "Patient", {"given": "sian"}) == {p["sian"]}
    assert ids(client, "Patient", {"given": "ZOE"}) == {p["zoe"]}
    assert ids(client, "Patient", {"given": "ev"}) == {p["tom"]}  # second given name
    assert ids(client, "Patient", {"family": "kafor"}) == set()  # not the start
    assert ids(client, "Patient", {"family": "Okafor Smith"}) == set()  # longer than value


def test_exact_keeps_case_and_accents(client: TestClient) -> None:
    p = seed_people(client)
    assert ids(client, "Patient", {"family:exact": "Ökafor"}) == {p["zoe"]}
    assert ids(client, "Patient", {"family:exact": "Okafor"}) == set()
    assert ids(client, "Patient", {"family:exact": "ökafor"}) == set()
    assert ids(client, "Patient", {"family:exact": "Ökaf"}) == set()
    assert ids(client, "Patient", {"given:exact": "Siân"}) == {p["sian"]}
    assert ids(client, "Patient", {"given:exact": "Sian"}) == set()
    assert ids(client, "Patient", {"family:exact": "O'Neill"}) == {p["tom"]}


def test_contains_anywhere_case_and_accent_insensitive(client: TestClient) -> None:
    p = seed_people(client)
    assert ids(client, "Patient", {"family:contains": "kaf"}) == {p["zoe"]}
    assert ids(client, "Patient", {"family:contains": "JONES"}) == {p["sian"]}
    assert ids(client, "Patient", {"given:contains": "an"}) == {p["sian"]}  # Siân
    assert ids(client, "Patient", {"name:contains": "neil"}) == {p["tom"]}
    assert ids(client, "Patient", {"name:contains": "LYN"}) == {p["sian"], p["tom"]}
    assert ids(client, "Patient", {"address:contains": "ley"}) == {p["zoe"], p["tom"]}


def test_human_name_parts_all_searched_by_name(client: TestClient) -> None:
    p = seed_people(client)
    assert ids(client, "Patient", {"name": "llewellyn"}) == {p["sian"]}  # family
    assert ids(client, "Patient", {"name": "mair"}) == {p["sian"]}  # second given
    assert ids(client, "Patient", {"name": "mrs"}) == {p["sian"]}  # prefix
    assert ids(client, "Patient", {"name": "obe"}) == {p["tom"]}  # suffix
    assert ids(client, "Patient", {"name": "brennan"}) == {p["zoe"]}  # second HumanName
    assert ids(client, "Patient", {"family": "brennan"}) == {p["zoe"]}
    assert ids(client, "Patient", {"family": "mair"}) == set()  # a given name, not family
    assert ids(client, "Patient", {"name": "official"}) == set()  # use is not searched


def test_address_parts(client: TestClient) -> None:
    p = seed_people(client)
    assert ids(client, "Patient", {"address-city": "leeds"}) == {p["zoe"], p["tom"]}
    assert ids(client, "Patient", {"address-city": "LLAN"}) == {p["sian"]}
    assert ids(client, "Patient", {"address-postalcode": "ls6"}) == {p["zoe"]}
    assert ids(client, "Patient", {"address-postalcode": "LS1"}) == {p["tom"]}  # LS16
    assert ids(client, "Patient", {"address-postalcode:exact": "LS16 5JT"}) == {p["tom"]}
    assert ids(client, "Patient", {"address-postalcode:exact": "ls16 5jt"}) == set()
    assert ids(client, "Patient", {"address-country": "wales"}) == {p["sian"]}
    assert ids(client, "Patient", {"address": "4 ffordd y mor"}) == {p["sian"]}  # line, ô
    assert ids(client, "Patient", {"address": "ffordd"}) == set()  # not the start of it
    assert ids(client, "Patient", {"address": "headingley"}) == {p["zoe"]}  # second line
    assert ids(client, "Patient", {"address": "west york"}) == {p["zoe"]}  # district
    assert ids(client, "Patient", {"address": "ll30"}) == {p["sian"]}  # postal code
    assert ids(client, "Patient", {"address-city": "Headingley"}) == set()  # a line


def test_missing_or_and_and(client: TestClient) -> None:
    p = seed_people(client)
    assert ids(client, "Patient", {"name:missing": "true"}) == {p["nameless"]}
    assert ids(client, "Patient", {"name:missing": "false"}) == {p["sian"], p["zoe"], p["tom"]}
    assert ids(client, "Patient", {"family": "okafor,o'neill"}) == {p["zoe"], p["tom"]}
    assert ids(client, "Patient", [("address-city", "leeds"), ("given", "zo")]) == {p["zoe"]}
    assert ids(client, "Patient", [("address-city", "leeds"), ("given", "sian")]) == set()


def test_escaped_comma_is_part_of_the_value(client: TestClient) -> None:
    # R4 3.1.1.4.19: `\,` is a literal comma; an unescaped comma separates OR values
    hospice = organization(client, "NHD01", "St Gemma's Hospice, Leeds")
    leeds = organization(client, "RR8", "Leeds Teaching Hospitals NHS Trust")
    assert ids(client, "Organization", {"name:exact": "St Gemma's Hospice\\, Leeds"}) \
        == {hospice}
    assert ids(client, "Organization", {"name:exact": "St Gemma's Hospice, Leeds"}) == set()
    assert ids(client, "Organization", {"name": "st gemma's hospice\\, leeds"}) == {hospice}
    assert ids(client, "Organization", {"name": "st gemma,leeds"}) == {hospice, leeds}


def test_strings_on_organization_practitioner_related_person(client: TestClient) -> None:
    trust = organization(client, "RR8", "Leeds Teaching Hospitals NHS Trust",
                         alias=["LTHT"], address=[{"city": "Leeds", "postalCode": "LS9 7TF"}])
    hospice = organization(client, "NHD01", "Sue Ryder Wheatfield Hospice",
                           address=[{"city": "Leeds", "postalCode": "LS6 2AE"}])
    assert ids(client, "Organization", {"name": "ltht"}) == {trust}  # alias
    assert ids(client, "Organization", {"name": "sue ryder"}) == {hospice}
    assert ids(client, "Organization", {"name:contains": "hospi"}) == {trust, hospice}
    assert ids(client, "Organization", {"address-postalcode": "ls9"}) == {trust}
    assert ids(client, "Organization", {"address-city": "leeds"}) == {trust, hospice}

    ahmed = practitioner(client, "Ahmed", "Yasmin", "7012345")
    nowak = practitioner(client, "Nowak", "Renée", "7054321")
    assert ids(client, "Practitioner", {"family": "ahm"}) == {ahmed}
    assert ids(client, "Practitioner", {"given": "RENEE"}) == {nowak}
    assert ids(client, "Practitioner", {"name": "dr"}) == {ahmed, nowak}  # prefix

    grace = make(client, {"resourceType": "Patient", "gender": "female"})
    daughter = make(client, {"resourceType": "RelatedPerson", "patient": ref("Patient", grace),
                             "name": [{"family": "Okafor", "given": ["Adaeze"]}],
                             "address": [{"city": "Bradford", "postalCode": "BD7 1DP"}]})
    assert ids(client, "RelatedPerson", {"name": "adaeze"}) == {daughter}
    assert ids(client, "RelatedPerson", {"address-postalcode": "bd7"}) == {daughter}
    assert ids(client, "RelatedPerson", {"address-city": "leeds"}) == set()


def test_strings_on_document_reference_and_audit_event(client: TestClient) -> None:
    grace = make(client, {"resourceType": "Patient", "gender": "female"})
    respect = make(client, {"resourceType": "DocumentReference", "status": "current",
                            "description": "ReSPECT form - Grace Okafor",
                            "subject": ref("Patient", grace),
                            "content": [{"attachment": {"contentType": "application/pdf"}}]})
    letter = make(client, {"resourceType": "DocumentReference", "status": "current",
                           "description": "Discharge letter to GP",
                           "content": [{"attachment": {"contentType": "text/plain"}}]})
    assert ids(client, "DocumentReference", {"description": "respect"}) == {respect}
    assert ids(client, "DocumentReference", {"description:contains": "GP"}) == {letter}
    audit = make(client, {"resourceType": "AuditEvent", "recorded": "2026-05-10T09:31:00Z",
                          "type": {"system": "http://dicom.nema.org/resources/ontology/DCM",
                                   "code": "110110"},
                          "agent": [{"requestor": True, "name": "Yorkshire Ambulance Service",
                                     "network": {"address": "10.20.30.40", "type": "2"}}],
                          "source": {"observer": {"display": "gateway"}},
                          "entity": [{"name": "Grace Okafor"}]})
    assert ids(client, "AuditEvent", {"agent-name": "yorkshire"}) == {audit}
    assert ids(client, "AuditEvent", {"entity-name": "grace"}) == {audit}
    assert ids(client, "AuditEvent", {"address": "10.20"}) == {audit}
    assert ids(client, "AuditEvent", {"agent-name": "ambulance"}) == set()


def test_phonetic_is_neither_offered_nor_pretended(client: TestClient) -> None:
    # No phonetic algorithm here: a plain prefix match under that name would miss Smyth
    # for Smith while seeming to have looked. Refused as unsupported, and not advertised.
    make(client, {"resourceType": "Patient", "name": [{"family": "Smith"}]})
    for rtype in ("Patient", "Practitioner", "Organization", "RelatedPerson"):
        r = client.get(f"/fhir/{rtype}", params={"phonetic": "smith"})
        assert r.status_code == 400, r.text
        assert r.json()["issue"][0]["code"] == "not-supported"
    statement = client.get("/fhir/metadata").json()
    advertised = {(res["type"], p["name"]) for res in statement["rest"][0]["resource"]
                  for p in res.get("searchParam", [])}
    assert not {name for _, name in advertised} & {"phonetic"}
    assert ("Patient", "family") in advertised
