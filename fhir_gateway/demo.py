"""A synthetic partnership: the five partners' feeds in their own formats, for any size.

The same generator serves `fhir-gateway demo`, `make run` (first start) and `bench/`.
Formats follow the partners' sample extracts exactly (HL7 v2.4 ADT with `\\r` segments,
the GP register CSV, hospice JSON Lines with ReSPECT forms, the council services CSV,
community STU3 collection Bundles). Everyone is made up: NHS numbers come from the
999 000 0000 - 999 999 9999 range, which is never issued, and pass Modulus 11.
Deterministic for a given seed, so benchmarks and tests can rely on the counts.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

from .validation.nhs_number import check_digit

FAMILIES = ["Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies",
            "Patel", "Robinson", "Wright", "Thompson", "Evans", "Walker", "White", "Roberts",
            "Green", "Hall", "Wood", "Jackson", "Clarke", "Hughes", "Edwards", "Hill", "Khan"]
GIVEN_F = ["Margaret", "Patricia", "Irene", "Kathleen", "Joan", "Mary", "Jean", "Barbara",
           "Susan", "Elizabeth", "Ann", "Doreen"]
GIVEN_M = ["John", "David", "Peter", "Kenneth", "Michael", "Ronald", "Brian", "Robert",
           "William", "James", "Alan", "Derek"]
TOWNS = ["Dudley", "Stourbridge", "Halesowen", "Sedgley", "Brierley Hill", "Kingswinford"]
STREETS = ["High Street", "Cradley Road", "Stourbridge Road", "Halesowen Road",
           "Kingswinford Road", "Wolverhampton Road"]
PPD_GP = ["Home", "Hospice", "Care Home", "Hospital", "Not discussed", "Declined to discuss"]
PPC_HOSPICE = ["home", "hospice", "care-home", "hospital"]
SERVICES = ["Home care", "Reablement", "Care home placement (residential)",
            "Care home placement (nursing)", "Fast-track CHC"]
PROVIDERS = ["Oakleigh Care Home", "Council In-house Reablement", "Dudley Homecare Ltd",
             "Meadow View Nursing Home"]
GP_HEADER = ["NHS Number", "Surname", "Forename", "Date of Birth", "Sex", "Practice Code",
             "Usual GP", "Palliative Register Date", "GSF Code", "Preferred Place of Death",
             "PPD Recorded", "DNACPR", "DNACPR Date", "Care Plan Summary", "Last Reviewed",
             "Date of Death", "Place of Death"]
SC_HEADER = ["Person ID", "Title", "First Name", "Last Name", "DOB", "Postcode",
             "NHS No (if known)", "Service", "Service Start", "Service End", "Provider",
             "Key Worker"]
PEOPLE_PER_BUNDLE = 50


def nhs_number(rng: random.Random) -> str:
    """A Modulus 11-valid number in the never-issued 999 range."""
    while True:
        nine = "999" + "".join(str(rng.randrange(10)) for _ in range(6))
        if (check := check_digit(nine)) is not None:
            return f"{nine}{check}"


def numbered_nhs_number(i: int) -> str:
    """The `i`th of a run of distinct Modulus 11-valid numbers in the 999 range (for
    benchmarks that need many people, each with a number of their own)."""
    n = 999100000 + i * 2  # two candidates each: one of any two has a check digit
    while (check := check_digit(str(n))) is None:
        n += 1
    return f"{n}{check}"


@dataclass
class Person:
    index: int
    nhs: str
    family: str
    given: str
    gender: str
    birth: date
    street: str
    town: str
    postcode: str
    phone: str
    partners: set[str] = field(default_factory=set)
    died: datetime | None = None


def _people(n: int, rng: random.Random) -> list[Person]:
    out = []
    issued: set[str] = set()
    for i in range(n):
        female = rng.random() < 0.5
        nhs = nhs_number(rng)
        while nhs in issued:  # one number, one person: at 100,000 people about 5% of
            nhs = nhs_number(rng)  # random draws repeat one (held as identity conflicts)
        issued.add(nhs)
        person = Person(
            index=i, nhs=nhs, family=rng.choice(FAMILIES),
            given=rng.choice(GIVEN_F if female else GIVEN_M),
            gender="female" if female else "male",
            birth=date(1925, 1, 1) + timedelta(days=rng.randrange(365 * 45)),
            street=f"{rng.randrange(1, 200)} {rng.choice(STREETS)}", town=rng.choice(TOWNS),
            postcode=f"DY{rng.randrange(1, 10)} {rng.randrange(1, 10)}"
                     f"{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}{rng.choice('ABDEFGHJLNPQRSTUWXYZ')}",
            phone=f"01384 {rng.randrange(100000, 999999)}",
        )
        for partner, share in (("gp", 0.8), ("acute", 0.5), ("hospice", 0.4),
                               ("socialcare", 0.5), ("community", 0.3)):
            if rng.random() < share:
                person.partners.add(partner)
        if not person.partners:
            person.partners.add("gp")
        if rng.random() < 0.1:
            person.died = datetime(2026, 1, 1) + timedelta(minutes=rng.randrange(60 * 24 * 300))
        out.append(person)
    return out


def _day(rng: random.Random, start: date = date(2024, 6, 1), days: int = 700) -> date:
    return start + timedelta(days=rng.randrange(days))


def _acute(people: list[Person], rng: random.Random) -> str:
    messages: list[tuple[datetime, str]] = []
    counter = 0
    for p in people:
        if "acute" not in p.partners:
            continue
        mrn = f"RXA{1000000 + p.index}"
        pid = (f"PID|1||{p.nhs}^^^NHS^NH~{mrn}^^^RXA^MR||{p.family.upper()}^"
               f"{p.given.upper()}^||{p.birth:%Y%m%d}|{p.gender[0].upper()}|||"
               f"{p.street}^^{p.town}^^{p.postcode}||{p.phone}")
        for v in range(rng.randrange(1, 3)):
            admitted = datetime.combine(_day(rng), datetime.min.time()) + timedelta(
                minutes=rng.randrange(1440))
            discharged = admitted + timedelta(hours=rng.randrange(6, 24 * 14))
            died_here = p.died is not None and v == 0 and rng.random() < 0.5
            if died_here:
                discharged = p.died or discharged
                admitted = discharged - timedelta(days=3)
            visit = f"V{10000000 + p.index * 10 + v}"
            cls = rng.choice("IE")
            pv1 = (f"PV1|1|{cls}|WARD {rng.randrange(1, 9)}^BAY A^BED 1^RXA||||C1234567^"
                   f"{rng.choice(FAMILIES).upper()}^A^^^DR|||300|||||||||{visit}")
            for event, at in (("A01", admitted), ("A03", discharged)):
                counter += 1
                stamp = f"{at:%Y%m%d%H%M}"
                seg_pid = pid
                # PV1-19 visit number, PV1-36 disposition, PV1-44/45 admitted/discharged.
                seg_pv1 = pv1 + "|" * 25 + f"{admitted:%Y%m%d%H%M}|"
                if event == "A03":
                    disposition = "20" if died_here else "01"
                    seg_pv1 = pv1 + "|" * 17 + disposition + "|" * 8 + \
                        f"{admitted:%Y%m%d%H%M}|{stamp}"
                    if died_here:
                        seg_pid = pid + "|" * 16 + f"{stamp}|Y"
                msg = "\r".join([
                    f"MSH|^~\\&|PAS|RXA|SCR|GATEWAY|{stamp}||ADT^{event}^ADT_{event}|"
                    f"MSG{counter:08d}|P|2.4",
                    f"EVN|{event}|{stamp}", seg_pid, "PD1|||^^Y90001", seg_pv1,
                ]) + "\r"
                messages.append((at, msg))
    return "".join(m for _, m in sorted(messages, key=lambda x: x[0]))


def _gp(people: list[Person], rng: random.Random) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(GP_HEADER)
    for p in people:
        if "gp" not in p.partners:
            continue
        registered = _day(rng)
        dnacpr = rng.random() < 0.5
        nhs = f"{p.nhs[:3]} {p.nhs[3:6]} {p.nhs[6:]}"
        died = p.died
        w.writerow([
            nhs, p.family.upper(), p.given, f"{p.birth:%d/%m/%Y}", p.gender[0].upper(),
            f"Y900{rng.randrange(10, 48)}", f"Dr {rng.choice(FAMILIES)}",
            f"{registered:%d/%m/%Y}", rng.choice(["Blue", "Green", "Amber", "Red"]),
            rng.choice(PPD_GP), f"{registered + timedelta(days=20):%d/%m/%Y}",
            "Y" if dnacpr else "N",
            f"{registered + timedelta(days=rng.randrange(1, 60)):%d/%m/%Y}" if dnacpr else "",
            "Symptom control at home; district nurse twice weekly",
            f"{registered + timedelta(days=60):%d/%m/%Y}",
            f"{died:%d/%m/%Y}" if died else "",
            rng.choice(["Home", "Hospital", "Hospice"]) if died else "",
        ])
    return buf.getvalue()


def _hospice(people: list[Person], rng: random.Random) -> str:
    lines = []
    for p in people:
        if "hospice" not in p.partners:
            continue
        client: dict[str, object] = {
            "clientId": f"MSH-{10000 + p.index}", "nhsNumber": p.nhs,
            "name": {"first": p.given, "last": p.family}, "dob": f"{p.birth:%Y-%m-%d}",
            "gender": p.gender,
            "address": {"line": p.street, "town": p.town, "postcode": p.postcode},
            "admissions": [],
        }
        if rng.random() < 0.6:
            start = datetime.combine(_day(rng), datetime.min.time()) + timedelta(hours=9)
            client["admissions"] = [{
                "id": f"ADM-{p.index}", "unit": rng.choice(["Day Hospice", "IPU"]),
                "admitted": f"{start:%Y-%m-%dT%H:%M}",
                "discharged": f"{start + timedelta(days=rng.randrange(1, 14)):%Y-%m-%dT%H:%M}",
                "reason": rng.choice(["respite", "pain management", "symptom control"]),
            }]
        if rng.random() < 0.8:
            client["respect"] = {
                "formId": f"RSP-{100000 + p.index}", "version": "3",
                "completedOn": f"{_day(rng):%Y-%m-%d}",
                "cpr": rng.choice(["not-attempt", "not-attempt", "attempt"]),
                "careFocus": rng.choice(["comfort", "balanced", "life-sustaining"]),
                "preferredPlaceOfCare": rng.choice(PPC_HOSPICE),
                "recommendations": "Avoid hospital admission if possible; treat at home",
                "capacity": "has-capacity",
                "contacts": [{"name": f"{rng.choice(GIVEN_M)} {p.family}",
                              "relationship": rng.choice(["son", "daughter", "spouse"]),
                              "phone": f"07700 900{rng.randrange(100, 999)}",
                              "lpa": rng.random() < 0.5}],
                "clinician": {"name": f"Dr {rng.choice(FAMILIES)}",
                              "gmc": str(rng.randrange(1000000, 7999999))},
            }
        lines.append(json.dumps(client))
    return "\n".join(lines) + "\n"


def _socialcare(people: list[Person], rng: random.Random) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(SC_HEADER)
    for p in people:
        if "socialcare" not in p.partners:
            continue
        for _ in range(rng.randrange(1, 3)):
            start = _day(rng)
            w.writerow([
                f"SC{100000 + p.index}",
                "Mrs" if p.gender == "female" else "Mr", p.given, p.family,
                f"{p.birth:%Y-%m-%d}", p.postcode,
                p.nhs if rng.random() < 0.6 else "", rng.choice(SERVICES),
                f"{start:%Y-%m-%d}",
                f"{start + timedelta(days=90):%Y-%m-%d}" if rng.random() < 0.4 else "",
                rng.choice(PROVIDERS), f"{rng.choice(GIVEN_F)} {rng.choice(FAMILIES)}",
            ])
    return buf.getvalue()


def _community(people: list[Person], rng: random.Random) -> list[str]:
    bundles: list[str] = []
    entries: list[dict[str, object]] = []

    def flush() -> None:
        if entries:
            bundles.append(json.dumps({"resourceType": "Bundle", "type": "collection",
                                       "entry": list(entries)}))
            entries.clear()

    in_bundle = 0
    for p in people:
        if "community" not in p.partners:
            continue
        cid = f"CMT{400000 + p.index}"
        pat = f"urn:uuid:pat-{cid}"
        entries.append({"fullUrl": pat, "resource": {
            "resourceType": "Patient", "id": cid,
            "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": p.nhs},
                           {"system": "https://community.example.nhs.uk/Id/patient",
                            "value": cid}],
            "name": [{"use": "official", "family": p.family, "given": [p.given]}],
            "gender": p.gender, "birthDate": f"{p.birth:%Y-%m-%d}"}})
        for v in range(rng.randrange(0, 3)):
            start = datetime.combine(_day(rng), datetime.min.time()) + timedelta(hours=10)
            entries.append({"fullUrl": f"urn:uuid:enc-{cid}-E{v}", "resource": {
                "resourceType": "Encounter", "id": f"{cid}-E{v}", "status": "finished",
                "class": {"system": "http://hl7.org/fhir/v3/ActCode", "code": "HH",
                          "display": "home health"},
                "type": [{"coding": [{
                    "system": "https://community.example.nhs.uk/CodeSystem/visit-type",
                    "code": rng.choice(["DN-VISIT", "RAPID-RESP"])}]}],
                "subject": {"reference": pat},
                "period": {"start": f"{start:%Y-%m-%dT%H:%M}",
                           "end": f"{start + timedelta(minutes=45):%Y-%m-%dT%H:%M}"}}})
        entries.append({"fullUrl": f"urn:uuid:cp-{cid}", "resource": {
            "resourceType": "CarePlan", "id": f"{cid}-CP", "status": "active",
            "intent": "plan", "title": "Community palliative care plan",
            "definition": [{"reference": "PlanDefinition/community-palliative-pathway"}],
            "subject": {"reference": pat}, "period": {"start": f"{_day(rng):%Y-%m-%d}"},
            "activity": [{"detail": {"status": "in-progress",
                                     "description": "Pressure area care"}}]}})
        in_bundle += 1
        if in_bundle == PEOPLE_PER_BUNDLE:
            flush()
            in_bundle = 0
    flush()
    return bundles


def write_partnership(out: Path, *, people: int, seed: int = 20261122) -> dict[str, list[Path]]:
    """Write the five partners' feeds for `people` synthetic people under `out`."""
    rng = random.Random(seed)
    persons = _people(people, rng)
    files: dict[str, list[Path]] = {}

    def write(partner: str, name: str, text: str) -> None:
        path = out / partner / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="")
        files.setdefault(partner, []).append(path)

    write("acute", "adt.hl7", _acute(persons, random.Random(rng.random())))
    write("gp", "palliative_register.csv", _gp(persons, random.Random(rng.random())))
    write("hospice", "clients.jsonl", _hospice(persons, random.Random(rng.random())))
    write("socialcare", "services.csv", _socialcare(persons, random.Random(rng.random())))
    for i, bundle in enumerate(_community(persons, random.Random(rng.random()))):
        write("community", f"bundle-{i:05d}.json", bundle)
    return files
