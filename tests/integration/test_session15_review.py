"""Review of the fifteenth session's changes (tests only), on real SQLite stores and real files.

Each test lives a few nights of a small school through the harnesses of the fifteenth review
(``test_sources_review15``: the whole night with a drop folder; ``test_holiday_leavers.School``:
SIMS exports imported, then ``detect`` and ``summary``). A failing test is a finding: its
docstring says what the school would notice, the rule broken and the cause. Each finding was
fixed the same session (README, "Found by a review of the fifteenth session's own changes").
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from cme_batch.importer import import_files
from cme_batch.model import EnrolmentRecord, MarksRecord
from cme_batch.store import tables as t
from tests.helpers import weekdays
from tests.integration.test_admissions_review15 import (
    ROLL,
    _left_then_named,
    _raised_again,
    all_cases,
)
from tests.integration.test_admissions_review15 import school as school  # noqa: F401 (the fixture)
from tests.integration.test_holiday_leavers import ADMITTED, School, _present
from tests.integration.test_sources_review15 import (
    ABSENT,
    THU,
    TUE,
    WED,
    ctf_school,
    mail,
    night,
    school_ctf,
    stage,
)
from tests.integration.test_sources_review15 import store_url as store_url  # noqa: F401 (the fixture)
from tests.replies_support import KEY, KEY_ENV

D = date.fromisoformat


# -- 5. the whole-report rule: a file re-imported by hand ---------------------------------------------
def test_an_older_sims_leavers_file_imported_again_by_hand_is_stored_and_says_so(school: School) -> None:  # noqa: F811
    """Child 3 left on Friday 16 January 2026 with no destination; on Monday 19th the office recorded
    St Mary's and the "destination unknown" case closed (``_left_then_named``). On Tuesday 20th the
    data manager runs ``cme-batch import`` again on Friday's leavers export, still in its folder.

    Found by the session's own review: before the session, any file stored before was skipped
    ("already imported"). Now a SIMS export, the whole of its report, is skipped only when it is the
    same as the latest file of its report stored, so that a report that came back to an earlier
    state in the MIS (a destination recorded, then cleared: ``test_admissions_review15``) is stored
    again. Nothing in the file tells the two apart (the store keeps no export's own time), so the
    older file imported by hand is stored as given, as an older export with other bytes always was,
    and the import says what it did: a warning naming the report, shown by ``cme-batch import``."""
    _left_then_named(school)
    old = school.folder / "2" / "leavers-1.xml"  # Friday's export, imported on Friday
    assert old.exists()
    school.app.clock_box["now"] = datetime(2026, 1, 20, 10, tzinfo=UTC)  # type: ignore[attr-defined]
    (result,) = list(import_files(school.app, [old], "sims-xml"))
    assert result.status == "ok"
    assert [w.code for w in result.warnings] == ["earlier_state"]
    assert "'leavers' report stored before, but not as the latest" in result.warnings[0].message


def test_a_reason_edited_to_unknown_then_a_new_school_named_closes_the_reopened_case(
        school: School) -> None:  # noqa: F811
    """The edited-reason reopen, then the office finds the child at St John's and records it, the
    reason left as edited ("Did not arrive at St Mary's: whereabouts unknown", as schools seldom edit
    it back). The reopened case closes as "destination known": no false alarm lives on every day.
    (Covers the reopening event's destination and reason being the ones compared next.)"""
    leaving = _left_then_named(school)
    reason = "Did not arrive at St Mary's: whereabouts unknown"
    school.export(D("2026-01-20"), [*ROLL, EnrolmentRecord("3", None, ADMITTED, leaving_date=leaving,
                                                          leaving_reason=reason, destination="St Mary's CE Primary")],
                  _present("12", [D("2026-01-20")]))
    _raised_again(school, leaving)
    school.export(D("2026-01-21"), [*ROLL, EnrolmentRecord("3", None, ADMITTED, leaving_date=leaving,
                                                          leaving_reason=reason, destination="St John's Academy")],
                  _present("12", [D("2026-01-21")]))
    school.morning(D("2026-01-22"))
    assert [(c["status"], c["closed_reason"]) for c in school.cases()][-1] == ("closed", "destination_known")
    school.morning(D("2026-01-23"))
    assert [c for c in school.cases() if c["status"] == "open"] == []


# -- 2. place not taken up from the entry date ------------------------------------------------------
def test_a_child_on_roll_since_november_ill_in_the_first_week_on_the_system_is_no_place_not_taken_up(
        school: School) -> None:  # noqa: F811
    """A school starts using cme-batch in January 2026. Its SIMS marks report covers the term (from
    5 January); child 3 was admitted on Monday 3 November 2025 (SIMS Admission Date; no Agreed Start
    Date: put straight on roll) and has attended every day since, but is off ill (I, authorised) all
    of the first week the system sees.

    What the DSL would notice: a **"place not taken up" case at "referral prepared"** and a request
    to confirm a referral to the LA, for a child who has been in school for two months and whose
    absence this week is authorised illness.

    Rule: DOMAIN.md 5, ``place_not_taken_up``: "an admission's agreed first day has passed and the
    child has had no present ... session since it": the child has, before the registers the store
    holds; the store's absence of marks is not evidence the child never came.

    Cause: ``detect._agreed_first`` now takes the entry date where no agreed start date is recorded,
    and ``_Evaluator`` (place not taken up) counts a child with no ``last_attended`` in the store as
    never seen, whatever the registers stored begin with. Suggested fix: for an entry date (not an
    agreed start date), require the store's registers to cover the days since it (the child's
    earliest stored mark on or before the entry date), or use only entry dates since the first
    import.
    """
    week = weekdays(D("2026-01-05"), D("2026-01-09"))
    joined = EnrolmentRecord("3", None, D("2025-11-03"))
    marks = [*_present("12", week), *(MarksRecord("3", d, ("I", "I")) for d in week)]
    school.export(week[-1], [*ROLL[:2], joined], marks)
    school.morning(D("2026-01-12"))
    assert school.cases("place_not_taken_up") == [], all_cases(school)


# -- 7. a CTF read while the MIS was still writing it ------------------------------------------------
def test_a_ctf_read_while_still_being_written_is_read_once_complete(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """The MIS writes Tuesday's CTF straight into the drop folder under its final name; at 05:30 the
    night finds it half written (the MIS server was slow, or the share's copy was still going) and
    refuses it as not well-formed. Before today's change the file stayed in the drop folder and was
    read the next night, complete. Now it is moved into ``archive/refused`` at once: the MIS finishes
    writing it there (the open file moved with its name), and it is never read.

    What the school would notice: every morning a red "NOT IMPORTED" telling them to "correct the
    records named ... in the MIS and export again": there are no records named (the problem is the
    file's end), and the complete export with the registers and children it carries sits unread
    (a CTF of an incoming child: the child is never on roll here, no case can open).

    Rule: README "Sources of MIS data": a refused file is set aside so that the files after it are
    read; a file is refused for its records. DOMAIN.md 7 / the all-or-nothing import: a file not
    yet complete is not a refused file.

    Cause: ``importer._ingest_one`` sets aside any ``BadInputError`` of a CTF source
    (``CtfSource.set_aside``), including a file refused at opening because it was incomplete or
    unreadable (``dropfolder.file_batches`` ``_refusing``); ``DropFolder.ready`` has no settling time.
    Suggested fix: set aside only a file refused for its records (``ImportRejected`` with record
    problems) and leave a file refused as not well-formed in place for the next night (or only
    once its size and mtime have not changed for some minutes).
    """
    monkeypatch.setenv(KEY_ENV, KEY)
    app, clock, exports = ctf_school(tmp_path, store_url, engine)
    exports.day(TUE, absent=(ABSENT,))
    path = school_ctf(exports, TUE, 2)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])  # the MIS still writing it
    exports.touch(path, TUE)
    report = night(app, clock, WED)
    assert stage(report, "ingest")[0] == "failed"
    # the MIS finishes writing the file: its open file is wherever the name went
    where = next(p for p in (path, *(tmp_path / "drop" / "archive" / "refused").glob("*.xml")) if p.exists())
    where.write_bytes(whole)
    exports.touch(where, TUE)
    exports.day(WED)
    school_ctf(exports, WED, 3)  # Wednesday's export, written whole
    night(app, clock, THU)
    with engine.connect() as conn:
        stored = conn.execute(select(t.ingest_runs.c.origin).where(t.ingest_runs.c.status == "ok")).scalars().all()
    body = mail(engine, "summary")[1]
    assert path.name in stored and not [x for x in body.splitlines() if "NOT IMPORTED:" in x], (
        f"the complete export is never read: it waits in {where}", [x for x in body.splitlines() if "NOT IMP" in x])


# -- 7. a second refused file of the same name -------------------------------------------------------
def test_two_refused_ctfs_of_one_name_are_both_kept_and_named(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """The MIS numbers its CTFs again from 001 after a reinstall: a refused 002 already waits in
    ``archive/refused`` when another, different, 002 is refused. Neither is overwritten; the morning
    names both (the second under the name it was given), and the good CTFs after each are read."""
    monkeypatch.setenv(KEY_ENV, KEY)
    app, clock, exports = ctf_school(tmp_path, store_url, engine)

    def bad(evening: date, seq: int) -> bytes:
        p = school_ctf(exports, evening, seq)
        p.write_text(p.read_text(encoding="utf-8").replace("<DOB>2017-01-21</DOB>", "<DOB>2017-02-30</DOB>"),
                     encoding="utf-8")
        exports.touch(p, evening)
        return p.read_bytes()

    exports.day(TUE)
    first = bad(TUE, 2)
    school_ctf(exports, TUE, 3)
    night(app, clock, WED)
    exports.day(WED, absent=(ABSENT,))
    second = bad(WED, 2)
    assert second != first
    school_ctf(exports, WED, 4)
    report = night(app, clock, THU)
    assert stage(report, "ingest")[0] == "failed"
    refused = tmp_path / "drop" / "archive" / "refused"
    kept = sorted(p.read_bytes() for p in refused.iterdir())
    assert kept == sorted([first, second])
    body = mail(engine, "summary")[1]
    (line,) = [x for x in body.splitlines() if "NOT IMPORTED:" in x]
    assert "2 file(s)" in line and all(p.name in line for p in refused.iterdir())
    with engine.connect() as conn:
        kinds = conn.execute(select(t.cases.c.kind, t.cases.c.episode_start)).all()
    assert [(k, s) for k, s in kinds] == [("unexplained_absence", WED)], "the good CTF after the refused one was read"
