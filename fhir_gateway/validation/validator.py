"""ProfileValidator: holds a resource to the gateway's profiles and reports every problem.

Loaded once from the installed ``fhir_gateway.profiles`` package data (the generated
StructureDefinitions, ValueSets and CodeSystems); each profile is compiled into a
:class:`~fhir_gateway.validation.plan.Plan`. ``validate`` walks the resource once per
profile it is held to and returns an :class:`~fhir_gateway.errors.Issue` per problem:

=========================  ===========  =================================================
problem                    issue code   expression
=========================  ===========  =================================================
missing required element   required     the missing element (``Observation.value``)
too many / not allowed     structure    the element (``Observation.dataAbsentReason``)
element not in the type    structure    the element
wrong choice type          structure    ``Observation.effective.ofType(Period)``
fixed / pattern value      value        the element
required binding           code-invalid the coded element
NHS number check digit     value        the identifier's value
reference target type      invalid      the reference (``Encounter.subject``)
invariant                  invariant    the element the invariant is on
unknown meta.profile       not-supported (warning) ``Patient.meta.profile[0]``
=========================  ===========  =================================================

A resource that names none of the gateway's profiles, and is validated without
``profile=``, is held to no profile: the result is the warnings for the profiles it names
that the gateway does not know (the R4 structure is checked in ``fhir/validation.py``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from importlib import resources
from typing import Any

from ..errors import Issue
from .nhs_number import is_valid_nhs_number
from .plan import Plan, Rule, compile_plan, is_primitive
from .terminology import Terminology

NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
NHS_NUMBER_PROBLEM = ("is not a valid NHS number: it must be 10 digits whose last digit is "
                      "the Modulus 11 check digit (scr-nhs-1)")
#: A literal reference's type (R4 Reference.reference; urn:uuid:, urn:oid: and anything
#: else that does not match name no type, so no type is checked).
_REFERENCE = re.compile(r"(?:https?://\S+/)?([A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}"
                        r"(?:/_history/[A-Za-z0-9\-.]{1,64})?")
_BOUND_PRIMITIVES = frozenset({"code", "string", "uri"})
#: references that name no type by their form: contained (checked against it), and a
#: transaction's placeholders
_NAMES_NO_TYPE = ("#", "urn:uuid:", "urn:oid:")
#: R4 required bindings of the status codes the shared record reads, checked on every
#: resource of these types, with a gateway profile or without: a status the code does
#: not know (`entered in error`, a typo for `entered-in-error`) would otherwise be taken
#: for a current record. The ValueSets are the R4 ones shipped in profiles/generated/r4.
_R4 = "http://hl7.org/fhir/ValueSet/"
BASE_STATUS_BINDINGS: dict[str, tuple[tuple[str, str], ...]] = {
    "Observation": (("status", f"{_R4}observation-status|4.0.1"),),
    "DetectedIssue": (("status", f"{_R4}observation-status|4.0.1"),),
    "Encounter": (("status", f"{_R4}encounter-status|4.0.1"),),
    "CarePlan": (("status", f"{_R4}request-status|4.0.1"),
                 ("intent", f"{_R4}care-plan-intent|4.0.1")),
    "Consent": (("status", f"{_R4}consent-state-codes|4.0.1"),),
}


def _load_package() -> list[dict[str, Any]]:
    root = resources.files("fhir_gateway.profiles").joinpath("generated")
    out = []
    for folder in (root, root.joinpath("r4")):
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".json") and entry.name != "manifest.json":
                out.append(json.loads(entry.read_bytes()))
    return out


class ProfileValidator:
    """Validates resources against the gateway's profiles. Build once; thread-safe to share."""

    def __init__(self, definitions: Iterable[dict[str, Any]] | None = None) -> None:
        resources_ = list(definitions) if definitions is not None else _load_package()
        self.terminology = Terminology(resources_)
        sds = [r for r in resources_ if r.get("resourceType") == "StructureDefinition"
               and r.get("kind") == "resource"]
        profile_types = {sd["url"]: sd["type"] for sd in sds}
        self._plans: dict[str, Plan] = {
            sd["url"]: compile_plan(sd, self.terminology, profile_types) for sd in sds
        }
        self._by_type: dict[str, list[str]] = {}
        for url, plan in sorted(self._plans.items()):
            self._by_type.setdefault(plan.type, []).append(url)

    # --- what the gateway knows ----------------------------------------------------------

    def known(self, url: str) -> bool:
        """True when `url` (``|version`` allowed) is one of the gateway's profiles."""
        return url.split("|", 1)[0] in self._plans

    def profiles_for(self, resource_type: str) -> list[str]:
        """The gateway's profile URLs for `resource_type` (CapabilityStatement supportedProfile)."""
        return list(self._by_type.get(resource_type, []))

    def profiles(self) -> list[str]:
        return sorted(self._plans)

    def unchecked_bindings(self) -> dict[str, dict[str, str]]:
        """Per profile: required bindings not enumerable here (element id -> ValueSet)."""
        return {u: dict(p.unchecked_bindings) for u, p in self._plans.items()
                if p.unchecked_bindings}

    def unsupported_invariants(self) -> dict[str, dict[str, str]]:
        """Per profile: invariants fhirpathpy could not compile (key -> expression)."""
        return {u: dict(p.unsupported_invariants) for u, p in self._plans.items()
                if p.unsupported_invariants}

    # --- validation ----------------------------------------------------------------------

    def validate(self, resource: dict[str, Any], *, profile: str | None = None) -> list[Issue]:
        """Every problem of `resource` against `profile` and the gateway profiles it names.

        `profile` (e.g. from ``$validate?profile=``) is applied in addition to those in
        ``meta.profile``. Profiles in ``meta.profile`` the gateway does not know give a
        warning each. Errors and warnings are returned in document order.
        """
        rtype = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(rtype, str):
            return [Issue("The resource has no resourceType", code="structure",
                          expression=("resourceType",))]
        issues: list[Issue] = []
        urls: list[str] = []
        if profile is not None:
            if not self.known(profile):
                return [Issue(f"The gateway does not know the profile {profile}; known: "
                              + ", ".join(self.profiles()), code="not-supported")]
            urls.append(profile.split("|", 1)[0])
        meta = resource.get("meta")
        declared = meta.get("profile", []) if isinstance(meta, dict) else []
        for i, url in enumerate(declared if isinstance(declared, list) else []):
            if not isinstance(url, str):
                continue
            if self.known(url):
                if url.split("|", 1)[0] not in urls:
                    urls.append(url.split("|", 1)[0])
            else:
                issues.append(Issue(
                    f"Profile {url} is not one of the gateway's profiles, so the resource "
                    "was not checked against it", code="not-supported", severity="warning",
                    expression=(f"{rtype}.meta.profile[{i}]",)))
        if not urls:  # a profile's snapshot carries these bindings itself
            issues += self._base_status_codes(rtype, resource)
            issues += _nhs_numbers_anywhere(resource, rtype)
        seen: set[Issue] = set(issues)
        for url in urls:
            plan = self._plans[url]
            if plan.type != rtype:
                found = [Issue(f"Profile {plan.name} ({url}) is for {plan.type} resources, "
                               f"not {rtype}", code="invalid", expression=(rtype,))]
            else:
                found = _Run(plan, resource).issues
            for issue in found:
                if issue not in seen:
                    seen.add(issue)
                    issues.append(issue)
        return issues


    def _base_status_codes(self, rtype: str, resource: dict[str, Any]) -> list[Issue]:
        issues = []
        for element, url in BASE_STATUS_BINDINGS.get(rtype, ()):
            value = resource.get(element)
            if not isinstance(value, str):
                continue  # a wrong type is the model's to report
            codes = self.terminology.codes(url)
            if codes is not None and value not in codes.codes:
                issues.append(Issue(f"{rtype}.{element}: '{value[:60]}' is not one of "
                                    f"{codes.describe()}", code="code-invalid",
                                    expression=(f"{rtype}.{element}",)))
        return issues


def _nhs_numbers_anywhere(node: Any, path: str) -> list[Issue]:
    """scr-nhs-1 for a resource no gateway profile applies to: every NHS number in it, at
    any depth. A number written "943 476 5919" was stored and then found by no search,
    so the emergency summary said no record was known for it."""
    issues: list[Issue] = []
    if isinstance(node, dict):
        value = node.get("value")
        if node.get("system") == NHS_NUMBER_SYSTEM and isinstance(value, str) \
                and not is_valid_nhs_number(value):
            issues.append(Issue(
                f"{path}.value: {NHS_NUMBER_PROBLEM}", code="value",
                expression=(f"{path}.value",)))
        for key, child in node.items():
            if isinstance(child, dict | list):
                issues += _nhs_numbers_anywhere(child, f"{path}.{key}")
    elif isinstance(node, list):
        for i, child in enumerate(node):
            issues += _nhs_numbers_anywhere(child, f"{path}[{i}]")
    return issues


class _Run:
    """One walk of one resource against one plan, collecting issues."""

    __slots__ = ("env", "issues", "plan", "resource")

    def __init__(self, plan: Plan, resource: dict[str, Any]) -> None:
        self.plan = plan
        self.resource = resource
        self.env = {"resource": resource, "rootResource": resource}
        self.issues: list[Issue] = []
        self.node(plan.root, resource, plan.type)

    def add(self, path: str, message: str, code: str, severity: str = "error") -> None:
        self.issues.append(Issue(f"{path}: {message}", code=code, severity=severity,
                                 expression=(path,)))

    # A complex element (or the resource): its children, then its invariants.
    def node(self, rule: Rule, node: dict[str, Any], path: str) -> None:
        if rule.children:
            present: set[str] = set()
            for key, value in node.items():
                if value is None or value == []:
                    # JSON null or [] is no element (R4 JSON forbids both): it cannot
                    # fill a required one, nor escape a fixed value's check as present
                    continue
                if key.startswith("_"):  # a primitive's id/extensions: counts as present
                    entry = rule.keys.get(key[1:])
                    if entry is not None:
                        present.add(entry[0].name)
                    continue
                entry = rule.keys.get(key)
                if entry is None:
                    if key != "resourceType" or path != self.plan.type:
                        self.unknown(rule, key, path)
                    continue
                child, type_code = entry
                present.add(child.name)
                self.element(child, value, type_code, path)
            for child in rule.required:
                if child.name not in present:
                    name = child.name
                    self.add(f"{path}.{name}",
                             f"required ({child.min}..{_max(child)}) but missing: "
                             f"{child.label}", "required")
        self.invariants(rule, node, path)

    def unknown(self, rule: Rule, key: str, path: str) -> None:
        for child in rule.children.values():
            if child.choice and key.startswith(child.name) and key[len(child.name):][:1].isupper():
                wanted = " or ".join(child.types)
                got = key[len(child.name):]
                self.add(f"{path}.{child.name}.ofType({got})",
                         f"{child.name}[x] must be {wanted} here, not {got}", "structure")
                return
        self.add(f"{path}.{key}", f"'{key}' is not an element of {rule.path} "
                 "(not in FHIR R4 or not allowed by the profile)", "structure")

    def element(self, rule: Rule, value: Any, type_code: str | None, parent: str) -> None:
        path = f"{parent}.{rule.name}"
        if rule.choice and type_code:
            path = f"{path}.ofType({type_code[:1].upper() + type_code[1:]})"
        if isinstance(value, list):
            items = value
            if not rule.array:
                self.add(path, "must be a single value, not an array", "structure")
        else:
            items = [value]
            if rule.array:
                self.add(path, "must be an array", "structure")
        count = len(items)
        if rule.max is not None and count > rule.max:
            if rule.max == 0:
                self.add(path, f"is not allowed in {self.plan.name} ({rule.label})",
                         "structure")
            else:
                self.add(path, f"has {count} values; at most {rule.max} allowed", "structure")
        elif count < rule.min:
            self.add(path, f"has {count} values; at least {rule.min} required ({rule.label})",
                     "required")
        indexed = isinstance(value, list)
        if rule.slices:
            self.sliced(rule, items, path, type_code, indexed)
            return
        for i, item in enumerate(items):
            self.item(rule, item, type_code, f"{path}[{i}]" if indexed else path)

    def sliced(self, rule: Rule, items: list[Any], path: str, type_code: str | None,
               indexed: bool) -> None:
        counts = dict.fromkeys(range(len(rule.slices)), 0)
        for i, item in enumerate(items):
            ipath = f"{path}[{i}]" if indexed else path
            match = None
            for n, s in enumerate(rule.slices):
                if s.slice_keys is not None and _in_slice(s, item):
                    match = n
                    break
            if match is None:
                if rule.slicing_closed:
                    self.add(ipath, f"matches none of the allowed kinds of {rule.label} "
                             "(closed slicing)", "structure")
                self.item(rule, item, type_code, ipath)
                continue
            counts[match] += 1
            s = rule.slices[match]
            self.item(s, item, type_code, ipath)
            extra = [inv for inv in rule.invariants
                     if all(inv.key != own.key for own in s.invariants)]
            if extra:
                self.run_invariants(extra, item, ipath)
        for n, s in enumerate(rule.slices):
            c = counts[n]
            if c < s.min:
                self.add(path, f"needs {s.min} {s.slice_name} ({s.label}), found {c}",
                         "required")
            elif s.max is not None and c > s.max:
                self.add(path, f"has {c} {s.slice_name} ({s.label}); at most {s.max} allowed",
                         "structure")

    def item(self, rule: Rule, item: Any, type_code: str | None, path: str) -> None:
        if type_code is None and len(rule.types) == 1:
            type_code = rule.types[0]
        if item is None:
            return
        if type_code is not None and is_primitive(type_code):
            if isinstance(item, (dict, list)):
                self.add(path, f"must be a {type_code} value", "structure")
                return
            self.values(rule, item, path)
            codes = rule.binding.codes if rule.binding else None
            if codes is not None and type_code in _BOUND_PRIMITIVES and item not in codes.codes:
                self.add(path, f"'{item}' is not one of {codes.describe()}", "code-invalid")
            self.invariants(rule, item, path)
            return
        if not isinstance(item, dict):
            self.add(path, f"must be a JSON object ({type_code or 'element'})", "structure")
            return
        if not any(k != "id" for k in item):  # ele-1
            self.add(path, "is empty: an element needs a value or children (ele-1)",
                     "structure")
            return
        self.values(rule, item, path)
        if rule.binding and rule.binding.codes:
            self.bound(rule, item, type_code, path)
        if type_code == "Reference":
            if rule.targets is not None:
                self.reference(rule, item, path)
            if isinstance(item.get("identifier"), dict) and "identifier" not in rule.children:
                self.nhs_number(item["identifier"], f"{path}.identifier")
        elif type_code == "Identifier":
            self.nhs_number(item, path)
        if type_code in ("Resource", "DomainResource"):
            return  # contained resources are validated on their own, not here
        self.node(rule, item, path)

    def nhs_number(self, identifier: dict[str, Any], path: str) -> None:
        """scr-nhs-1 for every NHS number, in any identifier of any profiled resource."""
        if identifier.get("system") != NHS_NUMBER_SYSTEM:
            return
        value = identifier.get("value")
        if isinstance(value, str) and not is_valid_nhs_number(value):
            self.add(f"{path}.value", NHS_NUMBER_PROBLEM, "value")

    def values(self, rule: Rule, item: Any, path: str) -> None:
        if rule.fixed is not None and item != rule.fixed[1]:
            self.add(path, f"must be exactly {_show(rule.fixed[1])}", "value")
        if rule.pattern is not None and not _contains(item, rule.pattern[1]):
            self.add(path, f"must include {_show(rule.pattern[1])}", "value")

    def bound(self, rule: Rule, item: dict[str, Any], type_code: str | None,
              path: str) -> None:
        codes = rule.binding.codes  # type: ignore[union-attr]
        if type_code == "CodeableConcept":
            codings = item.get("coding") or []
        elif type_code == "Coding":
            codings = [item]
        else:
            return
        pairs = [(c.get("system", ""), c.get("code", "")) for c in codings if isinstance(c, dict)]
        if any(p in codes.pairs for p in pairs):  # type: ignore[union-attr]
            return
        given = ", ".join(f"{s}|{c}" for s, c in pairs) or "no coding"
        self.add(path, f"{given} is not in {codes.describe()}",  # type: ignore[union-attr]
                 "code-invalid")

    def reference(self, rule: Rule, item: dict[str, Any], path: str) -> None:
        targets = rule.targets or frozenset()
        ref = item.get("reference")
        declared = item.get("type")
        found = _reference_type(ref, self.resource) if isinstance(ref, str) else None
        if found is None and isinstance(ref, str) and rule.targets \
                and not ref.startswith(_NAMES_NO_TYPE):
            # a reference no reader here can follow (`Group/1#x`, a 65-character id): its
            # type cannot be checked, so it cannot be shown to name what it must
            self.add(path, f"{ref!r} is not a reference to "
                     + " or ".join(sorted(targets))
                     + " that can be read: write Type/id (an id of 1-64 letters, digits, "
                       "'-' or '.'), with a base URL or not", "invalid")
            return
        for rtype in (found, declared):
            if isinstance(rtype, str) and rtype not in targets:
                self.add(path, f"refers to a {rtype}; it must refer to "
                         + " or ".join(sorted(targets)), "invalid")
                return
        if found and isinstance(declared, str) and found != declared:
            self.add(path, f"type {declared} does not match the reference {ref}", "invalid")

    def invariants(self, rule: Rule, node: Any, path: str) -> None:
        if rule.invariants:
            self.run_invariants(rule.invariants, node, path)

    def run_invariants(self, invariants: list[Any], node: Any, path: str) -> None:
        for inv in invariants:
            try:
                ok = inv.check(node, self.env)
            except Exception as exc:
                self.add(path, f"invariant {inv.key} could not be evaluated ({exc}); "
                         "the resource cannot be shown to conform", "exception")
                continue
            if not ok:
                self.add(path, f"{inv.human} ({inv.key})", "invariant", inv.severity)


def _max(rule: Rule) -> str:
    return "*" if rule.max is None else str(rule.max)


def _in_slice(s: Rule, item: Any) -> bool:
    for disc_path, kind, expected in s.slice_keys or ():
        actual: Any = item
        for part in disc_path.split(".") if disc_path != "$this" else ():
            actual = actual.get(part) if isinstance(actual, dict) else None
            if isinstance(actual, list):
                actual = actual[0] if actual else None
        if kind == "fixed" and actual != expected:
            return False
        if kind == "pattern" and not _contains(actual, expected):
            return False
    return True


def _contains(value: Any, pattern: Any) -> bool:
    """FHIR pattern matching: every property of `pattern` is present in `value`."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and _contains(value[k], v) for k, v in pattern.items())
    if isinstance(pattern, list):
        return isinstance(value, list) and all(
            any(_contains(v, p) for v in value) for p in pattern)
    return value == pattern


def _show(value: Any) -> str:
    if isinstance(value, dict) and "coding" in value:
        return " and ".join(f"{c.get('system')}|{c.get('code')}" for c in value["coding"])
    if isinstance(value, dict) and "code" in value and "system" in value:
        return f"{value['system']}|{value['code']}"
    return json.dumps(value, default=str)


def _reference_type(ref: str, resource: dict[str, Any]) -> str | None:
    if ref.startswith("#"):
        for c in resource.get("contained", []) or []:
            if isinstance(c, dict) and c.get("id") == ref[1:]:
                return c.get("resourceType")
        return None
    match = _REFERENCE.fullmatch(ref)
    return match.group(1) if match else None
