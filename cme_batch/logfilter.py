"""A last line of defence: drop any log value that carries a pupil's name, UPN or date of birth.

The code is written to log pupils only by internal id or case reference. This processor
checks that promise at run time: it learns every pupil's names, UPN and date of birth from
the store, and any logged string containing one of them is replaced by ``[withheld]``; the
number withheld is counted, and logged (as a number) at the end of a run, so a leak shows up
as a count to fix rather than as data in the journal.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, MutableMapping
from datetime import date
from typing import Any

from sqlalchemy import Engine, select

from cme_batch.store import tables as t

WITHHELD = "[withheld]"
_TOKEN = re.compile(r"[0-9]{1,4}[-/.][0-9]{1,2}[-/.][0-9]{1,4}|[^\W_]+(?:['\u2019-][^\W_]+)*")
#: A UPN's shape (folded), found even inside a longer word ("upnA123456789012", "A123456789012_x").
_UPN_SHAPE = re.compile(r"(?=([a-z][0-9]{11}[0-9a-z]))")


def _date_forms(d: date) -> set[str]:
    return {d.isoformat(), d.strftime("%d/%m/%Y"), d.strftime("%d-%m-%Y"), d.strftime("%d.%m.%Y")}


#: Typographic apostrophes and hyphens, written as the plain ones a MIS usually stores; and the
#: letters that carry no separable accent (Unicode does not decompose them), as an ASCII-only
#: system writes them: "Łukasz" reaches a log as "Lukasz", "Søren" as "Soren", "Æsa" as "AEsa".
_PLAIN = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u2010": "-", "\u2011": "-",
                        "Ł": "L", "ł": "l", "Ø": "O", "ø": "o", "Đ": "D", "đ": "d", "Ð": "D", "ð": "d",
                        "Þ": "Th", "þ": "th", "Æ": "AE", "æ": "ae", "Œ": "OE", "œ": "oe", "Ħ": "H", "ħ": "h",
                        "ı": "i", "ĸ": "k", "Ŧ": "T", "ŧ": "t"})


def _fold(text: str) -> str:
    """The form both identities and logged text are compared in: one case, no accents, plain apostrophes.

    The same name reaches a log in several spellings: "Zoë" typed with a combining diaeresis
    (NFD, as macOS and some exports write it), or without it ("Zoe", where a system keeps to
    ASCII), or "O\u2019Brien" with a typographic apostrophe; each must still match.
    """
    if text.isascii():
        return text.casefold()
    text = unicodedata.normalize("NFKD", text.translate(_PLAIN))
    return "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_NUMERIC_DATE = re.compile(r"(?<![0-9])([0-9]{1,4})[-/.]([0-9]{1,2})[-/.]([0-9]{2,4})(?![0-9])")
_COMPACT_DATE = re.compile(r"(?<![0-9])([0-9]{4})([0-9]{2})([0-9]{2})(?![0-9])")
_REPR_DATE = re.compile(r"date(?:time)?\(([0-9]{4}), ?([0-9]{1,2}), ?([0-9]{1,2})")
_DAY_MONTH = re.compile(r"(?<![0-9])([0-9]{1,2})(?:st|nd|rd|th)? ([a-z]{3,9})\.?,? ([0-9]{4})(?![0-9])")
_MONTH_DAY = re.compile(r"(?<![a-z])([a-z]{3,9})\.? ([0-9]{1,2})(?:st|nd|rd|th)?,? ([0-9]{4})(?![0-9])")


def _iso(y: int, m: int, d: int) -> str | None:
    try:
        return date(y, m, d).isoformat()
    except ValueError:
        return None


def _month(word: str) -> int:
    return _MONTHS.index(word[:3]) + 1 if word[:3] in _MONTHS else 0


def _dates_in(text: str) -> set[str]:
    """Every date ``text`` may write, as ISO strings: day-first, month-first, year-first, two-digit
    years, ``YYYYMMDD``, "19 Oct 2015", "October 19, 2015" and Python's ``datetime.date(2015, 10, 19)``
    (the form SQLAlchemy prints a statement's parameters in). ``text`` is folded (lower case)."""
    out: set[str | None] = set()
    for a, b, c in _NUMERIC_DATE.findall(text):
        x, y, z = int(a), int(b), int(c)
        if len(a) == 4:
            out.add(_iso(x, y, z))
        elif len(c) in (2, 4) and len(a) <= 2:
            for year in ((z,) if len(c) == 4 else (2000 + z, 1900 + z)):
                out.update((_iso(year, y, x), _iso(year, x, y)))
    for y4, m2, d2 in (*_COMPACT_DATE.findall(text), *_REPR_DATE.findall(text)):
        out.add(_iso(int(y4), int(m2), int(d2)))
    for a8 in _COMPACT_DATE.findall(text):  # DDMMYYYY too
        out.add(_iso(int(a8[1] + a8[2]), int(a8[0][2:]), int(a8[0][:2])))
    for d, word, y in _DAY_MONTH.findall(text):
        out.add(_iso(int(y), _month(word), int(d)))
    for word, d, y in _MONTH_DAY.findall(text):
        out.add(_iso(int(y), _month(word), int(d)))
    return {x for x in out if x}


class IdentityFilter:
    """A structlog processor withholding values that contain a known pupil identity."""

    def __init__(self, identities: Iterable[str] = ()) -> None:
        self.tokens: set[str] = set()
        self.withheld = 0
        self.add(identities)

    def add(self, identities: Iterable[str]) -> None:
        for ident in identities:
            if not ident:
                continue
            ident = _fold(ident)
            if ident.isalnum():  # one token (a UPN, most names): no need for the pattern
                if len(ident) >= 2:
                    self.tokens.add(ident)
                continue
            for tok in _TOKEN.findall(ident):
                if len(tok) >= 2:
                    self.tokens.add(tok)
                    if "'" in tok:  # O'Brien is often written OBrien where punctuation is dropped
                        self.tokens.add(tok.replace("'", ""))
                    if "-" in tok and not tok[0].isdigit():  # a double-barrelled name, often written in part
                        self.tokens.update(part for part in tok.replace("'", "").split("-") if len(part) >= 2)

    def _hits(self, text: str) -> bool:
        text = _fold(text)
        return (any(tok in self.tokens for tok in _TOKEN.findall(text))
                or any(iso in self.tokens for iso in _dates_in(text))
                or any(upn in self.tokens for upn in _UPN_SHAPE.findall(text)))

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            if self._hits(value):
                self.withheld += 1
                return WITHHELD
            return value
        if isinstance(value, date):
            return self._clean(value.isoformat())
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple, set)):
            return [self._clean(v) for v in value]
        if value is None or isinstance(value, (bool, int, float)):
            return value
        # anything else (an exception, bytes, a path) is rendered with str() or repr(): check that text
        text = value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)
        return WITHHELD if self._clean(text) == WITHHELD else value

    def __call__(self, _logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        if not self.tokens:
            return event
        for key in list(event):
            if key in ("level", "timestamp", "run_id"):
                continue
            event[key] = self._clean(event[key])
        return event


#: The columns whose values are pupil identities.
_NAME_COLUMNS = ("upn", "legal_surname", "legal_forename", "preferred_surname", "preferred_forename", "middle_names")


def identities_from_store(engine: Engine, pupil_ids: Collection[int] | None = None) -> list[str]:
    """Every pupil's names, UPN and date of birth (in the usual written forms); with
    ``pupil_ids``, only those pupils' (an import's: nothing is read when it stored no pupil's details).

    Each column's distinct values are read, not every pupil's row: a local authority's 100,000
    pupils share a few thousand names and dates of birth, and it is the number of strings to
    split into tokens that costs.
    """
    if pupil_ids is None:
        return _identities(engine, [])
    ids = sorted(pupil_ids)
    return [v for i in range(0, len(ids), _ID_CHUNK) for v in _identities(engine, [t.pupils.c.id.in_(ids[i:i + _ID_CHUNK])])]


#: Pupil ids per ``IN (...)`` list.
_ID_CHUNK = 5000


def _identities(engine: Engine, where: list[Any]) -> list[str]:
    p = t.pupils
    out: list[str] = []
    with engine.connect() as conn:
        for name in _NAME_COLUMNS:
            col = p.c[name]
            out.extend(v for v in conn.execute(select(col).where(col.is_not(None), *where).distinct()).scalars() if v)
        for dob in conn.execute(select(p.c.dob).where(p.c.dob.is_not(None), *where).distinct()).scalars():
            out.extend(_date_forms(dob))
    return out


_active: IdentityFilter | None = None


def install(engine: Engine, pupil_ids: Collection[int] | None = None) -> IdentityFilter:
    """Load identities from the store and put the filter in front of every log renderer.

    ``pupil_ids`` (after an import: the pupils it added or changed) adds only those pupils, when
    the filter already knows the others.
    """
    from cme_batch import log

    global _active
    if _active is None:
        _active = IdentityFilter()
        log.extra_processors.append(_active)
        log.reconfigure()
        pupil_ids = None  # a new filter learns everyone
    _active.add(identities_from_store(engine, pupil_ids))
    return _active


def active() -> IdentityFilter | None:
    return _active


def scrub(text: str, f: IdentityFilter | None = None) -> str:
    """``text`` with every pupil's name, UPN or date of birth the filter knows replaced by
    ``[withheld]``: for text that does not pass through structlog (an error message printed by
    the CLI, a library's own log line). Only the identifying words go when that is safe (plain
    ASCII text, each found word by itself); otherwise the whole text is withheld."""
    f = f if f is not None else _active
    if f is None or not f.tokens or not f._hits(text):
        return text
    f.withheld += 1
    if text.isascii():
        out = _TOKEN.sub(lambda m: WITHHELD if f._hits(m.group()) else m.group(), text)
        if not f._hits(out.replace(WITHHELD, " ")):
            return out
    return WITHHELD
