"""The fast reading of a simple CTF (a day's register) against the general reader.

``adapters/ctf/fastread.py`` reads a file whose pupils carry only a UPN, ``LookedAfter`` and
``Attendance`` through libxml2 and an XSLT; anything else is read by the general reader. Every
file must give the same records, warnings, problems and ``seen`` map both ways, and a simple file
must really be read the fast way (each test below checks which way was taken).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from adapters.ctf import fastread
from adapters.ctf.parser import read_file
from adapters.ctf.writer import NS_2010
from cme_batch import upn
from cme_batch.model import FlagRecord, MarksRecord, PupilRecord, SchoolInfo, unpacked
from cme_batch.model import packed as pack_records
from cme_batch.xmlstream import prepare

UPNS = [upn.make(f"9162000240{i:02d}") for i in range(8)]
OURS, OTHER = ("916", "2999"), ("823", "4001")


class _School:
    def __init__(self, la: str, estab: str) -> None:
        self.la_number, self.establishment_number = la, estab


# -- reading a file both ways -----------------------------------------------------------------------
@dataclass
class Outcome:
    records: list[Any] | None
    rejected: tuple[str, list[str]] | None
    warnings: list[Any]
    seen: dict[str, str]
    replaces: frozenset[str] | None
    fast: list[bool] = field(default_factory=list)  # one entry per file read: whether lines were given


@contextmanager
def way(fast: bool) -> Iterator[list[bool]]:
    """Read the fast way where the file allows it (recording each answer), or never."""
    real = fastread.pupil_lines
    taken: list[bool] = []

    def spy(prep: Any) -> list[str] | None:
        lines = real(prep) if fast else None
        taken.append(lines is not None)
        return lines

    with mock.patch.object(fastread, "pupil_lines", spy):
        yield taken


def read(path: Path, fast: bool, school: tuple[str, str] | None = None, seen: dict[str, str] | None = None,
         packed: bool = False) -> Outcome:
    """The file read the fast way or not; with ``packed``, its records as a reading process hands
    them over (``SourceBatch.packed_records``), unpacked as the storing process unpacks them."""
    options: dict[str, Any] = {"seen": dict(seen or {})}
    if school:
        options["school"] = _School(*school)
    with way(fast) as taken:
        try:
            batch = read_file(path, options)
        except Exception as exc:  # refused before any record: compared as it is
            return Outcome(None, (type(exc).__name__, list(getattr(exc, "problems", [str(exc)]))), [],
                           options["seen"], None, taken)
        try:
            items = list(batch.packed_records[1]) if packed and batch.packed_records else None
            records: list[Any] | None = unpacked(items) if items is not None else list(batch.records)
            if items is not None:
                assert items == pack_records(records)  # the form packed makes: tuples of texts
            rejected = None
        except Exception as exc:
            records, rejected = None, (type(exc).__name__, list(getattr(exc, "problems", [str(exc)])))
    return Outcome(records, rejected, list(batch.warnings), options["seen"], batch.replaces, taken)


def both_ways(path: Path, **options: Any) -> tuple[Outcome, Outcome]:
    """The file read the fast way and the general way, each also packed for a reading process:
    all four the same."""
    fast, general = read(path, True, **options), read(path, False, **options)
    assert general.fast == [False] or general.fast == []
    assert (fast.records, fast.rejected, fast.warnings, fast.seen, fast.replaces) == (
        general.records, general.rejected, general.warnings, general.seen, general.replaces)
    for way_taken in (True, False):
        handed = read(path, way_taken, packed=True, **options)
        assert handed.fast == (fast if way_taken else general).fast
        assert (handed.records, handed.rejected, handed.warnings, handed.seen, handed.replaces) == (
            general.records, general.rejected, general.warnings, general.seen, general.replaces)
        assert _keeps(handed.records) == _keeps(general.records)  # (not part of a record's equality)
    return fast, general


def _keeps(records: list[Any] | None) -> list[frozenset[str]]:
    return [r.keeps for r in records or [] if isinstance(r, PupilRecord)]


# -- writing a CTF ----------------------------------------------------------------------------------
Node = tuple[str, Any]  # (name, text as XML) or (name, [children]); name "" is raw XML (a comment, text)


def serialise(node: Node, prefix: str, indent: str | None, depth: int = 0) -> str:
    name, content = node
    if name == "":
        return str(content)
    tag = prefix + name
    if isinstance(content, list):
        pad = "" if indent is None else indent + "  " * (depth + 1)
        end = "" if indent is None else indent + "  " * depth
        inner = "".join(pad + serialise(c, prefix, indent, depth + 1) for c in content)
        return f"<{tag}>{inner}{end}</{tag}>" if content else f"<{tag}/>"
    if content is None:
        return f"<{tag}/>"
    return f"<{tag}>{content}</{tag}>"


def header(school: tuple[str, str] | None, qualifier: str, name: str = "Day School") -> Node:
    parts: list[Node] = [("DocumentName", "Common Transfer File"), ("CTFversion", "25.0"),
                         ("DocumentQualifier", qualifier)]
    if school:
        parts.append(("SourceSchool", [("LEA", school[0]), ("Estab", school[1]), ("SchoolName", name)]))
    parts.append(("DestSchool", [("LEA", "MMM"), ("Estab", "MMMM")]))
    return ("Header", parts)


def document(pupils: list[Node], *, ns: str | None = NS_2010, head: Node | None = None, indent: str | None = "\n",
             prefixed: bool = False, blocks: int = 1, declaration: str = '<?xml version="1.0" encoding="UTF-8"?>',
             attributes: str = "", extra: Node | None = None) -> bytes:
    """A CTF of ``pupils`` (in ``blocks`` CTFpupilData elements), ``extra`` after the header."""
    head = head if head is not None else header(OURS, "partial")
    prefix = "c:" if prefixed else ""
    xmlns = ("" if ns is None else (f' xmlns:c="{ns}"' if prefixed else f' xmlns="{ns}"')) + attributes
    cut = -(-len(pupils) // blocks) if pupils else 1
    groups = [pupils[i:i + cut] for i in range(0, len(pupils), cut)] or [[]]
    body = [head, *([extra] if extra else []), *[("CTFpupilData", g) for g in groups]]
    root = serialise(("CTfile", body), prefix, indent)
    root = root.replace(f"<{prefix}CTfile>", f"<{prefix}CTfile{xmlns}>", 1)
    return (declaration + (indent or "") + root + "\n").encode("utf-8")


def day_upn(i: int) -> str:
    return upn.make(f"9162000{i:05d}")


def day_pupil(i: int, marks: str = "/\\", start: str = "2025-11-06", in_care: str = "false",
              lea: str = "916", estab: str = "2999") -> Node:
    year: list[Node] = [("Year", "2025"), ("LEA", lea), ("Estab", estab), ("SchoolName", "Day School"),
                        ("SessionsPossible", "2"), ("SessionsAuthorised", "0"), ("SessionsAttended", "2"),
                        ("SessionsUnauthorised", "0"),
                        ("AttendSessions", [("AttendanceStartDate", start), ("AttendanceMarks", marks)])]
    return ("Pupil", [("UPN", day_upn(i)), ("LookedAfter", [("InCare", in_care)]),
                      ("Attendance", [("YearData", year)])])


def write(folder: Path, data: bytes, name: str = "day.xml") -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


# -- examples ----------------------------------------------------------------------------------------
def test_a_namespaced_and_a_plain_day_file_are_read_fast_and_the_same(tmp_path: Path) -> None:
    pupils = [day_pupil(i, marks="/\\" if i % 7 else "N ", in_care="true" if i == 3 else "false") for i in range(60)]
    pupils[5] = day_pupil(5, marks="/\\", start="2025-11-08")  # a Saturday: mark outside the calendar
    plain = write(tmp_path, document(pupils, ns=None, indent=None), "plain.xml")
    spaced = write(tmp_path, document(pupils, ns=NS_2010), "namespaced.xml")
    fast_plain, _ = both_ways(plain)
    fast_ns, _ = both_ways(spaced)
    assert fast_plain.fast == [True] and fast_ns.fast == [True]
    assert fast_plain.records == fast_ns.records
    records = fast_plain.records or []
    assert records[0] == SchoolInfo("916", "2999", "Day School")
    assert len([r for r in records if isinstance(r, PupilRecord)]) == 60
    assert [r.pupil_key for r in records if isinstance(r, FlagRecord)] == [day_upn(3)]
    marks = [r for r in records if isinstance(r, MarksRecord)]
    assert len(marks) == 60 and marks[7].codes == "N-"
    assert [w.code for w in fast_plain.warnings] == ["mark_outside_calendar"]
    assert fast_plain.warnings[0].where == "plain.xml record 6"


def test_a_pupil_with_contacts_makes_the_whole_file_read_the_general_way(tmp_path: Path) -> None:
    pupils = [day_pupil(i) for i in range(5)]
    name, parts = pupils[2]
    pupils[2] = (name, [*parts, ("Contacts", [("Contact", [("Order", "1"), ("Surname", "Jones")])])])
    fast, _ = both_ways(write(tmp_path, document(pupils)))
    assert fast.fast == [False]
    assert len([r for r in fast.records or [] if isinstance(r, MarksRecord)]) == 5


def test_problems_and_warnings_are_those_of_the_general_reader(tmp_path: Path) -> None:
    pupils = [day_pupil(0), day_pupil(1, in_care="maybe"), day_pupil(2, start="2025-13-45"), day_pupil(3, marks="/"),
              ("Pupil", [("LookedAfter", [("InCare", "true")])]), day_pupil(0), day_pupil(4, lea="823", estab="4001")]
    fast, _ = both_ways(write(tmp_path, document(pupils)), seen={day_upn(4): "yesterday.xml"})
    assert fast.fast == [True]
    assert fast.rejected is not None and fast.rejected[0] == "ImportRejected"
    assert fast.rejected[1] == [
        "record 2, field LookedAfter/InCare: is not true or false: 'maybe'",
        "record 3, field AttendanceStartDate: is not a date YYYY-MM-DD: '2025-13-45'",
        "record 4, field AttendanceMarks: has 1 characters; two per calendar day (AM, PM) means an even number",
        "record 5, field UPN: is missing: a CTF identifies each pupil by UPN"]
    assert [(w.code, w.where) for w in fast.warnings] == [("duplicate_pupil", "day.xml record 6"),
                                                          ("duplicate_pupil", "day.xml record 7")]


def test_a_big_or_headerless_file_is_read_the_general_way(tmp_path: Path) -> None:
    pupils = [day_pupil(i) for i in range(3)]
    headerless = document(pupils).replace(b"<Header>", b"<Header-not>").replace(b"</Header>", b"</Header-not>")
    assert True not in both_ways(write(tmp_path, headerless))[0].fast
    with mock.patch.object(fastread, "MAX_BYTES", 100):
        assert both_ways(write(tmp_path, document(pupils)))[0].fast == [False]


# -- generated files -----------------------------------------------------------------------------------
@dataclass
class Draft:
    """A generated file and what makes it not simple (when nothing does, it must be read fast)."""

    data: bytes
    not_simple: list[str]
    school: tuple[str, str] | None
    seen: dict[str, str]


# Texts as written in XML (entities and blanks included).
UPN_TEXTS = [lambda i: UPNS[i % 8], lambda i: UPNS[i % 8].lower(), lambda i: f"  {UPNS[i % 8][:5]} {UPNS[i % 8][5:]} ",
             lambda i: "B" + UPNS[i % 8][1:] if UPNS[i % 8][0] != "B" else "C" + UPNS[i % 8][1:],
             lambda i: "A12345", lambda i: "", lambda i: "   ", lambda i: "A&amp;1", lambda i: UPNS[0],
             lambda i: upn.make("91620002401A")]
IN_CARE = ["true", "false", " TRUE ", "Yes", "maybe", "", "  ", None]
CARE_AUTHORITY = [None, "Gloucestershire", " Bath &amp; North East Somerset ", "", "&lt;LA&gt;"]
SCHOOLS = [OURS, OTHER, (" 916 ", "2999"), ("916", None), (None, "2999"), (None, None), ("", "")]
STARTS = ["2025-11-06", "2025-11-08", " 2025-11-10 ", "2025-11-06T00:00:00", "06/11/2025", "2025-13-45", "", "  ",
          "9999-12-30"]
MARKS = ["/\\", " /", "/ ", "  ", "/\\/I####NNON", "/", "ZZ", "@@", "N&amp;", "/\t", "\n/", "", " ", "/\\\r\n/\\", "&lt;&gt;"]


def _year(marks: str, lea: str = "<LEA>916</LEA>") -> str:
    return (f"<Attendance><YearData>{lea}<Estab>2999</Estab><AttendanceStartDate>2025-11-06</AttendanceStartDate>"
            f"<AttendanceMarks>{marks}</AttendanceMarks></YearData></Attendance>")


#: Parts that make a pupil (and so the file) not simple: other parts of a pupil, and what the
#: fast reading leaves to the general reader inside the parts it reads.
NOT_SIMPLE = {
    "contacts": "<Contacts><Contact><Order>1</Order></Contact></Contacts>",
    "surname": "<Surname>Jones</Surname>",
    "sen": "<SENhistory><SEN><SENprovision>K</SENprovision></SEN></SENhistory>",
    "other attendance part": "<Attendance><Summary>1</Summary></Attendance>",
    "comment": _year("/<!-- a note -->\\"),
    "processing instruction": _year("/<?note x?>\\"),
    "cdata": _year("<![CDATA[/\\]]>"),
    "char reference": _year("&#47;\\"),
    "non-ascii": _year("/\u00e9"),
    "separators": _year("\ue000\ue001"),
    "prefix of the root's": _year("/\\", "<o:LEA>916</o:LEA>"),
    "foreign": _year("/\\", '<o:LEA xmlns:o="urn:other">916</o:LEA>'),
}


def often(draw: st.DrawFn, usual: Any, others: list[Any], odds: int = 6) -> Any:
    """``usual``, or one in ``odds`` times one of ``others``: most pupils of a file are sound."""
    return draw(st.sampled_from(others)) if draw(st.integers(1, odds)) == odds else usual


@st.composite
def box(draw: st.DrawFn) -> list[Node]:
    parts: list[Node] = []
    tags = often(draw, [draw(st.sampled_from(["AttendanceStartDate", "AttendStartDate"]))],
                 [[], ["AttendStartDate", "AttendanceStartDate"], ["AttendanceStartDate", "AttendanceStartDate"]])
    for tag in tags:
        parts.append((tag, often(draw, draw(st.sampled_from(STARTS[:4])), STARTS[4:])))
    marks = often(draw, draw(st.sampled_from(MARKS[:5])), [*MARKS[5:], "absent", "twice"])
    if marks == "twice":  # the first is read, even when empty
        parts += [("AttendanceMarks", draw(st.sampled_from(["", "  ", "/\\"]))), ("AttendanceMarks", "NN")]
    elif marks != "absent":
        parts.append(("AttendanceMarks", marks))
    if draw(st.booleans()):
        parts.reverse()
    return parts


@st.composite
def year_data(draw: st.DrawFn) -> Node:
    la, estab = often(draw, OURS, SCHOOLS[1:])
    parts: list[Node] = [("Year", "2025")]
    if la is not None:
        parts.append(("LEA", la))
        if draw(st.integers(0, 9)) == 0:
            parts.insert(draw(st.sampled_from([0, len(parts)])), ("LEA", draw(st.sampled_from(["", "823"]))))
    if estab is not None:
        parts.append(("Estab", estab))
    if draw(st.booleans()):
        parts += [("SchoolName", "Day School"), ("SessionsPossible", "2")]
    runs = often(draw, draw(st.sampled_from([-1, 1])), [0, 2])
    if runs < 0:
        parts += draw(box())
    else:
        parts += [("AttendSessions", draw(box())) for _ in range(runs)]
    if draw(st.integers(0, 9)) == 0:
        parts.append(("Foo", "an element the reader does not look for"))
    if draw(st.booleans()):
        parts.reverse()
    return ("YearData", parts)


@st.composite
def pupil(draw: st.DrawFn, i: int, not_simple: list[str]) -> Node:
    parts: list[Node] = []
    make = often(draw, UPN_TEXTS[0], [*UPN_TEXTS[1:], None])
    if make is not None:
        text = make(i)
        if "&" not in text and draw(st.integers(0, 14)) == 0:
            text = f"{text[:3]}<b/>{text[3:]}"  # a child element: the text before it is the UPN's
        parts.append(("UPN", text if text else None))
    if draw(st.integers(0, 14)) == 0:  # a second UPN: the first one counts, even when empty
        parts.insert(draw(st.sampled_from([0, len(parts)])), ("UPN", draw(st.sampled_from([None, " ", UPNS[5]]))))
    if draw(st.booleans()):
        care: list[Node] = []
        in_care = often(draw, draw(st.sampled_from(IN_CARE[:2])), IN_CARE[2:])
        if in_care is not None:
            care.append(("InCare", in_care))
        authority = draw(st.sampled_from(CARE_AUTHORITY))
        if authority is not None:
            care.append(("CareAuthority", authority))
        if draw(st.booleans()):
            care.reverse()
        parts.append(("LookedAfter", care))
        if draw(st.integers(0, 9)) == 0:  # a second one: the first counts, even with no InCare
            parts.insert(draw(st.sampled_from([0, len(parts)])), ("LookedAfter", [("InCare", "true")]))
    for _ in range(often(draw, 1, [0, 2])):
        parts.append(("Attendance", [draw(year_data()) for _ in range(often(draw, 1, [0, 2]))]))
    if draw(st.integers(0, 9)) == 0:
        parts.insert(draw(st.integers(0, len(parts))), ("", "some text in the pupil"))
    if draw(st.integers(0, 19)) == 0:
        kind = draw(st.sampled_from(sorted(NOT_SIMPLE)))
        parts.insert(draw(st.integers(0, len(parts))), ("", NOT_SIMPLE[kind]))
        not_simple.append(kind)
    if draw(st.booleans()):
        parts.reverse()
    return ("Pupil", parts)


@st.composite
def drafts(draw: st.DrawFn) -> Draft:
    not_simple: list[str] = []
    ns = draw(st.sampled_from([NS_2010, None, "urn:example:ctf", "ctf"]))
    if ns == "ctf":
        not_simple.append("relative namespace")  # libxml2 warns about it
    indent = draw(st.sampled_from([None, "\n", "\r\n", "\n\t"]))
    pupils = [draw(pupil(i, not_simple)) for i in range(draw(st.integers(0, 6)))]
    if pupils and draw(st.booleans()):  # copies of one pupil under other UPNs, as in a day's file
        name, parts = pupils[-1]
        pupils += [(name, [("UPN", UPNS[(j + 3) % 8]) if part[0] == "UPN" else part for part in parts])
                   for j in range(draw(st.integers(1, 4)))]
    sender = often(draw, OURS, [OTHER, None])
    head: Node = header(sender, draw(st.sampled_from(["partial", "full"])), draw(st.sampled_from(["Day", "Ysgol T\u0177"])))
    if draw(st.integers(0, 9)) == 0:
        head = ("Header", [("", "<!-- written by hand -->"), *head[1]])
    if draw(st.integers(0, 19)) == 0:
        head = ("Heading", head[1])
        not_simple.append("no header")
    prefixed = ns is not None and draw(st.integers(0, 9)) == 0
    if prefixed:
        not_simple.append("prefixed")
    extra: Node | None = None
    if draw(st.integers(0, 19)) == 0:
        extra = draw(st.sampled_from([("Extra", "x"), ("CTFpupilData", [("Note", "x")])]))
        not_simple.append("another element")
    data = document(pupils, ns=ns, head=head, indent=indent, prefixed=prefixed, blocks=draw(st.integers(1, 2)),
                    attributes=often(draw, ' xmlns:o="urn:other"', [""], 2), extra=extra,
                    declaration=draw(st.sampled_from(['<?xml version="1.0" encoding="UTF-8"?>', "",
                                                      '<?xml version="1.0" encoding="utf-8" standalone="yes"?>'])))
    if draw(st.integers(0, 14)) == 0:  # damaged: cut short, or a stray character spliced in
        at = draw(st.integers(0, len(data)))
        data = data[:at] if draw(st.booleans()) else data[:at] + draw(st.sampled_from([b"<", b"&", b"\x01", b"]]>"])) + data[at:]
        not_simple.append("damaged")
    school = often(draw, draw(st.sampled_from([None, OURS])), [OTHER])
    seen = draw(st.sampled_from([{}, {UPNS[1]: "yesterday.xml"}, {UPNS[2]: "day.xml"}]))
    return Draft(data, not_simple, school, seen)


@pytest.mark.parametrize("kind", sorted(NOT_SIMPLE))
def test_a_pupil_with_what_the_fast_reading_leaves_alone_is_read_the_general_way(tmp_path: Path, kind: str) -> None:
    pupils = [day_pupil(0), ("Pupil", [("UPN", day_upn(1)), ("", NOT_SIMPLE[kind])]), day_pupil(2)]
    fast, _ = both_ways(write(tmp_path, document(pupils, attributes=' xmlns:o="urn:other"')))
    assert fast.fast == [False]


@pytest.mark.parametrize("extra", [("Extra", "x"), ("CTFpupilData", [("Note", "x")]), ("", "<!-- x -->")])
def test_anything_else_under_the_root_is_read_the_general_way(tmp_path: Path, extra: Node) -> None:
    fast, _ = both_ways(write(tmp_path, document([day_pupil(0)], extra=extra)))
    assert fast.fast == [False]


def test_an_empty_header_and_a_later_element_named_header(tmp_path: Path) -> None:
    """The header ends at the latest at the first tag of an element named Header: what comes after
    an empty one is checked from there, not from a later end tag."""
    year = ("Attendance", [("YearData", [("LEA", "916"), ("Estab", "2999"), ("Header", "x"),
                                         ("AttendanceStartDate", "2025-11-06"), ("AttendanceMarks", "//")])])
    pupils = [("Pupil", [("UPN", day_upn(0)), ("", NOT_SIMPLE["comment"])]), ("Pupil", [("UPN", day_upn(1)), year])]
    fast, _ = both_ways(write(tmp_path, document(pupils, head=("Header", []))))
    assert fast.fast == [False]
    fast, _ = both_ways(write(tmp_path, document(pupils[1:], head=("Header", []))))
    assert fast.fast == [True] and fast.warnings[0].code == "ctf_version"


def test_what_the_mark_check_notes_is_noted_for_every_pupil(tmp_path: Path) -> None:
    """Marks on a Saturday and unknown codes, the same for several pupils: each is counted, and the
    first pupil with one is named."""
    pupils = [day_pupil(i, start="2025-11-08" if i in (2, 3, 6) else "2025-11-06", marks="@@" if i in (4, 5, 6) else "/\\")
              for i in range(8)]
    fast, _ = both_ways(write(tmp_path, document(pupils)))
    assert fast.fast == [True]
    assert [(w.code, w.message[:14], w.where) for w in fast.warnings] == [
        ("unknown_code", "attendance cod", "day.xml record 5"), ("mark_outside_calendar", "6 mark(s) fall", "day.xml record 3")]
    assert "6 mark(s)" in fast.warnings[0].message


def _firsts() -> list[Node]:
    """Pupils with an element twice, or with a child element in a text: the general reader reads
    the first element's text before any child, even when that is empty."""
    def year(*parts: Node) -> Node:
        return ("Attendance", [("YearData", [("LEA", "916"), ("Estab", "2999"), *parts])])

    start, marks = ("AttendanceStartDate", "2025-11-06"), ("AttendanceMarks", "/\\")
    return [
        ("Pupil", [("UPN", None), ("UPN", UPNS[1]), year(start, marks)]),
        ("Pupil", [("UPN", " "), ("UPN", UPNS[1])]),
        ("Pupil", [("UPN", f"<b>{UPNS[1]}</b>")]),
        ("Pupil", [("UPN", f"{UPNS[1][:4]}<b/>{UPNS[1][4:]}")]),
        ("Pupil", [("UPN", UPNS[2]), ("LookedAfter", []), ("LookedAfter", [("InCare", "true")])]),
        ("Pupil", [("UPN", UPNS[2]), ("LookedAfter", [("InCare", None), ("InCare", "true")])]),
        ("Pupil", [("UPN", UPNS[2]), ("LookedAfter", [("InCare", "true"), ("CareAuthority", None),
                                                       ("CareAuthority", "Glos")])]),
        ("Pupil", [("UPN", UPNS[3]), ("Attendance", [("YearData", [("LEA", None), ("LEA", "823"), ("Estab", "4001"),
                                                                   start, marks])])]),
        ("Pupil", [("UPN", UPNS[3]), year(("AttendanceStartDate", None), ("AttendanceStartDate", "2025-11-06"), marks)]),
        ("Pupil", [("UPN", UPNS[3]), year(("AttendStartDate", "2025-11-07"), start, marks)]),
        ("Pupil", [("UPN", UPNS[3]), year(start, ("AttendanceMarks", "<x/>NN"))]),
        ("Pupil", [("UPN", UPNS[3]), year(start, ("AttendanceMarks", None), marks)]),
        ("Pupil", [("UPN", UPNS[4]), year(("AttendSessions", [start, marks]), ("AttendSessions", [start]),
                                          ("AttendanceMarks", "NN"), start)]),
    ]


@pytest.mark.parametrize("pupil", _firsts())
def test_the_first_element_and_its_first_text_are_read(tmp_path: Path, pupil: Node) -> None:
    fast, _ = both_ways(write(tmp_path, document([day_pupil(0), pupil])))
    assert fast.fast == [True]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drafts())
def test_every_file_reads_the_same_both_ways_and_a_simple_one_fast(draft: Draft) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), draft.data)
        fast, _ = both_ways(path, school=draft.school, seen=draft.seen)
    event("read fast" if True in fast.fast else f"read the general way {sorted(set(draft.not_simple))}")
    event("rejected" if fast.rejected else f"{len([r for r in fast.records or [] if isinstance(r, MarksRecord)])} runs")
    if not draft.not_simple:
        assert fast.fast == [True], "a simple file was read the general way"
    elif set(draft.not_simple) - {"damaged"}:
        assert True not in fast.fast, f"read fast though {draft.not_simple}"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 7), min_size=1, max_size=4))
def test_the_same_pupils_in_several_files_of_a_run(days: list[int]) -> None:
    """``seen`` is shared by the files of one run: a pupil met in an earlier file is warned about."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        results: dict[bool, list[tuple[Any, ...]]] = {True: [], False: []}
        for fast in (True, False):
            seen: dict[str, str] = {}
            for n, first in enumerate(days):
                path = write(folder, document([day_pupil(i) for i in range(first, first + 3)]), f"day-{n}.xml")
                options: dict[str, Any] = {"seen": seen}
                with way(fast) as taken:
                    batch = read_file(path, options)
                    records = list(batch.records)
                assert taken == [fast]
                results[fast].append((records, batch.warnings, dict(seen)))
        assert results[True] == results[False]


def test_the_lines_are_what_the_general_reader_reads() -> None:
    """The line format itself, on one pupil of every part (``pupil_lines`` directly)."""
    pupils = [("Pupil", [("UPN", " a123 456789012 "), ("LookedAfter", [("CareAuthority", "Glos"), ("InCare", "true")]),
                         ("Attendance", [("YearData", [("LEA", "916"), ("Estab", "2999"),
                                                       ("AttendStartDate", "2025-11-06"), ("AttendanceMarks", " /"),
                                                       ("AttendanceStartDate", "2025-11-07")]),
                                         ("YearData", [("AttendSessions", [("AttendanceMarks", "NN")]),
                                                       ("AttendSessions", [])])])])]
    with tempfile.TemporaryDirectory() as tmp:
        lines = fastread.pupil_lines(prepare(write(Path(tmp), document(pupils))))
    assert lines is not None
    assert [line.split(fastread.FIELD) for line in lines] == [
        [" a123 456789012 ", "true", "Glos", "Y", "916", "2999", "B", "A", "2025-11-07", " /",
         "Y", "", "", "B", "", "", "NN", "B", "", "", ""]]


def test_a_file_given_a_doctype_after_it_was_prepared_is_not_read_fast(tmp_path: Path) -> None:
    path = write(tmp_path, document([day_pupil(0)]))
    prep = prepare(path)
    assert fastread.pupil_lines(prep) is not None
    path.write_bytes(path.read_bytes().replace(b"?>", b'?><!DOCTYPE CTfile [<!ENTITY a "b">]>', 1))
    assert fastread.pupil_lines(replace(prep, size=path.stat().st_size)) is None
