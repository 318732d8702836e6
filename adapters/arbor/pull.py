"""What one Arbor pull reads: everything (full), or only what the changelog says changed.

A full pull reads every student with their UPN, enrolments, destinations, guardians and
relationships, phones, emails, addresses and vulnerability assignments, plus the roll-call
marks from the start of the academic year to its end. Within that window, clipped to each
pupil's time on roll, the marks read are the pupil's whole register (``marks_windows``): a
session Arbor no longer has a record for becomes "no mark" in the store.

An incremental pull reads each followed resource's REST changelog from the stored revision.
Changed roll-call records are fetched by id and only those marks are stored. Any other change
(a student, an enrolment, a guardian's phone...) is traced back to the pupils it concerns, and
those pupils are read again whole: their contacts, flags and enrolments replace the stored
ones. A deletion cannot be traced (the object is gone, and with it the pupil it belonged to),
so a changelog with deletions makes the pull a full one, and says so in the log.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from adapters.arbor import attendance, mapping
from adapters.arbor.client import ArborClient
from adapters.arbor.mapping import Row
from cme_batch.model import ContactRecord, EnrolmentRecord, FlagRecord, MarksRecord, Record, Warning_

ID_CHUNK = 100  # ids per ``..._in`` filter, to keep each query short
#: The Arbor rows each kind of record comes from (for messages).
_ROW_OF: dict[type, str] = {EnrolmentRecord: mapping.ENROLMENT, ContactRecord: mapping.RELATIONSHIP,
                            FlagRecord: "status assignment"}


def _chunks(ids: Iterable[str], size: int = ID_CHUNK) -> Iterator[list[str]]:
    items = sorted(set(ids), key=lambda x: (len(x), x))
    for i in range(0, len(items), size):
        yield items[i:i + size]


def marks_windows(records: Iterable[Record], first: date, last: date) -> dict[str, tuple[date, date]]:
    """For a full pull that read the marks of ``first``..``last``: each pupil's part of that window
    in which the marks read are its whole register (``SourceBatch.marks_complete``).

    That is the pupil's time on roll from its enrolments (first entry to last leaving; an enrolment
    withdrawn before the child started counts for nothing), clipped to the window, so marks that
    another source stored for before the child joined or after it left are kept. A pupil with no
    enrolment gets no window: its stored marks are only ever added to.
    """
    spans: dict[str, tuple[date, date]] = {}
    for rec in records:
        if not isinstance(rec, EnrolmentRecord) or rec.withdrawn:
            continue
        start = max(rec.entry_date or rec.admission_date or first, first)
        end = min(rec.leaving_date or last, last)
        if start > end:
            continue
        had = spans.get(rec.pupil_key)
        spans[rec.pupil_key] = (start, end) if had is None else (min(had[0], start), max(had[1], end))
    return spans


@dataclass
class Changes:
    """What the changelog says changed since a revision, traced back to pupils where it can be."""

    students: set[str] = field(default_factory=set)
    roll_call_records: set[str] = field(default_factory=set)
    fallback_reason: str | None = None
    last_revision: int = 0
    counts: dict[str, int] = field(default_factory=dict)


class Reader:
    """Reads one school through an ArborClient, remembering the newest revision it saw."""

    def __init__(self, client: ArborClient, today: date, warnings: list[Warning_],
                 tag_flags: dict[str, str] | None = None) -> None:
        self.client = client
        self.tag_flags = mapping.DEFAULT_TAG_FLAGS if tag_flags is None else tag_flags
        self.today = today
        self.warnings = warnings
        self.max_revision = 0
        #: The newest revision seen once the first rows were read (a full pull's students): any change
        #: made after them has a newer revision (see ``ArborSource._pull``).
        self.first_revision: int | None = None
        self._lookups: tuple[list[Row], list[Row]] | None = None

    # -- reading rows ----------------------------------------------------------------------------
    def _seen(self, rows: Iterable[Row]) -> list[Row]:
        out = list(rows)
        for r in out:
            self.max_revision = max(self.max_revision, int(r.get("revisionId") or 0))
        return out

    def all(self, entity: str, filters: dict[str, Any] | None = None) -> list[Row]:
        rows = list(self.client.graphql_all(entity, filters))
        mapping.check_rows(entity, rows)  # before anything is read from them, revisions included
        out = self._seen(rows)
        if self.first_revision is None:
            self.first_revision = self.max_revision
        return out

    def by_ids(self, entity: str, path: str, ids: Iterable[str]) -> list[Row]:
        """Rows whose ``path`` object (or the row itself, for ``""``) has one of the ids."""
        out: list[Row] = []
        for chunk in _chunks(ids):
            out += self.all(entity, {mapping.id_filter(path): chunk})
        return out

    # -- pupils and everything that hangs off them -----------------------------------------------
    def pupils(self, students: set[str] | None) -> list[Record]:
        """Pupils with their enrolments, contacts and flags: all of them, or just these student ids."""
        rows: dict[str, list[Row]] = {}
        if students is None:
            rows[mapping.STUDENT] = self.all(mapping.STUDENT)
            for entity in mapping.STUDENT_SCOPED:
                rows[entity] = self.all(entity)
            # a student whose enrolment Arbor served but whose row its list of students did not hold
            # (a leaver, should the list hold only current students: UNCONFIRMED) is asked for by id
            listed = {str(s["id"]) for s in rows[mapping.STUDENT]}
            missing = {i for r in rows[mapping.ENROLMENT] if (i := mapping.ref_id(r.get("student")))} - listed
            if missing:
                rows[mapping.STUDENT] += self.by_ids(mapping.STUDENT, "", missing)
        else:
            rows[mapping.STUDENT] = self.by_ids(mapping.STUDENT, "", students)
            for entity in mapping.STUDENT_SCOPED:
                rows[entity] = self.by_ids(entity, "student", students)
        guardian_ids = {g for r in rows[mapping.RELATIONSHIP] if (g := mapping.ref_id(r.get("guardian")))}
        rows[mapping.GUARDIAN] = self.by_ids(mapping.GUARDIAN, "", guardian_ids)
        student_person = {str(s["id"]): mapping.ref_id(s.get("person")) for s in rows[mapping.STUDENT]}
        persons = {p for p in student_person.values() if p} | {
            p for g in rows[mapping.GUARDIAN] if (p := mapping.ref_id(g.get("person")))}
        for entity, owner in mapping.PERSON_OWNED.items():
            rows[entity] = self.by_ids(entity, owner, persons)
        people = mapping.PeopleIndex(rows, self.today)
        known = set(student_person)
        records: list[Record] = list(mapping.pupil_records(rows, people, self.today))
        enrolments = mapping.enrolment_records(rows)
        # A student Arbor served enrolments of but no Student row for, even by id: its leaving (or
        # admission) is stored all the same, under the Arbor id and its UPN, without names, since
        # a leaving left out is a child who left unseen, with no "destination unknown" case.
        nameless = {rec.pupil_key for rec in enrolments} - known
        records += mapping.named_pupils(rows, nameless, self.today)
        mapping.check_one_upn_each(records)
        known |= nameless
        related: list[EnrolmentRecord | ContactRecord | FlagRecord] = [
            *enrolments, *mapping.contact_records(rows, people, student_person),
            *mapping.flag_records(rows, self.tag_flags, self.warnings)]
        unlisted: dict[str, set[str]] = defaultdict(set)  # what of students Arbor did not list -> their ids
        for rec in related:
            if rec.pupil_key in known:
                records.append(rec)
            else:  # no pupil to file it under: left out, but never unsaid
                unlisted[_ROW_OF[type(rec)]].add(rec.pupil_key)
        if nameless:
            ids = sorted(nameless, key=lambda x: (len(x), x))
            self.warnings.append(Warning_(
                "arbor_student_not_listed", f"Arbor student(s) {', '.join(ids[:10])}"
                f"{' and others' if len(ids) > 10 else ''} have rows ({mapping.ENROLMENT}) but Arbor did not "
                "send their Student row, even asked by id: their enrolments (a leaving, an admission), contacts "
                "and flags are stored under the Arbor id without names or date of birth (a student added during "
                "the pull is read whole next time; otherwise check the app's access to Student in Arbor)",
                where="arbor students"))
        if unlisted:
            ids = sorted(set().union(*unlisted.values()), key=lambda x: (len(x), x))
            self.warnings.append(Warning_(
                "arbor_student_not_listed", f"rows ({', '.join(sorted(unlisted))}) of Arbor student(s) "
                f"{', '.join(ids[:10])}{' and others' if len(ids) > 10 else ''}, whom Arbor's list of students did "
                "not hold, were left out: their contacts and flags are not stored (a student added "
                "during the pull is read next time; otherwise check the app's access to Student in Arbor)",
                where="arbor students"))
        return records

    # -- marks ------------------------------------------------------------------------------------
    def _mark_lookups(self) -> tuple[list[Row], list[Row]]:
        if self._lookups is None:
            self._lookups = (self.all(mapping.ROLL_CALL), self.all(mapping.MARK))
        return self._lookups

    def marks_between(self, first: date, last: date) -> list[MarksRecord]:
        rows = self.all(mapping.ROLL_CALL_RECORD, mapping.marks_window(first, last))
        return attendance.marks_records(rows, *self._mark_lookups(), self.warnings)

    def marks_by_ids(self, ids: set[str]) -> list[MarksRecord]:
        """The marks of these roll-call records (a changes-only pull's), with, for each one left
        unmarked, the pupil's other records of that day: a second register of the session may hold
        the child's mark, which wins over one left unmarked (``attendance.marks_records``), as in a
        full pull; laid alone, the unmarked record made the child's N a session with no mark."""
        rows = self.by_ids(mapping.ROLL_CALL_RECORD, "", ids)
        unmarked: dict[date, set[str]] = defaultdict(set)
        for r in rows:
            sid, day = mapping.ref_id(r.get("student")), mapping.parse_date(r.get("recordDate"))
            if mapping.ref_id(r.get("attendanceMark")) is None and sid is not None and day is not None:
                unmarked[day].add(sid)
        seen = {str(r["id"]) for r in rows}
        for day, students in sorted(unmarked.items()):
            for chunk in _chunks(students):
                rows += [r for r in self.all(mapping.ROLL_CALL_RECORD, {
                    mapping.id_filter("student"): chunk, **mapping.marks_window(day, day)}) if str(r["id"]) not in seen]
        return attendance.marks_records(rows, *self._mark_lookups(), self.warnings)

    # -- the changelog ------------------------------------------------------------------------------
    def changes_since(self, revision: int, settle: bool = False) -> Changes:
        """Read every followed changelog, then trace each change back to the pupils it concerns.

        ``settle`` (Arbor gave no head revision): the changelogs are read one resource after
        another, so the newest revision of a later one may be newer than a change made to an
        earlier one after it was read; a cursor set there would skip that change for ever. So every
        changelog is read a second time, and ``last_revision`` is the newest revision of the first
        reading: each second reading began after it, so it holds every change up to it.
        """
        ch = Changes(last_revision=revision)
        changed: dict[str, set[str]] = {e: set() for e in mapping.REST_RESOURCES}
        for reading in range(2 if settle else 1):
            for entity in mapping.REST_RESOURCES:
                for c in self.client.changelog(entity, revision):
                    if reading == 0:
                        ch.last_revision = max(ch.last_revision, c.revision)
                    if c.change_type not in ("create", "update"):
                        ch.fallback_reason = (f"the {mapping.REST_RESOURCES[entity]} changelog has a "
                                              f"{c.change_type or 'blank'} change, which cannot be traced to a pupil")
                    changed[entity].add(c.entity_id)
        for entity, ids in changed.items():
            ch.counts[mapping.REST_RESOURCES[entity]] = len(ids)
        ch.roll_call_records = changed.pop(mapping.ROLL_CALL_RECORD)
        if ch.fallback_reason:  # (the changed roll-call records still count: a full pull reads one year)
            return ch
        ch.students = set(changed.pop(mapping.STUDENT))
        for entity in mapping.STUDENT_SCOPED:
            ch.students |= self._refs(self.by_ids(entity, "", changed.pop(entity)), "student")
        persons = changed.pop(mapping.PERSON)  # a renamed guardian or pupil changes only the Person
        for entity, owner in mapping.PERSON_OWNED.items():
            persons |= self._refs(self.by_ids(entity, "", changed.pop(entity)), owner)
        addresses = changed.pop("PostalAddress")
        persons |= self._refs(self.by_ids(mapping.OCCUPANCY, "postalAddress", addresses), "occupant")
        guardians = changed.pop(mapping.GUARDIAN)
        ch.students |= {str(s["id"]) for s in self.by_ids(mapping.STUDENT, "person", persons)}
        guardians |= {str(g["id"]) for g in self.by_ids(mapping.GUARDIAN, "person", persons)}
        ch.students |= self._refs(self.by_ids(mapping.RELATIONSHIP, "guardian", guardians), "student")
        assert not changed, f"changelog entities not traced: {sorted(changed)}"
        return ch

    @staticmethod
    def _refs(rows: Iterable[Row], key: str) -> set[str]:
        return {i for r in rows if (i := mapping.ref_id(r.get(key)))}
