"""The SIMS adapter against what Capita's own documentation and real CommandReporter output show.

Shapes checked here (also noted in the SIMS adapter's README, report 4, session attendance marks):

- A report with a sub-report (multiple record sets) writes one row per combination, and a
  parent record whose sub-report has no rows still gets one row, with the sub-report's fields
  left out as empty (the real staff report saved in ``mantis/CHS.SIMSExchange``,
  ``CHS.SIMSExchange/bin/Debug/report.xml``: staff without lessons have a row holding only
  their own fields). In a marks report built as pupils with their sessions, a pupil with no
  session in the range (a new starter before the first register) is such a row.
- Capita's sample output (sims-partners.com, "Change tracking without change tracking") starts
  with an inline ``xs:schema`` under ``SuperStarReport``, carries a ``multiple_id`` field, and
  writes date-times with a UTC offset (``2004-06-14T00:00:00+01:00``).

The fixture ``sims-docs-review-marks-no-sessions.xml`` is constructed in that shape, not a real
export.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.sims.parser import read_file
from cme_batch.app import App
from cme_batch.errors import ImportRejected
from cme_batch.importer import import_files
from cme_batch.model import MarksRecord, PupilRecord
from cme_batch.store import tables as t

FIX = Path(__file__).with_name("fixtures")
NO_SESSIONS = FIX / "sims-docs-review-marks-no-sessions.xml"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    """What these tests store is the same on either backend: one is enough."""
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


def _records(path: Path) -> tuple[list[PupilRecord], list[MarksRecord]]:
    batch = read_file(path, {})
    recs = list(batch.records)
    return ([r for r in recs if isinstance(r, PupilRecord)], [r for r in recs if isinstance(r, MarksRecord)])


def test_marks_report_row_of_a_pupil_with_no_sessions_is_read_not_refused(app: App, tmp_path: Path) -> None:
    """A pupil with no session in the report's range comes out as a row with no Date, Session or
    Mark (CommandReporter keeps the parent's row and leaves the empty sub-report fields out). That
    row was refused ("Date is missing"), and with it the whole night's marks of every pupil: each
    night until the new starter's first register, no absence of any child was seen."""
    path = tmp_path / "marks-20251103-1900.xml"
    shutil.copyfile(NO_SESSIONS, path)
    pupils, marks = _records(path)
    assert [p.pupil_key for p in pupils] == ["1234", "1240", "1250"], "the pupil with no sessions is kept"
    assert [(m.pupil_key, m.start, m.codes) for m in marks] == [
        ("1234", date(2025, 11, 3), ("N", "N")), ("1250", date(2025, 11, 3), ("O",))]
    (result,) = import_files(app, [path], "sims-xml")
    assert result.status == "ok"
    with app.engine().connect() as conn:
        assert conn.execute(select(t.mark_strips)).first() is not None, "the other pupils' marks are stored"


def test_unnamed_marks_export_starting_with_a_pupil_with_no_sessions_is_read_as_marks(tmp_path: Path) -> None:
    """A file not named after its report is judged by its fields: a first row of identity fields
    alone (the pupil with no sessions) made it a pupils report, and every marks row after it was
    refused as another report's."""
    text = NO_SESSIONS.read_text(encoding="utf-8")
    records = text.split("  <Record>\n")
    head, rows = records[0], ["  <Record>\n" + r for r in records[1:]]
    tail = rows[-1][rows[-1].index("</Record>\n") + len("</Record>\n"):]
    rows[-1] = rows[-1][:len(rows[-1]) - len(tail)]
    path = tmp_path / "export.xml"
    path.write_text(head + rows[2] + rows[0] + rows[1] + rows[3] + tail, encoding="utf-8")
    pupils, marks = _records(path)
    assert {p.pupil_key for p in pupils} == {"1234", "1240", "1250"}
    assert [(m.pupil_key, m.codes) for m in marks] == [("1234", ("N", "N")), ("1250", ("O",))]


@pytest.mark.parametrize("fields", [
    "<Session>AM</Session><Mark>N</Mark>",
    "<Date>2025-11-03T00:00:00+00:00</Date><Mark>N</Mark>",
    "<Date>2025-11-03T00:00:00+00:00</Date>",
    "<Mark>N</Mark>",
])
def test_marks_row_with_only_part_of_its_session_is_still_refused(tmp_path: Path, fields: str) -> None:
    """Only a row with none of Date, Session and Mark is a pupil with no sessions: a row giving a
    mark or a date without the rest cannot be placed, and is refused as before."""
    path = tmp_path / "marks-1.xml"
    path.write_text('<?xml version="1.0" standalone="yes"?>\n<SuperStarReport>\n  <Record>\n'
                    f"    <Adno>001234</Adno>{fields}\n  </Record>\n</SuperStarReport>\n", encoding="utf-8")
    with pytest.raises(ImportRejected) as info:
        _records(path)
    assert any("record 1, field Date" in p or "record 1, field Session" in p for p in info.value.problems), \
        info.value.problems
