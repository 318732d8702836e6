"""The Unique Pupil Number: shape and check letter.

A UPN is 13 characters: a check letter, then twelve characters (LA number, establishment
number, year of allocation, serial). A temporary UPN ends in a letter instead of a digit.
The check letter is a weighted sum of characters 2 to 13 (weights 2 to 13) modulo 23,
written with the 23-letter alphabet that leaves out I, O and S; a letter in position 13
counts as its index in that same alphabet.

A bad UPN is a data-quality warning, never a reason to reject a record: the MIS is the
authority on its own pupils, and we only point out the mistake (without printing the UPN).
"""

from __future__ import annotations

import re
from operator import mul

#: The letters a check letter (and a temporary UPN's last character) can be, in value order.
ALPHABET = "ABCDEFGHJKLMNPQRTUVWXYZ"
_SHAPE = re.compile(r"[A-Z]\d{11}[0-9A-Z]")
_WEIGHTS = range(2, 13)  # of characters 2 to 12; character 13 weighs 13
_ZEROS = ord("0") * sum(_WEIGHTS)


def normalise(raw: str | None) -> str | None:
    """Upper-case, no spaces; ``None`` for an empty value."""
    if raw is None:
        return None
    v = "".join(raw.split()).upper()
    return v or None


def check_letter(body: str) -> str:
    """The check letter for the twelve characters after it.

    Raises ``ValueError`` when ``body`` is not 11 digits followed by a digit or a letter
    of the check alphabet.
    """
    if len(body) != 12 or not body[:11].isdigit():
        raise ValueError("a UPN body is 11 digits followed by a digit or letter")
    last = body[11]
    if last.isdigit():
        value = int(last)
    elif last in ALPHABET:
        value = ALPHABET.index(last)
    else:
        raise ValueError("the last character of a temporary UPN must be a check-alphabet letter")
    digits = body[:11]
    if digits.isascii():  # the usual case: the character codes less 48 each ("0" is 48), at C speed
        total = sum(map(mul, digits.encode(), _WEIGHTS)) - _ZEROS + 13 * value
    else:  # other scripts' digits (int() reads them)
        total = sum(map(mul, map(int, digits), _WEIGHTS)) + 13 * value
    return ALPHABET[total % 23]


#: A UPN of ASCII characters whose last is a digit or a check-alphabet letter (the usual case,
#: checked by ``problem`` in one expression), and each such last character's value.
_ASCII_SHAPE = re.compile(r"[A-Z][0-9]{11}[0-9A-HJ-NP-RT-Z]")
_LAST_VALUE = {**{str(d): d for d in range(10)}, **{c: i for i, c in enumerate(ALPHABET)}}
_WEIGHT_BYTES = bytes(_WEIGHTS)


def problem(upn: str) -> str | None:
    """What is wrong with a (normalised) UPN, or ``None`` when it is valid.

    The text never contains the UPN itself, so it is safe in a warning.
    """
    if len(upn) == 13 and _ASCII_SHAPE.fullmatch(upn) and upn[0] == ALPHABET[
            (sum(map(mul, upn[1:12].encode(), _WEIGHT_BYTES)) - _ZEROS + 13 * _LAST_VALUE[upn[12]]) % 23]:
        return None  # a valid UPN, as below, without its calls (a local authority's day has 100,000)
    if len(upn) != 13:
        return f"a UPN has 13 characters, this one has {len(upn)}"
    if not _SHAPE.fullmatch(upn):
        return "a UPN is a letter, 11 digits, then a digit or letter"
    try:
        want = check_letter(upn[1:])
    except ValueError as exc:
        return str(exc)
    if upn[0] != want:
        return "the check letter does not match the rest of the UPN"
    return None


def is_valid(upn: str) -> bool:
    return problem(upn) is None


def make(body: str) -> str:
    """A full UPN for twelve characters (for test data and the demo school)."""
    return check_letter(body) + body
