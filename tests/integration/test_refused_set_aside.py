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

from adapters.ctf.writer import write_ctf
from cme_batch.model import SchoolInfo
from tests.integration.test_sources_review15 import (
    ABSENT,
    FRI,
    MON,
    NEXT_MON,
    THU,
    TUE,
    WED,
    SimsExports,
    banners,
    cases,
    mail,
    night,
    school_app,
    stage,
)
from tests.integration.test_sources_review15 import store_url as store_url  # noqa: F401 (the fixture)
from tests.replies_support import KEY, KEY_ENV

CTF = '\n[sources.ctf]\nadapter = "ctf"\ndrop_dir = "drop"\n'
SCHOOL = SchoolInfo("916", "2999", "The John Moore Primary School")


def not_imported(text: str) -> list[str]:
    return [line for line in text.splitlines() if "NOT IMPORTED:" in line]


def test_a_refused_ctf_is_named_every_morning_until_deleted_and_the_files_after_it_are_read(
        tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.setenv(KEY_ENV, KEY)
    app, clock = school_app(tmp_path, store_url, engine, CTF)
    exports = SimsExports(tmp_path / "drop")  # the registers in the MIS, written here as CTFs
    exports.folder.mkdir()

    def ctf(evening: date, seq: int) -> Path:
        path = write_ctf(exports.folder / f"9162999_CTF_9162999_{seq:03}.xml", exports.records(), SCHOOL)
        exports.touch(path, evening)
        return path

    ctf(MON, 1)
    assert not night(app, clock, TUE).failed
    exports.day(TUE, absent=(ABSENT,))
    bad = ctf(TUE, 2)
    bad.write_text(bad.read_text(encoding="utf-8").replace("<DOB>2017-01-21</DOB>", "<DOB>2017-02-30</DOB>"),
                   encoding="utf-8")
    exports.touch(bad, TUE)
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
