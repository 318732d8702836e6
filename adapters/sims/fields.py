"""The SIMS report fields cme-batch understands, by their SIMS display names.

CommandReporter names each element after the field's display name, and the same field is
called differently in different SIMS versions and by different report writers
(``LegalSurname`` vs ``Legal Surname``). Each field here has a canonical key, the display
name the README tells schools to use, and aliases seen in the wild; names are compared
after ``_xHHHH_`` decoding, ignoring case, spaces and underscores. A school whose names
differ maps them in its config: ``fields = { legal_surname = "Surname (legal)" }``.
"""

from __future__ import annotations

from collections.abc import Mapping

from cme_batch.xmlstream import field_key

#: canonical key -> (display name, aliases...). The first name is the one the README documents.
FIELDS: dict[str, tuple[str, ...]] = {
    # identity (every report)
    "adno": ("Adno", "Admission Number", "Adm No"),
    "person_id": ("Person ID", "primary_id", "ID"),
    "upn": ("UPN", "Unique Pupil Number"),
    "legal_surname": ("Legal Surname", "Surname"),
    "legal_forename": ("Legal Forename", "Forename"),
    "preferred_surname": ("Preferred Surname",),
    "preferred_forename": ("Preferred Forename", "Chosen Name"),
    "middle_names": ("Middle Name(s)", "Middle Names", "Middle Name"),
    "dob": ("Date of Birth", "DOB"),
    "sex": ("Gender", "Sex"),
    "year_group": ("Year Group", "Year", "Year Taught In"),
    "reg_group": ("Reg Group", "Reg", "Registration Group"),
    # pupils report: address and contact details of the pupil
    "house_name": ("House Name",),
    "house_number": ("House Number",),
    "street": ("Street",),
    "district": ("District", "Locality"),
    "town": ("Town",),
    "county": ("County",),
    "postcode": ("Postcode", "Post Code"),
    "telephone": ("Telephone", "Home Telephone"),
    "email": ("Email", "Primary Email"),
    # pupils report: one row per contact
    "contact_id": ("Contact ID",),
    "contact_priority": ("Contact Priority", "Priority"),
    "contact_title": ("Contact Title",),
    "contact_surname": ("Contact Surname",),
    "contact_forename": ("Contact Forename",),
    "contact_relationship": ("Contact Relationship", "Relationship"),
    "contact_responsibility": ("Parental Responsibility",),
    "contact_lives_with": ("Lives With Pupil", "Pupil Lives With"),
    "contact_telephone": ("Contact Telephone",),
    "contact_mobile": ("Contact Mobile",),
    "contact_email": ("Contact Email",),
    "contact_address": ("Contact Address",),
    "contact_postcode": ("Contact Postcode",),
    # pupils report: vulnerability flags (Yes/No) and SEN status
    "in_care": ("In Care", "Looked After"),
    "child_protection_plan": ("Child Protection Plan",),
    "child_in_need": ("Child In Need",),
    "young_carer": ("Young Carer",),
    "service_child": ("Service Child",),
    "traveller": ("Traveller", "GRT"),
    "sen_status": ("SEN Status", "SEN Provision"),
    # admissions and leavers reports
    "agreed_start": ("Agreed Start Date", "Expected Start Date"),
    "admission_date": ("Admission Date", "Date of Admission"),
    "application_status": ("Application Status",),
    "leaving_date": ("Leaving Date", "Date of Leaving"),
    "leaving_reason": ("Reason for Leaving", "Leaving Reason"),
    "destination": ("Destination", "Destination School", "Next School"),
    # attendance marks report: one row per pupil per session
    "date": ("Date", "Attendance Date"),
    "session": ("Session", "Session Name"),
    "mark": ("Mark", "Attendance Mark", "Session Mark"),
}

#: Yes/No fields and the flag each one raises.
FLAG_FIELDS: dict[str, str] = {
    "in_care": "looked_after",
    "child_protection_plan": "child_protection_plan",
    "child_in_need": "child_in_need",
    "young_carer": "young_carer",
    "service_child": "highly_mobile",
    "traveller": "highly_mobile",
}

#: SEN status codes (current and legacy) and the flag each one raises; N means none.
SEN_FLAGS = {"E": "ehcp", "S": "ehcp", "K": "sen_support", "A": "sen_support", "P": "sen_support", "N": None}
#: SEN statuses written by their description instead of their code (lower case, single spaces).
#: Only the first letter used to be read, so "SEN Support" or "School Action" read as S, an EHCP.
SEN_NAMES = {"sen support": "K", "education, health and care plan": "E", "ehc plan": "E", "ehcp": "E",
             "statement": "S", "school action": "A", "school action plus": "P", "no special educational need": "N",
             "none": "N"}

#: Fields of which a record must give one value: given twice with different texts (a field added
#: to the report twice, or a field and its alias), the record is refused rather than one text
#: picked (``FieldMap.twice``); so are the school's own flag fields (``flag_fields``). Names,
#: addresses and phones are left out: a second one is no reason to refuse a file, and nothing
#: the criteria rely on.
ONE_VALUE = frozenset({"adno", "person_id", "upn", "dob", "date", "session", "mark", "agreed_start",
                       "admission_date", "application_status", "leaving_date", "leaving_reason", "destination",
                       "sen_status", *FLAG_FIELDS})

#: Fields whose values are personal data and never appear in an error message.
PERSONAL = frozenset({"upn", "legal_surname", "legal_forename", "preferred_surname", "preferred_forename",
                      "middle_names", "dob", "contact_surname", "contact_forename", "contact_telephone",
                      "contact_mobile", "contact_email", "contact_address", "contact_postcode", "house_name",
                      "house_number", "street", "district", "town", "county", "postcode", "telephone", "email"})

#: The four reports, in the order a drop folder is read (pupils before what refers to them).
KINDS = ("pupils", "admissions", "leavers", "marks")
REPLACES = {"pupils": frozenset({"contacts", "flags"})}


class FieldMap:
    """Resolves raw element names (``Legal_x0020_Surname``) to canonical keys, once per name."""

    def __init__(self, overrides: Mapping[str, str] | None = None,
                 extra_flags: Mapping[str, str] | None = None) -> None:
        self.by_key: dict[str, str] = {}
        for key, names in FIELDS.items():
            for n in reversed(names):  # the documented name wins over an alias with the same key
                self.by_key[field_key(n)] = key
        for key, name in (overrides or {}).items():
            self.by_key[field_key(name)] = key
        self.extra_flags = {field_key(n): kind for n, kind in (extra_flags or {}).items()}
        for n in self.extra_flags:
            self.by_key[n] = "flag:" + n
        self._cache: dict[str, str | None] = {}
        self._plans: dict[tuple[tuple[str, ...], frozenset[str] | None], tuple[tuple[str, str], ...]] = {}
        self._rows: dict[tuple[tuple[str, ...], frozenset[str] | None], tuple[tuple[int, str], ...]] = {}
        self._twice: dict[tuple[str, ...], tuple[tuple[int, str], ...]] = {}

    def canonical(self, raw: str) -> str | None:
        try:
            return self._cache[raw]
        except KeyError:
            key = self.by_key.get(field_key(raw))
            self._cache[raw] = key
            return key

    def row(self, tags: tuple[str, ...], texts: list[str | None], only: frozenset[str] | None = None
            ) -> dict[str, str]:
        """``record`` of one ``xmlstream.iter_rows`` record: the positions of the known fields
        are worked out once per list of names (a report's records share one). A field given more
        than once (by one name twice, or by a name and its alias) gives its last non-empty text;
        ``twice`` says which of them disagree."""
        plan = self._rows.get((tags, only))
        if plan is None:
            plan = self._rows[(tags, only)] = tuple(
                (i, k) for i, n in enumerate(tags) if (k := self.canonical(n)) is not None and (only is None or k in only))
        out: dict[str, str] = {}
        for i, key in plan:
            text = texts[i]
            if text is not None:
                v = text.strip()
                if v:
                    out[key] = v
        return out

    def twice(self, tags: tuple[str, ...], texts: list[str | None]) -> list[str]:
        """The fields of ``ONE_VALUE`` a record gives more than once with different non-empty
        texts (the same text twice, or once empty, is that text). Which of two dates, two
        admission numbers or two marks is the right one cannot be told; the texts used to be
        joined (``2025-11-03`` and ``2025-11-04`` read as the first date, Adno 5 and 6 as 56)
        or the later alias kept."""
        repeated = self._twice.get(tags)
        if repeated is None:
            known = [(i, k) for i, n in enumerate(tags)
                     if (k := self.canonical(n)) is not None and (k in ONE_VALUE or k.startswith("flag:"))]
            keys = [k for _, k in known]
            repeated = self._twice[tags] = tuple((i, k) for i, k in known if keys.count(k) > 1)
        if not repeated:
            return []
        seen: dict[str, set[str]] = {}
        for i, key in repeated:
            v = (texts[i] or "").strip()
            if v:
                seen.setdefault(key, set()).add(v)
        return [k for k, vs in seen.items() if len(vs) > 1]

    def positions(self, tags: tuple[str, ...], keys: tuple[str, ...]) -> tuple[int, ...] | None:
        """Where each of ``keys`` is in a record with fields ``tags``: one position per key, or
        None when a key is missing, given twice, or any field name repeats (such a record goes
        through ``row``, and ``twice`` checks its repeated fields)."""
        if len(set(tags)) < len(tags):
            return None
        found: dict[str, list[int]] = {}
        for i, name in enumerate(tags):
            if (k := self.canonical(name)) in keys:
                found.setdefault(k, []).append(i)
        if any(len(found.get(k, ())) != 1 for k in keys):
            return None
        return tuple(found[k][0] for k in keys)

    def record(self, raw: Mapping[str, str], only: frozenset[str] | None = None) -> dict[str, str]:
        """The record's known fields by canonical key (``only`` these, when given), values
        stripped, empty values left out.

        The records of one report carry the same fields in the same order, so the pairs of raw
        name and key are worked out once per distinct list of names (a marks export: once).
        """
        names = tuple(raw)
        plan = self._plans.get((names, only))
        if plan is None:
            plan = self._plans[(names, only)] = tuple(
                (n, k) for n in names if (k := self.canonical(n)) is not None and (only is None or k in only))
        out: dict[str, str] = {}
        for name, key in plan:
            v = raw[name].strip()
            if v:
                out[key] = v
        return out


def display(key: str) -> str:
    """The documented display name of a canonical key (for messages)."""
    return FIELDS[key][0] if key in FIELDS else key.removeprefix("flag:")


#: Fields only the pupils report carries (its contacts and flags): a record with one is a pupils row.
PUPILS_ONLY = frozenset({k for k in FIELDS if k.startswith("contact_")} | set(FLAG_FIELDS) | {"sen_status"})
#: What each report is read into: a file's records must come from a report read the same way.
READ_AS = {"pupils": "pupils, contacts and flags", "admissions": "enrolments", "leavers": "enrolments",
           "marks": "marks"}


def report_of(keys: set[str]) -> tuple[str, list[str]] | None:
    """The report a record can only come from and the fields that tell (``kind_of_fields``'s
    order), or None for a record of identity fields only, which any report may hold (empty
    fields are left out by CommandReporter, so a missing field proves nothing)."""
    kind = kind_of_fields(keys)
    if kind == "marks":
        telling = {"date", "session", "mark"}
    elif kind == "leavers":
        telling = {"leaving_date"}
    elif kind == "admissions":
        telling = {"agreed_start", "application_status"}
    else:
        telling = set(PUPILS_ONLY) | {k for k in keys if k.startswith("flag:")}
    found = [display(k) for k in keys if k in telling]
    return (kind, sorted(found)) if found else None


def kind_of_fields(keys: set[str]) -> str:
    """Which report a record comes from, judged by the fields it carries."""
    if {"date", "session"} <= keys:
        return "marks"
    if "leaving_date" in keys:
        return "leavers"
    if keys & {"agreed_start", "application_status"}:
        return "admissions"
    return "pupils"
