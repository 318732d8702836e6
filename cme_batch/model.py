"""Core model records: what source adapters yield and what the core reasons about.

Plain frozen dataclasses, no I/O. A pupil is identified within one source by ``pupil_key``
(the MIS's own id: SIMS Adno / person id, Arbor student id, or the UPN for a CTF); the store
matches records across sources by UPN first, then by key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal, cast

Session = Literal["AM", "PM"]
SESSIONS: tuple[Session, Session] = ("AM", "PM")

#: Vulnerability flag kinds the core knows (DOMAIN.md 5 and 6). Adapters map their MIS's flags onto these.
FLAG_KINDS: frozenset[str] = frozenset(
    {
        "child_protection_plan",
        "looked_after",
        "domestic_abuse",
        "highly_mobile",  # armed forces, Gypsy, Roma and Traveller families
        "young_carer",
        "permanently_excluded",
        "medical_emotional",  # long-term medical or emotional problems
        "parent_mental_health",
        "parent_learning_difficulty",
        "sen_support",
        "ehcp",
        "child_in_need",
    }
)


@dataclass(frozen=True)
class Address:
    lines: tuple[str, ...] = ()
    postcode: str | None = None

    def one_line(self) -> str:
        parts = [p for p in self.lines if p]
        if self.postcode:
            parts.append(self.postcode)
        return ", ".join(parts)

    def match_key(self) -> str | None:
        """A normalised key for 'same address' (siblings): first line plus postcode, no spaces, lower case."""
        if not self.postcode or not self.lines:
            return None
        return (self.lines[0] + "|" + self.postcode).replace(" ", "").lower()


@dataclass(frozen=True)
class PupilRecord:
    pupil_key: str
    upn: str | None = None
    legal_surname: str | None = None
    legal_forename: str | None = None
    preferred_surname: str | None = None
    preferred_forename: str | None = None
    middle_names: str | None = None
    dob: date | None = None
    sex: str | None = None
    year_group: str | None = None  # normalised: "R", "1".."6", "N1", ...
    reg_group: str | None = None
    address: Address | None = None
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    #: UPNs the pupil had before (a CTF's ``FormerUPN``: a temporary UPN replaced by the permanent
    #: one). A record whose key and UPN are new but whose former UPN is a stored pupil's is that
    #: pupil, given its new UPN, not a second child.
    former_upns: tuple[str, ...] = ()
    #: Other keys this source knew the pupil by before ``pupil_key`` (SIMS: the person id an
    #: applicant is known by until the admission number is given). A record whose key is new but
    #: whose former key is stored is that pupil: one child, one enrolment, not a place "not taken up".
    former_keys: tuple[str, ...] = ()
    #: What the batch replaces (``SourceBatch.replaces``) that this pupil's entry says nothing of,
    #: so the store keeps the pupil's stored records of it: a kind of record (``"contacts"``) or of
    #: flag (``"sen_support"``). A day's register exported as a full CTF has no ``Contacts``: it does
    #: not mean the child has no emergency contact now. Not part of the record's value (equality,
    #: hash): it says what the entry left out, not anything about the pupil.
    keeps: frozenset[str] = field(default=frozenset(), compare=False)

    @classmethod
    def named(cls, pupil_key: str, upn: str | None, keeps: frozenset[str] = frozenset()) -> PupilRecord:
        """``PupilRecord(pupil_key, upn, keeps=keeps)``: a pupil named with no details (a day's
        register has one per pupil), made by copying the defaults instead of through ``__init__``,
        which sets each field of a frozen dataclass one call at a time (2.3 against 0.4
        microseconds)."""
        rec = object.__new__(cls)
        fields = rec.__dict__
        fields.update(_NAMED_DEFAULTS)
        fields["pupil_key"], fields["upn"], fields["keeps"] = pupil_key, upn, keeps
        return rec


_NAMED_DEFAULTS = dict(PupilRecord("").__dict__)


@dataclass(frozen=True)
class EnrolmentRecord:
    """One admission of a pupil to this school, from offer to leaving."""

    pupil_key: str
    admission_date: date | None = None  # the agreed first day (an allocated place)
    entry_date: date | None = None  # the date the pupil actually went on roll
    leaving_date: date | None = None
    leaving_reason: str | None = None
    destination: str | None = None  # destination school (name or LA/estab), None when unknown
    withdrawn: bool = False  # an admission withdrawn before the child started
    #: Whether the record speaks of the leaving (``leaving_date``, ``leaving_reason``, ``destination``).
    #: False for an export with no leaving fields at all (a SIMS admissions report without them): its
    #: "no leaving" says nothing, and the store keeps the leaving another export stored for the same
    #: admission. Not part of the record's value: it says what the export left out.
    leaving_given: bool = field(default=True, compare=False)


@dataclass(frozen=True)
class ContactRecord:
    pupil_key: str
    contact_key: str  # stable id within the source, e.g. the MIS contact id or "order:1"
    priority: int | None = None  # 1 = first emergency contact
    title: str | None = None
    surname: str | None = None
    forename: str | None = None
    relationship: str | None = None
    parental_responsibility: bool | None = None
    lives_with: bool | None = None
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    address: Address | None = None


@dataclass(frozen=True)
class FlagRecord:
    pupil_key: str
    kind: str  # one of FLAG_KINDS
    start: date | None = None
    end: date | None = None
    detail: str | None = None


@dataclass(frozen=True)
class MarksRecord:
    """Session marks for one pupil over a run of consecutive sessions.

    ``codes[i]`` is the mark of session ``i`` counted from the AM session of ``start``
    (even i: AM, odd i: PM, day ``start + i // 2``). A code is the mark as the MIS wrote it
    (``"/"``, ``"N"``, ``"C1"``, ``"#"``, ``"-"`` for "no mark recorded"); ``""`` means this record
    says nothing about that session, so whatever the store has is kept.
    One record can carry a single mark (SIMS rows) or a whole year (a CTF marks string).
    ``codes`` may be a ``str`` when every code is one character and every session has a mark
    (a CTF marks string as it stands): it reads the same, one code per character, and is far
    cheaper to build, hand between processes and lay over a strip than a tuple of hundreds.
    """

    pupil_key: str
    start: date
    codes: tuple[str, ...] | str

    @classmethod
    def single(cls, pupil_key: str, day: date, session: Session, code: str) -> MarksRecord:
        if session == "AM":
            return cls(pupil_key, day, (code,))
        return cls(pupil_key, day, ("", code))


@dataclass(frozen=True)
class SchoolInfo:
    """What a source says about the school it came from (for cross-checking the config)."""

    la_number: str | None = None
    establishment_number: str | None = None
    name: str | None = None


Record = PupilRecord | EnrolmentRecord | ContactRecord | FlagRecord | MarksRecord | SchoolInfo


def packed(records: Iterable[Record]) -> list[Any]:
    """Records in the form cheapest to hand to another process (``cme_batch.readahead``): a run of
    marks as a (key, start, codes) tuple, a pupil named with its UPN at most as a (key, UPN) tuple,
    or a (key, UPN, keeps) tuple when it keeps something (a day's register in a full CTF), anything
    else as it is. Pickling and unpickling tuples of strings takes a fraction of the time the
    dataclasses take (a day's register is two records a pupil; its pupils' ``keeps`` are one set,
    pickled once a list); ``unpacked`` rebuilds them."""
    named = dict(_NAMED_DEFAULTS)
    out: list[Any] = []
    add = out.append
    for rec in records:
        cls = rec.__class__
        if cls is MarksRecord:
            m = cast(MarksRecord, rec)
            add((m.pupil_key, m.start, m.codes))
        elif cls is PupilRecord:
            fields = rec.__dict__
            named["pupil_key"], named["upn"], named["keeps"] = fields["pupil_key"], fields["upn"], fields["keeps"]
            if fields != named:
                add(rec)
            elif fields["keeps"]:
                add((fields["pupil_key"], fields["upn"], fields["keeps"]))
            else:
                add((fields["pupil_key"], fields["upn"]))
        else:
            add(rec)
    return out


def unpacked(items: Iterable[Any]) -> list[Record]:
    """The records ``packed`` gave, equal to the originals."""
    new, make_named = object.__new__, PupilRecord.named
    out: list[Record] = []
    add = out.append
    for item in items:
        if item.__class__ is not tuple:
            add(item)
        elif len(item) == 2:
            add(make_named(item[0], item[1]))
        elif item[2].__class__ is frozenset:  # (codes are a str or a tuple)
            add(make_named(item[0], item[1], item[2]))
        else:
            rec = new(MarksRecord)
            rec.__dict__.update(pupil_key=item[0], start=item[1], codes=item[2])
            add(rec)
    return out


@dataclass(frozen=True)
class Warning_:
    """A data-quality warning: kept with the ingest run and shown in the summary; never a failure.

    ``where`` names file and record number (never a pupil's name); ``pupil_key`` lets the store
    attach it to a pupil without putting identity into the text. ``dsl_only``: it is about a
    vulnerability record (a child protection, in-care or SEN status), so the morning emails show it
    to the DSL alone (DOMAIN.md 7: the office is told how many).
    """

    code: str  # e.g. "unknown_code", "bad_upn", "mark_outside_calendar", "duplicate_pupil"
    message: str
    where: str | None = None
    pupil_key: str | None = None
    dsl_only: bool = False


@dataclass
class SourceBatch:
    """One unit a source delivers, stored all or nothing: one export file, one API pull.

    ``records`` may be a generator (the store consumes it once, inside one transaction);
    ``warnings`` may grow while it is consumed. ``replaces`` names the kinds of record
    (``"contacts"``, ``"flags"``, ``"enrolments"``) of which this batch holds the complete list
    for every pupil it carries a ``PupilRecord`` for: the store then deletes that pupil's
    records of that kind from this source which the batch no longer has.
    ``marks_complete`` maps pupil keys to a window of dates (first and last day, both included)
    in which the batch's marks for that pupil are the whole register: the store sets every
    session there that the batch gives no mark (none, or ``""``) to no-mark, a correction where
    a real mark was stored (a register record deleted in the MIS). Empty for every source that
    cannot say so (files of marks, changes-only pulls).
    """

    source: str
    origin: str  # file name or URL host
    checksum: str | None = None
    records: Iterable[Record] = ()
    warnings: list[Warning_] = field(default_factory=list)
    cursor: str | None = None  # e.g. the Arbor changelog revision reached
    replaces: frozenset[str] = frozenset()
    marks_complete: dict[str, tuple[date, date]] = field(default_factory=dict)
    path: Path | None = None  # the file read, for a file adapter's archive step
    #: Maps the reader fills in that outlive the batch (the pupils seen in a run's earlier files):
    #: when the records are read in another process (``cme_batch.readahead``) they are brought back.
    shared: tuple[dict[Any, Any], ...] = ()
    #: Its records already come from a reading process (``readahead.ReadingHost``): ``read_ahead``
    #: leaves it as it is.
    read_elsewhere: bool = False
    #: For a reader that can make its records as ``packed`` gives them without making the records
    #: first (the CTF reader's day registers), what a reading process hands over
    #: (``cme_batch.readahead``): ``(records, the same records packed)``. The packed ones are taken
    #: only while ``records`` is still the first (whoever replaces ``records`` replaces what is read);
    #: a consumer iterates one of the two, never both.
    packed_records: tuple[Iterable[Record], Iterable[Any]] | None = None
    #: The report this file is the whole of (a SIMS export), named by its file name's group
    #: (``dropfolder.group_of``): skipped as already imported only when it is the same as the latest
    #: file of that group stored from this source, for a report may come back to an earlier state (a
    #: destination recorded, then cleared). None: skipped whenever the same bytes were stored before.
    whole_report: str | None = None
