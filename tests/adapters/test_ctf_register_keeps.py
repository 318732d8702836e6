"""A full CTF keeps the contacts and flags it says nothing about.

``DocumentQualifier`` ``full`` (the default when a file has none) replaces the contacts and flags
of the pupils in the file. A day's register exported as a full file carries each pupil's UPN and
attendance only, and used to remove every stored contact and flag of every pupil on it: the
office's morning mail had no emergency contact to call, and a looked-after child's absence no
longer raised the "inform Social Care" alert. A pupil's entry now replaces only what it holds:
its contacts when it lists a ``Contact``, ``looked_after`` when ``LookedAfter/InCare`` has a value,
SEN flags when ``SENhistory`` has an ``SEN`` with a known provision.

Each test stores the school's full CTF (contacts and flags) through the import command's own
path into a real SQLite store, imports the later file the same way, and reads the store's
``contacts`` and ``flags`` tables, as the morning mail and the engine do. A day's register is read
by the fast reader; the same file with a comment after the header is read by the general one;
each is also read in a second process (``readahead``), as a file of 4 MB or more is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from sqlalchemy import Engine, select

from adapters.ctf import fastread
from adapters.ctf.parser import read_file
from adapters.ctf.writer import write_ctf
from cme_batch import readahead, upn
from cme_batch.app import App
from cme_batch.importer import import_files
from cme_batch.model import ContactRecord, EnrolmentRecord, FlagRecord, PupilRecord, Record, SchoolInfo
from cme_batch.store import tables as t
from cme_batch.xmlstream import prepare

US = SchoolInfo("916", "2999", "The John Moore Primary School")
AMY, BEN, CAL = (upn.make(f"9162999250{i:02d}") for i in (1, 2, 3))
ENTRY = date(2022, 9, 5)

#: Each stored pupil -> (its contacts' keys, its flags), after the school's full CTF.
STORED = {AMY: (["order:1", "order:2"], ["looked_after", "sen_support"]),
          BEN: (["order:1"], ["ehcp"]),
          CAL: (["order:1"], ["sen_support"])}


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.sqlite'}"


def school_records() -> list[Record]:
    """Three pupils on roll, each with emergency contacts and flags."""
    out: list[Record] = []
    for key, surname, forename, dob in ((AMY, "Ash", "Amy", date(2018, 4, 1)), (BEN, "Birch", "Ben", date(2018, 6, 1)),
                                        (CAL, "Cedar", "Cal", date(2018, 8, 1))):
        out += [PupilRecord(key, upn=key, legal_surname=surname, legal_forename=forename, dob=dob, sex="F",
                            year_group="2"),
                ContactRecord(key, "order:1", priority=1, surname=surname, forename="Parent", relationship="Mother",
                              parental_responsibility=True, phones=("01452 000001",)),
                EnrolmentRecord(key, entry_date=ENTRY)]
    out += [ContactRecord(AMY, "order:2", priority=2, surname="Ash", forename="Gran", relationship="Grandparent",
                          phones=("01452 000002",)),
            FlagRecord(AMY, "looked_after", detail="Gloucestershire"),
            FlagRecord(AMY, "sen_support", start=date(2024, 9, 1)),
            FlagRecord(BEN, "ehcp", start=date(2023, 9, 1)),
            FlagRecord(CAL, "sen_support", start=date(2024, 9, 1))]
    return out


def stored(engine: Engine) -> dict[str, tuple[list[str], list[str]]]:
    """Each pupil's stored contacts (keys) and flags (kinds), by UPN."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    with engine.connect() as conn:
        for (u,) in conn.execute(select(t.pupils.c.upn).order_by(t.pupils.c.upn)):
            out[u] = ([], [])
        for u, key in conn.execute(select(t.pupils.c.upn, t.contacts.c.contact_key)
                                   .join(t.pupils, t.pupils.c.id == t.contacts.c.pupil_id)):
            out[u][0].append(key)
        for u, kind in conn.execute(select(t.pupils.c.upn, t.flags.c.kind)
                                    .join(t.pupils, t.pupils.c.id == t.flags.c.pupil_id)):
            out[u][1].append(kind)
    return {u: (sorted(c), sorted(f)) for u, (c, f) in out.items()}


@contextmanager
def reading(second_process: bool) -> Iterator[list[bool]]:
    """Import with the records read here (each answer of the fast reader recorded), or in a second
    process, as a large file is (the answers are then the child's, not recorded)."""
    real, taken = fastread.pupil_lines, []

    def spy(prep: Any) -> list[str] | None:
        lines = real(prep)
        taken.append(lines is not None)
        return lines

    with mock.patch.object(fastread, "pupil_lines", spy), \
            mock.patch.object(readahead, "MIN_BYTES", 0 if second_process else 1 << 62):
        yield taken


def import_ctf(app: App, path: Path, second_process: bool = False) -> list[bool]:
    """Import one CTF the way ``cme-batch import`` does; whether the fast reader read it."""
    with reading(second_process) as taken:
        assert [o.status for o in import_files(app, [path], "ctf")] == ["ok"]
    return taken


@pytest.fixture
def school(app: App, tmp_path: Path) -> App:
    """The app, its store holding the school's full CTF."""
    import_ctf(app, write_ctf(tmp_path / "school.xml", school_records(), US))
    assert stored(app.engine()) == STORED
    return app


def ctf(path: Path, pupils: list[str], qualifier: str | None = "full", comment: bool = False) -> Path:
    """A CTF of this school with ``pupils`` (the XML of each ``Pupil``'s children)."""
    head = ("<Header><DocumentName>Common Transfer File</DocumentName><CTFversion>25.0</CTFversion>"
            "<DateTime>2025-11-06T18:00:00</DateTime>"
            + (f"<DocumentQualifier>{qualifier}</DocumentQualifier>" if qualifier else "")
            + "<SupplierID>TEST</SupplierID><SourceSchool><LEA>916</LEA><Estab>2999</Estab>"
            "<SchoolName>The John Moore Primary School</SchoolName><AcademicYear>2025</AcademicYear></SourceSchool>"
            "<DestSchool><LEA>916</LEA><Estab>2999</Estab></DestSchool></Header>\n")
    body = "".join(f"    <Pupil>{p}</Pupil>\n" for p in pupils)
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n<CTfile>\n  ' + head
                    + ("  <!-- the day's register -->\n" if comment else "")
                    + f"  <CTFpupilData>\n{body}  </CTFpupilData>\n</CTfile>\n", encoding="utf-8")
    return path


def attendance(marks: str = "/\\") -> str:
    return ("<Attendance><YearData><Year>2025</Year><LEA>916</LEA><Estab>2999</Estab>"
            "<SessionsPossible>2</SessionsPossible><AttendSessions><AttendanceStartDate>2025-11-06"
            f"</AttendanceStartDate><AttendanceMarks>{marks}</AttendanceMarks></AttendSessions></YearData></Attendance>")


def register(path: Path, qualifier: str | None, general: bool) -> Path:
    """A day's register: each pupil's UPN and marks, the looked-after child's ``LookedAfter``
    (restated); a comment after the header when it is to be read the general way."""
    in_care = "<LookedAfter><InCare>true</InCare><CareAuthority>Gloucestershire</CareAuthority></LookedAfter>"
    return ctf(path, [f"<UPN>{AMY}</UPN>{in_care}{attendance()}", f"<UPN>{BEN}</UPN>{attendance('NN')}",
                      f"<UPN>{CAL}</UPN>{attendance()}"], qualifier, comment=general)


@pytest.mark.parametrize("second_process", [False, True], ids=["read-here", "read-ahead"])
@pytest.mark.parametrize("qualifier", ["full", None], ids=["full", "no-qualifier"])
@pytest.mark.parametrize("general", [False, True], ids=["fast-reader", "general-reader"])
def test_a_full_days_register_keeps_every_contact_and_flag(school: App, tmp_path: Path, qualifier: str | None,
                                                           general: bool, second_process: bool) -> None:
    path = register(tmp_path / "register.xml", qualifier, general)
    assert (fastread.pupil_lines(prepare(path)) is None) == general, "the file is read the way the test says"
    taken = import_ctf(school, path, second_process)
    assert taken == ([] if second_process else [not general])
    assert stored(school.engine()) == STORED


def details(u: str, surname: str) -> str:
    return (f"<UPN>{u}</UPN><Surname>{surname}</Surname><Forename>Pat</Forename><DOB>2018-04-01</DOB><Sex>F</Sex>"
            "<BasicDetails><NCyearActual>2</NCyearActual></BasicDetails>")


AMY_NOW = (details(AMY, "Ash") + "<LookedAfter><InCare>false</InCare></LookedAfter>"
           "<SENhistory><SEN><StartDate>2025-09-01</StartDate><SENprovision>N</SENprovision></SEN></SENhistory>"
           "<Contacts><Contact><Order>1</Order><Surname>Ash</Surname><Forename>Parent</Forename>"
           "<Relationship>Mother</Relationship><Phones><Phone><PhoneNo>01452 000001</PhoneNo></Phone></Phones>"
           "</Contact></Contacts>" + attendance())


@pytest.mark.parametrize("second_process", [False, True], ids=["read-here", "read-ahead"])
@pytest.mark.parametrize("ben", [details(BEN, "Birch"),
                                 details(BEN, "Birch") + "<LookedAfter/><SENhistory/><Contacts/>" + attendance(),
                                 details(BEN, "Birch") + "<LookedAfter><InCare> </InCare></LookedAfter>"],
                         ids=["no-parts", "empty-parts", "no-in-care-value"])
def test_a_full_file_replaces_what_each_pupil_lists_and_keeps_what_it_leaves_out(
        school: App, tmp_path: Path, ben: str, second_process: bool) -> None:
    """Amy's entry lists one contact (the MIS deleted the other), says she is no longer in care and
    has no SEN: those are replaced. Ben's entry has his details but no contact and no flag (or
    empty parts): his are kept. Cal is left out of the file: hers are kept."""
    import_ctf(school, ctf(tmp_path / "full.xml", [AMY_NOW, ben]), second_process)
    assert stored(school.engine()) == {AMY: (["order:1"], []), BEN: STORED[BEN], CAL: STORED[CAL]}


def test_a_partial_register_changes_nothing_either(school: App, tmp_path: Path) -> None:
    import_ctf(school, register(tmp_path / "register.xml", "partial", general=False))
    assert stored(school.engine()) == STORED


@pytest.mark.parametrize("qualifier", ["full", "partial"])
def test_both_readers_give_each_pupil_of_a_register_the_same_keeps(tmp_path: Path, qualifier: str) -> None:
    """What each pupil record keeps is the same whichever reader reads the file (the two readers'
    records are compared elsewhere, where ``keeps``, not part of a record's value, is not)."""
    dan = upn.make("916299925004")
    path = ctf(tmp_path / "day.xml", [f"<UPN>{AMY}</UPN><LookedAfter><InCare>true</InCare></LookedAfter>{attendance()}",
                                      f"<UPN>{BEN}</UPN><LookedAfter><InCare> </InCare></LookedAfter>{attendance()}",
                                      f"<UPN>{CAL}</UPN><LookedAfter/>{attendance()}",
                                      f"<UPN>{dan}</UPN>{attendance()}"], qualifier)
    real = fastread.pupil_lines
    assert real(prepare(path)) is not None

    def keeps(fast: bool) -> list[tuple[str, frozenset[str]]]:
        with mock.patch.object(fastread, "pupil_lines", real if fast else lambda prep: None):
            return [(r.pupil_key, r.keeps) for r in read_file(path, {}).records if isinstance(r, PupilRecord)]

    silent = frozenset({"contacts", "ehcp", "sen_support"}) if qualifier == "full" else frozenset()
    expected = [(AMY, silent)] + [(u, silent | ({"looked_after"} if silent else set())) for u in (BEN, CAL, dan)]
    assert keeps(True) == keeps(False) == expected


@pytest.mark.parametrize("silent_first", [True, False], ids=["silent-entry-first", "silent-entry-last"])
def test_a_pupil_twice_in_a_full_file_has_replaced_what_either_entry_lists(school: App, tmp_path: Path,
                                                                           silent_first: bool) -> None:
    """Amy twice (a duplicate_pupil warning): one entry with her details only, one listing her
    contact and flags. What one entry lists is hers, whichever comes first."""
    entries = [details(AMY, "Ash"), AMY_NOW]
    import_ctf(school, ctf(tmp_path / "twice.xml", entries if silent_first else entries[::-1]))
    assert stored(school.engine()) == {**STORED, AMY: (["order:1"], [])}
