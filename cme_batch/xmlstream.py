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
2. ``iter_elements(prepared, paths)`` decodes the file in chunks and feeds text to the C
   pull parser, yielding the elements at the requested paths (matched by local name, so a
   namespace or none makes no difference) and dropping each one once the caller is done.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, SubElement
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


def _refuse_dtd(*_args: object) -> None:
    raise XmlRefused("refused: the file declares a DOCTYPE or entities")


def _refuse_external(*_args: object) -> int:
    raise XmlRefused("refused: the file refers to an external entity")


class _Builder:
    """expat callbacks that build an element tree only inside the wanted subtrees.

    Outside them elements are only counted by depth and forgotten, which keeps memory flat.
    Inside one, the parser is switched to two lean callbacks (``inner_start``/``inner_end``)
    that only build elements: the per-element cost is what makes a 100 MB file take seconds.
    """

    def __init__(self, roots: tuple[str, ...], wanted: set[tuple[str, ...]]) -> None:
        self.roots, self.wanted = roots, wanted
        self.depths = {len(p) for p in wanted}
        self.names: list[str] = []
        self.stack: list[Element] = []
        self.open: Element | None = None
        self.path: tuple[str, ...] = ()
        self.ready: list[tuple[tuple[str, ...], Element]] = []
        self.parser: Any = None

    def start(self, tag: str, _attrs: object) -> None:
        if ":" in tag:
            tag = tag.rsplit(":", 1)[1]
        names = self.names
        names.append(tag)
        if len(names) in self.depths and tuple(names) in self.wanted:
            el = Element(tag)
            self.path = tuple(names)
            self.stack.append(el)
            self.open = el
            self.parser.StartElementHandler = self.inner_start
            self.parser.EndElementHandler = self.inner_end
            return
        if len(names) == 1 and tag not in self.roots:
            raise XmlRefused(_wrong_root(tag, self.roots))
        self.open = None

    def inner_start(self, tag: str, _attrs: object) -> None:
        if ":" in tag:
            tag = tag.rsplit(":", 1)[1]
        el = SubElement(self.stack[-1], tag)
        self.stack.append(el)
        self.open = el

    def data(self, text: str) -> None:
        el = self.open
        if el is not None:
            el.text = text if el.text is None else el.text + text

    def inner_end(self, _tag: str) -> None:
        self.open = None
        stack = self.stack
        el = stack.pop()
        if not stack:
            self.names.pop()
            self.ready.append((self.path, el))
            self.parser.StartElementHandler = self.start
            self.parser.EndElementHandler = self.end

    def end(self, _tag: str) -> None:
        self.names.pop()
        self.open = None


class _FlatBuilder:
    """expat callbacks for flat records (one level of fields, as CommandReporter writes them):
    each record becomes a dict of raw field name to text, with no element objects at all."""

    def __init__(self, roots: tuple[str, ...], path: tuple[str, ...]) -> None:
        self.roots, self.names, self.depth = roots, path, len(path)
        self.level = 0
        self.key: str | None = None
        self.rec: dict[str, str] = {}
        self.ready: list[dict[str, str]] = []
        self.ok = True  # the path above the record level matches
        self.parser: Any = None

    def start(self, tag: str, _attrs: object) -> None:
        self.level += 1
        level = self.level
        if level == self.depth + 1:
            self.key = tag.rsplit(":", 1)[1] if ":" in tag else tag
            return
        self.key = None
        if level <= self.depth:
            local = tag.rsplit(":", 1)[1] if ":" in tag else tag
            if level == 1 and local not in self.roots:
                raise XmlRefused(_wrong_root(local, self.roots))
            if level == self.depth:
                self.ok = local == self.names[-1]
                self.rec = {}

    def data(self, text: str) -> None:
        k = self.key
        if k is not None:
            rec = self.rec
            rec[k] = rec[k] + text if k in rec else text

    def end(self, _tag: str) -> None:
        if self.level == self.depth and self.ok:
            self.ready.append(self.rec)
        self.key = None
        self.level -= 1


def _run(prep: Prepared, b: _Builder | _FlatBuilder) -> Iterator[list[Any]]:
    """Parse the file with the builder's callbacks, yielding its list of finished items after
    each chunk (the caller empties it)."""
    p = expat.ParserCreate()
    p.buffer_text = True
    p.buffer_size = 1 << 16
    p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    p.StartDoctypeDeclHandler = _refuse_dtd
    p.EntityDeclHandler = _refuse_dtd
    p.ExternalEntityRefHandler = _refuse_external
    p.StartElementHandler = b.start
    p.EndElementHandler = b.end
    p.CharacterDataHandler = b.data
    b.parser = p
    try:
        for text in _chunks(prep):
            p.Parse(text, False)
            if b.ready:
                yield b.ready
        p.Parse("", True)
        yield b.ready
    except expat.ExpatError as exc:
        raise XmlRefused(f"line {exc.lineno}, column {exc.offset}: the XML is not well-formed "
                         f"({expat.ErrorString(exc.code)}); the file may be cut off or damaged") from None
    except UnicodeDecodeError as exc:  # the file changed since prepare()
        raise XmlRefused(f"the file changed while it was read ({exc.reason})") from None


def iter_elements(prep: Prepared, roots: Iterable[str], paths: Iterable[tuple[str, ...]]
                  ) -> Iterator[tuple[tuple[str, ...], Element]]:
    """Yield ``(path, element)`` for each complete element at one of ``paths``.

    Paths are tuples of local names from the root, e.g. ``("CTfile", "CTFpupilData", "Pupil")``.
    Tags are matched and built by local name (a namespace prefix or default namespace makes
    no difference). A DOCTYPE or entity declaration stops the parse at once. Raises
    ``XmlRefused`` for a wrong root element or a document that is not well-formed, naming
    line and column (e.g. a file cut off mid-record).
    """
    for batch in _run(prep, b := _Builder(tuple(roots), set(paths))):
        yield from batch
        batch.clear()
    del b


def iter_flat(prep: Prepared, roots: Iterable[str], path: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """Yield each record at ``path`` as a dict of raw field name to text (fields that have
    children are not expected and give their leading text). Refusals as ``iter_elements``."""
    for batch in _run(prep, _FlatBuilder(tuple(roots), path)):
        yield from batch
        batch.clear()


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
