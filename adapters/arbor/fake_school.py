"""The data behind the fake Arbor server: a school as Arbor would hold it, fed from core records.

Objects are kept per entity type with Arbor-like ids, a global revision counter and a
changelog, so a test can change a mark or a phone number and see what an incremental pull
fetches. ``load`` is an upsert by natural key: loading changed records updates the objects
(new revision, an ``update`` in the changelog) and loading the same records changes nothing.
The shapes here are written independently of ``mapping`` on purpose: they are the test's own
statement of what Arbor serves, so a mapping that drifts from them fails the tests.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from adapters.arbor.attendance import code_class
from cme_batch.model import ContactRecord, EnrolmentRecord, FlagRecord, MarksRecord, PupilRecord

Obj = dict[str, Any]

_FLAG_PLACES = {  # core flag kind -> (entity, inline status field, status value)
    "child_protection_plan": ("ChildProtectionStatusAssignment", "childProtectionStatus", {"code": "CPP"}),
    "child_in_need": ("ChildProtectionStatusAssignment", "childProtectionStatus", {"code": "CIN"}),
    "looked_after": ("InCareStatusAssignment", "inCareStatus", {"code": "LAC", "countsAsInCareStatus": True}),
    "sen_support": ("SenStatusAssignment", "senStatus", {"code": "K"}),
    "ehcp": ("SenStatusAssignment", "senStatus", {"code": "E"}),
    "young_carer": ("UkDfe_YoungCarerStatusAssignment", None, None),
}
_STAT_FLAGS = {  # DOMAIN class -> the Arbor statistical flag that is true for it
    "present": "isStatisticalPresent", "late_after_close": "isStatisticalUnauthorizedAbsent",
    "educational_activity": "isStatisticalApprovedEducationalActivity",
    "authorised": "isStatisticalAuthorizedAbsent", "unauthorised_explained": "isStatisticalUnauthorizedAbsent",
    "unexplained": "isStatisticalUnauthorizedAbsent",
}
#: The student tags this fake school uses for groups Arbor has no assignment for.
TAGS = {"domestic_abuse": "Domestic abuse", "highly_mobile": "Traveller", "medical_emotional": "Medical or emotional needs",
        "permanently_excluded": "Permanently excluded", "parent_mental_health": "Parent mental health",
        "parent_learning_difficulty": "Parent learning difficulty"}
STAT_FLAG_NAMES = ("isStatisticalPresent", "isStatisticalApprovedEducationalActivity",
                   "isStatisticalAuthorizedAbsent", "isStatisticalUnauthorizedAbsent")
#: Arbor's own names of a few mark types (``AttendanceMark`` ids and codes such as ``PRESENT``,
#: ``LATE`` in the SDK's examples, ``PRESENT_AM`` in the BI connector's data dictionary), used when
#: the school is set to ``mark_codes="arbor"``; other national marks get ``MARK_<letter>``.
ARBOR_MARK_NAMES = {"/": "PRESENT_AM", "\\": "PRESENT_PM", "L": "LATE", "N": "NO_REASON_YET", "O": "UNAUTHORISED",
                    "I": "ILLNESS", "#": "SCHOOL_CLOSED"}


def ref(entity: str, obj_id: int) -> Obj:
    return {"entityType": entity, "id": obj_id}


def rest_resource(entity: str) -> str:
    """Arbor's REST name for an entity: dash-separated, lower case, plural (``uk-dfe_upn-assignments``)."""
    parts = [re.sub(r"(?<!^)(?=[A-Z])", "-", p).lower() for p in entity.split("_")]
    last = parts[-1]
    if last.endswith("y"):
        last = last[:-1] + "ies"
    elif last.endswith("s"):
        last += "es"
    else:
        last += "s"
    return "_".join([*parts[:-1], last])


def mark_flags(code: str) -> dict[str, bool]:
    """The statistical flags Arbor would set on a mark type with this national code."""
    cls = code_class(code, date.today())
    flags = dict.fromkeys(STAT_FLAG_NAMES, False)
    if code != "D" and cls in _STAT_FLAGS:
        flags[_STAT_FLAGS[cls]] = True
    flags["isStatisticalPossibleAttendance"] = any(flags.values())
    return flags


class FakeSchool:
    """Arbor-shaped objects of one school; thread-safe, so the server can read while a test writes."""

    def __init__(self, *, mark_codes: str = "national", tags: str = "list", titles: str = "text") -> None:
        """``mark_codes``: "national" (a mark type's ``code`` is the national code) or "arbor" (its
        ``code`` is Arbor's own name, ``PRESENT_AM``, and the national mark is in its
        ``attendanceMark`` field); ``tags``: a student's ``userTags`` as a "list" of names or as a
        "map" of tag name to value (the SDK's shape); ``titles``: a person's ``title`` as "text" or
        as an "object" (the SDK's ``Title``: ``code`` and ``title``). Set before ``load``."""
        self.mark_codes, self.tag_shape, self.title_shape = mark_codes, tags, titles
        self.lock = threading.RLock()
        self.revision = 0
        self.objects: dict[str, dict[int, Obj]] = {}
        self.changes: list[tuple[int, str, int, str]] = []  # (revision, entity, id, create/update/delete)
        self._keys: dict[tuple[str, Any], int] = {}
        self._next_id = 1000
        self._tags: dict[str, list[str]] = {}  # pupil key -> student tags
        self._homes: dict[str, tuple[tuple[str, ...], str | None]] = {}  # pupil key -> address
        self.am = self._upsert("AttendanceRollCall", "AM", {
            "name": "Morning", "attendanceRegisterType": {"isMorning": True, "isAfternoon": False}})
        self.pm = self._upsert("AttendanceRollCall", "PM", {
            "name": "Afternoon", "attendanceRegisterType": {"isMorning": False, "isAfternoon": True}})

    # -- objects and the changelog -------------------------------------------------------------
    def _upsert(self, entity: str, key: Any, fields: Obj) -> int:
        with self.lock:
            oid = self._keys.get((entity, key))
            table = self.objects.setdefault(entity, {})
            if oid is not None and oid in table:
                cur = table[oid]
                if all(cur.get(k) == v for k, v in fields.items()):
                    return oid
                kind = "update"
            else:
                self._next_id += 1
                oid = self._next_id
                self._keys[(entity, key)] = oid
                cur, kind = {"entityType": entity, "id": oid}, "create"
            self.revision += 1
            table[oid] = {**cur, **fields, "revisionId": self.revision}
            self.changes.append((self.revision, entity, oid, kind))
            return oid

    def delete(self, entity: str, key: Any) -> None:
        """Remove an object by its natural key (e.g. ``("AttendanceRollCallRecord", (pupil, day, "AM"))``)."""
        with self.lock:
            oid = self._keys.pop((entity, key))
            del self.objects[entity][oid]
            self.revision += 1
            self.changes.append((self.revision, entity, oid, "delete"))

    def id_of(self, entity: str, key: Any) -> int:
        return self._keys[(entity, key)]

    def get(self, entity: str, oid: int) -> Obj | None:
        return self.objects.get(entity, {}).get(oid)

    def rows(self, entity: str) -> list[Obj]:
        with self.lock:
            return [self.objects.get(entity, {})[k] for k in sorted(self.objects.get(entity, {}))]

    def changelog(self, entity: str, from_revision: int) -> list[tuple[int, str, int, str]]:
        with self.lock:
            return [c for c in self.changes if c[1] == entity and c[0] > from_revision]

    # -- feeding from core records ---------------------------------------------------------------
    def load(self, records: Iterable[Any]) -> None:
        """Add or update the school from core model records (pupils first, then what hangs off them)."""
        ordered = sorted(records, key=lambda r: 0 if isinstance(r, PupilRecord) else 1)
        with self.lock:
            for r in ordered:
                if isinstance(r, PupilRecord):
                    self._pupil(r)
                elif isinstance(r, ContactRecord):
                    self._contact(r)
                elif isinstance(r, EnrolmentRecord):
                    self._enrolment(r)
                elif isinstance(r, FlagRecord) and r.kind in _FLAG_PLACES:
                    self._flag(r)
                elif isinstance(r, FlagRecord) and r.kind in TAGS:
                    self._tag(r.pupil_key, TAGS[r.kind])
                elif isinstance(r, MarksRecord):
                    self._marks(r)

    def student(self, pupil_key: str) -> int:
        return self.id_of("Student", pupil_key)

    def _pupil(self, r: PupilRecord) -> None:
        person = self._upsert("Person", ("pupil", r.pupil_key), {
            "title": None, "legalFirstName": r.legal_forename, "legalLastName": r.legal_surname,
            "dateOfBirth": r.dob})
        levels = {"R": "Reception", "N1": "Nursery 1", "N2": "Nursery 2"}
        sid = self._upsert("Student", r.pupil_key, {
            "person": ref("Person", person), "legalFirstName": r.legal_forename,
            "legalMiddleNames": r.middle_names, "legalLastName": r.legal_surname,
            "preferredFirstName": r.preferred_forename, "preferredLastName": r.preferred_surname,
            "dateOfBirth": r.dob, "gender": {"M": "Male", "F": "Female"}.get(r.sex or "", r.sex),
            "displayAcademicLevel": {"displayName": levels.get(r.year_group or "", f"Year {r.year_group}")}
            if r.year_group else None,
            "registrationForm": {"displayName": r.reg_group} if r.reg_group else None,
            "userTags": self._user_tags(self._tags.get(r.pupil_key, []))})
        if r.upn:
            self._upsert("UkDfe_UpnAssignment", r.pupil_key, {
                "student": ref("Student", sid), "upn": r.upn,
                "startDatetime": datetime(2020, 9, 1), "endDatetime": None})
        if r.address is not None:
            self._homes[r.pupil_key] = (tuple(r.address.lines), r.address.postcode)
        self._person_details(person, r.phones, r.emails, r.address)

    def _person_details(self, person: int, phones: Iterable[str], emails: Iterable[str], address: Any) -> None:
        for i, number in enumerate(phones, 1):
            self._upsert("TelephoneNumber", (person, i), {
                "numberOwner": ref("Person", person), "number": number, "telephoneNumberRanking": i})
        for i, mail in enumerate(emails, 1):
            self._upsert("EmailAddress", (person, i), {
                "emailAddressOwner": ref("Person", person), "emailAddress": mail, "dataOrder": i})
        if address is not None:
            self._occupy(person, tuple(address.lines), address.postcode)

    def _occupy(self, person: int, lines: tuple[str, ...], postcode: str | None) -> None:
        town = lines[-1] if len(lines) > 1 else None
        rest = list(lines[:-1] if town else lines) + [None, None, None]
        addr = self._upsert("PostalAddress", (lines, postcode), {
            "address1": rest[0], "address2": rest[1], "address3": rest[2], "postalTown": town,
            "postalCode": postcode})
        self._upsert("PostalAddressOccupancy", person, {
            "occupant": ref("Person", person), "postalAddress": ref("PostalAddress", addr),
            "effectiveDate": None, "endDate": None, "isCorrespondenceAddress": True})

    def _contact(self, r: ContactRecord) -> None:
        title: Any = r.title
        if r.title and self.title_shape == "object":
            title = {"code": r.title.strip(".").upper(), "title": r.title}
        person = self._upsert("Person", ("guardian", r.contact_key), {
            "title": title, "legalFirstName": r.forename, "legalLastName": r.surname, "dateOfBirth": None})
        gid = self._upsert("Guardian", r.contact_key, {"person": ref("Person", person)})
        self._upsert("StudentGuardianRelationship", (r.pupil_key, r.contact_key), {
            "student": ref("Student", self.student(r.pupil_key)), "guardian": ref("Guardian", gid),
            "guardianRelationshipType": {"relationshipName": r.relationship} if r.relationship else None,
            "emergencyContactPriority": r.priority, "isLegalGuardian": r.parental_responsibility})
        home = self._homes.get(r.pupil_key)
        if r.address is None and r.lives_with and home is not None:
            self._occupy(person, *home)
        self._person_details(person, r.phones, r.emails, r.address)

    def _enrolment(self, r: EnrolmentRecord) -> None:
        sid = self.student(r.pupil_key)
        start = r.admission_date or r.entry_date
        reason = ({"code": "ADMISSION_WITHDRAWN", "unenrolmentReason": r.leaving_reason or "Admission withdrawn"}
                  if r.withdrawn else {"code": "OTHER", "unenrolmentReason": r.leaving_reason}
                  if r.leaving_reason else None)
        self._upsert("EducationalInstitutionEnrolment", (r.pupil_key, start), {
            "student": ref("Student", sid), "entryDate": start, "leavingDate": r.leaving_date,
            "unenrolmentReason": reason})
        if r.destination:
            self._upsert("StudentDestination", r.pupil_key, {
                "student": ref("Student", sid), "startDate": r.leaving_date,
                "studentDestinationType": {"code": "SCHOOL", "label": "Another school"},
                "linkedRecord": {"displayName": r.destination}})

    def _flag(self, r: FlagRecord) -> None:
        entity, field, status = _FLAG_PLACES[r.kind]
        fields: Obj = {"student": ref("Student", self.student(r.pupil_key)), "startDate": r.start,
                       "endDate": r.end}
        if field:
            fields[field] = status
        self._upsert(entity, (r.pupil_key, r.kind, r.start), fields)

    def _tag(self, pupil_key: str, tag: str) -> None:
        tags = self._tags.setdefault(pupil_key, [])
        if tag not in tags:
            tags.append(tag)
            student = self.get("Student", self.student(pupil_key)) or {}
            self._upsert("Student", pupil_key, {**{k: v for k, v in student.items()
                                                   if k not in ("entityType", "id", "revisionId")},
                                                "userTags": self._user_tags(tags)})

    def _user_tags(self, tags: list[str]) -> Any:
        return {t: True for t in tags} if self.tag_shape == "map" else list(tags)

    def key_map(self) -> dict[str, str]:
        """Arbor student id -> the pupil key of the record the student was loaded from."""
        with self.lock:
            return {str(oid): key for (entity, key), oid in self._keys.items() if entity == "Student"}

    def mark_type(self, code: str, **flags: bool) -> int:
        """The AttendanceMark for a national code (flags as Arbor would set them, unless overridden)."""
        if self.mark_codes == "arbor":  # Arbor's own code, the national mark beside it
            names: Obj = {"code": ARBOR_MARK_NAMES.get(code, f"MARK_{code}"), "attendanceMark": code}
        else:  # the shape the adapter was first written for: the national code, no mark text
            names = {"code": code, "attendanceMark": None}
        return self._upsert("AttendanceMark", code, {**names, **mark_flags(code), **flags})

    def _marks(self, r: MarksRecord) -> None:
        sid = self.student(r.pupil_key)
        for i, code in enumerate(r.codes):
            if code:
                self.set_mark(r.pupil_key, r.start + timedelta(days=i // 2), "AM" if i % 2 == 0 else "PM",
                              code, student_id=sid)

    def set_mark(self, pupil_key: str, day: date, session: str, code: str, student_id: int | None = None) -> None:
        """Record one roll-call mark (``-`` is a register left unmarked)."""
        sid = student_id or self.student(pupil_key)
        mark = None if code == "-" else ref("AttendanceMark", self.mark_type(code))
        self._upsert("AttendanceRollCallRecord", (pupil_key, day, session), {
            "student": ref("Student", sid), "recordDate": day,
            "attendanceRollCall": ref("AttendanceRollCall", self.am if session == "AM" else self.pm),
            "attendanceMark": mark, "minutesLate": None})
