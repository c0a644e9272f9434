"""JSON text the gateway writes: generated documents and stored resources alike."""

from __future__ import annotations

import pytest

from fhir_gateway import jsonio
from fhir_gateway.errors import BadRequest


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


@pytest.mark.parametrize("body", [b'{"id": "\\ud800"}', b'{"\\uDFFF": 1}',
                                  b'["ok", "\\ud83d"]', b'{"a": "\\ude00\\ud83d"}'])
def test_an_unpaired_surrogate_escape_is_refused_where_it_is_parsed(body: bytes) -> None:
    # nothing can store, compare or answer such a string: later layers would fail with a
    # 500 (SQLite cannot encode it), so it is a 400 here
    with pytest.raises(BadRequest, match="unpaired UTF-16 surrogate"):
        jsonio.parse(body)


def test_a_surrogate_pair_is_a_character() -> None:
    assert jsonio.parse(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001F600"}


def test_a_surrogate_deep_inside_is_refused_for_its_depth_not_a_crash() -> None:
    # The surrogate check re-encodes the whole value (recursively): the depth check
    # must come first, or a nesting the parser just managed hits Python's recursion
    # limit there. Where that window lies depends on the stack in use: swept.
    for depth in range(800, 1100):
        body = ("[" * depth + '"\\ud800"' + "]" * depth).encode()
        with pytest.raises(BadRequest, match=r"nests .*deep"):
            jsonio.parse(body)


@pytest.mark.parametrize("body", [b'{"cpr": "attempt", "cpr": "not-attempt"}',
                                  b'{"a": [{"b": 1, "c": 2, "b": 1}]}'])
def test_a_name_twice_in_one_object_is_refused_not_read_as_the_last(body: bytes) -> None:
    # parsers differ on which value counts; a partner's or client's duplicate must not
    # silently decide a CPR answer
    with pytest.raises(BadRequest, match="appears twice in one object"):
        jsonio.parse(body)
    # the same name in different objects is fine
    assert jsonio.parse(b'{"a": {"x": 1}, "b": {"x": 2}}') == {"a": {"x": 1}, "b": {"x": 2}}
