"""A record refused after mapping (a resource meeting none of its profiles) is named by
where in the source record that resource came from, as a mapping's own refusals are."""

from __future__ import annotations

import json

from identity_kit import Partnership, hospice, nhs_numbers

from fhir_gateway.store.base import StoreEngine


def test_a_contact_refused_by_its_profile_is_named_by_its_place_on_the_form(
        engine: StoreEngine) -> None:
    """A contact with neither name nor phone was named `RelatedPerson` only, leaving the
    analyst to find which of the form's contacts it was (left in session 16)."""
    p = Partnership(engine)
    line = json.loads(hospice("H-ORIGIN", nhs_numbers(999007100, 1)[0]))
    line["respect"]["contacts"] = [
        {"name": "Ann Green", "relationship": "daughter", "phone": "07700 900503",
         "lpa": False},
        {"relationship": "son", "lpa": False},  # neither name nor phone
    ]
    summary = p.send("hospice", "clients.jsonl", (json.dumps(line) + "\n").encode())
    [rejection] = summary.rejections
    assert rejection["field"].startswith("respect.contacts[1]: "), rejection
    assert "RelatedPerson made from respect.contacts[1] meets none of its profiles" \
        in rejection["reason"]
    assert "hospice clients.jsonl line 1" in rejection["reason"]
    assert p.all("RelatedPerson") == []  # nothing of the record written
    [(_, kept)] = p.loader.list_rejected()
    assert kept["field"] == rejection["field"]
