"""Review (fifteenth session): a place not taken up and a leaver whose destination is unknown, end to end.

Each test lives a few nights of a small school on a real SQLite store: the MIS's files are written
as its export writes them (SIMS CommandReporter reports through ``adapters.sims.writer``, a CTF through
``adapters.ctf.writer``) and imported through the importer; the night runs as the timer starts it
(``tests.integration.test_holiday_leavers.School``: its default evaluation date, ``detect`` and
``summary``). What is checked is what the school and the LA would see: the cases, the DSL's digest
and confirmation requests, the office summary, and the referral document (the bundle's JSON).

The criteria (DOMAIN.md 5): ``place_not_taken_up`` opens when an admission's agreed first day has
passed and the child has not been seen since; ``destination_unknown`` when a pupil has left and no
destination school is recorded, or the leaving reason says the destination is unknown. Both go to
"referral prepared" at once (the policy, 4.1: "at the earliest opportunity").
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from adapters.ctf.writer import write_ctf
from cme_batch.errors import CmeError
from cme_batch.importer import import_file
from cme_batch.model import EnrolmentRecord, MarksRecord, PupilRecord, SchoolInfo
from cme_batch.referral.content import build_document
from cme_batch.store import tables as t
from tests.helpers import weekdays
from tests.integration.test_holiday_leavers import ADMITTED, School, _present
from tests.replies_support import KEY, KEY_ENV

D = date.fromisoformat
OURS = SchoolInfo("916", "2999", "The John Moore Primary School")
PLACES = "Places not taken up"
LEFT_UNKNOWN = "Left with destination unknown"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A real SQLite store (the school's default; these tests do not need PostgreSQL)."""
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


@pytest.fixture
def school(engine: Engine, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> School:
    monkeypatch.setenv(KEY_ENV, KEY)
    return School(engine, store_url, tmp_path)


ROLL = [EnrolmentRecord(k, None, ADMITTED) for k in "12"]
JAN_WEEK1 = weekdays(D("2026-01-05"), D("2026-01-09"))


def ctf_export(school: School, on: date, enrolments: Iterable[EnrolmentRecord], marks: Iterable[MarksRecord]) -> Any:
    """The school's own CTF of ``on`` at 19:00 (after the registers close), imported at once."""
    school.app.clock_box["now"] = datetime(on.year, on.month, on.day, 19, tzinfo=UTC)  # type: ignore[attr-defined]
    school.n += 1
    path = school.folder.parent / "ctf" / f"{OURS.la_number}{OURS.establishment_number}_CTF_{school.n:03d}.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    pupils = [PupilRecord(p.pupil_key, upn=p.pupil_key, legal_surname=p.legal_surname, legal_forename=p.legal_forename,
                          dob=p.dob, year_group=p.year_group, reg_group=p.reg_group) for p in school.pupils]
    write_ctf(path, [*pupils, *enrolments, *marks], OURS)
    return import_file(school.app, path, None)


def mails(engine: Engine, purpose: str) -> list[tuple[str, list[str], str]]:
    """(subject, recipients, plain text) of every message of one purpose queued, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(select(t.outbox.c.subject, t.outbox.c.recipients, t.outbox.c.mime).where(
            t.outbox.c.purpose == purpose).order_by(t.outbox.c.id)).all()
    out = []
    for subject, to, mime in rows:
        msg = email.message_from_bytes(bytes(mime), policy=email.policy.default)
        text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        out.append((subject, [a.lower() for a in to], text.replace("\r\n", "\n")))
    return out


def section(text: str, title: str) -> str:
    """One section of a morning email's text: from its title to the next blank line after its table."""
    start = text.index(title + "\n")
    rest = text[start + len(title) + 1:]
    end = rest.find("\n\n")
    return rest if end < 0 else rest[:end]


def referral(school: School, case_id: int) -> dict[str, Any]:
    """The referral document the bundle would carry for the case, built now."""
    with school.app.engine().connect() as conn:
        return build_document(conn, case_id, school.app.config, school.app.now())


def all_cases(school: School) -> list[tuple[str, str, str, date | None, str | None]]:
    """(pupil key, kind, status, episode start, closed reason) of every case, oldest first."""
    return [(c["pupil_key"], c["kind"], c["status"], c["episode_start"], c["closed_reason"])
            for kind in ("place_not_taken_up", "destination_unknown", "unexplained_absence")
            for c in school.cases(kind)]


# -- place not taken up, as each adapter gives an admission ------------------------------------------
@pytest.mark.parametrize(("adapter", "marked"), [("ctf", "NN"), ("ctf", None), ("sims", "NN")])
def test_an_admission_whose_first_day_passes_without_the_child_is_a_place_not_taken_up(
        school: School, adapter: str, marked: str | None) -> None:
    """A child joins mid-year. On Friday 9 January 2026 the MIS records the admission with the first
    day Monday 12 January (a CTF's ``SchoolHistory/EntryDate``; SIMS's ``Admission Date``, with no
    Agreed Start Date, as for a transfer put straight on roll). The child never comes: the register
    marks N, or (CTF) the MIS gives no mark before the child's first register.

    What the DSL would notice: **no "place not taken up" case**. With N marks the child is only an
    ordinary unexplained absence (first-day call, DSL review on day 3, referral due on the 10th school
    day, 23 January); with no marks there is **no case at all**, only a count in a warning ("no
    register mark ... for 1 pupil(s)"). A school whose MIS gives admissions as a CTF (no agreed
    start date in the format) never gets a "place not taken up" case for any child.

    Rule: DOMAIN.md 5, ``place_not_taken_up`` (an admission's agreed first day has passed and the
    child has not been seen since; it goes to ``referral_prepare`` at once, and takes precedence over
    the unexplained streak); policy 4.1 ("If a pupil fails to attend on the agreed or notified date,
    ... notifying the local authority at the earliest opportunity").

    Cause: ``criteria.place_not_taken_up`` looks only at ``PupilFacts.admission_date``, which
    ``detect.Evaluation.facts`` fills from the ``admission_date`` column (SIMS's Agreed Start Date)
    alone; ``adapters/ctf/parser.py`` (``_Reader.history``) stores a CTF's EntryDate as ``entry_date``
    only, and so does the SIMS reader for Admission Date (``_Reader.enrolment``). The Arbor adapter,
    by contrast, sets both from ``entryDate`` (``adapters/arbor/mapping.enrolment_records``).
    """
    first_day = D("2026-01-12")
    school.pupils = school.pupils[:3]
    joining = EnrolmentRecord("3", None, first_day)
    export = ctf_export if adapter == "ctf" else School.export
    export(school, JAN_WEEK1[-1], [*ROLL, joining], _present("12", JAN_WEEK1))
    school.morning(D("2026-01-09"))
    marks = list(_present("12", [*JAN_WEEK1, first_day]))
    if marked:
        marks.append(MarksRecord("3", first_day, tuple(marked)))
    export(school, first_day, [*ROLL, joining], marks)
    as_of, _ = school.morning(D("2026-01-13"))
    assert as_of == first_day

    # the one case is the place not taken up (DOMAIN.md 5), the streak or not
    assert all_cases(school) == [("3", "place_not_taken_up", "open", first_day, None)]
    [case] = school.cases("place_not_taken_up")
    assert (case["stage"], case["referral_due"]) == ("referral_prepare", first_day)
    [(_, _, digest)] = mails(school.app.engine(), "digest")[-1:]
    assert "Forename3 Surname3" in section(digest, PLACES)


# -- destination unknown ----------------------------------------------------------------------------
@pytest.mark.parametrize("destination", ["Another school", "Other"])
def test_a_leaver_whose_destination_names_no_school_is_destination_unknown(school: School, destination: str) -> None:
    """Child 3 leaves on Friday 16 January 2026. The office picks the SIMS destination "Other" (or types
    "Another school"): the family said they were moving and would find a school. No school is named.

    What the DSL and the LA would notice: **nothing at all**. No "destination unknown" case, nothing
    in the digest's "Left with destination unknown", no confirmation request, no referral: a child
    who left for nowhere the LA can check is treated as safely at a new school.

    Rule: DOMAIN.md 5, ``destination_unknown`` (a pupil left and **no destination school is
    recorded**); the policy, 2 ("left school suddenly and the destination is unknown"). "Other" and
    "Another school" record no school.

    Cause: ``criteria.destination_recorded`` counts any text as a destination unless it is one of
    ``_PLACEHOLDER_DESTINATIONS``, placeholder-shaped, or says "unknown"/"not known"...; a text naming
    no school ("Other", "Another school", "New school") is taken as one. (The SIMS reader's
    ``UNKNOWN_DESTINATION`` list stores them as given.)
    """
    school.export(JAN_WEEK1[-1], [*ROLL, EnrolmentRecord("3", None, ADMITTED)], _present("123", JAN_WEEK1))
    school.morning(D("2026-01-12"))
    week2 = weekdays(D("2026-01-12"), D("2026-01-16"))
    left = EnrolmentRecord("3", None, ADMITTED, leaving_date=D("2026-01-16"), leaving_reason="Moved house",
                           destination=destination)
    school.export(week2[-1], [*ROLL, left], _present("123", week2))
    as_of, _ = school.morning(D("2026-01-19"))
    assert as_of == D("2026-01-16")

    assert [(c["pupil_key"], c["status"], c["stage"], c["episode_start"]) for c in school.cases()] == [
        ("3", "open", "referral_prepare", D("2026-01-16"))]
    assert len(school.requests_to_dsl(school.cases()[0]["ref"])) == 1
    [(_, _, digest)] = mails(school.app.engine(), "digest")[-1:]
    assert "Forename3 Surname3" in section(digest, LEFT_UNKNOWN)


def test_a_ctf_leaving_with_no_leaving_date_is_not_dropped_without_a_word(school: School) -> None:
    """The school's own CTF gives child 3's school history with a LeavingReason "Moved away, whereabouts
    unknown" but no LeavingDate (the office recorded why the child left and not yet when).

    What the office and DSL would notice: **nothing**. The file is imported "ok" with no warning about
    it, the child is taken as still on roll, no "destination unknown" case opens, and once the MIS
    stops registering the child the only trace is an anonymous count of pupils with no register mark.
    The SIMS reader refuses the same thing in its leavers report ("Leaving Date is missing while
    Reason for Leaving is there: a leaving cannot be stored without its date, and the pupil would look
    still on roll"); the CTF reader drops it silently.

    Rule: DOMAIN.md 5, ``destination_unknown`` (a leaving whose reason says the destination is
    unknown); README "Sources of MIS data" (a file with a bad record is refused whole, each problem
    named by file, record and field).

    Cause: ``adapters/ctf/parser.py`` ``_Reader.history`` builds the enrolment with
    ``leaving_date=None`` and keeps the ``leaving_reason``, with no problem reported or warning given
    (compare ``adapters/sims/parser.py`` ``_Reader.enrolment``, "if 'leaving_date' not in rec").
    """
    school.pupils = school.pupils[:3]
    roll = [*ROLL, EnrolmentRecord("3", None, ADMITTED)]
    ctf_export(school, JAN_WEEK1[-1], roll, _present("123", JAN_WEEK1))
    school.morning(D("2026-01-12"))
    told = EnrolmentRecord("3", None, ADMITTED, leaving_reason="Moved away, whereabouts unknown")
    week2 = weekdays(D("2026-01-12"), D("2026-01-16"))
    try:
        result = ctf_export(school, week2[-1], [*ROLL, told], _present("12", [*JAN_WEEK1, *week2]))
    except CmeError as exc:  # refused: the office is told which record and field
        assert "LeavingDate" in str(exc)
        return
    warned = [w for w in result.warnings if "LeavingDate" in w.message or "leaving" in w.code]
    school.morning(D("2026-01-19"))
    opened = [c["pupil_key"] for c in school.cases() if c["status"] == "open"]
    assert warned or opened == ["3"], (result.status, result.warnings, all_cases(school))


def _left_then_named(school: School) -> date:
    """Child 3 leaves on Friday 16 January 2026 with no destination ("destination unknown" opens on
    Monday 19th); on the 19th the office records St Mary's and the case closes that night. Returns
    the leaving date."""
    leaving = D("2026-01-16")
    school.export(JAN_WEEK1[-1], [*ROLL, EnrolmentRecord("3", None, ADMITTED)], _present("123", JAN_WEEK1))
    school.morning(D("2026-01-12"))
    week2 = weekdays(D("2026-01-12"), D("2026-01-16"))
    school.export(week2[-1], [*ROLL, EnrolmentRecord("3", None, ADMITTED, leaving_date=leaving,
                                                     leaving_reason="Moved away")], _present("123", week2))
    school.morning(D("2026-01-19"))
    [case] = school.cases()
    named = EnrolmentRecord("3", None, ADMITTED, leaving_date=leaving, leaving_reason="Moved away",
                            destination="St Mary's CE Primary")
    school.export(D("2026-01-19"), [*ROLL, named], _present("12", [D("2026-01-19")]))
    school.morning(D("2026-01-20"))
    assert [(c["ref"], c["status"], c["closed_reason"]) for c in school.cases()] == [
        (case["ref"], "closed", "destination_known")]
    return leaving


def _raised_again(school: School, leaving: date) -> None:
    """What the DSL must see on the morning of Wednesday 21 January: the leaver's case open again."""
    as_of, _ = school.morning(D("2026-01-21"))
    assert as_of == D("2026-01-20")
    opened = [c for c in school.cases() if c["status"] == "open"]
    assert [(c["pupil_key"], c["episode_start"], c["stage"]) for c in opened] == [("3", leaving, "referral_prepare")], \
        all_cases(school)
    [(_, _, digest)] = mails(school.app.engine(), "digest")[-1:]
    assert "Forename3 Surname3" in section(digest, LEFT_UNKNOWN)


def test_a_destination_cleared_in_the_mis_raises_the_case_again(school: School) -> None:
    """After ``_left_then_named``, St Mary's says on Tuesday 20 January that the child never arrived,
    and the office removes the destination in SIMS. That night's leavers report is then **byte for
    byte the report of Friday 16 January** (the same leaver, the same date and reason, no destination).

    What the DSL would notice: **nothing**. The import says "skipped" (already imported), the store
    keeps St Mary's, and the case stays closed as "destination known": a child whose destination has
    proved false is never raised again, nor is the LA told. The same happens to any export that goes
    back to an earlier night's (a leaving recorded, undone, then recorded again as it was; a withdrawn
    application made live again).

    Rule: DOMAIN.md 5, ``destination_unknown`` (no destination school recorded); README "Sources of
    MIS data": "Re-importing a file changes nothing; a newer export updates what changed".

    Cause: ``cme_batch/store/ingest.py`` ``apply_batch`` skips a batch when ``already_imported`` finds
    the checksum in *any* earlier successful ingest run of the source, even when later runs have
    changed the store since; a newer export equal to an older one is not "a re-import". Suggested:
    skip only when the checksum is that of the latest successful import of the same report (file
    name group / origin), or compare with what is stored.
    """
    leaving = _left_then_named(school)
    cleared = EnrolmentRecord("3", None, ADMITTED, leaving_date=leaving, leaving_reason="Moved away")
    school.export(D("2026-01-20"), [*ROLL, cleared], _present("12", [D("2026-01-20")]))
    _raised_again(school, leaving)


def test_a_destination_that_proves_false_by_the_leaving_reason_raises_the_case_again(school: School) -> None:
    """After ``_left_then_named``, St Mary's says on Tuesday 20 January that the child never arrived.
    The office leaves St Mary's as the destination (the school the child was expected at) and edits
    the reason for leaving to "Did not arrive at St Mary's: whereabouts unknown".

    What the DSL would notice: **nothing**: the case stays closed as "destination known", no
    confirmation request, the LA never told that the child is missing.

    Rule: DOMAIN.md 5, ``destination_unknown`` opens when "the leaving reason says the destination
    is unknown". The README's exception (a destination recorded after the case opened closes it
    even while the leaving reason *still* says unknown: "schools seldom edit it") is about a reason
    left as it was; here the reason was edited after the destination was recorded.

    Cause: ``criteria.destination_still_unknown`` returns False for any case of this leaving once the
    recorded destination differs from the one the case opened with, whatever the leaving reason now
    says; it never compares the leaving reason with the one the case opened (or closed) with (the
    ``opened`` event keeps it, as ``_opened_destinations`` reads the destination).
    """
    leaving = _left_then_named(school)
    false = EnrolmentRecord("3", None, ADMITTED, leaving_date=leaving,
                            leaving_reason="Did not arrive at St Mary's: whereabouts unknown",
                            destination="St Mary's CE Primary")
    school.export(D("2026-01-20"), [*ROLL, false], _present("12", [D("2026-01-20")]))
    _raised_again(school, leaving)


# -- what the DSL, the office and the LA are told ----------------------------------------------------
def test_a_backdated_admission_is_raised_from_its_agreed_first_day_and_closed_when_the_child_arrives(
        school: School) -> None:
    """SIMS records child 3's place on Wednesday 14 January 2026, with the agreed start date Monday
    12 January, already past; the child has not come. The night of the 14th opens a place not taken
    up from the agreed first day (three school days missed, due at once), the office is asked for
    the emergency contacts and the DSL to confirm. The child arrives on Thursday 15 January: the case
    closes as attended, the digest says so, and nothing is opened or asked again."""
    school.pupils = school.pupils[:3]
    agreed = D("2026-01-12")
    place = EnrolmentRecord("3", agreed)
    school.export(JAN_WEEK1[-1], ROLL, _present("12", JAN_WEEK1))
    school.morning(D("2026-01-12"))
    week2 = weekdays(D("2026-01-12"), D("2026-01-14"))
    for day in week2[:-1]:  # the nights before the place was recorded: nothing to see
        school.export(day, ROLL, _present("12", [day]))
        school.morning(day + timedelta(days=1))
    assert all_cases(school) == []
    school.export(week2[-1], [*ROLL, place], _present("12", week2))
    as_of, _ = school.morning(D("2026-01-15"))
    assert as_of == D("2026-01-14")
    [case] = school.cases("place_not_taken_up")
    assert (case["status"], case["stage"], case["episode_start"], case["school_days"], case["referral_due"]) == (
        "open", "referral_prepare", agreed, 3, D("2026-01-14"))
    [(_, _, summary)] = mails(school.app.engine(), "summary")[-1:]
    row = next(line for line in section(summary, PLACES).splitlines() if "Forename3" in line)
    assert "Mon 12 Jan 2026" in row and " 3 " in row and "Wed 14 Jan 2026" in row
    assert "Forename3 Surname3" in section(summary, "Emergency contacts to try today")
    [ask] = school.requests_to_dsl(case["ref"])
    text = ask.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "place not taken up" in text and "Wed 14 Jan 2026" in text
    doc = referral(school, case["id"])
    assert (doc["case"]["criterion"], doc["case"]["episode_start"], doc["case"]["school_days_missed"],
            doc["child"]["admission_date"], doc["child"]["leaving_date"]) == (
        "place_not_taken_up", "2026-01-12", 3, "2026-01-12", None)

    school.export(D("2026-01-15"), [*ROLL, place], _present("123", [D("2026-01-15")]))
    as_of, _ = school.morning(D("2026-01-16"))
    assert all_cases(school) == [("3", "place_not_taken_up", "closed", agreed, "attended")]
    [(_, _, digest)] = mails(school.app.engine(), "digest")[-1:]
    closed = section(digest, "Closed since the last summary")
    assert case["ref"] in closed and "attended" in closed
    assert "Forename3" not in section(digest, PLACES) and "Forename3" not in section(digest, "Awaiting your confirmation")
    assert len(school.requests_to_dsl(case["ref"])) == 1  # never asked again


def test_a_child_readmitted_after_leaving_to_an_unknown_destination_who_never_comes_back(school: School) -> None:
    """Child 3 left on Friday 9 January 2026 with no destination ("destination unknown" opens). The
    family comes back: SIMS records a new place, agreed start Monday 19 January (the old admission
    and its leaving still in the leavers report). The child does not come.

    Until the 19th the "destination unknown" case stays open (the child is not on roll anywhere the
    school knows of); from the 19th the new place not taken up is the case, the leaving's case closed;
    the referral for it states the new admission, not the old leaving."""
    school.export(JAN_WEEK1[-1], [*ROLL, EnrolmentRecord("3", None, ADMITTED, leaving_date=JAN_WEEK1[-1])],
                  _present("123", JAN_WEEK1))
    school.morning(D("2026-01-12"))
    [du] = school.cases()
    assert (du["status"], du["episode_start"]) == ("open", JAN_WEEK1[-1])
    back = EnrolmentRecord("3", D("2026-01-19"))
    old = EnrolmentRecord("3", None, ADMITTED, leaving_date=JAN_WEEK1[-1])
    for day in weekdays(D("2026-01-12"), D("2026-01-19")):
        school.export(day, [*ROLL, old, back], _present("12", [day]))
        school.morning(day + timedelta(days=3 if day.weekday() == 4 else 1))
        if day < D("2026-01-19"):
            assert all_cases(school) == [("3", "destination_unknown", "open", JAN_WEEK1[-1], None)], day
    assert all_cases(school) == [("3", "place_not_taken_up", "open", D("2026-01-19"), None),
                                 ("3", "destination_unknown", "closed", JAN_WEEK1[-1], "superseded")]
    [pntu] = school.cases("place_not_taken_up")
    [(_, _, digest)] = mails(school.app.engine(), "digest")[-1:]
    assert "Mon 19 Jan 2026" in section(digest, PLACES) and "None." in section(digest, LEFT_UNKNOWN)
    doc = referral(school, pntu["id"])
    assert (doc["case"]["criterion"], doc["child"]["admission_date"], doc["child"]["leaving_date"],
            doc["case"]["last_attended"]) == ("place_not_taken_up", "2026-01-19", None, "2026-01-09")


def test_year_6_leavers_at_the_end_of_the_summer_term(school: School) -> None:
    """Year 6 leaves for secondary school. SIMS records the leavings on Monday 20 July 2026 (the summer
    holiday): two dated the last day of term (17 July), two dated 31 August, as many schools enter
    them; one of each with the secondary school named, one of each with no destination.

    The two with a destination are on no list. The 17 July one with none opens on the first holiday
    morning; the 31 August one on the morning of 31 August (not in September), due that day. Neither
    opens twice when the autumn term begins, and the referral names the criterion, the leaving date
    and no destination."""
    school.pupils = [PupilRecord(k, legal_surname=f"Surname{k}", legal_forename=f"Forename{k}",
                                 dob=date(2014, 10, 1), year_group="6", reg_group="6A") for k in "1234"]
    roll = [EnrolmentRecord(k, None, ADMITTED) for k in "1234"]
    last_week = weekdays(D("2026-07-13"), D("2026-07-17"))
    school.export(last_week[-1], roll, _present("1234", last_week))
    school.morning(D("2026-07-20"))
    academy = "Tewkesbury Academy, 916/4001"
    left = [EnrolmentRecord("1", None, ADMITTED, leaving_date=D("2026-07-17"), leaving_reason="Transfer to secondary",
                            destination=academy),
            EnrolmentRecord("2", None, ADMITTED, leaving_date=D("2026-07-17"), leaving_reason="Transfer to secondary"),
            EnrolmentRecord("3", None, ADMITTED, leaving_date=D("2026-08-31"), leaving_reason="Transfer to secondary"),
            EnrolmentRecord("4", None, ADMITTED, leaving_date=D("2026-08-31"), leaving_reason="Transfer to secondary",
                            destination=academy)]
    school.export(D("2026-07-20"), left, [])
    school.morning(D("2026-07-21"))
    assert [(c["pupil_key"], c["episode_start"]) for c in school.cases()] == [("2", D("2026-07-17"))]
    school.morning(D("2026-08-28"))
    assert [c["pupil_key"] for c in school.cases()] == ["2"]
    as_of, _ = school.morning(D("2026-08-31"))
    assert as_of == D("2026-07-17")
    assert [(c["pupil_key"], c["status"], c["episode_start"], c["referral_due"]) for c in school.cases()] == [
        ("2", "open", D("2026-07-17"), D("2026-07-17")), ("3", "open", D("2026-08-31"), D("2026-08-31"))]
    [(_, _, digest)] = mails(school.app.engine(), "digest")[-1:]
    listed = section(digest, LEFT_UNKNOWN)
    assert "Forename2" in listed and "Forename3" in listed and "Forename1" not in listed and "Forename4" not in listed
    doc = referral(school, school.cases()[1]["id"])
    assert (doc["case"]["criterion"], doc["child"]["leaving_date"], doc["child"]["destination"],
            doc["child"]["leaving_reason"], doc["case"]["referral_due"]) == (
        "destination_unknown", "2026-08-31", None, "Transfer to secondary", "2026-08-31")

    school.export(D("2026-09-03"), left, [])
    school.morning(D("2026-09-04"))
    assert [(c["pupil_key"], c["status"]) for c in school.cases()] == [("2", "open"), ("3", "open")]
