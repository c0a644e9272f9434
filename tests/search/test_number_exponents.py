"""A number or quantity search value with an exponent past the decimal context
(`0e999999999`) answered 500 (decimal.InvalidOperation from the precision range); it is
a 400 naming the parameter, wherever a search runs."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from fhir_gateway.search.values import number_range


@pytest.mark.parametrize("value", ["0e999999999", "1e-999999999", "ap0e999999999"])
def test_a_huge_exponent_is_a_400(client: TestClient, value: str) -> None:
    r = client.get("/fhir/Observation", params={"value-quantity": value})
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["expression"] == ["value-quantity"]
    created = client.post("/fhir/Observation", headers={
        "Content-Type": "application/fhir+json",
        "If-None-Exist": f"value-quantity={value}"},
        json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}})
    assert created.status_code == 400, created.text
    batch = client.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Observation?value-quantity={value}"}}]})
    assert batch.status_code == 200, batch.text
    assert batch.json()["entry"][0]["response"]["status"].startswith("400")


def test_the_range_of_an_ordinary_number_is_unchanged() -> None:
    assert number_range("1.5") == (1.45, 1.55)
    with pytest.raises(ValueError, match="exponent out of range"):
        number_range("0e999999999")
