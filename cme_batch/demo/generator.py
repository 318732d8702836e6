"""The demo school: a seeded, fictional primary with a full autumn term of registers and planted cases.

``generate(seed, pupils)`` builds The John Moore Primary School (LA 916, fictional establishment
number 2999) with about 420 pupils from Reception to Year 6 in families that share contacts and
addresses, a few vulnerability flags, two in-year admissions (one never turns up), two leavers
(one to an unknown destination), and register marks for every school day of autumn 2025.

The calendar is in ``term``: INSET days 1 September and 3 November are ``#`` for everyone, half
term is 27-31 October, and because England has no bank holiday in this term the configuration
adds a fictional one-off holiday on Friday 14 November (``calendar.extra_holidays``), which a
planted streak crosses. The planted stories and their expected cases are in ``scenario`` and
``plants``; background marks in ``attendance``. The same seed always gives the same school.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import date
from typing import Any

from cme_batch.demo import names, term
from cme_batch.demo.attendance import Register, add_everyday_noise, afternoon_not_taken, whole_group_event
from cme_batch.demo.people import (
    ESTABLISHMENT,
    LA_NUMBER,
    Child,
    Family,
    Registry,
    build_families,
    compulsory_school_age_from,
    contact_records,
    enrolment_record,
    make_child,
    make_family,
    pupil_record,
    year_sizes,
)
from cme_batch.demo.plants import ExpectedCase, LaReturn, NoCase, Planter
from cme_batch.demo.scenario import (
    CORRECTIONS_ON,
    JOINER_FIRST_DAY,
    LEAVER_DESTINATION_UNKNOWN,
    LEAVER_WITH_DESTINATION,
    NO_SHOW_FIRST_DAY,
    Cast,
    Picker,
    cast,
    plant,
)
from cme_batch.model import EnrolmentRecord, FlagRecord, MarksRecord, PupilRecord, Record, SchoolInfo

SCHOOL_NAME = "The John Moore Primary School"
MIN_PUPILS = 70  # room for every story with ordinary pupils around them


@dataclass
class DemoSchool:
    """Everything the demo loads, and what the engine must make of it."""

    seed: int
    records: list[Record]  # the first export: pupils, enrolments, contacts, flags, marks
    corrections: list[Record]  # a newer export that corrects marks of the first
    corrections_on: date  # load ``corrections`` before the night run of this date
    as_of: date  # the evaluation date: the last day of term
    school_days: tuple[date, ...]
    planted: list[ExpectedCase]
    no_case: list[NoCase]
    la_returns: list[LaReturn]

    def pupil_keys(self) -> list[str]:
        return [r.pupil_key for r in self.records if isinstance(r, PupilRecord)]

    def config_toml(self, state_dir: str, maildrop_dir: str, reply_key_file: str | None = None,
                    extra: str = "") -> str:
        """A valid configuration for the demo school (paths as given, relative to the config file).

        ``reply_key_file`` names a file holding the secret that signs reply tokens (a secret file
        is found from the working directory, so give an absolute path); without it the DSL is
        not asked to confirm referrals by reply.
        """
        return config_toml(state_dir, maildrop_dir, reply_key_file, extra)

    def expectations(self) -> dict[str, Any]:
        """The planted cases as JSON-ready data (pupil keys only: no names, UPNs or dates of birth)."""
        return {
            "seed": self.seed,
            "as_of": self.as_of.isoformat(),
            "corrections_on": self.corrections_on.isoformat(),
            "cases": [c.as_json() for c in self.planted],
            "no_case": [vars(n) for n in self.no_case],
            "la_returns": [{**vars(r), "start": r.start.isoformat()} for r in self.la_returns],
        }


def _s(value: str) -> str:
    return json.dumps(value)  # a TOML basic string


def _dates(days: tuple[date, ...]) -> str:
    return "[" + ", ".join(_s(d.isoformat()) for d in days) + "]"


def config_toml(state_dir: str, maildrop_dir: str, reply_key_file: str | None = None, extra: str = "") -> str:
    terms = "\n".join(
        f"[[calendar.terms]]\nname = {_s(n)}\nstart = {_s(s.isoformat())}\nend = {_s(e.isoformat())}\n"
        for n, s, e in term.TERMS + term.LATER_TERMS)
    return f"""# The demo school: fictional data made by `cme-batch demo`. Safe to delete.
[school]
name = {_s(SCHOOL_NAME)}
la_number = {_s(LA_NUMBER)}
establishment_number = {_s(ESTABLISHMENT)}   # fictional
address = ["1 Example Road", "Ashbury Vale"]
postcode = "GL20 9ZZ"
phone = "01632 960000"
email = "admin@johnmoore.example.org"

[[staff.office]]
name = "Attendance Officer"
email = "office@johnmoore.example.org"
phone = "01632 960001"

[staff.dsl]
name = "Designated Safeguarding Lead"
email = "dsl@johnmoore.example.org"
phone = "01632 960002"

[staff.deputy_dsl]
name = "Deputy DSL"
email = "deputy.dsl@johnmoore.example.org"
phone = "01632 960003"

[paths]
state_dir = {_s(state_dir)}

[calendar]
bank_holidays = true
closures = {_dates(term.CLOSURES)}          # INSET days
extra_holidays = {_dates(term.EXTRA_HOLIDAYS)}    # a fictional one-off holiday in term

{terms}
[logging]
level = "warning"
format = "console"

[mail]
transport = "maildrop"
from = "cme-batch@johnmoore.example.org"
maildrop_dir = {_s(maildrop_dir)}

[referral]
la_email = "missing-pupils@la.example.org"   # fictional: the demo never writes to a real LA
""" + extra + (f"""
[replies]
token_keys = [{{ id = "demo1", secret = {{ file = {_s(reply_key_file)} }} }}]
""" if reply_key_file else "")


def _flag(child: Child, kind: str, start: date, detail: str | None = None) -> FlagRecord:
    return FlagRecord(child.key, kind, start=start, detail=detail)


def _background_flags(rng: random.Random, picker: Picker, looked_after: Child) -> list[FlagRecord]:
    """Vulnerability and SEN flags on pupils without a story, plus the looked-after child."""
    flags = [_flag(looked_after, "looked_after", date(2024, 3, 4), "Looked after: foster placement")]
    for kind, detail, count in (
        ("child_protection_plan", "Child protection plan", 1), ("young_carer", "Young carer", 1),
        ("domestic_abuse", "Family fleeing domestic abuse", 1), ("medical_emotional", "Long-term medical needs", 2),
        ("parent_mental_health", "Parent with mental health needs", 1), ("child_in_need", "Child in need plan", 2),
        ("ehcp", "Education, health and care plan", 4),
    ):
        for _ in range(count):
            flags.append(_flag(picker.one(), kind, date(2025, rng.randint(1, 7), rng.randint(1, 28)), detail))
    for child in picker.family_of(2):
        flags.append(_flag(child, "highly_mobile", date(2023, 9, 4), "Gypsy, Roma and Traveller family"))
    for child in picker.remaining():
        if rng.random() < 0.1:
            flags.append(_flag(child, "sen_support", date(2024, 9, 2), "SEN support"))
    return flags


def generate(seed: int = 2025, pupils: int = 420) -> DemoSchool:
    """Build the demo school for ``seed``; ``pupils`` counts every pupil on roll at some point this term."""
    if pupils < MIN_PUPILS:
        raise ValueError(f"the demo school needs at least {MIN_PUPILS} pupils, not {pupils}")
    rng = random.Random(seed)
    reg = Registry(rng)
    sizes = year_sizes(pupils)
    for year in ("1", "2", "3"):  # places for the looked-after child and the two in-year admissions
        sizes[year] -= 1
    families = build_families(reg, sizes)
    foster = make_family(reg, foster=True)
    looked_after = make_child(reg, foster, "2")
    looked_after.surname = rng.choice([s for s in names.SURNAMES if s != foster.surname])
    joiner_family, no_show_family = make_family(reg), make_family(reg)
    joiner = make_child(reg, joiner_family, "1", entry=JOINER_FIRST_DAY, from_elsewhere=True)
    no_show = make_child(reg, no_show_family, "3", entry=NO_SHOW_FIRST_DAY, from_elsewhere=True)
    all_families = families + [foster, joiner_family, no_show_family]

    picker = Picker(rng, families)
    roles = cast(picker)
    leaving = {roles.one("leaver_with_destination").key: LEAVER_WITH_DESTINATION,
               roles.one("leaver_destination_unknown").key: LEAVER_DESTINATION_UNKNOWN}
    flags = [_flag(roles.one("cpp_alert"), "child_protection_plan", date(2025, 6, 12), "Child protection plan"),
             _flag(roles.one("young_carer_early_review"), "young_carer", date(2025, 2, 3), "Young carer")]
    flags += _background_flags(rng, picker, looked_after)

    children = [(c, f) for f in all_families for c in f.children]
    registers = {c.key: Register(c.key, c.entry_date, leaving.get(c.key)) for c, _ in children}
    quiet = roles.planted_keys() | {joiner.key, no_show.key}
    for child, _ in children:
        if child.key not in quiet:
            add_everyday_noise(rng, registers[child.key], persistent_absentee=rng.random() < 0.06)
    _class_events(rng, children, registers, quiet)

    planter = Planter(registers)
    planter.flags = {f.pupil_key: planter.flags.get(f.pupil_key, frozenset()) | {f.kind} for f in flags}
    planter.below_age = {c.key: compulsory_school_age_from(c.dob) > planter.as_of for c, _ in children}
    plant(planter, roles, joiner, no_show, looked_after)

    records: list[Record] = [SchoolInfo(LA_NUMBER, ESTABLISHMENT, SCHOOL_NAME)]
    records += [pupil_record(c, f) for c, f in children]
    records += [_enrolment(c, roles, joiner, no_show) for c, _ in children]
    records += [r for c, f in children for r in contact_records(c, f)]
    records += flags
    records += [registers[c.key].record() for c, _ in children]
    key = roles.one("corrected_mark").key
    corrections: list[Record] = [MarksRecord(key, date(2025, 11, 24), ("I", "I", "I", "I"))]
    return DemoSchool(seed, records, corrections, CORRECTIONS_ON, planter.as_of, term.SCHOOL_DAYS,
                      planter.cases, planter.no_case, planter.la_returns)


def _enrolment(child: Child, roles: Cast, joiner: Child, no_show: Child) -> EnrolmentRecord:
    if child is roles.one("leaver_with_destination"):
        return enrolment_record(child, leaving=LEAVER_WITH_DESTINATION, reason="Moved to another school",
                                destination=names.OTHER_SCHOOLS[0])
    if child is roles.one("leaver_destination_unknown"):
        return enrolment_record(child, leaving=LEAVER_DESTINATION_UNKNOWN,
                                reason="Moved away; destination not known")
    return enrolment_record(child)


def _class_events(rng: random.Random, children: list[tuple[Child, Family]], registers: dict[str, Register],
                  quiet: set[str]) -> None:
    """Whole-class marks: a Year 4 trip, a lost afternoon register, a festival, a stage licence."""
    by_group: dict[str, list[Register]] = {}
    for child, _ in children:
        by_group.setdefault(child.year, []).append(registers[child.key])
        by_group.setdefault(child.reg_group, []).append(registers[child.key])
    whole_group_event(by_group.get("4", []), date(2025, 10, 8), ("V", "V"))
    afternoon_not_taken(by_group.get("5W", []), date(2025, 10, 9))
    ordinary = [registers[c.key] for c, _ in children if c.key not in quiet and c.entry_date <= term.TERM_START]
    for reg in rng.sample(ordinary, 3):
        reg.set(date(2025, 10, 21), ("R", "R"))
    performer = rng.choice(ordinary)
    for d in term.school_days_between(date(2025, 11, 26), date(2025, 11, 27)):
        performer.set(d, ("C1", "C1"))
