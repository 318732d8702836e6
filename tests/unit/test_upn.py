"""The UPN check letter, against its definition written out plainly (and a known valid UPN)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cme_batch import upn


def by_definition(body: str) -> str:
    """Characters 2 to 12 weighted 2 to 12, character 13 weighted 13, modulo 23, as a letter."""
    last = body[11]
    value = int(last) if last.isdigit() else upn.ALPHABET.index(last)
    return upn.ALPHABET[(sum((i + 2) * int(ch) for i, ch in enumerate(body[:11])) + 13 * value) % 23]


DIGITS = "0123456789"
OTHER_DIGITS = "\u0660\u0663\u0669\u09e6\uff15"  # Arabic-Indic, Bengali and full-width digits


@given(st.text(DIGITS, min_size=11, max_size=11), st.sampled_from(DIGITS + upn.ALPHABET))
def test_check_letter_is_the_weighted_sum(digits: str, last: str) -> None:
    assert upn.check_letter(digits + last) == by_definition(digits + last)
    assert upn.is_valid(upn.make(digits + last))


@given(st.text(DIGITS + OTHER_DIGITS, min_size=11, max_size=11), st.sampled_from(DIGITS + upn.ALPHABET))
def test_other_scripts_digits_count_as_their_value(digits: str, last: str) -> None:
    assert upn.check_letter(digits + last) == by_definition(digits + last)


def test_known_upns_and_wrong_bodies() -> None:
    assert upn.check_letter("123456789012") == "A"
    assert upn.problem("A123456789012") is None
    for body in ("12345678901", "1234567890I2", "12345678901S", "x23456789012"):
        with pytest.raises(ValueError):
            upn.check_letter(body)


@given(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZa1 "), st.text(DIGITS + OTHER_DIGITS + "x ", min_size=11, max_size=11),
       st.sampled_from(DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "\u0663"), st.integers(12, 14))
def test_a_upn_is_valid_exactly_when_its_first_letter_is_the_check_letter(first: str, digits: str, last: str,
                                                                          size: int) -> None:
    """``problem`` (whose usual case is worked out in one expression) against the definition: any
    first character, digits of any script, any last character, 12 to 14 characters."""
    text = (first + digits + last + "7")[:size]
    try:
        valid = len(text) == 13 and upn._SHAPE.fullmatch(text) is not None and text[0] == by_definition(text[1:])
    except ValueError:  # (a last character that is no digit nor check-alphabet letter)
        valid = False
    assert (upn.problem(text) is None) == valid
