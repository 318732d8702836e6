"""Loading and checking the certificates and the key a referral is encrypted and signed with.

Every check fails with a ``BadInputError`` that names the configuration key, the file and what
to do, because the person reading it is a school administrator, not a cryptographer. The checks
are the ones a mail client would apply on the other end: the certificate is in date, carries an
RSA key (``PKCS7EnvelopeBuilder`` can only encrypt to RSA), may be used for e-mail protection,
and, for the LA, names the address we are about to send to where it names one.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cme_batch.errors import BadInputError
from cme_batch.settings import SecretRef

MIN_RSA_BITS = 2048


def load_certificates(path: Path, key: str) -> list[x509.Certificate]:
    """Every certificate in a file: one PEM or DER certificate, a PEM bundle (a chain, in any order),
    or a PKCS#7 certificates-only file (``.p7b``/``.p7c``, PEM or DER), as Windows and Outlook export."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"{key}: cannot read certificate {path}: {exc.strerror}") from exc
    try:
        if b"-----BEGIN PKCS7-----" in data:
            return list(pkcs7.load_pem_pkcs7_certificates(data))
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        try:
            return [x509.load_der_x509_certificate(data)]
        except ValueError:
            return list(pkcs7.load_der_pkcs7_certificates(data))
    except ValueError as exc:
        raise BadInputError(f"{key}: {path} is not an X.509 certificate (PEM or DER) nor a PKCS#7 (.p7b) "
                            "file of certificates") from exc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def load_chain(path: Path, key: str, email: str | None = None) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The one end-entity certificate in a file, and the others (its issuers) as they came.

    A file holding a chain is read whatever its order: the end entity is the certificate that is
    not a CA and issued none of the others. Several end entities are told apart by ``email``.
    """
    found = load_certificates(path, key)
    issuers = {c.issuer for c in found if c.issuer != c.subject}
    leaves = [c for c in found if not _is_ca(c) and c.subject not in issuers]
    if len(leaves) > 1 and email:
        leaves = [c for c in leaves if email.lower() in certificate_emails(c)] or leaves
    if len(leaves) != 1:
        what = "no end-entity certificate (only CA certificates)" if not leaves else \
            f"{len(leaves)} end-entity certificates ({'; '.join(_describe(c) for c in leaves)})"
        raise BadInputError(f"{key}: {path} holds {what}; keep the one certificate to use, with its issuers")
    leaf = leaves[0]
    return leaf, [c for c in found if c is not leaf]


def load_certificate(path: Path, key: str, email: str | None = None) -> x509.Certificate:
    """The end-entity certificate of a file (see ``load_chain``)."""
    return load_chain(path, key, email)[0]


def certificate_emails(cert: x509.Certificate) -> list[str]:
    """The e-mail addresses a certificate names: subjectAltName rfc822Name, then subject emailAddress."""
    out: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        out.extend(san.get_values_for_type(x509.RFC822Name))
    except x509.ExtensionNotFound:
        pass
    out.extend(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS))
    return [e.strip().lower() for e in out]


def _describe(cert: x509.Certificate) -> str:
    return f"certificate '{cert.subject.rfc4514_string()}' (serial {cert.serial_number:x})"


def check_certificate(cert: x509.Certificate, *, key: str, now: datetime, purpose: str,
                      email: str | None = None) -> None:
    """Refuse a certificate that is out of date, not RSA, not for e-mail, or for another address.

    ``purpose`` is ``"encrypt"`` (a recipient: needs keyEncipherment where key usage is stated)
    or ``"sign"`` (needs digitalSignature). ``email``, when given, must be among the addresses
    the certificate names, if it names any.
    """
    who = _describe(cert)
    if now < cert.not_valid_before_utc:
        raise BadInputError(f"{key}: {who} is not valid until {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    if now > cert.not_valid_after_utc:
        raise BadInputError(f"{key}: {who} expired on {cert.not_valid_after_utc:%Y-%m-%d}; "
                            "get the current certificate and update the configuration")
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey):
        raise BadInputError(f"{key}: {who} has a {type(public).__name__.removeprefix('_')} key; "
                            "S/MIME encryption here needs an RSA certificate")
    if public.key_size < MIN_RSA_BITS:
        raise BadInputError(f"{key}: {who} has a {public.key_size}-bit RSA key; at least {MIN_RSA_BITS} bits needed")
    _check_usage(cert, key, who, purpose)
    if email:
        named = certificate_emails(cert)
        if named and email.lower() not in named:
            raise BadInputError(f"{key}: {who} is for {', '.join(named)}, not for {email}; "
                                "check referral.la_email and the certificate the LA gave you")


def _check_usage(cert: x509.Certificate, key: str, who: str, purpose: str) -> None:
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        ku = None
    if ku is not None:
        if purpose == "encrypt" and not ku.key_encipherment:
            raise BadInputError(f"{key}: {who} may not be used to encrypt (keyEncipherment not allowed)")
        if purpose == "sign" and not (ku.digital_signature or ku.content_commitment):
            raise BadInputError(f"{key}: {who} may not be used to sign (digitalSignature not allowed)")
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return
    if ExtendedKeyUsageOID.EMAIL_PROTECTION not in eku and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
        raise BadInputError(f"{key}: {who} is not for e-mail protection (its extended key usage omits it)")


def load_private_key(source: Path | SecretRef, password: SecretRef | None, key: str) -> rsa.RSAPrivateKey:
    """Read the school's signing key (PEM), from a private file or from the secret store."""
    if isinstance(source, Path):
        try:
            mode = source.stat().st_mode
            data = source.read_bytes()
        except OSError as exc:
            raise BadInputError(f"{key}: cannot read key file {source}: {exc.strerror}") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise BadInputError(f"{key}: key file {source} is open to other users (mode {stat.S_IMODE(mode):04o}); "
                                f"run: chmod 600 {source}")
    else:
        data = source.reveal().encode("utf-8")
    pw = password.reveal().encode("utf-8") if password is not None else None
    try:
        private = serialization.load_pem_private_key(data, pw)
    except (ValueError, TypeError) as exc:
        # The library's message says whether a password was wrong or missing; it holds no key material.
        raise BadInputError(f"{key}: the signing key cannot be read: {exc}") from exc
    if not isinstance(private, rsa.RSAPrivateKey):
        raise BadInputError(f"{key}: the signing key is not an RSA key")
    return private


def check_key_matches(cert: x509.Certificate, private: rsa.RSAPrivateKey, key: str) -> None:
    public = cert.public_key()
    if not isinstance(public, rsa.RSAPublicKey) or public.public_numbers() != private.public_key().public_numbers():
        raise BadInputError(f"{key}: the signing key does not belong to {_describe(cert)}")


@dataclass(frozen=True)
class CertificateInfo:
    key: str
    subject: str
    not_after: datetime


def expiring(certs: dict[str, Path | None], now: datetime, within_days: int = 30) -> list[CertificateInfo]:
    """Configured certificates that expire within ``within_days`` (for a warning in the digest)."""
    out = []
    for key, path in certs.items():
        if path is None:
            continue
        cert = load_certificate(path, key)
        if cert.not_valid_after_utc - now <= timedelta(days=within_days):
            out.append(CertificateInfo(key, cert.subject.rfc4514_string(), cert.not_valid_after_utc))
    return out
