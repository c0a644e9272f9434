"""Snapshot generation: a base snapshot plus a differential gives the derived snapshot.

Build-time only (``make profiles``): UK Core publishes its StructureDefinitions as
differentials, and SUSHI (which compiles the gateway's FHIR Shorthand) needs every parent
as a snapshot. This module applies a differential to its base's snapshot the way the FHIR
specification describes (R4 "Profiling: snapshot generation"), for the subset of
differential features UK Core uses:

- constraints on elements by id (``Patient.identifier:nhsNumber.system``), merged property
  by property (``min``, ``max``, ``type``, ``fixed[x]``, ``pattern[x]``, ``binding``,
  ``mustSupport``, text; ``constraint`` and ``mapping`` are added to the base's);
- slices (``name:slice``) created as copies of the sliced element, placed after the
  element's existing slices;
- children of an element that the base does not list (a datatype's elements, an
  extension profile's elements, a ``contentReference``) unfolded from the type's own
  snapshot before they are constrained.

Anything it cannot place raises :class:`SnapshotError` naming the element, rather than
producing a snapshot that silently drops a constraint.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

#: Resolves a canonical URL (a datatype's or a profile's) to a StructureDefinition that
#: has a snapshot, or None when it is not known.
Resolver = Callable[[str], "dict[str, Any] | None"]

CORE = "http://hl7.org/fhir/StructureDefinition/"

#: Element properties whose differential value is added to the base's, not replacing it.
_ADDITIVE = ("constraint", "mapping", "condition")


class SnapshotError(ValueError):
    """A differential element that cannot be applied to the base snapshot."""


def generate(sd: dict[str, Any], base: dict[str, Any], resolve: Resolver) -> dict[str, Any]:
    """Return a copy of `sd` with ``snapshot`` computed from `base`'s snapshot."""
    if "snapshot" not in base:
        raise SnapshotError(f"base {base.get('url')} has no snapshot")
    elements = [copy.deepcopy(e) for e in base["snapshot"]["element"]]
    builder = _Builder(elements, resolve)
    for diff in sd.get("differential", {}).get("element", []):
        eid = diff.get("id") or diff["path"]
        index = builder.ensure(eid)
        _merge(builder.elements[index], diff, eid)
    out = copy.deepcopy(sd)
    out["snapshot"] = {"element": builder.elements}
    return out


def _merge(target: dict[str, Any], diff: dict[str, Any], eid: str) -> None:
    for key, value in diff.items():
        if key in ("id", "path"):
            continue
        if key in _ADDITIVE:
            existing = target.setdefault(key, [])
            for item in value:
                if item not in existing:
                    existing.append(copy.deepcopy(item))
            continue
        if key == "min" and value < target.get("min", 0):
            raise SnapshotError(f"{eid}: min {value} is below the base's {target.get('min')}")
        if key == "max" and _max(value) > _max(target.get("max", "*")):
            raise SnapshotError(f"{eid}: max {value} is above the base's {target.get('max')}")
        if key.startswith(("fixed", "pattern")):
            for old in [k for k in target if k.startswith(("fixed", "pattern"))]:
                del target[old]
        target[key] = copy.deepcopy(value)


def _max(value: str) -> float:
    return float("inf") if value == "*" else int(value)


def _split(eid: str) -> list[str]:
    """Split an element id into its segments (``name`` or ``name:slice``)."""
    return eid.split(".")


class _Builder:
    def __init__(self, elements: list[dict[str, Any]], resolve: Resolver) -> None:
        self.elements = elements
        self.resolve = resolve

    def find(self, eid: str) -> int | None:
        for i, e in enumerate(self.elements):
            if e["id"] == eid:
                return i
        return None

    def end_of_subtree(self, index: int) -> int:
        """Index just past element `index` and everything under it (children and slices)."""
        eid = self.elements[index]["id"]
        i = index + 1
        while i < len(self.elements):
            other = self.elements[i]["id"]
            if other.startswith(eid + ".") or other.startswith(eid + ":"):
                i += 1
            else:
                break
        return i

    def has_children(self, index: int) -> bool:
        eid = self.elements[index]["id"]
        return index + 1 < len(self.elements) and self.elements[index + 1]["id"].startswith(
            eid + ".")

    def ensure(self, eid: str) -> int:
        found = self.find(eid)
        if found is not None:
            return found
        segments = _split(eid)
        if len(segments) == 1:
            raise SnapshotError(f"{eid}: root element does not match the base")
        parent_id = ".".join(segments[:-1])
        last = segments[-1]
        parent = self.ensure(parent_id)
        if ":" in last:
            name, slice_name = last.split(":", 1)
            sliced = self.ensure(f"{parent_id}.{name}")
            found = self.find(eid)  # unfolding the sliced element may have brought it
            if found is not None:
                return found
            return self._add_slice(sliced, slice_name)
        if not self.has_children(parent):
            self._unfold(parent)
            found = self.find(eid)
            if found is not None:
                return found
        raise SnapshotError(f"{eid}: no such element in the base (parent {parent_id})")

    def _add_slice(self, sliced: int, slice_name: str) -> int:
        template = self.elements[sliced]
        if "slicing" not in template and template["path"].rsplit(".", 1)[-1] in (
                "extension", "modifierExtension"):
            # Extensions are always sliced by url (R4 ElementDefinition, "Extension").
            template["slicing"] = {"discriminator": [{"type": "value", "path": "url"}],
                                   "rules": "open"}
        slice_el = copy.deepcopy(template)
        slice_el.pop("slicing", None)
        slice_el["id"] = f"{template['id']}:{slice_name}"
        slice_el["sliceName"] = slice_name
        # A slice is a subset: the sliced element's minimum applies to the whole, not to
        # each slice, so a new slice starts at 0 unless the differential says otherwise.
        slice_el["min"] = 0
        # A slice of a choice element named after one type keeps only that type.
        if template["path"].endswith("[x]"):
            wanted = slice_name[len(template["path"].rsplit(".", 1)[-1][:-3]):]
            types = [t for t in template.get("type", []) if t["code"].lower() == wanted.lower()]
            if types:
                slice_el["type"] = types
        # Children the sliced element already lists are copied under the slice.
        children = []
        start = sliced + 1
        end = self.end_of_subtree(sliced)
        prefix = template["id"] + "."
        for e in self.elements[start:end]:
            if e["id"].startswith(prefix):
                child = copy.deepcopy(e)
                child["id"] = slice_el["id"] + child["id"][len(template["id"]):]
                children.append(child)
        self.elements[end:end] = [slice_el, *children]
        return end

    def _unfold(self, index: int) -> None:
        element = self.elements[index]
        children = self._children_of(element)
        self.elements[index + 1:index + 1] = children

    def _children_of(self, element: dict[str, Any]) -> list[dict[str, Any]]:
        eid, path = element["id"], element["path"]
        ref = element.get("contentReference")
        if ref:
            target_id = ref.lstrip("#")
            source = self.find(target_id)
            if source is None:
                raise SnapshotError(f"{eid}: contentReference {ref} not found")
            end = self.end_of_subtree(source)
            return [
                _rebase_from(e, target_id, eid, path)
                for e in self.elements[source + 1:end]
                if e["id"].startswith(target_id + ".")
            ]
        types = element.get("type", [])
        if len(types) != 1:
            raise SnapshotError(
                f"{eid}: cannot unfold children of an element with {len(types)} types")
        type_ = types[0]
        sd = None
        for profile in type_.get("profile", []):
            sd = self.resolve(profile)
            if sd is not None:
                break
        if sd is None:
            sd = self.resolve(CORE + type_["code"])
        if sd is None or "snapshot" not in sd:
            raise SnapshotError(f"{eid}: type {type_['code']} has no known snapshot")
        type_elements = sd["snapshot"]["element"]
        root_id = type_elements[0]["id"]
        return [_rebase_from(e, root_id, eid, path) for e in type_elements[1:]]


def _rebase_from(element: dict[str, Any], old_id: str, new_id: str,
                 new_path: str) -> dict[str, Any]:
    out = copy.deepcopy(element)
    out["id"] = new_id + out["id"][len(old_id):]
    # The path has no slice names; the old element's path is its id without them.
    old_path = ".".join(seg.split(":")[0] for seg in old_id.split("."))
    out["path"] = new_path + out["path"][len(old_path):]
    return out
