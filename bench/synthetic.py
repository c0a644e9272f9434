"""Synthetic end-of-life care records for benchmarks: a borough's shared record, fictitious.

The shape
    Every registered resident has a Patient (UK Core style: an NHS number in the 999 range,
    which is never issued, with a valid Modulus 11 check digit; name, birth date, address,
    telecom, registered GP). About 27% of them are on the end-of-life register and have a
    record written by several partners (GP practices, the acute trust, the community trust,
    the hospice, the ambulance service):

    * Encounters: 1-6 (mean about 2.8, including a heavy tail: 1% have 15-60);
    * CarePlans: 1-3, the newest usually `active`, older ones `completed` or `revoked`;
      a quarter of those with several plans have two active plans from different partners
      (the GP's and the hospice's);
    * CPR decisions: Observations coded SNOMED 304251008 (resuscitation status) with value
      450476008 (not for CPR) or 450475007 (for CPR) and an `effectiveDateTime`; 1-4 of
      them, each later than the one before (the latest decision is the one that counts);
    * Provenance for about 30% of the CarePlans and decisions (target: that resource, so not
      in the Patient compartment, as R4 defines it);
    * RelatedPersons (0-2: next of kin, lasting power of attorney) and a Consent (70%).

    With these numbers Patients are about 30% of all resources, as the issue asks ("~300k
    patients at 1M").

Determinism
    `plan_cohort(size, seed)` decides, from one random stream, how many patients there are and
    how many resources of each kind each one has, so that the total is exactly `size`. Each
    patient's content then comes from its own random stream (`seed`, patient index), so any
    slice of patients can be generated alone, in any process, and always comes out the same:
    the loader generates batches in worker processes and the check regenerates a sample.

`expectation()` gives, per patient, what the benchmark's five searches must return.
"""

from __future__ import annotations

import datetime as dt
import random
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

GENERATOR_VERSION = 2  # bump when the content changes: cached databases are keyed by it

NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
ODS_SYSTEM = "https://fhir.nhs.uk/Id/ods-organization-code"
SDS_SYSTEM = "https://fhir.nhs.uk/Id/sds-user-id"
SCT = "http://snomed.info/sct"
CPR_CODE = "304251008"  # Resuscitation status (observable entity)
FOR_CPR = "450475007"  # For cardiopulmonary resuscitation
NOT_FOR_CPR = "450476008"  # Not for cardiopulmonary resuscitation
EOL_CARE_PLAN = "736373009"  # End of life care plan (record artifact)

TODAY = dt.datetime(2025, 6, 1, 12, 0)  # fixed, so the data do not depend on the run date
REGISTER_SHARE = 0.265  # of patients on the end-of-life register (gives ~30% Patients)

# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True, slots=True)
class PatientPlan:
    """How many resources of each kind one patient has (what the content must honour)."""

    index: int
    pid: str
    nhs: str
    encounters: int = 0
    careplans: int = 0
    active_careplans: int = 0
    decisions: int = 0
    provenances: int = 0
    related: int = 0
    consents: int = 0

    @property
    def on_register(self) -> bool:
        return self.encounters + self.careplans + self.decisions > 0

    @property
    def total(self) -> int:
        return (1 + self.encounters + self.careplans + self.decisions + self.provenances
                + self.related + self.consents)


def nhs_check_digit(nine: str) -> int | None:
    """The Modulus 11 check digit of the first nine digits; None when it would be 10."""
    total = sum(int(d) * w for d, w in zip(nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    if check == 11:
        return 0
    return None if check == 10 else check


def _test_range_numbers() -> list[str]:
    """Every valid NHS number of the 999 range (never issued): 909,091 of them."""
    out = []
    for body in range(1_000_000):
        nine = f"999{body:06d}"
        check = nhs_check_digit(nine)
        if check is not None:
            out.append(nine + str(check))
    return out


def _weighted(rng: random.Random, weights: dict[int, int]) -> int:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _record_counts(rng: random.Random) -> dict[str, int]:
    if rng.random() >= REGISTER_SHARE:
        return {}
    if rng.random() < 0.01:  # the heavy tail: long illnesses, many contacts
        encounters = rng.randint(15, 60)
    else:
        encounters = _weighted(rng, {1: 25, 2: 30, 3: 20, 4: 12, 5: 8, 6: 5})
    careplans = _weighted(rng, {1: 60, 2: 30, 3: 10})
    active = 1 if rng.random() < 0.8 else 0
    if careplans >= 2 and rng.random() < 0.25:
        active += 1
    decisions = _weighted(rng, {1: 60, 2: 25, 3: 10, 4: 5})
    provenances = sum(rng.random() < 0.3 for _ in range(careplans + decisions))
    return {"encounters": encounters, "careplans": careplans, "active_careplans": active,
            "decisions": decisions, "provenances": provenances,
            "related": _weighted(rng, {0: 30, 1: 50, 2: 20}),
            "consents": 1 if rng.random() < 0.7 else 0}


def _truncate(counts: dict[str, int], excess: int) -> dict[str, int]:
    """Drop `excess` resources from a patient's record so the total comes out exact."""
    out = dict(counts)
    for key in ("provenances", "consents", "related", "encounters", "decisions", "careplans"):
        keep_one = key in ("encounters", "decisions", "careplans")
        while excess and out.get(key, 0) > (1 if keep_one else 0):
            out[key] -= 1
            excess -= 1
    if out.get("careplans", 0) < out.get("active_careplans", 0):
        out["active_careplans"] = out["careplans"]
    if excess:  # a very small size: the last patient keeps no record at all
        out = {}
    return out


def plan_cohort(size: int, seed: int = 1) -> list[PatientPlan]:
    """Patients and their record sizes, adding up to exactly `size` resources."""
    if size < 1:
        raise ValueError("size must be at least 1")
    rng = random.Random(f"plan/{seed}/{size}")
    counts_list: list[dict[str, int]] = []
    total = 0
    while total < size:
        counts = _record_counts(rng)
        n = 1 + sum(v for k, v in counts.items() if k != "active_careplans")
        if total + n > size:
            counts = _truncate(counts, total + n - size)
            n = 1 + sum(v for k, v in counts.items() if k != "active_careplans")
        counts_list.append(counts)
        total += n
    numbers = rng.sample(_test_range_numbers(), len(counts_list))
    plans = []
    for i, (counts, nhs) in enumerate(zip(counts_list, numbers, strict=True)):
        pid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        plans.append(PatientPlan(index=i, pid=pid, nhs=nhs, **counts))
    assert sum(p.total for p in plans) == size
    return plans


# --------------------------------------------------------------------------- content

GIVEN = ["Oliver", "Amelia", "George", "Isla", "Arthur", "Ava", "Noah", "Mia", "Leo", "Ivy",
         "Margaret", "Harold", "Joan", "Stanley", "Doreen", "Kenneth", "Eileen", "Dennis",
         "Barbara", "Ronald", "Patricia", "Derek", "Maureen", "Brian", "Sheila", "Alan",
         "Aisha", "Mohammed", "Priya", "Tariq", "Bronwen", "Siobhan"]
FAMILY = ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
          "Patel", "Robinson", "Wright", "Thompson", "Evans", "Walker", "Khan", "Hughes",
          "Green", "Hall", "Wood", "Clarke", "Hussain", "Begum", "Lewis", "Jackson",
          "O'Connor", "Kowalski", "Nowak", "Ahmed", "Shaw", "Turner", "Harris", "Cooper"]
STREETS = ["High Street", "Station Road", "Church Lane", "Victoria Road", "Mill Lane",
           "Park Avenue", "The Green", "Manor Road", "Chapel Street", "Moor Lane",
           "Otley Road", "Harehills Lane", "Roundhay Road", "Kirkstall Road"]
DISTRICTS = [("LS6", "Headingley"), ("LS7", "Chapel Allerton"), ("LS8", "Roundhay"),
             ("LS9", "Harehills"), ("LS11", "Beeston"), ("LS12", "Armley"),
             ("LS13", "Bramley"), ("LS14", "Seacroft"), ("LS15", "Cross Gates")]
GP_PRACTICES = [("B86001", "Chapel Allerton Medical Centre"), ("B86002", "Roundhay Surgery"),
                ("B86003", "Harehills Health Centre"), ("B86004", "Beeston Village Practice"),
                ("B86005", "Armley Moor Surgery"), ("B86006", "Seacroft Family Practice"),
                ("B86007", "Bramley Medical Centre"), ("B86008", "Headingley Surgery")]
PARTNERS = {
    "acute": ("RR8", "Leeds Teaching Hospitals NHS Trust"),
    "community": ("RY6", "Leeds Community Healthcare NHS Trust"),
    "hospice": ("NQE", "St Gemma's Hospice"),
    "hospice2": ("NQF", "Sue Ryder Wheatfields Hospice"),
    "ambulance": ("RX8", "Yorkshire Ambulance Service NHS Trust"),
}
RELATIONSHIPS = [("N", "Next-of-Kin"), ("WIFE", "wife"), ("HUSB", "husband"),
                 ("DAU", "natural daughter"), ("SON", "natural son"), ("SIS", "sister"),
                 ("FRND", "unrelated friend")]
ENCOUNTER_KINDS = [
    # (class code, class display, SNOMED type, type display, partner kind)
    ("AMB", "ambulatory", "185317003", "Telephone encounter", "gp"),
    ("AMB", "ambulatory", "185389009", "Follow-up visit", "gp"),
    ("HH", "home health", "439708006", "Home visit", "community"),
    ("HH", "home health", "439708006", "Home visit", "hospice"),
    ("IMP", "inpatient encounter", "183452005", "Emergency hospital admission", "acute"),
    ("EMER", "emergency", "50849002", "Emergency room admission", "ambulance"),
    ("AMB", "ambulatory", "305408004", "Seen in hospice clinic", "hospice2"),
]
CAREPLAN_ACTIVITIES = [
    ("1097251000000104", "Anticipatory medication prescribed"),
    ("713673000", "Advance care planning"),
    ("395048002", "Preferred place of death discussed"),
    ("718344002", "Bereavement support offered"),
    ("301860000", "Palliative care planning"),
]


def _offset(when: dt.datetime) -> str:
    """+01:00 in (roughly) British Summer Time, else +00:00."""
    return "+01:00" if 4 <= when.month <= 10 else "+00:00"


def _when(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:00") + _offset(when)


def _rid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _org(kind: str, gp: tuple[str, str]) -> dict[str, Any]:
    ods, name = gp if kind == "gp" else PARTNERS[kind]
    return {"reference": f"Organization/ods-{ods}",
            "identifier": {"system": ODS_SYSTEM, "value": ods}, "display": name}


def _practitioner(rng: random.Random) -> dict[str, Any]:
    sds = f"{rng.randrange(10**11, 10**12)}"
    return {"reference": f"Practitioner/sds-{sds}",
            "identifier": {"system": SDS_SYSTEM, "value": sds},
            "display": f"Dr {rng.choice(GIVEN)[0]}. {rng.choice(FAMILY)}"}


def _sct(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": SCT, "code": code, "display": display}]}


def patient_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"patient/{seed}/{index}")


def patient_record(plan: PatientPlan, seed: int = 1) -> list[tuple[str, dict[str, Any]]]:
    """The patient's resources as (id, resource): the Patient first, then the record."""
    rng = patient_rng(seed, plan.index)
    gp = rng.choice(GP_PRACTICES)
    pref = f"Patient/{plan.pid}"
    subject = {"reference": pref}
    out: list[tuple[str, dict[str, Any]]] = [(plan.pid, _patient(rng, plan, gp))]
    # The record spans the last two years, in the order things happen.
    start = TODAY - dt.timedelta(days=rng.randrange(60, 730))
    span = (TODAY - start).total_seconds()

    def moment(fraction: float) -> dt.datetime:
        t = start + dt.timedelta(seconds=span * fraction)
        return t.replace(minute=t.minute - t.minute % 5, second=0, microsecond=0)

    for k in range(plan.encounters):
        out.append((_rid(rng), _encounter(rng, subject, gp, moment(rng.random()), k)))
    # Care plans: oldest first; the newest `active_careplans` are active.
    for k in range(plan.careplans):
        begun = moment((k + rng.random()) / (plan.careplans + 1))
        active = k >= plan.careplans - plan.active_careplans
        status = "active" if active else rng.choice(["completed", "completed", "revoked"])
        # a second active plan comes from a different partner (the hospice's own plan)
        author = "hospice" if active and k == plan.careplans - 2 else \
            rng.choice(["gp", "gp", "community", "hospice", "acute"])
        out.append((_rid(rng), _careplan(rng, subject, gp, begun, status, author, k)))
    # CPR decisions: strictly later each time; the last one is the one in force.
    times = sorted(moment((k + rng.random()) / plan.decisions) for k in range(plan.decisions))
    for k, when in enumerate(times):
        when += dt.timedelta(minutes=5 * k)  # distinct even if two draws round alike
        last = k == plan.decisions - 1
        value = NOT_FOR_CPR if rng.random() < (0.8 if last else 0.5) else FOR_CPR
        out.append((_rid(rng), _decision(rng, subject, gp, when, value)))
    targets = [r for r in out if r[1]["resourceType"] in ("CarePlan", "Observation")]
    for rid, target in rng.sample(targets, plan.provenances):
        out.append((_rid(rng), _provenance(rng, target, rid, gp)))
    for k in range(plan.related):
        out.append((_rid(rng), _related(rng, subject, k)))
    for _ in range(plan.consents):
        out.append((_rid(rng), _consent(rng, subject, gp, moment(rng.random() * 0.2))))
    assert len(out) == plan.total, (plan, len(out))
    return out


def records(plans: Sequence[PatientPlan], seed: int = 1) -> Iterator[tuple[str, dict[str, Any]]]:
    for plan in plans:
        yield from patient_record(plan, seed)


def _patient(rng: random.Random, plan: PatientPlan, gp: tuple[str, str]) -> dict[str, Any]:
    given, family = rng.choice(GIVEN), rng.choice(FAMILY)
    district, area = rng.choice(DISTRICTS)
    age_days = rng.randrange(365 * (60 if plan.on_register else 18), 365 * 100)
    birth = (TODAY - dt.timedelta(days=age_days)).date()
    inward = f"{rng.randrange(1, 10)}{rng.choice('ABDEFGHJLNP')}{rng.choice('ABDEFGHJLNQRTUWXYZ')}"
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "meta": {"profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"]},
        "identifier": [{
            "extension": [{
                "url": "https://fhir.hl7.org.uk/StructureDefinition/"
                       "Extension-UKCore-NHSNumberVerificationStatus",
                "valueCodeableConcept": {"coding": [{
                    "system": "https://fhir.hl7.org.uk/CodeSystem/"
                              "UKCore-NHSNumberVerificationStatusEngland",
                    "code": "01", "display": "Number present and verified"}]},
            }],
            "system": NHS_SYSTEM,
            "value": plan.nhs,
        }],
        "active": True,
        "name": [{"use": "official", "family": family, "given": [given],
                  "prefix": [rng.choice(["Mr", "Mrs", "Ms", "Miss", "Dr"])]}],
        "telecom": [{"system": "phone", "value": f"0113 496 {rng.randrange(10000):04d}",
                     "use": "home"}],
        "gender": rng.choice(["male", "female"]),
        "birthDate": birth.isoformat(),
        "address": [{"use": "home", "type": "physical",
                     "line": [f"{rng.randrange(1, 200)} {rng.choice(STREETS)}", area],
                     "city": "Leeds", "district": "West Yorkshire",
                     "postalCode": f"{district} {inward}", "country": "GB"}],
        "generalPractitioner": [_org("gp", gp)],
    }
    if rng.random() < 0.5:
        patient["telecom"].append({"system": "phone", "use": "mobile",
                                   "value": f"07700 900{rng.randrange(1000):03d}"})
    if plan.on_register and rng.random() < 0.1:
        died = TODAY - dt.timedelta(days=rng.randrange(1, 30), hours=rng.randrange(24))
        patient["deceasedDateTime"] = _when(died)
    return patient


def _encounter(rng: random.Random, subject: dict[str, Any], gp: tuple[str, str],
               begun: dt.datetime, k: int) -> dict[str, Any]:
    cls, cls_display, code, display, kind = rng.choice(ENCOUNTER_KINDS)
    minutes = rng.randrange(2, 9) * 3 * 24 * 60 if cls == "IMP" else rng.randrange(10, 90)
    ended = begun + dt.timedelta(minutes=minutes)
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "identifier": [{"system": f"https://fhir.example.nhs.uk/Id/{kind}-encounter",
                        "value": f"E{rng.randrange(10**9):09d}"}],
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                  "code": cls, "display": cls_display},
        "type": [_sct(code, display)],
        "subject": subject,
        "participant": [{"individual": _practitioner(rng)}],
        "period": {"start": _when(begun), "end": _when(ended)},
        "serviceProvider": _org(kind, gp),
    }
    if ended >= TODAY:  # still going on: no end yet
        encounter["status"] = "in-progress"
        del encounter["period"]["end"]
    if k == 0:  # the referral onto the register
        encounter["reasonCode"] = [_sct("103735009", "Palliative care")]
    return encounter


def _careplan(rng: random.Random, subject: dict[str, Any], gp: tuple[str, str],
              begun: dt.datetime, status: str, author: str, k: int) -> dict[str, Any]:
    activities = rng.sample(CAREPLAN_ACTIVITIES, rng.randint(1, 3))
    contributors = {author, *rng.sample(["gp", "community", "hospice", "acute"], 2)}
    period: dict[str, str] = {"start": _when(begun)}
    if status != "active":
        period["end"] = _when(begun + dt.timedelta(days=rng.randrange(7, 120)))
    return {
        "resourceType": "CarePlan",
        "identifier": [{"system": f"https://fhir.example.nhs.uk/Id/{author}-careplan",
                        "value": f"CP{rng.randrange(10**8):08d}"}],
        "status": status,
        "intent": "plan",
        "category": [_sct(EOL_CARE_PLAN, "End of life care plan")],
        "title": "End of life care plan" if k == 0 else "Revised end of life care plan",
        "subject": subject,
        "period": period,
        "created": _when(begun),
        "author": _org(author, gp),
        "contributor": [_org(c, gp) for c in sorted(contributors)],
        "activity": [{"detail": {"kind": "ServiceRequest", "code": _sct(code, display),
                                 "status": "in-progress" if status == "active" else "completed",
                                 "performer": [_org(rng.choice(["gp", "community", "hospice"]),
                                                    gp)]}}
                     for code, display in activities],
        "note": [{"text": "Wishes to die at home if possible; family aware."}],
    }


def _decision(rng: random.Random, subject: dict[str, Any], gp: tuple[str, str],
              when: dt.datetime, value: str) -> dict[str, Any]:
    display = ("Not for cardiopulmonary resuscitation" if value == NOT_FOR_CPR
               else "For cardiopulmonary resuscitation")
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "survey", "display": "Survey"}]}],
        "code": _sct(CPR_CODE, "Resuscitation status"),
        "subject": subject,
        "effectiveDateTime": _when(when),
        "issued": when.strftime("%Y-%m-%dT%H:%M:00.000") + _offset(when),
        "performer": [_practitioner(rng),
                      _org(rng.choice(["gp", "acute", "hospice", "community"]), gp)],
        "valueCodeableConcept": _sct(value, display),
        "note": [{"text": "Decision discussed with the patient and recorded on ReSPECT form."}],
    }


def _provenance(rng: random.Random, target: dict[str, Any], target_id: str,
                gp: tuple[str, str]) -> dict[str, Any]:
    kind = rng.choice(["gp", "acute", "hospice", "community"])
    recorded = target.get("effectiveDateTime") or target.get("created") or _when(TODAY)
    return {
        "resourceType": "Provenance",
        "target": [{"reference": f"{target['resourceType']}/{target_id}"}],
        "recorded": recorded[:19] + ".000" + recorded[19:],
        "activity": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
            "code": "CREATE", "display": "create"}]},
        "agent": [{
            "type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                "code": "author", "display": "Author"}]},
            "who": _practitioner(rng),
            "onBehalfOf": _org(kind, gp),
        }],
    }


def _related(rng: random.Random, subject: dict[str, Any], k: int) -> dict[str, Any]:
    code, display = rng.choice(RELATIONSHIPS)
    relationship = [{"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
        "code": code, "display": display}]}]
    if k == 0 and rng.random() < 0.3:
        relationship.append({"text": "Lasting power of attorney for health and welfare"})
    return {
        "resourceType": "RelatedPerson",
        "active": True,
        "patient": subject,
        "relationship": relationship,
        "name": [{"family": rng.choice(FAMILY), "given": [rng.choice(GIVEN)]}],
        "telecom": [{"system": "phone", "value": f"07700 900{rng.randrange(1000):03d}",
                     "use": "mobile"}],
    }


def _consent(rng: random.Random, subject: dict[str, Any], gp: tuple[str, str],
             when: dt.datetime) -> dict[str, Any]:
    return {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy", "display": "Privacy Consent"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0",
                                  "display": "Patient Consent"}]}],
        "patient": subject,
        "dateTime": _when(when),
        "performer": [subject],
        "organization": [_org("gp", gp)],
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                   "code": "OPTIN", "display": "opt-in"}]},
        "provision": {"type": "permit",
                      "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                   "code": "TREAT", "display": "treatment"}]},
    }


# --------------------------------------------------------------------------- expectations


@dataclass(frozen=True, slots=True)
class Expectation:
    """What each benchmark search must return for one patient."""

    pid: str
    nhs: str
    encounters: int
    active_careplans: int
    latest_decision: str | None  # the id of the newest CPR decision
    latest_value: str | None  # its value code
    everything: int  # resources in the Patient compartment (R4), the Patient included


def expectation(plan: PatientPlan, record: list[tuple[str, dict[str, Any]]]) -> Expectation:
    """Counted from the generated resources themselves, not from the plan."""
    pref = f"Patient/{plan.pid}"
    by_type: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for rid, res in record:
        by_type.setdefault(res["resourceType"], []).append((rid, res))
    decisions = sorted((dt.datetime.fromisoformat(res["effectiveDateTime"]), rid, res)
                       for rid, res in
                       by_type.get("Observation", [])
                       if res["code"]["coding"][0]["code"] == CPR_CODE)
    latest = decisions[-1] if decisions else None

    def refers(res: dict[str, Any]) -> bool:
        for key in ("subject", "patient"):
            if isinstance(res.get(key), dict) and res[key].get("reference") == pref:
                return True
        return any(t.get("reference") == pref for t in res.get("target", []))

    return Expectation(
        pid=plan.pid,
        nhs=plan.nhs,
        encounters=sum(refers(r) for _, r in by_type.get("Encounter", [])),
        active_careplans=sum(refers(r) and r["status"] == "active"
                             for _, r in by_type.get("CarePlan", [])),
        latest_decision=latest[1] if latest else None,
        latest_value=(latest[2]["valueCodeableConcept"]["coding"][0]["code"]
                      if latest else None),
        everything=1 + sum(refers(r) for _, r in record if r["resourceType"] != "Patient"),
    )
