"""The daily "no register mark" warning and a child whose place was not taken up.

A child given a place from Monday who never came may have no register mark at all: that child is
already a case of its own (place not taken up), on the office's lists and the DSL's. The warning
that a register was not completed is for the children on no list; it must not count this one.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import Engine

from cme_batch.app import App
from cme_batch.model import EnrolmentRecord
from tests.integration.test_morning_steps import lay, pupil, section
from tests.integration.test_morning_steps import marks as regs
from tests.integration.test_office_morning import (
    morning,
    school,  # noqa: F401 - the fixture (on SQLite and PostgreSQL: conftest's store_url)
    summary_of,
)

FRI, MON, TUE = date(2025, 11, 7), date(2025, 11, 10), date(2025, 11, 11)
GAPS = "Register gaps and unknown codes"


def test_a_place_not_taken_up_is_not_counted_as_a_register_not_completed(
        school: App, engine: Engine) -> None:  # noqa: F811
    """Monday: Ann (4C) is present, Ben (4C) has no mark (his register line was not completed) and
    Nia (5B), given a place from Monday, never came and has no mark at all. The summary's warning
    counts Ben alone, in class 4C; Nia is on the list of places not taken up. Before, it said
    "for 2 pupil(s) on roll (class(es): 4C, 5B)": the office was sent to complete a register for a
    child it was already looking for, and 5B's register read as not taken."""
    lay(school, pupil("1", "Ann"), pupil("2", "Ben"), pupil("3", "Nia", reg_group="5B"),
        EnrolmentRecord("3", admission_date=MON),
        *regs("1", {FRI: ("/", "\\"), MON: ("/", "\\")}), *regs("2", {FRI: ("/", "\\")}))
    assert morning(school, TUE) == MON
    text = summary_of(engine, MON)
    notes = section(text, GAPS)
    assert "no register mark on Mon 10 Nov 2025 for 1 pupil(s) on roll (class(es): 4C)" in notes, notes
    assert "Nia Pupil" in section(text, "Places not taken up")


def test_no_warning_when_the_only_child_without_a_mark_is_a_place_not_taken_up(
        school: App, engine: Engine) -> None:  # noqa: F811
    """Every register was completed, Nia's aside (she never came): no "no register mark" warning on
    Monday or Tuesday. Before, each morning warned of a register not completed in class 5B."""
    lay(school, pupil("1", "Ann"), pupil("3", "Nia", reg_group="5B"), EnrolmentRecord("3", admission_date=MON),
        *regs("1", {FRI: ("/", "\\"), MON: ("/", "\\"), TUE: ("/", "\\")}))
    for night, as_of in ((TUE, MON), (date(2025, 11, 12), TUE)):
        assert morning(school, night) == as_of
        text = summary_of(engine, as_of)
        assert "no register mark" not in text, section(text, GAPS)
        assert "Nia Pupil" in section(text, "Places not taken up")
