"""Review: the stages of an unexplained absence over time, the referral's due date and the LA's
10-day return, as the school lives them night by night.

Each test builds a small school in a real SQLite store, lays registers as the MIS exports them,
and runs the night as the timer does (``App.default_as_of``, the nightly's detect stage with its
catch-up, then the summary stage) or ``detect`` for a date, then reads what the DSL, the office or
the LA would see: the case's stage and due date, the digest, the LA return.
"""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from cme_batch import detect
from cme_batch.app import App
from cme_batch.model import FlagRecord, MarksRecord, PupilRecord, SourceBatch
from cme_batch.nightly import run_nightly
from cme_batch.store import ingest
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.helpers import TERMS_2026, clocked_app
from tests.replies_support import KEY, KEY_ENV

D = date.fromisoformat
STEPS = "Unexplained absence: pupils at each step"
LA_RETURN = "LA 10-day return: new entries"

# the base configuration's autumn 2025 (2 Sep - 24 Oct, 3 Nov - 19 Dec; closures 1 Sep and 3 Nov), then
# the rest of 2025/26 and the autumn of 2026/27
TERMS = TERMS_2026


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A real SQLite store (the school's default): these tests live many nights, once."""
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


@pytest.fixture
def school(tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> App:
    """The test school with a reply token key (confirmation requests and office action emails are
    queued); the clock follows the timer."""
    monkeypatch.setenv(KEY_ENV, KEY)
    cfg = write_config(tmp_path, store_url, TERMS + f"""
[replies]
mailbox = "none"
token_keys = [{{ id = "k1", secret = {{ env = "{KEY_ENV}" }} }}]
""")
    return clocked_app(cfg, engine, datetime(2025, 9, 2, 5, 30, tzinfo=UTC))


def pupil(key: str, forename: str) -> PupilRecord:
    return PupilRecord(key, upn=f"T{key:0>12}", legal_forename=forename, legal_surname="Pupil",
                       dob=date(2016, 5, 1), year_group="4", reg_group="4C")


def lay(app: App, *records: Any) -> None:
    ingest.apply_batch(app.engine(), app.school_id, SourceBatch("test", "test", records=list(records)),
                       app.clock_box["now"])  # type: ignore[attr-defined]


def regs(key: str, days: dict[date, str]) -> list[MarksRecord]:
    """``{day: "NN"}``: one character a session."""
    return [MarksRecord(key, d, (pair[0], pair[1])) for d, pair in days.items()]


def weekdays(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)
            if (first + timedelta(days=i)).weekday() < 5]


def morning(app: App, day: date) -> date:
    """The timer's run at 05:30 on the morning of ``day``: detect (catching up missed nights) and the
    summary stage, for its default evaluation date. Returns the evaluation date."""
    app.clock_box["now"] = datetime.combine(day, time(5, 30), UTC)  # type: ignore[attr-defined]
    as_of = app.default_as_of()
    report = run_nightly(app, as_of, only=("detect", "summary"))
    assert not report.failed, report.stages
    return as_of


def night(app: App, as_of: date) -> None:
    """``detect`` for ``as_of`` at 05:30 the next day (no summary)."""
    app.clock_box["now"] = datetime.combine(as_of + timedelta(days=1), time(5, 30), UTC)  # type: ignore[attr-defined]
    detect.run_detect(app, as_of)


def mails(engine: Engine, purpose: str) -> list[tuple[int, str, str, list[str]]]:
    """(outbox id, subject, plain text, recipients) of every message queued for ``purpose``, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(t.outbox.c.id, t.outbox.c.subject, t.outbox.c.mime, t.outbox.c.recipients)
                            .where(t.outbox.c.purpose == purpose).order_by(t.outbox.c.id)).all()
    out = []
    for i, subject, mime, recipients in rows:
        msg = email.message_from_bytes(bytes(mime), policy=email.policy.default)
        body = msg.get_body(("plain",))
        assert body is not None
        out.append((i, subject, body.get_content().replace("\r\n", "\n"), list(recipients)))
    return out


def section(text: str, title: str) -> str:
    head = f"{title}\n{'-' * len(title)}\n"
    return text.split(head, 1)[1].split("\n\n", 1)[0] if head in text else ""


def cases(app: App, kind: str = "unexplained_absence") -> list[dict[str, Any]]:
    with app.engine().connect() as conn:
        return [dict(r) for r in conn.execute(select(t.cases).where(t.cases.c.kind == kind)
                                              .order_by(t.cases.c.id)).mappings()]


def returns(app: App) -> list[tuple[date, date, date]]:
    """(episode start, reached on, listed on) of every LA-return row."""
    with app.engine().connect() as conn:
        return [(a, b, c) for a, b, c in conn.execute(select(
            t.la_returns.c.episode_start, t.la_returns.c.reached_on, t.la_returns.c.listed_on)
            .order_by(t.la_returns.c.id)).all()]


# -- past the due date without the DSL's confirmation: told every morning, in red -------------------------
def test_a_referral_overdue_at_half_term_is_in_red_in_the_dsls_digest_every_morning(school: App, engine: Engine) -> None:
    """A child absent without explanation from Monday 13 October: the 10th school day, the referral's
    due date, is Friday 24 October, the last day before half term (27-31 October; Monday 3 November is
    an INSET day). The DSL has not confirmed. DOMAIN.md 5: "Past the due date without it, the DSL and
    deputy DSL are told every morning, in red."

    The timer runs every weekday morning; in the holiday each run evaluates the last school day of
    term (24 October), and the summary stage queues the digest once per evaluation date: the DSL and
    the deputy hear of the overdue referral on Monday 27 October and then **not on the next five
    mornings** (28 October to 4 November), while the LA's CME team works through the holiday."""
    absent = weekdays(D("2025-10-13"), D("2025-10-24"))
    lay(school, pupil("1", "Ada"), pupil("2", "Ben"),
        *regs("1", {D("2025-10-10"): "/\\", **{d: "NN" for d in absent}, D("2025-11-04"): "NN"}),
        *regs("2", {d: "/\\" for d in [D("2025-10-10"), *absent, D("2025-11-04")]}))
    told: dict[date, int] = {}
    for day in weekdays(D("2025-10-27"), D("2025-11-05")):
        before = {i for i, *_ in mails(engine, "digest")}
        morning(school, day)
        told[day] = sum(1 for i, _s, text, to in mails(engine, "digest") if i not in before
                        and "past the due date without your confirmation" in text
                        and {"dsl@school.example", "deputy@school.example"} <= set(to))
    [case] = cases(school)
    assert (case["stage"], case["referral_due"], case["confirmed_at"]) == ("referral_due", D("2025-10-24"), None)
    assert told == {day: 1 for day in told}, told


def test_no_step_is_said_not_asked_when_every_morning_ran(school: App, engine: Engine) -> None:
    """The other side of the catch-up test below: a looked-after child's case opens at the DSL's
    review on day 1 (DOMAIN.md 5), and a child's absence goes through every step with a digest each
    morning: no digest says a step was not asked."""
    lay(school, pupil("1", "Ada"), pupil("2", "Ben"), pupil("3", "Cal"), FlagRecord("3", "looked_after"),
        *regs("1", {D("2025-11-14"): "/\\", **{d: "NN" for d in weekdays(D("2025-11-17"), D("2025-11-28"))}}),
        *regs("3", {D("2025-11-14"): "/\\", **{d: "NN" for d in weekdays(D("2025-11-17"), D("2025-11-28"))}}),
        *regs("2", {d: "/\\" for d in weekdays(D("2025-11-14"), D("2025-11-28"))}))
    for day in weekdays(D("2025-11-17"), D("2025-12-01")):
        morning(school, day)
    texts = [text for _i, _s, text, _to in mails(engine, "digest")]
    assert len(texts) == 11 and not any("NOT ASKED" in text for text in texts)
    assert {c["stage"] for c in cases(school)} == {"referral_due"}



# -- nights that did not run -------------------------------------------------------------------------
def _dsl_steps_asked(engine: Engine, name: str) -> tuple[bool, bool]:
    """Whether any digest so far asked the DSL, beside the child, for the DSL review (policy VI: the CME
    criteria, siblings, other agencies) and for the home visit (policy VII: within 5 school days, social
    media searches), or said the step was not asked in time."""
    rows = [line for _i, _s, text, _to in mails(engine, "digest")
            for line in section(text, STEPS).splitlines() if name in line]
    review = any("CME criteria" in r or "DSL review" in r and "not" in r for r in rows)
    visit = any("home visit within" in r or "social media" in r for r in rows)
    return review, visit


def test_the_dsl_is_asked_for_the_review_and_home_visit_every_morning_would_have_asked(
        school: App, engine: Engine) -> None:
    """The control: mornings as usual. A child absent from Monday 17 November; the digest of day 2 gives
    the DSL's review as the next step, those of days 3 and 4 the home visit within 5 school days."""
    lay(school, pupil("1", "Ada"), pupil("2", "Ben"),
        *regs("1", {D("2025-11-14"): "/\\", **{d: "NN" for d in weekdays(D("2025-11-17"), D("2025-11-24"))}}),
        *regs("2", {d: "/\\" for d in weekdays(D("2025-11-14"), D("2025-11-24"))}))
    for day in weekdays(D("2025-11-17"), D("2025-11-25")):
        morning(school, day)
    assert _dsl_steps_asked(engine, "Ada Pupil") == (True, True)
    [case] = cases(school)
    assert (case["stage"], case["school_days"]) == ("home_visit", 6)


def test_after_nights_missed_the_dsl_is_still_asked_for_the_review_and_the_home_visit(
        school: App, engine: Engine) -> None:
    """The same child, the server off from the morning of Tuesday 18 November to Monday 24 November
    (a failed disk, a power cut over the weekend). Tuesday 25 November's run catches the nights up
    (each missed school day is evaluated) and the case is at "home visit", day 6.

    The office is asked, once, for the emergency contacts it missed (the tenth session's fix). The
    DSL's steps of the policy (DOMAIN.md 5: day 3 ``dsl_review`` "check against the CME criteria;
    gather details of siblings, other agencies"; day 5 ``home_visit`` "home visit within 5 school
    days; social media searches") were never in any morning email: the catch-up digest says only
    "4 home visit, day 6 | DSL: referral drafted; confirm it by reply", exactly as a normal day-6
    digest does, where the review and the visit were asked on days 2 to 4. Nothing says they were
    skipped: the DSL reads "step reached: home visit" and is never asked to make it."""
    lay(school, pupil("1", "Ada"), pupil("2", "Ben"),
        *regs("1", {D("2025-11-14"): "/\\", **{d: "NN" for d in weekdays(D("2025-11-17"), D("2025-11-24"))}}),
        *regs("2", {d: "/\\" for d in weekdays(D("2025-11-14"), D("2025-11-24"))}))
    assert morning(school, D("2025-11-17")) == D("2025-11-14")
    assert morning(school, D("2025-11-25")) == D("2025-11-24")  # the first morning back
    [case] = cases(school)
    assert (case["stage"], case["school_days"]) == ("home_visit", 6)
    with engine.connect() as conn:
        evaluated = conn.execute(select(t.detect_runs.c.as_of).order_by(t.detect_runs.c.id)).scalars().all()
    assert evaluated == [D("2025-11-14"), *weekdays(D("2025-11-17"), D("2025-11-24"))]  # the catch-up ran
    assert _dsl_steps_asked(engine, "Ada Pupil") == (True, True)


# -- the LA 10-day return ----------------------------------------------------------------------------
def test_a_listed_episode_whose_first_day_is_later_authorised_is_not_listed_again(school: App, engine: Engine) -> None:
    """A child absent without permission (G, N) from Tuesday 4 November: on the 10th school day, Monday
    17 November, she is listed on the LA's 10-day return, "unauthorised since 4 November". On the 18th
    the office enters a late explanation for the first morning and afternoon (a medical appointment,
    M): the marks now run unauthorised from 5 November, with no break since, and she is still away.

    DOMAIN.md 5: "pupils whose unauthorised streak reaches 10 school days are listed for the LA, once
    per episode". The absence is the one already listed; a correction that moves its first day later
    is the same episode (as a first day made a missing register is, the seventh session's fix). Before:
    listed **again**, "unauthorised since 5 November", the office sending the LA a second entry."""
    days = weekdays(D("2025-11-04"), D("2025-11-19"))  # 3 November is an INSET day
    lay(school, pupil("1", "Ada"), pupil("2", "Ben"),
        *regs("1", {D("2025-10-24"): "/\\", **{d: ("GG" if i % 2 else "NN") for i, d in enumerate(days[:10])}}),
        *regs("2", {d: "/\\" for d in [D("2025-10-24"), *days]}))
    night(school, days[9])
    assert returns(school) == [(days[0], days[9], days[9])]
    lay(school, *regs("1", {days[0]: "MM", days[10]: "GG", days[11]: "GG"}))
    night(school, days[10])
    night(school, days[11])
    assert returns(school) == [(days[0], days[9], days[9])]


def test_a_listed_episode_in_which_the_child_turns_out_to_have_been_seen_is_listed_again_when_the_next_reaches_ten(
        school: App, engine: Engine) -> None:
    """The other side of the test above: the fifth day of a listed absence is corrected to present
    (she was in school that day) and she is away from the next day on. She was seen: the absence
    after it is a new episode, listed when it reaches 10 school days, with its own start."""
    days = weekdays(D("2025-11-04"), D("2025-11-28"))
    lay(school, pupil("1", "Ada"), pupil("2", "Ben"),
        *regs("1", {D("2025-10-24"): "/\\", **{d: "NN" for d in days[:10]}}),
        *regs("2", {d: "/\\" for d in [D("2025-10-24"), *days]}))
    night(school, days[9])
    assert returns(school) == [(days[0], days[9], days[9])]
    lay(school, *regs("1", {days[4]: "/\\", **{d: "NN" for d in days[10:15]}}))
    for d in days[10:15]:
        night(school, d)
    assert returns(school) == [(days[0], days[9], days[9]), (days[5], days[14], days[14])]


def test_an_episode_broken_only_by_missing_registers_is_listed_once_and_across_the_summer(
        school: App, engine: Engine) -> None:
    """An unauthorised absence (G) from Monday 6 July 2026, with two days of no register in it (the
    class's registers not taken on 9 and 10 July), on through the summer holiday into September:
    the missing registers neither end it nor start a new one, and it is listed once, on its 10th
    day of unauthorised marks (Friday 4 September, the autumn term beginning on Thursday the 3rd), with its
    first day in July. Nights over the summer and into the autumn do not list it again."""
    july = weekdays(D("2026-07-06"), D("2026-07-17"))
    sept = weekdays(D("2026-09-03"), D("2026-09-10"))
    absent = {d: ("--" if d in (D("2026-07-09"), D("2026-07-10")) else "GG") for d in july}
    lay(school, pupil("1", "Ada"), pupil("2", "Ben"),
        *regs("1", {D("2026-07-03"): "/\\", **absent, **{d: "GG" for d in sept}}),
        *regs("2", {d: "/\\" for d in [D("2026-07-03"), *july, *sept]}))
    for as_of in [*july, *sept]:
        night(school, as_of)
        listed = returns(school)
        if as_of < D("2026-09-04"):
            assert listed == [], as_of
    assert listed == [(D("2026-07-06"), D("2026-09-04"), D("2026-09-04"))]
    assert cases(school) == []  # G is explained (holiday not granted): no CME case, only the LA return


# -- the referral's due date ---------------------------------------------------------------------------
def test_the_digest_gives_one_due_date_when_the_registers_show_a_closure_ahead(school: App, engine: Engine) -> None:
    """A child absent without explanation from Tuesday 4 November (8 school days on Thursday 13th). The
    school is closed on Friday 14 November (a boiler failure) and the MIS pre-fills ``#`` for everyone;
    ``calendar.closures`` is not changed. DOMAIN.md 3: "A session where every pupil on roll has ``#``
    is a closure". The case's referral due date is the 10th school day, Tuesday 18 November, and the
    digest's "Awaiting your confirmation" says so; the same digest's "pupils at each step" gives the
    referral as due **Monday 17 November**, a school day early: the morning emails project the next
    step by the configuration alone (``queue.calendar_for``), not by the calendar detect used."""
    absent = weekdays(D("2025-11-04"), D("2025-11-13"))
    closed = D("2025-11-14")
    lay(school, pupil("1", "Ada"), pupil("2", "Ben"),
        *regs("1", {D("2025-10-24"): "/\\", **{d: "NN" for d in absent}, closed: "##"}),
        *regs("2", {**{d: "/\\" for d in [D("2025-10-24"), *absent]}, closed: "##"}))
    assert morning(school, D("2025-11-14")) == D("2025-11-13")
    [case] = cases(school)
    assert (case["stage"], case["school_days"], case["referral_due"]) == ("referral_prepare", 8, D("2025-11-18"))
    [(_i, _s, digest, _to)] = mails(engine, "digest")
    [row] = [line for line in section(digest, STEPS).splitlines() if "Ada Pupil" in line]
    assert "Tue 18 Nov 2025" in row and "Mon 17 Nov 2025" not in row, row


def test_the_due_date_skips_christmas_and_follows_an_inset_day_added_after_the_case_opened(
        tmp_path: Path, store_url: str, engine: Engine, school: App) -> None:
    """Absent without explanation from Thursday 18 December 2025, two days before Christmas: the 10th
    school day is Wednesday 14 January (term from 5 January). In the holiday the school adds an INSET
    day on Tuesday 6 January to ``calendar.closures``: the next night's due date is Thursday 15 January."""
    lay(school, pupil("1", "Ada"), pupil("2", "Ben"),
        *regs("1", {D("2025-12-17"): "/\\", D("2025-12-18"): "NN", D("2025-12-19"): "NN", D("2026-01-05"): "NN"}),
        *regs("2", {d: "/\\" for d in (D("2025-12-17"), D("2025-12-18"), D("2025-12-19"), D("2026-01-05"))}))
    assert morning(school, D("2025-12-22")) == D("2025-12-19")
    [case] = cases(school)
    assert (case["stage"], case["school_days"], case["referral_due"]) == ("contact_all", 2, D("2026-01-14"))
    cfg = Path(str(school.config_path))
    text = cfg.read_text(encoding="utf-8").replace('closures = ["2025-09-01", "2025-11-03"]',
                                                   'closures = ["2025-09-01", "2025-11-03", "2026-01-06"]')
    cfg.write_text(text, encoding="utf-8")
    later = clocked_app(cfg, engine, datetime(2026, 1, 6, 5, 30, tzinfo=UTC))
    assert morning(later, D("2026-01-06")) == D("2026-01-05")
    [case] = cases(later)
    assert (case["stage"], case["school_days"], case["referral_due"]) == ("dsl_review", 3, D("2026-01-15"))


def test_an_absence_at_the_end_of_the_summer_term_is_due_in_september(school: App, engine: Engine) -> None:
    """Absent without explanation from Monday 13 July 2026 (term ends Friday 17th; the autumn term begins
    Thursday 3 September): 5 school days in July, so the 10th is Wednesday 9 September. Every summer
    morning evaluates 17 July and the date stays; in September it is reached and the case is at
    "referral due"; the LA return lists the absence once, begun in July."""
    july = weekdays(D("2026-07-13"), D("2026-07-17"))
    sept = weekdays(D("2026-09-03"), D("2026-09-09"))
    lay(school, pupil("1", "Ada"), pupil("2", "Ben"),
        *regs("1", {D("2026-07-10"): "/\\", **{d: "NN" for d in [*july, *sept]}}),
        *regs("2", {d: "/\\" for d in [D("2026-07-10"), *july, *sept]}))
    for day in [D("2026-07-17"), D("2026-07-20"), D("2026-08-03"), D("2026-08-31"), D("2026-09-03")]:
        assert morning(school, day) == D("2026-07-16" if day == D("2026-07-17") else "2026-07-17")
        [case] = cases(school)
        assert case["referral_due"] == D("2026-09-09"), day
    for day in [*sept[1:], D("2026-09-10")]:
        morning(school, day)
    [case] = cases(school)
    assert (case["status"], case["stage"], case["school_days"], case["referral_due"]) == (
        "open", "referral_due", 10, D("2026-09-09"))
    assert returns(school) == [(D("2026-07-13"), D("2026-09-09"), D("2026-09-09"))]


def test_a_catch_up_morning_past_day_8_asks_the_dsl_and_the_deputy_to_confirm_the_referral(
        school: App, engine: Engine) -> None:
    """The server off from the morning of Tuesday 18 November to Thursday 27 November; the child absent
    from Monday 17th. Friday 28th's run evaluates the missed days in turn and the case is at "referral
    prepared" (day 9, due Friday 28th): the DSL and the deputy each get a request to confirm it."""
    absent = weekdays(D("2025-11-17"), D("2025-11-27"))
    lay(school, pupil("1", "Ada"), pupil("2", "Ben"),
        *regs("1", {D("2025-11-14"): "/\\", **{d: "NN" for d in absent}}),
        *regs("2", {d: "/\\" for d in [D("2025-11-14"), *absent]}))
    morning(school, D("2025-11-17"))
    assert morning(school, D("2025-11-28")) == D("2025-11-27")
    [case] = cases(school)
    assert (case["stage"], case["school_days"], case["referral_due"]) == ("referral_prepare", 9, D("2025-11-28"))
    asked = sorted(to for _i, subject, _t, [to] in mails(engine, "confirm_request") if case["ref"] in subject)
    assert asked == ["deputy@school.example", "dsl@school.example"]
