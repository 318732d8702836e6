"""How session marks are stored: one character per session, one string per pupil per academic year.

A *strip* covers one academic year (1 August to 31 July): two characters per calendar day,
AM then PM, so position ``2 * (day - 1 August) + (0 for AM, 1 for PM)``. A session with no
mark at all holds ``-`` (the SIMS "no mark recorded" code, which means the same).

Most national codes are one character and are stored as themselves. Longer codes
(``C1``, ``J1``, ``Y1``..``Y7``, a school's local ``I01``...) get one private-use character each
from an *alphabet* kept in the store, so a strip is always one character per session. This is
what lets the engine read a whole local authority's year back as 100,000 short strings and
classify them with ``str.translate`` instead of 38 million rows.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, timedelta
from typing import Protocol, cast

NO_MARK = "-"
#: The first private-use code point handed to multi-character codes.
PRIVATE_BASE = 0xE000
#: Multi-character codes with fixed symbols, so every store agrees on them.
FIXED_SYMBOLS: dict[str, str] = {
    code: chr(PRIVATE_BASE + i)
    for i, code in enumerate(["C1", "C2", "J1", "Y1", "Y2", "Y3", "Y4", "Y5", "Y6", "Y7"])
}


def academic_year_of(day: date) -> int:
    """The academic year a date belongs to, named by the calendar year it starts in (1 August)."""
    return day.year if day.month >= 8 else day.year - 1


def year_start(academic_year: int) -> date:
    return date(academic_year, 8, 1)


@functools.cache
def strip_length(academic_year: int) -> int:
    return 2 * (date(academic_year + 1, 8, 1) - date(academic_year, 8, 1)).days


def empty_strip(academic_year: int) -> str:
    return NO_MARK * strip_length(academic_year)


def position(day: date, session: str) -> int:
    """Index of (day, session) within the strip of the day's academic year."""
    offset = (day - year_start(academic_year_of(day))).days
    return 2 * offset + (0 if session == "AM" else 1)


def day_of_position(academic_year: int, index: int) -> tuple[date, str]:
    return year_start(academic_year) + timedelta(days=index // 2), ("AM" if index % 2 == 0 else "PM")


class Alphabet:
    """The two-way map between codes and stored symbols.

    ``known`` holds the dynamic symbols already in the store; ``symbol_for`` allocates new ones
    for codes never seen before, and ``new_entries`` lists what must be written back.
    """

    def __init__(self, known: Mapping[str, str] | None = None) -> None:
        self._to_symbol: dict[str, str] = dict(FIXED_SYMBOLS)
        self._to_symbol.update(known or {})
        self._to_code: dict[str, str] = {s: c for c, s in self._to_symbol.items()}
        self._new: dict[str, str] = {}
        used = [ord(s) for s in self._to_code if len(s) == 1 and ord(s) >= PRIVATE_BASE]
        self._next = max(used, default=PRIVATE_BASE - 1) + 1

    def symbol_for(self, code: str) -> str:
        """The stored character for a code; ``""`` and blanks become the no-mark symbol."""
        if len(code) == 1 and not code.isspace() and ord(code) < PRIVATE_BASE:
            return code
        if not code or code.isspace():
            return NO_MARK
        sym = self._to_symbol.get(code)
        if sym is None:
            sym = chr(self._next)
            self._next += 1
            self._to_symbol[code] = sym
            self._to_code[sym] = code
            self._new[code] = sym
        return sym

    def code_for(self, symbol: str) -> str:
        return self._to_code.get(symbol, symbol)

    def decode(self, strip: str) -> list[str]:
        return [self._to_code.get(s, s) for s in strip]

    def new_entries(self) -> dict[str, str]:
        return dict(self._new)

    def dynamic_entries(self) -> dict[str, str]:
        """Every code-to-symbol pair not fixed in code (what the store's alphabet table holds)."""
        return {c: s for c, s in self._to_symbol.items() if c not in FIXED_SYMBOLS}

    def codes(self) -> Iterable[tuple[str, str]]:
        return self._to_symbol.items()


class _Marks(Protocol):
    @property
    def start(self) -> date: ...

    @property
    def codes(self) -> tuple[str, ...] | str: ...


def within_years(start: date, sessions: int, first_year: int, last_year: int) -> bool:
    """Whether ``sessions`` sessions from the AM of ``start`` lie in academic years ``first_year``..``last_year``."""
    last = start.toordinal() + max(sessions - 1, 0) // 2
    return year_start(first_year) <= start and last < year_start(last_year + 1).toordinal()


def split_by_year(start: date, symbols: list[str] | str) -> Iterator[tuple[int, int, list[str] | str]]:
    """Cut a run of sessions at 1 August boundaries: (academic year, start index, symbols)."""
    i = 0
    day = start
    while i < len(symbols):
        yr = academic_year_of(day)
        idx = position(day, "AM")
        chunk = symbols[i:i + strip_length(yr) - idx]
        yield yr, idx, chunk
        i += len(chunk)
        day = year_start(yr + 1)


def window_by_year(first: date, last: date) -> Iterator[tuple[int, int, int]]:
    """The sessions of days ``first``..``last`` (both included): (academic year, start index, end index)
    for each academic year they touch, the end excluded."""
    day = first
    while day <= last:
        yr = academic_year_of(day)
        end = min(last, year_start(yr + 1) - timedelta(days=1))
        yield yr, position(day, "AM"), position(end, "PM") + 1
        day = year_start(yr + 1)


def plain(joined: str) -> bool:
    """Whether every character stands for itself as a stored symbol (see ``Alphabet.symbol_for``)."""
    return joined.isascii() and joined.isprintable() and " " not in joined


class StripWriter:
    """Lays a source's marks over stored strips, at C speed for the usual case.

    A run of one-character national codes with a mark for every session (a CTF marks string, a
    day's register) is laid as one string slice; runs with sessions the record says nothing
    about (``""``) or codes needing a symbol from the alphabet go session by session.
    """

    def __init__(self, alphabet: Alphabet) -> None:
        self.alphabet = alphabet
        self._symbol: dict[str, str] = {"": ""}  # code -> symbol, "" (no word on the session) kept

    def symbols(self, rec: _Marks) -> Iterator[tuple[int, int, list[str] | str, int]]:
        """(academic year, start index, symbols, marks given) for each year the record touches."""
        codes = rec.codes
        joined = codes if codes.__class__ is str else "".join(codes)
        symbols: list[str] | str
        if len(joined) == len(codes) and (joined is codes or "" not in codes) and plain(joined):
            symbols = joined
        else:
            found = list(map(self._symbol.get, codes))  # each distinct code is worked out once
            if None in found:
                sym, cache = self.alphabet.symbol_for, self._symbol
                found = [s if s is not None else cache.setdefault(c, sym(c)) for s, c in zip(found, codes)]
            symbols = cast(list[str], found)
        for yr, idx, chunk in split_by_year(rec.start, symbols):
            yield yr, idx, chunk, len(chunk) - (0 if isinstance(chunk, str) else chunk.count(""))

    @staticmethod
    def lay(strip: str, start: int, symbols: list[str] | str) -> tuple[str, list[tuple[int, str, str]]]:
        """Lay ``symbols`` over ``strip`` from ``start`` (a session given ``""`` keeps its mark), at C speed.

        Returns the new strip and the corrections: (index, old, new) for every session whose
        existing real mark (not no-mark) was changed to something else.
        """
        end = start + len(symbols)
        old = strip[start:end]
        if not isinstance(symbols, str):
            symbols = "".join([s or o for s, o in zip(symbols, old)])
        if old == symbols:
            return strip, []
        new = strip[:start] + symbols + strip[end:]
        if old.count(NO_MARK) == len(old):
            return new, []
        return new, [(start + i, o, n) for i, (o, n) in enumerate(zip(old, symbols)) if o != n and o != NO_MARK]

    @staticmethod
    def clear(strip: str, start: int, end: int, given: bytes | bytearray) -> tuple[str, list[tuple[int, str, str]]]:
        """Set every session of ``strip[start:end]`` that ``given`` does not mark (a zero byte at its
        index; ``given`` may be shorter than the strip) to no-mark.

        Returns the new strip and the corrections: (index, old, no-mark) for each real mark cleared.
        """
        cleared = [(i, o, NO_MARK) for i, o in enumerate(strip[start:end], start)
                   if o != NO_MARK and not (i < len(given) and given[i])]
        if not cleared:
            return strip, []
        cells = list(strip)
        for i, _o, n in cleared:
            cells[i] = n
        return "".join(cells), cleared
