"""The office's steps when the MIS corrects an earlier register mark (a late correction).

A correction can move the first day of an absence earlier (the streak jumps past the office's
days overnight) or later (the streak gets shorter, or is a new one). Each test drives the nights
as the timer does (``test_office_morning.morning``: detect, with its catch-up, then the summary
stage), in a real store (SQLite and PostgreSQL), and reads what the office's summary and its action
emails say.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import Engine

from cme_batch.app import App
from cme_batch.model import FlagRecord
from tests.integration.test_morning_steps import lay, pupil, section
from tests.integration.test_morning_steps import marks as regs
from tests.integration.test_office_morning import (
    CALLS,
    CONTACTS,
    STEPS,
    actions,
    listed,
    morning,
    school,  # noqa: F401 - the fixture (on SQLite and PostgreSQL: conftest's store_url)
    summary_of,
)

MON, TUE, WED, THU, FRI = (date(2025, 11, 10) + timedelta(days=i) for i in range(5))
SEEN = {date(2025, 11, 7): ("/", "\\")}
CONTACT_ALL, FIRST_CALL = "contact every emergency contact", "first-day call"


def office_lists(text: str) -> str:
    return section(text, CALLS) + section(text, CONTACTS)


# -- a correction moves the first day earlier -------------------------------------------------------
def test_a_correction_that_jumps_past_day_two_still_asks_for_the_emergency_contacts(
        school: App, engine: Engine) -> None:  # noqa: F811
    """Present Monday, absent Tuesday: Wednesday's summary has the first-day call. That night the MIS
    corrects Monday to N and Wednesday is N too: the absence is 3 school days long, past the office's
    days. Thursday's summary must still ask for every emergency contact (once: not again on Friday).
    Before, the child went from the first-day calls straight to the DSL's review: nobody was ever
    asked to try the emergency contacts."""
    lay(school, pupil("1", "Ava"), *regs("1", {**SEEN, MON: ("/", "\\"), TUE: ("N", "N")}))
    assert morning(school, WED) == TUE
    assert listed(summary_of(engine, TUE), CALLS, "Ava Pupil") == 1
    lay(school, *regs("1", {MON: ("N", "N"), WED: ("N", "N")}))  # the late correction, and Wednesday
    assert morning(school, THU) == WED
    thu = summary_of(engine, WED)
    assert listed(thu, CONTACTS, "Ava Pupil") == 1, section(thu, STEPS)
    assert "Ava Pupil" not in section(thu, CALLS) + section(thu, STEPS)
    lay(school, *regs("1", {THU: ("N", "N")}))
    morning(school, FRI)
    fri = summary_of(engine, THU)
    assert "Ava Pupil" not in office_lists(fri) and listed(fri, STEPS, "Ava Pupil") == 1
    assert [step for _, step in actions(engine)] == [FIRST_CALL, CONTACT_ALL]
    assert len({ref for ref, _ in actions(engine)}) == 1


def test_a_missed_second_morning_still_asks_for_the_emergency_contacts(
        school: App, engine: Engine) -> None:  # noqa: F811
    """Absent from Monday: Tuesday's summary had the first-day call, the server was off on Wednesday
    morning, and Thursday's run catches up to day 3. The office was told the first step, never the
    second: Thursday's summary asks for every emergency contact. Before, one summary since the absence
    began counted as the office told of everything, and the contacts were never asked for."""
    lay(school, pupil("1", "Bo"), *regs("1", {**SEEN, MON: ("N", "N"), TUE: ("N", "N"), WED: ("N", "N")}))
    assert morning(school, TUE) == MON
    assert morning(school, THU) == WED  # Wednesday morning's run never happened
    thu = summary_of(engine, WED)
    assert listed(thu, CONTACTS, "Bo Pupil") == 1, section(thu, STEPS)
    assert [step for _, step in actions(engine)] == [FIRST_CALL, CONTACT_ALL]


# -- a correction moves the first day later ----------------------------------------------------------
def test_a_first_day_corrected_to_present_does_not_ask_the_contacts_again(
        school: App, engine: Engine) -> None:  # noqa: F811
    """Absent Monday and Tuesday: the first-day call, then the emergency contacts. On Wednesday night
    the MIS corrects Monday to present, and Wednesday is N: the absence (a new case, Monday having
    broken the old one) is Tuesday and Wednesday, 2 school days, and the contacts were tried on
    Wednesday morning, during it. Thursday's summary must not ask for them again. Before, the child
    was on the emergency contacts list again, with a second action email."""
    lay(school, pupil("1", "Cy"), *regs("1", {**SEEN, MON: ("N", "N"), TUE: ("N", "N")}))
    morning(school, TUE)
    morning(school, WED)
    assert listed(summary_of(engine, TUE), CONTACTS, "Cy Pupil") == 1
    lay(school, *regs("1", {MON: ("/", "\\"), WED: ("N", "N")}))
    assert morning(school, THU) == WED
    thu = summary_of(engine, WED)
    assert "Cy Pupil" not in office_lists(thu)
    assert listed(thu, STEPS, "Cy Pupil") == 1  # still absent, and said so
    assert [step for _, step in actions(engine)] == [FIRST_CALL, CONTACT_ALL]


def test_a_shorter_streak_does_not_put_the_child_back_on_the_first_day_calls(
        school: App, engine: Engine) -> None:  # noqa: F811
    """Absent Monday and Tuesday (the first-day call, then the contacts); on Wednesday night the MIS
    corrects Monday and Tuesday to X (not required to attend) and Wednesday is N: the same case,
    now one school day long. The office tried every contact already: the child must not go back on
    the first-day calls. Before, Thursday's summary listed the child there again. The child is a
    young carer (the DSL's review from day 1): the office's line for the child says only what the
    school days say, as for any child."""
    lay(school, pupil("1", "Di"), FlagRecord("1", "young_carer"),
        *regs("1", {**SEEN, MON: ("N", "N"), TUE: ("N", "N")}))
    morning(school, TUE)
    morning(school, WED)
    lay(school, *regs("1", {MON: ("X", "X"), TUE: ("X", "X"), WED: ("N", "N")}))
    assert morning(school, THU) == WED
    thu = summary_of(engine, WED)
    assert "Di Pupil" not in office_lists(thu) and "0 first-day call(s)" in thu
    [row] = [line for line in section(thu, STEPS).splitlines() if line.startswith("Di Pupil")]
    assert "1 first-day call, day 1" in row and "already asked" in row
    assert "DSL review" not in thu and "young carer" not in thu.lower()
    assert [step for _, step in actions(engine)] == [FIRST_CALL, CONTACT_ALL]
