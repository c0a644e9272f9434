"""The synthetic partnership: deterministic, in the partners' formats, safe NHS numbers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import hl7

from fhir_gateway.demo import GP_HEADER, SC_HEADER, write_partnership


def mod11_ok(number: str) -> bool:
    digits = [int(c) for c in number]
    check = 11 - sum(d * w for d, w in zip(digits[:9], range(10, 1, -1), strict=True)) % 11
    return check != 10 and (0 if check == 11 else check) == digits[9]


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = write_partnership(tmp_path / "a", people=60)
    b = write_partnership(tmp_path / "b", people=60)
    assert {k: [p.read_bytes() for p in v] for k, v in a.items()} == \
        {k: [p.read_bytes() for p in v] for k, v in b.items()}
    assert set(a) == {"acute", "gp", "hospice", "socialcare", "community"}


def test_each_person_has_an_nhs_number_of_their_own() -> None:
    """Drawn at random from ~900,000 valid 999 numbers, about 5% of 100,000 people shared
    one, and the benchmark's records for them were held as identity conflicts."""
    import random

    from fhir_gateway.demo import _people

    people = _people(20_000, random.Random(3))  # random draws repeat ~220 numbers here
    assert len({p.nhs for p in people}) == len(people)
    assert all(mod11_ok(p.nhs) for p in people)


def test_formats_and_identifiers(tmp_path: Path) -> None:
    files = write_partnership(tmp_path, people=120)
    gp = list(csv.reader(files["gp"][0].open(encoding="utf-8", newline="")))
    assert gp[0] == GP_HEADER and len(gp) > 50
    nhs = {row[0].replace(" ", "") for row in gp[1:]}
    assert all(n.startswith("999") and mod11_ok(n) for n in nhs)
    sc = list(csv.reader(files["socialcare"][0].open(encoding="utf-8", newline="")))
    assert sc[0] == SC_HEADER
    by_person: dict[str, set[str]] = {}
    for row in sc[1:]:
        by_person.setdefault(row[0], set()).add(row[3] + row[4])
    assert all(len(v) == 1 for v in by_person.values())  # one person id per person
    text = files["acute"][0].read_bytes().decode("utf-8")  # keep the \r separators
    messages = ["MSH|" + m for m in text.split("MSH|") if m]
    ids = [str(hl7.parse(m).segment("MSH")[10]) for m in messages]
    assert len(ids) == len(set(ids))  # message control ids are unique
    for m in messages:
        msg = hl7.parse(m)
        assert str(msg.segment("PV1")[19]).startswith("V")
        assert mod11_ok(str(msg.segment("PID")[3][0][0]))
    for line in files["hospice"][0].read_text(encoding="utf-8").splitlines():
        client = json.loads(line)
        assert mod11_ok(client["nhsNumber"])
    for path in files["community"]:
        bundle = json.loads(path.read_text(encoding="utf-8"))
        assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"


def test_the_demo_loads_and_leaves_no_files_behind(tmp_path: Path) -> None:
    """Without --out it wrote the feeds to a temporary directory and left it there."""
    import os
    import subprocess
    import sys

    from fhir_gateway.fhir.repository import Repository
    from fhir_gateway.store import open_store
    from fhir_gateway.store.query import IndexQuery

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    store = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    cli = str(Path(sys.executable).with_name("fhir-gateway"))
    run = subprocess.run([cli, "--store", store, "demo", "--people", "4"],
                         capture_output=True, text=True, timeout=300, check=False,
                         env={**os.environ, "TMPDIR": str(scratch)})
    assert run.returncode == 0, run.stderr
    assert list(scratch.iterdir()) == []
    engine = open_store(store)
    try:
        assert Repository(engine).find(IndexQuery(rtype="Patient", limit=10)).rows
    finally:
        engine.close()
