"""What the LA's software needs to open a referral, checked with real tools (openssl, qpdf, pdfinfo).

A review of the encryption routes against the standards and vendors' documentation:

- an LA (or school) certificate as Windows exports it: a PKCS#7 ``.p7b`` file, or a PEM bundle
  holding the chain in any order (Export-Certificate ``-Type P7B``: "a PKCS#7 file format which
  can contain one or more certificates"), was refused or read as the CA's certificate;
- a school signing certificate issued by an intermediate CA: the intermediate was not sent, so the
  LA's client or gateway could not build the chain and showed the signature as invalid;
- the covering note inside the envelope would go as 8-bit text when it held a non-ASCII letter (a
  DSL called Zoë) and no line over 78 characters (today's wording always has one): RFC 8551 3.1.2
  and 3.1.3 ask for 7-bit entities inside S/MIME;
- a passphrase holding a tab made fpdf2 raise an error quoting the passphrase, outside the
  errors the referrals stage reports (so it went to the log as a crash); one that SASLprep changes
  (full-width letters, a non-breaking space) sealed a PDF qpdf and poppler cannot open.
"""

from __future__ import annotations

import email
import email.policy
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import Engine

from cme_batch import config as config_mod
from cme_batch.config import Config
from cme_batch.errors import BadInputError
from cme_batch.referral import pdfcrypt
from cme_batch.referral.bundle import Encrypted, build_bundle, encrypt_bundle
from cme_batch.referral.smime import inner_entity
from cme_batch.store import migrate, open_store
from tests.conftest import write_config
from tests.referral_support import NOW, PKI_VALID_DAYS, Identity, make_pki, save, seed_case, smime_config
from tests.servers import need_tool

LA_EMAIL = "missingpupils@gloucestershire.gov.uk"


@pytest.fixture
def store(tmp_path: Path) -> tuple[Engine, int]:
    engine = open_store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    migrate(engine)
    yield engine, seed_case(engine)
    engine.dispose()


def _load(tmp_path: Path, engine: Engine, extra: str, dsl_name: str | None = None) -> Config:
    path = write_config(tmp_path, str(engine.url), extra)
    if dsl_name is not None:
        text = path.read_text(encoding="utf-8").replace('name = "Dee Ess-Ell"', f'name = "{dsl_name}"')
        path.write_text(text, encoding="utf-8")
    return config_mod.load(path)


def _seal(engine: Engine, case_id: int, cfg: Config) -> Encrypted:
    with engine.connect() as conn:
        sealed = encrypt_bundle(build_bundle(conn, case_id, cfg, NOW), cfg)
    assert isinstance(sealed, Encrypted)
    return sealed


def _run(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(a) for a in args], check=False, capture_output=True, timeout=60)


def _decrypt(tmp_path: Path, raw: bytes, who: Identity) -> bytes:
    src, out = tmp_path / "sealed.eml", tmp_path / "opened.eml"
    src.write_bytes(raw)
    proc = _run(need_tool("openssl", "openssl"), "cms", "-decrypt", "-in", src, "-recip", who.cert_path,
                "-inkey", who.key_path, "-out", out)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return out.read_bytes()


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@pytest.mark.parametrize("form", ["p7b-der", "p7b-pem", "pem-chain-ca-first"])
def test_an_la_certificate_exported_with_its_chain_still_gets_the_referral_to_the_la(
        store: tuple[Engine, int], tmp_path: Path, form: str) -> None:
    engine, case_id = store
    pki = make_pki(tmp_path / "pki")
    exported = tmp_path / f"la-export.{form}"
    chain = tmp_path / "chain.pem"
    chain.write_bytes(_pem(pki.ca.cert, pki.la.cert))  # the CA first, as some exports order it
    if form == "pem-chain-ca-first":
        exported.write_bytes(chain.read_bytes())
    else:
        proc = _run(need_tool("openssl", "openssl"), "crl2pkcs7", "-nocrl", "-certfile", chain,
                    "-outform", "DER" if form == "p7b-der" else "PEM", "-out", exported)
        assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    extra = smime_config(pki).replace(str(pki.la.cert_path), str(exported))
    sealed = _seal(engine, case_id, _load(tmp_path, engine, extra))
    opened = _decrypt(tmp_path, sealed.raw, pki.la)
    assert f"{sealed.ref}-referral.json".encode() in opened


def test_a_file_of_ca_certificates_only_is_refused_with_what_to_do(store: tuple[Engine, int],
                                                                  tmp_path: Path) -> None:
    engine, case_id = store
    pki = make_pki(tmp_path / "pki")
    only_ca = tmp_path / "ca-only.pem"
    only_ca.write_bytes(_pem(pki.ca.cert))
    cfg = _load(tmp_path, engine, smime_config(pki).replace(str(pki.la.cert_path), str(only_ca)))
    with pytest.raises(BadInputError, match=r"referral.la_certificate: .* holds no end-entity certificate"):
        _seal(engine, case_id, cfg)


def _cert(subject: str, issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None, *, ca: bool,
          email: str | None = None) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer[0].subject if issuer else name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=PKI_VALID_DAYS))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    else:
        b = (b.add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
             .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email or "")]), critical=False))
    return b.sign(issuer[1] if issuer else key, hashes.SHA256()), key


def test_the_signature_carries_the_intermediate_ca_so_the_la_can_verify_it(store: tuple[Engine, int],
                                                                          tmp_path: Path) -> None:
    engine, case_id = store
    pki = make_pki(tmp_path / "pki")
    root = _cert("Commercial Root", None, ca=True)
    intermediate = _cert("Commercial S/MIME CA", root, ca=True)
    signer = save(tmp_path / "school", "signer", *_cert("School CME", intermediate, ca=False,
                                                        email="cme-batch@school.example"))
    signer.cert_path.write_bytes(_pem(signer.cert, intermediate[0]))  # the file as the CA delivers it
    root_file = tmp_path / "root.pem"
    root_file.write_bytes(_pem(root[0]))  # all the LA trusts: the root, as Windows ships it
    extra = smime_config(pki).replace(str(pki.signer.cert_path), str(signer.cert_path)).replace(
        str(pki.signer.key_path), str(signer.key_path))
    sealed = _seal(engine, case_id, _load(tmp_path, engine, extra))
    (tmp_path / "signed.eml").write_bytes(_decrypt(tmp_path, sealed.raw, pki.la))
    proc = _run("openssl", "cms", "-verify", "-in", tmp_path / "signed.eml", "-CAfile", root_file,
                "-purpose", "smimesign", "-out", tmp_path / "content.eml")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")


def test_the_entity_inside_the_envelope_is_7bit_even_with_a_non_ascii_name(store: tuple[Engine, int],
                                                                          tmp_path: Path) -> None:
    engine, case_id = store
    pki = make_pki(tmp_path / "pki")
    sealed = _seal(engine, case_id, _load(tmp_path, engine, smime_config(pki), dsl_name="Zoë Brontë"))
    opened = _decrypt(tmp_path, sealed.raw, pki.la)
    assert all(b < 0x80 for b in opened), "8-bit text inside the S/MIME entity"
    (tmp_path / "signed.eml").write_bytes(opened)
    proc = _run("openssl", "cms", "-verify", "-in", tmp_path / "signed.eml", "-CAfile", pki.ca.cert_path,
                "-purpose", "smimesign")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    signed = email.message_from_bytes(opened, policy=email.policy.default)
    note = next(p for p in signed.get_payload(0).walk() if p.get_content_type() == "text/plain")
    assert "Zoë Brontë" in note.get_content()
    # Today's note always has a line over 78 characters, which happens to force quoted-printable; a
    # shorter note (any future wording) went out as 8bit.
    short = inner_entity("Questions to Zoë Brontë.\n", [])
    assert all(b < 0x80 for b in short) and b"8bit" not in short


def _passphrase_config(tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch, value: str) -> Config:
    monkeypatch.setenv("CME_REVIEW_LA_PASSPHRASE", value)
    return _load(tmp_path, engine, '''
    [referral]
    method = "pdf-passphrase"
    passphrase = { env = "CME_REVIEW_LA_PASSPHRASE" }
    ''')


def test_a_passphrase_with_a_control_character_is_refused_without_quoting_it(
        store: tuple[Engine, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine, case_id = store
    passphrase = "Tewkesbury\tAbbey-lantern-7"
    cfg = _passphrase_config(tmp_path, engine, monkeypatch, passphrase)
    with pytest.raises(BadInputError) as err:  # a BadInputError is reported by the stage; others crash it
        _seal(engine, case_id, cfg)
    assert "Tewkesbury" not in str(err.value)


@pytest.mark.parametrize("passphrase", ["ＴｅｗｋｅｓｂｕｒｙＡｂｂｅｙ７", "Tewkesbury\u00a0Abbey-lantern-7",
                                        "Cafe\u0301-Tewkesbury-lantern"],
                         ids=["full-width", "non-breaking-space", "decomposed-accent"])
def test_a_passphrase_pdf_readers_read_differently_is_refused(
        store: tuple[Engine, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, passphrase: str) -> None:
    engine, case_id = store
    qpdf, pdfinfo = need_tool("qpdf", "qpdf"), need_tool("pdfinfo", "poppler-utils")
    # Why: fpdf2 applies SASLprep to the passphrase (as ISO 32000-2 says), qpdf and poppler do not.
    monkeypatch.setattr(pdfcrypt, "check_passphrase", lambda p: None)
    with engine.connect() as conn:
        doc = build_bundle(conn, case_id, _passphrase_config(tmp_path, engine, monkeypatch, passphrase), NOW).document
    pdf = tmp_path / "sealed.pdf"
    pdf.write_bytes(pdfcrypt.encrypted_pdf(doc, NOW, [], passphrase))
    assert _run(qpdf, f"--password={passphrase}", "--check", pdf).returncode != 0
    assert _run(pdfinfo, "-upw", passphrase, pdf).returncode != 0
    monkeypatch.undo()
    cfg = _passphrase_config(tmp_path, engine, monkeypatch, passphrase)
    with pytest.raises(BadInputError, match="PDF readers do not all read alike") as err:
        _seal(engine, case_id, cfg)
    assert passphrase not in str(err.value)


@pytest.mark.parametrize("passphrase", ["Tewkesbury£Abbey-lantern-7", "Café Tewkesbury lantern 7"])
def test_an_ordinary_passphrase_opens_in_qpdf_and_poppler_as_aes256_r6_with_nothing_in_the_clear(
        store: tuple[Engine, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, passphrase: str) -> None:
    engine, case_id = store
    qpdf, pdfinfo = need_tool("qpdf", "qpdf"), need_tool("pdfinfo", "poppler-utils")
    sealed = _seal(engine, case_id, _passphrase_config(tmp_path, engine, monkeypatch, passphrase))
    msg = email.message_from_bytes(sealed.raw, policy=email.policy.default)
    (part,) = list(msg.iter_attachments())
    assert part.get_filename() == f"{sealed.ref}-referral.pdf"
    pdf = tmp_path / "sealed.pdf"
    pdf.write_bytes(part.get_content())
    shown = _run(qpdf, f"--password={passphrase}", "--show-encryption", pdf).stdout.decode()
    assert "R = 6" in shown and "stream encryption method: AESv3" in shown
    assert "string encryption method: AESv3" in shown
    assert _run(qpdf, f"--password={passphrase}", "--check", pdf).returncode == 0
    assert _run(pdfinfo, "-upw", passphrase, pdf).returncode == 0
    raw = pdf.read_bytes()
    for secret in (b"Amelia", b"Marsh", b"A916299925001", b"2017-03-14", b"referral.json",
                   sealed.ref.encode()):
        assert secret not in raw
