"""Every Arbor wire shape the adapter relies on, in one place.

Paths, GraphQL entity and field names, filter arguments, date encodings, the changelog and
error envelopes, and the translation of GraphQL rows into core model records. Most shapes
come from Arbor's SDKs and third-party code, not from a live school: the ones marked
UNCONFIRMED in ``README.md`` are expected to change once tried against a sandbox, and this
module is the only one that should need editing when they do.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from cme_batch.model import Address, ContactRecord, EnrolmentRecord, FlagRecord, PupilRecord, Warning_

Row = dict[str, Any]


class BadShape(ValueError):
    """An answer not in the shape this module expects. Its message never holds the value itself
    (it could be a pupil's date of birth or name)."""


class Conflict(ValueError):
    """Rows of Arbor's answer that the store cannot hold together (one would replace the other
    unseen). Its message names the entity, the Arbor ids and the field, never a pupil."""

GRAPHQL_PATH = "/graphql/query"
REST_PREFIX = "/rest-v2"
#: UNCONFIRMED: where the current (head) revision is read before a full pull.
HEAD_REVISION_PATH = "/rest-v2/revisions/latest"

# -- GraphQL entities and the fields read from each ----------------------------------------
STUDENT = "Student"
UPN = "UkDfe_UpnAssignment"
ENROLMENT = "EducationalInstitutionEnrolment"
DESTINATION = "StudentDestination"
RELATIONSHIP = "StudentGuardianRelationship"
GUARDIAN = "Guardian"
#: Names and dates of birth live on a Person (a pupil's or a guardian's); GraphQL shows them on
#: Student and on Guardian's ``person``, but a change to them is a change to the Person.
PERSON = "Person"
PHONE = "TelephoneNumber"
EMAIL = "EmailAddress"
OCCUPANCY = "PostalAddressOccupancy"
CHILD_PROTECTION = "ChildProtectionStatusAssignment"
IN_CARE = "InCareStatusAssignment"
SEN = "SenStatusAssignment"
YOUNG_CARER = "UkDfe_YoungCarerStatusAssignment"
ROLL_CALL_RECORD = "AttendanceRollCallRecord"
ROLL_CALL = "AttendanceRollCall"
MARK = "AttendanceMark"

SELECTIONS: dict[str, str] = {
    STUDENT: "id revisionId person { id } legalFirstName legalMiddleNames legalLastName preferredFirstName "
             "preferredLastName dateOfBirth gender displayAcademicLevel { displayName } "
             "registrationForm { displayName } userTags",
    UPN: "id revisionId student { id } upn startDatetime endDatetime",
    ENROLMENT: "id revisionId student { id } entryDate leavingDate unenrolmentReason { code unenrolmentReason }",
    DESTINATION: "id revisionId student { id } startDate studentDestinationType { code label } "
                 "linkedRecord { displayName }",
    RELATIONSHIP: "id revisionId student { id } guardian { id } guardianRelationshipType { relationshipName } "
                  "emergencyContactPriority isLegalGuardian",
    # a person's title is a Title object (code, title) in Arbor's SDK, not text: a bare ``title``
    # would be refused; ``title_text`` reads the object (or text, as a server might give it)
    GUARDIAN: "id revisionId person { id title { code title } legalFirstName legalLastName }",
    PHONE: "id revisionId numberOwner { id } number telephoneNumberRanking",
    EMAIL: "id revisionId emailAddressOwner { id } emailAddress dataOrder",
    OCCUPANCY: "id revisionId occupant { id } effectiveDate endDate "
               "postalAddress { id address1 address2 address3 postalTown postalCode }",
    CHILD_PROTECTION: "id revisionId student { id } startDate endDate childProtectionStatus { code }",
    IN_CARE: "id revisionId student { id } startDate endDate inCareStatus { code countsAsInCareStatus }",
    SEN: "id revisionId student { id } startDate endDate senStatus { code }",
    YOUNG_CARER: "id revisionId student { id } startDate endDate",
    ROLL_CALL_RECORD: "id revisionId student { id } recordDate attendanceRollCall { id } attendanceMark { id }",
    ROLL_CALL: "id attendanceRegisterType { isMorning isAfternoon }",
    MARK: "id code attendanceMark isStatisticalPresent isStatisticalApprovedEducationalActivity "
          "isStatisticalAuthorizedAbsent isStatisticalUnauthorizedAbsent isStatisticalPossibleAttendance",
}

#: The type of every field ``SELECTIONS`` reads (a dotted path inside a nested object), checked
#: on every row before any is used, so an answer in another shape refuses the whole pull, naming
#: the entity, the Arbor id and the field, never the value. ``id``: a number (or a string of one),
#: never null; ``ref``: an object holding an ``id``; ``obj``: an object; ``str``, ``int``, ``bool``;
#: ``rev``: a revision number (or a string of digits);
#: ``date``: either date encoding; ``strs``: a list of strings; ``tags``: a list of tag names or an
#: object of tag name to value (the SDK's shape); ``named``: a string or an object (a lookup such
#: as a person's ``Title``). A trailing ``?`` allows null or absence. Which fields may be null is
#: UNCONFIRMED: a null that decides what is stored (whose enrolment, which status) is refused
#: rather than guessed at.
_COMMON = {"id": "id", "revisionId": "rev?"}
_SPAN = {"startDate": "date?", "endDate": "date?"}
FIELDS: dict[str, dict[str, str]] = {
    STUDENT: {**_COMMON, "person": "ref?", "legalFirstName": "str?", "legalMiddleNames": "str?",
              "legalLastName": "str?", "preferredFirstName": "str?", "preferredLastName": "str?",
              "dateOfBirth": "date?", "gender": "str?", "displayAcademicLevel": "obj?",
              "displayAcademicLevel.displayName": "str?", "registrationForm": "obj?",
              "registrationForm.displayName": "str?", "userTags": "tags?"},
    UPN: {**_COMMON, "student": "ref", "upn": "str?", "startDatetime": "date?", "endDatetime": "date?"},
    ENROLMENT: {**_COMMON, "student": "ref", "entryDate": "date?", "leavingDate": "date?",
                "unenrolmentReason": "obj?", "unenrolmentReason.code": "str?",
                "unenrolmentReason.unenrolmentReason": "str?"},
    DESTINATION: {**_COMMON, "student": "ref", "startDate": "date?", "studentDestinationType": "obj?",
                  "studentDestinationType.code": "str?", "studentDestinationType.label": "str?",
                  "linkedRecord": "obj?", "linkedRecord.displayName": "str?"},
    RELATIONSHIP: {**_COMMON, "student": "ref", "guardian": "ref", "guardianRelationshipType": "obj?",
                   "guardianRelationshipType.relationshipName": "str?", "emergencyContactPriority": "int?",
                   "isLegalGuardian": "bool?"},
    GUARDIAN: {**_COMMON, "person": "ref?", "person.title": "named?", "person.title.code": "str?",
               "person.title.title": "str?", "person.legalFirstName": "str?",
               "person.legalLastName": "str?"},
    PHONE: {**_COMMON, "numberOwner": "ref", "number": "str?", "telephoneNumberRanking": "int?"},
    EMAIL: {**_COMMON, "emailAddressOwner": "ref", "emailAddress": "str?", "dataOrder": "int?"},
    OCCUPANCY: {**_COMMON, "occupant": "ref", "effectiveDate": "date?", "endDate": "date?",
                "postalAddress": "ref?", "postalAddress.address1": "str?", "postalAddress.address2": "str?",
                "postalAddress.address3": "str?", "postalAddress.postalTown": "str?",
                "postalAddress.postalCode": "str?"},
    CHILD_PROTECTION: {**_COMMON, "student": "ref", **_SPAN, "childProtectionStatus": "obj",
                       "childProtectionStatus.code": "str?"},
    IN_CARE: {**_COMMON, "student": "ref", **_SPAN, "inCareStatus": "obj", "inCareStatus.code": "str?",
              "inCareStatus.countsAsInCareStatus": "bool?"},
    SEN: {**_COMMON, "student": "ref", **_SPAN, "senStatus": "obj", "senStatus.code": "str?"},
    YOUNG_CARER: {**_COMMON, "student": "ref", **_SPAN},
    # a record with no pupil, date or roll call is left out with a warning (attendance.marks_records)
    ROLL_CALL_RECORD: {**_COMMON, "student": "ref?", "recordDate": "date?", "attendanceRollCall": "ref?",
                       "attendanceMark": "ref?"},
    ROLL_CALL: {"id": "id", "attendanceRegisterType": "obj?", "attendanceRegisterType.isMorning": "bool?",
                "attendanceRegisterType.isAfternoon": "bool?"},
    MARK: {"id": "id", "code": "str?", "attendanceMark": "str?", "isStatisticalPresent": "bool?",
           "isStatisticalApprovedEducationalActivity": "bool?", "isStatisticalAuthorizedAbsent": "bool?",
           "isStatisticalUnauthorizedAbsent": "bool?", "isStatisticalPossibleAttendance": "bool?"},
}

#: Entities that hang off a student, read with a ``student__id_in`` filter for a few pupils.
STUDENT_SCOPED = (UPN, ENROLMENT, DESTINATION, RELATIONSHIP, CHILD_PROTECTION, IN_CARE, SEN, YOUNG_CARER)
#: Entities owned by a person (a pupil's or a guardian's), and the field naming the owner.
PERSON_OWNED = {PHONE: "numberOwner", EMAIL: "emailAddressOwner", OCCUPANCY: "occupant"}

#: The REST resource (for ``/rest-v2/{resource}/changelog``) of every entity the pull follows.
REST_RESOURCES: dict[str, str] = {
    STUDENT: "students", UPN: "uk-dfe_upn-assignments", ENROLMENT: "educational-institution-enrolments",
    DESTINATION: "student-destinations", RELATIONSHIP: "student-guardian-relationships",
    GUARDIAN: "guardians", PHONE: "telephone-numbers", EMAIL: "email-addresses",
    OCCUPANCY: "postal-address-occupancies", "PostalAddress": "postal-addresses", PERSON: "persons",
    CHILD_PROTECTION: "child-protection-status-assignments", IN_CARE: "in-care-status-assignments",
    SEN: "sen-status-assignments", YOUNG_CARER: "uk-dfe_young-carer-status-assignments",
    ROLL_CALL_RECORD: "attendance-roll-call-records",
}

#: Codes of child protection statuses, SEN statuses, and what core flag each one is (UNCONFIRMED codes),
#: compared ignoring case and blanks around them; SEN ``N`` is no SEN. Any other code raises no flag
#: and is warned about (``arbor_unknown_status``).
CHILD_PROTECTION_KINDS = {"CPP": "child_protection_plan", "CIN": "child_in_need"}
SEN_KINDS = {"K": "sen_support", "E": "ehcp"}
SEN_NONE = frozenset({"N"})
#: Student tags (``userTags``, UNCONFIRMED as GraphQL strings) for groups Arbor has no assignment for;
#: a school names its own tags in ``tag_flags``, these are the defaults.
DEFAULT_TAG_FLAGS = {
    "Domestic abuse": "domestic_abuse", "Service child": "highly_mobile", "Traveller": "highly_mobile",
    "Gypsy, Roma and Traveller": "highly_mobile", "Medical or emotional needs": "medical_emotional",
    "Permanently excluded": "permanently_excluded", "Parent mental health": "parent_mental_health",
    "Parent learning difficulty": "parent_learning_difficulty",
}
#: Unenrolment reason codes meaning "the admission was withdrawn before the child started" (UNCONFIRMED).
WITHDRAWN_REASONS = frozenset({"ADMISSION_WITHDRAWN"})


def graphql_query(entity: str, args: Mapping[str, Any]) -> str:
    """The text of one GraphQL read: ``{ Entity(arg: value, ...) { fields } }``."""
    rendered = ", ".join(f"{k}: {_arg(v)}" for k, v in args.items())
    head = f"{entity}({rendered})" if rendered else entity
    return "{ " + head + " { " + SELECTIONS[entity] + " } }"


def _arg(v: Any) -> str:
    if isinstance(v, (list, tuple, set, frozenset)):
        return "[" + ", ".join(_arg(x) for x in sorted(v, key=str)) + "]"
    if isinstance(v, str) and v.isdigit():
        return v  # Arbor ids are numbers
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    if isinstance(v, date):
        return json.dumps(v.isoformat())
    return json.dumps(v)


def page_args(page_size: int, page_num: int) -> dict[str, int]:
    """GraphQL paging: page size and a 0-based page number (REST uses dashes and 1-based pages)."""
    return {"page_size": page_size, "page_num": page_num}


def id_filter(path: str = "") -> str:
    """The argument filtering an entity by the ids of a related object: ``student__id_in``, ``id_in``."""
    return f"{path}__id_in" if path else "id_in"


def marks_window(first: date, last: date) -> dict[str, str]:
    """Roll-call records dated ``first``..``last`` (the filters are exclusive, so widen by a day)."""
    from datetime import timedelta

    return {"recordDate_after": (first - timedelta(days=1)).isoformat(),
            "recordDate_before": (last + timedelta(days=1)).isoformat()}


def graphql_rows(body: Any, entity: str) -> list[Row]:
    """The list of rows under ``data.<Entity>``; ``None`` when the envelope is not that shape."""
    data = body.get("data") if isinstance(body, dict) else None
    rows = data.get(entity) if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise BadShape(f"GraphQL answer has no list under data.{entity}")
    return rows


def _is_id(v: Any) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and v.strip() != "")


def _kind_ok(kind: str, v: Any) -> bool:
    if kind == "id":
        return _is_id(v)
    if kind == "ref":
        return isinstance(v, dict) and _is_id(v.get("id"))
    if kind == "obj":
        return isinstance(v, dict)
    if kind == "str":
        return isinstance(v, str)
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "rev":  # a revision is compared as a number, so a string of digits will do
        return isinstance(v, int) and not isinstance(v, bool) or isinstance(v, str) and v.isdigit()
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "strs":
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    if kind == "tags":
        return _kind_ok("strs", v) or isinstance(v, dict)
    if kind == "named":
        return isinstance(v, (str, dict))
    if kind == "date":
        parse_date(v)  # raises BadShape, naming the encoding but not the value
        return True
    raise AssertionError(f"unknown field kind {kind!r}")


_JSON_TYPES = {bool: "true or false", int: "a number", float: "a number", str: "a string", list: "a list",
               dict: "an object"}


def _what(v: Any) -> str:
    return "null" if v is None else _JSON_TYPES.get(type(v), type(v).__name__)


def check_rows(entity: str, rows: Sequence[Row]) -> None:
    """Refuse rows not in the shape ``FIELDS`` gives ``entity``: the message names the entity, the
    row's Arbor id (or its place in the answer) and the field, and what was found instead, never
    the value itself (it could be a child's name or date of birth)."""
    fields = FIELDS[entity]
    for n, row in enumerate(rows, 1):
        rid = row.get("id")
        name = f"{entity} {rid}" if _is_id(rid) else f"{entity} (row {n} of the answer, which has no id)"
        for path, kind in fields.items():
            parent: Any = row
            *up, last = path.split(".")
            for part in up:
                parent = parent.get(part) if isinstance(parent, dict) else None
            if not isinstance(parent, dict):
                continue  # its object is null (when allowed: the object's own check says)
            v = parent.get(last)
            optional = kind.endswith("?")
            base = kind.rstrip("?")
            if v is None:
                if not optional:
                    got = "missing" if last not in parent else "null"
                    raise BadShape(f"{name}: field {path} is {got}, expected {_KIND_WORDS[base]}")
                continue
            try:
                ok = _kind_ok(base, v)
            except BadShape as exc:
                raise BadShape(f"{name}: field {path}: {exc}") from None
            if not ok:
                raise BadShape(f"{name}: field {path} holds {_what(v)}, expected {_KIND_WORDS[base]}"
                               + (" or null" if optional else ""))


_KIND_WORDS = {"id": "an id (a number)", "ref": "an object with an id", "obj": "an object", "str": "a string",
               "int": "a whole number", "rev": "a revision number", "bool": "true or false", "strs": "a list of strings",
               "tags": "a list of strings or an object of tag names", "named": "a string or an object",
               "date": "a date"}


_DENIED = re.compile(r"do not have access to `?([A-Za-z_]+\.[A-Za-z_]+)`?")


def graphql_errors(body: Any) -> tuple[list[str], list[str]]:
    """(fields access was refused to, other error messages) from a GraphQL ``errors`` list."""
    errors = body.get("errors") if isinstance(body, dict) else None
    denied: list[str] = []
    other: list[str] = []
    for e in errors or []:
        msg = str(e.get("message", e)) if isinstance(e, dict) else str(e)
        m = _DENIED.search(msg)
        (denied if m else other).append(m.group(1) if m else msg[:200])
    return denied, other


def error_reason(body: Any) -> str | None:
    """The reason of Arbor's error envelope ``{"response": {"code", "reason", "errors": [...]}}``."""
    resp = body.get("response") if isinstance(body, dict) else None
    if not isinstance(resp, dict):
        return None
    parts = [str(resp.get("reason") or "")]
    for e in resp.get("errors") or []:
        if isinstance(e, dict) and e.get("message"):
            parts.append(str(e["message"]))
    text = ": ".join(p for p in parts if p)
    return text[:300] or None


# -- REST changelog --------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    change_type: str  # create, update, delete
    entity_id: str
    revision: int


def changelog_path(entity: str) -> str:
    return f"{REST_PREFIX}/{REST_RESOURCES[entity]}/changelog"


def changelog_params(from_revision: int, page_size: int, page_number: int) -> dict[str, str]:
    """REST paging: ``page-number`` is 1-based (UNCONFIRMED), ``page-size`` rows per page."""
    return {"from-revision": str(from_revision), "page-size": str(page_size), "page-number": str(page_number)}


def parse_changelog(body: Any) -> list[Change]:
    """``{"changes": [{"changeType", "toRevision", "changedObject": {"href": ".../16"}}]}``."""
    changes = body.get("changes") if isinstance(body, dict) else None
    if not isinstance(changes, list):
        raise BadShape("changelog answer has no 'changes' list")
    out = []
    for n, c in enumerate(changes, 1):
        obj = c.get("changedObject") if isinstance(c, dict) else None
        href = obj.get("href") if isinstance(obj, dict) else None
        oid = href.rstrip("/").rsplit("/", 1)[-1] if isinstance(href, str) else ""
        if not oid:  # a change that names no object would be followed by reading nothing: lost
            raise BadShape(f"change {n} of the page has no changedObject.href naming the changed object")
        rev = c.get("toRevision")
        if rev is not None and not _kind_ok("rev", rev):
            raise BadShape(f"change {n} of the page: field toRevision holds {_what(rev)}, expected a revision number")
        out.append(Change(str(c.get("changeType", "")).lower(), oid, int(rev or 0)))
    return out


def parse_head_revision(body: Any) -> int:
    """``{"revision": {"revisionId": 1234}}`` (UNCONFIRMED shape)."""
    return int(body["revision"]["revisionId"])


# -- values ------------------------------------------------------------------------------------
def parse_date(v: Any) -> date | None:
    """A date in either encoding Arbor is seen to use: ``"2025-09-01"`` (optionally with a time)
    or ``{"entityType": "date", "date": "2025-09-01 00:00:00"}``."""
    if v is None or v == "":
        return None
    if isinstance(v, dict):
        v = v.get("date")
    if not isinstance(v, str):
        raise BadShape(f"a date is {_what(v)}, not a string or date object")
    text = v.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text[:19].replace("T", " ")).date()
    except ValueError:
        raise BadShape(f"a date string is not YYYY-MM-DD[ HH:MM:SS] ({len(text)} characters)") from None


def ref_id(v: Any) -> str | None:
    """The id of a nested object ``{"id": 16}``, as a string; None when absent."""
    if isinstance(v, dict) and v.get("id") is not None:
        return str(v["id"])
    return None


def _text(v: Any) -> str | None:
    return None if v is None or v == "" else str(v)


def title_text(v: Any) -> str | None:
    """A person's title: text, or Arbor's ``Title`` object (its ``title``, else its ``code``)."""
    if isinstance(v, dict):
        return _text(v.get("title")) or _text(v.get("code"))
    return _text(v)


def tag_names(v: Any) -> list[str]:
    """A student's tags: a list of names, or (the SDK's ``userTags``) an object of tag name to
    value, where a tag whose value is null or false is taken as not set."""
    if isinstance(v, dict):
        return [str(name) for name, value in v.items() if value is not None and value is not False]
    return [str(t) for t in v or ()]


_LEVELS = {"reception": "R", "nursery": "N1"}


def year_group(display: str | None) -> str | None:
    """``"Year 3"`` -> ``"3"``, ``"Reception"`` -> ``"R"``, ``"Nursery 2"`` -> ``"N2"``."""
    if not display:
        return None
    low = display.strip().lower()
    if m := re.fullmatch(r"year\s*(\d+)", low):
        return m.group(1)
    if m := re.fullmatch(r"nursery\s*(\d)", low):
        return f"N{m.group(1)}"
    return _LEVELS.get(low, display.strip())


def sex(gender: Any) -> str | None:
    g = str(gender or "").strip().upper()
    return {"MALE": "M", "M": "M", "FEMALE": "F", "F": "F"}.get(g, g or None)


def _current(rows: Iterable[Row], start: str, end: str, today: date) -> Row | None:
    """The row in force today (latest start wins), else the latest one."""
    rows = list(rows)
    live = [r for r in rows if (parse_date(r.get(end)) or date.max) >= today]
    pool = live or rows
    return max(pool, key=lambda r: (parse_date(r.get(start)) or date.min, int(r.get("id") or 0)), default=None)


def _address(row: Row | None) -> Address | None:
    pa = (row or {}).get("postalAddress")
    if not isinstance(pa, dict):
        return None
    lines = tuple(str(pa[k]) for k in ("address1", "address2", "address3", "postalTown") if pa.get(k))
    return Address(lines, _text(pa.get("postalCode")))


# -- rows -> model records -------------------------------------------------------------------
class PeopleIndex:
    """Phones, emails and current addresses by owning person id."""

    def __init__(self, rows: Mapping[str, Sequence[Row]], today: date) -> None:
        self.phones: dict[str, list[Row]] = defaultdict(list)
        self.emails: dict[str, list[Row]] = defaultdict(list)
        occ: dict[str, list[Row]] = defaultdict(list)
        for r in rows.get(PHONE, ()):
            self.phones[ref_id(r.get("numberOwner")) or ""].append(r)
        for r in rows.get(EMAIL, ()):
            self.emails[ref_id(r.get("emailAddressOwner")) or ""].append(r)
        for r in rows.get(OCCUPANCY, ()):
            occ[ref_id(r.get("occupant")) or ""].append(r)
        self.home = {p: _current(rs, "effectiveDate", "endDate", today) for p, rs in occ.items()}

    def phone_list(self, person: str | None) -> tuple[str, ...]:
        rows = sorted(self.phones.get(person or "", ()), key=lambda r: (r.get("telephoneNumberRanking") or 99))
        return tuple(str(r["number"]) for r in rows if r.get("number"))

    def email_list(self, person: str | None) -> tuple[str, ...]:
        rows = sorted(self.emails.get(person or "", ()), key=lambda r: (r.get("dataOrder") or 99))
        return tuple(str(r["emailAddress"]) for r in rows if r.get("emailAddress"))

    def address_id(self, person: str | None) -> str | None:
        return ref_id((self.home.get(person or "") or {}).get("postalAddress"))

    def address(self, person: str | None) -> Address | None:
        return _address(self.home.get(person or ""))


def pupil_records(rows: Mapping[str, Sequence[Row]], people: PeopleIndex, today: date) -> list[PupilRecord]:
    upns: dict[str, list[Row]] = defaultdict(list)
    for r in rows.get(UPN, ()):
        upns[ref_id(r.get("student")) or ""].append(r)
    out = []
    for s in rows.get(STUDENT, ()):
        sid, person = str(s["id"]), ref_id(s.get("person"))
        upn_row = _current(upns.get(sid, ()), "startDatetime", "endDatetime", today)
        out.append(PupilRecord(
            pupil_key=sid, upn=_text((upn_row or {}).get("upn")),
            legal_surname=_text(s.get("legalLastName")), legal_forename=_text(s.get("legalFirstName")),
            preferred_surname=_text(s.get("preferredLastName")),
            preferred_forename=_text(s.get("preferredFirstName")),
            middle_names=_text(s.get("legalMiddleNames")), dob=parse_date(s.get("dateOfBirth")),
            sex=sex(s.get("gender")),
            year_group=year_group((s.get("displayAcademicLevel") or {}).get("displayName")),
            reg_group=_text((s.get("registrationForm") or {}).get("displayName")),
            address=people.address(person), phones=people.phone_list(person), emails=people.email_list(person)))
    return out


def named_pupils(rows: Mapping[str, Sequence[Row]], students: Iterable[str], today: date) -> list[PupilRecord]:
    """A pupil named by its Arbor id and current UPN only, for students Arbor served rows of but no
    Student row: a stored pupil keeps its details, a new one is stored without names."""
    upns: dict[str, list[Row]] = defaultdict(list)
    for r in rows.get(UPN, ()):
        upns[ref_id(r.get("student")) or ""].append(r)
    return [PupilRecord.named(sid, _text((_current(upns.get(sid, ()), "startDatetime", "endDatetime", today)
                                           or {}).get("upn")))
            for sid in sorted(students, key=lambda x: (len(x), x))]


def check_one_upn_each(pupils: Iterable[Any]) -> None:
    """Refuse two Arbor students holding one current UPN, naming both students, never the UPN.

    The store refuses them too (a UPN is one child's), but can name only "pupil n of the file":
    an Arbor pull has no file, so the school could not tell which students to correct."""
    holder: dict[str, str] = {}
    for p in pupils:
        if not isinstance(p, PupilRecord) or not p.upn:
            continue
        other = holder.setdefault(p.upn, p.pupil_key)
        if other != p.pupil_key:
            a, b = sorted((other, p.pupil_key), key=lambda x: (len(x), x))
            raise Conflict(f"{STUDENT} {a} and {b}: two students have one UPN (their current {UPN}): two children "
                           "with one UPN, or one child entered twice; a UPN belongs to one child: correct the UPN, "
                           "or merge the duplicate student, in Arbor")


def _destination_of(dests: Sequence[Row], entry: date | None, next_entry: date | None) -> Row | None:
    """The latest destination of an enrolment that ended: one starting on or after its entry date
    and before the student's next entry (one with no start date fits any). A destination of an
    earlier leaving is not where the child went this time."""
    fits = [d for d in dests if (start := parse_date(d.get("startDate"))) is None
            or ((entry is None or start >= entry) and (next_entry is None or start < next_entry))]
    return max(reversed(fits), key=lambda d: parse_date(d.get("startDate")) or date.min, default=None)  # later wins


def enrolment_records(rows: Mapping[str, Sequence[Row]]) -> list[EnrolmentRecord]:
    """One record per enrolment; the pupil's latest destination goes on the enrolment that ended."""
    dest: dict[str, list[Row]] = defaultdict(list)
    for d in rows.get(DESTINATION, ()):
        dest[ref_id(d.get("student")) or ""].append(d)
    entries: dict[str, list[date]] = defaultdict(list)  # each student's entry dates, for the next entry
    for e in rows.get(ENROLMENT, ()):
        if (day := parse_date(e.get("entryDate"))) is not None:
            entries[ref_id(e.get("student")) or ""].append(day)
    # the store keeps one admission per pupil and first day (here the entry date): two enrolments
    # of one student with the same entry date (or none) are one record, or one replaces the other
    kept: dict[tuple[str, date | None], tuple[EnrolmentRecord, str]] = {}
    for e in rows.get(ENROLMENT, ()):
        sid = ref_id(e.get("student")) or ""
        entry, leaving = parse_date(e.get("entryDate")), parse_date(e.get("leavingDate"))
        reason: Row = e.get("unenrolmentReason") or {}
        later = [d for d in entries[sid] if entry is not None and d > entry]
        went = _destination_of(dest[sid], entry, min(later, default=None)) if leaving else None
        destination = _text(((went or {}).get("linkedRecord") or {}).get("displayName"))
        rec = EnrolmentRecord(
            pupil_key=sid, admission_date=entry, entry_date=entry, leaving_date=leaving,
            leaving_reason=_text(reason.get("unenrolmentReason") or reason.get("code")),
            destination=destination, withdrawn=reason.get("code") in WITHDRAWN_REASONS)
        had = kept.get((sid, entry))
        if had is None or (had[0].withdrawn and not rec.withdrawn):
            kept[(sid, entry)] = (rec, str(e["id"]))  # a live admission stands over a withdrawn one of its day
        elif had[0] != rec and not rec.withdrawn:
            field = next(f for a, f in _ENROLMENT_FIELDS.items() if getattr(had[0], a) != getattr(rec, a))
            raise Conflict(f"{ENROLMENT} {had[1]} and {e['id']}: two enrolments of student {sid} with the same "
                           f"entryDate ({entry.isoformat() if entry else 'none'}) differ in {field}; the store keeps "
                           "one admission per first day, so one would replace the other unseen: correct the "
                           "student's enrolments in Arbor")
    return [rec for rec, _id in kept.values()]


#: What two enrolments of one first day may differ in, and the Arbor field each comes from.
_ENROLMENT_FIELDS = {"leaving_date": "leavingDate", "leaving_reason": "unenrolmentReason",
                     "destination": f"the {DESTINATION}"}


def contact_records(rows: Mapping[str, Sequence[Row]], people: PeopleIndex,
                    student_person: Mapping[str, str | None]) -> list[ContactRecord]:
    guardians = {str(g["id"]): g for g in rows.get(GUARDIAN, ())}
    out = []
    for rel in rows.get(RELATIONSHIP, ()):
        sid, gid = ref_id(rel.get("student")) or "", ref_id(rel.get("guardian")) or ""
        person = (guardians.get(gid) or {}).get("person") or {}
        pid = ref_id(person)
        home, child_home = people.address_id(pid), people.address_id(student_person.get(sid))
        out.append(ContactRecord(
            pupil_key=sid, contact_key=gid, priority=rel.get("emergencyContactPriority"),
            title=title_text(person.get("title")), surname=_text(person.get("legalLastName")),
            forename=_text(person.get("legalFirstName")),
            relationship=_text((rel.get("guardianRelationshipType") or {}).get("relationshipName")),
            parental_responsibility=rel.get("isLegalGuardian"),
            lives_with=None if home is None or child_home is None else home == child_home,
            phones=people.phone_list(pid), emails=people.email_list(pid), address=people.address(pid)))
    return out


def _tag(name: str) -> str:
    """A student tag's name as compared: case and runs of blanks make no difference."""
    return " ".join(name.split()).casefold()


def flag_records(rows: Mapping[str, Sequence[Row]], tag_flags: Mapping[str, str],
                 warnings: list[Warning_] | None = None) -> list[FlagRecord]:
    """Flags from status assignments (with their dates) and from student tags (undated).

    A status whose code is not one of the codes read (or is null), or an in-care status that does
    not say whether it counts as in care, raises no flag: each is warned about (``warnings``),
    naming the assignment, since a child protection plan dropped unsaid is a child whose absence
    would not have social care told at once."""
    out = []

    def add(r: Row, kind: str | None, detail: str | None = None) -> None:
        if kind:
            out.append(FlagRecord(ref_id(r.get("student")) or "", kind, parse_date(r.get("startDate")),
                                  parse_date(r.get("endDate")), detail))

    def unread(entity: str, r: Row, what: str, flag: str) -> None:
        if warnings is not None:
            warnings.append(Warning_("arbor_unknown_status", f"Arbor {entity} {r['id']} has {what}: no {flag} flag "
                                     "raised for it; check the status in Arbor (the codes read are in "
                                     "adapters/arbor/mapping.py)", where="arbor vulnerability statuses",
                                     pupil_key=ref_id(r.get("student")), dsl_only=True))

    def coded(entity: str, r: Row, code: Any, kinds: Mapping[str, str], none: frozenset[str], flag: str
              ) -> str | None:
        c = code.strip().upper() if isinstance(code, str) else ""
        if c in kinds or c in none:
            return kinds.get(c)
        known = [*kinds, *sorted(none)]
        unread(entity, r, f"status code {code!r}, which is not {', '.join(known[:-1])} or {known[-1]}" if c
               else "no status code", flag)
        return None

    for r in rows.get(CHILD_PROTECTION, ()):
        add(r, coded(CHILD_PROTECTION, r, (r.get("childProtectionStatus") or {}).get("code"), CHILD_PROTECTION_KINDS,
                     frozenset(), "child protection"))
    for r in rows.get(IN_CARE, ()):
        counts = (r.get("inCareStatus") or {}).get("countsAsInCareStatus")
        if counts is None:
            unread(IN_CARE, r, "a status that does not say whether it counts as in care "
                   "(inCareStatus.countsAsInCareStatus is null)", "looked-after")
        add(r, "looked_after" if counts else None)
    for r in rows.get(SEN, ()):
        add(r, coded(SEN, r, (r.get("senStatus") or {}).get("code"), SEN_KINDS, SEN_NONE, "SEN"))
    for r in rows.get(YOUNG_CARER, ()):
        add(r, "young_carer")
    wanted = {_tag(name): kind for name, kind in tag_flags.items()}
    for s in rows.get(STUDENT, ()):
        kinds = {wanted[t] for tag in tag_names(s.get("userTags")) if (t := _tag(tag)) in wanted}
        out += [FlagRecord(str(s["id"]), kind, detail="Arbor student tag") for kind in sorted(kinds)]
    return out
