"""Certificates and keys are checked before use, and a bad one stops with a message that says what to fix."""

from __future__ import annotations

import textwrap
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from cme_batch.config import parse
from cme_batch.errors import BadInputError, ConfigError
from cme_batch.referral import certs
from cme_batch.referral.smime import load_keys
from tests.conftest import BASE_CONFIG
from tests.referral_support import NOW, PKI, issue, make_pki, save, smime_config

LA = "missingpupils@gloucestershire.gov.uk"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _toml(extra: str) -> dict[str, object]:
    return tomllib.loads(BASE_CONFIG.format(url="sqlite://") + textwrap.dedent(extra))


def _check(cert: x509.Certificate, email: str | None = LA, purpose: str = "encrypt") -> None:
    certs.check_certificate(cert, key="referral.la_certificate", now=NOW, purpose=purpose, email=email)


def test_a_good_la_certificate_passes(pki: PKI) -> None:
    _check(pki.la.cert)
    assert certs.certificate_emails(pki.la.cert) == [LA]


def test_out_of_date_certificates_are_refused(pki: PKI) -> None:
    expired, _ = issue(pki.ca, "LA", LA, NOW - timedelta(days=100), days=30)
    with pytest.raises(BadInputError, match=r"expired on 2025-09-22; get the current certificate"):
        _check(expired)
    future, _ = issue(pki.ca, "LA", LA, NOW, not_before=NOW + timedelta(days=3))
    with pytest.raises(BadInputError, match="is not valid until 2025-12-04"):
        _check(future)


def test_a_certificate_for_another_address_is_refused(pki: PKI) -> None:
    with pytest.raises(BadInputError, match=f"is for cme-archive@school.example, not for {LA}"):
        _check(pki.archive.cert)


def test_a_non_rsa_certificate_is_refused(pki: PKI) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "EC LA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=9))
            .sign(key, hashes.SHA256()))
    with pytest.raises(BadInputError, match="needs an RSA certificate"):
        _check(cert)


def test_a_ca_certificate_cannot_be_an_encryption_recipient(pki: PKI) -> None:
    with pytest.raises(BadInputError, match="keyEncipherment"):
        _check(pki.ca.cert, email=None)


def test_a_signing_key_open_to_others_is_refused(pki: PKI, tmp_path: Path) -> None:
    ident = save(tmp_path, "loose", pki.signer.cert, pki.signer.key)
    ident.key_path.chmod(0o644)
    with pytest.raises(BadInputError, match=r"mode 0644\); run: chmod 600"):
        certs.load_private_key(ident.key_path, None, "referral.signing_key")


def test_a_signing_key_for_another_certificate_is_refused(pki: PKI, tmp_path: Path) -> None:
    cfg = parse(_toml(smime_config(pki).replace(str(pki.signer.key_path), str(pki.la.key_path))), None)
    with pytest.raises(BadInputError, match="signing key does not belong to"):
        load_keys(cfg.referral, NOW)


def test_good_settings_load_recipients_and_signer(pki: PKI) -> None:
    keys = load_keys(parse(_toml(smime_config(pki)), None).referral, NOW)
    assert keys.recipients == (pki.la.cert, pki.archive.cert)
    assert keys.signer is not None and keys.signer[0] == pki.signer.cert


def test_settings_that_cannot_work_are_reported_at_load(pki: PKI) -> None:
    with pytest.raises(ConfigError) as err:
        parse(_toml(f'''
        [referral]
        method = "smime"
        la_certificate = "{pki.la.cert_path}"
        signing_certificate = "{pki.signer.cert_path}"
        passphrase = "written-in-the-file"
        colour = "blue"
        '''), None)
    text = str(err.value)
    assert "referral.archive_certificate: is missing while referrals are sent by S/MIME" in text
    assert "referral.signing_key: is missing" in text
    assert "referral.passphrase: holds a literal value" in text
    assert "referral.colour: is not a known key" in text


def test_auto_picks_smime_then_passphrase_then_nothing(pki: PKI) -> None:
    assert parse(_toml(smime_config(pki).replace('method = "smime"', "")), None).referral.chosen_method() == "smime"
    passphrase = parse(_toml('[referral]\npassphrase = { env = "X" }\n'), None).referral
    assert passphrase.chosen_method() == "pdf-passphrase"
    assert parse(_toml(""), None).referral.chosen_method() is None


def test_certificates_near_expiry_are_listed_for_the_digest(pki: PKI, tmp_path: Path) -> None:
    soon = save(tmp_path, "soon", *issue(pki.ca, "LA", LA, NOW, days=10))
    listed = certs.expiring({"referral.la_certificate": soon.cert_path,
                             "referral.archive_certificate": pki.archive.cert_path, "unset": None}, NOW)
    assert [(c.key, c.not_after.date().isoformat()) for c in listed] == [("referral.la_certificate", "2025-12-11")]
