"""``xmlstream.iter_elements``: the records of a CTF-shaped file, read by expat a piece at a time.

The reading is checked against the lxml reading it replaced (``_copied_from_lxml``) on
generated documents cut into pieces of every size, and against the refusals and encodings a
school's files bring.
"""

from __future__ import annotations

import re
import tracemalloc
from pathlib import Path
from xml.etree.ElementTree import tostring
from xml.sax.saxutils import escape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cme_batch import xmlstream
from cme_batch.xmlstream import XmlRefused, iter_elements, prepare

ROOTS = ("CTfile",)
PATHS = (("CTfile", "Header"), ("CTfile", "CTFpupilData", "Pupil"))
TEXT = st.text(alphabet="abcZoë &<>'\"\u00e9\u4e2d1", max_size=6)


@st.composite
def documents(draw: st.DrawFn) -> str:
    """A CTF-shaped document: a header, pupils with nested fields, and elements at other paths."""
    ns = draw(st.sampled_from(["", "", ' xmlns="urn:ctf"', ' xmlns:c="urn:ctf"']))
    prefix = "c:" if "xmlns:c" in ns else ""

    def el(name: str, body: str) -> str:
        return f"<{prefix}{name}>{body}</{prefix}{name}>"

    def field() -> str:
        name = draw(st.sampled_from(["UPN", "Surname", "Phones", "Contact"]))
        inner = el("PhoneNo", escape(draw(TEXT))) if name in ("Phones", "Contact") else escape(draw(TEXT))
        return el(name, inner)

    pupils = [el("Pupil", "".join(field() for _ in range(draw(st.integers(0, 4)))))
              for _ in range(draw(st.integers(0, 8)))]
    stray = el("Pupil", el("UPN", "stray"))  # a Pupil where no record is: never handed out
    blocks = [el("Header", el("CTFversion", "25.0") + stray), el("CTFpupilData", "\n  ".join(pupils))]
    if draw(st.booleans()):
        blocks.insert(draw(st.integers(0, 2)), stray)
    if draw(st.booleans()):
        blocks.append(el("CTFpupilData", el("Pupil", el("UPN", escape(draw(TEXT))))))
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{prefix}CTfile{ns}>\n' + "\n".join(blocks) + f"\n</{prefix}CTfile>"


def read(path: Path, reader: object = iter_elements) -> list[tuple[tuple[str, ...], bytes]]:
    return [(p, tostring(el, encoding="utf-8")) for p, el in reader(prepare(path), ROOTS, PATHS)]  # type: ignore[operator]


@settings(max_examples=150, deadline=None)
@given(doc=documents(), feed=st.integers(1, 300))
def test_records_are_those_the_lxml_reading_gives(tmp_path_factory: pytest.TempPathFactory, doc: str,
                                                    feed: int) -> None:
    path = tmp_path_factory.mktemp("doc") / "f.xml"
    path.write_text(doc, encoding="utf-8")
    expected = read(path, xmlstream._copied_from_lxml)
    old = xmlstream.FEED
    xmlstream.FEED = feed  # records cut across pieces at every point
    try:
        got = read(path)
    finally:
        xmlstream.FEED = old
    assert got == expected
    assert all(b"stray" not in body for p, body in got if p == PATHS[1])
    assert sum(p == PATHS[1] for p, _b in got) == doc.count("<Pupil>") + doc.count("<c:Pupil>") - doc.count("stray")


@pytest.mark.parametrize(("declared", "raw_of"), [
    ("UTF-8", lambda body: b"\xef\xbb\xbf" + body.encode("utf-8")),  # with a byte-order mark
    ("ISO-8859-1", lambda body: body.encode("latin-1")),
    ("UTF-8", lambda body: body.encode("cp1252")),  # declares UTF-8, written by a Windows tool
    ("UTF-16", lambda body: b"\xff\xfe" + body.encode("utf-16-le")),
])
def test_encodings_a_school_s_files_come_in(tmp_path: Path, declared: str, raw_of: object) -> None:
    body = (f'<?xml version="1.0" encoding="{declared}"?><CTfile><CTFpupilData><Pupil><Surname>Zoë</Surname>'
            "</Pupil></CTFpupilData></CTfile>")
    path = tmp_path / "f.xml"
    path.write_bytes(raw_of(body))  # type: ignore[operator]
    [(_path, pupil)] = iter_elements(prepare(path), ROOTS, PATHS)
    assert pupil.findtext("Surname") == "Zoë"


@pytest.mark.parametrize(("body", "message"), [
    ("<CTfile><CTFpupilData><Pupil><UPN>A</UPN></Pupil><Pupil><UP", r"line 1, column 5\d: the XML is not well-formed \(unclosed token\)"),
    ("<CTfile><CTFpupilData><Pupil><UPN>&bomb;</UPN></Pupil></CTFpupilData></CTfile>", "undefined entity"),
    ("<CTfile><Pupil></CTfile>", "mismatched tag"),
    ("<SuperStarReport><Record/></SuperStarReport>", "the root element is <SuperStarReport>, expected <CTfile>"),
])
def test_files_that_cannot_be_read_are_refused_with_the_place(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "f.xml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(XmlRefused, match=message):
        list(iter_elements(prepare(path), ROOTS, PATHS))


def test_records_are_dropped_once_handed_out(tmp_path: Path) -> None:
    """Memory stays flat: reading 20,000 records holds a few pieces' worth, not the tree."""
    pupils = "".join(f"<Pupil><UPN>{i}</UPN><Surname>S{i}</Surname><DOB>2015-01-01</DOB></Pupil>" for i in range(20000))
    path = tmp_path / "f.xml"
    path.write_text(f"<CTfile><CTFpupilData>{pupils}</CTFpupilData></CTfile>", encoding="utf-8")
    tracemalloc.start()
    try:
        upns = [el.findtext("UPN") for _path, el in iter_elements(prepare(path), ROOTS, PATHS)]
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert upns == [str(i) for i in range(20000)]
    assert peak < 4_000_000  # the whole tree would take well over 10 MB (the list of UPNs: about 1.3 MB)


def test_without_the_standard_parser_s_event_switch_the_lxml_reading_is_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.xml"
    path.write_text("<CTfile><Header><CTFversion>25</CTFversion></Header><CTFpupilData><Pupil><UPN>A</UPN>"
                    "</Pupil></CTFpupilData></CTfile>", encoding="utf-8")
    expected = read(path)
    monkeypatch.setattr(xmlstream, "_CAN_STOP_EVENTS", False)
    assert read(path) == expected and [p for p, _b in expected] == list(PATHS)


def test_a_file_changed_after_its_check_is_checked_again(tmp_path: Path) -> None:
    """The prolog is checked on the very text parsed: a DOCTYPE written after ``prepare`` is refused."""
    path = tmp_path / "f.xml"
    path.write_text("<CTfile><CTFpupilData><Pupil><UPN>A</UPN></Pupil></CTFpupilData></CTfile>", encoding="utf-8")
    prep = prepare(path)
    path.write_text('<!DOCTYPE CTfile [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
                    "<CTfile><CTFpupilData><Pupil><UPN>&b;</UPN></Pupil></CTFpupilData></CTfile>", encoding="utf-8")
    with pytest.raises(XmlRefused, match="DOCTYPE"):
        list(iter_elements(prep, ROOTS, PATHS))


@pytest.mark.parametrize(("damaged", "problem"), [
    ("Sample<Jones>", "mismatched tag"),  # libxml2: "Opening and ending tag mismatch: Jones ..."
    ("Sample&Jones;", "undefined entity"),  # libxml2: "Entity 'Jones' not defined"
    ("Sample</Jones>", "mismatched tag"),
    ("Sample<Jones x=1>", "attribute not started"),
    ("Sample<Jones", "a name was expected: a stray '<' or '&'?"),
    ("Sample<Jones Smith>", "attribute without value"),  # libxml2: "... value for attribute Smith"
    ("Sample & Jones", "a name was expected: a stray '<' or '&'?"),
])
@pytest.mark.parametrize("reader", ["sims", "ctf"])
def test_a_damaged_file_is_refused_without_quoting_its_text(tmp_path: Path, damaged: str, problem: str,
                                                            reader: str) -> None:
    """The refusal is printed and stored: it names line, column and what is wrong, never a pupil's name
    from the file, though libxml2's own message (SIMS files) would quote it."""
    path = tmp_path / "f.xml"
    if reader == "sims":
        path.write_text('<?xml version="1.0"?><SuperStarReport>\n<Record><Adno>1</Adno>'
                        f"<Legal_x0020_Surname>{damaged}</Legal_x0020_Surname></Record></SuperStarReport>")
        with pytest.raises(XmlRefused) as info:
            list(xmlstream.iter_flat(prepare(path), ("SuperStarReport",), ("SuperStarReport", "Record")))
    else:
        path.write_text(f"<CTfile><CTFpupilData>\n<Pupil><Surname>{damaged}</Surname></Pupil></CTFpupilData></CTfile>")
        with pytest.raises(XmlRefused) as info:
            list(iter_elements(prepare(path), ROOTS, PATHS))
    text = str(info.value)
    assert re.match(r"line 2, column \d+: the XML is not well-formed \(.+\); the file may be cut off or damaged$", text)
    assert "Jones" not in text and "Sample" not in text
    if reader == "sims":
        assert f"({problem})" in text


def test_a_marks_like_text_keeps_its_blanks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``raw_text_of`` gives a text as written, blanks at either end kept, by both readings."""
    path = tmp_path / "f.xml"
    path.write_text("<CTfile><CTFpupilData><Pupil><AttendanceMarks>  /I#  </AttendanceMarks><UPN> A </UPN>"
                    "<Surname>   </Surname></Pupil></CTFpupilData></CTfile>", encoding="utf-8")
    for stops_events in (True, False):
        monkeypatch.setattr(xmlstream, "_CAN_STOP_EVENTS", stops_events)
        [(_path, pupil)] = iter_elements(prepare(path), ROOTS, PATHS)
        assert xmlstream.raw_text_of(pupil.find("AttendanceMarks")) == "  /I#  "
        assert xmlstream.raw_text_of(pupil.find("Surname")) == "   "
        assert xmlstream.text_of(pupil.find("UPN")) == "A" and xmlstream.text_of(pupil.find("Surname")) is None
        assert xmlstream.raw_text_of(pupil.find("Missing")) is None
