"""Reading one SIMS CommandReporter export file into model records.

The file is streamed a piece at a time (``cme_batch.xmlstream``): a 100 MB marks export never
sits in memory, and its rows of pupils already read take only the four fields a mark needs.
Every bad value is collected with its record number and field; once the last record has been
read, any problem rejects the whole file (the store rolls back the transaction that was
consuming the records). Data-quality issues the MIS should fix but
that do not make the data wrong to store (unknown codes, bad UPN check letters, marks on
closed days, one pupil in two files) become warnings.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

from adapters.sims.fields import (
    FIELDS,
    FLAG_FIELDS,
    KINDS,
    PERSONAL,
    READ_AS,
    REPLACES,
    SEN_FLAGS,
    SEN_NAMES,
    FieldMap,
    display,
    kind_of_fields,
    report_of,
)
from cme_batch import upn as upn_mod
from cme_batch.dropfolder import (
    MAX_ORDER,
    FileReport,
    MarkCheck,
    group_of,
    parse_bool,
    parse_date,
    parse_order,
    year_group,
)
from cme_batch.errors import ImportRejected
from cme_batch.model import (
    Address,
    ContactRecord,
    EnrolmentRecord,
    FlagRecord,
    MarksRecord,
    PupilRecord,
    Record,
    SourceBatch,
    Warning_,
)
from cme_batch.xmlstream import (
    Prepared,
    XmlRefused,
    iter_flat,
    iter_record_batches,
    iter_rows,
    local_name,
    prepare,
)

ROOTS = ("SuperStarReport",)
PATH = ("SuperStarReport", "Record")
#: Application statuses that say the child holds no place here, matched on the status's words: the
#: application ended ("Withdrawn"; SIMS writes "Withdrawal"; "Declined", "Offer Refused", "Rejected"...)
#: or no place was offered ("Not Offered", "Unsuccessful", "Deadline Missed", "Waiting List"). Only
#: five exact words used to be known, so a "Withdrawal" read as a live offer: once its start had
#: passed, a "place not taken up" case opened, for the LA, on a child who never had a place here.
NO_PLACE = re.compile(r"\b(?:withdr[ae]w\w*|declin\w*|refus\w*|cancel\w*|reject\w*|unsuccessful|not offered"
                      r"|deadline missed|wait(?:ing)? ?-?list\w*)\b")
#: Statuses of an application with a place (or one kept as such, as the README says): no warning.
PLACE_STATUSES = frozenset({"applied", "offered", "offer made", "offer accepted", "accepted", "admitted", "reserved",
                            "allocated", "confirmed", "current", "on roll", "left", "leaver"})
#: Destinations that say the destination is not known (lower case, single spaces, no full stop),
#: stored as none. Beyond these, detect reads "TBC", "whereabouts unknown"... as none itself; "N/K",
#: "CME", "Lost pupil" (the DfE's lost pupils database) or "No forwarding address" used to be stored
#: as a destination school, and no "destination unknown" case opened.
UNKNOWN_DESTINATION = frozenset({
    "unknown", "not known", "n/k", "nk", "n/a", "na", "not applicable", "not stated", "mmm", "mmmm", "mmm/mmmm",
    "cme", "lost pupil", "lost pupils", "lost pupil database", "lost pupils database", "no forwarding address"})
SESSIONS = {"AM": 0, "A": 0, "MORNING": 0, "PM": 1, "P": 1, "AFTERNOON": 1}
MAX_GAP = 14  # sessions: a pupil's marks closer than a week apart stay in one record
MAX_BUFFERED = 200_000  # sessions held in open runs before they are all handed on (flat memory)
MARK_FIELDS = frozenset({"adno", "person_id", "date", "session", "mark"})
#: Records looked at, at most, for one whose fields tell its report (a file not named after one, ``detect_kind``).
DETECT_RECORDS = 1000


def detect_kind(prep: Prepared, fmap: FieldMap) -> str:
    """The report a file holds: from its name when the scheduled task named it, else from its
    first record's fields."""
    group = group_of(prep.path.name)
    if group in KINDS:
        return group
    # the first record whose fields tell its report: a record of identity fields alone (a pupil
    # with no sessions in a marks report: CommandReporter leaves the sub-report's empty fields
    # out) tells nothing, and read as the pupils report, the marks rows after it were refused
    for i, raw in enumerate(iter_flat(prep, ROOTS, PATH)):
        keys = set(fmap.record(raw))
        if report_of(keys) is not None or i >= DETECT_RECORDS:
            return kind_of_fields(keys)
    return "pupils"


def read_file(path: Path, options: Mapping[str, Any], source: str = "sims-xml",
              kind: str | None = None, prep: Prepared | None = None) -> SourceBatch:
    """A SourceBatch over one export file; its records are read lazily, all or nothing.

    ``options``: ``codes`` (CodesConfig: sub-codes, local codes), ``calendar`` (for marks on
    closed days), ``fields_map`` (a FieldMap with the school's own names), ``seen`` (shared
    between the files of one run, to warn about one pupil in two files).
    """
    fmap = options.get("fields_map") or FieldMap()
    try:
        prep = prep or prepare(path)
        kind = kind or detect_kind(prep, fmap)
    except XmlRefused as exc:
        raise ImportRejected(path.name, [str(exc)]) from None
    batch = SourceBatch(source=source, origin=path.name, checksum=prep.checksum,
                        replaces=REPLACES.get(kind, frozenset()), path=path, whole_report=group_of(path.name))
    batch.warnings.extend(Warning_("encoding", w, path.name) for w in prep.warnings)
    reader = _Reader(prep, kind, fmap, batch, options)
    batch.records = reader.records()
    return batch


def _clean(text: str | None) -> str | None:
    """A field's text as ``FieldMap.row`` gives it: stripped, None when empty."""
    if text is not None:
        text = text.strip()
    return text or None


#: The fields of an enrolment two rows of one admission may disagree on, and where each comes from.
_ENROLMENT_FIELDS = {"admission_date": "agreed_start", "entry_date": "admission_date", "leaving_date": "leaving_date",
                     "leaving_reason": "leaving_reason", "destination": "destination"}
#: A flag kind -> the display names of the fields that raise it (for messages).
_FLAG_FIELD_NAMES = {**{kind: " or ".join(display(f) for f, k in FLAG_FIELDS.items() if k == kind)
                        for kind in FLAG_FIELDS.values()},
                     **{kind: display("sen_status") for kind in SEN_FLAGS.values() if kind}}


_SEN_CODED = re.compile(r"([A-Za-z])(?:\s*[-\u2013:]\s*\S.*)?")


def _sen_code(text: str) -> str:
    """The SEN status code of a SEN Status text: the code alone (``K``), the code before its
    description (``K - SEN Support``), or a description alone (``SEN Support``, ``SEN_NAMES``);
    else the text, which is no code."""
    s = " ".join(text.split())
    if m := _SEN_CODED.fullmatch(s):
        return m.group(1).upper()
    return SEN_NAMES.get(s.lower(), s)


def _no_destination(text: str) -> bool:
    """Whether a Destination says it is not known (``UNKNOWN_DESTINATION``)."""
    return " ".join(text.lower().split()).rstrip(".") in UNKNOWN_DESTINATION


def _shown(v: object) -> str:
    """A value of an enrolment in a message (none of them personal data)."""
    if v is None:
        return "none"
    return v.isoformat() if isinstance(v, date) else repr(v)


#: A contact's fields that hold one value (its numbers and e-mail addresses are gathered from every row).
_CONTACT_SINGLE = ("priority", "title", "surname", "forename", "relationship", "parental_responsibility",
                   "lives_with", "address")


#: A pupil's own fields, which the pupils report repeats on each of the pupil's rows (one per
#: contact): every row is read for them (``_Reader.more``).
_OWN = ("adno", "person_id", "upn", "legal_surname", "legal_forename", "preferred_surname", "preferred_forename",
        "middle_names", "dob", "sex", "year_group", "reg_group", "house_name", "house_number", "street", "district",
        "town", "county", "postcode")
#: Of those, the fields that tell one child from another: two rows of one pupil that give two are refused.
_IDENTITY = frozenset({"upn", "dob", "person_id"})


@dataclasses.dataclass
class _Held:
    """A pupil's own fields as its rows give them so far (the first row's, filled from later rows)."""

    n: int  # the pupil's first row
    fields: dict[str, str]
    dob: date | None
    phones: list[str]
    emails: list[str]


def _given(rec: Mapping[str, str], fld: str) -> tuple[str, ...]:
    return (rec[fld],) if rec.get(fld) else ()


def _same(fld: str, a: str, b: str) -> bool:
    """Whether two rows' texts of one field say the same (a UPN as ``upn.normalise`` reads it;
    any other text ignoring case and runs of spaces)."""
    if fld == "upn":
        return upn_mod.normalise(a) == upn_mod.normalise(b)
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def _pupil_record(rec: Mapping[str, str], key: str, upn: str | None, dob: date | None, phones: tuple[str, ...],
                  emails: tuple[str, ...]) -> PupilRecord:
    lines = tuple(x for x in (rec.get("house_name"), " ".join(
        x for x in (rec.get("house_number"), rec.get("street")) if x) or None,
        rec.get("district"), rec.get("town"), rec.get("county")) if x)
    address = Address(lines, rec.get("postcode")) if lines or rec.get("postcode") else None
    sex = rec.get("sex")
    return PupilRecord(
        pupil_key=key, upn=upn, legal_surname=rec.get("legal_surname"), legal_forename=rec.get("legal_forename"),
        preferred_surname=rec.get("preferred_surname"), preferred_forename=rec.get("preferred_forename"),
        middle_names=rec.get("middle_names"), dob=dob,
        sex=sex[0].upper() if sex and sex.lower() in ("male", "female", "m", "f") else sex,
        year_group=year_group(rec["year_group"]) if "year_group" in rec else None,
        reg_group=rec.get("reg_group"), address=address, phones=phones, emails=emails,
        # an admitted pupil with the person id it had as an applicant (keyed by it then)
        former_keys=("id:" + rec["person_id"],) if rec.get("adno") and rec.get("person_id") else ())


def _adno_key(adno: str) -> str:
    """The pupil's key from an Adno (stripped, not empty): leading zeros do not count."""
    return adno.lstrip("0") or "0"


class _Reader:
    def __init__(self, prep: Any, kind: str, fmap: FieldMap, batch: SourceBatch, options: Mapping[str, Any]) -> None:
        self.prep, self.kind, self.fmap, self.batch = prep, kind, fmap, batch
        self.file = prep.path.name
        self.named = group_of(self.file) == kind  # the kind comes from the name, not the first record
        self.report = FileReport(self.file, frozenset(display(k) for k in PERSONAL))
        self.check = MarkCheck(options.get("codes"), options.get("calendar"))
        self.seen_elsewhere: dict[tuple[str, str], str] = options.get("seen", {})
        self.pupils: dict[str, str | None] = {}  # key -> UPN
        #: a report other than marks: each pupil's own fields, from all its rows (see ``more``)
        self.held: dict[str, _Held] = {}
        self.flag_records: list[FlagRecord] = []  # handed on after the pupils they name
        self.by_upn: dict[str, tuple[str, int]] = {}  # UPN -> key, record
        self.done: set[tuple[str, ...]] = set()  # contacts already yielded, warnings already given
        #: each pupil's flags (as its first row gave them, raised by any row since) and that row's number
        self.flag_rows: dict[str, tuple[set[str], int]] = {}
        #: (pupil, the store's key of an admission) -> the enrolment and the record that gave it
        self.enrolments: dict[tuple[str, str, date | None], tuple[EnrolmentRecord, int]] = {}
        #: (pupil, contact key) -> the contact as its rows give it, and its first row (see ``contact``)
        self.contacts: dict[tuple[str, str], tuple[ContactRecord, int]] = {}
        #: the parts of a pupils report any row gave a field of (what it can replace, see ``records``)
        self.parts_given: set[str] = set()
        self.any_mark = False  # whether any row of a marks report has a mark (one with none may be renamed)
        self.runs: dict[str, list[Any]] = {}  # key -> [first session index, codes, reach when opened]
        self.reach: dict[str, int] = {}  # key -> last session index of its runs already handed on
        self.doubtful: set[tuple[str, int]] = set()  # (key, session index) given again after hand-on
        self.buffered = 0
        self.slots: dict[tuple[str | None, str | None], tuple[date, int, bool]] = {}  # (date, session) as written
        self.codes: dict[str | None, str] = {}  # mark as written -> national or configured code
        self.n = 0  # records read

    def warn(self, code: str, message: str, n: int, key: str | None, dsl_only: bool = False) -> None:
        self.batch.warnings.append(Warning_(code, message, f"{self.file} record {n}", key, dsl_only))

    def records(self) -> Iterator[Record]:
        try:
            if self.kind == "marks":
                yield from self.mark_rows()
                if self.doubtful:
                    self.recheck()
            else:
                record = self.fmap.row
                for tags, texts in iter_rows(self.prep, ROOTS, PATH):
                    self.n += 1
                    rec = record(tags, texts)
                    self.twice(tags, texts, self.n)
                    if not self.fits(rec, self.n):
                        break
                    yield from self.row(rec, self.n)
        except XmlRefused as exc:
            self.report.problem(None, None, f"after record {self.n}: {exc}")
        for key, run in self.runs.items():
            yield self.flush(key, run)
        yield from self.held_pupils()
        yield from self.flag_records
        yield from self.enrolment_records()
        yield from (c for c, _n in self.contacts.values())
        if self.kind == "pupils" and self.n:
            self.keep_parts_not_given()
        if self.kind == "marks" and self.n and not self.any_mark and not self.report.problems:
            self.report.problem(None, display("mark"), "not one record has a mark (a field named "
                                f"{' or '.join(', '.join(FIELDS['mark']).rsplit(', ', 1))}), so every session "
                                "would be stored as no mark, replacing the marks stored: if the report names its "
                                'mark field otherwise, map it in the source\'s fields (mark = "...")')
        if self.report.problems:
            raise ImportRejected(self.file, self.report.all_problems())
        if self.n == 0:
            self.warn("empty_file", f"the {self.kind} export holds no records", 0, None)
        self.batch.warnings.extend(self.check.warnings(self.file))

    def mark_rows(self) -> Iterator[Record]:
        """The marks export: the hot path of every night (a row per pupil per session, the whole
        year). A known pupil's row shaped like the last one planned (as many fields, with the
        same Adno, Date, Session and Mark fields in the same places) reads just those four
        texts; any other row has its field names worked out and goes through ``row``."""
        plans: dict[tuple[str, ...], tuple[int, ...] | None] = {}
        size, a, d, s, m, ta, td, ts, tm = -1, 0, 0, 0, 0, "", "", "", ""
        pupils, lay, record = self.pupils, self.lay, self.fmap.row
        for records, namespaced in iter_record_batches(self.prep, ROOTS, PATH):
            for el in records:
                self.n += 1
                if len(el) == size:  # only the four fields are touched (each one an object lxml makes)
                    fa, fd, fs, fm = el[a], el[d], el[s], el[m]
                    if fa.tag == ta and fd.tag == td and fs.tag == ts and fm.tag == tm:
                        adno = _clean(fa.text)
                        if adno is not None and (key := _adno_key(adno)) in pupils:
                            done = lay(key, fd.text, fs.text, fm.text, self.n)
                            if done is not None:
                                yield done
                            if self.buffered > MAX_BUFFERED:
                                yield from self.spill()
                            continue
                fields = list(el)
                raw = [f.tag for f in fields]
                tags = tuple([local_name(t) for t in raw]) if namespaced else tuple(raw)
                if tags not in plans:
                    plans[tags] = self.fmap.positions(tags, ("adno", "date", "session", "mark"))
                if (plan := plans[tags]) is not None:  # this shape is the one checked from now on
                    size, (a, d, s, m) = len(tags), plan
                    ta, td, ts, tm = raw[a], raw[d], raw[s], raw[m]
                else:
                    size = -1
                texts = [f.text for f in fields]
                rec = record(tags, texts)
                self.twice(tags, texts, self.n)
                if not self.fits(rec, self.n):
                    return
                slow_key = self.key(rec, self.n)  # None: reported
                if slow_key is not None and slow_key not in pupils:
                    yield from self.row(rec, self.n)
                elif slow_key is not None and (done := self.mark(rec, slow_key, self.n)) is not None:
                    yield done
                if self.buffered > MAX_BUFFERED:
                    yield from self.spill()

    def spill(self) -> Iterator[Record]:
        """Hand on every open run (too many sessions are held: memory stays flat)."""
        yield from (self.flush(k, run) for k, run in self.runs.items())
        self.runs.clear()
        self.buffered = 0

    # -- one row -----------------------------------------------------------------------------
    def twice(self, tags: tuple[str, ...], texts: list[str | None], n: int) -> None:
        """A problem for each field the record gives more than once with different values."""
        for key in self.fmap.twice(tags, texts):
            self.report.problem(n, display(key), "is given more than once, with different values: a record gives "
                                "each field once (check the report for a field added twice, or a field and its "
                                "alias)")

    def fits(self, rec: dict[str, str], n: int) -> bool:
        """Whether the record can come from the report the file is read as (else a problem, and
        the file is read no further). A file saved under another report's name, by an export
        task pointed at the wrong report, would be read as the report its name says: a marks
        export read as pupils loses every mark and, the pupils report being a complete list,
        removes every stored contact and flag."""
        found = report_of(set(rec))
        if found is None or READ_AS[found[0]] == READ_AS[self.kind]:
            return True
        how = "its file name says it is" if self.named else "its first record made it"
        self.report.problem(n, None, f"has the {found[0]} report's fields ({', '.join(found[1])}), but {how} "
                            f"the {self.kind} report: check which report the export task saves under this "
                            "name; the file was read no further")
        return False

    def row(self, rec: dict[str, str], n: int) -> Iterator[Record]:
        key = self.key(rec, n)
        if key is None:
            return
        if self.kind == "marks":
            if key not in self.pupils:
                yield self.pupil(rec, key, n)
            if (done := self.mark(rec, key, n)) is not None:
                yield done
            return
        if key not in self.held:
            self.hold(rec, key, n)
        else:
            self.more(rec, key, n)
        if self.kind == "pupils":
            self.contact(rec, key, n)
            self.flag_records.extend(self.flags(rec, key, n))
        else:
            self.enrolment(rec, key, n)

    def key(self, rec: dict[str, str], n: int) -> str | None:
        adno = rec.get("adno")
        if adno:
            return _adno_key(adno)
        if rec.get("person_id"):
            return "id:" + rec["person_id"]
        self.report.problem(n, display("adno"), "is missing: every row needs the pupil's Adno")
        return None

    def date_of(self, rec: Mapping[str, str], fld: str, n: int) -> date | None:
        return self.report.convert(n, display(fld), rec.get(fld), parse_date, "is not a date (YYYY-MM-DD or DD/MM/YYYY)")

    def identify(self, text: str | None, key: str, n: int) -> str | None:
        """The pupil's UPN from a row's text (None when there is none, or it is too damaged to keep),
        checked: a bad one is warned about, one another pupil of the file has is a problem."""
        upn = upn_mod.normalise(text)
        if upn is not None and (why := upn_mod.problem(upn)):
            self.warn("bad_upn", f"UPN: {why}", n, key)
            if len(upn) != 13:
                upn = None
        other = self.by_upn.get(upn) if upn else None
        if other is not None and other[0] != key:
            # a UPN is one child's: two Adnos with one are two children (or one child twice) the
            # store would merge, each one's marks laid over the other's
            self.report.problem(n, display("upn"), f"is also on record {other[1]}, another pupil's ({other[0]}): "
                                "a UPN belongs to one child; correct it in SIMS")
        if upn and other is None:
            self.by_upn[upn] = (key, n)
        return upn

    def seen(self, key: str, upn: str | None, n: int) -> None:
        """Note the pupil in this file: one already in another file of this kind (of the run) is warned about."""
        ident = upn or key
        elsewhere = self.seen_elsewhere.get((self.kind, ident))
        if elsewhere and elsewhere != self.file:
            self.warn("duplicate_pupil", f"this pupil is also in {elsewhere}", n, key)
        self.seen_elsewhere[(self.kind, ident)] = self.file
        self.pupils[key] = upn

    def pupil(self, rec: dict[str, str], key: str, n: int) -> PupilRecord:
        """The pupil of a marks report's row: its first row is read for it (the rest of its rows
        are read for their marks alone, see ``mark_rows``)."""
        upn = self.identify(rec.get("upn"), key, n)
        self.seen(key, upn, n)
        return _pupil_record(rec, key, upn, self.date_of(rec, "dob", n), _given(rec, "telephone"),
                             _given(rec, "email"))

    def hold(self, rec: dict[str, str], key: str, n: int) -> None:
        """The first row of a pupil of the pupils, admissions or leavers report: its own fields are
        held until the file is read, every later row of the pupil adding to them (``more``)."""
        upn = self.identify(rec.get("upn"), key, n)
        self.seen(key, upn, n)
        self.held[key] = _Held(n, {k: rec[k] for k in _OWN if k in rec}, self.date_of(rec, "dob", n),
                               list(_given(rec, "telephone")), list(_given(rec, "email")))

    def more(self, rec: dict[str, str], key: str, n: int) -> None:
        """A later row of a pupil (the pupils report has one per contact): a field its earlier rows
        left empty is taken from it, each telephone and e-mail address is kept, and it is checked
        against them. Only the first row used to be read, so a UPN, date of birth or address that
        CommandReporter left out of it (an empty field) was lost, and a row with another child's
        UPN, date of birth or person id under the same Adno was merged into this child unseen.
        Rows that give two of those are refused; rows that give two of any other field keep the
        first, with a warning."""
        held = self.held[key]
        differ: list[str] = []
        for fld in _OWN:
            text = rec.get(fld)
            if text is None or fld == "adno":
                continue
            had = held.fields.get(fld)
            if fld == "dob":
                dob = self.date_of(rec, fld, n)
                if dob is None:
                    continue  # (a date that is no date is a problem already)
                if had is None:
                    held.dob = dob
                elif held.dob is not None and dob != held.dob:
                    self.contradicts(fld, key, held.n, n)
                    continue
            elif had is not None and not _same(fld, had, text):
                if fld in _IDENTITY:
                    self.contradicts(fld, key, held.n, n)
                else:
                    differ.append(display(fld))
                continue
            elif had is None and fld == "upn":
                self.pupils[key] = self.identify(text, key, n)
            held.fields.setdefault(fld, text)
        for fld, kept in (("telephone", held.phones), ("email", held.emails)):
            kept.extend(x for x in _given(rec, fld) if x not in kept)
        if differ and ("pupil_rows_disagree", key) not in self.done:
            self.done.add(("pupil_rows_disagree", key))
            self.warn("pupil_rows_disagree", f"the pupil's rows disagree on {', '.join(differ)}: this row and record "
                      f"{held.n}, an earlier row of the same pupil; the earlier row's are kept: correct the report or "
                      "the pupil's record in SIMS", n, key)

    def contradicts(self, fld: str, key: str, first: int, n: int) -> None:
        """A problem: this row and an earlier one of the pupil give two values of an identity field
        (never shown: a UPN or date of birth is personal data)."""
        by, value = ("Person ID", key[3:]) if key.startswith("id:") else ("Adno", key)
        self.report.problem(n, display(fld), f"contradicts record {first}, an earlier row of the same pupil ({by} "
                            f"{value}): a child has one {display(fld)}, so these are two children with one {by} "
                            "(or a damaged report), and would be stored as one; correct it in SIMS")

    def held_pupils(self) -> Iterator[PupilRecord]:
        """The pupils of a report other than marks, each as all its rows give it (see ``more``)."""
        for key, h in self.held.items():
            yield _pupil_record(h.fields, key, self.pupils[key], h.dob, tuple(h.phones), tuple(h.emails))

    def yes_no(self, rec: dict[str, str], fld: str, n: int) -> bool | None:
        return self.report.convert(n, display(fld), rec.get(fld), parse_bool, "is not Yes/No (or True/False)")

    def keep_parts_not_given(self) -> None:
        """A pupils report replaces the stored contacts and flags of its pupils, but only the parts
        of which some row gives a field: a report without any contact field (or any flag field: its
        flag columns renamed, say "CP Plan") says nothing of them, and used to remove every stored
        contact (or flag, a child protection plan among them) of every pupil."""
        for part, fields in (("contacts", "a contact field (Contact ID, Contact Surname, Contact Telephone...)"),
                             ("flags", "a flag field (Child Protection Plan, In Care, SEN Status...)")):
            if part in self.batch.replaces and part not in self.parts_given:
                self.batch.replaces = self.batch.replaces - {part}
                self.warn(f"no_{part}", f"no record of the pupils report has {fields}: the {part} stored are "
                          f"kept as they are; if the report names these fields otherwise, map them in the "
                          "source's fields", 0, None)

    def contact(self, rec: dict[str, str], key: str, n: int) -> None:
        """Note the row's contact; all of them are handed on once the file is read.

        A report with a telephone or e-mail sub-report gives a contact one row per number: every
        row of one contact (one contact key) adds its numbers and addresses, and fills what earlier
        rows left empty. Only the first row used to be read, so the office was given one number of
        several. Rows that give one field two values keep the first, with a warning."""
        if not any(k.startswith("contact_") for k in rec):
            return
        self.parts_given.add("contacts")
        prio_raw = rec.get("contact_priority")
        priority = None
        if prio_raw is not None:
            try:
                priority = parse_order(prio_raw)
            except ValueError:
                self.report.problem(n, display("contact_priority"), f"is not a whole number from 0 to {MAX_ORDER}",
                                    prio_raw[:20])
        ckey = (rec.get("contact_id") or (f"priority:{priority}" if priority is not None else None)
                or f"name:{rec.get('contact_forename', '')}|{rec.get('contact_surname', '')}")
        addr = rec.get("contact_address")
        address = None
        if addr or rec.get("contact_postcode"):
            address = Address(tuple(x.strip() for x in (addr or "").split(",") if x.strip()), rec.get("contact_postcode"))
        c = ContactRecord(
            pupil_key=key, contact_key=ckey, priority=priority, title=rec.get("contact_title"),
            surname=rec.get("contact_surname"), forename=rec.get("contact_forename"),
            relationship=rec.get("contact_relationship"),
            parental_responsibility=self.yes_no(rec, "contact_responsibility", n),
            lives_with=self.yes_no(rec, "contact_lives_with", n),
            phones=tuple(x for x in (rec.get("contact_telephone"), rec.get("contact_mobile")) if x),
            emails=tuple(x for x in (rec.get("contact_email"),) if x), address=address)
        had = self.contacts.get((key, ckey))
        if had is None:
            self.contacts[(key, ckey)] = (c, n)
            return
        first, where = had
        merged = dataclasses.replace(
            first, phones=tuple(dict.fromkeys((*first.phones, *c.phones))),
            emails=tuple(dict.fromkeys((*first.emails, *c.emails))),
            **{f: getattr(c, f) for f in _CONTACT_SINGLE if getattr(first, f) is None and getattr(c, f) is not None})
        differ = [f for f in _CONTACT_SINGLE if None not in (getattr(first, f), getattr(c, f))
                  and getattr(first, f) != getattr(c, f)]
        if differ and ("contact_rows_disagree", key, ckey) not in self.done:
            self.done.add(("contact_rows_disagree", key, ckey))
            self.warn("contact_rows_disagree", f"rows of one contact disagree on {', '.join(differ)}: this row and "
                      f"record {where}; the earlier row's values are kept: correct the contact in SIMS", n, key)
        self.contacts[(key, ckey)] = (merged, where)

    def flags(self, rec: dict[str, str], key: str, n: int) -> Iterator[FlagRecord]:
        kinds: list[str] = []
        if "flags" not in self.parts_given and ("sen_status" in rec or any(f in rec for f in FLAG_FIELDS)
                                                or any(k.startswith("flag:") for k in rec)):
            self.parts_given.add("flags")
        for fld, kind in FLAG_FIELDS.items():
            if self.yes_no(rec, fld, n):
                kinds.append(kind)
        for fld, value in rec.items():
            if fld.startswith("flag:"):
                try:
                    if parse_bool(value):
                        kinds.append(self.fmap.extra_flags[fld[5:]])
                except ValueError:
                    self.report.problem(n, display(fld), "is not Yes/No (or True/False)", value)
        sen = rec.get("sen_status")
        if sen is not None:
            code = _sen_code(sen)
            if code in SEN_FLAGS:
                if SEN_FLAGS[code]:
                    kinds.append(SEN_FLAGS[code])  # type: ignore[arg-type]
            elif ("unknown_sen_status", key, sen) not in self.done:  # (once, not on each of its rows)
                self.done.add(("unknown_sen_status", key, sen))
                self.warn("unknown_sen_status", f"SEN status {sen!r} is not E, K or N; ignored", n, key, dsl_only=True)
        # every row of the pupil is read (one row per contact): a flag raised on any of them is
        # raised, and rows that disagree are shown (only the first row used to be read, so a Yes
        # on a later row was dropped and its values went unchecked)
        raised = set(kinds)
        had = self.flag_rows.get(key)
        if had is None:
            self.flag_rows[key] = (raised, n)
            new = list(dict.fromkeys(kinds))
        else:
            first, where = had
            new = [k for k in dict.fromkeys(kinds) if k not in first]
            if raised != first and ("flag_rows_disagree", key) not in self.done:
                self.done.add(("flag_rows_disagree", key))
                names = {**_FLAG_FIELD_NAMES, **{k: display("flag:" + f) for f, k in self.fmap.extra_flags.items()}}
                differ = sorted({names.get(k, k) for k in raised ^ first})
                self.warn("flag_rows_disagree", f"the pupil's rows disagree on {', '.join(differ)}: this row and "
                          f"record {where}, an earlier row of the same pupil; every flag any of its rows raises is "
                          "kept: correct the report or the pupil's record in SIMS", n, key, dsl_only=True)
            first.update(new)
        for kind in new:
            yield FlagRecord(key, kind)

    def enrolment_records(self) -> Iterator[EnrolmentRecord]:
        """The admissions noted (``enrolment``). A report none of whose rows has a leaving field (an
        admissions report without those columns: CommandReporter leaves out only empty fields, so
        one row with any of them shows the report has them) says nothing of leavings: its records
        keep a leaving the leavers report stored that has passed (``EnrolmentRecord.leaving_given``;
        a planned leaving it lists without is taken as cancelled, as before). Read as "no leaving",
        a leaver it still listed looked on roll until the leavers report was read again, and on a
        night that export failed, an open "destination unknown" case closed."""
        silent = "leaving" not in self.parts_given
        for e, _n in self.enrolments.values():
            yield dataclasses.replace(e, leaving_given=False) if silent else e

    def enrolment(self, rec: dict[str, str], key: str, n: int) -> None:
        """Note the row's admission; all of them are handed on once the file is read (``enrolments``).

        The store keeps one admission per pupil and first day (the agreed one, else the admission
        date): two rows of one are compared here, so that neither replaces the other unseen."""
        dest = rec.get("destination")
        if "leaving" not in self.parts_given and any(f in rec for f in ("leaving_date", "leaving_reason", "destination")):
            self.parts_given.add("leaving")
        status = " ".join(rec.get("application_status", "").lower().split())
        no_place = NO_PLACE.search(status) is not None
        if status and not no_place and status not in PLACE_STATUSES and ("unknown_status", status) not in self.done:
            self.done.add(("unknown_status", status))  # (once a status, not once a child)
            self.warn("unknown_application_status", f"Application Status {rec['application_status']!r} is not one "
                      "cme-batch knows: read as a place offered, so a child who does not start opens a \"place not "
                      "taken up\" case; if it means the child has no place, leave such applications out of the admissions "
                      "report (its filter in SIMS)", n, None)
        e = EnrolmentRecord(
            pupil_key=key, admission_date=self.date_of(rec, "agreed_start", n),
            entry_date=self.date_of(rec, "admission_date", n), leaving_date=self.date_of(rec, "leaving_date", n),
            leaving_reason=rec.get("leaving_reason"),
            destination=None if dest is None or _no_destination(dest) else dest,
            withdrawn=no_place)
        if self.kind == "admissions" and e.admission_date is None and e.entry_date is None and not e.withdrawn \
                and ("no_admission_dates", key) not in self.done:
            self.done.add(("no_admission_dates", key))  # (once a pupil)
            self.warn("no_admission_dates", "an admission with neither an agreed start date nor an admission "
                      "date: whether the child took up the place cannot be checked; give the dates in SIMS", n, key)
        if e.leaving_date is not None and e.admission_date is None and e.entry_date is None \
                and ("leaving_without_admission", key) not in self.done:
            # the store knows an admission by its first day: a leaving with none is stored apart from
            # the admission it ends; detect puts it on the latest admission begun before it
            self.done.add(("leaving_without_admission", key))
            self.warn("leaving_without_admission", "a leaving with neither an Agreed Start Date nor an Admission "
                      "Date cannot be matched with the admission it ends: cme-batch takes it to end the pupil's "
                      "latest admission begun before it that has no leaving; add Admission Date to the leavers "
                      "report so that it ends the right one", n, key)
        if "leaving_date" not in rec:
            told = [display(k) for k in ("leaving_reason", "destination") if k in rec] if not e.withdrawn else []
            if told or self.kind == "leavers":
                # read as a pupil still on roll, the leaving (and a destination unknown) would be lost
                why = f"while {' and '.join(told)} {'are' if len(told) > 1 else 'is'} there" if told else \
                    "on a row of the leavers report"
                self.report.problem(n, display("leaving_date"), f"is missing {why}: a leaving cannot be stored "
                                    "without its date, and the pupil would look still on roll; give the Leaving "
                                    "Date in SIMS")
        ident = (key, "admission", e.admission_date) if e.admission_date is not None else (key, "entry", e.entry_date)
        had = self.enrolments.get(ident)
        if had is None:
            self.enrolments[ident] = (e, n)
        elif had[0] != e:
            old, where = had
            if old.withdrawn != e.withdrawn:
                # a withdrawn application and a live one for the same first day: the child is expected
                if old.withdrawn:
                    self.enrolments[ident] = (e, n)
            elif not e.withdrawn:
                attr = next(a for a in _ENROLMENT_FIELDS if getattr(old, a) != getattr(e, a))
                self.report.problem(n, display(_ENROLMENT_FIELDS[attr]), f"contradicts record {where}, an earlier "
                                    "row for the same pupil and admission (the same first day): "
                                    f"{_shown(getattr(old, attr))} then {_shown(getattr(e, attr))}; one admission "
                                    "is one row: correct the pupil's admissions in SIMS")

    # -- marks -------------------------------------------------------------------------------
    def mark(self, rec: dict[str, str], key: str, n: int) -> MarksRecord | None:
        """Lay one row's mark into the pupil's run; a finished run (the row starts a new one) is returned.

        A row with none of Date, Session and Mark is a pupil with no session in the report's range
        (a new starter before the first register): for a parent record whose sub-report has no
        rows, CommandReporter still writes one row, the sub-report's fields left out as empty.
        Such a row gives the pupil and no mark; it used to be refused ("Date is missing"), and
        with it the whole night's marks of every pupil."""
        day, sess, mark = rec.get("date"), rec.get("session"), rec.get("mark")
        if day is None and sess is None and mark is None:
            return None
        return self.lay(key, day, sess, mark, n)

    def lay(self, key: str, day_text: str | None, sess_text: str | None, mark_text: str | None,
            n: int) -> MarksRecord | None:
        """``mark`` from the row's texts as written (stripped here, the first time each is seen)."""
        # a year of marks has ~190 dates and two sessions: each (date, session) is worked out once
        slot = self.slots.get((day_text, sess_text))
        if slot is None:
            raw_day, sess_raw = _clean(day_text), _clean(sess_text)
            day = self.report.convert(n, display("date"), raw_day, parse_date,
                                      "is not a date (YYYY-MM-DD or DD/MM/YYYY)")
            sess = SESSIONS.get(sess_raw.upper()) if sess_raw else None
            if day is None or sess is None:
                if day is None and raw_day is None:
                    self.report.problem(n, display("date"), "is missing")
                if sess is None:
                    self.report.problem(n, display("session"), "is not AM or PM" if sess_raw else "is missing",
                                        sess_raw)
                return None
            slot = self.slots[(day_text, sess_text)] = (day, day.toordinal() * 2 + sess, self.check.closed(day))
        day, idx, closed = slot
        code = self.codes.get(mark_text)
        if code is None:  # first sight of this code, or one that is counted as unknown each time
            cleaned = _clean(mark_text)
            if cleaned is not None:
                self.any_mark = True
            code = self.check.code(cleaned or "-", n)
            if code in self.check.known:
                self.codes[mark_text] = code
        if closed:
            self.check.day(day, code, n)
        run = self.runs.get(key)
        self.buffered += 1
        if run is None:
            self.runs[key] = self.open(key, idx, code)
            return None
        start, codes, reach = run
        last = start + len(codes) - 1
        if last < idx <= last + MAX_GAP:
            codes.extend([""] * (idx - last - 1))
            codes.append(code)
        elif start <= idx <= last:
            have = codes[idx - start]
            if have == "":
                codes[idx - start] = code
            elif have != code:
                self.report.problem(n, display("mark"), f"contradicts an earlier row for the same session "
                                    f"({have!r} then {code!r})")
        else:
            done = self.flush(key, run)
            self.runs[key] = self.open(key, idx, code)
            return done
        if idx <= reach:
            self.doubtful.add((key, idx))
        return None

    def open(self, key: str, idx: int, code: str) -> list[Any]:
        """A new run for the pupil from session ``idx``, remembering how far the runs already
        handed on reach: a session up to there may have been given before (``recheck``)."""
        reach = self.reach.get(key, -1)
        if idx <= reach:
            self.doubtful.add((key, idx))
        return [idx, [code], reach]

    def flush(self, key: str, run: list[Any]) -> MarksRecord:
        """The run as a record, handed on: only how far it reaches is kept, not its marks."""
        start, codes = run[0], run[1]
        end = start + len(codes) - 1
        if end > self.reach.get(key, -1):
            self.reach[key] = end
        if start % 2:
            codes = ["", *codes]
        return MarksRecord(key, date.fromordinal(start // 2), tuple(codes))

    def recheck(self) -> None:
        """Read the file again for the sessions given again after the run holding them was handed
        on (``doubtful``): every row of one such session must carry the same mark, wherever the
        rows are. Runs keep only how far they reached once handed on, so memory stays flat; only
        a file with a pupil's rows out of date order (or repeated) is read twice."""
        first: dict[tuple[str, int], tuple[str, int]] = {}
        n = 0
        for tags, texts in iter_rows(self.prep, ROOTS, PATH):
            n += 1
            rec = self.fmap.row(tags, texts, MARK_FIELDS)
            adno, sess = rec.get("adno"), SESSIONS.get(rec.get("session", "").upper())
            key = _adno_key(adno) if adno else "id:" + rec["person_id"] if "person_id" in rec else None
            if key is None or sess is None:
                continue  # every bad row was reported on the first reading
            try:
                idx = parse_date(rec.get("date", "")).toordinal() * 2 + sess
            except ValueError:
                continue
            if (key, idx) not in self.doubtful:
                continue
            mark = rec.get("mark") or "-"
            code = self.check.subcodes.get(mark, mark)
            have, where = first.setdefault((key, idx), (code, n))
            if have != code:
                self.report.problem(n, display("mark"), f"contradicts record {where}, an earlier row for the same "
                                    f"pupil and session ({have!r} then {code!r})")
