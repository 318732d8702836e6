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
2. ``iter_elements(prepared, roots, paths)`` feeds the file in pieces to the standard
   library's expat parser, which builds the tree in C without reporting any event once the
   root has begun; after each piece, the complete records at the requested paths (matched by
   local name, so a namespace or none makes no difference) are handed out and then dropped,
   so memory stays flat. ``iter_rows``, ``iter_flat`` and ``iter_record_batches`` read flat
   records (SIMS) through libxml2's pull parser (lxml), which reports only the ends of
   elements with a wanted name.
"""

from __future__ import annotations

import codecs
import errno
import hashlib
import os
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from xml.etree.ElementTree import Element, ParseError, TreeBuilder, XMLParser, fromstring

from lxml import etree

LxElement = etree._Element

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


def check_prolog(text: str) -> int:
    """Refuse a DOCTYPE (and anything else that is not a comment or processing instruction)
    before the root element; also refuse a head that has no root element at all. Returns
    where the root element's start tag begins."""
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
            return i
        else:
            raise XmlRefused("text before the root element: this is not an XML export")
        if end < 0:
            raise XmlRefused("the prolog before the root element is cut off or longer than 64 KB")
        i = end + 2


def open_export(path: Path) -> BinaryIO:
    """``path`` opened for reading, only if it is itself a regular file.

    A drop folder is written by another machine (the MIS server's share): a symbolic link there
    would make cme-batch read a file outside the folder (another school's export, the service's
    own files), and a pipe or device swapped in after the folder was listed would stop the
    night. ``O_NOFOLLOW`` refuses a link at the moment of opening, not just when listing.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise XmlRefused("refused: not a regular file (a pipe, device or folder); exports are plain files")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _fits(path: Path, encoding: str) -> int | None:
    """The byte offset of the first byte that does not decode in ``encoding``, or None."""
    dec = codecs.getincrementaldecoder(encoding)("strict")
    done = 0
    with open_export(path) as f:
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
        with open_export(path) as f:
            head = f.read(HEAD)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise XmlRefused("refused: the file is a symbolic link; name the file itself (a link in a drop "
                             "folder would have cme-batch read a file outside it)") from exc
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
    with open_export(path) as f:
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
#: Bytes handed to the parser at a time: finished records are taken (and dropped) after each.
FEED = 1 << 16
#: Codecs libxml2 is told to read the bytes in (overriding a wrong declaration); any other
#: encoding is decoded here and handed over as text.
_LIBXML_ENCODINGS = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "cp1252": "windows-1252",
                     "iso8859-1": "ISO-8859-1", "latin-1": "ISO-8859-1", "ascii": "US-ASCII"}
_ROOT_NAME = re.compile(r"<([^\s/>]+)")
_EXPAT_POSITION = re.compile(r": line \d+, column \d+$")


def root_name(text: str) -> str:
    """The local name of the root element whose start tag the checked head (``check_prolog``) ends at."""
    i = check_prolog(text)
    m = _ROOT_NAME.match(text, i)
    return m.group(1).rsplit(":", 1)[-1] if m else ""


def _pieces(prep: Prepared) -> Iterator[bytes | str]:
    """The file in pieces for the parser: raw bytes when libxml2 reads the encoding itself, else text."""
    codec = codecs.lookup(prep.encoding).name
    dec = None if codec in _LIBXML_ENCODINGS else codecs.getincrementaldecoder(prep.encoding)("strict")
    with open_export(prep.path) as f:
        while chunk := f.read(FEED):
            yield dec.decode(chunk) if dec is not None else chunk
    if dec is not None:
        yield dec.decode(b"", final=True)


def _parser(prep: Prepared, tags: Iterable[str]) -> etree.XMLPullParser:
    """libxml2's pull parser, reporting only the ends of elements named ``tags`` (in any namespace).

    Entities: ``prepare`` refused any DOCTYPE, and the head is checked again below, so no
    entity can be declared; only XML's five predefined ones and character references exist.
    ``no_network`` and no DTD loading keep anything outside the file from being read, and the
    default limits (no ``huge_tree``) refuse absurd nesting depth or text nodes over 10 MB.
    The indentation between elements is not kept (every reader strips texts anyway): a tenth
    less work on an indented export.
    """
    codec = codecs.lookup(prep.encoding).name
    return etree.XMLPullParser(
        events=("end",), tag=[f"{{*}}{t}" for t in sorted(set(tags))],
        encoding=_LIBXML_ENCODINGS.get(codec), no_network=True, load_dtd=False, dtd_validation=False,
        remove_comments=True, remove_pis=True, remove_blank_text=True, huge_tree=False, collect_ids=False)


#: libxml2's error codes by name (``ERR_TAG_NAME_MISMATCH``...): names fixed by libxml2, never the file's text.
_LIBXML_ERROR_NAMES = {v: k for k, v in vars(etree.ErrorTypes).items() if k.isupper() and isinstance(v, int)}
#: Plain words for the errors a damaged export most often gives (as expat words them for a CTF).
_LIBXML_ERROR_WORDS = {
    etree.ErrorTypes.ERR_TAG_NAME_MISMATCH: "mismatched tag",
    etree.ErrorTypes.ERR_UNDECLARED_ENTITY: "undefined entity",
    etree.ErrorTypes.WAR_UNDECLARED_ENTITY: "undefined entity",
    etree.ErrorTypes.ERR_TAG_NOT_FINISHED: "the file ends inside an element",
    etree.ErrorTypes.ERR_DOCUMENT_END: "content after the end of the root element",
    etree.ErrorTypes.ERR_DOCUMENT_EMPTY: "no element found",
    etree.ErrorTypes.ERR_INVALID_CHAR: "a character XML does not allow",
    etree.ErrorTypes.ERR_GT_REQUIRED: "a start tag is not closed with '>'",
    etree.ErrorTypes.ERR_LT_IN_ATTRIBUTE: "a '<' inside an attribute value",
    etree.ErrorTypes.ERR_ENTITYREF_SEMICOL_MISSING: "an '&' that does not begin an entity reference",
    etree.ErrorTypes.ERR_NAME_REQUIRED: "a name was expected: a stray '<' or '&'?",
}


def _refusal(exc: etree.XMLSyntaxError) -> XmlRefused:
    """libxml2's message is not used: it can quote the file's text (``Entity 'Jones' not defined``,
    a damaged surname read as a tag name), and a pupil's name must never be in an error, which
    is printed and stored. The error's code says what is wrong in words libxml2 fixes."""
    line, column = exc.position
    code: int = exc.code  # type: ignore[attr-defined]  # lxml sets it; its stubs leave it out
    return XmlRefused(f"line {line}, column {column}: the XML is not well-formed ({_libxml_problem(code)}); "
                      "the file may be cut off or damaged")


def _libxml_problem(code: int) -> str:
    """What a libxml2 error code means, in words that hold nothing from the file."""
    words = _LIBXML_ERROR_WORDS.get(code)
    if words is not None:
        return words
    name = _LIBXML_ERROR_NAMES.get(code)
    return name.split("_", 1)[-1].replace("_", " ").lower() if name else f"libxml2 error {code}"


def _head_text(piece: bytes | str) -> str:
    """The head of the first piece parsed, as text to check the prolog of (bytes are only looked
    at: Latin-1 keeps every byte, and a UTF-8 byte-order mark is left out)."""
    if isinstance(piece, str):
        return piece[:HEAD]
    return piece[:HEAD].removeprefix(codecs.BOM_UTF8).decode("latin-1")


def _declares_namespace(piece: bytes | str, tail: bytes, before: bool) -> tuple[bool, bytes]:
    """Whether a namespace has been declared so far (``xmlns`` seen, also across the pieces'
    boundaries), and the end of this piece to look across the next boundary with."""
    window = tail + (piece if isinstance(piece, bytes) else piece.encode("utf-8", "replace"))
    return before or b"xmlns" in window, window[-8:]


def _path(el: LxElement) -> tuple[str, ...]:
    names = []
    node: LxElement | None = el
    while node is not None:
        names.append(local_name(node.tag))
        node = node.getparent()
    return tuple(reversed(names))


def _drop(el: LxElement) -> None:
    """Forget an element that has been handed out, and everything before it, up to the root."""
    el.clear()
    node: LxElement | None = el
    while node is not None:
        parent = node.getparent()
        if parent is not None:
            while node.getprevious() is not None:
                del parent[0]
        node = parent


def _strip_namespaces(el: Element) -> None:
    for e in el.iter():
        if e.tag[:1] == "{":
            e.tag = local_name(e.tag)


#: Whether the standard library's parser can be told to stop reporting events (CPython's
#: ``XMLParser._setevents``, there since Python 3.4); without it, ``iter_elements`` copies from lxml.
_CAN_STOP_EVENTS = hasattr(XMLParser, "_setevents")
#: Codecs expat is told to read the bytes in (overriding a wrong declaration); any other encoding
#: is decoded here and handed over as text.
_EXPAT_ENCODINGS = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "cp1252": "windows-1252",
                    "iso8859-1": "ISO-8859-1", "latin-1": "ISO-8859-1", "ascii": "US-ASCII"}


def iter_elements(prep: Prepared, roots: Iterable[str], paths: Iterable[tuple[str, ...]]
                  ) -> Iterator[tuple[tuple[str, ...], Element]]:
    """Yield ``(path, element)`` for each complete element at one of ``paths``, as a
    standard-library ``Element`` (whose ``find`` runs in C, which is what the readers do most).

    The standard library's expat parser builds the tree in C, and Python looks at it once per
    piece of the file: under the root, an element is complete once a later sibling has begun
    (or at the end of the file). Complete elements at ``paths`` are handed out, and every
    complete element is then dropped, so memory stays flat. Paths, refusals and namespaces as
    ``_batches``.
    """
    if not _CAN_STOP_EVENTS:
        yield from _copied_from_lxml(prep, roots, paths)
        return
    roots, wanted = tuple(roots), set(paths)
    inner = {p[:i] for p in wanted for i in range(1, len(p))}  # the paths of elements holding records
    codec = codecs.lookup(prep.encoding).name
    parser = XMLParser(target=TreeBuilder(), encoding=_EXPAT_ENCODINGS.get(codec))
    events: list[tuple[str, Element]] = []
    parser._setevents(events, ("start",))  # type: ignore[attr-defined]  # only until the root has begun
    root: Element | None = None
    namespaced, tail = False, b""
    try:
        for piece in _checked_pieces(prep):
            namespaced, tail = _declares_namespace(piece, tail, namespaced)
            parser.feed(piece)
            if root is None and events:  # the root's start tag: checked before anything else is read
                root = events[0][1]
                parser._setevents(events, ())  # type: ignore[attr-defined]
                events.clear()
                if (tag := local_name(root.tag)) not in roots:
                    raise XmlRefused(_wrong_root(tag, roots))
            if root is not None:
                yield from _complete(root, (local_name(root.tag),), False, wanted, inner, namespaced)
        if root is None:
            raise XmlRefused("no root element (the file is empty or not XML)")
        parser.close()
        yield from _complete(root, (local_name(root.tag),), True, wanted, inner, namespaced)
    except ParseError as exc:
        raise _expat_refusal(exc) from None
    except UnicodeDecodeError as exc:  # the file changed since prepare()
        raise XmlRefused(f"the file changed while it was read ({exc.reason})") from None


def _checked_pieces(prep: Prepared) -> Iterator[bytes | str]:
    """``_pieces``, the first of them at least the head ``prepare`` checked: its prolog is checked
    again on the very text parsed (a DOCTYPE is refused), in case the file changed since."""
    pieces = _pieces(prep)
    head: list[Any] = []
    size = 0
    for piece in pieces:
        head.append(piece)
        size += len(piece)
        if size >= HEAD:
            break
    first: bytes | str = "".join(head) if head and isinstance(head[0], str) else b"".join(head)
    check_prolog(_head_text(first))
    yield first
    yield from pieces


def _complete(node: Element, path: tuple[str, ...], done: bool, wanted: set[tuple[str, ...]],
              inner: set[tuple[str, ...]], namespaced: bool) -> Iterator[tuple[tuple[str, ...], Element]]:
    """The complete elements at ``wanted`` paths under ``node`` (itself complete when ``done``),
    then every complete child of ``node`` is dropped. The last child of an element still open
    may be unfinished, so it is kept for later."""
    children = list(node)
    complete = len(children) if done else len(children) - 1
    for i, child in enumerate(children):
        here = (*path, local_name(child.tag))
        if here in inner:
            yield from _complete(child, here, i < complete, wanted, inner, namespaced)
        elif i < complete and here in wanted:
            if namespaced:
                _strip_namespaces(child)
            child.tail = None  # the layout after it, which lxml's reading never gave
            yield here, child
    if complete > 0:
        del node[:complete]


def _expat_refusal(exc: ParseError) -> XmlRefused:
    line, column = exc.position
    what = _EXPAT_POSITION.sub("", str(exc))
    return XmlRefused(f"line {line}, column {column}: the XML is not well-formed ({what}); the file may be "
                      "cut off or damaged")


def _copied_from_lxml(prep: Prepared, roots: Iterable[str], paths: Iterable[tuple[str, ...]]
                      ) -> Iterator[tuple[tuple[str, ...], Element]]:
    """``iter_elements`` where the standard library's parser cannot stop reporting events: the
    records that ended in one piece of the file are copied across from lxml together, in one parse."""
    for found, namespaced in _batches(prep, roots, paths):
        copies = fromstring(b"<_>" + b"".join(etree.tostring(el, encoding="UTF-8", with_tail=False)
                                              for _path, el in found) + b"</_>")
        for (path, _el), out in zip(found, copies, strict=True):
            if namespaced:
                _strip_namespaces(out)
            yield path, out


def _batches(prep: Prepared, roots: Iterable[str], paths: Iterable[tuple[str, ...]]
             ) -> Iterator[tuple[list[tuple[tuple[str, ...], LxElement]], bool]]:
    """Yield, for each piece of the file fed to the parser, the complete elements at one of
    ``paths`` that ended in it, as ``(path, element)``, and whether a namespace has been
    declared so far (tags may then carry one).

    Paths are tuples of local names from the root, e.g. ``("CTfile", "CTFpupilData", "Pupil")``.
    Tags are matched by local name (a namespace, by prefix or default, makes no difference).
    libxml2 (lxml) parses in C and reports only the ends of elements with a wanted name, so
    Python sees one event per record, not two per element. The elements are dropped, with
    everything before them, once the caller asks for the next piece's, so memory stays flat.
    Raises ``XmlRefused`` for a DOCTYPE, a wrong root element or a document that is not
    well-formed, naming line and column (e.g. a file cut off mid-record).
    """
    roots, wanted = tuple(roots), set(paths)
    parser = _parser(prep, (p[-1] for p in wanted))
    first, namespaced, tail = True, False, b""
    parent_of: Any = None
    paths_here: dict[str, tuple[str, ...]] = {}  # tag -> path, for children of ``parent_of``

    def ended() -> list[tuple[tuple[str, ...], LxElement]]:
        nonlocal parent_of, paths_here
        found = []
        events: Iterator[tuple[str, Any]] = parser.read_events()  # only element ends were asked for
        for _event, el in events:
            parent = el.getparent()
            if parent is not parent_of:  # records share their parent: its path is worked out once
                parent_of, paths_here = parent, {}
            tag = el.tag
            path = paths_here.get(tag)
            if path is None:
                path = paths_here[tag] = (*(_path(parent) if parent is not None else ()), local_name(tag))
            if path in wanted:
                found.append((path, el))
        return found

    try:
        for piece in _pieces(prep):
            if first and piece:
                if (root := root_name(_head_text(piece))) not in roots:
                    raise XmlRefused(_wrong_root(root, roots))
                first = False
            # a namespace is declared before any element using it ends (looked for across piece boundaries too)
            namespaced, tail = _declares_namespace(piece, tail, namespaced)
            parser.feed(piece)
            if found := ended():
                yield found, namespaced
                _drop(found[-1][1])
        if first:
            raise XmlRefused("no root element (the file is empty or not XML)")
        parser.close()
        if found := ended():
            yield found, namespaced
    except etree.XMLSyntaxError as exc:
        raise _refusal(exc) from None
    except UnicodeDecodeError as exc:  # the file changed since prepare()
        raise XmlRefused(f"the file changed while it was read ({exc.reason})") from None


def iter_record_batches(prep: Prepared, roots: Iterable[str], path: tuple[str, ...]
                        ) -> Iterator[tuple[list[LxElement], bool]]:
    """The records at ``path`` a piece of the file at a time, as libxml2 elements, with whether
    tags may carry a namespace (see ``_batches``): for a reader whose every record costs, which
    loops over them itself and reads only the fields it needs. The elements are valid until the
    next batch is asked for. Refusals as ``iter_elements``."""
    for found, namespaced in _batches(prep, roots, [path]):
        yield [el for _path, el in found], namespaced


def iter_rows(prep: Prepared, roots: Iterable[str], path: tuple[str, ...]
              ) -> Iterator[tuple[tuple[str, ...], list[str | None]]]:
    """Yield each record at ``path`` as its fields' names (local names, in document order) and
    their leading texts (None when empty): a flat report's records share one list of names,
    so a reader can work out once where each field is. Refusals as ``iter_elements``."""
    for records, namespaced in iter_record_batches(prep, roots, path):
        for el in records:
            fields = list(el)
            tags = tuple([f.tag for f in fields])
            if namespaced:
                tags = tuple([local_name(t) for t in tags])
            yield tags, [f.text for f in fields]


def iter_flat(prep: Prepared, roots: Iterable[str], path: tuple[str, ...]) -> Iterator[dict[str, str]]:
    """Yield each record at ``path`` as a dict of raw field name (local name) to text; a field
    that has children gives its leading text, and a field given twice the two texts joined.
    Refusals as ``iter_elements``."""
    for tags, texts in iter_rows(prep, roots, path):
        yield flat(tags, texts)


def flat(tags: tuple[str, ...], texts: list[str | None]) -> dict[str, str]:
    """One record of ``iter_rows`` as ``iter_flat`` gives it."""
    rec: dict[str, str] = {}
    for tag, text in zip(tags, texts, strict=True):
        if text is not None:
            rec[tag] = rec[tag] + text if tag in rec else text
    return rec


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


def raw_text_of(el: Element | None) -> str | None:
    """An element's text as written, blanks at either end kept; None when the element is absent
    or empty. For a text whose every character counts, such as a CTF marks string, where a
    leading blank is a session with no mark."""
    if el is None or not el.text:
        return None
    return el.text
