"""Fictional referral data and test certificates, shared by the referral tests and the docs sample.

``seed_case`` loads one fictional child (with contacts, a sibling, flags and a term of marks
ending in a ten-day unexplained streak) through ``store.ingest.apply_batch`` and inserts the
case and its events the way the engine and the replies stage write them. ``make_pki`` makes a
throwaway CA, LA, school-archive and school-signing certificate with ``cryptography``.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pypdf
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import Engine, insert

from cme_batch.config import Config
from cme_batch.model import (
    Address,
    ContactRecord,
    EnrolmentRecord,
    FlagRecord,
    MarksRecord,
    PupilRecord,
    SourceBatch,
)
from cme_batch.referral.bundle import Bundle, build_bundle
from cme_batch.store import tables as t
from cme_batch.store.ingest import apply_batch, ensure_school

NOW = datetime(2025, 12, 1, 6, 0, tzinfo=UTC)
HOME = Address(("14 Imaginary Lane", "Tewkesbury"), "GL20 9ZZ")
EPISODE_START = date(2025, 11, 17)
LAST_DAY = date(2025, 11, 28)
HALF_TERM = (date(2025, 10, 27), date(2025, 10, 31))
CLOSURES = (date(2025, 9, 1), date(2025, 11, 3))
_serial = itertools.count(1)


@dataclass
class Family:
    """One fictional child and the people around them; every field can be replaced per test."""

    child: PupilRecord = field(default_factory=lambda: PupilRecord(
        "P1", upn="A916299925001", legal_surname="Marsh-Ellery", legal_forename="Amelia", middle_names="Rose",
        preferred_forename="Millie", dob=date(2017, 3, 14), sex="F", year_group="3", reg_group="3W",
        address=HOME, phones=("01684 555101",)))
    contacts: list[ContactRecord] = field(default_factory=lambda: [
        ContactRecord("P1", "C100", 1, "Ms", "Marsh", "Joanna", "Mother", True, True, ("07700 900101",),
                      ("j.marsh@example.invalid",), HOME),
        ContactRecord("P1", "C101", 2, "Mr", "Ellery", "Daniel", "Father", True, False, ("07700 900102",), (),
                      Address(("3 Fictitious Road", "Cheltenham"), "GL50 9ZZ")),
        ContactRecord("P1", "C102", 3, "Mrs", "Marsh", "Patricia", "Grandmother", False, False,
                      ("01452 555103",), ()),
    ])
    siblings: list[PupilRecord] = field(default_factory=lambda: [
        PupilRecord("P2", upn="A916299925002", legal_surname="Marsh-Ellery", legal_forename="Oliver",
                    dob=date(2019, 6, 2), sex="M", year_group="1", address=HOME),
    ])
    flags: list[FlagRecord] = field(default_factory=lambda: [
        FlagRecord("P1", "sen_support", date(2024, 9, 1)),
        FlagRecord("P1", "highly_mobile", date(2023, 9, 1), detail="Armed forces family"),
    ])
    kind: str = "unexplained_absence"
    confirmed: bool = True
    referred: bool = False


def school_days(start: date, end: date) -> list[date]:
    out, d = [], start
    while d <= end:
        if d.weekday() < 5 and not HALF_TERM[0] <= d <= HALF_TERM[1] and d not in CLOSURES:
            out.append(d)
        d += timedelta(days=1)
    return out


def _marks(key: str, absent_from: date | None) -> MarksRecord:
    """Sessions from 1 September: closures '#', present until the episode, then 'N' (one PM gap)."""
    start = date(2025, 9, 1)
    open_days = set(school_days(start, LAST_DAY))
    codes: list[str] = []
    d = start
    while d <= LAST_DAY:
        if d in CLOSURES:
            codes += ["#", "#"]
        elif d not in open_days:
            codes += ["", ""]
        elif absent_from and d >= absent_from:
            codes += ["N", "-" if d == date(2025, 11, 20) else "N"]
        elif d == date(2025, 10, 7):
            codes += ["I", "I"]
        elif d == date(2025, 10, 14):
            codes += ["L", "/"]
        else:
            codes += ["/", "\\"]
        d += timedelta(days=1)
    return MarksRecord(key, start, tuple(codes))


def seed_case(engine: Engine, family: Family | None = None, now: datetime = NOW) -> int:
    """Load one fictional family and open a case for its child; returns the case id."""
    fam = family or Family()
    n = next(_serial)
    suffix = f"-{n}"
    child = replace(fam.child, pupil_key=fam.child.pupil_key + suffix)
    sibs = [replace(s, pupil_key=s.pupil_key + suffix) for s in fam.siblings]
    contacts = [replace(c, pupil_key=child.pupil_key) for c in fam.contacts]
    # Siblings share the first contact, as the MIS links one contact person to each child.
    contacts += [replace(fam.contacts[0], pupil_key=s.pupil_key) for s in sibs[:1] if fam.contacts]
    records: list[Any] = [child, *sibs, *contacts,
                          *[replace(f, pupil_key=child.pupil_key) for f in fam.flags],
                          EnrolmentRecord(child.pupil_key, date(2021, 9, 1), date(2021, 9, 1)),
                          _marks(child.pupil_key, EPISODE_START), *[_marks(s.pupil_key, None) for s in sibs]]
    with engine.begin() as conn:
        school_id = ensure_school(conn, "916", "2999", "The John Moore Primary School")
    apply_batch(engine, school_id, SourceBatch("test", f"seed{n}", records=records), now)
    with engine.begin() as conn:
        from sqlalchemy import select

        pid = conn.execute(select(t.pupil_keys.c.pupil_id).where(
            t.pupil_keys.c.pupil_key == child.pupil_key)).scalar_one()
        confirmed = datetime(2025, 11, 28, 8, 12, tzinfo=UTC) if fam.confirmed else None
        case_id = int(conn.execute(insert(t.cases).values(
            ref=f"CME-2025-{n:04d}", pupil_id=pid, kind=fam.kind, status="open", stage="referral_due",
            episode_start=EPISODE_START, opened_on=EPISODE_START, school_days=10, last_attended=date(2025, 11, 14),
            referral_due=LAST_DAY, register_gaps=["2025-11-20"], alerts=[],
            confirmed_at=confirmed, confirmed_by="dsl@school.example" if confirmed else None,
            confirmation_message_id="<reply-8841@school.example>" if confirmed else None,
            referred_at=datetime(2025, 11, 28, 9, 0, tzinfo=UTC) if fam.referred else None,
            updated_at=now)).inserted_primary_key[0])
        conn.execute(insert(t.case_events), [
            _event(case_id, "opened", date(2025, 11, 17), "system", {"kind": fam.kind}),
            _event(case_id, "action", date(2025, 11, 17), "office@school.example",
                   {"action": "first_day_call", "outcome": "No answer on mother's mobile; voicemail left at 09:40"}),
            _event(case_id, "action", date(2025, 11, 18), "office@school.example",
                   {"action": "emergency_contacts", "outcome": "Father and grandmother called morning and "
                    "afternoon; grandmother has not seen the family for two weeks"}),
            _event(case_id, "action", date(2025, 11, 21), "dsl@school.example",
                   {"action": "home_visit", "outcome": "No reply; curtains drawn, post piling up. "
                    "Neighbour thinks the family moved out", "who": "DSL and family support worker"}),
            _event(case_id, "action", date(2025, 11, 24), "dsl@school.example",
                   {"action": "social_media_search", "outcome": "No recent public posts found"}),
            _event(case_id, "note", date(2025, 11, 25), "office@school.example",
                   {"text": "Sibling's class teacher: no contact from the family either"}),
            _event(case_id, "stage", LAST_DAY, "system", {"stage": "referral_due"}),
        ])
    return case_id


def _event(case_id: int, kind: str, as_of: date, actor: str, detail: dict[str, Any]) -> dict[str, Any]:
    at = datetime.combine(as_of, datetime.min.time(), UTC) + timedelta(hours=12)
    return {"case_id": case_id, "at": at, "as_of": as_of, "kind": kind, "actor": actor, "detail": detail,
            "evidence": []}


# -- certificates ---------------------------------------------------------------------------

@dataclass
class Identity:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey
    cert_path: Path
    key_path: Path


@dataclass
class PKI:
    ca: Identity
    la: Identity
    archive: Identity
    signer: Identity


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cme-batch tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(ca: Identity | None, cn: str, email: str | None, now: datetime, *, days: int = 365,
          key: rsa.RSAPrivateKey | None = None, not_before: datetime | None = None,
          serial: int | None = None) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """A certificate for ``cn`` (self-signed CA when ``ca`` is None) valid ``days`` from ``now``."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.cert.subject if ca else _name(cn))
         .public_key(key.public_key()).serial_number(serial or x509.random_serial_number())
         .not_valid_before(not_before or now - timedelta(days=1)).not_valid_after(now + timedelta(days=days)))
    if ca is None:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    else:
        b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True).add_extension(
            x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        if email:
            b = b.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
    return b.sign(ca.key if ca else key, hashes.SHA256()), key


def save(directory: Path, name: str, cert: x509.Certificate, key: rsa.RSAPrivateKey) -> Identity:
    directory.mkdir(parents=True, exist_ok=True)
    cp, kp = directory / f"{name}.pem", directory / f"{name}.key"
    cp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    kp.chmod(0o600)
    return Identity(cert, key, cp, kp)


#: How long ``make_pki``'s certificates are valid from the date they are made for: a century. Tests that
#: run the real CLI, openssl or gpgsm check them against today's clock, not the tests' fixed date, so a
#: year's validity failed them from 1 December 2026 and ten years' would have from 29 November 2035.
PKI_VALID_DAYS = 36525


def make_pki(directory: Path, now: datetime = NOW, la_email: str = "missingpupils@gloucestershire.gov.uk",
             la_first: bool = True, days: int = PKI_VALID_DAYS) -> PKI:
    """Test certificates, valid from the day before ``now`` for ``days``. The envelope lists recipients in
    DER order, which with one issuer is serial order: ``la_first`` gives the LA the lower serial, so its
    RecipientInfo comes first."""
    la_serial, archive_serial = (0x1000, 0x2000) if la_first else (0x2000, 0x1000)
    ca = save(directory, "ca", *issue(None, "Test CA", None, now, days=days + 10))
    return PKI(ca, save(directory, "la", *issue(ca, "Access to Education Team", la_email, now, days=days,
                                                serial=la_serial)),
               save(directory, "archive", *issue(ca, "School archive", "cme-archive@school.example", now,
                                                 days=days, serial=archive_serial)),
               save(directory, "signer", *issue(ca, "School CME", "cme-batch@school.example", now, days=days,
                                                serial=0x3000)))


def smime_config(pki: PKI, sign: bool = True) -> str:
    """The [referral] section for S/MIME with these certificates."""
    text = f'''
    [referral]
    method = "smime"
    la_certificate = "{pki.la.cert_path}"
    archive_certificate = "{pki.archive.cert_path}"
    '''
    if sign:
        text += f'''signing_certificate = "{pki.signer.cert_path}"
    signing_key = "{pki.signer.key_path}"
    '''
    return text


def pdf_text(pdf: bytes) -> str:
    """A PDF's text with line breaks and runs of spaces as one space (table cells wrap)."""
    return " ".join(" ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages).split())


def bundle_of(store: Engine, cfg: Config, case_id: int, now: datetime = NOW, kind: str = "referral") -> Bundle:
    """The bundle a case's referral (or update) would be sent as, built at ``now``."""
    with store.connect() as conn:
        return build_bundle(conn, case_id, cfg, now, kind)
