"""_include and _revinclude (R4 3.1.1.5.4), with :iterate: included resources come back
with entry.search.mode = include, are not counted in Bundle.total nor in _count
(3.1.1.5.3), appear once however many matches point to them, and every page carries the
includes of its own matches (3.1.1.5.7). _elements does not apply to them (3.1.1.5.9)."""

from __future__ import annotations

from eol_search_kit import (
    NOT_FOR_CPR,
    bundle,
    encounter,
    entries,
    get_page,
    keyed,
    listed,
    next_link,
    organization,
    patient,
    practitioner,
    provenance,
    ref,
    refused,
    resus_status,
)
from fastapi.testclient import TestClient


def seed(client: TestClient) -> dict[str, str]:
    s = {"trust": organization(client, "RR8", "Leeds Teaching Hospitals NHS Trust"),
         "gp": practitioner(client, "Ahmed", "Yasmin", "7012345")}
    s["grace"] = patient(client, "Okafor", "Grace", "9434765919",
                         generalPractitioner=[ref("Practitioner", s["gp"])],
                         managingOrganization=ref("Organization", s["trust"]))
    s["tom"] = patient(client, "O'Neill", "Tom", "9000000009")
    s["visit"] = encounter(client, s["grace"], {"start": "2026-05-01T10:00:00+01:00"},
                           participant=[{"individual": ref("Practitioner", s["gp"])}])
    s["stay"] = encounter(client, s["grace"], {"start": "2026-05-12T08:00:00+01:00"}, "IMP",
                          serviceProvider=ref("Organization", s["trust"]))
    s["toms_visit"] = encounter(client, s["tom"], {"start": "2026-05-02T10:00:00+01:00"})
    s["dnacpr"] = resus_status(client, s["grace"], NOT_FOR_CPR, "2026-05-10T09:30:00Z",
                               encounter=ref("Encounter", s["stay"]),
                               performer=[ref("Practitioner", s["gp"])])
    s["prov_visit"] = provenance(client, [f"Encounter/{s['visit']}"], "2026-05-01T12:00:00Z")
    s["prov_dnacpr"] = provenance(client, [f"Observation/{s['dnacpr']}"],
                                  "2026-05-10T09:31:00Z")
    return s


def test_include_marks_mode_and_is_not_counted(client: TestClient) -> None:
    s = seed(client)
    b = bundle(client, "Encounter", {"patient": s["grace"], "_include": "Encounter:subject"})
    assert set(listed(b)) == {s["visit"], s["stay"]}
    assert keyed(b, "include") == {f"Patient/{s['grace']}"}  # once, for two encounters
    assert b["total"] == 2
    for e in entries(b, "include"):
        assert e["fullUrl"] == f"http://gateway.test/fhir/Patient/{s['grace']}"


def test_include_with_target_type_and_several_parameters(client: TestClient) -> None:
    s = seed(client)
    b = bundle(client, "Patient", [("_id", s["grace"]),
                                   ("_include", "Patient:general-practitioner:Practitioner"),
                                   ("_include", "Patient:organization")])
    assert listed(b) == [s["grace"]]
    assert keyed(b, "include") == {f"Practitioner/{s['gp']}", f"Organization/{s['trust']}"}
    b = bundle(client, "Patient", [("_id", s["grace"]),
                                   ("_include", "Patient:general-practitioner:Organization")])
    assert keyed(b, "include") == set()
    b = bundle(client, "Observation", [("_id", s["dnacpr"]), ("_include", "Observation:*")])
    assert keyed(b, "include") == {f"Patient/{s['grace']}", f"Encounter/{s['stay']}",
                                   f"Practitioner/{s['gp']}"}


def test_include_of_nothing_and_of_an_absent_target(client: TestClient) -> None:
    s = seed(client)
    lost = resus_status(client, s["tom"], NOT_FOR_CPR, "2026-05-11T09:30:00Z",
                        encounter=ref("Encounter", "deleted-or-never-here"))
    b = bundle(client, "Observation", {"_id": lost, "_include": "Observation:encounter"})
    assert listed(b) == [lost] and keyed(b, "include") == set()  # omitted, no error


def test_revinclude(client: TestClient) -> None:
    s = seed(client)
    b = bundle(client, "Patient", {"_id": s["grace"], "_revinclude": "Encounter:subject"})
    assert listed(b) == [s["grace"]]
    assert keyed(b, "include") == {f"Encounter/{s['visit']}", f"Encounter/{s['stay']}"}
    assert b["total"] == 1
    b = bundle(client, "Observation", {"code": "304251008",
                                       "_revinclude": "Provenance:target"})
    assert listed(b) == [s["dnacpr"]]
    assert keyed(b, "include") == {f"Provenance/{s['prov_dnacpr']}"}


def test_revinclude_iterate(client: TestClient) -> None:
    s = seed(client)
    b = bundle(client, "Patient", [("_id", s["grace"]),
                                   ("_revinclude", "Encounter:subject"),
                                   ("_revinclude:iterate", "Provenance:target")])
    assert listed(b) == [s["grace"]]
    assert keyed(b, "include") == {f"Encounter/{s['visit']}", f"Encounter/{s['stay']}",
                                   f"Provenance/{s['prov_visit']}"}
    # without :iterate, Provenance:target applies to the matches (Patients) only
    b = bundle(client, "Patient", [("_id", s["grace"]),
                                   ("_revinclude", "Encounter:subject"),
                                   ("_revinclude", "Provenance:target")])
    assert keyed(b, "include") == {f"Encounter/{s['visit']}", f"Encounter/{s['stay']}"}


def test_include_iterate(client: TestClient) -> None:
    s = seed(client)
    b = bundle(client, "Observation", [("_id", s["dnacpr"]),
                                       ("_include", "Observation:encounter"),
                                       ("_include:iterate", "Encounter:service-provider")])
    assert keyed(b, "include") == {f"Encounter/{s['stay']}", f"Organization/{s['trust']}"}
    b = bundle(client, "Observation", [("_id", s["dnacpr"]),
                                       ("_include", "Observation:encounter"),
                                       ("_include", "Encounter:service-provider")])
    assert keyed(b, "include") == {f"Encounter/{s['stay']}"}
    b = bundle(client, "Provenance", [("_id", s["prov_dnacpr"]),
                                      ("_include", "Provenance:target"),
                                      ("_include:iterate", "Observation:subject"),
                                      ("_revinclude:iterate", "Encounter:subject")])
    assert keyed(b, "include") == {f"Observation/{s['dnacpr']}", f"Patient/{s['grace']}",
                                   f"Encounter/{s['visit']}", f"Encounter/{s['stay']}"}


def test_includes_per_page_and_not_in_count(client: TestClient) -> None:
    s = seed(client)
    params = [("_sort", "date"), ("_count", "2"), ("_include", "Encounter:subject")]
    first = bundle(client, "Encounter", params)
    assert listed(first) == [s["visit"], s["toms_visit"]]  # _count counts matches only
    assert keyed(first, "include") == {f"Patient/{s['grace']}", f"Patient/{s['tom']}"}
    url = next_link(first)
    assert url
    second = get_page(client, url)
    assert listed(second) == [s["stay"]]
    # repeated on this page, so each page stands alone (3.1.1.5.7)
    assert keyed(second, "include") == {f"Patient/{s['grace']}"}
    assert next_link(second) is None


def test_elements_do_not_apply_to_included_resources(client: TestClient) -> None:
    # R4 3.1.1.5.9: "The list of elements does not apply to included resources."
    s = seed(client)
    b = bundle(client, "Observation", {"_id": s["dnacpr"], "_elements": "status",
                                       "_include": "Observation:subject"})
    (included,) = entries(b, "include")
    assert included["resource"]["name"] == [{"family": "Okafor", "given": ["Grace"]}]
    assert "tag" not in included["resource"]["meta"]


def test_bad_includes_are_refused(client: TestClient) -> None:
    seed(client)
    refused(client, "Observation", {"_include": "Observation"})
    refused(client, "Observation", {"_include": "Observation:code"})  # not a reference
    refused(client, "Observation", {"_include": "Observation:no-such-param"})
    refused(client, "Observation", {"_include": "NoSuchType:subject"})
    refused(client, "Observation", {"_revinclude": "Provenance:target:x:y"})
    refused(client, "Observation", {"_include:sideways": "Observation:subject"})


def test_each_page_carries_the_includes_of_its_own_matches(client: TestClient) -> None:
    s = seed(client)
    toms = resus_status(client, s["tom"], NOT_FOR_CPR, "2026-05-11T09:30:00Z")
    pages: list[tuple[list[str], set[str]]] = []
    b = bundle(client, "Observation", [("_sort", "date"), ("_count", "1"),
                                       ("_include", "Observation:subject"),
                                       ("_revinclude", "Provenance:target")])
    while True:
        pages.append((listed(b), keyed(b, "include")))
        url = next_link(b)
        if not url:
            break
        b = get_page(client, url)
    assert pages == [([s["dnacpr"]], {f"Patient/{s['grace']}",
                                      f"Provenance/{s['prov_dnacpr']}"}),
                     ([toms], {f"Patient/{s['tom']}"})]
