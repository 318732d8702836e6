"""Shapes real CTF writers use that the parser did not expect (review against published sources).

Each test writes a small file in the shape a cited source writes, and checks it is read.

- A contact living with the pupil: Follett Aspen's CTF writer puts ``AddressAsPupil`` inside the
  contact's ``Address`` (``Contact/Address/AddressAsPupil``), and its reader looks for it there
  (repository EvgeniiTrofimov/aspenProject, tool-source/src/main/procedures/com/x2dev/procedures/
  statereporting/uk/DfEExportManager.java, the contact address; DfEContact.java, the constructor).
  This project's writer, and formats.md 1.3, put it straight in ``Contact``. Both are read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.ctf import CtfSource, fastread
from cme_batch.model import ContactRecord, PupilRecord
from cme_batch.xmlstream import prepare

HEADER = """<Header><DocumentName>Common Transfer File</DocumentName><CTFversion>25.0</CTFversion>
<DateTime>2025-11-14T18:00:00</DateTime><DocumentQualifier>full</DocumentQualifier><SupplierID>TEST</SupplierID>
<SourceSchool><LEA>916</LEA><Estab>2999</Estab><SchoolName>Example Primary School</SchoolName>
<AcademicYear>2025</AcademicYear></SourceSchool><DestSchool><LEA>916</LEA><Estab>2999</Estab></DestSchool></Header>"""

PUPIL_ADDRESS = """<Address><AddressLines><AddressLine1>1 Example Street</AddressLine1>
<AddressLine2>Gloucester</AddressLine2></AddressLines><PostCode>GL1 1AA</PostCode></Address>"""


def _file(tmp_path: Path, contact_address: str) -> Path:
    path = tmp_path / "ctf-contact.xml"
    path.write_text(f"""<?xml version="1.0" encoding="UTF-8"?>
<CTfile>{HEADER}<CTFpupilData><Pupil><UPN>A123456789012</UPN><Surname>Example</Surname><Forename>Alex</Forename>
<DOB>2018-05-01</DOB><Sex>M</Sex>{PUPIL_ADDRESS}
<Contacts><Contact><Order>1</Order><Surname>Example</Surname><Forename>Sam</Forename><Relationship>PAM</Relationship>
<Responsibility>true</Responsibility>{contact_address}
<Phones><Phone><TelephoneType>M</TelephoneType><PhoneNo>07700 900123</PhoneNo></Phone></Phones></Contact></Contacts>
</Pupil></CTFpupilData></CTfile>""", encoding="utf-8")
    return path


def _read(path: Path) -> tuple[PupilRecord, list[ContactRecord]]:
    records = list(CtfSource.parse_file(path, {}).records)
    pupil = next(r for r in records if isinstance(r, PupilRecord))
    return pupil, [r for r in records if isinstance(r, ContactRecord)]


@pytest.mark.parametrize("shape", [
    "<Address><AddressAsPupil>true</AddressAsPupil></Address>",  # Aspen's writer
    "<AddressAsPupil>true</AddressAsPupil>",  # formats.md 1.3, this project's writer
])
def test_a_contact_address_as_pupil_inside_address_gives_the_pupils_address(tmp_path: Path, shape: str) -> None:
    pupil, contacts = _read(_file(tmp_path, shape))
    assert pupil.address is not None and pupil.address.postcode == "GL1 1AA"
    assert [c.address for c in contacts] == [pupil.address], "the contact lives at the pupil's address"


def test_a_contact_address_as_pupil_false_inside_address_reads_the_address_given(tmp_path: Path) -> None:
    own = ("<Address><AddressAsPupil>false</AddressAsPupil><AddressLines><AddressLine1>7 Other Road"
           "</AddressLine1></AddressLines><PostCode>GL2 2BB</PostCode></Address>")
    _pupil, contacts = _read(_file(tmp_path, own))
    assert len(contacts) == 1 and contacts[0].address is not None
    assert (contacts[0].address.lines, contacts[0].address.postcode) == (("7 Other Road",), "GL2 2BB")


def test_a_file_with_contacts_is_read_the_general_way_only(tmp_path: Path) -> None:
    """The fast reader takes no file with contacts, so both readers read this shape the same."""
    path = _file(tmp_path, "<Address><AddressAsPupil>true</AddressAsPupil></Address>")
    assert fastread.pupil_lines(prepare(path)) is None
