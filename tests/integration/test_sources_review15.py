"""Review (fifteenth session): the MIS data going stale, failing or arriving partial, as the nightly
timer lives it.

Each test builds a small school in a real SQLite store with a real source (a SIMS drop folder on
disk, written by the adapter's own writer as the scheduled task writes it, or the fake Arbor
server on 127.0.0.1), and runs the whole night (``run_nightly``: ingest, detect with its catch-up,
replies, referrals, summary, send to a mail drop) at 05:30 on each weekday morning for the default
evaluation date, as the timer does. The clock moves a little on every reading, as a real one does.
Then it reads what the office and the DSL were sent, the cases, and what the night said.

A failing test here is a finding: its docstring says what the school would notice, the rule it
breaks and where the cause is.
"""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from adapters.arbor.fake_school import FakeSchool
from adapters.arbor.fake_server import FakeArbor
from adapters.sims.writer import write_reports
from cme_batch import log
from cme_batch.app import App
from cme_batch.model import ContactRecord, EnrolmentRecord, FlagRecord, MarksRecord, PupilRecord, Record
from cme_batch.nightly import NightlyReport, run_nightly
from cme_batch.store import tables as t
from tests.adapters.arbor_helpers import _toml, settings_for
from tests.conftest import write_config
from tests.replies_support import KEY, KEY_ENV

D = date.fromisoformat
MON, TUE, WED, THU, FRI = (D(f"2025-11-{d}") for d in (10, 11, 12, 13, 14))
NEXT_MON = D("2025-11-17")
BEFORE = [D(f"2025-11-{d:02}") for d in (4, 5, 6, 7)] + [MON]  # school days all were present on
SOCIAL_CARE = "IMMEDIATE: inform Social Care"
REPLIES = f"""
[replies]
mailbox = "none"
token_keys = [{{ id = "k1", secret = {{ env = "{KEY_ENV}" }} }}]
"""
SIMS = '\n[sources.sims]\nadapter = "sims-xml"\ndrop_dir = "drop"\n'


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """A real SQLite store (the school's default): these tests live several nights, once."""
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


# -- the school -----------------------------------------------------------------------------------
PUPILS = [
    PupilRecord("1001", upn="A916299925001", legal_surname="Quartermain", legal_forename="Amelia",
                dob=date(2016, 5, 3), year_group="4", reg_group="4C"),
    PupilRecord("1002", upn="B916299925002", legal_surname="Brockhurst", legal_forename="Bertram",
                dob=date(2016, 7, 9), year_group="4", reg_group="4C"),
    PupilRecord("1003", upn="C916299925003", legal_surname="Fennimore", legal_forename="Cordelia",
                dob=date(2017, 1, 21), year_group="3", reg_group="3A"),
]
KEYS = [p.pupil_key for p in PUPILS]
ABSENT = "1001"  # the child whose absence the tests follow


def identities() -> list[str]:
    """What must never be in a subject or a log line: each pupil's names, UPN and date of birth."""
    out: list[str] = []
    for p in PUPILS:
        assert p.dob is not None
        out += [p.legal_surname or "", p.legal_forename or "", p.upn or "", p.dob.isoformat(),
                p.dob.strftime("%d/%m/%Y")]
    return out


def leaks(text: str) -> list[str]:
    return sorted({i for i in identities() if i and i in text})


class Clock:
    """The night's clock: set to a moment, then a millisecond later on every reading."""

    def __init__(self, now: datetime) -> None:
        self.now, self.ticks = now, 0

    def set(self, now: datetime) -> None:
        self.now, self.ticks = now, 0

    def __call__(self) -> datetime:
        self.ticks += 1
        return self.now + timedelta(milliseconds=self.ticks)


def school_app(tmp_path: Path, store_url: str, engine: Engine, source_toml: str) -> tuple[App, Clock]:
    clock = Clock(datetime.combine(MON, time(18, 0), UTC))
    app = App(str(write_config(tmp_path, store_url, source_toml + REPLIES)), clock=clock)
    app._engine = engine
    return app, clock


def night(app: App, clock: Clock, day: date) -> NightlyReport:
    """The timer's run at 05:30 on ``day``: the whole night, for the default evaluation date."""
    clock.set(datetime.combine(day, time(5, 30), UTC))
    return run_nightly(app, app.default_as_of(), defaulted=True)


def stage(report: NightlyReport, name: str) -> tuple[str, str]:
    s = next(x for x in report.stages if x.name == name)
    return s.outcome, s.detail


def mail(engine: Engine, purpose: str) -> tuple[str, str]:
    """(subject, plain text) of the latest message queued for ``purpose``."""
    with engine.connect() as conn:
        subject, mime = conn.execute(select(t.outbox.c.subject, t.outbox.c.mime).where(
            t.outbox.c.purpose == purpose).order_by(t.outbox.c.id.desc()).limit(1)).one()
    msg = email.message_from_bytes(bytes(mime), policy=email.policy.default)
    return subject, msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def morning_mails(engine: Engine) -> dict[str, tuple[str, str]]:
    return {p: mail(engine, p) for p in ("summary", "digest")}


def banners(text: str) -> list[str]:
    return [line for line in text.splitlines() if "DATA NOT CURRENT:" in line]


def cases(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(t.cases.c.kind, t.cases.c.status, t.cases.c.episode_start,
                                        t.cases.c.school_days, t.cases.c.alerts)).all())


def section(text: str, title: str) -> str:
    """The lines of one section of a plain-text morning email."""
    lines = text.splitlines()
    start = lines.index(title)
    rest = lines[start + 2:]
    end = next((i for i, line in enumerate(rest) if i + 1 < len(rest) and set(rest[i + 1]) == {"-"}), len(rest))
    return "\n".join(rest[:end])


class SimsExports:
    """The SIMS server's scheduled task: the four reports written into the drop folder each evening
    (adapters.sims.writer, as CommandReporter writes them), stamped and dated 19:00 that evening."""

    def __init__(self, folder: Path, extra: list[Record] | None = None) -> None:
        self.folder = folder
        self.registers: dict[str, dict[date, tuple[str, str]]] = {k: {} for k in KEYS}
        self.extra = list(extra or [])
        self.phone = 0
        for day in BEFORE:
            self.day(day)

    def day(self, day: date, absent: tuple[str, ...] = (), code: str = "N") -> None:
        """One day's register in the MIS: everyone present but ``absent``."""
        for k in KEYS:
            self.registers[k][day] = (code, code) if k in absent else ("/", "\\")

    def records(self) -> list[Record]:
        self.phone += 1  # a parent's new mobile number: the pupils report differs from last night's
        recs: list[Record] = [*PUPILS, *self.extra,
                              ContactRecord(ABSENT, "mum", priority=1, surname="Quartermain", forename="Mum",
                                            relationship="Mother", parental_responsibility=True,
                                            phones=(f"07700 9001{self.phone:02}",))]
        recs += [EnrolmentRecord(k, admission_date=date(2021, 9, 3), entry_date=date(2021, 9, 3)) for k in KEYS]
        recs += [MarksRecord(k, d, v) for k in KEYS for d, v in sorted(self.registers[k].items())]
        return recs

    def export(self, evening: date) -> dict[str, Path]:
        paths = write_reports(self.folder, self.records(), evening.strftime("%Y%m%dT190000"))
        for p in paths.values():
            self.touch(p, evening)
        return paths

    @staticmethod
    def touch(path: Path, evening: date) -> None:
        stamp = datetime.combine(evening, time(19, 0), UTC).timestamp()
        os.utime(path, (stamp, stamp))


def school_ctf(exports: SimsExports, evening: date, seq: int) -> Path:
    """The school's whole-roll CTF of the registers in the MIS, written that evening at 19:00."""
    from adapters.ctf.writer import write_ctf
    from cme_batch.model import SchoolInfo

    school = SchoolInfo("916", "2999", "The John Moore Primary School")
    path = write_ctf(exports.folder / f"9162999_CTF_9162999_{seq:03}.xml", exports.records(), school)
    exports.touch(path, evening)
    return path


def ctf_school(tmp_path: Path, store_url: str, engine: Engine) -> tuple[App, Clock, SimsExports]:
    """A school whose MIS writes a whole-roll CTF into a ``ctf`` drop folder every evening:
    Monday's read on Tuesday morning."""
    app, clock = school_app(tmp_path, store_url, engine, '\n[sources.ctf]\nadapter = "ctf"\ndrop_dir = "drop"\n')
    exports = SimsExports(tmp_path / "drop")  # the registers in the MIS (written here as CTFs)
    exports.folder.mkdir()
    school_ctf(exports, MON, 1)
    assert not night(app, clock, TUE).failed
    return app, clock, exports


def refused_tuesday(tmp_path: Path, store_url: str, engine: Engine) -> tuple[App, Clock, SimsExports]:
    """``ctf_school``, with Tuesday's CTF (Amelia absent) in the folder holding one bad record, a
    date of birth 30 February."""
    app, clock, exports = ctf_school(tmp_path, store_url, engine)
    exports.day(TUE, absent=(ABSENT,))
    bad = school_ctf(exports, TUE, 2)
    bad.write_text(bad.read_text(encoding="utf-8").replace("<DOB>2017-01-21</DOB>", "<DOB>2017-02-30</DOB>"),
                   encoding="utf-8")
    exports.touch(bad, TUE)
    return app, clock, exports


@pytest.fixture
def sims(tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
         ) -> Iterator[tuple[App, Clock, SimsExports]]:
    """The school reading a SIMS drop folder; Monday's exports read on Tuesday morning, all well."""
    monkeypatch.setenv(KEY_ENV, KEY)
    app, clock = school_app(tmp_path, store_url, engine, SIMS)
    exports = SimsExports(tmp_path / "drop")
    exports.export(MON)
    first = night(app, clock, TUE)
    assert not first.failed, first.stages
    assert banners(mail(engine, "summary")[1]) == []
    yield app, clock, exports
    app.close()


# -- 1. an export dropped again unchanged ---------------------------------------------------------
def test_a_marks_export_dropped_again_unchanged_is_data_not_current_though_the_pupils_export_changed(
        sims: tuple[App, Clock, SimsExports], engine: Engine) -> None:
    """The SIMS scheduled task keeps dropping Monday's marks export, byte for byte, every evening
    (its report's date range was left fixed, or it copies a cached file), while the pupils report
    it writes beside it changes (a parent's new number). Amelia is absent, unexplained, from
    Tuesday: by Thursday morning the marks have been the same for two nights.

    What the school notices: nothing. Neither the summary nor the DSL's digest says DATA NOT
    CURRENT; the night succeeds (no failure email); the only trace is a grey note "no register mark
    on Wed ... until the register is completed in the MIS", which sends the office to a register
    that IS complete in SIMS. Amelia is on no list, and would stay on none for as long as the task
    is stuck. With every report unchanged, the same nights do say DATA NOT CURRENT (the next test).

    Rule: README "Sources of MIS data": a newest export older than ``max_age_hours`` fails the
    ingest and the summary carries DATA NOT CURRENT: "silence from the MIS never looks like a quiet
    night"; DOMAIN.md 4 (a missing register must never silently end or shorten a streak, and must be
    shown).

    Cause: freshness is judged per source, not per report. ``dropfolder.DropFolder.check_fresh``
    looks only at file modification times (the re-dropped file is new), ``file_batches`` archives
    a file whose checksum was imported before without a word, and ``importer.stale_sources`` /
    ``morning.facts._sources`` read one ``source_state.last_success_at`` for the whole source,
    which the changed pupils report moves on every night. Fix: keep the time each report group last
    brought new content (e.g. by group in ``source_state`` or from ``ingest_runs`` by origin's
    group), and judge ``max_age_hours`` / ``stale_hours`` on that, naming the report: "the 'marks'
    export has brought nothing new since Tue 11 Nov".
    """
    app, clock, exports = sims
    frozen = next(exports.folder.glob("archive/marks-*.xml")).read_bytes()
    for evening, morning in ((TUE, WED), (WED, THU), (THU, FRI)):
        exports.day(evening, absent=(ABSENT,))
        paths = exports.export(evening)
        paths["marks"].write_bytes(frozen)  # the task's marks report: Monday's again
        exports.touch(paths["marks"], evening)
        report = night(app, clock, morning)
        if morning == WED:
            continue  # one night of nothing new is within the 26 hours allowed
        for purpose, (subject, body) in morning_mails(engine).items():
            assert "DATA NOT CURRENT" in subject and banners(body), (
                f"{morning}: the {purpose} does not say the registers stopped arriving "
                f"(last new marks Tue 11 Nov 05:30); ingest said {stage(report, 'ingest')}:\n{subject}\n{body}")
            assert "source 'sims'" in banners(body)[0]
        assert report.failed, "the night must fail (so the office gets the failure email), as a silent MIS does"


def test_every_export_dropped_again_unchanged_says_since_when_in_both_emails_every_morning(
        capsys: pytest.CaptureFixture[str], sims: tuple[App, Clock, SimsExports], engine: Engine) -> None:
    """The whole export task is stuck: every evening the same four files (Monday's, byte for byte)
    are dropped again. From the second morning on (26 hours allowed), every morning until it is
    fixed, over a weekend too, the summary and the DSL's digest carry DATA NOT CURRENT in their
    subject and a red banner naming the source and when it was last read (Tuesday 11 Nov), the
    night fails (exit 1: the failure email), and no subject nor log line of those nights names a
    pupil. (Not checked elsewhere: the existing tests cover a drop folder that never received a file.)
    """
    app, clock, exports = sims
    frozen = {p.name.split("-")[0]: p.read_bytes() for p in (exports.folder / "archive").glob("*.xml")}
    log.configure(app.config.logging.level, "json")  # the journal: standard error, captured here
    for evening, morning in ((TUE, WED), (WED, THU), (THU, FRI), (FRI, NEXT_MON)):
        exports.day(evening, absent=(ABSENT,))
        for group, path in exports.export(evening).items():
            path.write_bytes(frozen[group])
            exports.touch(path, evening)
        report = night(app, clock, morning)
        if morning == WED:
            continue
        assert report.failed and stage(report, "ingest")[0] == "failed", stage(report, "ingest")
        assert stage(report, "summary")[0] == "ok" and stage(report, "send")[0] == "ok"
        for purpose, (subject, body) in morning_mails(engine).items():
            assert "DATA NOT CURRENT" in subject, (morning, purpose, subject)
            (banner,) = banners(body)
            assert "source 'sims' last read successfully 11 Nov 2025 05:30 UTC" in banner, (morning, purpose, banner)
            assert leaks(subject) == [] and leaks(banner) == []
    logged = capsys.readouterr().err
    assert logged.count("\n") > 20 and leaks(logged) == []


# -- 2. a refused export --------------------------------------------------------------------------
def spoil(path: Path, record: int, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in the ``record``-th ``<Record>`` (counting from 1) of a SIMS export."""
    text = path.read_text(encoding="iso-8859-1")
    parts = text.split("<Record>")
    assert old in parts[record], parts[record]
    parts[record] = parts[record].replace(old, new, 1)
    path.write_text("<Record>".join(parts), encoding="iso-8859-1")


def test_a_refused_marks_export_is_not_called_read_successfully_because_the_pupils_export_was(
        sims: tuple[App, Clock, SimsExports], engine: Engine) -> None:
    """From Tuesday evening SIMS's marks export has one bad row (a session that is neither AM nor
    PM), night after night until someone fixes it in SIMS; the pupils report beside it is good and
    changes (a parent's new number). Amelia is absent, unexplained, from Tuesday.

    What the school notices: Thursday's summary and digest say "DATA NOT CURRENT: source 'sims'
    last read successfully 13 Nov 2025 05:30 UTC ... Absences since then are not counted here".
    That is that very morning: it reads as "absences up to last night are counted", so the office
    and the DSL believe the lists are complete when no register has been read since Tuesday
    morning (11 Nov). Amelia, absent two days, is on no list.

    Rule: the banner's own promise ("Absences since then are not counted here"); DOMAIN.md 4 (a
    missing register must be shown); the brief's "name which source, since when".

    Cause: ``store.ingest.apply_batch`` -> ``record_source_success`` sets the source's
    ``last_success_at`` for any stored file (here the pupils report), and
    ``morning.documents.data_banners`` shows that time as when the source was "last read
    successfully". Fix: show the last time the registers (the marks report, or an Arbor pull with
    marks) were stored, by report, and say which report failed since then.
    """
    app, clock, exports = sims
    for evening, morning in ((TUE, WED), (WED, THU)):
        exports.day(evening, absent=(ABSENT,))
        spoil(exports.export(evening)["marks"], 3, "<Session>AM</Session>", "<Session>XX</Session>")
        report = night(app, clock, morning)
        assert stage(report, "ingest")[0] == "failed"
    assert [c for c in cases(engine) if c.status == "open"] == []  # nothing of the refused exports stored
    for purpose, (subject, body) in morning_mails(engine).items():
        assert "DATA NOT CURRENT" in subject
        (banner,) = banners(body)
        assert "marks-20251112T190000.xml: rejected" in banner
        assert "last read successfully 11 Nov 2025" in banner, (
            f"the {purpose} dates the last successful read after the registers stopped being read: {banner}")


def _cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("cme-batch"))
    return subprocess.run([exe, "--config", str(cfg), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, KEY_ENV: KEY})


def test_the_night_names_the_refused_record_and_field_where_the_school_can_read_them(
        tmp_path: Path, store_url: str, engine: Engine) -> None:
    """Tonight's SIMS marks export has one bad row (record 7: a session "XX"). ``cme-batch
    nightly`` as the timer runs it (the journal gets its standard output and error), then
    ``cme-batch status`` as the technician runs it next.

    What the school notices: the night fails and the morning banner says "marks-....xml: rejected,
    nothing imported (1 problem(s)):" and stops there; the journal says "sims failed" and "source
    failed" with the same first line; ``status`` too. Which record and which field are wrong is
    written nowhere a person can read (only in the database's ``ingest_runs.error``), so the school
    cannot "correct those records in the MIS", and the registers stay out night after night.

    Rule: README "Sources of MIS data": "a file with any bad record is refused whole, with each
    problem named by file, record number and field"; README "Troubleshooting": the message is
    "<file>: rejected, nothing imported (<n> problem(s)):" then "- record <n>, field <name>: ...".

    Cause: every place cuts the message to its first line: ``importer._ingest_one`` logs
    ``str(exc).splitlines()[0]``; ``nightly._ingest`` raises only "sims failed";
    ``morning.facts._sources`` and ``cli_status`` keep ``last_error.splitlines()[0]``. Fix: log each
    problem line of an ``ImportRejected`` in ``_ingest_one`` (they carry no personal value), and
    show them in ``status`` and in the summary's banner (a handful, then "and n more").
    """
    drop = tmp_path / "drop"
    cfg = write_config(tmp_path, store_url, SIMS + REPLIES)
    exports = SimsExports(drop)
    exports.day(TUE, absent=(ABSENT,))
    paths = write_reports(drop, exports.records(), "20251111T190000")
    spoil(paths["marks"], 7, "<Session>AM</Session>", "<Session>XX</Session>")
    run = _cli(cfg, "nightly", "--as-of", TUE.isoformat())
    assert run.returncode == 1, run.stdout + run.stderr
    status = _cli(cfg, "status")
    journal = run.stdout + run.stderr
    assert "marks-20251111T190000.xml: rejected" in journal + status.stdout
    assert leaks(journal + status.stdout) == []
    assert "record 7, field Session" in journal + status.stdout, (
        "nowhere says which record and field were refused:\n--- journal ---\n" + journal
        + "\n--- status ---\n" + status.stdout)


def test_a_half_written_marks_export_stores_nothing_and_the_complete_one_the_next_night_opens_the_case(
        sims: tuple[App, Clock, SimsExports], engine: Engine) -> None:
    """Tuesday evening the marks export is still being written when the night starts (copied into
    the share under its final name): the file ends a little past half-way, after Amelia's rows.
    Wednesday morning nothing of it is stored (no case from the half that was read), the night
    fails, and both emails carry the red banner naming that file as rejected. Wednesday evening the
    task writes a complete export: Thursday morning the half-written file is archived unread, the
    new one read, and Amelia's case opens at two school days from Tuesday, on the office's
    emergency-contact list. (Existing tests cut files for ``import``; none follows the night's mail.)
    """
    app, clock, exports = sims
    exports.day(TUE, absent=(ABSENT,))
    marks = exports.export(TUE)["marks"]
    data = marks.read_bytes()
    marks.write_bytes(data[: int(len(data) * 0.6)])
    exports.touch(marks, TUE)
    report = night(app, clock, WED)
    assert stage(report, "ingest")[0] == "failed"
    assert cases(engine) == [], "records of a cut file were stored"
    for subject, body in morning_mails(engine).values():
        assert "DATA NOT CURRENT" in subject
        (banner,) = banners(body)
        assert "marks-20251111T190000.xml: rejected, nothing imported" in banner
        assert leaks(subject + banner) == []
    exports.day(WED, absent=(ABSENT,))
    exports.export(WED)
    report = night(app, clock, THU)
    assert not report.failed, report.stages
    assert not (exports.folder / "marks-20251111T190000.xml").exists()
    assert [(c.kind, c.status, c.episode_start, c.school_days) for c in cases(engine)] == [
        ("unexplained_absence", "open", TUE, 2)]
    summary = mail(engine, "summary")[1]
    assert banners(summary) == []
    assert "Amelia Quartermain" in section(summary, "Emergency contacts to try today")


def test_a_refused_ctf_corrected_and_exported_again_lets_the_next_night_take_the_registers_in(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The school's MIS exports a whole-school CTF every evening into a ``ctf`` drop folder.
    Tuesday evening's CTF has one bad record (a date of birth 30 February): Wednesday's night
    refuses it, rightly, and both emails say so. The office corrects the date in the MIS, as the
    README tells it to, and Wednesday evening's CTF is good; Amelia is absent, unexplained, on
    Tuesday and Wednesday.

    What the school notices on Thursday morning: the same red banner, naming Tuesday's file again;
    the corrected CTF is never read, nor any CTF after it, night after night, until someone who
    knows to do it moves Tuesday's file out of the share. Amelia is on no list.

    Rule: README "Troubleshooting" (``<file>: rejected, nothing imported`` -> "correct those records
    in the MIS ... and export again"); "Sources of MIS data" (silence from the MIS must not look
    like a quiet night: here the MIS is speaking and is not heard).

    Cause: ``dropfolder.DropFolder.ready`` with ``supersede=False`` (CTFs) reads every file oldest
    first, and ``file_batches`` stops the whole source at the first refused file, which stays in
    the drop folder and is first in line every night. Fix: move a refused file aside (a
    ``refused/`` folder, named in the banner until it is dealt with) and go on with the files after
    it, each being all or nothing; or let a later full CTF from the same school supersede it.
    """
    monkeypatch.setenv(KEY_ENV, KEY)
    app, clock, exports = refused_tuesday(tmp_path, store_url, engine)

    def ctf(evening: date, seq: int) -> Path:
        return school_ctf(exports, evening, seq)

    report = night(app, clock, WED)
    assert stage(report, "ingest")[0] == "failed"
    assert "9162999_CTF_9162999_002.xml: rejected" in banners(mail(engine, "summary")[1])[0]
    exports.day(WED, absent=(ABSENT,))
    ctf(WED, 3)  # corrected in the MIS, exported again
    report = night(app, clock, THU)
    summary = mail(engine, "summary")[1]
    assert not report.failed, f"the corrected CTF was not taken in: {stage(report, 'ingest')}; {banners(summary)}"
    assert [(c.kind, c.status, c.episode_start, c.school_days) for c in cases(engine)] == [
        ("unexplained_absence", "open", TUE, 2)]


# -- 3. an absence that ended while the data was stale --------------------------------------------
def test_an_absence_that_ended_while_the_exports_were_stale_is_raised_when_they_arrive(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Amelia has a child protection plan. The SIMS export task fails on Tuesday and Wednesday
    evenings (nothing arrives): Wednesday and Thursday mornings say DATA NOT CURRENT, rightly, and
    detect evaluates Tuesday and Wednesday with no registers. Amelia is absent, unexplained, on
    Tuesday and Wednesday and back on Thursday. Thursday evening the task is fixed and writes the
    whole year's registers.

    What the school notices on Friday morning: nothing at all. No case is opened for the two days
    of unexplained absence, the digest's "IMMEDIATE: inform Social Care" says "No alerts", and
    nothing is "closed since the last summary": Social Care is never told that a child on a
    protection plan was missing for two days, the office never called, and the data-quality note
    of Wednesday and Thursday ("a child absent that day is on no list here until the register is
    completed in the MIS") promised the opposite. Had the server been off those nights instead,
    the catch-up would have opened and closed the case and listed the alert (test_nightly's week off).

    Rule: DOMAIN.md 5 (a case opens on the first day of an unexplained streak; a child protection
    plan raises ``immediate_social_care`` on it); nightly.py's own reason for the catch-up (an
    episode that began and ended unseen must still open a case and reach the DSL).

    Cause: ``nightly.missed_school_days`` counts from the last detect run, and detect did run on
    Tuesday's and Wednesday's nights, on no data; registers that arrive afterwards for days already
    evaluated are only ever seen as of the newest date, where the streak has already broken. Fix:
    remember the days evaluated while a source was failing or stale (or the earliest date whose
    marks an ingest laid or changed), and evaluate those days again in turn once the registers
    arrive, as the catch-up does for nights that never ran.
    """
    monkeypatch.setenv(KEY_ENV, KEY)
    app, clock = school_app(tmp_path, store_url, engine, SIMS)
    exports = SimsExports(tmp_path / "drop", extra=[FlagRecord(ABSENT, "child_protection_plan", date(2025, 6, 1))])
    exports.export(MON)
    assert not night(app, clock, TUE).failed
    exports.day(TUE, absent=(ABSENT,))
    assert stage(night(app, clock, WED), "ingest")[0] == "failed"  # nothing arrived
    exports.day(WED, absent=(ABSENT,))
    assert stage(night(app, clock, THU), "ingest")[0] == "failed"
    assert banners(mail(engine, "digest")[1])
    exports.day(THU)
    exports.export(THU)  # the task fixed: the whole year's registers, Tuesday's and Wednesday's too
    report = night(app, clock, FRI)
    assert not report.failed, report.stages
    digest = mail(engine, "digest")[1]
    assert [(c.kind, c.episode_start, c.school_days) for c in cases(engine)] == [
        ("unexplained_absence", TUE, 2)], "no case for two days of unexplained absence read late"
    assert "Amelia Quartermain" in section(digest, SOCIAL_CARE), section(digest, SOCIAL_CARE)


# -- 4. Arbor -------------------------------------------------------------------------------------
def arbor_school() -> FakeSchool:
    school = FakeSchool()
    school.load([*PUPILS,
                 *(EnrolmentRecord(k, admission_date=date(2021, 9, 3), entry_date=date(2021, 9, 3)) for k in KEYS),
                 *(MarksRecord(k, d, ("/", "\\")) for k in KEYS for d in BEFORE)])
    return school


def arbor_day(server: FakeArbor, day: date, absent: tuple[str, ...] = ()) -> None:
    for k in KEYS:
        for session, present in (("AM", "/"), ("PM", "\\")):
            server.school.set_mark(k, day, session, "N" if k in absent else present)


def test_arbor_failing_half_way_through_paging_then_refusing_the_password_loses_no_absence(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Night 1 (Tuesday) reads Arbor whole. Wednesday morning Arbor answers the first changelog
    pages, then 500 on every request (retried, then given up); Thursday morning it refuses the app's
    password (401: the school changed it in Arbor). Both mornings the summary and the digest say
    DATA NOT CURRENT for 'arbor', last read Tuesday, with the reason, and never a pupil nor the
    password. Friday morning (the new password in the credential file) the changes-only pull reads
    every mark entered meanwhile: Amelia, absent since Tuesday, has a case of three school days
    from Tuesday, at the DSL's review. (Existing Arbor tests stop at the ingest; none follows the
    failing nights into the morning emails and the case.)
    """
    monkeypatch.setenv(KEY_ENV, KEY)
    server = FakeArbor(arbor_school(), password="first-password-1").start()
    try:
        table = "\n".join(f"{k} = {_toml(v)}" for k, v in settings_for(server, tmp_path).items())
        secret = tmp_path / "arbor-password"
        app, clock = school_app(tmp_path, store_url, engine, f'\n[sources.arbor]\nadapter = "arbor"\n{table}\n')
        secret.write_text("first-password-1\n", encoding="utf-8")
        assert not night(app, clock, TUE).failed
        arbor_day(server, TUE, absent=(ABSENT,))
        fault = server.fail("status", "changelog", status=500, times=None, after=2)
        report = night(app, clock, WED)
        assert stage(report, "ingest")[0] == "failed" and fault.fired >= 2
        arbor_day(server, WED, absent=(ABSENT,))
        server.clear_faults()
        server.password = "second-password-2"
        report = night(app, clock, THU)
        assert stage(report, "ingest")[0] == "failed"
        for purpose, (subject, body) in morning_mails(engine).items():
            assert "DATA NOT CURRENT" in subject, purpose
            (banner,) = banners(body)
            assert "source 'arbor' last read successfully 11 Nov 2025 05:30 UTC" in banner, banner
            assert "(401)" in banner, banner
            assert leaks(subject + banner) == [] and "first-password-1" not in banner
        assert cases(engine) == []
        arbor_day(server, THU, absent=(ABSENT,))
        secret.write_text("second-password-2\n", encoding="utf-8")
        report = night(app, clock, FRI)
        assert not report.failed, report.stages
    finally:
        server.close()
    assert [(c.kind, c.status, c.episode_start, c.school_days) for c in cases(engine)] == [
        ("unexplained_absence", "open", TUE, 3)]
    subject, body = mail(engine, "digest")
    assert "DATA NOT CURRENT" not in subject and banners(body) == []
    assert "Amelia Quartermain" in section(body, "Unexplained absence: pupils at each step")

