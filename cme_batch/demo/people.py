"""Families, pupils and their contacts for the demo school: who is on roll, not what they did.

Pupils come in families: siblings share an address and the same contact records (the same
``contact_key``, as an MIS holds one contact linked to several pupils), which is how the
referral finds siblings. Every value is fictional (see ``names``); UPNs are well formed with
correct check letters, allocated by this school (LA 916) in the year each pupil started.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from cme_batch import upn
from cme_batch.demo import names
from cme_batch.model import Address, ContactRecord, EnrolmentRecord, PupilRecord

YEARS: tuple[str, ...] = ("R", "1", "2", "3", "4", "5", "6")
LA_NUMBER = "916"
ESTABLISHMENT = "2999"  # fictional
ACADEMIC_YEAR = 2025  # 2025/26


@dataclass
class Contact:
    """One adult linked to every child of a family (one ``ContactRecord`` per child)."""

    key: str
    priority: int
    title: str
    forename: str
    surname: str
    relationship: str
    parental_responsibility: bool
    lives_with: bool
    phones: tuple[str, ...]
    emails: tuple[str, ...]
    address: Address | None


@dataclass
class Child:
    key: str
    upn: str
    forename: str
    surname: str
    sex: str
    dob: date
    year: str
    reg_group: str
    entry_date: date
    middle: str | None = None
    preferred: str | None = None


@dataclass
class Family:
    surname: str
    address: Address
    landline: str | None
    contacts: list[Contact] = field(default_factory=list)
    children: list[Child] = field(default_factory=list)


class Registry:
    """Hands out the fictional identifiers: keys, UPN serials, phone numbers, addresses."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.pupils = 0
        self.contacts = 0
        self.mobiles = 0
        self.landlines = 100  # 01632 960000-960099 are kept for the school
        self.serials: dict[str, int] = {}
        self.addresses: set[str] = set()

    def pupil_key(self) -> str:
        self.pupils += 1
        return f"ADNO{self.pupils:04d}"

    def contact_key(self) -> str:
        self.contacts += 1
        return f"CON{self.contacts:05d}"

    def mobile(self) -> str:
        self.mobiles += 1
        return f"07700 900{self.mobiles % 1000:03d}"

    def landline(self) -> str:
        self.landlines += 1
        return f"01632 960{self.landlines % 1000:03d}"

    def upn(self, year_allocated: int, la: str = LA_NUMBER, estab: str = ESTABLISHMENT) -> str:
        prefix = f"{la}{estab}{year_allocated % 100:02d}"
        self.serials[prefix] = self.serials.get(prefix, 0) + 1
        return upn.make(f"{prefix}{self.serials[prefix]:03d}")

    def address(self) -> Address:
        while True:
            number = self.rng.randint(1, 120)
            street = self.rng.choice(names.STREETS)
            town = self.rng.choice(names.TOWNS)
            line = f"{number} {street}"
            if line not in self.addresses:
                self.addresses.add(line)
                postcode = f"GL20 9Z{'ABDEFGHJLNPQRSTUWXYZ'[names.STREETS.index(street)]}"
                return Address((line, town), postcode)


def email_for(forename: str, surname: str, n: int, domain: str = "example.com") -> str:
    local = f"{forename}.{surname}".lower().replace("'", "").replace(" ", "")
    return f"{local}{n}@{domain}"


def year_sizes(pupils: int) -> dict[str, int]:
    """Pupils per year group, as even as the total allows."""
    base, rem = divmod(pupils, len(YEARS))
    return {y: base + (1 if i < rem else 0) for i, y in enumerate(YEARS)}


def birth_date(rng: random.Random, year: str) -> date:
    """A date of birth inside the year group's cohort (1 September to 31 August)."""
    offset = YEARS.index(year)
    first = date(ACADEMIC_YEAR - 5 - offset, 9, 1)
    return first + timedelta(days=rng.randrange(365))


def start_of_school(year: str) -> date:
    """The September the year group started Reception."""
    return date(ACADEMIC_YEAR - YEARS.index(year), 9, 1)


def make_child(reg: Registry, family: Family, year: str, entry: date | None = None,
               from_elsewhere: bool = False) -> Child:
    rng = reg.rng
    sex = rng.choice("FM")
    forename = rng.choice(names.GIRLS if sex == "F" else names.BOYS)
    entry = entry or start_of_school(year)
    if not from_elsewhere and year != "R" and rng.random() < 0.1:
        from_elsewhere = True
        entry = start_of_school(year) + timedelta(days=rng.randrange(30, 300))
    if from_elsewhere:
        pupil_upn = reg.upn(start_of_school(year).year, la="935", estab=f"2{rng.randrange(100, 999)}")
    else:
        pupil_upn = reg.upn(entry.year)
    child = Child(
        key=reg.pupil_key(), upn=pupil_upn, forename=forename, surname=family.surname, sex=sex,
        dob=birth_date(rng, year), year=year, reg_group=f"{year}{rng.choice('HW')}", entry_date=entry,
        middle=rng.choice(names.MIDDLE_NAMES) if rng.random() < 0.4 else None,
        preferred=names.SHORT_NAMES.get(forename) if rng.random() < 0.5 else None,
    )
    family.children.append(child)
    return child


def _adult(reg: Registry, family: Family, sex: str, relationship: str, priority: int, *,
           pr: bool, lives_with: bool, surname: str | None = None, address: Address | None = None,
           email: bool = True) -> Contact:
    rng = reg.rng
    forename = rng.choice(names.ADULT_WOMEN if sex == "F" else names.ADULT_MEN)
    surname = surname or family.surname
    title = rng.choice(("Mrs", "Ms", "Miss")) if sex == "F" else "Mr"
    phones = (reg.mobile(),) + ((family.landline,) if lives_with and family.landline else ())
    emails = (email_for(forename, surname, reg.contacts + 1),) if email else ()
    return Contact(reg.contact_key(), priority, title, forename, surname, relationship, pr, lives_with,
                   phones, emails, address or (family.address if lives_with else None))


def make_family(reg: Registry, *, foster: bool = False) -> Family:
    """A household with its contacts (children are added by ``make_child``)."""
    rng = reg.rng
    surname = rng.choice(names.SURNAMES)
    family = Family(surname, reg.address(), reg.landline() if rng.random() < 0.45 else None)
    if foster:
        family.contacts += [
            _adult(reg, family, "F", "Foster carer", 1, pr=False, lives_with=True),
            _adult(reg, family, "M", "Foster carer", 2, pr=False, lives_with=True),
            _adult(reg, family, "F", "Social worker", 3, pr=False, lives_with=False,
                   surname=rng.choice(names.SURNAMES), email=False),
        ]
        return family
    first_sex = "F" if rng.random() < 0.8 else "M"
    family.contacts.append(_adult(reg, family, first_sex, "Mother" if first_sex == "F" else "Father", 1,
                                  pr=True, lives_with=True))
    if rng.random() < 0.75:
        other = "M" if first_sex == "F" else "F"
        apart = rng.random() < 0.2
        family.contacts.append(_adult(
            reg, family, other, "Father" if other == "M" else "Mother", 2, pr=True, lives_with=not apart,
            surname=rng.choice(names.SURNAMES) if apart or rng.random() < 0.15 else None,
            address=reg.address() if apart else None))
    if rng.random() < 0.6:
        sex = rng.choice("FM")
        rel = rng.choice(("Grandmother", "Aunt", "Family friend") if sex == "F" else ("Grandfather", "Uncle"))
        family.contacts.append(_adult(reg, family, sex, rel, len(family.contacts) + 1, pr=False,
                                      lives_with=False, surname=rng.choice(names.SURNAMES), email=False))
    return family


def build_families(reg: Registry, sizes: dict[str, int]) -> list[Family]:
    """Households with 1 to 3 children each until every year group is full."""
    rng = reg.rng
    left = dict(sizes)
    families: list[Family] = []
    while any(left.values()):
        open_years = [y for y in YEARS if left[y] > 0]
        k = min(rng.choices((1, 2, 3), weights=(55, 35, 10))[0], len(open_years))
        family = make_family(reg)
        for year in sorted(rng.sample(open_years, k), key=YEARS.index):
            make_child(reg, family, year)
            left[year] -= 1
        families.append(family)
    return families


def pupil_record(child: Child, family: Family) -> PupilRecord:
    home = family.landline or (family.contacts[0].phones[0] if family.contacts else None)
    return PupilRecord(
        pupil_key=child.key, upn=child.upn, legal_surname=child.surname, legal_forename=child.forename,
        preferred_surname=child.surname, preferred_forename=child.preferred or child.forename,
        middle_names=child.middle, dob=child.dob, sex=child.sex, year_group=child.year,
        reg_group=child.reg_group, address=family.address, phones=(home,) if home else (),
    )


def contact_records(child: Child, family: Family) -> list[ContactRecord]:
    return [ContactRecord(
        pupil_key=child.key, contact_key=c.key, priority=c.priority, title=c.title, surname=c.surname,
        forename=c.forename, relationship=c.relationship, parental_responsibility=c.parental_responsibility,
        lives_with=c.lives_with, phones=c.phones, emails=c.emails, address=c.address,
    ) for c in family.contacts]


def enrolment_record(child: Child, *, admission: date | None = None, leaving: date | None = None,
                     reason: str | None = None, destination: str | None = None) -> EnrolmentRecord:
    return EnrolmentRecord(pupil_key=child.key, admission_date=admission or child.entry_date,
                           entry_date=child.entry_date, leaving_date=leaving, leaving_reason=reason,
                           destination=destination)


def compulsory_school_age_from(dob: date) -> date:
    """The first 31 December, 31 March or 31 August on or after the fifth birthday."""
    try:
        fifth = dob.replace(year=dob.year + 5)
    except ValueError:  # 29 February
        fifth = date(dob.year + 5, 3, 1)
    candidates = [date(fifth.year, 3, 31), date(fifth.year, 8, 31), date(fifth.year, 12, 31),
                  date(fifth.year + 1, 3, 31)]
    return min(d for d in candidates if d >= fifth)
