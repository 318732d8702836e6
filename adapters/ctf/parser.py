"""Reading one Common Transfer File into model records.

Any CTF version (CTF 24, 25 and older): elements are matched by local name, so a file with
the 2010 schema namespace and one without read the same; ``Sex`` and ``Gender`` are both
accepted, as are ``AttendanceStartDate`` and ``AttendStartDate``. Pupils are streamed one
``Pupil`` element at a time; a small file whose pupils have only a UPN, ``LookedAfter`` and
``Attendance`` (a day's register) is read by libxml2 and libxslt instead (``fastread.py``), with
the same records, warnings and problems. Problems are collected per record (the pupil's position
in the file, never their name or UPN) and reject the whole file at the end; data-quality issues
become warnings.

"This school" is the school whose enrolments and attendance are kept: the ``school`` option
(LA, establishment) when given, else the file's ``SourceSchool``. School history entries and
``YearData`` of other schools are history, not ours, and are skipped. One that does not name its
school (no ``LEA`` or no ``Estab``) is the sending school's (``SourceSchool``): ours in the
school's own export, the previous school's in an incoming pupil's file. A file from another
school never lists this school's enrolments, so it removes none.

A ``full`` file replaces its pupils' contacts and flags, but each pupil's entry only those it
speaks of (``PupilRecord.keeps``): its contacts when it lists a ``Contact``, ``looked_after`` when
``LookedAfter/InCare`` has a value, the SEN flags when ``SENhistory`` has an ``SEN`` of a known
provision. A day's register exported as a full file (UPN and attendance) keeps every contact and
flag: a lost emergency contact is worse than a stale one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any, TypeVar, cast
from xml.etree.ElementTree import Element

from adapters.ctf import fastread
from adapters.ctf.marks import decode_marks
from cme_batch import upn as upn_mod
from cme_batch.dropfolder import (
    MAX_ORDER,
    FileReport,
    MarkCheck,
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
    SchoolInfo,
    SourceBatch,
    Warning_,
)
from cme_batch.model import packed as pack_records
from cme_batch.xmlstream import (
    Prepared,
    XmlRefused,
    iter_elements,
    prepare,
    raw_text_of,
    text_of,
)

T = TypeVar("T")
ROOTS = ("CTfile",)
HEADER = ("CTfile", "Header")
PUPIL = ("CTfile", "CTFpupilData", "Pupil")
PERSONAL = frozenset({"UPN", "Surname", "Forename", "DOB", "PreferredSurname", "PreferredForename",
                      "MiddleNames", "PhoneNo", "Email", "AddressLine1", "PostCode"})
#: The children of ``Pupil`` that ``PupilRecord``'s fields come from, and those flags come from.
PUPIL_DETAILS = frozenset({"Surname", "Forename", "BasicDetails", "DOB", "Sex", "Gender", "Address", "Phones",
                           "Email"})
FLAG_PARTS = frozenset({"LookedAfter", "SENhistory"})
SEN_FLAGS = {"E": "ehcp", "S": "ehcp", "K": "sen_support", "A": "sen_support", "P": "sen_support", "N": None}
#: The flag kinds an ``SENhistory`` speaks of (see ``_Reader.keeps``).
SEN_KINDS = frozenset(k for k in SEN_FLAGS.values() if k)
PLACEHOLDER_SCHOOLS = {"MMM", "MMMM", "XXX", "XXXX", ""}
BS7666 = ("SAON", "PAON", "Street", "Locality", "Town", "AdministrativeArea", "PostTown")
NOT_A_DATE, NOT_YES_NO = "is not a date YYYY-MM-DD", "is not true or false"


def read_file(path: Path, options: Mapping[str, Any], source: str = "ctf", prep: Prepared | None = None
              ) -> SourceBatch:
    """A SourceBatch over one CTF; its records are read lazily, all or nothing.

    ``options``: ``codes`` and ``calendar`` (for warnings), ``school`` (an object with
    ``la_number`` and ``establishment_number``: this school), ``seen`` (shared between the
    files of one run, to warn about one pupil in two files).
    """
    try:
        prep = prep or prepare(path)
        header = next((el for _path, el in iter_elements(prep, ROOTS, (HEADER,))), None)
    except XmlRefused as exc:
        raise ImportRejected(path.name, [str(exc)]) from None
    batch = SourceBatch(source=source, origin=path.name, checksum=prep.checksum, path=path,
                        replaces=frozenset({"contacts", "flags", "enrolments"}))
    batch.warnings.extend(Warning_("encoding", w, path.name) for w in prep.warnings)
    reader = _Reader(prep, batch, options)
    reader.first_header = header
    if header is not None:
        list(reader.header(header))  # settles "this school" and replaces before any record is read
    batch.records = reader.records()
    batch.packed_records = (batch.records, reader.records(packed=True))
    return batch


def child(el: Element, *names: str) -> Element | None:
    """The first child with one of ``names`` (alternatives, e.g. ``Sex``, ``Gender``)."""
    for n in names:
        c = el.find(n)
        if c is not None:
            return c
    return None


def grandchildren(el: Element, name: str, inner: str) -> list[Element]:
    """``el.findall("name/inner")`` without ElementPath: two C-level ``findall`` calls."""
    return [c for x in el.findall(name) for c in x.findall(inner)]


def child_ci(el: Element, name: str) -> Element | None:
    """A child matched ignoring case (header names vary: ``CTFversion`` / ``CTFVersion``)."""
    low = name.lower()
    return next((c for c in el if c.tag.lower() == low), None)


class _Reader:
    def __init__(self, prep: Prepared, batch: SourceBatch, options: Mapping[str, Any]) -> None:
        self.prep, self.batch, self.file = prep, batch, prep.path.name
        self.report = FileReport(self.file, PERSONAL)
        self.check = MarkCheck(options.get("codes"), options.get("calendar"))
        school = options.get("school")
        self.ours: tuple[str, str] | None = (
            (str(school.la_number), str(school.establishment_number)) if school is not None else None)
        self.dest: str | None = None
        #: The file was sent by this school (or does not say who sent it): its unnamed YearData and
        #: history entries are ours. False for an incoming pupil's CTF from their previous school.
        self.from_us = True
        self.seen: dict[Any, str] = options.get("seen", {})
        self.in_file: set[str] = set()
        self.info: SchoolInfo | None = None
        self.n = 0
        self.read: dict[tuple[Callable[[str], Any], str], Any] = {}  # (parser, text) -> value, see value()
        #: ``keeps`` answers: one set for all the pupils that speak of the same parts.
        self.kept: dict[tuple[bool, bool, bool, frozenset[str]], frozenset[str]] = {}
        #: The file's first ``Header`` as ``read_file`` found it (the fast way reads no header itself).
        self.first_header: Element | None = None

    def warn(self, code: str, message: str, dsl_only: bool = False) -> None:
        self.batch.warnings.append(Warning_(code, message, f"{self.file} record {self.n}", dsl_only=dsl_only))

    def records(self, packed: bool = False) -> Iterator[Any]:
        """The file's records; with ``packed``, each as ``model.packed`` gives it (a day's
        register's made so directly, without the records: a reading process hands them over so)."""
        # A simple file (a day's register: UPN, LookedAfter, Attendance) is read by libxml2 and
        # libxslt into one line per pupil (fastread.py), with the same records, warnings and
        # problems as this general reading's.
        lines = self.simple_lines() if self.first_header is not None else None
        try:
            if lines is not None and self.first_header is not None:
                if self.info is not None:  # (read_file has read the header)
                    yield self.info
                yield from self.simple_pupils(lines, packed)
            else:
                yield from self.records_read(packed)
        except XmlRefused as exc:
            self.report.problem(None, None, f"after record {self.n}: {exc}")
        if self.report.problems:
            raise ImportRejected(self.file, self.report.all_problems())
        self.batch.warnings.extend(self.check.warnings(self.file))

    def records_read(self, packed: bool) -> Iterator[Any]:
        """The general reading's records (expat building each ``Pupil``, walked here); with
        ``packed``, each pupil's packed as ``model.packed`` packs them."""
        headers = 0
        for path, el in iter_elements(self.prep, ROOTS, (HEADER, PUPIL)):
            if path == HEADER:
                headers += 1
                if self.info is None and (headers > 1 or self.first_header is None):
                    list(self.header(el))  # (the first header, read_file has read: its warnings once)
                if self.info is not None:
                    yield self.info
            else:
                self.n += 1
                if packed:
                    yield from pack_records(self.pupil(el))
                else:
                    yield from self.pupil(el)

    def simple_lines(self) -> list[str] | None:
        """``fastread.pupil_lines``, or None (the general reading) should it fail in any way: it is
        only a faster way through some files, never a reason a file is not read."""
        try:
            return fastread.pupil_lines(self.prep)
        except Exception:  # noqa: BLE001 - the general reader reads the file, and words any refusal
            return None

    def header(self, h: Element) -> Iterator[Record]:
        version = text_of(child_ci(h, "CTFversion"))
        if version is None:
            self.warn("ctf_version", "the header has no CTFversion")
        qualifier = (text_of(child_ci(h, "DocumentQualifier")) or "full").lower()
        if qualifier == "partial":  # a partial file need not list every contact, flag or enrolment
            self.batch.replaces = frozenset()
        src = child_ci(h, "SourceSchool")
        if src is not None:
            la, estab = text_of(child_ci(src, "LEA")), text_of(child_ci(src, "Estab"))
            if self.ours is None and la and estab:
                self.ours = (la, estab)
            if la and estab and self.ours is not None and (la, estab) != self.ours:
                self.from_us = False  # another school's file: it cannot list our enrolments
                self.batch.replaces = self.batch.replaces - {"enrolments"}
            self.info = SchoolInfo(la, estab, text_of(child_ci(src, "SchoolName")))
            yield self.info
        dst = child_ci(h, "DestSchool")
        if dst is not None:
            la, estab = text_of(child_ci(dst, "LEA")) or "", text_of(child_ci(dst, "Estab")) or ""
            if la.upper() not in PLACEHOLDER_SCHOOLS and estab.upper() not in PLACEHOLDER_SCHOOLS and (
                    (la, estab) != self.ours):
                self.dest = f"{la}/{estab}"

    # -- values ------------------------------------------------------------------------------
    def date_of(self, el: Element | None, fld: str) -> date | None:
        return self.value(el, fld, parse_date, NOT_A_DATE)

    def yes_no(self, el: Element | None, fld: str) -> bool | None:
        return self.value(el, fld, parse_bool, NOT_YES_NO)

    def value(self, el: Element | None, fld: str, parse: Callable[[str], T], wrong: str) -> T | None:
        """``parse`` of the element's text, remembered per text: every pupil of a day's file has
        the same start date. A text that does not parse is a problem each time it is met."""
        return self.parsed(text_of(el), fld, parse, wrong)

    def parsed(self, raw: str | None, fld: str, parse: Callable[[str], T], wrong: str) -> T | None:
        """``value`` of a text (stripped, None when empty)."""
        if raw is None:
            return None
        known = self.read.get((parse, raw))
        if known is None:
            known = self.report.convert(self.n, fld, raw, parse, wrong)
            if known is not None:
                self.read[(parse, raw)] = known
        return cast(T, known)

    def is_ours(self, el: Element) -> bool:
        """``el`` (a ``YearData`` or ``SchoolHistory/School``) is this school's; one that does not
        name its school is the sending school's."""
        return self.names_ours(text_of(el.find("LEA")), text_of(el.find("Estab")))

    def names_ours(self, la: str | None, estab: str | None) -> bool:
        """``is_ours`` of an entry naming LA ``la`` and establishment ``estab`` (stripped texts or None)."""
        if la is None or estab is None:
            return self.from_us
        return self.ours is None or (la, estab) == self.ours

    def address(self, el: Element | None) -> Address | None:
        if el is None:
            return None
        bs = el.find("BS7666Address")
        lines: list[str] = []
        if bs is not None:
            saon, paon, street = (text_of(bs.find(n)) for n in BS7666[:3])
            lines = [x for x in (saon, " ".join(x for x in (paon, street) if x) or None,
                                 *(text_of(bs.find(n)) for n in BS7666[3:])) if x]
        al = el.find("AddressLines")
        if al is not None:
            lines += [v for i in range(1, 6) if (v := text_of(al.find(f"AddressLine{i}")))]
        post = text_of(el.find("PostCode"))
        return Address(tuple(lines), post) if lines or post else None

    @staticmethod
    def phones(el: Element) -> tuple[str, ...]:
        return tuple(v for p in grandchildren(el, "Phones", "Phone") if (v := text_of(p.find("PhoneNo"))))

    # -- one pupil ---------------------------------------------------------------------------
    def identify(self, raw: str | None) -> tuple[str, str | None] | None:
        """The pupil's key and UPN from the UPN's text (stripped, None when empty), with the UPN's
        warnings and the checks for a pupil met before; None (and a problem) without a UPN."""
        if raw is None:
            self.report.problem(self.n, "UPN", "is missing: a CTF identifies each pupil by UPN")
            return None
        key = upn_mod.normalise(raw) or raw
        upn: str | None = key
        if why := upn_mod.problem(key):
            self.warn("bad_upn", f"UPN: {why}")
            if len(key) != 13:
                upn = None
        if key in self.in_file:
            self.warn("duplicate_pupil", "this pupil appears twice in this file; the later entry wins")
        elsewhere = self.seen.get(key)
        if elsewhere and elsewhere != self.file:
            self.warn("duplicate_pupil", f"this pupil is also in {elsewhere}")
        self.in_file.add(key)
        self.seen[key] = self.file
        return key, upn

    def simple_pupils(self, lines: list[str], packed: bool = False) -> Iterator[Any]:
        """The records of a simple file's pupils, one line each (``fastread.pupil_lines``): what
        ``pupil`` makes of the same pupils, through the same methods, in the same order.

        Most pupils of a day's file have the same line after their UPN (the school, the start date,
        the marks): what such a text gives is worked out once, unless it gave a problem (a problem
        is one for each pupil that has it). Only ``check.strip`` depends on the pupil (the record
        number of a warning), and is called for each run unless it noted nothing the first time.
        With ``packed``, each record is made as ``model.packed`` would pack it (tuples of texts),
        without the record: what a reading process hands over.
        """
        field, named_pupil, report = fastread.FIELD, PupilRecord.named, self.report
        plans: dict[str, tuple[bool, bool, str | None, list[list[Any]]]] = {}
        for line in lines:
            self.n += 1
            upn_text, _, rest = line.partition(field)
            named = self.identify(upn_text.strip() or None)
            if named is None:
                continue
            key, upn = named
            self.keep_enrolments()  # a simple file has no school history: it says nothing about enrolments
            plan = plans.get(rest)
            if plan is None:
                problems = len(report.problems) + report.dropped
                plan = self._plan(rest.split(field))
                if len(report.problems) + report.dropped == problems:
                    plans[rest] = plan
            in_care, looked_after, detail, runs = plan
            # no Contacts, no SENhistory: what the file replaces of them is kept
            keeps = self.keeps(False, in_care, False)
            if not packed:
                yield named_pupil(key, upn, keeps)
            elif keeps:
                yield key, upn, keeps
            else:
                yield key, upn
            if looked_after:
                yield FlagRecord(key, "looked_after", detail=detail)
            for run in runs:  # [start, codes, whether check.strip notes nothing (None: not known yet)]
                start, codes, quiet = run
                if quiet is None:
                    before = self._noted()
                    self.check.strip(start, codes, self.n)
                    run[2] = self._noted() == before
                elif not quiet:
                    self.check.strip(start, codes, self.n)
                yield (key, start, codes) if packed else MarksRecord(key, start, codes)

    def _plan(self, f: list[str]) -> tuple[bool, bool, str | None, list[list[Any]]]:
        """What a pupil's fields after the UPN give (``fastread.pupil_lines``): whether ``InCare`` has
        a value, whether looked after, the care authority, and the runs of marks of this school
        (problems reported as ``pupil``)."""
        in_care = f[0].strip() or None
        looked_after = bool(self.parsed(in_care, "LookedAfter/InCare", parse_bool, NOT_YES_NO))
        runs: list[list[Any]] = []
        i, ours = 2, False
        while i < len(f):
            if f[i] == "Y":  # a YearData: "Y", LEA, Estab
                ours = self.names_ours(f[i + 1].strip() or None, f[i + 2].strip() or None)
                i += 3
                continue
            if ours:  # one of its runs: "B", the start date's element, the start date, the marks
                run = self.run(f[i + 3] or None, fastread.START_TAGS[f[i + 1]], f[i + 2].strip() or None)
                if run is not None:
                    runs.append([*run, None])
            i += 4
        return in_care is not None, looked_after, f[1].strip() or None, runs

    def _noted(self) -> tuple[int, int]:
        """How much ``check.strip`` has noted (marks outside the calendar, unknown codes): a run after
        which this is unchanged notes nothing, whatever the record, each time it is met."""
        return self.check.outside[0], sum(n for n, _first in self.check.unknown.values())

    def pupil(self, p: Element) -> Iterator[Record]:
        named = self.identify(text_of(p.find("UPN")))
        if named is None:
            return
        key, upn = named
        # A day's partial CTF often carries a UPN and attendance only: the parts a pupil does
        # not have are not searched for (each search is a call per pupil).
        tags = {c.tag for c in p}
        listed = grandchildren(p, "Contacts", "Contact") if "Contacts" in tags else []
        la = p.find("LookedAfter") if "LookedAfter" in tags else None
        keeps = self.keeps(bool(listed), la is not None and text_of(la.find("InCare")) is not None,
                           "SENhistory" in tags and any((text_of(sen.find("SENprovision")) or "").upper() in SEN_FLAGS
                                                        for sen in grandchildren(p, "SENhistory", "SEN")))
        address: Address | None = None
        if tags.isdisjoint(PUPIL_DETAILS):
            yield PupilRecord.named(key, upn, keeps)
        else:
            basic = p.find("BasicDetails")

            def b(name: str) -> str | None:
                return text_of(basic.find(name)) if basic is not None else None

            ncy = b("NCyearActual")
            former = upn_mod.normalise(b("FormerUPN") or "")
            address = self.address(p.find("Address"))
            yield PupilRecord(
                pupil_key=key, upn=upn, legal_surname=text_of(p.find("Surname")),
                legal_forename=text_of(p.find("Forename")), preferred_surname=b("PreferredSurname"),
                preferred_forename=b("PreferredForename"), middle_names=b("MiddleNames"),
                dob=self.date_of(p.find("DOB"), "DOB"), sex=text_of(child(p, "Sex", "Gender")),
                year_group=year_group(ncy) if ncy else None, address=address, phones=self.phones(p),
                emails=tuple(v for e in p.findall("Email") if (v := text_of(e))),
                former_upns=(former,) if former and former != key and len(former) == 13 else (), keeps=keeps)
        if listed:
            yield from self.contacts(listed, key, address)
        if not tags.isdisjoint(FLAG_PARTS):
            yield from self.flags(p, key)
        entries = 0
        if "SchoolHistory" in tags:
            for rec in self.history(p, key):
                entries += 1
                yield rec
        if not entries:
            self.keep_enrolments()
        if "Attendance" in tags:
            yield from self.attendance(p, key)

    def keeps(self, contacts: bool, in_care: bool, sen: bool) -> frozenset[str]:
        """``PupilRecord.keeps`` of a pupil whose entry lists a contact (``contacts``), gives
        ``LookedAfter/InCare`` a value (``in_care``) and has an ``SEN`` of a known provision (``sen``):
        of what the file replaces, what the entry says nothing of.

        A part the entry leaves out, or gives empty, is not "none": a day's register exported as
        a full file has no ``Contacts`` (nor does GIAP's CTF, nor one whose MIS left contacts out of
        the export), and a schema of 2010 made every file full. Removing the pupil's stored
        contacts would leave the office no one to call when the child is absent, and its stored
        looked-after flag, no "inform Social Care" alert: a stale contact or flag is the lesser
        harm. So the entry replaces the contacts it lists, and says a child is no longer looked
        after (``InCare`` false) or has no SEN (provision ``N``) only in so many words.
        """
        replaces = self.batch.replaces
        key = (contacts, in_care, sen, replaces)
        known = self.kept.get(key)
        if known is None:
            parts = {"contacts"} if not contacts and "contacts" in replaces else set()
            if "flags" in replaces:
                parts |= (set() if in_care else {"looked_after"}) | (set() if sen else SEN_KINDS)
            known = self.kept[key] = frozenset(parts)
        return known

    def keep_enrolments(self) -> None:
        """A pupil with no school-history entry of this school says nothing about its enrolments
        here (the MIS left the history out): the file removes none, even if ``full``. Removing them
        would take a stored leaving, and its open "destination unknown" case, with them."""
        self.batch.replaces = self.batch.replaces - {"enrolments"}

    def contacts(self, listed: list[Element], key: str, pupil_address: Address | None) -> Iterator[ContactRecord]:
        """The pupil's contacts, from its ``Contacts/Contact`` elements (``listed``)."""
        keys: set[str] = set()
        for i, c in enumerate(listed, 1):
            order = self.value(c.find("Order"), f"Contact {i} Order", parse_order,
                               f"is not a whole number from 0 to {MAX_ORDER}")
            ckey = f"order:{order}" if order is not None else f"contact:{i}"
            if ckey in keys:
                ckey = f"contact:{i}"
            keys.add(ckey)
            # ``AddressAsPupil`` straight in ``Contact``, or inside its ``Address`` (Aspen's writer)
            addr = c.find("Address")
            as_pupil_el = c.find("AddressAsPupil")
            if as_pupil_el is None and addr is not None:
                as_pupil_el = addr.find("AddressAsPupil")
            as_pupil = self.yes_no(as_pupil_el, f"Contact {i} AddressAsPupil")
            yield ContactRecord(
                pupil_key=key, contact_key=ckey, priority=order, title=text_of(c.find("Title")),
                surname=text_of(c.find("Surname")), forename=text_of(c.find("Forename")),
                relationship=text_of(c.find("Relationship")),
                parental_responsibility=self.yes_no(c.find("Responsibility"), f"Contact {i} Responsibility"),
                phones=self.phones(c), emails=tuple(v for e in c.findall("Email") if (v := text_of(e))),
                address=pupil_address if as_pupil else self.address(addr))

    def flags(self, p: Element, key: str) -> Iterator[FlagRecord]:
        la = p.find("LookedAfter")
        if la is not None and self.yes_no(la.find("InCare"), "LookedAfter/InCare"):
            yield FlagRecord(key, "looked_after", detail=text_of(la.find("CareAuthority")))
        done: set[tuple[str, date | None]] = set()
        for sen in grandchildren(p, "SENhistory", "SEN"):
            prov = (text_of(sen.find("SENprovision")) or "").upper()
            if prov not in SEN_FLAGS:
                self.warn("unknown_sen_status", f"SENprovision {prov!r} is not E, K or N; ignored", dsl_only=True)
                continue
            kind = SEN_FLAGS[prov]
            start = self.date_of(sen.find("StartDate"), "SEN/StartDate")
            if kind and (kind, start) not in done:
                done.add((kind, start))
                yield FlagRecord(key, kind, start=start)

    def history(self, p: Element, key: str) -> Iterator[EnrolmentRecord]:
        """This school's entries of the pupil's school history, one enrolment per entry date.

        The store keeps one admission per first day: two entries of this school with one entry
        date are the same entry given twice (read once) or a contradiction, which refuses the file
        (the first used to be kept without a word, a leaving date in the second lost)."""
        done: dict[date | None, EnrolmentRecord] = {}
        for s in grandchildren(p, "SchoolHistory", "School"):
            if not self.is_ours(s) or text_of(s.find("LEA")) is None:
                continue
            entry = self.date_of(s.find("EntryDate"), "SchoolHistory/EntryDate")
            leaving = self.date_of(s.find("LeavingDate"), "SchoolHistory/LeavingDate")
            reason = text_of(s.find("LeavingReason"))
            if leaving is None and reason is not None:
                # a leaving without its date: stored, the child stayed on roll and no "destination
                # unknown" case could open, whatever the reason said
                self.report.problem(self.n, "SchoolHistory/LeavingDate", "is missing where a LeavingReason is "
                                    "given: record the date the child left in the MIS (or remove the reason)")
            rec = EnrolmentRecord(pupil_key=key, entry_date=entry, leaving_date=leaving, leaving_reason=reason,
                                  destination=self.dest if leaving else None)
            first = done.get(entry)
            if first is None:
                done[entry] = rec
                yield rec
            elif first != rec:
                fld = "LeavingDate" if first.leaving_date != rec.leaving_date else "LeavingReason"
                self.report.problem(self.n, f"SchoolHistory/{fld}", "differs between two entries of this school with "
                                    "the same EntryDate: one admission is one entry; correct the pupil's school "
                                    "history in the MIS")

    def attendance(self, p: Element, key: str) -> Iterator[MarksRecord]:
        for yd in grandchildren(p, "Attendance", "YearData"):
            if not self.is_ours(yd):
                continue
            # Usually one AttendSessions (or none: the detail straight in YearData); a writer may
            # give several runs of the year, and each is read.
            yield from self.sessions(yd.findall("AttendSessions") or (yd,), key)

    def sessions(self, boxes: Iterable[Element], key: str) -> Iterator[MarksRecord]:
        for box in boxes:
            start_el = child(box, "AttendanceStartDate", "AttendStartDate")
            rec = self.session(key, raw_text_of(box.find("AttendanceMarks")),  # a blank at either end is a session
                               start_el.tag if start_el is not None else None, text_of(start_el))
            if rec is not None:
                yield rec

    def session(self, key: str, marks: str | None, start_tag: str | None, start_text: str | None
                ) -> MarksRecord | None:
        """One run of marks (see ``run``), noted by the mark check."""
        run = self.run(marks, start_tag, start_text)
        if run is None:
            return None
        start, codes = run
        self.check.strip(start, codes, self.n)
        return MarksRecord(key, start, codes)

    def run(self, marks: str | None, start_tag: str | None, start_text: str | None) -> tuple[date, str] | None:
        """The start and codes of a run of marks, from ``marks`` as written (None when empty), the name
        of the start date's element (None when there is none) and its text (stripped, None when
        empty); None (with a problem when one of the two is missing or wrong) when there is none."""
        if marks is None and start_tag is None:
            return None  # summary counts only: nothing to store per session
        start = self.parsed(start_text, start_tag or "AttendanceStartDate", parse_date, NOT_A_DATE)
        if start is None or marks is None:
            if start_tag is None or marks is None:
                self.report.problem(self.n, "AttendanceMarks" if marks is None else "AttendanceStartDate",
                                    "is missing while the rest of the session detail is there")
            elif start_text is None:  # written but empty: the marks cannot be placed, and must not vanish
                self.report.problem(self.n, start_tag, "is empty while the marks are there: the marks cannot be "
                                                       "placed without the date of their first session")
            return None
        try:
            return decode_marks(start, marks)
        except ValueError as exc:
            self.report.problem(self.n, "AttendanceMarks", str(exc))
            return None
