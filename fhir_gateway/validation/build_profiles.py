"""Regenerate the committed profile JSON in ``profiles/generated/`` (``make profiles``).

The profiles are written in FHIR Shorthand (``profiles/input/fsh/``) and compiled by SUSHI
(npm ``fsh-sushi``, pinned in ``profiles/package.json``). SUSHI needs its parents as
snapshots, from a FHIR package cache; packages.fhir.org cannot be reached from the
project's machines (only the npm registry), so this script builds that cache itself:

1. FHIR R4 core: the StructureDefinitions, ValueSets and CodeSystems of the npm package
   ``hl7.fhir.r4.examples@4.0.1`` (published by HL7, CC0; the same definitions as
   ``hl7.fhir.r4.core``, which is not on the npm registry), laid out as
   ``hl7.fhir.r4.core#4.0.1``.
2. UK Core STU2: the differential-only definitions in ``../shared/ukcore``, each given a
   snapshot by :mod:`fhir_gateway.validation.snapshot`, laid out as
   ``fhir.r4.ukcore.stu2#2.0.0``.
3. ``sushi build --snapshot`` with HOME pointing at that cache and no FHIR registry.
4. The output is written, one resource a file, to ``profiles/generated/``, with the R4
   ValueSets our required bindings name (expanded), and ``manifest.json``: a hash of every
   input (FSH, SUSHI config and lock file, these scripts, the UK Core files) and of every
   output, which ``tests/validation/test_generated_current.py`` checks offline.

Usage (from the repository root; needs node and npm)::

    .venv/bin/python -m fhir_gateway.validation.build_profiles [--ukcore DIR] [--r4 TGZ]

Work files go to ``build/profiles/`` (git-ignored). Output is deterministic.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

from . import snapshot

REPO = Path(__file__).resolve().parents[2]
PROFILES = REPO / "profiles"
OUT = PROFILES / "generated"
WORK = REPO / "build" / "profiles"

R4_PACKAGE = "hl7.fhir.r4.examples@4.0.1"
R4_TARBALL_SHA1 = "537ea7db3f3c7b3575fe2eaa7808bad21261cca3"
UKCORE_PACKAGE = ("fhir.r4.ukcore.stu2", "2.0.0")
CANONICAL = "https://fhir.shared-care-record.example"

#: Inputs of the generated JSON, relative to the repository root (plus the UK Core files).
INPUT_GLOBS = (
    "profiles/sushi-config.yaml",
    "profiles/package.json",
    "profiles/package-lock.json",
    "profiles/input/fsh/*.fsh",
    "fhir_gateway/validation/build_profiles.py",
    "fhir_gateway/validation/snapshot.py",
)
UKCORE_FOLDERS = ("structuredefinitions", "valuesets", "codesystems", "conceptmaps")

Json = dict[str, Any]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def input_hashes(ukcore: Path, repo: Path = REPO) -> dict[str, str]:
    """sha256 of every input file, keyed by a stable name (what the manifest records).

    `repo` is the source tree (tests pass theirs: an installed copy of this module does
    not live in one).
    """
    out: dict[str, str] = {}
    for pattern in INPUT_GLOBS:
        for path in sorted(repo.glob(pattern)):
            out[path.relative_to(repo).as_posix()] = sha256(path.read_bytes())
    for folder in UKCORE_FOLDERS:
        for path in sorted((ukcore / folder).glob("*.json")):
            out[f"ukcore/{folder}/{path.name}"] = sha256(path.read_bytes())
    return out


def render(resource: Json) -> bytes:
    return (json.dumps(resource, indent=2, ensure_ascii=False) + "\n").encode()


# --- FHIR R4 core -----------------------------------------------------------------------

def r4_package(tgz: Path | None) -> Path:
    """The unpacked R4 package folder (``package/``), downloading it with npm if needed."""
    folder = WORK / "r4"
    if (folder / "package" / "package.json").is_file():
        return folder / "package"
    folder.mkdir(parents=True, exist_ok=True)
    if tgz is None:
        print(f"npm pack {R4_PACKAGE} ...", file=sys.stderr)
        subprocess.run(["npm", "pack", R4_PACKAGE, "--silent"], cwd=folder, check=True,
                       stdout=subprocess.DEVNULL)
        tgz = next(folder.glob("*.tgz"))
    digest = hashlib.sha1(tgz.read_bytes()).hexdigest()
    if digest != R4_TARBALL_SHA1:
        raise SystemExit(f"{tgz}: sha1 {digest}, expected {R4_TARBALL_SHA1}")
    with tarfile.open(tgz, "r:gz") as tar:
        tar.extractall(folder, filter="data")
    return folder / "package"


def load_folder(folder: Path, prefixes: tuple[str, ...]) -> dict[str, Json]:
    out = {}
    for path in sorted(folder.glob("*.json")):
        if path.name.startswith(prefixes):
            resource = json.loads(path.read_bytes())
            out[resource["url"]] = resource
    return out


# --- the local FHIR package cache for SUSHI ---------------------------------------------

def write_package(cache: Path, name: str, version: str, resources: list[Json],
                  dependencies: dict[str, str]) -> None:
    folder = cache / f"{name}#{version}" / "package"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    manifest = {"name": name, "version": version, "fhirVersions": ["4.0.1"],
                "dependencies": dependencies}
    (folder / "package.json").write_text(json.dumps(manifest, indent=2))
    for r in resources:
        (folder / f"{r['resourceType']}-{r['id']}.json").write_bytes(render(r))


def ukcore_with_snapshots(ukcore: Path, core: dict[str, Json]) -> list[Json]:
    differentials = load_folder(ukcore / "structuredefinitions", ("",))
    done: dict[str, Json] = {}

    def resolve(url: str) -> Json | None:
        url = url.split("|")[0]
        if url in core:
            return core[url]
        if url in done:
            return done[url]
        sd = differentials.get(url)
        if sd is None:
            return None
        base = resolve(sd["baseDefinition"])
        if base is None:
            raise snapshot.SnapshotError(f"{url}: base {sd['baseDefinition']} not found")
        done[url] = snapshot.generate(sd, base, resolve)
        return done[url]

    return [resolve(url) for url in sorted(differentials)]  # type: ignore[misc]


def sushi(cache_home: Path) -> Path:
    npm_dir = WORK / "npm"
    npm_dir.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(PROFILES / name, npm_dir / name)
    lock = sha256((PROFILES / "package-lock.json").read_bytes())
    stamp = npm_dir / "node_modules" / ".lock-sha256"
    if not stamp.is_file() or stamp.read_text() != lock:
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=npm_dir,
                       check=True)
        stamp.write_text(lock)
    out = WORK / "sushi-out"
    if out.exists():
        shutil.rmtree(out)
    env = dict(os.environ, HOME=str(cache_home),
               # No FHIR registry is reachable: fail at once, don't wait for a time-out.
               FPL_REGISTRY="http://127.0.0.1:9")
    result = subprocess.run(
        [str(npm_dir / "node_modules" / ".bin" / "sushi"), "build", str(PROFILES),
         "--snapshot", "--out", str(out)],
        env=env, capture_output=True, text=True,
    )
    log = result.stdout + result.stderr
    (WORK / "sushi.log").write_text(log)
    if result.returncode != 0:
        print(log, file=sys.stderr)
        raise SystemExit(f"sushi failed (exit {result.returncode}); log in {WORK / 'sushi.log'}")
    return out / "fsh-generated" / "resources"


# --- terminology for required bindings ----------------------------------------------------

def required_value_sets(profiles: list[Json]) -> set[str]:
    urls = set()
    for sd in profiles:
        for e in sd["snapshot"]["element"]:
            b = e.get("binding", {})
            if b.get("strength") == "required" and b.get("valueSet"):
                urls.add(b["valueSet"].split("|")[0])
    return urls


def expand(vs: Json, code_systems: dict[str, Json],
           value_sets: dict[str, Json]) -> list[dict[str, str]] | str:
    """The codes of `vs` as expansion.contains, or a reason it cannot be enumerated."""
    contains: list[dict[str, str]] = []
    compose = vs.get("compose", {})
    if compose.get("exclude"):
        return "has exclusions"
    for inc in compose.get("include", []):
        if inc.get("filter"):
            return f"filters on {inc.get('system')}"
        for ref in inc.get("valueSet", []):
            inner = value_sets.get(ref.split("|")[0])
            sub = expand(inner, code_systems, value_sets) if inner else f"unknown {ref}"
            if isinstance(sub, str):
                return sub
            contains.extend(sub)
        system = inc.get("system")
        if not system:
            continue
        if inc.get("concept"):
            contains.extend({"system": system, "code": c["code"], "display": c.get("display",
                             "")} for c in inc["concept"])
            continue
        cs = code_systems.get(system)
        if cs is None or cs.get("content") not in ("complete", None):
            return f"code system {system} not available in full"

        def walk(concepts: list[Json], sys_: str = system) -> None:
            for c in concepts:
                contains.append({"system": sys_, "code": c["code"],
                                 "display": c.get("display", "")})
                walk(c.get("concept", []))

        walk(cs.get("concept", []))
    if not contains:
        return "no enumerable codes"
    return [{k: v for k, v in c.items() if v} for c in contains]


def r4_terminology(urls: set[str], package: Path) -> tuple[list[Json], dict[str, str]]:
    value_sets = load_folder(package, ("ValueSet-",))
    code_systems = load_folder(package, ("CodeSystem-",))
    out, unchecked = [], {}
    for url in sorted(urls):
        if url.startswith(CANONICAL):
            continue
        vs = value_sets.get(url)
        if vs is None:
            unchecked[url] = "not an R4 core ValueSet (UK Core or other); not shipped"
            continue
        result = expand(vs, code_systems, value_sets)
        if isinstance(result, str):
            unchecked[url] = f"cannot be enumerated ({result}); not checked"
            continue
        copy = {k: v for k, v in vs.items() if k not in ("text", "extension", "expansion")}
        copy["expansion"] = {
            "identifier": f"urn:shared-care-record:expansion:{vs['id']}",
            "timestamp": "2019-11-01T09:29:23+11:00",  # the R4 4.0.1 publication date
            "contains": result,
        }
        out.append(copy)
    return out, unchecked


# --- main -------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ukcore", type=Path, default=REPO.parent / "shared" / "ukcore")
    parser.add_argument("--r4", type=Path, help=f"the .tgz from npm pack {R4_PACKAGE}")
    args = parser.parse_args(argv)

    package = r4_package(args.r4)
    core_sds = load_folder(package, ("StructureDefinition-",))
    core_terms = [*load_folder(package, ("ValueSet-", "CodeSystem-")).values()]
    ukcore_sds = ukcore_with_snapshots(args.ukcore, core_sds)
    ukcore_terms = [*load_folder(args.ukcore / "valuesets", ("",)).values(),
                    *load_folder(args.ukcore / "codesystems", ("",)).values()]

    cache_home = WORK / "home"
    cache = cache_home / ".fhir" / "packages"
    write_package(cache, "hl7.fhir.r4.core", "4.0.1", [*core_sds.values(), *core_terms], {})
    write_package(cache, *UKCORE_PACKAGE, [*ukcore_sds, *ukcore_terms],
                  {"hl7.fhir.r4.core": "4.0.1"})
    generated = [json.loads(p.read_bytes()) for p in sorted(sushi(cache_home).glob("*.json"))]

    profiles = [r for r in generated if r["resourceType"] == "StructureDefinition"]
    r4_value_sets, unchecked = r4_terminology(required_value_sets(profiles), package)

    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "r4").mkdir(parents=True)
    outputs: dict[str, str] = {}
    for r in generated:
        name = f"{r['resourceType']}-{r['id']}.json"
        data = render(r)
        (OUT / name).write_bytes(data)
        outputs[name] = sha256(data)
    for r in r4_value_sets:
        name = f"r4/ValueSet-{r['id']}.json"
        data = render(r)
        (OUT / name).write_bytes(data)
        outputs[name] = sha256(data)
    inputs = input_hashes(args.ukcore)
    manifest = {
        "about": "Generated by `make profiles` (fhir_gateway/validation/build_profiles.py). "
                 "Do not edit: change the FSH in profiles/input/fsh/ and regenerate.",
        "canonical": CANONICAL,
        "tools": {
            "sushi": json.loads((PROFILES / "package.json").read_text())
            ["devDependencies"]["fsh-sushi"],
            "fhir_r4": f"npm {R4_PACKAGE} (sha1 {R4_TARBALL_SHA1})",
            "uk_core": "../shared/ukcore (UK Core STU2 2.0.0 differentials, "
                       "snapshots generated by fhir_gateway.validation.snapshot)",
        },
        "unchecked_required_bindings": unchecked,
        "inputs_sha256": sha256(json.dumps(inputs, sort_keys=True).encode()),
        "inputs": inputs,
        "outputs": outputs,
    }
    (OUT / "manifest.json").write_bytes(render(manifest))
    print(f"wrote {len(outputs)} files to {OUT.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
