"""The office's morning as the attendance officer lives it, day by day.

Each test builds a small school in a real SQLite store, lays registers as the MIS exports them,
and runs the night as the timer does (every weekday morning at 05:30, evaluating the last school
day: ``App.default_as_of``, the nightly's detect stage with its catch-up, then the summary stage),
then reads what the office summary, the office's action emails and the DSL digest say.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from cme_batch import detect
from cme_batch.app import App
from cme_batch.model import ContactRecord, FlagRecord
from cme_batch.morning.queue import queue_morning_mail
from cme_batch.nightly import run_nightly
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.helpers import clocked_app
from tests.integration.test_morning_steps import lay, mails, pupil, section
from tests.integration.test_morning_steps import marks as regs
from tests.replies_support import KEY, KEY_ENV

CALLS, CONTACTS, STEPS = "First-day calls today", "Emergency contacts to try today", \
    "Unexplained absence: pupils at each step"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A real SQLite store (the school's default)."""
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


@pytest.fixture
def school(tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> App:
    """The test school (autumn terms with half term 27-31 Oct, closures 1 Sep and 3 Nov 2025; a summer
    term 13 Apr - 22 May 2026 with the May Day bank holiday, 4 May), with a reply token key so that
    the office's action emails are queued; the clock follows the timer."""
    monkeypatch.setenv(KEY_ENV, KEY)
    cfg = write_config(tmp_path, store_url, f"""
[[calendar.terms]]
start = "2026-04-13"
end = "2026-05-22"

[replies]
mailbox = "none"
token_keys = [{{ id = "k1", secret = {{ env = "{KEY_ENV}" }} }}]
""")
    app = clocked_app(cfg, engine, datetime(2025, 9, 2, 5, 30, tzinfo=UTC))
    return app


def morning(app: App, day: date) -> date:
    """The timer's run on the morning of ``day`` (a weekday): detect (catching up missed nights) and
    the summary stage, for the last school day before it. Returns the evaluation date."""
    app.clock_box["now"] = datetime.combine(day, time(5, 30), UTC)  # type: ignore[attr-defined]
    as_of = app.default_as_of()
    report = run_nightly(app, as_of, only=("detect", "summary"))
    assert not report.failed, report.stages
    return as_of


def summary_of(engine: Engine, as_of: date) -> str:
    with engine.connect() as conn:
        key = conn.execute(select(t.outbox.c.id).where(t.outbox.c.idempotency_key == f"summary:{as_of}")).scalar()
    assert key is not None, f"no summary for {as_of}"
    return dict((i, text) for i, (_, text) in zip(_ids(engine, "summary"), mails(engine, "summary"), strict=True))[key]


def _ids(engine: Engine, purpose: str) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(select(t.outbox.c.id).where(t.outbox.c.purpose == purpose)
                                 .order_by(t.outbox.c.id)).scalars())


def listed(text: str, title: str, name: str) -> int:
    """How many rows of a section of the summary name the child."""
    return sum(1 for line in section(text, title).splitlines() if line.startswith(name))


def actions(engine: Engine) -> list[tuple[str, str]]:
    """(case ref, step) of every office action email, oldest first."""
    return [(s.split(":")[0], s.split(":")[1].split("[")[0].strip().removesuffix(" needed"))
            for s, _ in mails(engine, "office_action")]


# -- check 1: every child absent without a reason is on the first-day calls, once -----------------
MON, TUE, WED, THU, FRI = (date(2025, 11, 10) + timedelta(days=i) for i in range(5))


def test_every_shape_of_a_day_absent_without_reason_is_one_first_day_call(school: App, engine: Engine) -> None:
    """Tuesday's first-day calls (Monday's registers): a whole day N, a morning N with no afternoon
    register, a morning with no register and an afternoon N, a day of O, two siblings; and not the
    children seen in school that day (a morning N then a late mark, a morning N then present)."""
    seen_before = {date(2025, 11, 7): ("/", "\\")}
    shapes = {"1": ("Ada", ("N", "N")), "2": ("Ben", ("N", "-")), "3": ("Cal", ("-", "N")),
              "4": ("Dot", ("O", "O")), "5": ("Eve", ("N", "N")), "6": ("Fin", ("N", "N")),
              "7": ("Gus", ("N", "L")), "8": ("Hal", ("N", "/"))}
    records: list[object] = []
    for key, (name, pair) in shapes.items():
        surname = "Sibling" if key in "56" else "Pupil"
        records += [pupil(key, name, surname), *regs(key, {**seen_before, MON: pair})]
    lay(school, *records)
    assert morning(school, TUE) == MON
    text = summary_of(engine, MON)
    for name in ("Ada Pupil", "Ben Pupil", "Cal Pupil", "Dot Pupil", "Eve Sibling", "Fin Sibling"):
        assert listed(text, CALLS, name) == 1, name
        assert name not in section(text, CONTACTS) and name not in section(text, STEPS)
    assert "Gus Pupil" not in text and "Hal Pupil" not in text
    assert "6 first-day call(s)" in mails(engine, "summary")[-1][0]
    assert sorted(step for _, step in actions(engine)) == ["first-day call"] * 6


def test_absent_after_a_weekend_a_half_term_an_inset_day_and_a_new_term(school: App, engine: Engine) -> None:
    """The first school day after a weekend, after half term and the INSET day (Tue 4 Nov), and the
    first day of the school year (Tue 2 Sep, after the closure of 1 Sep): each is a first-day call
    on the next school morning, as day 1, never as a second day."""
    lay(school, pupil("1", "Sep"), *regs("1", {date(2025, 9, 2): ("N", "N"), date(2025, 9, 3): ("/", "\\")}),
        pupil("2", "Nov"), *regs("2", {date(2025, 9, 2): ("/", "\\"), date(2025, 10, 24): ("/", "\\"),
                                        date(2025, 11, 4): ("N", "N")}),
        pupil("3", "Mon"), *regs("3", {date(2025, 9, 2): ("/", "\\"), date(2025, 11, 7): ("/", "\\"),
                                        MON: ("N", "N")}))
    assert morning(school, date(2025, 9, 3)) == date(2025, 9, 2)
    assert listed(summary_of(engine, date(2025, 9, 2)), CALLS, "Sep Pupil") == 1
    assert morning(school, date(2025, 11, 5)) == date(2025, 11, 4)
    assert listed(summary_of(engine, date(2025, 11, 4)), CALLS, "Nov Pupil") == 1
    assert morning(school, TUE) == MON
    assert listed(summary_of(engine, MON), CALLS, "Mon Pupil") == 1


def test_a_bank_holiday_monday_asks_nothing_twice_and_skips_nothing(school: App, engine: Engine) -> None:
    """Absent on Friday 1 May 2026 and again on Tuesday 5 May (Monday 4 May is the May Day bank
    holiday): the timer runs on Monday and Tuesday mornings too. Friday's first-day call is asked
    once (on Monday morning), Tuesday's absence is the second day: the emergency contacts."""
    lay(school, pupil("1", "May"), *regs("1", {date(2026, 4, 30): ("/", "\\"), date(2026, 5, 1): ("N", "N"),
                                               date(2026, 5, 5): ("N", "N")}))
    school.clock_box["now"] = datetime(2026, 4, 30, 5, 30, tzinfo=UTC)  # type: ignore[attr-defined]
    detect.run_detect(school, date(2026, 4, 29))
    evaluated = [morning(school, d) for d in (date(2026, 5, 4), date(2026, 5, 5), date(2026, 5, 6))]
    assert evaluated == [date(2026, 5, 1), date(2026, 5, 1), date(2026, 5, 5)]
    assert listed(summary_of(engine, date(2026, 5, 1)), CALLS, "May Pupil") == 1
    assert listed(summary_of(engine, date(2026, 5, 5)), CONTACTS, "May Pupil") == 1
    assert len(_ids(engine, "summary")) == 2
    assert [step for _, step in actions(engine)] == ["first-day call", "contact every emergency contact"]


def test_a_closure_day_in_the_registers_neither_breaks_nor_counts(school: App, engine: Engine) -> None:
    """A snow day (every pupil '#') between two days of absence: the second is day 2, the contacts."""
    lay(school, pupil("1", "Ida"), pupil("2", "Jon"),
        *regs("1", {date(2025, 11, 7): ("/", "\\"), MON: ("N", "N"), TUE: ("#", "#"), WED: ("N", "N")}),
        *regs("2", {date(2025, 11, 7): ("/", "\\"), MON: ("/", "\\"), TUE: ("#", "#"), WED: ("/", "\\")}))
    for d in (TUE, WED, THU):
        morning(school, d)
    assert listed(summary_of(engine, MON), CALLS, "Ida Pupil") == 1
    wed = summary_of(engine, WED)
    assert listed(wed, CONTACTS, "Ida Pupil") == 1 and "Ida Pupil" not in section(wed, CALLS)


# -- check 3: back, then absent again --------------------------------------------------------------
def test_a_child_who_comes_back_and_is_absent_again_is_a_new_first_day_call(school: App, engine: Engine) -> None:
    lay(school, pupil("1", "Kit"), *regs("1", {date(2025, 11, 7): ("/", "\\"), MON: ("N", "N"),
                                               TUE: ("/", "\\"), WED: ("N", "N"), THU: ("N", "N")}))
    for d in (TUE, WED, THU, FRI):
        morning(school, d)
    assert listed(summary_of(engine, MON), CALLS, "Kit Pupil") == 1
    assert "Kit Pupil" not in summary_of(engine, TUE).split("LA 10-day return")[0]
    wed = summary_of(engine, WED)
    assert listed(wed, CALLS, "Kit Pupil") == 1 and "Kit Pupil" not in section(wed, CONTACTS)
    assert listed(summary_of(engine, THU), CONTACTS, "Kit Pupil") == 1
    steps = actions(engine)
    assert [s for _, s in steps] == ["first-day call", "first-day call", "contact every emergency contact"]
    assert steps[0][0] != steps[1][0] == steps[2][0]  # a new case for the new absence


# -- check 4: the parent reported it -----------------------------------------------------------------
def test_a_reported_absence_is_no_call_an_unknown_code_is_reported(school: App, engine: Engine) -> None:
    """I, M, the 2024 codes C1 and J1, and a holiday not granted (G): the parent reported it, no call.
    The old J written after the 2024 change, and a local code, are said in the register warnings."""
    codes = {"1": "I", "2": "M", "3": "C1", "4": "J1", "5": "G", "6": "J", "7": "!"}
    records: list[object] = []
    for key, code in codes.items():
        records += [pupil(key, f"Kid{key}"), *regs(key, {date(2025, 11, 7): ("/", "\\"), MON: (code, code)})]
    lay(school, *records)
    morning(school, TUE)
    text = summary_of(engine, MON)
    assert "No first-day calls." in section(text, CALLS)
    gaps = section(text, "Register gaps and unknown codes")
    assert "unknown attendance code 'J' in 2 session(s) of 1 pupil(s)" in gaps
    assert "unknown attendance code '!' in 2 session(s) of 1 pupil(s)" in gaps
    assert not actions(engine)


# -- check 6: the server off for two nights ----------------------------------------------------------
def test_nights_missed_still_give_the_office_its_steps(school: App, engine: Engine) -> None:
    """The server was off on the mornings of Tuesday and Wednesday; Thursday's run catches up. A child
    absent Monday to Wednesday has reached the DSL's review by school days, but nobody was ever asked
    to call the parents or try the emergency contacts: the office must still be asked to."""
    lay(school, pupil("1", "Lou"), pupil("2", "Max"),
        *regs("1", {date(2025, 11, 7): ("/", "\\"), MON: ("N", "N"), TUE: ("N", "N"), WED: ("N", "N")}),
        *regs("2", {date(2025, 11, 7): ("/", "\\"), MON: ("/", "\\"), TUE: ("N", "N"), WED: ("N", "N")}))
    school.clock_box["now"] = datetime(2025, 11, 10, 5, 30, tzinfo=UTC)  # type: ignore[attr-defined]
    detect.run_detect(school, date(2025, 11, 7))
    queue_morning_mail(school, date(2025, 11, 7))
    assert morning(school, THU) == WED
    text = summary_of(engine, WED)
    office_lists = section(text, CALLS) + section(text, CONTACTS)
    assert "Lou Pupil" in office_lists and "Max Pupil" in office_lists
    assert sorted(ref for ref, _ in actions(engine)) == sorted({ref for ref, _ in actions(engine)}) and \
        len(actions(engine)) == 2


def test_the_catch_up_asks_the_office_once(school: App, engine: Engine) -> None:
    """After the catch-up morning, the next morning's summary lists the child at its DSL step only."""
    lay(school, pupil("1", "Lou"), *regs("1", {date(2025, 11, 7): ("/", "\\"), MON: ("N", "N"), TUE: ("N", "N"),
                                               WED: ("N", "N"), THU: ("N", "N")}))
    school.clock_box["now"] = datetime(2025, 11, 10, 5, 30, tzinfo=UTC)  # type: ignore[attr-defined]
    detect.run_detect(school, date(2025, 11, 7))
    queue_morning_mail(school, date(2025, 11, 7))
    morning(school, THU)
    morning(school, FRI)
    fri = summary_of(engine, THU)
    assert "Lou Pupil" not in section(fri, CALLS) + section(fri, CONTACTS)
    assert listed(fri, STEPS, "Lou Pupil") == 1
    assert [step for _, step in actions(engine)] == ["contact every emergency contact"]


# -- what the office sees of a vulnerable child ------------------------------------------------------
def test_the_office_lists_do_not_put_a_child_protection_case_first(school: App, engine: Engine) -> None:
    """Three children of one class absent on Monday, the last with a child protection plan: the
    office's lists are in class and name order, as for any three children; the DSL's digest has the
    Social Care alert. Before, the plan's child (its case at the DSL's review from day 1) came first
    on the office's first-day calls and emergency contacts every time: the office could tell."""
    lay(school, pupil("1", "Abi"), pupil("2", "Bea"), pupil("3", "Cat"), FlagRecord("3", "child_protection_plan"),
        *(m for k in "123" for m in regs(k, {date(2025, 11, 7): ("/", "\\"), MON: ("N", "N"), TUE: ("N", "N")})))
    morning(school, TUE)
    morning(school, WED)
    for as_of, title in ((MON, CALLS), (TUE, CONTACTS)):
        text = summary_of(engine, as_of)
        rows = [line.split("  ")[0] for line in section(text, title).splitlines()[3:]]
        assert rows == ["Abi Pupil", "Bea Pupil", "Cat Pupil"], (as_of, rows)
        assert "Social Care" not in text and "child protection" not in text.lower() and "DSL review" not in text
    digest = mails(engine, "digest")[0][1]
    assert "Cat Pupil" in section(digest, "IMMEDIATE: inform Social Care")


# -- check 2: the emergency contacts ------------------------------------------------------------------
def _contacts_day(school: App, engine: Engine) -> dict[str, str]:
    """Two children absent Monday and Tuesday: Nel with two contacts, Oli with none recorded.
    Returns Wednesday morning's contact action email text by child."""
    lay(school, pupil("1", "Nel"), pupil("2", "Oli"),
        ContactRecord("1", "c1", priority=1, forename="Mia", surname="Pupil", relationship="Mother",
                      phones=("07700 900001",)),
        ContactRecord("1", "c2", priority=2, forename="Ray", surname="Elder", relationship="Grandfather",
                      phones=("01632 960002", "07700 900003")),
        *(m for k in "12" for m in regs(k, {date(2025, 11, 7): ("/", "\\"), MON: ("N", "N"), TUE: ("N", "N")})))
    morning(school, TUE)
    morning(school, WED)
    out = {}
    for subject, text in mails(engine, "office_action"):
        if "contact every emergency contact" in subject:
            out["Nel" if "Nel Pupil" in text else "Oli"] = text
    return out


def test_the_contacts_step_gives_the_office_every_recorded_contact(school: App, engine: Engine) -> None:
    """The office is asked to try every emergency contact: the action email lists them, in priority
    order, with relationship and every number. Before, it gave only the child's name and class."""
    nel = _contacts_day(school, engine)["Nel"]
    assert nel.index("Mia Pupil (Mother)") < nel.index("Ray Elder (Grandfather)")
    assert "07700 900001" in nel and "01632 960002" in nel and "07700 900003" in nel


def test_a_child_with_no_emergency_contact_recorded_is_said_so(school: App, engine: Engine) -> None:
    """No contact recorded: the office cannot do the step; the email and the summary say so, and to tell
    the DSL (policy step V). Before, it read the same as for a child with contacts."""
    oli = _contacts_day(school, engine)["Oli"]
    assert "No emergency contact is recorded" in oli
    summary = summary_of(engine, TUE)
    row = next(line for line in section(summary, CONTACTS).splitlines() if line.startswith("Oli Pupil"))
    assert "none recorded" in row
    assert "none recorded" not in next(line for line in section(summary, CONTACTS).splitlines()
                                       if line.startswith("Nel Pupil"))


# -- check 5: the counts in the office's emails ---------------------------------------------------------
def test_the_action_email_counts_the_days_as_the_summary_and_the_step_do(school: App, engine: Engine) -> None:
    """Absent Monday, no register Tuesday: Wednesday's action email asks for the contacts because it is
    the second school day of absence; it said "School days absent 1"."""
    lay(school, pupil("1", "Pip"), *regs("1", {date(2025, 11, 7): ("/", "\\"), MON: ("N", "N"), TUE: ("-", "-")}))
    morning(school, TUE)
    morning(school, WED)
    subject, text = mails(engine, "office_action")[-1]
    assert "contact every emergency contact" in subject
    line = next(x for x in text.splitlines() if x.startswith("School days absent"))
    assert line.split()[3:] == ["2", "(1", "with", "no", "register)"]



def test_an_action_email_says_when_the_mis_data_is_not_current(tmp_path: Path, store_url: str, engine: Engine,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The SIMS export has not been read since yesterday: the summary carries the red "DATA NOT
    CURRENT" banner, and so must the action email the office works from (it said nothing: the
    office could call a family whose child had since come in, or miss one absent since)."""
    monkeypatch.setenv(KEY_ENV, KEY)
    (tmp_path / "drop").mkdir()
    cfg = write_config(tmp_path, store_url, f"""
[sources.sims]
adapter = "sims-xml"
drop_dir = "drop"

[replies]
mailbox = "none"
token_keys = [{{ id = "k1", secret = {{ env = "{KEY_ENV}" }} }}]
""")
    app = clocked_app(cfg, engine, datetime.combine(TUE, time(5, 30), UTC))
    lay(app, pupil("1", "Pip"), *regs("1", {date(2025, 11, 7): ("/", "\\"), MON: ("N", "N")}))
    morning(app, TUE)
    subject, text = mails(engine, "office_action")[-1]
    assert "first-day call" in subject
    assert "DATA NOT CURRENT: source 'sims'" in text
    assert "No MIS source is configured" not in text
