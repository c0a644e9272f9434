"""JSON text the gateway writes: generated documents and stored resources alike."""

from __future__ import annotations

import pytest

from fhir_gateway import jsonio


@pytest.mark.parametrize("value", [
    "https://gw.example/fhir/Patient/p1",
    {"resourceType": "Composition", "title": "Résumé \"quoted\" \\ <b>&</b>\n\u2028",
     "section": [{"entry": [{"reference": "urn:uuid:1"}]}], "n": 3, "ok": True, "x": None},
])
def test_generated_text_is_what_dumps_writes(value: object) -> None:
    assert jsonio.dumps_generated(value) == jsonio.dumps(value)


def test_a_decimal_in_generated_content_is_still_written_exactly() -> None:
    value = {"valueDecimal": jsonio.FhirDecimal("1.50"), "exp": jsonio.FhirDecimal("1e2")}
    assert jsonio.dumps_generated(value) == '{"valueDecimal":1.50,"exp":1e2}'
