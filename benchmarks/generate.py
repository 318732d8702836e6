"""Seeded, LA-scale Common Transfer Files: a local authority's pupils over one academic year.

``write_la(folder, pupils=100_000, files=10, seed=1)`` writes ``files`` real CTFs (written by
``adapters.ctf.writer.CtfWriter``, so they are what ``cme-batch import`` reads) holding one
academic year (2025/26, the demo school's calendar) of session marks, from the first day of the autumn term to the school
day before the last one; and as many *partial* CTFs holding only that last school day (the
"one new school day" of the benchmark). The same seed always gives the same bytes, and a
folder already holding the files for the same parameters is reused (``manifest.json``).

What the marks look like (every number a per-pupil chance, drawn from the seed):

- mostly present (``/`` AM, ``\\`` PM); illness runs (``I``), appointments (``M``), lates
  (``L``, ``U``), holidays not granted (``G``), a sports fixture (``P``), sessions without a
  register (``-``), a register class the school forgot to take;
- ``#`` on every session the school is closed (weekends, holidays, INSET days);
- *planted* unexplained streaks: past episodes (``N`` for a few days, then an explanation or
  a return), and current ones running up to the evaluation date, some with a register gap or a
  closed morning inside, some continued on the new day and some ended by it;
- joiners during the year (their marks start on their first day).

Nothing here decides what the engine should find: the baseline (``benchmarks.baseline``)
computes that from the stored marks with SQL, independently of the engine.

Pupils, contacts and addresses are fictional (no real names, ``example.org`` addresses,
phone numbers from Ofcom's drama ranges); UPNs are well formed with correct check letters.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

from cme_batch import upn
from cme_batch.demo import term
from cme_batch.model import (
    Address,
    ContactRecord,
    EnrolmentRecord,
    FlagRecord,
    MarksRecord,
    PupilRecord,
    Record,
    SchoolInfo,
)

#: The demo school's academic year (2025/26) and calendar: the same term dates, INSET days and
#: one-off holiday, so both benchmarks run on one configuration's kind of calendar.
ACADEMIC_YEAR = 2025
TERMS: tuple[tuple[str, date, date], ...] = term.TERMS + term.LATER_TERMS
CLOSURES: tuple[date, ...] = term.CLOSURES
BANK_HOLIDAYS: frozenset[date] = frozenset(term.BANK_HOLIDAYS) | frozenset(term.EXTRA_HOLIDAYS)
FIRST = TERMS[0][1]
LAST = TERMS[-1][2]
LA_NUMBER, ESTABLISHMENT = "916", "2999"
SCHOOL = SchoolInfo(LA_NUMBER, ESTABLISHMENT, "Benchmark Local Authority Schools")
PRESENT_DAY = ("/", "\\")
FORENAMES = ("Olivia", "Amelia", "Isla", "Noah", "Arthur", "Leo", "Aisha", "Priya", "Yusuf", "Mateo", "Zara", "Kai")
SURNAMES = ("Ashworth", "Bramley", "Cartwright", "Dunmore", "Ellery", "Patel", "Nowak", "Okafor", "Singh", "Costa")


def is_school_day(day: date) -> bool:
    return (day.weekday() < 5 and any(a <= day <= b for _, a, b in TERMS) and day not in CLOSURES
            and day not in BANK_HOLIDAYS)


SCHOOL_DAYS: tuple[date, ...] = tuple(
    d for d in (FIRST + timedelta(days=i) for i in range((LAST - FIRST).days + 1)) if is_school_day(d))
#: The new school day of the increment files, and the evaluation date of the year files.
NEW_DAY = SCHOOL_DAYS[-1]
AS_OF = SCHOOL_DAYS[-2]


@dataclass(frozen=True)
class Spec:
    pupils: int = 100_000
    files: int = 10
    seed: int = 1

    def per_file(self, index: int) -> range:
        lo = self.pupils * index // self.files
        return range(lo, self.pupils * (index + 1) // self.files)


@dataclass
class Generated:
    """The files written and what was planted (counts only: the truth comes from the baseline)."""

    year_files: list[Path]
    day_files: list[Path]
    planted: dict[str, int]


# -- one pupil's year of marks ----------------------------------------------------------------------
def _template() -> tuple[list[str], list[int]]:
    """Marks from FIRST to LAST: everyone present on every school day, ``#`` on every other day."""
    codes: list[str] = []
    day = FIRST
    while day <= LAST:
        codes += PRESENT_DAY if is_school_day(day) else ("#", "#")
        day += timedelta(days=1)
    return codes, [2 * (d - FIRST).days for d in SCHOOL_DAYS]


TEMPLATE, DAY_INDEX = _template()
NEW_DAY_INDEX = 2 * (NEW_DAY - FIRST).days


class _Pupil:
    """The marks of one pupil, as a mutable list of session codes from FIRST to LAST.

    Noise and streaks fall on the school days from ``start_day`` (an index into the school
    days: a joiner's first day) to ``end_day`` (excluded: the LA files leave the new day out).
    """

    def __init__(self, rng: random.Random, start_day: int = 0, end_day: int | None = None) -> None:
        self.rng = rng
        self.codes = list(TEMPLATE)
        self.days = DAY_INDEX[start_day:end_day]  # school days on roll (AM index)

    def run(self, length: int, am: str, pm: str, pool: list[int] | None = None) -> int | None:
        days = pool if pool is not None else self.days
        if len(days) <= length:
            return None
        i = self.rng.randrange(len(days) - length)
        for k in days[i:i + length]:
            self.codes[k], self.codes[k + 1] = am, pm
        return i

    def one(self, am: str, pm: str) -> None:
        k = self.rng.choice(self.days)
        self.codes[k], self.codes[k + 1] = am, pm

    def noise(self) -> None:
        rng = self.rng
        persistent = rng.random() < 0.06
        for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 4)) + (6 if persistent else 0)):
            self.run(rng.choice((1, 1, 2, 3)), "I", "I")
        for _ in range(rng.choice((0, 0, 1, 2))):
            self.one(*rng.choice((("M", "\\"), ("/", "M"))))
        for _ in range(rng.choice((0, 0, 1, 2, 4, 6)) + (5 if persistent else 0)):
            self.one("L", "\\")
        if rng.random() < 0.1:
            self.one("U", "\\")
        if rng.random() < 0.05:
            self.run(rng.choice((3, 4, 5)), "G", "G")
        if rng.random() < 0.05:
            self.one("/", "N")  # not back after lunch: seen that day
        if rng.random() < 0.03:
            self.one("/", "P")
        if rng.random() < 0.02:
            self.one("-", "\\")  # a morning register not taken
        if rng.random() < 0.12:
            self.one("N", "N")  # a day unexplained, explained or back the next day

    def past_streak(self) -> None:
        """An unexplained episode of a few days, ended by a return or an explanation."""
        length = self.rng.randint(2, 12)
        i = self.run(length, "N", "N", self.days[:-15])
        if i is not None:
            end = self.days[i + length]
            self.codes[end], self.codes[end + 1] = self.rng.choice((PRESENT_DAY, ("I", "I"), ("N", "/")))

    def current_streak(self) -> int:
        """Unexplained absence up to the evaluation date, sometimes with a gap or a closed session."""
        rng = self.rng
        length = min(rng.choice((1, 1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 25)), len(self.days) - 1)
        tail = self.days[-length:]
        for k in tail:
            self.codes[k], self.codes[k + 1] = "N", "N"
        if length > 3 and rng.random() < 0.3:
            k = rng.choice(tail[1:-1])
            self.codes[k + rng.randrange(2)] = rng.choice(("-", "#", "X", "Z", "Y"))  # gap, closed, neutral
        if rng.random() < 0.2:
            k = tail[0]
            self.codes[k] = "#"  # a closed morning: the afternoon N still counts
        return length


@dataclass
class _Counts:
    current: int = 0
    past: int = 0
    continued: int = 0
    returned: int = 0
    joiners: int = 0
    looked_after: int = 0


def _people(i: int, rng: random.Random) -> tuple[PupilRecord, list[ContactRecord]]:
    key = upn.make(f"{LA_NUMBER}{2000 + i // 1000:04d}24{i % 1000:03d}")  # LA, allocating school, year, serial
    sur, fore = rng.choice(SURNAMES), rng.choice(FORENAMES)
    address = Address((f"{rng.randint(1, 200)} {rng.choice(SURNAMES)} Road", "Gloucester"),
                      f"GL{rng.randint(1, 20)} {rng.randint(1, 9)}ZZ")
    pupil = PupilRecord(key, upn=key, legal_surname=sur, legal_forename=fore,
                        dob=date(2013, 9, 1) + timedelta(days=rng.randrange(2500)), sex=rng.choice("MF"),
                        year_group=rng.choice(("R", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11")),
                        address=address, phones=("01632 960123",))
    contacts = [ContactRecord(key, f"order:{n}", priority=n, title=t, surname=sur, forename=f, relationship=r,
                              parental_responsibility=True, phones=(f"07700 900{rng.randrange(1000):03d}",),
                              emails=(f"{f.lower()}.{i}@example.org",), address=address)
                for n, t, f, r in ((1, "Mrs", "Sarah", "MUM"), (2, "Mr", "James", "DAD"))]
    return pupil, contacts


def _pupil_year(i: int, rng: random.Random, counts: _Counts) -> tuple[PupilRecord, list[ContactRecord],
                                                                      list[FlagRecord], EnrolmentRecord,
                                                                      MarksRecord, tuple[str, str]]:
    pupil, contacts = _people(i, rng)
    start = 0
    if rng.random() < 0.01:
        start = rng.randrange(20, len(DAY_INDEX) - 20)
        counts.joiners += 1
    entry = FIRST + timedelta(days=DAY_INDEX[start] // 2) if start else date(2019 + rng.randrange(5), 9, 3)
    p = _Pupil(rng, start, -1)
    p.noise()
    if rng.random() < 0.01:
        p.past_streak()
        counts.past += 1
    new_day = PRESENT_DAY
    if rng.random() < 0.004:
        p.current_streak()
        counts.current += 1
        if rng.random() < 0.5:
            new_day = ("N", "N")
            counts.continued += 1
        else:
            new_day = rng.choice((PRESENT_DAY, ("I", "I"), ("L", "\\")))
            counts.returned += 1
    elif rng.random() < 0.03:
        new_day = rng.choice((("I", "I"), ("M", "\\"), ("L", "\\"), ("N", "N")))
    flags = []
    if rng.random() < 0.005:
        flags.append(FlagRecord(pupil.pupil_key, "looked_after"))
        counts.looked_after += 1
    if rng.random() < 0.12:
        flags.append(FlagRecord(pupil.pupil_key, "sen_support" if rng.random() < 0.8 else "ehcp",
                                start=date(2023, 9, 4)))
    first = 2 * (p.days[0] // 2)
    marks = MarksRecord(pupil.pupil_key, FIRST + timedelta(days=first // 2), tuple(p.codes[first:NEW_DAY_INDEX]))
    return pupil, contacts, flags, EnrolmentRecord(pupil.pupil_key, entry_date=entry), marks, new_day


def _manifest(spec: Spec) -> dict[str, object]:
    return {"generator": 1, **asdict(spec), "first": FIRST.isoformat(), "new_day": NEW_DAY.isoformat()}


def write_la(folder: Path, pupils: int = 100_000, files: int = 10, seed: int = 1) -> Generated:
    """Write (or reuse) the year files and the new-day files; see the module docstring."""
    from adapters.ctf.writer import CtfWriter

    spec = Spec(pupils, files, seed)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.json"
    year_files = [folder / f"year-{n:02d}.xml" for n in range(files)]
    day_files = [folder / f"day-{n:02d}.xml" for n in range(files)]
    if manifest.exists():
        saved = json.loads(manifest.read_text(encoding="utf-8"))
        if saved.get("spec") == _manifest(spec) and all(p.exists() for p in year_files + day_files):
            return Generated(year_files, day_files, saved["planted"])
        manifest.unlink()
    counts = _Counts()
    for n in range(files):
        rng = random.Random(f"{seed}/{n}")
        new_days: list[tuple[str, tuple[str, str]]] = []
        with CtfWriter(year_files[n], SCHOOL) as w:
            for i in spec.per_file(n):
                pupil, contacts, flags, enrolment, marks, new_day = _pupil_year(i, rng, counts)
                w.pupil(pupil, contacts, flags, [enrolment], [marks])
                new_days.append((pupil.pupil_key, new_day))
        with CtfWriter(day_files[n], SCHOOL, qualifier="partial") as w:
            for key, (am, pm) in new_days:
                w.pupil(PupilRecord(key, upn=key), marks=[MarksRecord(key, NEW_DAY, (am, pm))])
    planted = asdict(counts)
    manifest.write_text(json.dumps({"spec": _manifest(spec), "planted": planted}, indent=2) + "\n",
                        encoding="utf-8")
    return Generated(year_files, day_files, planted)


# -- one school: the demo school over the whole year ----------------------------------------------
def school_records(seed: int = 2025, pupils: int = 420) -> list[Record]:
    """The demo school (``cme_batch.demo.generator.generate``: its families, flags, admissions,
    leavers and autumn stories) with marks for the rest of the year to LAST: the same kind of
    background as the LA files, a few new unexplained streaks up to LAST, and the pupils missing
    at Christmas still missing."""
    from cme_batch.demo.generator import generate

    school = generate(seed, pupils)
    rng = random.Random(f"school/{seed}")
    return [_rest_of_year(r, rng) if isinstance(r, MarksRecord) else r for r in school.records]


def _rest_of_year(r: MarksRecord, rng: random.Random) -> MarksRecord:
    last = r.start + timedelta(days=(len(r.codes) - 1) // 2)
    if last != term.TERM_END:
        return r  # a leaver: nothing after leaving
    p = _Pupil(rng, next(i for i, k in enumerate(DAY_INDEX) if k > 2 * (last - FIRST).days))  # from spring
    p.noise()
    if r.codes[-2:] == ("N", "N"):
        for k in p.days:
            p.codes[k], p.codes[k + 1] = "N", "N"
    elif rng.random() < 0.01:
        p.current_streak()
    codes = list(r.codes)
    for d in range((last - FIRST).days + 1, (LAST - FIRST).days + 1):
        day = FIRST + timedelta(days=d)
        codes += p.codes[2 * d:2 * d + 2] if is_school_day(day) else ("#", "#") if day in CLOSURES else ("", "")
    return MarksRecord(r.pupil_key, r.start, tuple(codes))


def write_school(folder: Path, records: list[Record], through: date, stamp: str) -> dict[str, Path]:
    """The school's four SIMS CommandReporter exports as its nightly task writes them, with the
    marks of every day up to ``through``."""
    from adapters.sims.writer import write_reports

    cut = [MarksRecord(r.pupil_key, r.start, r.codes[:2 * max(0, (through - r.start).days + 1)])
           if isinstance(r, MarksRecord) else r for r in records]
    return write_reports(folder, cut, stamp=stamp)


def write_school_ctf(path: Path, records: list[Record], through: date) -> Path:
    """The school as one Common Transfer File, with the marks of every day up to ``through``."""
    from adapters.ctf.writer import write_ctf

    cut = [MarksRecord(r.pupil_key, r.start, r.codes[:2 * max(0, (through - r.start).days + 1)])
           if isinstance(r, MarksRecord) else r for r in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_ctf(path, cut, SchoolInfo(LA_NUMBER, ESTABLISHMENT, "The John Moore Primary School"))


def school_sessions(pupils: int) -> int:
    """Session marks on school days in the year files for ``pupils`` pupils on roll all year."""
    return pupils * 2 * sum(1 for d in SCHOOL_DAYS if d < NEW_DAY)


__all__ = ["AS_OF", "NEW_DAY", "SCHOOL_DAYS", "Spec", "school_records", "write_la", "write_school", "write_school_ctf"]
