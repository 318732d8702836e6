"""A CTF drop folder's refused file set aside so that the files after it are read, and named on
every morning's emails until a person deletes it (``importer._ingest_one``, ``DropFolder.set_aside``).

Before, the refused file stayed first in line: every night refused it again, and the corrected
export after it was never read (``tests/integration/test_sources_review15.py``).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.integration.test_sources_review15 import (
    ABSENT,
    FRI,
    NEXT_MON,
    THU,
    TUE,
    WED,
    banners,
    cases,
    mail,
    night,
    refused_tuesday,
    school_ctf,
    stage,
)
from tests.integration.test_sources_review15 import store_url as store_url  # noqa: F401 (the fixture)
from tests.replies_support import KEY, KEY_ENV


def not_imported(text: str) -> list[str]:
    return [line for line in text.splitlines() if "NOT IMPORTED:" in line]


def test_a_refused_ctf_is_named_every_morning_until_deleted_and_the_files_after_it_are_read(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv(KEY_ENV, KEY)
    app, clock, exports = refused_tuesday(tmp_path, store_url, engine)

    def ctf(evening: date, seq: int) -> Path:
        return school_ctf(exports, evening, seq)

    exports.day(WED, absent=(ABSENT,))
    ctf(WED, 3)  # corrected in the MIS and exported again, the same night
    report = night(app, clock, THU)
    assert stage(report, "ingest")[0] == "failed", "the night a file is refused fails: the failure email"
    assert "9162999_CTF_9162999_002.xml: rejected" in stage(report, "ingest")[1]
    assert [(c.kind, c.status, c.episode_start, c.school_days) for c in cases(engine)] == [
        ("unexplained_absence", "open", TUE, 2)], "the corrected CTF after the refused one was read"
    refused = tmp_path / "drop" / "archive" / "refused"
    assert [p.name for p in refused.iterdir()] == ["9162999_CTF_9162999_002.xml"]
    for purpose in ("summary", "digest"):
        body = mail(engine, purpose)[1]
        assert any("9162999_CTF_9162999_002.xml: rejected" in b for b in banners(body)), body
        (waiting,) = not_imported(body)
        assert "9162999_CTF_9162999_002.xml" in waiting and str(refused) in waiting
    exports.day(THU)
    ctf(THU, 4)
    assert not night(app, clock, FRI).failed
    subject, body = mail(engine, "summary")
    assert "DATA NOT CURRENT" not in subject and banners(body) == []
    assert len(not_imported(body)) == 1, "named again the next morning, until deleted"
    (refused / "9162999_CTF_9162999_002.xml").unlink()  # dealt with
    exports.day(FRI)
    ctf(FRI, 5)
    night(app, clock, NEXT_MON)  # (58 hours since Friday evening's export: stale, a separate matter)
    assert not_imported(mail(engine, "summary")[1]) == []


def test_a_file_refused_whole_waits_a_night_then_is_set_aside_if_unchanged(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A file refused as a whole (cut off: not well-formed) may be one the MIS is still writing
    under its final name: the first night leaves it first in line (the files after it wait a night);
    refused again the next night, byte for byte, it is set aside and the files after it are read."""
    monkeypatch.setenv(KEY_ENV, KEY)
    app, clock, exports = refused_tuesday(tmp_path, store_url, engine)
    cut = tmp_path / "drop" / "9162999_CTF_9162999_002.xml"
    whole = cut.read_bytes()
    cut.write_bytes(whole[: len(whole) // 2])
    exports.touch(cut, TUE)
    exports.day(WED, absent=(ABSENT,))
    school_ctf(exports, WED, 3)
    report = night(app, clock, THU)
    assert stage(report, "ingest")[0] == "failed" and cut.exists(), "left in place the first night"
    assert cases(engine) == []
    exports.day(THU)
    school_ctf(exports, THU, 4)
    night(app, clock, FRI)
    assert not cut.exists() and (tmp_path / "drop" / "archive" / "refused" / cut.name).exists()
    assert [(c.kind, c.episode_start, c.school_days) for c in cases(engine)] == [("unexplained_absence", TUE, 2)]
    assert len(not_imported(mail(engine, "summary")[1])) == 1
