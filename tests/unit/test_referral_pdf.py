"""The referral PDF: every page renders, thin cases render, and the passphrase PDF is really locked.

Rendering is checked with poppler's ``pdftoppm``; the encrypted PDF is opened with pypdf and
qpdf, with and without the passphrase.
"""

from __future__ import annotations

import email
import email.policy
import io
import subprocess
from datetime import date
from pathlib import Path

import pypdf
import pytest
from sqlalchemy import Engine, select, update

from cme_batch import config as config_mod
from cme_batch.config import Config
from cme_batch.errors import BadInputError
from cme_batch.model import MarksRecord, SourceBatch
from cme_batch.referral.bundle import Bundle, Encrypted, Held, build_bundle, encrypt_bundle
from cme_batch.store import migrate, open_store
from cme_batch.store import tables as t
from cme_batch.store.ingest import apply_batch
from tests.conftest import write_config
from tests.referral_support import NOW, Family, seed_case
from tests.servers import need_tool

PASSPHRASE = "correct horse battery staple 42"
PASS_CONFIG = '''
[referral]
method = "pdf-passphrase"
passphrase = { env = "CME_TEST_LA_PASSPHRASE" }
passphrase_sharing = "agreed by phone with the Access to Education Team on 3 November"
'''


@pytest.fixture
def store(tmp_path: Path) -> Engine:
    engine = open_store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    migrate(engine)
    return engine


def _config(tmp_path: Path, engine: Engine, extra: str = "") -> Config:
    return config_mod.load(write_config(tmp_path, str(engine.url), extra))


def _bundle(engine: Engine, cfg: Config, family: Family | None = None, kind: str = "referral") -> Bundle:
    case_id = seed_case(engine, family)
    with engine.connect() as conn:
        return build_bundle(conn, case_id, cfg, NOW, kind)


def _render(pdf: bytes, tmp_path: Path, password: str | None = None) -> list[Path]:
    """Rasterise every page; returns the PNGs (pdftoppm exits non-zero on a page it cannot draw)."""
    tool = need_tool("pdftoppm", "poppler-utils")
    src = tmp_path / "doc.pdf"
    src.write_bytes(pdf)
    args = [tool, "-png", "-r", "40"] + (["-upw", password] if password else []) + [str(src), str(tmp_path / "page")]
    proc = subprocess.run(args, check=False, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return sorted(tmp_path.glob("page*.png"))


def _text(pdf: bytes, password: str | None = None) -> str:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    if password is not None:
        assert reader.decrypt(password)
    return "\n".join(p.extract_text() for p in reader.pages)


def test_every_page_of_the_referral_renders(store: Engine, tmp_path: Path) -> None:
    bundle = _bundle(store, _config(tmp_path, store))
    pages = _render(bundle.pdf, tmp_path)
    assert len(pages) == len(pypdf.PdfReader(io.BytesIO(bundle.pdf)).pages) >= 2
    assert all(p.stat().st_size > 2000 for p in pages)  # a blank A4 page at 40 dpi is far smaller
    text = _text(bundle.pdf)
    for expected in ("Amelia Rose Marsh-Ellery", "A916299925001", "14 Mar 2017", "Ms Joanna Marsh",
                     "Oliver Marsh-Ellery", "Home visit", "81.7%", "<reply-8841@school.example>",
                     "OFFICIAL-SENSITIVE", "Access to Education Team"):
        assert expected in text, expected


def test_a_case_with_no_contacts_or_siblings_still_renders(store: Engine, tmp_path: Path) -> None:
    bundle = _bundle(store, _config(tmp_path, store), Family(contacts=[], siblings=[], flags=[]))
    assert bundle.document["contacts"] == [] and bundle.document["siblings"] == []
    assert _render(bundle.pdf, tmp_path)
    text = _text(bundle.pdf)
    assert "No parents or carers are recorded" in text
    assert "No siblings found on roll" in text


def test_an_unconfirmed_referral_is_marked_draft_and_cannot_be_encrypted(store: Engine, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_TEST_LA_PASSPHRASE", PASSPHRASE)
    cfg = _config(tmp_path, store, PASS_CONFIG)
    bundle = _bundle(store, cfg, Family(confirmed=False))
    assert "DRAFT: not yet confirmed" in _text(bundle.pdf)
    with pytest.raises(BadInputError, match="never sent without"):
        encrypt_bundle(bundle, cfg)


def test_the_passphrase_pdf_opens_with_the_passphrase_and_not_without(store: Engine, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_TEST_LA_PASSPHRASE", PASSPHRASE)
    cfg = _config(tmp_path, store, PASS_CONFIG)
    bundle = _bundle(store, cfg)
    sealed = encrypt_bundle(bundle, cfg)
    assert isinstance(sealed, Encrypted) and sealed.method == "pdf-passphrase"
    msg = email.message_from_bytes(sealed.raw, policy=email.policy.default)
    attachments = [p for p in msg.iter_attachments()]
    assert [a.get_filename() for a in attachments] == [bundle.filename("pdf")]
    locked = attachments[0].get_payload(decode=True)

    reader = pypdf.PdfReader(io.BytesIO(locked))
    assert reader.is_encrypted
    assert not reader.decrypt("wrong passphrase")
    with pytest.raises(pypdf.errors.FileNotDecryptedError):
        pypdf.PdfReader(io.BytesIO(locked)).pages[0].extract_text()
    for secret in (b"Amelia", b"Marsh", b"A916299925001", b"2017-03-14"):
        assert secret not in locked

    opened = pypdf.PdfReader(io.BytesIO(locked))
    assert opened.decrypt(PASSPHRASE)
    assert "Amelia Rose Marsh-Ellery" in opened.pages[0].extract_text()
    assert opened.attachments[bundle.filename("json")] == [bundle.json]
    assert opened.metadata is not None and opened.metadata.title == f"CME referral {bundle.ref}"
    assert _render(locked, tmp_path, PASSPHRASE)

    qpdf = need_tool("qpdf", "qpdf")
    path = tmp_path / "locked.pdf"
    path.write_bytes(locked)
    assert subprocess.run([qpdf, "--check", str(path)], check=False, capture_output=True).returncode != 0
    shown = subprocess.run([qpdf, f"--password={PASSPHRASE}", "--show-encryption", str(path)],
                           check=False, capture_output=True, text=True)
    assert "AESv3" in shown.stdout  # AESv3 is qpdf's name for AES-256 (PDF 2.0 / R6)
    listed = subprocess.run([qpdf, f"--password={PASSPHRASE}", "--list-attachments", str(path)],
                            check=False, capture_output=True, text=True)
    assert bundle.filename("json") in listed.stdout


def test_the_covering_email_says_how_the_passphrase_is_shared_and_never_contains_it(
        store: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_TEST_LA_PASSPHRASE", PASSPHRASE)
    cfg = _config(tmp_path, store, PASS_CONFIG)
    sealed = encrypt_bundle(_bundle(store, cfg), cfg)
    assert isinstance(sealed, Encrypted)
    assert PASSPHRASE.encode() not in sealed.raw
    body = email.message_from_bytes(sealed.raw, policy=email.policy.default).get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "agreed by phone with the Access to Education Team on 3 November" in text
    assert "Amelia" not in text and "A916299925001" not in text


def test_a_sharing_text_that_leaks_the_passphrase_is_refused(store: Engine, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_TEST_LA_PASSPHRASE", PASSPHRASE)
    leaky = PASS_CONFIG.replace("agreed by phone with the Access to Education Team on 3 November",
                                f"is {PASSPHRASE}")
    cfg = _config(tmp_path, store, leaky)
    with pytest.raises(BadInputError, match="not contain the passphrase"):
        encrypt_bundle(_bundle(store, cfg), cfg)


def test_a_short_passphrase_is_refused(store: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_TEST_LA_PASSPHRASE", "short")
    cfg = _config(tmp_path, store, PASS_CONFIG)
    with pytest.raises(BadInputError, match="too short"):
        encrypt_bundle(_bundle(store, cfg), cfg)


def test_with_no_encryption_configured_the_referral_is_held_with_a_reason(store: Engine, tmp_path: Path) -> None:
    cfg = _config(tmp_path, store)
    held = encrypt_bundle(_bundle(store, cfg), cfg)
    assert isinstance(held, Held)
    assert "referral.la_certificate" in held.reason and "referral.passphrase" in held.reason


def test_the_update_bundle_renders_and_says_the_child_returned(store: Engine, tmp_path: Path) -> None:
    cfg = _config(tmp_path, store)
    case_id = seed_case(store, Family(referred=True))
    with store.begin() as conn:
        key, school_id = conn.execute(
            select(t.pupil_keys.c.pupil_key, t.pupils.c.school_id)
            .join(t.cases, t.cases.c.pupil_id == t.pupil_keys.c.pupil_id)
            .join(t.pupils, t.pupils.c.id == t.cases.c.pupil_id).where(t.cases.c.id == case_id)).one()
        conn.execute(update(t.cases).where(t.cases.c.id == case_id).values(
            status="closed", closed_on=NOW.date(), closed_reason="returned"))
    back = MarksRecord(key, date(2025, 12, 1), ("/", "/"))
    apply_batch(store, school_id, SourceBatch("test", "return", records=[back]), NOW)
    with store.connect() as conn:
        bundle = build_bundle(conn, case_id, cfg, NOW, "update")
    assert bundle.document["update"]["reason"] == "returned"
    assert bundle.document["update"]["last_attended"] == "2025-12-01"
    assert "contacts" not in bundle.document and "evidence" not in bundle.document
    assert _render(bundle.pdf, tmp_path)
    assert "The child has returned to school" in _text(bundle.pdf)
