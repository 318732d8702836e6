"""An adversarial review of what reaches whom and what is left behind (DOMAIN.md 7).

Each scenario is built for real: a SQLite store on disk, the ``cme-batch`` command run as a
separate process (so its logging is configured as the night's is, to standard error, which
systemd sends to the journal), and the files and emails it leaves are read back as a person
would find them.
"""

from __future__ import annotations

import email
import email.policy
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from sqlalchemy import select

from cme_batch.store import migrate, open_store
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.referral_support import Family, make_pki, pdf_text, seed_case, smime_config


def _cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("cme-batch")
    return subprocess.run([str(exe), "--config", str(cfg), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ}, cwd=cfg.parent)


def test_a_name_the_referral_font_cannot_draw_is_not_spelled_out_in_the_night_log(tmp_path: Path) -> None:
    """A child whose name is written in a script the form's font lacks (Chinese here): the PDF
    library logs each character it could not draw, and the log filter, which compares whole
    words, does not recognise single characters. The night's journal spelled the name out."""
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    engine = open_store(url)
    migrate(engine)
    base = Family()
    child = replace(base.child, legal_forename="小龙", legal_surname="李明", preferred_forename=None,
                    middle_names=None)
    case_id = seed_case(engine, Family(child=child))
    with engine.connect() as conn:
        ref = conn.execute(select(t.cases.c.ref).where(t.cases.c.id == case_id)).scalar_one()
    engine.dispose()
    # the command runs on the real clock: certificates valid now
    cfg = write_config(tmp_path, url, smime_config(make_pki(tmp_path / "pki", datetime.now(UTC))))

    night = _cli(cfg, "nightly", "--only", "referrals", "--only", "send")
    assert night.returncode == 0, night.stdout + night.stderr
    assert "1 referral(s) queued" in night.stdout
    preview = _cli(cfg, "referral", ref, "--out", str(tmp_path / "preview"), "--preview")
    assert preview.returncode == 0, preview.stdout + preview.stderr

    for run in (night, preview):
        said = run.stdout + run.stderr
        assert not [ch for ch in "小龙李明" if ch in said], said
        # the technician is still told that the form lacks characters, and where to find them
        assert "4 character(s)" in run.stderr and "JSON" in run.stderr, run.stderr
    # and the LA's officer, who sees blank boxes where the name should be, is told why on the form
    form = pdf_text(next((tmp_path / "preview").glob("*/*-referral.pdf")).read_bytes())
    assert "are not in its font and are left blank" in form and "JSON copy" in form


def _mails(folder: Path) -> dict[str, EmailMessage]:
    """The maildrop's messages by subject."""
    out = {}
    for path in folder.glob("*.eml"):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        out[str(msg["Subject"])] = msg
    return out


def _section(text: str, title: str) -> str:
    """One section of a morning email's text: from its title to the next title."""
    after = text.replace("\r\n", "\n").split(f"\n{title}\n", 1)[1]
    return after.split("\n", 1)[1].split("\n\n", 1)[0]  # below the title's underline, to the blank line


def test_a_confirmed_referral_an_expired_la_certificate_stops_is_shown_to_the_dsl(tmp_path: Path) -> None:
    """The LA's certificate expired: nothing leaves unencrypted (the referral is not queued), but the
    DSL's digest said "Referrals confirmed but not sent: None." and "being sent to the LA", night
    after night, while the referral's due date passed."""
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    engine = open_store(url)
    migrate(engine)
    case_id = seed_case(engine, Family())
    with engine.connect() as conn:
        ref = conn.execute(select(t.cases.c.ref).where(t.cases.c.id == case_id)).scalar_one()
    engine.dispose()
    expired = make_pki(tmp_path / "pki", datetime.now(UTC) - timedelta(days=800), days=365)
    cfg = write_config(tmp_path, url, smime_config(expired))

    night = _cli(cfg, "nightly", "--as-of", "2025-11-28", "--only", "referrals", "--only", "summary",
                 "--only", "send")
    assert night.returncode == 1 and f"1 failed ({ref})" in night.stdout, night.stdout + night.stderr
    mails = _mails(tmp_path / "maildrop")
    assert not [s for s in mails if s.startswith("CME referral")], "nothing may go to the LA"
    digest = next(m for s, m in mails.items() if s.startswith("CME digest"))
    text = digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    not_sent = _section(text, "Referrals confirmed but not sent")
    assert ref in not_sent and "expired" in not_sent, not_sent
    assert "being sent to the LA" not in text
    office = next(m for s, m in mails.items() if s.startswith("CME summary"))
    said = "".join(str(p.get_content()) for p in office.walk() if p.get_content_maintype() == "text")
    assert "certificate" not in said and "expired" not in said and "being sent to the LA" not in said


#: Words of safeguarding detail (DOMAIN.md 7: the DSL's only), as the digest and the referral write them.
SAFEGUARDING = ("child protection", "looked after", "in care", "social care", "domestic abuse", "child in need",
                "vulnerab", "young carer", "ehcp", "sen support", "highly mobile", "mental health",
                "learning difficulty", "referral form", "confirmed by", "on hold:", "receipt", "sha-256")


def test_the_office_gets_attendance_facts_only_in_every_part_of_every_email(tmp_path: Path) -> None:
    """The demo night (a child on a protection plan absent, referrals awaiting confirmation, one
    confirmed by reply and sent): every email to the office, every header and every part, carries
    none of the words of safeguarding detail that the DSL's digest does carry."""
    out = tmp_path / "demo"
    exe = Path(sys.executable).with_name("cme-batch")
    demo = subprocess.run([str(exe), "demo", "--dir", str(out)], capture_output=True, text=True, timeout=600)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    office, dsl = [], []
    for path in (out / "mail").glob("*.eml"):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if msg.get_content_type() == "application/pkcs7-mime":
            continue  # the LA's, encrypted
        text = "\n".join([*(f"{k}: {v}" for part in msg.walk() for k, v in part.items()),
                          *(str(p.get_content()) for p in msg.walk() if p.get_content_maintype() == "text")])
        (office if "office@" in str(msg["To"]) else dsl).append(text.casefold())
    assert len(office) >= 3 and any("child protection" in d for d in dsl)
    assert [w for w in SAFEGUARDING for o in office if w in o] == []
