"""The drop folder as a configured source sees it: ready files, temporary names, archive, silence."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from cme_batch.config import SourceConfig
from cme_batch.dropfolder import ExportMissing, group_of, is_complete_name, parse_date
from cme_batch.model import PupilRecord
from cme_batch.sources import SourceContext, SourceState, build_source

FIX = Path(__file__).with_name("fixtures")
NOW = datetime(2025, 12, 1, 6, 0, tzinfo=UTC)


def put(folder: Path, fixture: str, name: str, hours_old: float) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    shutil.copy(FIX / fixture, path)
    when = (NOW - timedelta(hours=hours_old)).timestamp()
    os.utime(path, (when, when))
    return path


def sims(tmp_path: Path, **settings: object) -> object:
    cfg = {"drop_dir": "drop", "max_age_hours": 26, "reports": ["pupils", "marks"], **settings}
    return build_source(SourceConfig("sims", "sims-xml", cfg, tmp_path))


def run(source: object, state: SourceState | None = None) -> list[str]:
    """Read every batch as the ingest stage would, committing each; the origins read."""
    out = []
    for batch in source.batches(SourceContext(now=NOW, state=state or SourceState())):  # type: ignore[attr-defined]
        list(batch.records)
        source.committed(batch)  # type: ignore[attr-defined]
        out.append(batch.origin)
    return out


def test_names() -> None:
    assert group_of("pupils-20251201T020000.xml") == "pupils"
    assert group_of("Marks_2025-12-01_0200.xml") == "marks"
    assert group_of("school.xml") == "school"
    assert is_complete_name("marks-1.xml")
    for temp in ("marks-1.xml.tmp", "~marks.xml", ".marks.xml", "marks.xml.part", "marks.csv"):
        assert not is_complete_name(temp), temp


def test_reads_newest_per_report_ignores_temporary_and_archives(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    put(drop, "sims-marks.xml", "marks-20251130.xml", 25)
    put(drop, "sims-marks-corrected.xml", "marks-20251201.xml", 1)
    put(drop, "sims-pupils.xml", "pupils-20251201.xml", 1)
    put(drop, "sims-truncated.xml", "marks-20251202.xml.tmp", 0)  # still being written
    origins = run(sims(tmp_path))
    assert origins == ["pupils-20251201.xml", "marks-20251201.xml"], "pupils first, newest marks only"
    assert sorted(p.name for p in drop.iterdir() if p.is_file()) == ["marks-20251202.xml.tmp"]
    assert sorted(p.name for p in (drop / "archive").iterdir()) == [
        "marks-20251130.xml", "marks-20251201.xml", "pupils-20251201.xml"]


def test_a_superseded_export_is_named_on_the_newer_one_s_import_and_in_the_log(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    put(drop, "sims-marks.xml", "marks-20251130.xml", 25)
    put(drop, "sims-marks-corrected.xml", "marks-20251201.xml", 1)
    put(drop, "sims-pupils.xml", "pupils-20251201.xml", 1)
    source = sims(tmp_path)
    warned = {}
    with capture_logs() as logs:
        for batch in source.batches(SourceContext(now=NOW)):  # type: ignore[attr-defined]
            list(batch.records)
            warned[batch.origin] = [(w.message, w.where) for w in batch.warnings if w.code == "superseded_export"]
    assert warned == {"pupils-20251201.xml": [], "marks-20251201.xml": [(
        "1 older export(s) of this report archived unread, as this newer one replaces them: marks-20251130.xml",
        "marks-20251201.xml")]}
    assert [(e["event"], e["file"], e["superseded_by"]) for e in logs if e["log_level"] == "warning"] == [
        ("export superseded, archived unread", "marks-20251130.xml", "marks-20251201.xml")]


def test_every_incoming_ctf_is_read_though_their_names_differ_only_in_a_number(tmp_path: Path) -> None:
    """DfE names (``<from LAESTAB>_CTF_<to LAESTAB>_<seq>``) put every child joining from one school
    in one name group, and each file is a different child: all are read, oldest first."""
    drop = tmp_path / "in"
    put(drop, "ctf-leaver.xml", "3802001_CTF_9162999_002.xml", 2)
    put(drop, "ctf-namespace.xml", "3802001_CTF_9162999_001.xml", 1)
    source = build_source(SourceConfig("ctf", "ctf", {"drop_dir": "in", "max_age_hours": 0}, tmp_path))
    read: dict[str, list[str]] = {}
    for batch in source.batches(SourceContext(now=NOW)):
        read[batch.origin] = [r.pupil_key for r in batch.records if isinstance(r, PupilRecord)]
        source.committed(batch)
    assert read == {"3802001_CTF_9162999_002.xml": ["B234567890123"],
                    "3802001_CTF_9162999_001.xml": ["A123456789012"]}
    assert list(read) == ["3802001_CTF_9162999_002.xml", "3802001_CTF_9162999_001.xml"], "oldest first"
    assert sorted(p.name for p in (drop / "archive").iterdir()) == sorted(read)


def test_already_imported_checksum_is_skipped_and_archived(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    put(drop, "sims-pupils.xml", "pupils-1.xml", 1)
    put(drop, "sims-marks.xml", "marks-1.xml", 1)
    from cme_batch.xmlstream import prepare

    marks = prepare(drop / "marks-1.xml").checksum
    done = SourceState(imported_checksums=frozenset({marks}), latest_of_reports={"marks": marks})
    assert run(sims(tmp_path), done) == ["pupils-1.xml"]
    assert (drop / "archive" / "marks-1.xml").exists()


def test_a_report_back_to_an_earlier_state_is_read_again(tmp_path: Path) -> None:
    """A SIMS report is the whole of it: the same bytes as an earlier file of the report, but not the
    latest one stored (a destination recorded, then cleared), are read again (fifteenth session)."""
    drop = tmp_path / "drop"
    put(drop, "sims-marks.xml", "marks-1.xml", 1)
    from cme_batch.xmlstream import prepare

    earlier = prepare(drop / "marks-1.xml").checksum
    state = SourceState(imported_checksums=frozenset({earlier, "0" * 64}), latest_of_reports={"marks": "0" * 64})
    assert run(sims(tmp_path, reports=["marks"]), state) == ["marks-1.xml"]


def test_stale_export_is_an_error_after_the_fresh_files_are_read(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    put(drop, "sims-pupils.xml", "pupils-1.xml", 2)
    put(drop, "sims-marks.xml", "marks-1.xml", 30)
    source = sims(tmp_path)
    read: list[str] = []
    with pytest.raises(ExportMissing) as info:
        for batch in source.batches(SourceContext(now=NOW)):  # type: ignore[attr-defined]
            read.append(batch.origin)
    assert read == ["pupils-1.xml", "marks-1.xml"]
    assert "'marks' export is 30 hours old" in str(info.value) and "pupils" not in str(info.value)


def test_archived_yesterday_and_nothing_tonight_is_missing(tmp_path: Path) -> None:
    put(tmp_path / "drop", "sims-pupils.xml", "pupils-1.xml", 1)
    put(tmp_path / "drop", "sims-marks.xml", "marks-1.xml", 1)
    run(sims(tmp_path))
    for p in (tmp_path / "drop" / "archive").iterdir():
        old = (NOW - timedelta(hours=40)).timestamp()
        os.utime(p, (old, old))
    with pytest.raises(ExportMissing, match="40 hours old"):
        run(sims(tmp_path))


def test_never_delivered_and_missing_folder(tmp_path: Path) -> None:
    put(tmp_path / "drop", "sims-pupils.xml", "pupils-1.xml", 1)
    with pytest.raises(ExportMissing, match="no 'marks' export has ever arrived"):
        run(sims(tmp_path))
    with pytest.raises(ExportMissing, match="does not exist"):
        run(sims(tmp_path, drop_dir="nowhere"))


def test_age_check_can_be_switched_off_for_irregular_ctfs(tmp_path: Path) -> None:
    put(tmp_path / "in", "ctf-25.xml", "incoming-a.xml", 500)
    put(tmp_path / "in", "ctf-leaver.xml", "incoming-b.xml", 400)
    cfg = SourceConfig("ctf", "ctf", {"drop_dir": "in", "max_age_hours": 0}, tmp_path)
    assert run(build_source(cfg)) == ["incoming-a.xml", "incoming-b.xml"]
    cfg = SourceConfig("ctf", "ctf", {"drop_dir": "in", "max_age_hours": 24}, tmp_path)
    with pytest.raises(ExportMissing, match="newest export is 400 hours old"):
        run(build_source(cfg))


def test_same_pupil_in_two_files_is_a_warning(tmp_path: Path) -> None:
    put(tmp_path / "in", "ctf-25.xml", "from-school-a.xml", 1)
    put(tmp_path / "in", "ctf-namespace.xml", "from-school-b.xml", 1)
    source = build_source(SourceConfig("ctf", "ctf", {"drop_dir": "in"}, tmp_path))
    warnings = []
    for batch in source.batches(SourceContext(now=NOW)):
        list(batch.records)
        warnings += [w for w in batch.warnings if w.code == "duplicate_pupil"]
    assert [(w.message, w.where) for w in warnings] == [
        ("this pupil is also in from-school-a.xml", "from-school-b.xml record 1")]


def test_marks_on_closed_days_count_the_same_from_a_strip_and_from_rows() -> None:
    """A CTF strip's closed-day marks (gathered at once) equal the SIMS rows' count, day by day."""
    from datetime import date
    from types import SimpleNamespace

    from cme_batch.dropfolder import MarkCheck

    term = SimpleNamespace(start=date(2025, 9, 3), end=date(2025, 10, 24))
    calendar = SimpleNamespace(terms=[term], closures=[date(2025, 9, 19)])
    start = date(2025, 9, 1)  # a Monday, two days before term
    marks = ("/\\" * 4 + "-#" + "/\\" * 9 + "N-" + "#\\" + "/" * 6) * 3 + "/"  # odd length: a lone AM at the end
    strip, rows = MarkCheck(calendar=calendar), MarkCheck(calendar=calendar)
    strip.strip(start, marks, 1)
    for i, code in enumerate(marks):
        rows.day(start + timedelta(days=i // 2), code, 1)
    assert strip.outside[0] == rows.outside[0] > 0
    assert [rows.closed(date(2025, m, d)) for m, d in ((9, 2), (9, 3), (9, 6), (9, 19), (10, 24), (10, 27))] == [
        True, False, True, True, False, True]  # before term, first day, Saturday, closure, last day, after term
    single = MarkCheck()
    single.strip(date(2025, 9, 6), "N", 1)  # one session, on a Saturday
    assert single.outside[0] == 1
    far = MarkCheck()
    far.strip(date.max - timedelta(days=1), "NNNNNN", 1)  # past the last date: left for the store to refuse
    assert far.outside[0] == 0


@settings(max_examples=300, deadline=None)
@given(marks=st.text(alphabet="/\\N#-ACéI", max_size=80), offset=st.integers(0, 60),
       closure=st.integers(0, 60), local=st.booleans())
def test_marks_string_checks_agree_with_checking_each_session(marks: str, offset: int, closure: int,
                                                              local: bool) -> None:
    """The at-C-speed check of a marks string (as bytes when it is ASCII) counts the same marks
    on closed days and the same unknown codes as checking the sessions one by one."""
    from types import SimpleNamespace

    from cme_batch.dropfolder import MarkCheck

    first = date(2025, 9, 1)
    calendar = SimpleNamespace(terms=[SimpleNamespace(start=date(2025, 9, 3), end=date(2025, 10, 24))],
                               closures=[first + timedelta(days=closure)])
    codes = SimpleNamespace(local={"A": "absent_unexplained"} if local else {}, subcodes={"é": "N"})
    start = first + timedelta(days=offset)
    whole, each = MarkCheck(codes, calendar), MarkCheck(codes, calendar)
    whole.strip(start, marks, 7)
    for i, code in enumerate(marks):
        each.day(start + timedelta(days=i // 2), code, 7)
        each.code(code, 7)
    assert whole.outside == each.outside
    assert whole.unknown == each.unknown


def test_a_link_in_the_drop_folder_is_refused_not_read_through(tmp_path: Path) -> None:
    """Whoever writes the share can plant a link to a file outside it (another school's export, the
    service's own files): it is refused by name, and the file it points at is neither read nor moved."""
    from cme_batch.errors import ImportRejected

    elsewhere = put(tmp_path / "other-school", "sims-pupils.xml", "pupils-secret.xml", 1)
    drop = tmp_path / "drop"
    put(drop, "sims-marks.xml", "marks-1.xml", 1)
    os.symlink(elsewhere, drop / "pupils-1.xml")
    source = sims(tmp_path, max_age_hours=0)
    with pytest.raises(ImportRejected, match="symbolic link") as refused:
        run(source)
    assert "pupils-1.xml" in str(refused.value)
    assert elsewhere.exists() and not (drop / "archive" / "pupils-secret.xml").exists()


def test_a_pipe_swapped_in_after_listing_is_refused_without_waiting(tmp_path: Path) -> None:
    import signal

    from cme_batch.xmlstream import XmlRefused, prepare

    fifo = tmp_path / "marks-1.xml"
    os.mkfifo(fifo)

    def stuck(*_: object) -> None:
        raise AssertionError("opening the pipe blocked: the night would hang")

    old = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(5)
    try:
        with pytest.raises(XmlRefused, match="not a regular file"):
            prepare(fifo)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_an_archive_folder_replaced_by_a_link_receives_nothing(tmp_path: Path) -> None:
    """The share's writer can replace ``archive`` by a link (to the state directory, or another
    school's drop folder, whose night would import these files): nothing is moved through it."""
    from cme_batch.errors import BadInputError

    drop = tmp_path / "drop"
    put(drop, "sims-pupils.xml", "pupils-1.xml", 1)
    elsewhere = tmp_path / "other-school-drop"
    elsewhere.mkdir()
    os.symlink(elsewhere, drop / "archive")
    with pytest.raises(BadInputError, match="archive folder .* is a symbolic link"):
        run(sims(tmp_path, max_age_hours=0, reports=["pupils"]))
    assert list(elsewhere.iterdir()) == [] and (drop / "pupils-1.xml").is_file()


@pytest.mark.parametrize("text", ["2025-11-03", "2025-11-03T00:00:00", "2025-11-03 00:00:00", "2025-11-03T00:00",
                                  "2025-11-03T00:00:00.0000000", "2025-11-03T00:00:00Z", "03/11/2025"])
def test_a_date_with_or_without_its_time_is_read(text: str) -> None:
    assert parse_date(text) == date(2025, 11, 3)


@pytest.mark.parametrize("text", ["2025-11-03junk", "2025-11-031", "2025-11-03T", "2025-11-03T99", "2025-11-03 x"])
def test_a_date_followed_by_anything_but_a_time_is_no_date(text: str) -> None:
    """Before, anything after the first ten characters was ignored: "2025-11-031" (a 31 typed
    after the 03) was read as 3 November without a word."""
    with pytest.raises(ValueError):
        parse_date(text)
