"""The log filter withholds any value carrying a pupil's name, UPN or date of birth, and counts it."""

from __future__ import annotations

import io
import json
from datetime import date

import structlog

from cme_batch import log
from cme_batch.logfilter import WITHHELD, IdentityFilter, _date_forms


def test_values_with_identity_are_withheld_and_counted() -> None:
    f = IdentityFilter(["A123456789012", "Zoë", "Smith-Jones", *_date_forms(date(2018, 5, 1))])
    event = {"event": "import done", "level": "info", "file": "pupils.xml", "pupil": "zoë smith-jones",
             "nested": {"upn": "A123456789012"}, "dob": "01/05/2018", "count": 3, "ok": ["fine", "words"]}
    out = f(None, "info", dict(event))
    assert out["pupil"] == WITHHELD and out["nested"]["upn"] == WITHHELD and out["dob"] == WITHHELD
    assert out["file"] == "pupils.xml" and out["count"] == 3 and out["ok"] == ["fine", "words"]
    assert f.withheld == 3


def test_filter_runs_in_the_configured_logger() -> None:
    stream = io.StringIO()
    f = IdentityFilter(["Ravensworth"])
    log.extra_processors.append(f)
    try:
        log.configure("info", "json", stream)
        structlog.get_logger().info("case opened", ref="CME-2025-0001", note="Ravensworth family away")
    finally:
        log.extra_processors.remove(f)
        log.configure("info", "json")
    line = json.loads(stream.getvalue().strip())
    assert line["ref"] == "CME-2025-0001" and line["note"] == WITHHELD


def test_a_crash_never_prints_the_pupil_data_in_its_message(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from cme_batch import cli as cli_mod

    f = IdentityFilter(["Ravensworth", "A123456789012"])
    log.extra_processors.append(f)

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("duplicate key (upn)=(A123456789012) for Ravensworth")

    monkeypatch.setattr(cli_mod, "cli", crash)
    try:
        log.configure("info", "json")
        with pytest.raises(SystemExit) as exit_info:
            cli_mod.main()
    finally:
        log.extra_processors.remove(f)
        log.configure("info", "json")
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "internal error (RuntimeError)" in err
    assert "Ravensworth" not in err and "A123456789012" not in err
    assert '"exception": "[withheld]"' in err  # the traceback went through a filter, and was withheld


def test_an_import_adds_the_identities_it_stored_and_a_new_filter_learns_everyone(engine) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    from sqlalchemy import insert, select

    from cme_batch.logfilter import identities_from_store
    from cme_batch.store import tables as t

    earlier, now = datetime(2025, 9, 1, tzinfo=UTC), datetime(2025, 9, 2, 5, 30, tzinfo=UTC)
    with engine.begin() as conn:
        school = conn.execute(insert(t.schools).values(la_number="916", establishment_number="2999", name="S")
                              ).inserted_primary_key[0]
        conn.execute(insert(t.pupils), [
            {"school_id": school, "upn": "A123456789012", "legal_surname": "Older", "legal_forename": None,
             "dob": date(2016, 1, 2), "created_at": earlier, "updated_at": earlier},
            {"school_id": school, "upn": "B123456789012", "legal_surname": "Newer", "legal_forename": "Mary Ann",
             "dob": date(2017, 3, 4), "created_at": now, "updated_at": now},
            {"school_id": school, "upn": None, "legal_surname": "Newer", "legal_forename": None, "dob": None,
             "created_at": now, "updated_at": now}])
        newer = conn.execute(select(t.pupils.c.id).where(t.pupils.c.legal_surname == "Newer")).scalars().all()
    assert sorted(identities_from_store(engine, pupil_ids=newer)) == sorted(
        ["B123456789012", "Newer", "Mary Ann", *_date_forms(date(2017, 3, 4))])
    assert identities_from_store(engine, pupil_ids=[]) == []
    everyone = IdentityFilter(identities_from_store(engine))
    assert {"a123456789012", "older", "newer", "mary", "ann", "02/01/2016", "2017-03-04"} <= everyone.tokens


def test_a_name_or_birth_date_written_another_way_is_still_withheld() -> None:
    """The same pupil reaches a log spelt as another system wrote it: accents, apostrophes, date formats."""
    f = IdentityFilter(["A123456789012", "Zoë", "Renée", "O'Brien", "Łukasz", "Søren", "Ægir", "Marsh-Ellery",
                        *_date_forms(date(2018, 5, 1))])
    written = ["zoe", "Zoe\u0308 (NFD)", "RENEE", "O\u2019Brien", "OBrien", "a123456789012", "20180501",
               "lukasz", "ŁUKASZ", "Soren", "AEgir", "Marsh-Ellery", "Marsh", "ellery family",
               "upnA123456789012", "key_a123456789012x",
               "1/5/18", "01 May 2018", "1st May 2018", "May 1, 2018", "dob: 2018-05-01T00:00:00",
               "[parameters: {'dob': datetime.date(2018, 5, 1), 'id': 17}]",
               ValueError("no school place for Zoë"), b"pupil O'Brien"]
    out = f(None, "info", {"event": "x", **{f"v{i}": v for i, v in enumerate(written)}})
    assert [k for k, v in out.items() if k != "event" and v != WITHHELD] == []
    assert f.withheld == len(written)


def test_ordinary_values_are_not_withheld() -> None:
    f = IdentityFilter(["Zoë", "O'Brien", "Marsh-Ellery", *_date_forms(date(2018, 5, 1))])
    ordinary = {"event": "stage finished", "file": "marks-20251219T180000.xml", "ref": "CME-2025-0001",
                "note": "files 01 to 05 of the 2018 intake",  # a birth date's parts are not withheld alone
                "as_of": "2025-12-19", "seconds": 1.5, "counts": {"pupils": 420}, "version": "2.0.36",
                "at": date(2025, 5, 1), "error": ValueError("row 12: bad code '#'")}
    out = f(None, "info", dict(ordinary))
    assert out == ordinary | {"at": "2025-05-01"} and f.withheld == 0


def test_text_outside_structlog_has_only_the_identifying_words_withheld(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An error printed by the CLI, a library's own log line: checked too, keeping what helps."""
    import logging
    import sys

    import click

    from cme_batch import logfilter
    from cme_batch.cli import handle_errors
    from cme_batch.errors import BadInputError

    f = IdentityFilter(["Ravensworth", "A123456789012", *_date_forms(date(2018, 5, 1))])
    monkeypatch.setattr(logfilter, "_active", f)
    assert logfilter.scrub("record 3, field Surname: 'Ravensworth' is too long") == \
        f"record 3, field Surname: '{WITHHELD}' is too long"
    assert logfilter.scrub("born 1 May 2018, in pupils.xml") == WITHHELD  # no one word to take out
    assert logfilter.scrub("record 3, field UPN: bad check letter") == "record 3, field UPN: bad check letter"

    @handle_errors
    def command() -> None:
        raise BadInputError("duplicate key (upn)=(A123456789012) in pupils")

    messages: list[str] = []
    monkeypatch.setattr(click, "echo", lambda text, err=False: messages.append(text))
    try:
        command()
    except SystemExit:
        pass
    assert messages == [f"error: duplicate key (upn)=({WITHHELD}) in pupils"]

    try:
        raise ValueError("row ('Ravensworth',)")
    except ValueError:
        record = logging.LogRecord("sqlalchemy.engine", logging.WARNING, __file__, 1, "INSERT %s failed",
                                   ("Ravensworth",), sys.exc_info())
    assert log._library_lines.filter(record)
    assert record.getMessage().startswith(f"INSERT {WITHHELD} failed") and record.exc_info is None
