"""Safe, streaming reading of XML export files (SIMS CommandReporter output, CTF).

Why this exists: export files can be hundreds of megabytes, can come from Windows tools that
declare one encoding and write another, and are read by a service holding children's data,
so the reader must keep memory flat, must never expand entities, and must explain every
refusal in terms a school's data manager can act on.

Reading a file is two passes:

1. ``prepare(path)`` looks at the head (byte-order mark, XML declaration, prolog) and refuses
   a DOCTYPE before anything else is read: no DTD means no entity can be declared, so entity
   expansion (billion laughs, external entities) cannot happen. It then reads the file once
   to compute its SHA-256 and to check that its bytes really are in the declared encoding;
   when they are not, it picks the encoding the bytes fit (UTF-8, else Windows-1252) and says
   so in a warning.
2. ``iter_elements(prepared, paths)`` decodes the file in chunks and feeds text to
   ElementTree's C pull parser, yielding the elements at the requested paths (matched by local
   name, so a namespace or none makes no difference) and dropping every element once it ends.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError, XMLPullParser
from xml.parsers import expat

CHUNK = 1 << 20
HEAD = 1 << 16
_DECL_ENCODING = re.compile(rb"""^<\?xml[^>]*?\sencoding\s*=\s*["']([A-Za-z0-9._\-]+)["']""")
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4}|[0-9A-Fa-f]{8})_")
_LABELS = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "iso8859-1": "ISO-8859-1", "latin-1": "ISO-8859-1",
           "cp1252": "Windows-1252", "utf-16": "UTF-16", "ascii": "US-ASCII"}


class XmlRefused(Exception):
    """The file cannot be read as a safe, well-formed XML document. The text names the place."""


@dataclass
class Prepared:
    """What the first pass learnt about a file: enough to decide whether and how to read it."""

    path: Path
    checksum: str
    size: int
    encoding: str  # a Python codec name, the one the bytes really are in
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name


def label(encoding: str) -> str:
    """A person-friendly name for a codec."""
    return _LABELS.get(codecs.lookup(encoding).name, encoding)


def decode_name(name: str) -> str:
    """Undo the ``_xHHHH_`` escapes .NET puts in element names (``Legal_x0020_Surname``)."""
    if "_x" not in name:
        return name
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


def field_key(name: str) -> str:
    """The form in which field names are compared: decoded, no spaces or underscores, lower case."""
    return "".join(c for c in decode_name(name) if not c.isspace() and c != "_").lower()


def local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if tag.startswith("{") else tag


# -- pass 1: head and encoding ------------------------------------------------------------------
def _declared(head: bytes) -> tuple[str, int]:
    """The codec the head declares (BOM first, then the XML declaration) and the BOM's length."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", 3
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", 2
    m = _DECL_ENCODING.match(head)
    if not m:
        return "utf-8", 0
    name = m.group(1).decode("ascii")
    try:
        return codecs.lookup(name).name, 0
    except LookupError:
        raise XmlRefused(f"the XML declaration names an unknown encoding {name!r}") from None


def check_prolog(text: str) -> None:
    """Refuse a DOCTYPE (and anything else that is not a comment or processing instruction)
    before the root element; also refuse a head that has no root element at all."""
    i, n = (1 if text.startswith("\ufeff") else 0), len(text)
    while True:
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n:
            raise XmlRefused("no root element in the first 64 KB (the file is empty or not XML)")
        if text.startswith("<?", i):
            end = text.find("?>", i + 2)
        elif text.startswith("<!--", i):
            end = text.find("-->", i + 4)
        elif text.startswith("<!", i):
            what = "a DOCTYPE" if text.startswith("<!DOCTYPE", i) else "a markup declaration"
            raise XmlRefused(f"refused: the file contains {what} before its root element; export files never "
                             "need one, and a DTD can declare entities that expand without limit")
        elif text.startswith("<", i):
            return
        else:
            raise XmlRefused("text before the root element: this is not an XML export")
        if end < 0:
            raise XmlRefused("the prolog before the root element is cut off or longer than 64 KB")
        i = end + 2


def _fits(path: Path, encoding: str) -> int | None:
    """The byte offset of the first byte that does not decode in ``encoding``, or None."""
    dec = codecs.getincrementaldecoder(encoding)("strict")
    done = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            try:
                dec.decode(chunk)
            except UnicodeDecodeError as exc:
                return done + exc.start
            done += len(chunk)
        try:
            dec.decode(b"", final=True)
        except UnicodeDecodeError:
            return done
    return None


def prepare(path: Path) -> Prepared:
    """Refuse unsafe or unreadable files at once; hash the file and settle its real encoding."""
    try:
        with path.open("rb") as f:
            head = f.read(HEAD)
    except OSError as exc:
        raise XmlRefused(f"cannot read the file: {exc.strerror}") from exc
    declared, _bom = _declared(head)
    check_prolog(head.decode(declared if declared != "utf-8" else "utf-8-sig", errors="replace"))
    sha = hashlib.sha256()
    size = 0
    any_high = False
    utf8 = codecs.getincrementaldecoder("utf-8")("strict")
    utf8_ok = True
    bad_at: int | None = None
    strict = codecs.getincrementaldecoder(declared)("strict")
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            if bad_at is None:
                try:
                    strict.decode(chunk)
                except UnicodeDecodeError as exc:
                    bad_at = size + exc.start
            if not chunk.isascii():
                any_high = True
                if utf8_ok:
                    try:
                        utf8.decode(chunk)
                    except UnicodeDecodeError:
                        utf8_ok = False
            size += len(chunk)
    if bad_at is None:
        try:
            strict.decode(b"", final=True)
        except UnicodeDecodeError:
            bad_at = size
    prep = Prepared(path, sha.hexdigest(), size, "utf-8-sig" if declared == "utf-8" else declared)
    single_byte = declared in ("iso8859-1", "latin-1", "cp1252", "ascii")
    if bad_at is not None:
        if declared == "utf-8" and _fits(path, "cp1252") is None:
            prep.encoding = "cp1252"
        elif declared != "utf-8" and utf8_ok:
            prep.encoding = "utf-8-sig"
        else:
            raise XmlRefused(f"byte {bad_at} is not valid {label(declared)}, the encoding the file declares, "
                             "and the file fits no other encoding an MIS writes")
        prep.warnings.append(f"the file declares {label(declared)} but byte {bad_at} is not valid "
                             f"{label(declared)}; read as {label(prep.encoding)}")
    elif single_byte and any_high and utf8_ok and declared != "ascii":
        prep.encoding = "utf-8-sig"
        prep.warnings.append(f"the file declares {label(declared)} but its bytes are UTF-8; read as UTF-8")
    return prep


# -- pass 2: streaming elements ------------------------------------------------------------------
def _chunks(prep: Prepared) -> Iterator[str]:
    dec = codecs.getincrementaldecoder(prep.encoding)("strict")
    with prep.path.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield dec.decode(chunk)
    yield dec.decode(b"", final=True)


#: Text handed to the parser at a time: events are taken (and finished elements dropped) after each.
FEED = 1 << 16


def _events(prep: Prepared) -> Iterator[list[tuple[str, Any]]]:
    """The C parser's (event, element) lists, one per piece of text fed.

    ElementTree's C tree builder does the per-element work, so Python only sees two events per
    element (and a ``start-ns`` event per namespace declaration). The prolog of the very text fed
    is checked again (``check_prolog``): the file cannot have gained a DOCTYPE since ``prepare``
    looked, so no entity is ever declared.
    """
    parser: Any = XMLPullParser(events=("start", "end", "start-ns"))
    # The events are taken straight from the parser's queue when it has one (read_events() is a
    # Python generator, a noticeable cost at 100,000 pupils); an error comes last in the queue.
    queue = getattr(parser, "_events_queue", None)
    first = True

    def taken() -> list[tuple[str, Any]]:
        if queue is None:
            return list(parser.read_events())
        items = list(queue)
        queue.clear()
        if items and isinstance(items[-1], Exception):
            raise items[-1]
        return items

    try:
        for text in _chunks(prep):
            if first and text:
                check_prolog(text)
                first = False
            for i in range(0, len(text), FEED):
                parser.feed(text[i:i + FEED])
                yield taken()
        parser.close()
        yield taken()
    except ParseError as exc:
        line, column = exc.position
        raise XmlRefused(f"line {line}, column {column}: the XML is not well-formed "
                         f"({expat.ErrorString(exc.code)}); the file may be cut off or damaged") from None
    except UnicodeDecodeError as exc:  # the file changed since prepare()
        raise XmlRefused(f"the file changed while it was read ({exc.reason})") from None


def _local(tag: str) -> str:
    return tag[tag.index("}") + 1:] if tag[:1] == "{" else tag


def _strip_namespaces(el: Element) -> None:
    for e in el.iter():
        if e.tag[:1] == "{":
            e.tag = e.tag[e.tag.index("}") + 1:]


def iter_elements(prep: Prepared, roots: Iterable[str], paths: Iterable[tuple[str, ...]]
                  ) -> Iterator[tuple[tuple[str, ...], Element]]:
    """Yield ``(path, element)`` for each complete element at one of ``paths``.

    Paths are tuples of local names from the root, e.g. ``("CTfile", "CTFpupilData", "Pupil")``.
    Tags are matched and built by local name (a namespace, by prefix or default, makes no
    difference). Every other element is dropped as soon as it ends, so memory stays flat. Raises
    ``XmlRefused`` for a DOCTYPE, a wrong root element or a document that is not well-formed,
    naming line and column (e.g. a file cut off mid-record).
    """
    roots, wanted = tuple(roots), set(paths)
    depths = {len(p) for p in wanted}
    names: list[str] = []
    parents: list[Element] = []
    depth = inside = 0  # inside: the depth of the wanted element being built (0: none)
    namespaced = False  # no namespace declared yet, so no tag can carry one
    for events in _events(prep):
        for event, el in events:
            if event == "start-ns":
                namespaced = True
                continue
            if event == "start":
                depth += 1
                if inside:
                    continue
                tag = _local(el.tag)
                names.append(tag)
                parents.append(el)
                if depth == 1 and tag not in roots:
                    raise XmlRefused(_wrong_root(tag, roots))
                if depth in depths and tuple(names) in wanted:
                    inside = depth
                continue
            if inside and depth > inside:
                depth -= 1
                continue
            depth -= 1
            path = tuple(names)
            names.pop()
            parents.pop()
            if parents:
                del parents[-1][:]  # drop it (and any sibling already begun: the builder keeps those)
            if inside:
                inside = 0
                if namespaced:
                    _strip_namespaces(el)
                yield path, el


def iter_flat(prep: Prepared, roots: Iterable[str], path: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """Yield each record at ``path`` as a dict of raw field name (local name) to text; a field
    that has children gives its leading text, and a field given twice the two texts joined.
    Refusals as ``iter_elements``."""
    for _path, el in iter_elements(prep, roots, [path]):
        rec: dict[str, str] = {}
        for f in el:
            text = f.text
            if text is not None:
                rec[f.tag] = rec[f.tag] + text if f.tag in rec else text
        yield rec


def _wrong_root(tag: str, expected: tuple[str, ...]) -> str:
    if tag == "CommandReporterError":
        return ("SIMS CommandReporter wrote an error instead of a report (root <CommandReporterError>): "
                "check the report name and the SIMS user's permissions")
    return f"the root element is <{tag}>, expected <{'> or <'.join(expected)}>"


def text_of(el: Element | None) -> str | None:
    """An element's text, stripped; None when the element is absent or empty."""
    if el is None or el.text is None:
        return None
    v = el.text.strip()
    return v or None
