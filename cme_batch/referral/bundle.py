"""The referral bundle: build it from the store, encrypt it for the LA, and archive what was sent.

The public API of ``cme_batch.referral``:

- ``build_bundle(conn, case_id, config, now, kind)`` gathers one case into a ``Bundle``: the JSON
  document, the PDF of the same content and a covering note that names no child;
- ``encrypt_bundle(bundle, config)`` turns it into an ``Encrypted`` e-mail ready for the outbox
  (S/MIME or the passphrase PDF, as configured), or a ``Held`` with the reason to show the DSL
  when no encryption is configured. Nothing is ever produced in the clear;
- ``archive(conn, case_id, encrypted, outbox_id)`` keeps the encrypted message and its SHA-256 in
  ``referral_archive``, so the school can show what it sent and when.

A referral is refused unless the DSL has confirmed it and not put it on HOLD since, and once
its case has closed without being referred; an update is sent without a new confirmation,
since it only reports that a referred child returned or was traced.
"""

from __future__ import annotations

import email.policy
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from sqlalchemy import Connection, insert, select

from cme_batch.config import Config
from cme_batch.errors import BadInputError
from cme_batch.referral import pdfcrypt, smime
from cme_batch.referral.content import SCHEMA_VERSION, build_document, load_case
from cme_batch.referral.pdf import fmt_date, render_pdf
from cme_batch.referral.smime import Attachment
from cme_batch.store import tables as t

KINDS = ("referral", "update")


@dataclass(frozen=True)
class Bundle:
    """One referral (or update) in the clear: only ever held in memory or in a 0700 preview folder."""

    case_id: int
    ref: str
    kind: str
    document: dict[str, Any]
    json: bytes
    pdf: bytes
    note: str
    created: datetime
    schema_version: str = SCHEMA_VERSION
    #: The DSL replied HOLD: the confirmation stands suspended until a later CONFIRM (never sent to the LA).
    on_hold: bool = False

    @property
    def confirmed(self) -> bool:
        return bool(self.document["confirmation"]["confirmed"])

    def filename(self, ext: str) -> str:
        return f"{self.ref}-{self.kind}.{ext}"

    def attachments(self) -> list[Attachment]:
        return [Attachment(self.filename("pdf"), "application/pdf", self.pdf),
                Attachment(self.filename("json"), "application/json", self.json)]


@dataclass(frozen=True)
class Encrypted:
    """A bundle sealed for the LA: a complete e-mail whose clear parts carry no personal data."""

    case_id: int
    ref: str
    kind: str
    method: str  # smime, pdf-passphrase
    schema_version: str
    message: EmailMessage
    raw: bytes  # message.as_bytes(), fixed once, so the archived hash matches what is queued
    recipients: tuple[str, ...]
    subject: str
    created: datetime

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()


@dataclass(frozen=True)
class Held:
    """No way to encrypt is configured: the bundle must not leave, and the DSL is told why."""

    case_id: int
    ref: str
    kind: str
    reason: str


def covering_note(doc: dict[str, Any], pdf_name: str, json_name: str, json_in_pdf: bool = False) -> str:
    """A short note for the LA. It names the case and the school, never the child."""
    s, case, to = doc["school"], doc["case"], doc["to"]
    dsl = s["dsl"]
    if doc["kind"] == "update":
        what = (f"This is an update to our Children Missing Education referral {case['ref']}, "
                f"sent on {fmt_date(doc['update']['referred_on'])}.")
    else:
        confirmed = doc["confirmation"]
        who = f"our {confirmed['role']}" if confirmed.get("role") else confirmed["by"]
        what = (f"This is a Children Missing Education referral, {case['ref']}, for one child, confirmed by "
                f"{who} on {fmt_date(confirmed['at'])}.")
    contact = ", ".join(x for x in (dsl["name"], dsl["phone"], dsl["email"]) if x)
    where = f" (inside {pdf_name})" if json_in_pdf else ""
    form = "the update form (what has changed and when)" if doc["kind"] == "update" else "the referral form"
    return (f"To: {to['name']}\nFrom: {s['name']} (LA {s['la_number']}, establishment {s['establishment_number']})"
            f"\n\n{what}\n\nAttached:\n- {pdf_name}: {form}\n- {json_name}{where}: the same content "
            f"as JSON, schema version {doc['schema_version']}\n\nQuestions to our Designated Safeguarding Lead: "
            f"{contact}.\n")


def build_bundle(conn: Connection, case_id: int, config: Config, now: datetime, kind: str = "referral") -> Bundle:
    """Gather one case into a bundle (read-only on the store)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    doc = build_document(conn, case_id, config, now, kind)
    ref = doc["case"]["ref"]
    data = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    pdf = render_pdf(doc, now)
    note = covering_note(doc, f"{ref}-{kind}.pdf", f"{ref}-{kind}.json")
    on_hold = load_case(conn, case_id)["hold_reason"] is not None
    return Bundle(case_id, ref, kind, doc, data, pdf, note, now, on_hold=on_hold)


def subject_for(bundle: Bundle, config: Config) -> str:
    """The subject travels in the clear: the case reference and the school, nothing about the child."""
    what = "referral" if bundle.kind == "referral" else "referral update"
    return f"CME {what} {bundle.ref} from {config.school.name}"


def _address(msg: EmailMessage, bundle: Bundle, config: Config, sender: str) -> str:
    subject = subject_for(bundle, config)
    msg["From"] = f"{config.school.name} <{sender}>"
    msg["To"] = config.referral.la_email
    msg["Subject"] = subject
    msg["Date"] = format_datetime(bundle.created.astimezone(UTC))
    msg["Message-ID"] = make_msgid(idstring=bundle.ref, domain=sender.rsplit("@", 1)[1])
    return subject


def _check_releasable(bundle: Bundle) -> None:
    """Refuse a referral the DSL has not confirmed, has put on HOLD, or whose case closed before it went.

    The nightly run only picks open, confirmed cases not on HOLD, but ``cme-batch referral --out``
    seals any case it is given, and a case can change between the choice and the sealing.
    """
    if bundle.kind != "referral":
        return
    if not bundle.confirmed:
        raise BadInputError(f"case {bundle.ref}: the DSL has not confirmed this referral, and a referral is "
                            "never sent without that confirmation")
    if bundle.on_hold:
        raise BadInputError(f"case {bundle.ref}: the DSL put this referral on HOLD; it is not sent until "
                            "the DSL replies CONFIRM again")
    case = bundle.document["case"]
    if case["status"] != "open" and case["referred_at"] is None:
        raise BadInputError(f"case {bundle.ref} closed on {case['evaluated_on']} before it was referred, so "
                            "there is no referral to send")


def encrypt_bundle(bundle: Bundle, config: Config) -> Encrypted | Held:
    """Seal a bundle for the LA by the configured method; certificates are checked at ``bundle.created``."""
    _check_releasable(bundle)
    ref_cfg = config.referral
    method = ref_cfg.chosen_method()
    if method is None:
        return Held(bundle.case_id, bundle.ref, bundle.kind,
                    "no encryption is configured for referrals: set referral.la_certificate (S/MIME) or "
                    "referral.passphrase (encrypted PDF) in the configuration; the referral is held until then")
    sender = config.mail.from_address or config.school.email
    if not sender:
        raise BadInputError("mail.from (or school.email) is needed to send a referral")
    if method == "smime":
        keys = smime.load_keys(ref_cfg, bundle.created)
        msg = smime.smime_message(bundle.note, bundle.attachments(), keys)
    else:
        if ref_cfg.passphrase is None:
            raise BadInputError("referral.passphrase is needed for method 'pdf-passphrase'")
        passphrase = pdfcrypt.read_passphrase(ref_cfg.passphrase)
        sealed = pdfcrypt.encrypted_pdf(bundle.document, bundle.created, [bundle.attachments()[1]], passphrase)
        msg = EmailMessage(policy=email.policy.SMTP)
        note = covering_note(bundle.document, bundle.filename("pdf"), bundle.filename("json"), json_in_pdf=True)
        msg.set_content(pdfcrypt.passphrase_note(note, ref_cfg.passphrase_sharing, passphrase))
        msg.add_attachment(sealed, maintype="application", subtype="pdf", filename=bundle.filename("pdf"))
    subject = _address(msg, bundle, config, sender)
    return Encrypted(bundle.case_id, bundle.ref, bundle.kind, method, bundle.schema_version, msg,
                     msg.as_bytes(policy=email.policy.SMTP), (ref_cfg.la_email,), subject, bundle.created)


def archive(conn: Connection, case_id: int, encrypted: Encrypted, outbox_id: int | None = None) -> int:
    """Keep the sealed message as sent, with its SHA-256; returns the archive row id."""
    if case_id != encrypted.case_id:
        raise ValueError(f"bundle of case {encrypted.case_id} archived under case {case_id}")
    result = conn.execute(insert(t.referral_archive).values(
        case_id=case_id, kind=encrypted.kind, method=encrypted.method, schema_version=encrypted.schema_version,
        sha256=encrypted.sha256, encrypted=encrypted.raw, outbox_id=outbox_id, created_at=encrypted.created,
    ).returning(t.referral_archive.c.id))
    return int(result.scalar_one())


def archived_intact(conn: Connection, archive_id: int) -> bool:
    """Whether an archived bundle still matches the hash recorded when it was sent."""
    row = conn.execute(select(t.referral_archive.c.sha256, t.referral_archive.c.encrypted).where(
        t.referral_archive.c.id == archive_id)).first()
    if row is None:
        raise BadInputError(f"no archived referral bundle with id {archive_id}")
    return bool(hashlib.sha256(bytes(row.encrypted)).hexdigest() == row.sha256)
