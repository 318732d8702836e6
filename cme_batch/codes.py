"""Attendance codes: which class each register mark belongs to (DOMAIN.md 2).

The national codes changed on 19 August 2024, so a mark is classified by the set in force on
its date: ``LEGACY`` before, ``CODES_2024`` from then on (``H``, ``F``, ``J`` and ``Y`` are
only legacy codes; ``K``, ``Q``, ``C1``, ``J1``, ``Y1``..``Y7`` only new ones). A school's own
codes are mapped to a class by ``[codes] local`` in the configuration, and MIS sub-codes
(SIMS ``I01``) to the national code they stand for by ``[codes] subcodes``. Anything else is
*unknown*: kept as it is, treated as neutral by the streaks, and reported as a warning.
Codes are case-sensitive: ``l`` is not ``L``.

For speed the engine never looks at one mark at a time: ``Classifier.classify`` turns a whole
stored strip (one character per session, see ``cme_batch.marks``) into a string of *class
letters* with ``str.translate``. ``class_of`` answers the same question for a single code and
is the definition the fast path is tested against.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cme_batch import marks as mk

#: The first day of the 2024 code set (SI 2024/208 reg 10).
CHANGEOVER = date(2024, 8, 19)

PRESENT = "present"
LATE_AFTER_CLOSE = "late_after_close"
EDUCATIONAL = "educational_activity"
AUTHORISED = "authorised"
UNAUTHORISED_EXPLAINED = "unauthorised_explained"
UNEXPLAINED = "unexplained"
UNABLE = "unable_pupil"
NEUTRAL = "neutral"
NO_MARK = "no_mark"
UNKNOWN = "unknown"

#: One letter per class: what ``Classifier.classify`` writes for each session.
LETTERS: dict[str, str] = {
    PRESENT: "P", LATE_AFTER_CLOSE: "L", EDUCATIONAL: "E", AUTHORISED: "A", UNAUTHORISED_EXPLAINED: "G",
    UNEXPLAINED: "N", UNABLE: "Q", NEUTRAL: "X", NO_MARK: "-", UNKNOWN: "?",
}
CLASS_OF_LETTER: dict[str, str] = {v: k for k, v in LETTERS.items()}
#: Classes in which the child was seen (what "last attended" looks for).
ATTENDED = frozenset({PRESENT, LATE_AFTER_CLOSE, EDUCATIONAL})


def _table(rows: Mapping[str, str]) -> dict[str, str]:
    return {code: cls for cls, codes in rows.items() for code in codes.split()}


#: The 2024 set (in force from 19 August 2024).
CODES_2024: dict[str, str] = _table({
    PRESENT: "/ \\ L",
    LATE_AFTER_CLOSE: "U",
    EDUCATIONAL: "K V P W B D",
    AUTHORISED: "C C1 C2 E I M J1 R S T",
    UNAUTHORISED_EXPLAINED: "G",
    UNEXPLAINED: "N O",
    UNABLE: "Q Y5 Y7",
    NEUTRAL: "X Y1 Y2 Y3 Y4 Y6 Z #",
    NO_MARK: "-",
})

#: The set in force before 19 August 2024.
LEGACY: dict[str, str] = _table({
    PRESENT: "/ \\ L",
    LATE_AFTER_CLOSE: "U",
    EDUCATIONAL: "B D J P V W",
    AUTHORISED: "C E F H I M R S T",
    UNAUTHORISED_EXPLAINED: "G",
    UNEXPLAINED: "N O",
    NEUTRAL: "X Y Z #",
    NO_MARK: "-",
})


def national_set(day: date) -> dict[str, str]:
    """The national code table in force on ``day``."""
    return LEGACY if day < CHANGEOVER else CODES_2024


class _LetterTable(dict[int, str]):
    """A ``str.translate`` table in which every character not listed becomes the unknown letter."""

    def __missing__(self, key: int) -> str:
        return LETTERS[UNKNOWN]


@dataclass(frozen=True)
class UnknownCode:
    """A code found in the registers that no table classifies (reported, treated as neutral)."""

    code: str
    sessions: int
    pupils: int
    #: The keys given with the strips it is in (``unknown_codes``), and its first and last index in them.
    keys: frozenset[Any] = field(default=frozenset(), compare=False)
    first: int = field(default=0, compare=False)
    last: int = field(default=0, compare=False)


class Classifier:
    """Classifies codes and whole strips for one school's configuration and mark alphabet.

    ``local`` maps a school's own codes to a class name; ``subcodes`` maps an MIS sub-code to
    the national (or local) code it stands for. A national code always keeps its national
    class: a ``local`` entry for it is ignored and listed in ``warnings``.
    """

    def __init__(self, local: Mapping[str, str] | None = None, subcodes: Mapping[str, str] | None = None,
                 alphabet: mk.Alphabet | None = None) -> None:
        self.local = dict(local or {})
        self.subcodes = dict(subcodes or {})
        self.alphabet = alphabet or mk.Alphabet()
        self.warnings: list[str] = []
        for code in sorted(self.local):
            if code in LEGACY and code in CODES_2024:
                self.warnings.append(f"codes.local: {code!r} is a national code; its national class is used")
        for code, target in sorted(self.subcodes.items()):
            if target not in LEGACY and target not in CODES_2024 and target not in self.local:
                self.warnings.append(f"codes.subcodes: {code!r} stands for {target!r}, which is neither a national "
                                     "nor a local code; its marks are treated as unknown")
        self._symbols = dict(self.alphabet.codes())
        self._tables = {legacy: self._build(LEGACY if legacy else CODES_2024) for legacy in (True, False)}
        self._ascii = {legacy: bytes(ord(table[o]) for o in range(256)) for legacy, table in self._tables.items()}

    # -- one code ---------------------------------------------------------------------------
    def class_of(self, code: str, day: date) -> str:
        """The class of one mark, by the code set in force on its date."""
        if code == "" or code.isspace():
            return NO_MARK
        return self._resolve(code, national_set(day))

    def _resolve(self, code: str, national: Mapping[str, str]) -> str:
        if code in national:
            return national[code]
        target = self.subcodes.get(code)
        if target is not None:
            if target in national:
                return national[target]
            return self.local.get(target, UNKNOWN)
        return self.local.get(code, UNKNOWN)

    # -- whole strips -----------------------------------------------------------------------
    def _symbol(self, code: str) -> str | None:
        """The stored character of a code, or None when the store has never seen it."""
        if len(code) == 1 and ord(code) < mk.PRIVATE_BASE:
            return mk.NO_MARK if code.isspace() else code
        return self._symbols.get(code)

    def _build(self, national: Mapping[str, str]) -> _LetterTable:
        table = _LetterTable()
        known: Iterable[str] = {*national, *self.subcodes, *self.local, *self._symbols}
        for code in known:
            sym = self._symbol(code)
            if sym is not None and sym != mk.NO_MARK:
                table[ord(sym)] = LETTERS[self._resolve(code, national)]
        table[ord(mk.NO_MARK)] = LETTERS[NO_MARK]
        return table

    def classify(self, strip: str, academic_year: int, end: int | None = None) -> str:
        """Class letters for a stored strip of ``academic_year`` (up to index ``end``), each by its date."""
        if end is not None:
            strip = strip[:end]
        start = mk.year_start(academic_year)
        if CHANGEOVER <= start:
            return self._translate(strip, False)
        if CHANGEOVER >= mk.year_start(academic_year + 1):
            return self._translate(strip, True)
        cut = mk.position(CHANGEOVER, "AM")
        return self._translate(strip[:cut], True) + self._translate(strip[cut:], False)

    def _translate(self, strip: str, legacy: bool) -> str:
        """``strip.translate`` by one code set's table, fast for strips holding private-use symbols too.

        ``str.translate`` is C-fast only on an ASCII string; one ``C1`` or ``J1`` (a private-use
        symbol) makes it look every character up through Python, some 30 microseconds a strip.
        Such a strip is translated as bytes, with each non-ASCII symbol (``?`` once encoded) put
        right afterwards: the few ``?`` positions are looked up one by one.
        """
        table = self._tables[legacy]
        if strip.isascii():
            return strip.translate(table)
        encoded = strip.encode("ascii", errors="replace")
        letters = bytearray(encoded.translate(self._ascii[legacy]))
        i = encoded.find(b"?")
        while i >= 0:
            letters[i] = ord(table[ord(strip[i])])
            i = encoded.find(b"?", i + 1)
        return letters.decode("ascii")

    def symbols(self, classes: Iterable[str], day: date) -> frozenset[str]:
        """The stored symbols whose class, in the code set in force on ``day``, is one of ``classes``."""
        letters = {LETTERS[c] for c in classes}
        return frozenset(chr(o) for o, letter in self._tables[day < CHANGEOVER].items() if letter in letters)

    def known_ascii(self, day: date) -> bytes:
        """Every ASCII symbol with a class in the code set in force on ``day`` (to find unknown ones fast)."""
        table = self._tables[day < CHANGEOVER]
        return bytes(o for o, letter in table.items() if o < 128 and letter != LETTERS[UNKNOWN])

    def unknown_codes(self, strips: Iterable[tuple[str, str]], keys: Iterable[Any] | None = None
                      ) -> list[UnknownCode]:
        """Tally unknown codes over (strip, class letters) pairs: which codes, in how many sessions and
        pupils; with ``keys`` (one a pair: the pupils'), whose strips each is in, and where first and last."""
        unknown = LETTERS[UNKNOWN]
        sessions: dict[str, int] = {}
        holders: dict[str, list[Any]] = defaultdict(list)
        span: dict[str, tuple[int, int]] = {}
        for (strip, letters), key in zip(strips, keys if keys is not None else itertools.repeat(None)):
            if unknown not in letters:
                continue
            seen: set[str] = set()
            i = letters.find(unknown)
            while i >= 0:
                code = self.alphabet.code_for(strip[i])
                sessions[code] = sessions.get(code, 0) + 1
                lo, hi = span.get(code, (i, i))
                span[code] = (min(lo, i), max(hi, i))
                seen.add(code)
                i = letters.find(unknown, i + 1)
            for code in seen:
                holders[code].append(key)
        return [UnknownCode(c, sessions[c], len(holders[c]), frozenset(holders[c]) if keys is not None else frozenset(),
                            *span[c]) for c in sorted(sessions)]


def warning_text(u: UnknownCode, where: str = "") -> str:
    """The data-quality warning for an unknown code (no pupil is named); ``where``, the classes and
    dates it is found in, for the office to find the register."""
    return (f"unknown attendance code {u.code!r} in {u.sessions} session(s) of {u.pupils} pupil(s)"
            f"{f' ({where})' if where else ''}: treated as neutral, so an absence it records counts for nothing: "
            "check those registers in the MIS (a code mistyped?), or have the code mapped under [codes] local "
            "or subcodes in the configuration")
