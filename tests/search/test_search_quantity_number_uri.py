"""Quantity (R4 3.1.1.4.11), number (3.1.1.4.6) and uri (3.1.1.4.9) search.

Numbers are ranges implied by their precision ("100" is [99.5, 100.5)), but "when a
comparison prefix in the set gt, lt, ge, le, sa & eb is provided, the implicit precision
of the number is ignored, and they are treated as if they have arbitrarily high
precision": `gt100` is "values that are greater than exactly 100" (3.1.1.4.6 table)."""

from __future__ import annotations

from typing import Any

from eol_search_kit import LOINC, UCUM, concept, ids, make, patient, ref, refused
from fastapi.testclient import TestClient


def weight(client: TestClient, subject: str, value: float | int, code: str = "kg",
           unit: str | None = None) -> str:
    return make(client, {"resourceType": "Observation", "status": "final",
                         "code": concept(LOINC, "29463-7", "Body weight"),
                         "subject": ref("Patient", subject),
                         "valueQuantity": {"value": value, "unit": unit or code,
                                           "system": UCUM, "code": code}})


def seed_observations(client: TestClient) -> dict[str, str]:
    grace = patient(client, "Okafor", "Grace")
    return {
        "w52": weight(client, grace, 52.3),
        "w61": weight(client, grace, 61),
        "lb": weight(client, grace, 115, "[lb_av]", "lb"),
        "spo2": make(client, {"resourceType": "Observation", "status": "final",
                              "code": concept(LOINC, "59408-5", "Oxygen saturation"),
                              "subject": ref("Patient", grace),
                              "valueQuantity": {"value": 91, "unit": "%", "system": UCUM,
                                                "code": "%"}}),
        "text": make(client, {"resourceType": "Observation", "status": "final",
                              "code": concept(LOINC, "29463-7"),
                              "subject": ref("Patient", grace),
                              "valueString": "Too unwell to weigh"}),
    }


def test_quantity_value_precision_and_units(client: TestClient) -> None:
    o = seed_observations(client)
    vq = "value-quantity"
    assert ids(client, "Observation", {vq: "52.3"}) == {o["w52"]}
    assert ids(client, "Observation", {vq: "52"}) == {o["w52"]}  # [51.5, 52.5)
    assert ids(client, "Observation", {vq: "61"}) == {o["w61"]}
    assert ids(client, "Observation", {vq: f"52.3|{UCUM}|kg"}) == {o["w52"]}
    assert ids(client, "Observation", {vq: "52.3||kg"}) == {o["w52"]}
    assert ids(client, "Observation", {vq: f"52.3|{UCUM}|g"}) == set()
    assert ids(client, "Observation", {vq: f"115|{UCUM}|[lb_av]"}) == {o["lb"]}
    assert ids(client, "Observation", {vq: f"115|{UCUM}|kg"}) == set()
    assert ids(client, "Observation", {vq: f"52.3|{UCUM}|kg,91|{UCUM}|%"}) \
        == {o["w52"], o["spo2"]}
    assert ids(client, "Observation", {f"{vq}:missing": "true"}) == {o["text"]}
    assert ids(client, "Observation", {vq: f"ap61|{UCUM}|kg"}) == {o["w61"]}
    assert ids(client, "Observation", {vq: f"ne61|{UCUM}|kg"}) == {o["w52"]}
    assert ids(client, "Observation", {vq: f"sa52.3|{UCUM}|kg"}) == {o["w61"]}
    assert ids(client, "Observation", {vq: f"eb61|{UCUM}|kg"}) == {o["w52"]}
    assert ids(client, "Observation", [(vq, "gt50"), (vq, "lt60")]) == {o["w52"]}


def test_quantity_unit_without_system_matches_code_or_human_unit(client: TestClient) -> None:
    # R4 3.1.1.4.11: "value-quantity=5.4||mg ... where the unit - either the code (code)
    # or the stated human unit (unit) are 'mg'"
    o = seed_observations(client)
    assert ids(client, "Observation", {"value-quantity": "115||[lb_av]"}) == {o["lb"]}
    assert ids(client, "Observation", {"value-quantity": "115||lb"}) == {o["lb"]}


def test_quantity_prefixes_compare_with_the_exact_search_value(client: TestClient) -> None:
    o = seed_observations(client)
    vq = "value-quantity"
    # 52.3 kg is greater than exactly 52 kg, and 61 kg is less than exactly 61.5 kg
    assert ids(client, "Observation", {vq: f"gt52|{UCUM}|kg"}) == {o["w52"], o["w61"]}
    assert ids(client, "Observation", {vq: f"lt61.5|{UCUM}|kg"}) == {o["w52"], o["w61"]}
    # 52.3 kg is neither >= 52.4 kg nor <= 52.2 kg
    assert ids(client, "Observation", {vq: f"ge52.4|{UCUM}|kg"}) == {o["w61"]}
    assert ids(client, "Observation", {vq: f"le52.2|{UCUM}|kg"}) == set()


def test_quantity_prefixes_away_from_the_boundary(client: TestClient) -> None:
    o = seed_observations(client)
    vq = "value-quantity"
    assert ids(client, "Observation", {vq: f"lt60|{UCUM}|kg"}) == {o["w52"]}
    assert ids(client, "Observation", {vq: f"gt60|{UCUM}|kg"}) == {o["w61"]}
    assert ids(client, "Observation", {vq: f"ge52.3|{UCUM}|kg"}) == {o["w52"], o["w61"]}
    assert ids(client, "Observation", {vq: f"le61|{UCUM}|kg"}) == {o["w52"], o["w61"]}
    assert ids(client, "Observation", {vq: f"gt100|{UCUM}|[lb_av]"}) == {o["lb"]}
    assert ids(client, "Observation", {vq: "lt95||%"}) == {o["spo2"]}


def test_duration_quantity_on_encounter_length(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")

    def visit(minutes: int) -> str:
        return make(client, {"resourceType": "Encounter", "status": "finished",
                             "class": {"code": "HH"}, "subject": ref("Patient", grace),
                             "length": {"value": minutes, "unit": "minutes", "system": UCUM,
                                        "code": "min"}})

    short, long_ = visit(20), visit(95)
    assert ids(client, "Encounter", {"length": f"gt60|{UCUM}|min"}) == {long_}
    assert ids(client, "Encounter", {"length": f"20|{UCUM}|min"}) == {short}
    assert ids(client, "Encounter", {"length": f"20|{UCUM}|h"}) == set()


def risk(client: TestClient, subject: str, probability: float | None) -> str:
    prediction: dict[str, Any] = {"outcome": {"text": "Death within 12 months"}}
    if probability is None:
        prediction["qualitativeRisk"] = concept(
            "http://terminology.hl7.org/CodeSystem/risk-probability", "high")
    else:
        prediction["probabilityDecimal"] = probability
    return make(client, {"resourceType": "RiskAssessment", "status": "final",
                         "subject": ref("Patient", subject), "prediction": [prediction]})


def seed_risks(client: TestClient) -> dict[str, str]:
    grace = patient(client, "Okafor", "Grace")
    return {"p82": risk(client, grace, 0.82), "p35": risk(client, grace, 0.35),
            "p90": risk(client, grace, 0.9), "qualitative": risk(client, grace, None)}


def test_number_precision(client: TestClient) -> None:
    r = seed_risks(client)
    assert ids(client, "RiskAssessment", {"probability": "0.82"}) == {r["p82"]}
    assert ids(client, "RiskAssessment", {"probability": "0.8"}) == {r["p82"]}  # [0.75, 0.85)
    assert ids(client, "RiskAssessment", {"probability": "8e-1"}) == {r["p82"]}
    assert ids(client, "RiskAssessment", {"probability": "0.9"}) == {r["p90"]}
    assert ids(client, "RiskAssessment", {"probability": "0.82,0.35"}) == {r["p82"], r["p35"]}
    assert ids(client, "RiskAssessment", {"probability:missing": "true"}) == {r["qualitative"]}
    assert ids(client, "RiskAssessment", {"risk": "high"}) == {r["qualitative"]}
    assert ids(client, "RiskAssessment", {"probability": "lt0.5"}) == {r["p35"]}
    assert ids(client, "RiskAssessment", {"probability": "ge0.9"}) == {r["p90"]}
    assert ids(client, "RiskAssessment", {"probability": "le0.35"}) == {r["p35"]}
    assert ids(client, "RiskAssessment", {"probability": "ne0.82"}) == {r["p35"], r["p90"]}


def test_number_gt_is_greater_than_exactly(client: TestClient) -> None:
    # the R4 example itself (3.1.1.4.6): "RiskAssessment?probability=gt0.8 - all the Risk
    # Assessments with probability great than 0.8 (could also be probability=gt8e-1)"
    r = seed_risks(client)
    assert ids(client, "RiskAssessment", {"probability": "gt0.8"}) == {r["p82"], r["p90"]}
    assert ids(client, "RiskAssessment", {"probability": "gt8e-1"}) == {r["p82"], r["p90"]}
    assert ids(client, "RiskAssessment", {"probability": "lt0.85"}) == {r["p82"], r["p35"]}


def test_malformed_numbers_and_quantities_are_refused(client: TestClient) -> None:
    seed_risks(client)
    for value in ["high", "0.8.1", "gtx", "1e", "0,8x", "NaN", "Infinity", "0.8|kg"]:
        assert "probability" in refused(client, "RiskAssessment", {"probability": value}), value
    for value in ["heavy", "52|kg", f"52|{UCUM}", "gt|kg|kg"]:
        assert "value-quantity" in refused(client, "Observation", {"value-quantity": value}), \
            value


def test_uri_is_exact(client: TestClient) -> None:
    grace = patient(client, "Okafor", "Grace")
    url = "https://docs.leedsth.nhs.uk/respect/2026/RR8-100234.pdf"
    respect = make(client, {"resourceType": "DocumentReference", "status": "current",
                            "subject": ref("Patient", grace),
                            "content": [{"attachment": {"contentType": "application/pdf",
                                                        "url": url}}]})
    scanned = make(client, {"resourceType": "DocumentReference", "status": "current",
                            "content": [{"attachment": {"contentType": "image/tiff",
                                                        "data": "SUkqAA=="}}]})
    assert ids(client, "DocumentReference", {"location": url}) == {respect}
    assert ids(client, "DocumentReference", {"location": url.upper()}) == set()
    assert ids(client, "DocumentReference", {"location": "https://docs.leedsth.nhs.uk/"}) \
        == set()
    assert ids(client, "DocumentReference", {"location:missing": "true"}) == {scanned}

    respect_uri = "https://www.resus.org.uk/respect"
    plan = make(client, {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                         "subject": ref("Patient", grace), "instantiatesUri": [respect_uri]})
    make(client, {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                  "subject": ref("Patient", grace)})
    assert ids(client, "CarePlan", {"instantiates-uri": respect_uri}) == {plan}
    assert ids(client, "CarePlan", {"instantiates-uri": respect_uri + "/"}) == set()

    dsa = "https://leeds-eol.example/policy/data-sharing-agreement-v3"
    audit = make(client, {"resourceType": "AuditEvent", "recorded": "2026-05-10T09:31:00Z",
                          "type": {"system": "http://dicom.nema.org/resources/ontology/DCM",
                                   "code": "110110"},
                          "agent": [{"requestor": True, "policy": [dsa]}],
                          "source": {"observer": {"display": "gateway"}}})
    assert ids(client, "AuditEvent", {"policy": dsa}) == {audit}
    assert ids(client, "AuditEvent", {"policy": dsa.replace("v3", "v2")}) == set()


def test_comparisons_at_exact_boundaries(client: TestClient) -> None:
    # R4 3.1.1.4.2: a stored value equal to the search value as decimals is equal however
    # either is written; an implied range is half-open: 100 is [99.5, 100.5)
    grace = patient(client, "Okafor", "Grace")
    w = {v: weight(client, grace, v, "mg/dL") for v in (0.3, 2.1, 2.15, 3.1, 99.5, 100.5)}
    every = set(w)

    def found(value: str) -> set[float]:
        matched = ids(client, "Observation", {"value-quantity": value})
        return {v for v, i in w.items() if i in matched}

    assert found("ge2.10") == every - {0.3}
    assert found("ge2.1") == every - {0.3}
    assert found("le2.10") == {0.3, 2.1}
    assert found("lt2.10") == {0.3}
    assert found("gt2.10") == every - {0.3, 2.1}
    assert found("gt3.10") == {99.5, 100.5}
    assert found("ge3.10") == {3.1, 99.5, 100.5}
    assert found("sa3.100") == {99.5, 100.5}
    assert found("eb3.1") == {0.3, 2.1, 2.15}
    assert found("ge0.30") == every
    assert found("lt0.3000") == set()
    assert found("eq100") == {99.5}  # [99.5, 100.5): 100.5 is not 100
    assert found("100") == {99.5}
    assert found("eq101") == {100.5}
    assert found("ne100") == every - {99.5}
    assert found("eq2.1") == {2.1}  # [2.05, 2.15)
    assert found("eq2.2") == {2.15}  # [2.15, 2.25)
    assert found("eq2.10") == {2.1}  # [2.095, 2.105)
    assert found("eq2.15") == {2.15}
    assert found("eq2") == {2.1, 2.15}  # [1.5, 2.5)
    assert found("eq1e2") == {99.5, 100.5}  # [50, 150)


def test_a_number_a_double_cannot_hold_is_refused(client: TestClient) -> None:
    seed_risks(client)
    for value in ["1e400", "gt1e400", "-1e400", "ap1e999"]:
        assert "probability" in refused(client, "RiskAssessment", {"probability": value}), value
