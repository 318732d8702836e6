"""The S/MIME bundle opened by two independent implementations: OpenSSL and GnuPG's gpgsm.

Certificates and keys are made by the tests. What the LA gets back after decrypting must be
byte-for-byte the PDF and JSON the school built, and OpenSSL must accept the school's signature.
"""

from __future__ import annotations

import base64
import email
import email.policy
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from cme_batch import config as config_mod
from cme_batch.config import Config
from cme_batch.referral.bundle import (
    Bundle,
    Encrypted,
    archive,
    archived_intact,
    build_bundle,
    encrypt_bundle,
)
from cme_batch.store import migrate, open_store
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.referral_support import NOW, PKI, make_pki, seed_case, smime_config
from tests.servers import need_tool


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, int, PKI, Path]]:
    tmp = tmp_path_factory.mktemp("smime")
    url = f"sqlite:///{tmp / 'store.sqlite'}"
    engine = open_store(url)
    migrate(engine)
    case_id = seed_case(engine)
    yield engine, case_id, make_pki(tmp / "pki"), tmp
    engine.dispose()


def _config(world: tuple[Engine, int, PKI, Path], sign: bool = True) -> Config:
    engine, _, pki, tmp = world
    d = tmp / ("signed" if sign else "unsigned")
    d.mkdir(exist_ok=True)
    return config_mod.load(write_config(d, str(engine.url), smime_config(pki, sign)))


def _sealed(world: tuple[Engine, int, PKI, Path], sign: bool = True) -> tuple[Bundle, Encrypted]:
    engine, case_id, _, _ = world
    cfg = _config(world, sign)
    with engine.connect() as conn:
        bundle = build_bundle(conn, case_id, cfg, NOW)
    sealed = encrypt_bundle(bundle, cfg)
    assert isinstance(sealed, Encrypted)
    return bundle, sealed


def _parts(entity: bytes) -> dict[str, bytes]:
    """Attachments (by filename) and the note (as 'note') of a decrypted, unsigned or signed entity."""
    msg = email.message_from_bytes(entity, policy=email.policy.default)
    if msg.get_content_type() == "multipart/signed":
        msg = msg.get_payload(0)
    out: dict[str, bytes] = {}
    for part in msg.walk():
        if part.is_multipart():
            continue
        name = part.get_filename()
        out[name or "note"] = part.get_payload(decode=True)
    return out


def _run(*args: str | Path, env: dict[str, str] | None = None) -> bytes:
    proc = subprocess.run([str(a) for a in args], check=False, capture_output=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def _openssl_decrypt(tmp: Path, raw: bytes, cert: Path, key: Path) -> bytes:
    src, out = tmp / "in.eml", tmp / "decrypted.eml"
    src.write_bytes(raw)
    _run(need_tool("openssl", "openssl"), "cms", "-decrypt", "-in", src, "-recip", cert, "-inkey", key, "-out", out)
    return out.read_bytes()


def test_openssl_decrypts_the_exact_pdf_and_json_and_verifies_the_signature(world, tmp_path: Path) -> None:
    bundle, sealed = _sealed(world)
    pki = world[2]
    decrypted = _openssl_decrypt(tmp_path, sealed.raw, pki.la.cert_path, pki.la.key_path)
    parts = _parts(decrypted)
    assert parts[bundle.filename("pdf")] == bundle.pdf
    assert parts[bundle.filename("json")] == bundle.json
    assert bundle.ref in parts["note"].decode()
    (tmp_path / "signed.eml").write_bytes(decrypted)
    content = _run("openssl", "cms", "-verify", "-in", tmp_path / "signed.eml", "-CAfile", pki.ca.cert_path,
                   "-purpose", "smimesign")
    assert _parts(content)[bundle.filename("json")] == bundle.json


def test_a_tampered_bundle_fails_openssl_verification(world, tmp_path: Path) -> None:
    _, sealed = _sealed(world)
    pki = world[2]
    decrypted = _openssl_decrypt(tmp_path, sealed.raw, pki.la.cert_path, pki.la.key_path)
    tampered = decrypted.replace(b"CME-2025-", b"CME-2024-", 1)
    assert tampered != decrypted
    (tmp_path / "tampered.eml").write_bytes(tampered)
    proc = subprocess.run(["openssl", "cms", "-verify", "-in", str(tmp_path / "tampered.eml"), "-CAfile",
                           str(pki.ca.cert_path)], check=False, capture_output=True)
    assert proc.returncode != 0


def test_the_school_archive_key_also_opens_it_and_the_archive_keeps_the_hash(world, tmp_path: Path) -> None:
    bundle, sealed = _sealed(world)
    engine, case_id, pki, _ = world
    with engine.begin() as conn:
        row_id = archive(conn, case_id, sealed)
    with engine.connect() as conn:
        row = conn.execute(select(t.referral_archive).where(t.referral_archive.c.id == row_id)).mappings().one()
        assert archived_intact(conn, row_id)
    assert (row["method"], row["kind"], row["schema_version"]) == ("smime", "referral", "1.0")
    assert row["sha256"] == sealed.sha256
    stored = bytes(row["encrypted"])
    assert b"%PDF" not in stored and bundle.document["child"]["legal_surname"].encode() not in stored
    decrypted = _openssl_decrypt(tmp_path, stored, pki.archive.cert_path, pki.archive.key_path)
    assert _parts(decrypted)[bundle.filename("pdf")] == bundle.pdf


@pytest.mark.parametrize("la_first", [True, False], ids=["la-recipient-first", "la-recipient-second"])
def test_gpgsm_decrypts_the_exact_pdf_and_json(world, tmp_path: Path, la_first: bool) -> None:
    gpgsm = need_tool("gpgsm", "gpgsm")
    engine, case_id, _, _ = world
    pki = make_pki(tmp_path / "pki", la_first=la_first)
    cfg = config_mod.load(write_config(tmp_path, str(engine.url), smime_config(pki)))
    with engine.connect() as conn:
        bundle = build_bundle(conn, case_id, cfg, NOW)
    sealed = encrypt_bundle(bundle, cfg)
    assert isinstance(sealed, Encrypted)
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    p12 = tmp_path / "la.p12"
    # gpgsm reads only the legacy PKCS#12 algorithms, with an empty passphrase, in batch mode.
    _run("openssl", "pkcs12", "-export", "-legacy", "-inkey", pki.la.key_path, "-in", pki.la.cert_path,
         "-certfile", pki.ca.cert_path, "-out", p12, "-passout", "pass:")
    env = {**os.environ, "GNUPGHOME": str(home)}
    common = [gpgsm, "--batch", "--disable-dirmngr", "--pinentry-mode", "loopback", "--passphrase", ""]
    try:
        _run(*common, "--import", p12, env=env)
        outer = email.message_from_bytes(sealed.raw, policy=email.policy.default)
        cms = tmp_path / "smime.p7m"
        cms.write_bytes(outer.get_payload(decode=True))
        proc = subprocess.run([*common, "--disable-policy-checks", "--disable-crl-checks", "--decrypt", str(cms)],
                              env=env, check=False, capture_output=True, timeout=60)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)
    if la_first:
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    # With the LA's RecipientInfo second, gpgsm 2.2 writes the whole plaintext yet exits 2, carrying
    # over the "certificate not found" of the archive recipient before it: the bytes must still be exact.
    parts = _parts(proc.stdout)
    assert parts[bundle.filename("pdf")] == bundle.pdf
    assert parts[bundle.filename("json")] == bundle.json


def test_outer_message_is_only_an_envelope_with_neutral_headers(world) -> None:
    bundle, sealed = _sealed(world)
    msg = email.message_from_bytes(sealed.raw, policy=email.policy.default)
    assert msg.get_content_type() == "application/pkcs7-mime"
    assert msg.get_param("smime-type") == "enveloped-data"
    assert msg["To"] == "missingpupils@gloucestershire.gov.uk"
    assert msg["Subject"] == f"CME referral {bundle.ref} from The John Moore Primary School"
    assert not msg.is_multipart()
    header_text = "".join(f"{k}: {v}\n" for k, v in msg.items())
    for secret in ("Amelia", "Marsh", "A916299925001", "2017-03-14", "14 Mar 2017"):
        assert secret not in header_text
    der = base64.b64decode(msg.get_payload())
    assert b"Amelia" not in der and b"%PDF" not in der


def test_without_a_signing_key_the_bundle_is_encrypted_but_unsigned(world, tmp_path: Path) -> None:
    bundle, sealed = _sealed(world, sign=False)
    pki = world[2]
    decrypted = _openssl_decrypt(tmp_path, sealed.raw, pki.la.cert_path, pki.la.key_path)
    inner = email.message_from_bytes(decrypted, policy=email.policy.default)
    assert inner.get_content_type() == "multipart/mixed"
    assert _parts(decrypted)[bundle.filename("json")] == bundle.json


def test_an_expired_la_certificate_stops_the_bundle_with_a_clear_error(world, tmp_path: Path) -> None:
    from datetime import timedelta

    from cme_batch.errors import BadInputError
    from tests.referral_support import issue, save

    engine, case_id, pki, _ = world
    old = save(tmp_path, "old-la", *issue(pki.ca, "Old LA", "missingpupils@gloucestershire.gov.uk",
                                           NOW - timedelta(days=400), days=30))
    extra = smime_config(pki).replace(str(pki.la.cert_path), str(old.cert_path))
    cfg = config_mod.load(write_config(tmp_path, str(engine.url), extra))
    with engine.connect() as conn:
        bundle = build_bundle(conn, case_id, cfg, NOW)
    with pytest.raises(BadInputError, match=r"referral.la_certificate: .* expired on"):
        encrypt_bundle(bundle, cfg)
