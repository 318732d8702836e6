"""The fast way through a simple CTF: a day's register, read by libxml2 and libxslt in C.

A local authority's day is ten partial CTFs of 10,000 pupils each, every pupil with a UPN,
perhaps ``LookedAfter``, and one day's ``Attendance``. The general reader (``parser._Reader``)
has expat build each ``Pupil`` and then walks it in Python. Here libxml2 parses the whole (small)
file and an XSLT, generated for the namespace of the root element, writes one short line per
pupil holding just the texts the general reader reads; Python only splits the lines, and
``parser._Reader.simple_pupils`` turns them into records through the general reader's own methods.

This is an optimisation only, for files where nothing can read differently. ``pupil_lines``
answers None, and the general reader reads the file, unless all of these hold:

- the file is at most ``MAX_BYTES`` (libxml2's tree takes about 7 times the file's size), in an
  encoding ``prepare`` found no fault with and that writes ASCII as ASCII;
- libxml2 parses it (no DTD, no network, no entity expansion, default size limits) with no error
  and no warning; a file it refuses is left to the general reader, which words the refusal;
- the root element is an unprefixed ``CTfile`` whose first child is a ``Header``; the header is
  read by the general reader's own code, from expat's reading (``read_file`` reads it first);
- after the header, the bytes are ASCII with no comment, CDATA section, processing
  instruction, character reference, namespace declaration, nor element with a prefix of the root's:
  so every element there is in the root's namespace, a name means the same to both readers,
  and libxml2 and expat agree on what is well-formed (ASCII names; the Unicode editions of XML
  they follow differ only in other characters);
- the root's other children are ``CTFpupilData`` elements holding only ``Pupil`` elements; a
  pupil's children are only ``UPN``, ``LookedAfter`` and ``Attendance``, and an ``Attendance``'s
  only ``YearData``.

Inside ``LookedAfter``, ``YearData`` and ``AttendSessions`` other elements may be present (the
summary counts such as ``SessionsPossible``): the general reader looks children up by name, so with
every element in one namespace it never sees them either. A text is taken as the general reader
takes ``Element.text``: the element's first child node when that is text (the text before any child
element), so an element with children reads the same both ways.

Lines and fields are separated by two private-use characters (``LINE``, ``FIELD``): no text can
hold them, as the bytes after the header are ASCII with no character reference.
"""

from __future__ import annotations

import codecs
import functools
import re

from lxml import etree

from cme_batch.xmlstream import HEAD, Prepared, XmlRefused, check_prolog, open_export

#: The largest file read this way: libxml2's tree of a 5.3 MB day file (10,000 pupils) takes about
#: 37 MB, 7 times the file, so a file of this size needs about 90 MB for the tree and its bytes.
MAX_BYTES = 12 << 20
#: At most one ``<`` in this many bytes: a day file has one in 15-23 bytes. A file dense in elements
#: (say 300 empty ones in each YearData, which the general reader ignores) makes a tree of some 30
#: times its size; the general reader's memory stays flat whatever the file holds.
TAG_DENSITY = 12
#: ... checked from this size on (below it, even such a tree is a few tens of megabytes).
DENSE_FROM = 1 << 20
#: Between the fields of a pupil's line, and before each pupil's line.
FIELD, LINE = "\ue000", "\ue001"
#: The start date's element, by its letter in a line (``AttendanceStartDate`` is looked for first).
START_TAGS: dict[str, str | None] = {"": None, "A": "AttendanceStartDate", "S": "AttendStartDate"}
#: Codecs that write ASCII as ASCII, and the name libxml2 is told to read the bytes in (overriding
#: the declaration, as the general reader's parser is told).
_ENCODINGS = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "ascii": "US-ASCII", "iso8859-1": "ISO-8859-1",
              "latin-1": "ISO-8859-1", "cp1252": "windows-1252"}
#: The end tag of an element named Header, with any prefix; the start tag, for an empty header.
_HEADER_END = re.compile(rb"</(?:[^\s<>/:]+:)?Header\s*>")
_HEADER_START = re.compile(rb"<(?:[^\s<>/:!?]+:)?Header[\s/>]")
_XSL = "http://www.w3.org/1999/XSL/Transform"


def pupil_lines(prep: Prepared) -> list[str] | None:
    """The file's pupils, one line each, or None when the file is not simple (see above).

    A line is ``FIELD``-separated texts, ``""`` for no element or no text: ``UPN``, ``InCare``,
    ``CareAuthority`` (of the first ``UPN`` and the first ``LookedAfter``); then for each
    ``Attendance/YearData``: ``"Y"``, ``LEA``, ``Estab``, then for each of its ``AttendSessions``
    (or for the ``YearData`` itself when it has none): ``"B"``, the start date's element (a key
    of ``START_TAGS``), the start date, the marks.
    """
    encoding = _ENCODINGS.get(codecs.lookup(prep.encoding).name)
    if encoding is None or prep.warnings or prep.size > MAX_BYTES:
        return None
    try:
        with open_export(prep.path) as f:
            data = f.read(MAX_BYTES + 1)
    except (OSError, XmlRefused):  # the general reader says what is wrong
        return None
    if len(data) > MAX_BYTES or (len(data) > DENSE_FROM and data.count(b"<") > len(data) // TAG_DENSITY):
        return None  # (many elements for the size: libxml2's tree would outgrow the bound above)
    # No DOCTYPE (prepare() refused one; checked again on these bytes, as the general reader does),
    # so no entity can be declared; none would be expanded here anyway.
    try:
        check_prolog(data[:HEAD].removeprefix(codecs.BOM_UTF8).decode("latin-1"))
    except XmlRefused:
        return None
    parser = etree.XMLParser(encoding=encoding, resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False, collect_ids=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return None
    if len(parser.error_log) or root.prefix is not None or etree.QName(root).localname != "CTfile":
        return None
    ns = root.nsmap.get(None) or None  # (xmlns="" is no namespace)
    header = root[0] if len(root) else None
    if header is None or header.tag != etree.QName(ns, "Header").text:
        return None
    # The header ends here at the latest: the first end tag of an element named Header (its own,
    # or one inside it), or for an empty header the first start tag of one. Starting early only
    # checks more.
    end = (_HEADER_START if len(header) == 0 and header.text is None else _HEADER_END).search(data)
    if end is None or not _plain(data, end.start(), [p for p in root.nsmap if p]):
        return None
    del data
    counts = [int(n) for n in str(_checks(ns)(root)).split()]
    children, headers, blocks, in_blocks, pupils, in_pupils, known, in_attendance, years = counts
    if headers != 1 or children != headers + blocks or in_blocks != pupils or in_pupils != known or (
            in_attendance != years):
        return None
    try:
        lines = str(_stylesheet(ns)(root)).split(LINE)
    except etree.XSLTApplyError:
        return None
    if lines[0] or len(lines) - 1 != pupils:
        return None
    return lines[1:]


def _plain(data: bytes, start: int, prefixes: list[str]) -> bool:
    """``data`` from ``start`` is ASCII with no comment, CDATA section, processing instruction,
    character reference, namespace declaration, nor element with one of ``prefixes`` (or ``xml``).

    Nothing is copied. A search for two bytes is made only when the rarer one is there: a search
    for one byte is many times faster.
    """
    if not data.isascii() and not data[start:].isascii():
        return False

    def has(what: bytes, rare: bytes) -> bool:
        return data.find(rare, start) >= 0 and data.find(what, start) >= 0

    if has(b"<!", b"!") or has(b"<?", b"?") or has(b"&#", b"&") or has(b"xmlns", b"="):
        return False
    # (a prefix that is not ASCII cannot be written in the ASCII bytes checked)
    return not any(has(b"<" + p.encode("ascii") + b":", b":") for p in [*prefixes, "xml"] if p.isascii())


def _names(ns: str | None) -> tuple[dict[str, str], str]:
    """The namespace map for expressions in the root's namespace, and the prefix of their names."""
    return ({"c": ns}, "c:") if ns else ({}, "")


@functools.lru_cache(maxsize=8)
def _checks(ns: str | None) -> etree.XPath:
    """The counts ``pupil_lines`` compares, as one text (XPath 1.0 has no sequences), found in C."""
    nsmap, c = _names(ns)
    pupil = f"/*/{c}CTFpupilData/{c}Pupil"
    parts = [
        "count(/*/*)", f"count(/*/{c}Header)", f"count(/*/{c}CTFpupilData)", f"count(/*/{c}CTFpupilData/*)",
        f"count({pupil})", f"count({pupil}/*)",
        f"count({pupil}/{c}UPN) + count({pupil}/{c}LookedAfter) + count({pupil}/{c}Attendance)",
        f"count({pupil}/{c}Attendance/*)", f"count({pupil}/{c}Attendance/{c}YearData)",
    ]
    return etree.XPath("concat(" + ", ' ', ".join(parts) + ")", namespaces=nsmap)


@functools.lru_cache(maxsize=8)
def _stylesheet(ns: str | None) -> etree.XSLT:
    """The stylesheet writing one line per pupil (see ``pupil_lines``) for names in namespace ``ns``."""
    _nsmap, c = _names(ns)

    def text(path: str) -> str:
        """The general reader's ``Element.text`` of the first element at ``path``: its first node, if text."""
        steps = "/".join(f"{c}{step}[1]" for step in path.split("/"))
        return f'<xsl:value-of select="{steps}/node()[1][self::text()]"/>'

    def out(text: str) -> str:  # FIELD and LINE written as character references
        return "<xsl:text>" + text.replace(FIELD, "&#xE000;").replace(LINE, "&#xE001;") + "</xsl:text>"

    box = (f'{out(FIELD + "B" + FIELD)}<xsl:choose>'
           f'<xsl:when test="{c}AttendanceStartDate">{out("A" + FIELD)}{text("AttendanceStartDate")}</xsl:when>'
           f'<xsl:when test="{c}AttendStartDate">{out("S" + FIELD)}{text("AttendStartDate")}</xsl:when>'
           f"<xsl:otherwise>{out(FIELD)}</xsl:otherwise></xsl:choose>{out(FIELD)}{text('AttendanceMarks')}")
    declare = f' xmlns:c="{_quoted(ns)}"' if ns else ""
    xsl = f"""<xsl:stylesheet version="1.0" xmlns:xsl="{_XSL}"{declare}>
<xsl:output method="text" encoding="UTF-8"/>
<xsl:template match="/">
 <xsl:for-each select="/*/{c}CTFpupilData/{c}Pupil">
  {out(LINE)}{text("UPN")}{out(FIELD)}{text("LookedAfter/InCare")}{out(FIELD)}{text("LookedAfter/CareAuthority")}
  <xsl:for-each select="{c}Attendance/{c}YearData">
   {out(FIELD + "Y" + FIELD)}{text("LEA")}{out(FIELD)}{text("Estab")}
   <xsl:choose>
    <xsl:when test="{c}AttendSessions"><xsl:for-each select="{c}AttendSessions">{box}</xsl:for-each></xsl:when>
    <xsl:otherwise>{box}</xsl:otherwise>
   </xsl:choose>
  </xsl:for-each>
 </xsl:for-each>
</xsl:template>
</xsl:stylesheet>"""
    return etree.XSLT(etree.fromstring(xsl.encode("utf-8")))


def _quoted(value: str) -> str:
    """``value`` as the text of an attribute value in double quotes."""
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
            .replace("\t", "&#9;").replace("\n", "&#10;").replace("\r", "&#13;"))
