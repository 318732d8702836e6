"""Fuzzing ``cme-batch import``: SIMS and CTF files generated or damaged at random by Hypothesis.

Every input must end one of two ways, within a time bound:

- **imported** (exit 0), and then completely: every pupil, contact and marks run the adapter
  reads from the file is in the store;
- **rejected** (exit 2) with an error that names the file, and nothing stored at all.

Never a traceback, never exit 1, never a partial import, never a hang. Each example gets its
own fresh SQLite store (a copy of one migrated empty store). Inputs are either valid files
with their bytes damaged (cut, deleted, duplicated, overwritten, or with hostile fragments
spliced in: DTDs, entities, control characters, byte-order marks, tags) or files written by
the adapters' own writers from records with arbitrary values (any text, any date, any code).

The examples are derived from a fixed seed so ``make test`` is repeatable; set
``CME_FUZZ_EXAMPLES`` (default 25 per test) and ``CME_FUZZ_RANDOM=1`` to search further.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from cme_batch.cli import cli
from cme_batch.model import ContactRecord, EnrolmentRecord, FlagRecord, MarksRecord, PupilRecord, SchoolInfo
from cme_batch.store import migrate, open_store
from cme_batch.store import tables as t
from tests.reliability import SEED, copy_store, make_store

EXAMPLES = int(os.environ.get("CME_FUZZ_EXAMPLES", "25"))
TIME_LIMIT = 10.0  # seconds per input: a small file that takes longer is a hang
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("CME_FUZZ_RANDOM") != "1",
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture], database=None)
SCHOOL = SchoolInfo("916", "2999", "The John Moore Primary School")
#: Fragments spliced into files: what hostile, broken or merely odd exports contain.
HOSTILE = [
    b'<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>', b"&b;", b"&a;", b"&amp;",
    b"&#0;", b"&#x1F;", b"&#xD800;", b"&#65;", b"\x00", b"\x1b", b"\xff\xfe", b"\xef\xbb\xbf", b"\xe9", b"\xc3",
    b"<![CDATA[", b"]]>", b"<!--", b"-->", b"<?pi x?>", b"<", b">", b"</", b"/>", b"<Pupil>", b"</Pupil>",
    b"<Record>", b"</Record>", b"<UPN></UPN>", b"<UPN>A123456789012</UPN>", b"<Adno></Adno>",
    b"<DOB>2025-13-45</DOB>", b"<DOB>9999-12-31</DOB>", b"<DOB>0001-01-01</DOB>", b"<Date>31/02/2025</Date>",
    b"<Session>XM</Session>", b"<Mark>ZZZ</Mark>", b"<AttendanceMarks>N</AttendanceMarks>",
    b"<AttendanceStartDate>9999-12-30</AttendanceStartDate>", b"<Order>-1</Order>", b"<Order>99999999999999999999</Order>",
    b'<?xml version="1.0" encoding="UTF-16"?>', b'encoding="ISO-8859-1"', b'xmlns="urn:x"', b"x:", b'xmlns:x="urn:y"',
    b"\r\n", b"\t", b" " * 70_000,
]
OPS = ("truncate", "delete", "duplicate", "splice", "byte", "text")


# -- the base files and the fresh store per example ------------------------------------------------
@pytest.fixture(scope="module")
def school() -> list[Any]:
    """Five pupils of the demo school with a fortnight of marks: small files, every kind of record."""
    from cme_batch.demo.generator import generate

    records = generate(SEED, 80).records
    keys = {r.pupil_key for r in records if isinstance(r, PupilRecord)}
    chosen = sorted(keys)[:5]
    out: list[Any] = []
    for r in records:
        if getattr(r, "pupil_key", None) not in chosen:
            continue
        if isinstance(r, MarksRecord):
            r = replace(r, codes=r.codes[:28])
        out.append(r)
    return out


class Bases(dict[str, bytes]):
    """The valid files damaged by the tests (a short repr: Hypothesis prints its arguments)."""

    def __repr__(self) -> str:
        return f"<valid files: {', '.join(self)}>"


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory, school: list[Any]) -> Bases:
    from adapters.ctf.writer import write_ctf
    from adapters.sims.writer import write_reports

    folder = tmp_path_factory.mktemp("bases")
    sims = write_reports(folder / "sims", school)
    return Bases({"ctf": write_ctf(folder / "school.xml", school, SCHOOL).read_bytes(),
                  "sims-pupils": sims["pupils"].read_bytes(), "sims-marks": sims["marks"].read_bytes()})


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("template")
    engine = open_store(f"sqlite:///{folder / 'store.sqlite'}")
    migrate(engine)
    engine.dispose()
    copy_store(folder / "store.sqlite", folder / "empty.sqlite")
    return folder / "empty.sqlite"


class _Hang(Exception):
    pass


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(*_args: object) -> None:
        raise _Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# -- one example ---------------------------------------------------------------------------------------
def check_import(template: Path, data: bytes, name: str) -> str:
    """Import ``data`` as file ``name`` into a fresh store; assert the outcome rules; 'imported'/'rejected'."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = make_store(folder)
        shutil.copyfile(template, folder / "store.sqlite")
        path = folder / name
        path.write_bytes(data)
        with time_limit(TIME_LIMIT):
            result = CliRunner().invoke(cli, ["--config", str(config), "import", str(path)])
        output = result.output
        assert not isinstance(result.exception, _Hang), f"no outcome within {TIME_LIMIT} s"
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"crashed with {result.exception!r}")
        assert "Traceback" not in output
        assert result.exit_code in (0, 2), f"exit {result.exit_code}: {output[-2000:]}"
        url = f"sqlite:///{folder / 'store.sqlite'}"
        if result.exit_code == 2:
            assert name in output, f"the error does not name the file: {output[-1000:]}"
            assert stored_rows(url) == 0, "a rejected file left data in the store"
            return "rejected"
        assert_complete(url, config, path)
        return "imported"


def stored_rows(url: str) -> int:
    engine = open_store(url, create=False)
    try:
        with engine.connect() as conn:
            return sum(conn.execute(select(func.count()).select_from(table)).scalar_one()
                       for table in (t.pupils, t.pupil_keys, t.contacts, t.flags, t.enrolments, t.mark_strips,
                                     t.mark_changes, t.mark_alphabet))
    finally:
        engine.dispose()


def assert_complete(url: str, config: Path, path: Path) -> None:
    """Everything the adapter reads from the file is in the store: pupils, contacts, marks runs."""
    from cme_batch.app import App
    from cme_batch.importer import file_format, shared_options

    app = App(str(config))
    factory = file_format(path, None)
    records = list(factory.parse_file(path, shared_options(app)).records)
    pupils = {r.pupil_key for r in records if isinstance(r, PupilRecord)}
    contacts = {(r.pupil_key, r.contact_key) for r in records if isinstance(r, ContactRecord)}
    marked = {r.pupil_key for r in records if isinstance(r, MarksRecord) and any(r.codes)}
    engine = open_store(url, create=False)
    try:
        with engine.connect() as conn:
            keys = dict(conn.execute(select(t.pupil_keys.c.pupil_key, t.pupil_keys.c.pupil_id).where(
                t.pupil_keys.c.source == factory.format_name)).all())
            n_contacts = conn.execute(select(func.count()).select_from(t.contacts)).scalar_one()
            with_strips = set(conn.execute(select(t.mark_strips.c.pupil_id)).scalars())
    finally:
        engine.dispose()
        app._engine = None
    assert set(keys) == pupils, "pupils in the file and in the store differ"
    assert n_contacts == len(contacts), "contacts in the file and in the store differ"
    assert {keys[k] for k in marked} <= with_strips, "a pupil's marks are missing"


# -- damaged files -----------------------------------------------------------------------------------
@st.composite
def damaged(draw: st.DrawFn, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(OPS))
        pos = draw(st.integers(0, len(data)))
        if op == "truncate":
            del data[pos:]
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 300))]
        elif op == "duplicate":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 3000))]
        elif op == "splice":
            data[pos:pos] = draw(st.sampled_from(HOSTILE) | st.binary(min_size=1, max_size=12))
        elif op == "byte" and data:
            data[min(pos, len(data) - 1)] = draw(st.integers(0, 255))
        elif op == "text":
            start = data.find(b">", pos)
            end = data.find(b"<", start + 1)
            if 0 <= start < end:
                value = draw(st.text(max_size=20)).encode("utf-8", "surrogatepass")
                data[start + 1:end] = value
    return bytes(data)


@FUZZ
@given(data=st.data())
def test_damaged_ctf_is_imported_whole_or_rejected_naming_the_file(data: st.DataObject, bases: Bases,
                                                                    template: Path) -> None:
    check_import(template, data.draw(damaged(bases["ctf"])), "school.xml")


@FUZZ
@given(data=st.data())
def test_damaged_sims_export_is_imported_whole_or_rejected_naming_the_file(
        data: st.DataObject, bases: Bases, template: Path) -> None:
    kind = data.draw(st.sampled_from(["sims-pupils", "sims-marks"]))
    check_import(template, data.draw(damaged(bases[kind])), f"{kind[5:]}-20251201T020000.xml")


# -- files written from arbitrary records -------------------------------------------------------------
texts = st.none() | st.text(max_size=30)
days = st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31))
likely_days = days | st.dates(min_value=date(2025, 8, 1), max_value=date(2026, 7, 31))
codes = st.sampled_from(["/", "\\", "N", "O", "I", "L", "U", "G", "#", "-", "", "C1", "Y3", "I01", "@", "l", "ZZ"]) | \
    st.text(min_size=1, max_size=3)
upns = st.sampled_from(["A123456789012", "K916299925001", "916299925001", ""]) | st.text(max_size=15)


@st.composite
def pupils(draw: st.DrawFn, n: int) -> list[Any]:
    key = draw(upns).strip() or f"K9162999250{n:02d}"
    out: list[Any] = [PupilRecord(key, upn=key, legal_surname=draw(texts), legal_forename=draw(texts),
                                  dob=draw(st.none() | days), sex=draw(st.sampled_from([None, "M", "F", "X"])),
                                  year_group=draw(st.none() | st.sampled_from(["R", "3", "N1", "13"]) | st.text(max_size=5)),
                                  phones=tuple(draw(st.lists(st.text(max_size=12), max_size=2))))]
    for i in range(draw(st.integers(0, 2))):
        out.append(ContactRecord(key, f"order:{i}", priority=draw(st.none() | st.integers(-5, 10**12)),
                                 surname=draw(texts), forename=draw(texts),
                                 parental_responsibility=draw(st.none() | st.booleans())))
    if draw(st.booleans()):
        out.append(FlagRecord(key, draw(st.sampled_from(["looked_after", "ehcp", "sen_support"])),
                              start=draw(st.none() | days)))
    out.append(EnrolmentRecord(key, entry_date=draw(st.none() | likely_days), leaving_date=draw(st.none() | likely_days)))
    out.append(MarksRecord(key, draw(likely_days), tuple(draw(st.lists(codes, max_size=60)))))
    return out


@st.composite
def schools(draw: st.DrawFn) -> list[Any]:
    return [r for n in range(draw(st.integers(1, 4))) for r in draw(pupils(n))]


@FUZZ
@given(records=schools())
def test_ctf_written_from_arbitrary_values_is_imported_whole_or_rejected(records: list[Any], template: Path) -> None:
    from adapters.ctf.writer import write_ctf

    with tempfile.TemporaryDirectory() as tmp:
        try:
            data = write_ctf(Path(tmp) / "x.xml", records, SCHOOL).read_bytes()
        except (ValueError, OverflowError):
            return  # the writer cannot write these values (a date past 9999): nothing to read
    check_import(template, data, "school.xml")


@FUZZ
@given(records=schools())
def test_sims_written_from_arbitrary_values_is_imported_whole_or_rejected(records: list[Any], template: Path) -> None:
    from adapters.sims.writer import write_reports

    with tempfile.TemporaryDirectory() as tmp:
        try:
            paths = write_reports(Path(tmp), records)
        except (ValueError, OverflowError):
            return
        files = {kind: p.read_bytes() for kind, p in paths.items()}
    for kind in ("pupils", "marks"):
        check_import(template, files[kind], f"{kind}-20251201T020000.xml")


# -- what the fuzzing found: values the store cannot hold, on both stores -------------------------------
FIXTURES = Path(__file__).resolve().parents[1] / "adapters" / "fixtures"


def _first(pattern: str, replacement: str, text: str) -> str:
    changed, n = re.subn(pattern, replacement, text, count=1)
    assert n == 1, pattern
    return changed


@pytest.mark.parametrize(("fixture", "pattern", "replacement", "refused"), [
    ("ctf-25.xml", r"<AttendanceStartDate>[^<]*<", "<AttendanceStartDate>9999-12-30<", "outside the years 1900-2199"),
    ("ctf-25.xml", r"<AttendanceStartDate>[^<]*<", "<AttendanceStartDate>0001-01-01<", "outside the years 1900-2199"),
    ("ctf-25.xml", r"<AttendanceMarks>[^<]*<", "<AttendanceMarks>" + "N" * 200_000 + "<", "outside the years"),
    ("ctf-25.xml", r"<DOB>[^<]*<", "<DOB>9999-12-31<", "dob outside the years 1900-2199"),
    ("ctf-25.xml", r"<Surname>[^<]*<", "<Surname>" + "S" * 101 + "<", "legal_surname longer than 100 characters"),
    ("ctf-25.xml", r"<Surname>[^<]*<", "<Surname>" + "S" * 100 + "<", None),
    ("sims-marks.xml", r"<Mark>N<", "<Mark>NOTAREALCODE<", "longer than 10 characters"),
    ("sims-marks.xml", r"<Mark>N<", "<Mark>TENLETTERS<", None),
])
def test_values_the_store_cannot_hold_are_refused_naming_the_file(
        tmp_path: Path, store_url: str, engine: Any, fixture: str, pattern: str, replacement: str,
        refused: str | None) -> None:
    """Found by fuzzing: a far date crashed the import (and a far date of birth every later detect);
    an over-long value broke PostgreSQL's column limit. Both stores now refuse the file the same way."""
    from tests.conftest import write_config
    from tests.helpers import snapshot

    path = tmp_path / ("marks-20251201T020000.xml" if fixture.startswith("sims") else fixture)
    encoding = "iso-8859-1" if fixture.startswith("sims") else "utf-8"
    path.write_text(_first(pattern, replacement, (FIXTURES / fixture).read_text(encoding)), encoding)
    config = write_config(tmp_path, store_url)
    before = snapshot(engine)
    result = CliRunner().invoke(cli, ["--config", str(config), "import", str(path)])
    if refused is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2, result.output
    assert path.name in result.output and refused in result.output and "nothing imported" in result.output
    assert snapshot(engine) == before


def test_a_pupil_twice_in_one_file_is_stored_once(tmp_path: Path, store_url: str, engine: Any) -> None:
    """Found while rewriting the store's writer: the same pupil twice in a CTF (with contacts) stopped
    the import with a database error (exit 1). The later entry wins, as the CTF reader says."""
    from tests.conftest import write_config

    text = (FIXTURES / "ctf-25.xml").read_text("utf-8")
    first = re.search(r"<Pupil>.*?</Pupil>", text, re.S)
    assert first is not None
    path = tmp_path / "twice.xml"
    path.write_text(text.replace(first.group(0), first.group(0) + first.group(0), 1), "utf-8")
    result = CliRunner().invoke(cli, ["--config", str(write_config(tmp_path, store_url)), "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "appears twice in this file" in result.output
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.pupils)).scalar_one() == 2
        assert conn.execute(select(func.count()).select_from(t.contacts)).scalar_one() == 4


def test_upns_that_changed_places_are_refused_not_crashed(tmp_path: Path, store_url: str, engine: Any) -> None:
    """Two stored pupils whose UPNs a later export swaps: the database's one-UPN-per-pupil rule broke
    the import (exit 1); now the file is refused, naming it, and nothing changes."""
    from cme_batch import upn
    from tests.conftest import write_config
    from tests.helpers import snapshot

    a, b = upn.make("916299925101"), upn.make("916299925102")

    def export(name: str, first: str, second: str) -> Path:
        rows = "".join(f"<Record><Adno>{n}</Adno><UPN>{u}</UPN><Legal_x0020_Surname>S{n}</Legal_x0020_Surname>"
                       "</Record>" for n, u in ((1, first), (2, second)))
        path = tmp_path / name
        path.write_text(f'<?xml version="1.0" encoding="utf-8"?><SuperStarReport>{rows}</SuperStarReport>', "utf-8")
        return path

    config = write_config(tmp_path, store_url)
    ok = CliRunner().invoke(cli, ["--config", str(config), "import", str(export("pupils-1.xml", a, b))])
    assert ok.exit_code == 0, ok.output
    before = snapshot(engine)
    swapped = CliRunner().invoke(cli, ["--config", str(config), "import", str(export("pupils-2.xml", b, a))])
    assert swapped.exit_code == 2, swapped.output
    assert "pupils-2.xml" in swapped.output and "UPN of another pupil" in swapped.output
    assert a not in swapped.output and b not in swapped.output
    assert snapshot(engine) == before
