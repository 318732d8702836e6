"""Adversarial inputs for the day's-register fast paths, against the general code they short-cut.

1. ``adapters/ctf/fastread.py`` (libxml2 + a generated XSLT, one line per pupil) against the
   general reader (expat + ``_Reader.pupil``): the same records, order, warnings, problems, refusal
   text and ``seen`` map, for files built to sit on the edge of what the fast way accepts; and the
   fast way must never raise where the general reader reads the file, nor use far more memory.
2. ``cme_batch/store/ingest.py`` (``_Writer._write_named`` and the inline branch of
   ``_Writer.write_marks``) and ``model.packed``/``unpacked`` against the general loops: the same
   store, counts and refusal, with ``marks_complete``, a second source, codes as tuples and strings,
   empty runs and tiny chunks.

Tests marked "difference found" fail on the code as it stands: each reproduces a case where the
fast way does not do what the general way does.
"""

from __future__ import annotations

import codecs
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from adapters.ctf import fastread
from adapters.ctf.parser import read_file
from adapters.ctf.writer import NS_2010
from cme_batch.config import CalendarConfig, CodesConfig, Term
from cme_batch.errors import BadInputError
from cme_batch.model import MarksRecord, PupilRecord, SourceBatch, packed, unpacked
from cme_batch.store import ingest, open_store
from cme_batch.xmlstream import prepare
from tests.adapters.test_ctf_fast_reader import (
    OTHER,
    OURS,
    Draft,
    Node,
    Outcome,
    _School,
    day_pupil,
    day_upn,
    document,
    drafts,
    header,
    way,
    write,
)
from tests.helpers import general_loops_only, migrated_template, snapshot

ROOT = Path(__file__).resolve().parents[2]

# -- reading a file both ways, with every option the importer gives -----------------------------------
CALENDAR = CalendarConfig(terms=(Term(date(2025, 9, 3), date(2025, 10, 24)), Term(date(2025, 11, 3), date(2025, 12, 19))),
                          closures=(date(2025, 11, 7),))
CODES = CodesConfig(local={"Q": "authorised"}, subcodes={"@": "N", "K": "KX", "Z": "/"})


def read(path: Path, fast: bool, school: tuple[str, str] | None = None, seen: dict[str, str] | None = None,
         checks: bool = True) -> Outcome:
    """The file read one way (``fast``: where the file allows it), with the codes and calendar of a
    school's config (the existing equivalence test passes neither)."""
    options: dict[str, Any] = {"seen": dict(seen or {})}
    if checks:
        options.update(codes=CODES, calendar=CALENDAR)
    if school:
        options["school"] = _School(*school)
    with way(fast) as taken:
        try:
            batch = read_file(path, options)
        except Exception as exc:  # noqa: BLE001 - compared as it is
            return Outcome(None, (type(exc).__name__, list(getattr(exc, "problems", [str(exc)]))), [],
                           options["seen"], None, taken)
        try:
            records: list[Any] | None = list(batch.records)
            rejected = None
        except Exception as exc:  # noqa: BLE001 - compared as it is
            records, rejected = None, (type(exc).__name__, list(getattr(exc, "problems", [str(exc)])))
    return Outcome(records, rejected, list(batch.warnings), options["seen"], batch.replaces, taken)


def same_both_ways(path: Path, **options: Any) -> Outcome:
    fast, general = read(path, True, **options), read(path, False, **options)
    assert general.fast in ([False], [])
    assert (fast.records, fast.rejected, fast.warnings, fast.seen, fast.replaces) == (
        general.records, general.rejected, general.warnings, general.seen, general.replaces), (
        f"fast: {fast.rejected or fast.records}\ngeneral: {general.rejected or general.records}")
    return fast


def day(n: int = 3, **kw: Any) -> list[Node]:
    return [day_pupil(i, **kw) for i in range(n)]


# -- differences found: the fast way raises where the general reader reads the file ------------------
@pytest.mark.parametrize("prefix", ["\u00e9", "A\u00b7", "\u00fcber"])
def test_a_non_ascii_namespace_prefix_declared_on_the_root(tmp_path: Path, prefix: str) -> None:
    """Difference found. ``fastread._plain`` encodes each prefix of the root's ``nsmap`` as ASCII
    (``p.encode("ascii")``): a prefix with a letter outside ASCII, legal XML and read by the general
    reader, raises UnicodeEncodeError out of ``batch.records``; the day's marks are not stored (and
    the error, not a CmeError, escapes the importer's handling)."""
    path = write(tmp_path, document(day(3), attributes=f' xmlns:{prefix}="urn:other"'))
    general = read(path, False)
    assert general.rejected is None and len(general.records or []) == 7
    fast = same_both_ways(path)
    assert fast.fast == [True]


def test_an_empty_default_namespace_on_the_root(tmp_path: Path) -> None:
    """Difference found. ``<CTfile xmlns="">`` (an empty default namespace, legal XML; some
    serialisers write it) gives ``ns == ""``, and ``etree.QName("", "Header")`` raises ValueError
    ('Empty tag name') out of ``batch.records``; the general reader reads the file."""
    path = write(tmp_path, document(day(3), ns=None, attributes=' xmlns=""'))
    general = read(path, False)
    assert general.rejected is None and len(general.records or []) == 7
    fast = same_both_ways(path)
    assert fast.fast == [True]


_MEASURE = r"""
import json, sys
from pathlib import Path
from unittest import mock
from adapters.ctf import fastread
from adapters.ctf.parser import read_file
def peak_kb():  # VmHWM: this process's own peak (ru_maxrss keeps the parent's peak across exec on Linux)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
path, fast = Path(sys.argv[1]), sys.argv[2] == "fast"
before = peak_kb()
with mock.patch.object(fastread, "pupil_lines", fastread.pupil_lines if fast else (lambda prep: None)):
    batch = read_file(path, {})
    n = sum(1 for _ in batch.records)
after = peak_kb()
print(json.dumps({"records": n, "grew_kb": after - before}))
"""


def _grown_kb(path: Path, fast: bool) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(path), "fast" if fast else "general"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    got = json.loads(out.stdout)
    return int(got["records"]), int(got["grew_kb"])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="measures the peak memory in /proc")
def test_an_element_dense_file_under_the_size_limit_stays_within_the_memory_the_fast_way_promises(
        tmp_path: Path) -> None:
    """Difference found (memory). ``fastread.MAX_BYTES`` is set assuming libxml2's tree takes about
    7 times the file (a 12 MiB file: about 90 MB). A day's file of the usual shape grows the reading
    process by about 11 times its size the fast way (tree, lines and all); a simple file of many
    empty elements (legal: ``YearData`` may hold any child, and the fast way accepts it) by about 32
    times: a 12 MiB file peaks at about 430 MB, against about 50 MB the general way, which drops each
    pupil once read. Measured on 3 MiB files in a child process (VmHWM); the bound is 15 times."""
    filler = "<a/>" * 300
    pupils = "".join(f"<Pupil><UPN>{day_upn(i)}</UPN><Attendance><YearData>{filler}</YearData></Attendance></Pupil>"
                     for i in range(2600))
    head = ('<?xml version="1.0" encoding="UTF-8"?><CTfile><Header><CTFversion>25.0</CTFversion>'
            "<SourceSchool><LEA>916</LEA><Estab>2999</Estab></SourceSchool></Header><CTFpupilData>")
    dense = write(tmp_path, (head + pupils + "</CTFpupilData></CTfile>").encode(), "dense.xml")
    usual = write(tmp_path, document([day_pupil(i) for i in range(4600)]), "usual.xml")
    assert fastread.pupil_lines(prepare(usual)) is not None  # (the dense one may be left to the general way)
    grew: dict[str, float] = {}
    for path in (dense, usual):
        (records, general_kb), (fast_records, fast_kb) = _grown_kb(path, False), _grown_kb(path, True)
        assert records == fast_records
        size_kb = path.stat().st_size / 1024
        assert general_kb < 3 * size_kb
        grew[path.stem] = fast_kb / size_kb
    assert grew["usual"] < 15
    assert grew["dense"] < 15, f"the fast way grew the process by {grew['dense']:.0f} times the file's size"


# -- equivalences that hold: edge inputs the existing test does not name ------------------------------
def _year(*parts: Node, lea: str | None = "916", estab: str | None = "2999") -> Node:
    school: list[Node] = ([("LEA", lea)] if lea is not None else []) + ([("Estab", estab)] if estab is not None else [])
    return ("YearData", [*school, *parts])


START, MARKS = ("AttendanceStartDate", "2025-11-06"), ("AttendanceMarks", "/\\")


def _pupil(upn: str | None, *parts: Node) -> Node:
    return ("Pupil", [*([("UPN", upn)] if upn is not None else []), *parts])


SIMPLE_EDGES: dict[str, list[Node]] = {
    "crlf in marks": [day_pupil(0, marks="/\\\r\n/\\"), day_pupil(1)],
    "lone cr in marks": [day_pupil(0, marks="/\r"), day_pupil(1, marks="\r/")],
    "cr lf around a upn": [_pupil(f"\r\n\t{day_upn(0)}\r\n", ("Attendance", [_year(START, MARKS)]))],
    "tab in marks": [day_pupil(0, marks="/\t")],
    "blanks around dates": [day_pupil(0, start="\t2025-11-06\r\n"), day_pupil(1, start=" 2025-11-06 ")],
    "entities in marks": [day_pupil(0, marks="&amp;&lt;"), day_pupil(1, marks="&gt;&quot;&apos;/")],
    "empty elements": [_pupil(None, ("UPN", None)), _pupil(day_upn(1), ("LookedAfter", None), ("Attendance", None)),
                       _pupil(day_upn(2), ("Attendance", [_year(("AttendanceStartDate", None), MARKS)]))],
    "several upns": [("Pupil", [("UPN", day_upn(0)), ("UPN", day_upn(1)), ("Attendance", [_year(START, MARKS)])])],
    "several looked after": [_pupil(day_upn(0), ("LookedAfter", [("InCare", "false")]), ("LookedAfter", [("InCare", "true")]))],
    "several attendances": [_pupil(day_upn(0), ("Attendance", [_year(START, ("AttendanceMarks", "NN"))]),
                                   ("Attendance", [_year(START, MARKS)]))],
    "another school's year before and after": [
        _pupil(day_upn(0), ("Attendance", [_year(START, ("AttendanceMarks", "NN"), lea="823", estab="4001"),
                                           _year(START, MARKS),
                                           _year(START, ("AttendanceMarks", "XX"), lea="823", estab="4001")]))],
    "a year naming no school": [_pupil(day_upn(0), ("Attendance", [_year(START, MARKS, lea=None, estab=None)]))],
    "marks straight in the year": [_pupil(day_upn(0), ("Attendance", [_year(START, MARKS)]))],
    "sessions and marks straight in the year": [
        _pupil(day_upn(0), ("Attendance", [_year(("AttendSessions", [START, MARKS]), ("AttendanceMarks", "NN"), START)]))],
    "both start dates": [_pupil(day_upn(0), ("Attendance", [_year(("AttendStartDate", "2025-11-08"), START, MARKS)])),
                         _pupil(day_upn(1), ("Attendance", [_year(("AttendStartDate", "2025-11-08"), MARKS)]))],
    "in care spellings": [day_pupil(i, in_care=v) for i, v in enumerate(["TRUE", " true ", "1", "Y", "no", "0"])],
    "in care unreadable": [day_pupil(0, in_care="2"), day_pupil(1, in_care="2")],
    "care authority with entities": [_pupil(day_upn(0), ("LookedAfter", [("InCare", "true"),
                                                                          ("CareAuthority", " Bath &amp; NE Somerset ")]))],
    "odd and controlled marks": [day_pupil(0, marks="/"), day_pupil(1, marks="/\x7f"), day_pupil(2, marks="/")],
    "empty start, marks given": [day_pupil(0, start=""), day_pupil(1, start="  ")],
    "a date past the store's years": [day_pupil(0, start="9999-12-30"), day_pupil(1, start="0001-01-01")],
    "lower-case and spaced upns": [_pupil(day_upn(0).lower(), ("Attendance", [_year(START, MARKS)])),
                                   _pupil(f" {day_upn(0)[:5]} {day_upn(0)[5:]} ", ("Attendance", [_year(START, MARKS)]))],
    "a child element in a upn": [_pupil(f"{day_upn(0)}<x/>", ("Attendance", [_year(START, MARKS)]))],
    "unknown codes and closed days, same line": [
        day_pupil(i, marks=m, start=s) for i, (m, s) in enumerate(
            [("/\\", "2025-11-06"), ("@K", "2025-11-06"), ("@K", "2025-11-06"), ("/\\", "2025-11-07"),
             ("/\\", "2025-11-07"), ("ZQ", "2025-11-08"), ("##", "2025-11-08"), ("--", "2025-10-30"), ("@K", "2025-11-06")])],
}


@pytest.mark.parametrize("kind", sorted(SIMPLE_EDGES))
@pytest.mark.parametrize("ns", [NS_2010, None])
def test_edge_files_read_fast_the_same(tmp_path: Path, kind: str, ns: str | None) -> None:
    path = write(tmp_path, document(SIMPLE_EDGES[kind], ns=ns, indent="\r\n"))
    fast = same_both_ways(path, seen={day_upn(1): "yesterday.xml"})
    assert fast.fast == [True]
    same_both_ways(path, school=OTHER, checks=False)


def _with(data: bytes, old: bytes, new: bytes, count: int = 1) -> bytes:
    assert old in data
    return data.replace(old, new, count)


_BASE = document(day(3), ns=NS_2010)
#: Files that must be read the general way (and read the same).
NOT_SIMPLE_EDGES: dict[str, bytes] = {
    "comment after the header": _with(_BASE, b"</Header>", b"</Header><!-- x -->"),
    "comment after the root": _BASE + b"<!-- x -->",
    "pi after the root": _BASE + b"<?x y?>",
    "pi inside a pupil": _with(_BASE, b"<UPN>", b"<?x?><UPN>"),
    "comment inside a upn": _with(_BASE, b"</UPN>", b"<!--x--></UPN>"),
    "cdata in marks": _with(_BASE, b"<AttendanceMarks>/\\", b"<AttendanceMarks><![CDATA[/\\]]>"),
    "char reference in a upn": _with(_BASE, b"<UPN>", b"<UPN>&#32;"),
    "namespace declared on a child": _with(_BASE, b"<CTFpupilData>", b'<CTFpupilData xmlns="urn:other">'),
    "the same names in another namespace": document([day_pupil(0), _pupil(day_upn(1), ("Attendance", [_year(
        ("", '<LEA xmlns="urn:other">823</LEA>'), START, MARKS, lea=None)]))]),
    "a prefix bound to the root's namespace": _with(
        document(day(2), ns=NS_2010, attributes=f' xmlns:c="{NS_2010}"'), b"<UPN>", b"<c:UPN>").replace(
        b"</UPN>", b"</c:UPN>", 1),
    "nbsp around a upn": _with(_BASE, b"<UPN>", b"<UPN>\xc2\xa0"),
    "non-ascii marks": _with(_BASE, b"<AttendanceMarks>/\\", "<AttendanceMarks>/\u00e9".encode()),
    "a second header": _with(_BASE, b"<CTFpupilData>", b"<Header/><CTFpupilData>"),
    "header-less": _with(_with(_BASE, b"<Header>", b"<Heading>"), b"</Header>", b"</Heading>"),
    "a comment first in the root": _with(_BASE, b"<Header>", b"<!--x--><Header>"),
    "xml 1.1": _with(_BASE, b'version="1.0"', b'version="1.1"'),
    "a declared encoding the bytes do not fit": _with(_with(_BASE, b"UTF-8", b"ISO-8859-1"), b"Day School", "D\u00e9y".encode()),
    "utf-16": codecs.BOM_UTF16_LE + _BASE.decode().replace("UTF-8", "UTF-16").encode("utf-16-le"),
    "a doctype": _with(_BASE, b"?>", b'?><!DOCTYPE CTfile [<!ENTITY e "x">]>'),
    "an undeclared entity": _with(_BASE, b"<UPN>", b"<UPN>&e;"),
    "cut off": _BASE[:-40],
}


@pytest.mark.parametrize("kind", sorted(NOT_SIMPLE_EDGES))
def test_edge_files_read_the_general_way_the_same(tmp_path: Path, kind: str) -> None:
    fast = same_both_ways(write(tmp_path, NOT_SIMPLE_EDGES[kind]))
    assert True not in fast.fast


@pytest.mark.parametrize("encoding,declared", [("cp1252", "windows-1252"), ("latin-1", "ISO-8859-1"),
                                               ("utf-8-sig", "UTF-8"), ("utf-8-sig", None)])
def test_header_bytes_above_127_in_a_single_byte_or_bom_file(tmp_path: Path, encoding: str, declared: str | None) -> None:
    name = "Caf\u00e9 \u00a0Sch\u00f6ol" + (" \u20ac" if encoding != "latin-1" else "")
    text = document(day(3), head=header(OURS, "partial", name),
                    declaration=f'<?xml version="1.0" encoding="{declared}"?>' if declared else "").decode()
    path = write(tmp_path, text.encode(encoding))
    fast = same_both_ways(path)
    assert fast.fast == [True] and fast.records and fast.records[0].name == name


def test_a_file_at_and_just_over_the_size_limit(tmp_path: Path) -> None:
    path = write(tmp_path, document(day(4)))
    size = path.stat().st_size
    with mock.patch.object(fastread, "MAX_BYTES", size):
        assert same_both_ways(path).fast == [True]
    with mock.patch.object(fastread, "MAX_BYTES", size - 1):
        assert same_both_ways(path).fast == [False]


def test_a_file_grown_past_the_limit_after_it_was_prepared_is_not_read_fast(tmp_path: Path) -> None:
    path = write(tmp_path, document(day(4)))
    prep = prepare(path)
    with mock.patch.object(fastread, "MAX_BYTES", prep.size):
        assert fastread.pupil_lines(prep) is not None
        path.write_bytes(path.read_bytes() + b"\n" * 8)
        assert fastread.pupil_lines(prep) is None


def test_a_pupil_in_two_files_of_a_run(tmp_path: Path) -> None:
    seen: dict[str, dict[str, str]] = {}
    outcomes: dict[bool, list[Any]] = {}
    for fast in (True, False):
        seen[str(fast)] = {}
        outcomes[fast] = []
        for n, first in enumerate([0, 1, 1]):
            path = write(tmp_path, document([day_pupil(i) for i in range(first, first + 3)]), f"day-{n}.xml")
            options: dict[str, Any] = {"seen": seen[str(fast)], "codes": CODES, "calendar": CALENDAR}
            with way(fast) as taken:
                batch = read_file(path, options)
                outcomes[fast].append((list(batch.records), list(batch.warnings), dict(seen[str(fast)])))
            assert taken == [fast]
    assert outcomes[True] == outcomes[False]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drafts(), st.booleans())
def test_generated_files_with_the_schools_codes_and_calendar(draft: Draft, checks: bool) -> None:
    """The existing property test's files, read with a calendar (terms, a closure) and codes
    (local codes, sub-codes to national, to unknown and to known codes), which it never passes."""
    with tempfile.TemporaryDirectory() as tmp:
        same_both_ways(write(Path(tmp), draft.data), school=draft.school, seen=draft.seen, checks=checks)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["2025-11-06", "2025-11-07", "2025-11-08", "2025-10-27"]),
                          st.sampled_from(["/\\", "NN", "@K", "ZQ", "@@/\\", "##", "/", "XY"]),
                          st.sampled_from(["false", "true", "maybe"])), min_size=1, max_size=14))
def test_repeated_lines_note_the_mark_check_for_each_pupil(pupils: list[tuple[int, str, str, str]]) -> None:
    """Many pupils with the same line after their UPN (the plan and the check's quiet flag are
    reused): warnings, first records and problems as the general reader's."""
    nodes = [day_pupil(i, marks=m, start=s, in_care=c) for i, s, m, c in pupils]
    with tempfile.TemporaryDirectory() as tmp:
        fast = same_both_ways(write(Path(tmp), document(nodes)))
    assert fast.fast == [True]


def test_packed_records_of_a_read_file_come_back_equal(tmp_path: Path) -> None:
    path = write(tmp_path, document([*day(4), day_pupil(5, in_care="true", marks="N ")]))
    with way(True) as taken:
        records = list(read_file(path, {"seen": {}}).records)
    assert taken == [True]
    back = unpacked(packed(records))
    assert back == records and [type(r) for r in back] == [type(r) for r in records]


# -- the store's short ways ---------------------------------------------------------------------------
NOW = datetime(2026, 7, 21, 6, 0, tzinfo=UTC)
KEYS = [f"A91620002400{i}" for i in range(5)]
SIMS_UPN = "B916200024088"  # a pupil of another source (no ctf key), holding a UPN
DAYS = [date(2026, 7, 20), date(2026, 7, 21), date(2026, 7, 31), date(2026, 8, 3)]


@pytest.fixture(scope="module")
def template() -> Iterator[Path]:
    with migrated_template() as path:
        yield path


def _apply(template: Path, folder: Path, name: str, day_records: list[Any], complete: dict[str, tuple[date, date]],
           chunks: tuple[int, int], short: bool) -> tuple[Any, ...]:
    path = folder / f"{name}.sqlite"
    shutil.copy(template, path)
    engine = open_store(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            school = ingest.ensure_school(conn, "916", "2999", "Test")
        pupils = [PupilRecord(k, upn=k, legal_surname=f"S{i}", dob=date(2019, 1, 1) + timedelta(days=i))
                  for i, k in enumerate(KEYS)]
        year = [MarksRecord(k, DAYS[0], "/\\/\\N") for k in KEYS[:3]] + [MarksRecord(KEYS[3], DAYS[1], ("C1", "/"))]
        ingest.apply_batch(engine, school, SourceBatch("ctf", "year", records=[*pupils, *year]), NOW)
        ingest.apply_batch(engine, school, SourceBatch("sims", "sims", records=[
            PupilRecord("S1", upn=SIMS_UPN, legal_surname="Other", dob=date(2018, 5, 5)),
            MarksRecord("S1", DAYS[1], "NN")]), NOW)
        with pytest.MonkeyPatch.context() as m:
            m.setattr(ingest, "PUPIL_CHUNK", chunks[0])
            m.setattr(ingest, "RECORD_CHUNK", chunks[1])
            if not short:
                general_loops_only(m)
            records = unpacked(packed(day_records)) if short else list(day_records)
            try:
                result = ingest.apply_batch(engine, school, SourceBatch("ctf", "day", records=records,
                                                                        marks_complete=dict(complete)), NOW)
                outcome: tuple[Any, ...] = ("ok", dict(result.counts), sorted(result.pupil_ids))
            except BadInputError as exc:
                outcome = ("refused", str(exc))
        return snapshot(engine), outcome
    finally:
        engine.dispose()


def _stored_the_same(template: Path, day_records: list[Any], complete: dict[str, tuple[date, date]] | None = None,
                     chunks: tuple[int, int] = (2, 3)) -> tuple[Any, ...]:
    with tempfile.TemporaryDirectory() as folder:
        short = _apply(template, Path(folder), "short", day_records, complete or {}, chunks, True)
        general = _apply(template, Path(folder), "general", day_records, complete or {}, chunks, False)
    assert short == general
    outcome: tuple[Any, ...] = short[1]
    return outcome


CODES_DRAWN = st.one_of(st.sampled_from(["/\\", "NN", "--", "/", "", "N/\\N", "\u00e9/", "/ ", "C1"]),
                        st.lists(st.sampled_from(["N", "/", "C1", "", "-"]), min_size=0, max_size=3).map(tuple))
UPNS_DRAWN = st.sampled_from(["same"] * 6 + [*KEYS, SIMS_UPN, "C916200024077", None, "short"])


@settings(deadline=None, max_examples=40)
@given(st.lists(st.tuples(st.sampled_from([*KEYS * 3, "Z916200024777", "S1"]), UPNS_DRAWN, st.sampled_from(DAYS),
                          CODES_DRAWN, st.booleans()), min_size=1, max_size=9),
       st.sets(st.sampled_from(KEYS), max_size=3), st.sampled_from([(1, 1), (2, 3), (3, 2), (50, 50)]))
@example(rows=[(KEYS[0], "same", DAYS[1], "NN", True), (KEYS[0], "same", DAYS[1], ("", "/"), True)],
         complete=set(KEYS[:1]), chunks=(1, 1))
@example(rows=[(KEYS[0], SIMS_UPN, DAYS[1], "/\\", True)], complete=set(), chunks=(2, 3))  # another source's UPN
@example(rows=[(KEYS[0], KEYS[1], DAYS[1], "/\\", True), (KEYS[1], KEYS[0], DAYS[1], "/\\", True)],
         complete=set(), chunks=(2, 3))  # two stored pupils' UPNs swapped
@example(rows=[(KEYS[0], "C916200024077", DAYS[1], "/\\", True), (KEYS[0], "C916200024066", DAYS[1], "/\\", True)],
         complete=set(), chunks=(2, 3))  # one pupil named twice in a chunk with two new UPNs
@example(rows=[(KEYS[1], "same", DAYS[3], "NN", True), (KEYS[1], "same", DAYS[2], "", True)],
         complete=set(KEYS[1:2]), chunks=(1, 1))  # another year, an empty run
def test_the_short_ways_store_what_the_general_loops_store(template: Path, rows: list[Any], complete: set[str],
                                                          chunks: tuple[int, int]) -> None:
    records: list[Any] = []
    for key, upn, start, codes, named in rows:
        if named:
            records.append(PupilRecord.named(key, key if upn == "same" else (key[:5] if upn == "short" else upn)))
        records.append(MarksRecord(key, start, codes))
    window = {k: (DAYS[0], DAYS[2]) for k in complete}
    _stored_the_same(template, records, window, chunks)


def test_marks_complete_clears_what_the_short_way_did_not_give(template: Path) -> None:
    """A ``marks_complete`` pupil whose day comes the short way: the sessions it gave are kept,
    the stored ones it did not give are cleared, as the general loop does."""
    records: list[Any] = [PupilRecord.named(k, k) for k in KEYS] + [MarksRecord(k, DAYS[0], "N\\") for k in KEYS]
    outcome = _stored_the_same(template, records, {k: (DAYS[0], DAYS[1]) for k in KEYS[:2]}, (50, 50))
    assert outcome[0] == "ok" and outcome[1].get("marks_cleared", 0) > 0
