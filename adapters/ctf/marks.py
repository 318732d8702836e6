"""The CTF attendance marks string: the one place that knows its encoding.

What is assumed (formats.md 1.4: one vendor's writer, not DfE text; the CTF 24/25
specification must be checked before this is relied on):

- the string starts at ``AttendanceStartDate`` (or ``AttendStartDate``) and holds two
  characters per *calendar* day, AM then PM, weekends and holidays included;
- ``#`` marks a session the school did not hold;
- one character per session, so the 2024 two-character codes (``C1``, ``J1``, ``Y1``...)
  cannot appear; ``NARROW`` says what the writer puts in their place.

If the DfE specification turns out to differ, change ``decode_marks`` and ``encode_marks``
(and their tests), nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

#: What the writer puts for a code that does not fit in one character (unconfirmed, see above).
NARROW = {"C1": "C", "C2": "C", "J1": "J", "Y1": "Y", "Y2": "Y", "Y3": "Y", "Y4": "Y", "Y5": "Y",
          "Y6": "Y", "Y7": "Y"}


def decode_marks(start: date, marks: str) -> tuple[date, str]:
    """The session codes of a marks string: ``(start, codes)`` with ``codes[2*d]`` the AM and
    ``codes[2*d+1]`` the PM mark of day ``start + d``, one character each (``codes`` is a
    ``str``, as ``MarksRecord`` allows). A blank is "no mark", at either end too: ``marks`` must
    be the text as written, not stripped, or every mark after a leading blank would move to the
    session before its own.

    Raises ``ValueError`` (with a message fit for an error naming the field) when the string
    cannot be a marks string.
    """
    if len(marks) % 2:
        raise ValueError(f"has {len(marks)} characters; two per calendar day (AM, PM) means an even number")
    if not marks.isprintable():
        raise ValueError("holds control characters (a line break or tab, for instance)")
    return start, marks.replace(" ", "-")


def encode_marks(codes: Sequence[str]) -> str:
    """The marks string for session codes from the AM of the start date (``""`` becomes ``-``)."""
    joined = "".join(codes)
    if len(joined) == len(codes) and "" not in codes:  # every code one character: nothing to narrow or fill
        return joined
    out = []
    for c in codes:
        c = NARROW.get(c, c)
        out.append(c if len(c) == 1 else "-")
    return "".join(out)
