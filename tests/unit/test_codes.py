"""Attendance codes: every row of DOMAIN.md 2, by the date of the mark, on one code and on whole strips."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from cme_batch import codes
from cme_batch import marks as mk
from cme_batch.codes import Classifier

NEW = date(2024, 9, 4)  # the 2024 set is in force
OLD = date(2024, 7, 10)  # the legacy set is in force

ROWS_2024 = [
    ("present", "/ \\ L"),
    ("late_after_close", "U"),
    ("educational_activity", "K V P W B D"),
    ("authorised", "C C1 C2 E I M J1 R S T"),
    ("unauthorised_explained", "G"),
    ("unexplained", "N O"),
    ("unable_pupil", "Q Y5 Y7"),
    ("neutral", "X Y1 Y2 Y3 Y4 Y6 Z #"),
    ("no_mark", "-"),
]
ROWS_LEGACY = [
    ("present", "/ \\ L"),
    ("late_after_close", "U"),
    ("educational_activity", "B D J P V W"),
    ("authorised", "C E F H I M R S T"),
    ("unauthorised_explained", "G"),
    ("unexplained", "N O"),
    ("neutral", "X Y Z #"),
    ("no_mark", "-"),
]


def _cases(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(code, cls) for cls, cs in rows for code in cs.split()]


@pytest.mark.parametrize(("code", "cls"), _cases(ROWS_2024))
def test_every_code_of_the_2024_set(code: str, cls: str) -> None:
    assert Classifier().class_of(code, NEW) == cls
    assert Classifier().class_of(code, codes.CHANGEOVER) == cls  # in force from 19 August 2024 itself


@pytest.mark.parametrize(("code", "cls"), _cases(ROWS_LEGACY))
def test_every_code_of_the_legacy_set(code: str, cls: str) -> None:
    assert Classifier().class_of(code, OLD) == cls
    assert Classifier().class_of(code, date(2024, 8, 18)) == cls  # the last day of the old set


@pytest.mark.parametrize("code", ["F", "H", "J", "Y"])
def test_withdrawn_codes_are_unknown_after_the_change(code: str) -> None:
    assert Classifier().class_of(code, NEW) == "unknown"


@pytest.mark.parametrize("code", ["K", "Q", "C1", "C2", "J1", "Y1", "Y5", "Y7"])
def test_new_codes_are_unknown_before_the_change(code: str) -> None:
    assert Classifier().class_of(code, OLD) == "unknown"


def test_j_changed_meaning_with_the_date() -> None:
    c = Classifier()
    assert c.class_of("J", OLD) == "educational_activity"
    assert c.class_of("J", NEW) == "unknown"
    assert c.class_of("J1", NEW) == "authorised"


@pytest.mark.parametrize("code", ["", " ", "-"])
def test_blank_and_dash_are_no_mark(code: str) -> None:
    assert Classifier().class_of(code, NEW) == "no_mark"


@pytest.mark.parametrize("code", ["l", "n", "!", "@", "7", "I01", "ZZ"])
def test_anything_else_is_unknown_and_codes_are_case_sensitive(code: str) -> None:
    assert Classifier().class_of(code, NEW) == "unknown"
    assert Classifier().class_of(code, OLD) == "unknown"


def test_local_codes_and_subcodes_from_the_configuration() -> None:
    c = Classifier(local={"7": "authorised", "@": "present", "H": "authorised"},
                   subcodes={"I01": "I", "X01": "X", "Q9": "Q", "L7": "7"})
    assert c.class_of("7", NEW) == "authorised"
    assert c.class_of("@", OLD) == "present"
    assert c.class_of("I01", NEW) == "authorised"
    assert c.class_of("X01", OLD) == "neutral"
    assert c.class_of("Q9", NEW) == "unable_pupil"
    assert c.class_of("Q9", OLD) == "unknown"  # Q was not a code before 2024
    assert c.class_of("L7", NEW) == "authorised"  # a sub-code of a local code
    assert c.class_of("H", NEW) == "authorised"  # the school kept using H after 2024: its own mapping
    assert c.class_of("H", OLD) == "authorised"
    assert c.warnings == []


def test_a_sub_code_for_no_known_code_is_unknown_and_warned_about() -> None:
    c = Classifier(subcodes={"I01": "I", "Z99": "ZZ"})
    assert c.class_of("Z99", NEW) == "unknown"
    assert c.warnings == ["codes.subcodes: 'Z99' stands for 'ZZ', which is neither a national nor a local code; "
                          "its marks are treated as unknown"]


def test_a_local_entry_cannot_change_a_national_code() -> None:
    c = Classifier(local={"N": "authorised"})
    assert c.class_of("N", NEW) == "unexplained"
    assert c.warnings and "'N' is a national code" in c.warnings[0]


def _strip(year: int, marks: dict[tuple[date, str], str], alphabet: mk.Alphabet) -> str:
    chars = list(mk.empty_strip(year))
    for (day, session), code in marks.items():
        chars[mk.position(day, session)] = alphabet.symbol_for(code)
    return "".join(chars)


def test_a_whole_strip_is_classified_like_each_mark_on_both_sides_of_the_change() -> None:
    alphabet = mk.Alphabet()
    sample = ["/", "\\", "L", "U", "K", "V", "P", "W", "B", "D", "J", "C", "C1", "C2", "E", "F", "H", "I", "M",
              "J1", "R", "S", "T", "G", "N", "O", "Q", "Y", "Y1", "Y2", "Y3", "Y4", "Y5", "Y6", "Y7", "X", "Z", "#",
              "-", "l", "!", "7", "I01", "X01"]
    marks: dict[tuple[date, str], str] = {}
    for i, code in enumerate(sample):
        # 1 to 22 August crosses the change on the 19th; September is all 2024 set
        for day in (date(2024, 8, 1) + timedelta(days=i // 2), date(2024, 9, 2) + timedelta(days=i // 2)):
            marks[(day, "AM" if i % 2 else "PM")] = code
    alphabet.symbol_for("I01")
    alphabet.symbol_for("X01")
    strip = _strip(2024, marks, alphabet)
    c = Classifier(local={"7": "authorised"}, subcodes={"I01": "I", "X01": "X"}, alphabet=alphabet)
    letters = c.classify(strip, 2024)
    assert len(letters) == len(strip)
    for index, letter in enumerate(letters):
        day, session = mk.day_of_position(2024, index)
        code = marks.get((day, session), "-")
        assert codes.CLASS_OF_LETTER[letter] == c.class_of(code, day), (day, session, code)


def test_strips_of_whole_years_use_one_set() -> None:
    c = Classifier()
    old = c.classify(_strip(2023, {(date(2024, 3, 4), "AM"): "J", (date(2024, 3, 4), "PM"): "Q"}, mk.Alphabet()),
                     2023)
    new = c.classify(_strip(2025, {(date(2025, 9, 3), "AM"): "J", (date(2025, 9, 3), "PM"): "Q"}, mk.Alphabet()),
                     2025)
    i, j = mk.position(date(2024, 3, 4), "AM"), mk.position(date(2025, 9, 3), "AM")
    assert old[i:i + 2] == "E?"
    assert new[j:j + 2] == "?Q"


def test_unknown_codes_are_tallied_without_naming_anyone() -> None:
    alphabet = mk.Alphabet()
    day = date(2025, 9, 8)
    s1 = _strip(2025, {(day, "AM"): "l", (day, "PM"): "!", (date(2025, 9, 9), "AM"): "l"}, alphabet)
    s2 = _strip(2025, {(day, "AM"): "l", (day, "PM"): "/"}, alphabet)
    c = Classifier(alphabet=alphabet)
    found = c.unknown_codes([(s, c.classify(s, 2025)) for s in (s1, s2)])
    assert found == [codes.UnknownCode("!", 1, 1), codes.UnknownCode("l", 3, 2)]
    keyed = c.unknown_codes([(s, c.classify(s, 2025)) for s in (s1, s2)], ["p1", "p2"])
    assert keyed == found and keyed[1].keys == {"p1", "p2"} and keyed[0].keys == {"p1"}
    assert (keyed[1].first, keyed[1].last) == (mk.position(day, "AM"), mk.position(date(2025, 9, 9), "AM"))
    text = codes.warning_text(found[1])
    assert "'l'" in text and "3 session(s)" in text and "2 pupil(s)" in text and "neutral" in text
