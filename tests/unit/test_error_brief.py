"""``errors.brief``: a stored error as the journal, ``status`` and the morning banner show it."""

from __future__ import annotations

from cme_batch.errors import ImportRejected, brief


def test_a_refused_file_is_shown_with_the_records_and_fields_it_names() -> None:
    exc = ImportRejected("marks-1.xml", [f"record {n}, field Session: not AM or PM: 'XX'" for n in (7, 9)])
    assert brief(str(exc)) == ("marks-1.xml: rejected, nothing imported (2 problem(s)): "
                               "record 7, field Session: not AM or PM: 'XX'; record 9, field Session: not AM or PM: 'XX'")


def test_many_problems_are_cut_with_how_many_more() -> None:
    exc = ImportRejected("pupils-1.xml", [f"record {n}, field UPN: bad check letter" for n in range(1, 61)])
    shown = brief(str(exc), most=3)
    assert shown.endswith("record 3, field UPN: bad check letter; and 57 more"), shown


def test_a_one_line_error_is_left_as_it_is() -> None:
    assert brief("source sims: the newest 'marks' export is 30 hours old (limit 26)") == \
        "source sims: the newest 'marks' export is 30 hours old (limit 26)"
    assert brief("") == ""
