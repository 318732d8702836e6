"""The fast paths of classifying strips and finding unknown codes give the plain definitions' answers.

``Classifier.classify`` translates a strip holding private-use symbols (``C1``, ``J1``, a school's
``I01``) as bytes; ``evaluate_many`` looks for unknown codes in blocks of joined strips. Both
must answer exactly as ``class_of`` mark by mark.
"""

from __future__ import annotations

from datetime import date, timedelta

from cme_batch import codes
from cme_batch import marks as mk
from cme_batch.codes import Classifier
from cme_batch.streaks import _BLOCK, evaluate_many

CODES = ["/", "\\", "L", "N", "O", "I", "#", "-", "C1", "J1", "Y1", "I01", "?", "l", "!", "J", "Y"]


def _strip(year: int, marks: dict[int, str], alphabet: mk.Alphabet) -> str:
    chars = list(mk.empty_strip(year))
    for index, code in marks.items():
        chars[index] = alphabet.symbol_for(code)
    return "".join(chars)


def _expected(c: Classifier, strip: str, year: int) -> str:
    return "".join(codes.LETTERS[c.class_of(c.alphabet.code_for(sym), mk.day_of_position(year, i)[0])]
                   for i, sym in enumerate(strip))


def test_strips_with_private_use_symbols_are_classified_mark_by_mark() -> None:
    alphabet = mk.Alphabet()
    for code in CODES:
        alphabet.symbol_for(code)  # the store's alphabet, as the classifier is built
    stray = chr(mk.PRIVATE_BASE + 500)  # a symbol the alphabet never handed out: unknown
    for local in ({}, {"?": "authorised"}):  # a literal "?" unknown, then a school's own code
        c = Classifier(local=local, subcodes={"I01": "I"}, alphabet=alphabet)
        for year in (2023, 2024, 2025):  # 2024/25 crosses the change of code sets on 19 August
            marks = {i: CODES[(i * 7 + year) % len(CODES)] for i in range(0, mk.strip_length(year), 3)}
            strip = _strip(year, marks, alphabet)
            strip = strip[:40] + stray + strip[41:]
            assert not strip.isascii()
            assert c.classify(strip, year) == _expected(c, strip, year)
            assert c.classify(strip, year, 101) == _expected(c, strip, year)[:101]
            ascii_only = "".join(ch if ch.isascii() else "/" for ch in strip)
            assert c.classify(ascii_only, year) == _expected(c, ascii_only, year)


def test_unknown_codes_are_found_among_thousands_of_pupils_in_blocks() -> None:
    year, as_of = 2025, date(2025, 11, 14)
    alphabet = mk.Alphabet()
    for code in ("C1", "X01"):
        alphabet.symbol_for(code)
    c = Classifier(subcodes={"I01": "I"}, alphabet=alphabet)
    days = [date(2025, 9, 2) + timedelta(days=i) for i in range((as_of - date(2025, 9, 2)).days + 1)]
    days = [d for d in days if d.weekday() < 5]
    present = {i: code for d in days for i, code in ((mk.position(d, "AM"), "/"), (mk.position(d, "PM"), "\\"))}
    odd = {  # pupil id -> (marks laid over a fortnight of presence, unknown before the evaluation date)
        5: ({mk.position(date(2025, 10, 1), "AM"): "l"}, True),
        _BLOCK - 1: ({mk.position(date(2025, 10, 1), "PM"): "C1"}, False),  # known, but not ASCII
        _BLOCK + 3: ({mk.position(date(2025, 10, 2), "AM"): "C1", mk.position(date(2025, 10, 3), "AM"): "X01"},
                     True),  # not ASCII, and unknown
        2 * _BLOCK + 7: ({mk.position(date(2025, 12, 1), "AM"): "!"}, False),  # after the evaluation date
        2 * _BLOCK + 8: ({mk.position(date(2025, 10, 6), "AM"): "!", mk.position(date(2025, 10, 6), "PM"): "Y"},
                         True),
    }
    strips = {year: {pid: _strip(year, {**present, **odd.get(pid, ({}, False))[0]}, alphabet)
                     for pid in range(3 * _BLOCK + 11)}}
    many = evaluate_many([(pid, True, None) for pid in strips[year]], strips, c, days, as_of, days[0], 6)
    end = 2 * ((as_of - mk.year_start(year)).days + 1)
    assert sorted(many.unknown) == sorted(pid for pid, (_, unknown) in odd.items() if unknown)
    for pid, (raw, letters) in many.unknown.items():
        assert (raw, letters) == (strips[year][pid][:end], c.classify(strips[year][pid], year, end))
    assert all(many.last_attended[pid] == as_of for pid in strips[year])
