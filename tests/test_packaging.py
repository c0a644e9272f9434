"""`pip install .` ships every subpackage and the data files (tests run the installed copy)."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import fhir_gateway

ROOT = Path(__file__).resolve().parents[1]


def test_every_source_package_is_listed_for_installation() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    in_tree = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "fhir_gateway").rglob("__init__.py")
    }
    assert in_tree <= listed, f"add to pyproject packages: {sorted(in_tree - listed)}"


def test_installed_package_has_its_data_and_mapped_folders() -> None:
    data = resources.files("fhir_gateway.data")
    for name in ("r4_resource_types.json", "search_parameters.json", "r4b_model_gaps.json"):
        assert data.joinpath(name).is_file(), name
    for pkg in ("fhir_gateway.mappings", "fhir_gateway.profiles", "fhir_gateway.auth"):
        assert resources.files(pkg).is_dir(), pkg
    assert fhir_gateway.__version__
