"""The store's short ways for a day's register give exactly what its general loops give.

``_Writer`` writes a chunk of pupils named by UPN alone (``_write_named``) and one year's run of
one-character codes (the short branch of ``write_marks``) without the general per-record work.
Here random stores and random day batches (known and unknown pupils, UPNs moved, taken by
another pupil or given twice, marks over empty sessions and over real marks, runs across a year
boundary, codes needing the alphabet) are stored twice, once with the short ways and once with
them turned off: the stores must end identical, and a refused batch must be refused with the same
message. A check that the short ways were taken keeps the test from comparing the general loops
with themselves.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cme_batch.errors import BadInputError
from cme_batch.model import MarksRecord, PupilRecord, SourceBatch
from cme_batch.store import ingest, open_store
from tests.helpers import general_loops_only, migrated_template, snapshot

NOW = datetime(2026, 7, 21, 6, 0, tzinfo=UTC)
KEYS = [f"A91620002400{i}" for i in range(6)]
UPNS = [*KEYS, "B916200024099", None]
DAYS = [date(2026, 7, 20), date(2026, 7, 21), date(2026, 7, 31), date(2026, 8, 3)]  # the last: another year
RUNS = ["/\\", "NN", "--", "/", "N/\\N", "C", "/\\/\\/\\/\\/\\"]


@pytest.fixture(scope="module")
def template() -> Iterator[Path]:
    with migrated_template() as path:
        yield path


SAME = "same"  # the pupil's own UPN (its key), the usual case, drawn most often
stored = st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(DAYS), st.sampled_from(RUNS)), max_size=8)
day = st.lists(st.tuples(st.sampled_from([*KEYS * 4, "Z916200024777"]), st.sampled_from([SAME] * 8 + UPNS),
                         st.sampled_from(DAYS),
                         st.one_of(st.sampled_from(RUNS), st.tuples(st.sampled_from(["N", "C1", ""]),
                                                                    st.sampled_from(["/", "X"])))),
               min_size=1, max_size=10)


def _store(template: Path, folder: Path, name: str, first: list[Any], second: list[Any], short: bool,
           monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], str | None, dict[str, int]]:
    path = folder / f"{name}.sqlite"
    shutil.copy(template, path)
    engine = open_store(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            school = ingest.ensure_school(conn, "916", "2999", "Test")
        pupils = [PupilRecord(k, upn=k, legal_surname=f"S{i}", dob=date(2019, 1, 1) + timedelta(days=i))
                  for i, k in enumerate(KEYS)]
        marks = [MarksRecord(k, d, run) for k, d, run in first]
        ingest.apply_batch(engine, school, SourceBatch("ctf", "year", records=[*pupils, *marks]), NOW)
        with monkeypatch.context() as m:
            m.setattr(ingest, "PUPIL_CHUNK", 3)  # several chunks in a batch of a few pupils
            m.setattr(ingest, "RECORD_CHUNK", 4)
            if short:
                m.setattr(ingest, "SPLICE_FROM", 1)  # the database's splice for a few pupils too
            else:
                general_loops_only(m)
            records: list[Any] = []
            for key, upn, start, run in second:
                records += [PupilRecord.named(key, key if upn == SAME else upn), MarksRecord(key, start, run)]
            try:
                result = ingest.apply_batch(engine, school, SourceBatch("ctf", "day", records=records), NOW)
                error, counts = None, result.counts
            except BadInputError as exc:
                error, counts = str(exc), {}
        return snapshot(engine), error, counts
    finally:
        engine.dispose()


@settings(deadline=None, max_examples=80)
@given(first=stored, second=day)
@example(first=[(KEYS[0], DAYS[1], "/\\")], second=[(KEYS[0], SAME, DAYS[1], "N\\")])  # a correction
@example(first=[(KEYS[0], DAYS[1], "NN")], second=[(KEYS[0], SAME, DAYS[0], "/\\/\\/")])  # over part of a run
@example(first=[], second=[(KEYS[0], KEYS[1], DAYS[1], "/\\")])  # another stored pupil's UPN
@example(first=[], second=[(KEYS[0], "B916200024099", DAYS[1], "/\\"), (KEYS[1], SAME, DAYS[1], "/\\"),
                           (KEYS[2], SAME, DAYS[1], "NN"), (KEYS[0], "B916200024099", DAYS[2], "N")])  # a new UPN
@example(first=[], second=[(KEYS[0], "B916200024099", DAYS[1], "/"), (KEYS[1], "B916200024099", DAYS[1], "/")])
def test_the_short_ways_store_what_the_general_loops_store(template: Path, first: list[Any], second: list[Any]
                                                          ) -> None:
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as monkeypatch:
        short = _store(template, Path(folder), "short", first, second, True, monkeypatch)
        general = _store(template, Path(folder), "general", first, second, False, monkeypatch)
    assert short == general


def test_a_day_of_known_pupils_takes_the_short_ways(template: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    taken = {"named": 0, "general": 0}
    write_named = ingest._Writer._write_named

    def counting(self: Any, records: list[PupilRecord], first: int) -> bool:
        done = write_named(self, records, first)
        taken["named" if done else "general"] += 1
        return done

    monkeypatch.setattr(ingest._Writer, "_write_named", counting)
    general_runs: list[str] = []
    lay = ingest.mk.StripWriter.lay

    def laying(strip: str, start: int, symbols: list[str] | str) -> tuple[str, list[tuple[int, str, str]]]:
        general_runs.append(str(symbols))
        return lay(strip, start, symbols)

    monkeypatch.setattr(ingest.mk.StripWriter, "lay", staticmethod(laying))
    spliced: list[int] = []
    splice = ingest.bulk.splice_texts

    def splicing(*args: Any) -> int:
        spliced.append(splice(*args))
        return spliced[-1]

    monkeypatch.setattr(ingest.bulk, "splice_texts", splicing)
    first = [(k, date(2026, 7, 20), "/\\") for k in KEYS]
    second = [(k, k, date(2026, 7, 21), "N\\") for k in KEYS]
    snap, error, counts = _store(template, tmp_path, "day", first, second, True, monkeypatch)
    assert error is None and counts["marks"] == 2 * len(KEYS)
    assert taken == {"named": 2, "general": 1}  # the day in chunks of 3; the year (detailed pupils) the general way
    assert general_runs == []  # every run laid the short way
    assert sum(spliced) == len(KEYS)  # each pupil's day laid by the database (chunks of 4 records: 2 pupils each)
    strips = {row[0]: row[2] for row in snap["mark_strips"]}
    assert all(s.count("N\\") == 1 and s.count("/\\") == 1 for s in strips.values())
