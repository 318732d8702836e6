"""Laying a source's marks over stored strips: the C-speed StripWriter against a plain,
session-by-session reading of the rule (a code replaces the session's symbol, ``""`` leaves it;
a real mark that changes is a correction)."""

from __future__ import annotations

from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from cme_batch import marks as mk
from cme_batch.model import MarksRecord

STORED = "-#/\\LNUIM"
CODES = ["", "", "/", "\\", "L", "N", "U", "I", "M", "#", "-", "C1", "J1", "Y3", " "]


def by_session(strip: str, start: int, symbols: list[str]) -> tuple[str, list[tuple[int, str, str]]]:
    """The rule, one session at a time."""
    chars = list(strip)
    changes = []
    for offset, sym in enumerate(symbols):
        if sym:
            i = start + offset
            if chars[i] != sym and chars[i] != mk.NO_MARK:
                changes.append((i, chars[i], sym))
            chars[i] = sym
    return "".join(chars), changes


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=STORED, min_size=1, max_size=60), st.data())
def test_lay_equals_the_session_by_session_rule(strip: str, data: st.DataObject) -> None:
    start = data.draw(st.integers(0, len(strip) - 1))
    symbols = data.draw(st.lists(st.sampled_from(["", *STORED]), max_size=len(strip) - start))
    expected = by_session(strip, start, symbols)
    assert mk.StripWriter.lay(strip, start, symbols) == expected
    if "" not in symbols:  # the same run given as one string
        assert mk.StripWriter.lay(strip, start, "".join(symbols)) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(CODES), min_size=1, max_size=40))
def test_symbols_give_each_code_its_stored_symbol_and_count_the_marks(codes: list[str]) -> None:
    alphabet = mk.Alphabet()
    writer = mk.StripWriter(alphabet)
    rec = MarksRecord("1", date(2025, 9, 1), tuple(codes))
    ((year, index, symbols, given_marks),) = writer.symbols(rec)
    assert (year, index) == (2025, mk.position(date(2025, 9, 1), "AM"))
    assert list(symbols) == [alphabet.symbol_for(c) if c else "" for c in codes]
    assert given_marks == sum(1 for c in codes if c)
    assert [alphabet.code_for(s) for s in symbols if s] == [c if c.strip() else mk.NO_MARK for c in codes if c]


def test_a_code_of_two_characters_gets_one_stored_symbol_and_reads_back() -> None:
    alphabet = mk.Alphabet()
    writer = mk.StripWriter(alphabet)
    rec = MarksRecord("1", date(2025, 9, 1), ("C1", "", "/", "Q7", "Q7"))
    ((_year, index, symbols, given_marks), ) = writer.symbols(rec)
    strip, changes = writer.lay(mk.empty_strip(2025), index, symbols)
    assert given_marks == 4 and changes == []
    assert alphabet.decode(strip[index:index + 5]) == ["C1", mk.NO_MARK, "/", "Q7", "Q7"]
    assert alphabet.new_entries() == {"Q7": symbols[3]}  # a local code: written to the store's alphabet
