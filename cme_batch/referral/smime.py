"""S/MIME for a referral bundle: a MIME entity, signed when the school has a key, then enveloped.

The order is the one mail clients expect for "signed and encrypted": the inner
``multipart/mixed`` (covering note, PDF, JSON) is wrapped in a detached ``multipart/signed``,
and that whole entity is enveloped with AES-256 to every recipient certificate: the LA's and the
school's own archive certificate, so the school can always read what it sent. Only the
envelope travels in the clear; the caller adds the outer headers, which must carry no personal
data (RFC 8551 leaves them unprotected).
"""

from __future__ import annotations

import email.policy
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

from cme_batch.errors import BadInputError
from cme_batch.referral import certs
from cme_batch.referral.settings import ReferralConfig


@dataclass(frozen=True)
class Attachment:
    filename: str
    mime_type: str  # "application/pdf"
    data: bytes


@dataclass(frozen=True)
class SmimeKeys:
    """Checked, ready-to-use certificates: who can decrypt, and who signs (if anyone)."""

    recipients: tuple[x509.Certificate, ...]
    signer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None
    #: The signer's issuers (intermediate CAs) from the signing certificate's file, sent with the
    #: signature so the LA's client or gateway, which may trust only the root, can build the chain.
    signer_chain: tuple[x509.Certificate, ...] = ()


def load_keys(cfg: ReferralConfig, now: datetime) -> SmimeKeys:
    """Load and check every certificate and key S/MIME needs, failing with the key to fix."""
    if cfg.la_certificate is None or cfg.archive_certificate is None:
        raise BadInputError("referral.la_certificate and referral.archive_certificate are both needed for S/MIME")
    la = certs.load_certificate(cfg.la_certificate, "referral.la_certificate", cfg.la_email)
    certs.check_certificate(la, key="referral.la_certificate", now=now, purpose="encrypt", email=cfg.la_email)
    archive = certs.load_certificate(cfg.archive_certificate, "referral.archive_certificate")
    certs.check_certificate(archive, key="referral.archive_certificate", now=now, purpose="encrypt")
    signer = None
    chain: list[x509.Certificate] = []
    if cfg.signing_certificate is not None and cfg.signing_key is not None:
        cert, chain = certs.load_chain(cfg.signing_certificate, "referral.signing_certificate")
        certs.check_certificate(cert, key="referral.signing_certificate", now=now, purpose="sign")
        key = certs.load_private_key(cfg.signing_key, cfg.signing_key_password, "referral.signing_key")
        certs.check_key_matches(cert, key, "referral.signing_key")
        signer = (cert, key)
    return SmimeKeys((la, archive), signer, tuple(chain))


#: CRLF line ends and 7-bit transfer encodings only: RFC 8551 (3.1.2, 3.1.3) asks for 7-bit entities
#: inside S/MIME, so that a gateway or client that unwraps the envelope and passes the signed part
#: on over 7-bit mail cannot re-encode it and break the school's signature.
INNER_POLICY = email.policy.SMTP.clone(cte_type="7bit")


def inner_entity(note: str, attachments: Sequence[Attachment]) -> bytes:
    """The cleartext MIME entity (CRLF line ends, 7-bit, canonical as S/MIME requires)."""
    msg = EmailMessage(policy=INNER_POLICY)
    msg.set_content(note)
    for a in attachments:
        maintype, subtype = a.mime_type.split("/", 1)
        msg.add_attachment(a.data, maintype=maintype, subtype=subtype, filename=a.filename)
    return msg.as_bytes()


def sign(entity: bytes, cert: x509.Certificate, key: rsa.RSAPrivateKey,
         chain: Sequence[x509.Certificate] = ()) -> bytes:
    """A detached ``multipart/signed`` entity over ``entity``, carrying the signer's certificate and
    its issuers."""
    builder = pkcs7.PKCS7SignatureBuilder().set_data(entity).add_signer(cert, key, hashes.SHA256())
    for issuer in chain:
        builder = builder.add_certificate(issuer)
    return builder.sign(serialization.Encoding.SMIME, [pkcs7.PKCS7Options.DetachedSignature])


def envelope(entity: bytes, recipients: Sequence[x509.Certificate]) -> bytes:
    """CMS EnvelopedData (DER), AES-256-CBC, the content key wrapped once per recipient."""
    builder = pkcs7.PKCS7EnvelopeBuilder().set_data(entity)
    for cert in recipients:
        builder = builder.add_recipient(cert)
    return (builder.set_content_encryption_algorithm(algorithms.AES256)
            .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))


def smime_message(note: str, attachments: Sequence[Attachment], keys: SmimeKeys) -> EmailMessage:
    """An ``application/pkcs7-mime`` message body; the caller adds From, To, Subject and the rest."""
    entity = inner_entity(note, attachments)
    if keys.signer is not None:
        entity = sign(entity, *keys.signer, keys.signer_chain)
    der = envelope(entity, keys.recipients)
    outer = EmailMessage(policy=email.policy.SMTP)
    outer.set_content(der, maintype="application", subtype="pkcs7-mime",
                      params={"smime-type": "enveloped-data", "name": "smime.p7m"},
                      disposition="attachment", filename="smime.p7m")
    return outer
