"""The passphrase route, for an LA without a certificate: one AES-256-encrypted PDF holding everything.

The PDF is the referral form with the JSON document attached inside it, encrypted with the
passphrase agreed with the LA (read from the secret store at the moment of use). The owner
password is random and thrown away, so nobody can lift the restrictions without the passphrase.
The covering e-mail says how the passphrase reaches the LA and is checked never to contain it.

fpdf2 (2.8) encrypts streams and the info dictionary but writes the names of embedded files in
the clear, so a reader decrypting them gets garbage and cannot list the attachment. The output
producer below writes those names through the document's security handler instead; it relies
only on fpdf2's public ``output_producer_class`` hook.
"""

from __future__ import annotations

import secrets
import stat
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from fpdf.encryption import StandardSecurityHandler
from fpdf.enums import AccessPermission, EncryptionMethod
from fpdf.errors import FPDFException
from fpdf.output import OutputProducer
from fpdf.syntax import PDFString
from fpdf.syntax import create_dictionary_string as pdf_dict
from fpdf.syntax import create_list_string as pdf_list

from cme_batch.errors import BadInputError
from cme_batch.referral.pdf import build_pdf
from cme_batch.referral.smime import Attachment
from cme_batch.settings import SecretRef

MIN_PASSPHRASE = 12
#: Fewer different characters than this (``aaaaaaaaaaaa``, ``121212121212``) is guessed at once, whatever the length.
MIN_DISTINCT = 6


class _EncryptedNamesProducer(OutputProducer):
    """Writes the catalogue's embedded-file names encrypted, as the PDF standard requires."""

    def _finalize_catalog(self, catalog_obj: Any, *args: Any, **kwargs: Any) -> None:
        super()._finalize_catalog(catalog_obj, *args, **kwargs)
        pdf, handler = self.fpdf, self.fpdf._security_handler
        if handler is None or not pdf.embedded_files:
            return
        names = [f"{PDFString(f.basename(), encrypt=True).serialize(_security_handler=handler, _obj_id=catalog_obj.id)}"
                 f" {f.file_spec().ref}" for f in pdf.embedded_files]
        catalog_obj.names = pdf_dict({"/EmbeddedFiles": pdf_dict({"/Names": pdf_list(names)})})


def check_passphrase(passphrase: str) -> None:
    """Refuse a passphrase too short or too repetitive to protect a child's safeguarding record."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise BadInputError(f"referral.passphrase is too short ({len(passphrase)} characters); "
                            f"agree one of at least {MIN_PASSPHRASE} characters with the LA")
    if len(set(passphrase)) < MIN_DISTINCT:
        raise BadInputError(f"referral.passphrase is too simple (only {len(set(passphrase))} different characters); "
                            f"agree one with at least {MIN_DISTINCT} different characters with the LA")
    # AES-256 (revision 6) keys on the passphrase after SASLprep (ISO 32000-2, 7.6.4.3.3). fpdf2 applies
    # it; qpdf and poppler-based readers use the bytes as typed. A passphrase SASLprep changes (full-width
    # letters, a non-breaking space, decomposed accents) opens in some readers and not in others; one it
    # refuses (a tab, a control character) made fpdf2 raise an error quoting the passphrase itself.
    try:
        prepared = StandardSecurityHandler.prepare_string(passphrase)
    except FPDFException:
        prepared = None
    if prepared != passphrase.encode("utf-8")[:127]:
        raise BadInputError("referral.passphrase holds a character PDF readers do not all read alike (a tab or "
                            "other control character, a non-breaking space, full-width or decomposed letters); "
                            "agree one of ordinary letters, digits, spaces and punctuation with the LA")


def read_passphrase(ref: SecretRef) -> str:
    """The passphrase, refused from a file other users can read (anyone holding it opens every referral)."""
    if ref.kind == "file":
        path = Path(ref.ref).expanduser()
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            raise BadInputError(f"{ref.key}: cannot read secret file {path}: {exc.strerror}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise BadInputError(f"{ref.key}: secret file {path} is open to other users (mode "
                                f"{stat.S_IMODE(mode):04o}); run: chmod 600 {path}")
    passphrase = ref.reveal()
    check_passphrase(passphrase)
    return passphrase


def encrypted_pdf(doc: Mapping[str, Any], created: datetime, attachments: Sequence[Attachment],
                  passphrase: str) -> bytes:
    """The referral form with ``attachments`` inside, encrypted (AES-256) with ``passphrase``."""
    check_passphrase(passphrase)
    pdf = build_pdf(doc, created)
    for a in attachments:
        spec = pdf.embed_file(bytes=a.data, basename=a.filename, mime_type=a.mime_type,
                              desc="Machine-readable copy of this referral", modification_date=created,
                              compress=True).file_spec()
        spec.f = PDFString(a.filename, encrypt=True)
        spec.u_f = PDFString(a.filename, encrypt=True)
        spec.desc = PDFString("Machine-readable copy of this referral", encrypt=True)
    pdf.set_encryption(owner_password=secrets.token_urlsafe(32), user_password=passphrase,
                       encryption_method=EncryptionMethod.AES_256, encrypt_metadata=True,
                       permissions=AccessPermission.all())
    return bytes(pdf.output(output_producer_class=_EncryptedNamesProducer))


def passphrase_note(note: str, sharing: str, passphrase: str) -> str:
    """The cleartext covering note: the bundle's note plus how to open the PDF, never the passphrase."""
    text = (f"{note}\nThe PDF is encrypted (AES-256). To open it, use the passphrase {sharing.strip()}. "
            "The passphrase is never sent by e-mail.\n")
    if passphrase in text:
        raise BadInputError("referral.passphrase_sharing must say how the passphrase is shared, "
                            "not contain the passphrase")
    return text
