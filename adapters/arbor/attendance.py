"""Arbor roll-call attendance: wire shapes of marks, their national codes, and the cross-check.

Arbor names each mark type by its own id and code (``PRESENT``, ``LATE``, ``PRESENT_AM``...: the
SDK fetches mark types by these codes), and the mark type also has an ``attendanceMark`` text.
The national code stored is whichever of ``code`` and ``attendanceMark`` is one (``code`` first,
as the adapter read it before), else ``code`` as a local code (``mark_code``). Arbor also flags each
mark type as statistically present, authorised absent and so on; those flags are kept only to
cross-check the code against the class DOMAIN.md section 2 gives it, and a disagreement becomes
a data-quality warning (a school's local code, or a mark type set up wrongly in Arbor).
This is the attendance half of ``mapping``: it shares the same UNCONFIRMED status.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date

from adapters.arbor.mapping import MARK, BadShape, Row, parse_date, ref_id
from cme_batch.codes import CHANGEOVER, UNKNOWN, national_set
from cme_batch.model import MarksRecord, Warning_


def code_class(code: str, day: date) -> str:
    """The DOMAIN.md class of a code on a date; ``unknown`` for local codes."""
    return national_set(day).get(code, UNKNOWN)


#: What Arbor's statistical flags say, as the set of DOMAIN classes each reading allows.
_FLAG_GROUPS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("isStatisticalPresent", "present", frozenset({"present"})),
    ("isStatisticalApprovedEducationalActivity", "approved educational activity",
     frozenset({"educational_activity"})),
    ("isStatisticalAuthorizedAbsent", "authorised absence", frozenset({"authorised"})),
    ("isStatisticalUnauthorizedAbsent", "unauthorised absence",
     frozenset({"unexplained", "unauthorised_explained", "late_after_close"})),
)
# D (dual registered) is an educational activity for us but not a possible session in statistics.
_NOT_POSSIBLE = ("not a possible session", frozenset({"neutral", "unable_pupil", "no_mark", "educational_activity"}))


def arbor_reading(mark: Row) -> tuple[str, frozenset[str]]:
    """What Arbor's flags on a mark type say it is, and which DOMAIN classes agree with that."""
    for flag, label, classes in _FLAG_GROUPS:
        if mark.get(flag):
            return label, classes
    if mark.get("isStatisticalPossibleAttendance") is False:
        return _NOT_POSSIBLE
    return "nothing", frozenset()


def _clean(v: object) -> str:
    return v.strip() if isinstance(v, str) else ""  # blanks around a code are no part of it


def mark_code(mark: Row, day: date) -> str:
    """The code to store for a mark type on a day: its ``code`` if that is a national code, else its
    ``attendanceMark`` if that is one (Arbor's own code, e.g. ``PRESENT_AM``, with the national
    ``/`` beside it), else its ``code`` (a local code, or blank)."""
    table = national_set(day)
    code, shown = _clean(mark.get("code")), _clean(mark.get("attendanceMark"))
    if code not in table and shown in table:
        return shown
    return code or shown


def cross_check(mark: Row, day: date) -> Warning_ | None:
    """A warning when Arbor's own flags on a mark type disagree with the national code's class."""
    code = mark_code(mark, day)
    cls = code_class(code, day)
    label, allowed = arbor_reading(mark)
    if not allowed:
        return None
    if cls == "unknown":
        return Warning_("arbor_local_code",
                        f"Arbor mark type {mark.get('id')} has code {code!r}, not a national code; Arbor counts "
                        f"it as {label}: map it in [codes.local] (it is treated as neutral until then)",
                        where="arbor attendance marks")
    if cls not in allowed:
        return Warning_("arbor_mark_disagrees",
                        f"Arbor mark type {mark.get('id')} (code {code!r}) is flagged by Arbor as {label}, "
                        f"but code {code!r} is '{cls}' in the national set; the code is used",
                        where="arbor attendance marks")
    return None


def session_of(roll_call: Row) -> str | None:
    """AM or PM from the roll call's register type; None for a roll call that is neither."""
    rt = roll_call.get("attendanceRegisterType") or {}
    if rt.get("isMorning"):
        return "AM"
    if rt.get("isAfternoon"):
        return "PM"
    return None


#: The warning of roll-call records left out (no pupil, date or AM/PM register): a full pull with
#: any cannot call its marks a pupil's whole register.
SKIPPED_ROLL_CALLS = "arbor_roll_call_skipped"


def marks_records(records: Iterable[Row], roll_calls: Sequence[Row], marks: Sequence[Row],
                  warnings: list[Warning_]) -> list[MarksRecord]:
    """One MarksRecord per pupil, spanning its marked sessions; unmarked sessions in between say nothing.

    A roll-call record without a mark is a register gap (``-``). Of one roll call's records for a
    pupil and session, the newest revision counts (a mark removed is no mark); where two roll
    calls share a session, one with a mark wins over one without, and of two with a mark (or
    two without) the newer. Cross-check warnings are added once per mark type and code set.
    """
    sessions = {str(r["id"]): session_of(r) for r in roll_calls}
    by_id = {str(m["id"]): m for m in marks}
    #: pupil -> session -> roll call -> (revision, code): a session may have two roll calls
    best: dict[str, dict[tuple[date, str], dict[str, tuple[int, str]]]] = defaultdict(dict)
    checked: set[tuple[str, bool]] = set()
    skipped = 0
    for r in records:
        sid, day = ref_id(r.get("student")), parse_date(r.get("recordDate"))
        sess = sessions.get(ref_id(r.get("attendanceRollCall")) or "")
        if sid is None or day is None or sess is None:
            skipped += 1
            continue
        mid = ref_id(r.get("attendanceMark"))
        code = "-"
        if mid is not None:
            mark = by_id.get(mid)
            if mark is None:  # laid as "no mark" it would replace a real mark: refuse the pull instead
                raise BadShape(f"a roll-call record names attendance mark {mid}, which Arbor's list of "
                               "attendance marks does not hold")
            raw = mark.get("code")
            code = mark_code(mark, day)
            if not code:  # laid as "no mark" it would replace a real mark, as above
                raise BadShape(f"{MARK} {mid}: field code is {'null' if raw is None else 'blank'}, expected the "
                               "mark's code: roll-call records have this mark, and cannot be stored without it")
            if (mid, day >= CHANGEOVER) not in checked:
                checked.add((mid, day >= CHANGEOVER))
                if (w := cross_check(mark, day)) is not None:
                    warnings.append(w)
        rev = int(r.get("revisionId") or 0)
        calls = best[sid].setdefault((day, sess), {})
        call = ref_id(r.get("attendanceRollCall")) or ""
        if call not in calls or rev >= calls[call][0]:  # one roll call's record: its newest revision
            calls[call] = (rev, code)
    if skipped:
        warnings.append(Warning_(SKIPPED_ROLL_CALLS,
                                 f"{skipped} roll-call record(s) had no pupil, date or AM/PM register and "
                                 "were left out", where="arbor attendance"))
    return [_strip(sid, cells) for sid, cells in best.items()]


def _strip(pupil_key: str, cells: Mapping[tuple[date, str], Mapping[str, tuple[int, str]]]) -> MarksRecord:
    first = min(d for d, _ in cells)
    last = max(d for d, _ in cells)
    codes = [""] * (2 * ((last - first).days + 1))
    for (day, sess), calls in cells.items():
        # two roll calls for one session (a second morning register): one with a mark wins over one
        # left unmarked, which would have made the child's N a session with no mark; of two, the newer
        _marked, _rev, code = max((code != "-", rev, code) for rev, code in calls.values())
        codes[2 * (day - first).days + (0 if sess == "AM" else 1)] = code
    return MarksRecord(pupil_key, first, tuple(codes))
