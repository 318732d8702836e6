"""The whole night against real servers, as a school runs it.

A small demo school is loaded; ``cme-batch nightly`` (a subprocess) detects its cases and
sends the summary, the digest and the confirmation requests through a real SMTP server
(aiosmtpd, STARTTLS, password); the DSL's reply is delivered into a real IMAP mailbox
(Dovecot, TLS); the next run reads it, confirms the case, encrypts the referral with S/MIME
and sends it to the LA's address; GnuPG's ``gpgsm`` decrypts what the LA received. Finally,
no subject line and no log line of either run names a pupil, a UPN or a date of birth.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from cme_batch.demo.generator import generate
from cme_batch.model import SourceBatch
from cme_batch.store import ingest
from cme_batch.store import tables as t
from tests.mailbox_servers import DovecotMailbox, dovecot, dovecot_server  # noqa: F401
from tests.mailservers import PASSWORD_ENV, SMTP_PASSWORD, Pki, mail_pki, smtp_servers, smtp_toml, write_mail_config  # noqa: F401
from tests.referral_support import make_pki, smime_config
from tests.replies_support import KEY, KEY_ENV, reply
from tests.servers import need_tool

AS_OF = date(2025, 12, 19)
LA = "missingpupils@gloucestershire.gov.uk"
DSL = "dsl@school.example"


def _cli(cfg: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("cme-batch")
    return subprocess.run([str(exe), "--config", str(cfg), *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


def _identities(engine: Engine) -> list[str]:
    out: list[str] = []
    with engine.connect() as conn:
        for row in conn.execute(select(t.pupils.c.legal_surname, t.pupils.c.legal_forename,
                                       t.pupils.c.preferred_forename, t.pupils.c.upn, t.pupils.c.dob)):
            out += [x for x in row[:4] if x]
            if row.dob:
                out += [row.dob.isoformat(), row.dob.strftime("%d/%m/%Y")]
    return out


def _leaks(text: str, identities: list[str]) -> list[str]:
    return sorted({i for i in identities if re.search(rf"(?<![\w-]){re.escape(i)}(?![\w-])", text)})


def _gpgsm_decrypt(tmp: Path, cms: bytes, pki: object) -> bytes:
    gpgsm = need_tool("gpgsm", "gpgsm")
    home = tmp / "gnupg"
    home.mkdir(mode=0o700)
    p12 = tmp / "la.p12"
    subprocess.run(["openssl", "pkcs12", "-export", "-legacy", "-inkey", str(pki.la.key_path),  # type: ignore[attr-defined]
                    "-in", str(pki.la.cert_path), "-certfile", str(pki.ca.cert_path),  # type: ignore[attr-defined]
                    "-out", str(p12), "-passout", "pass:"], check=True, capture_output=True)
    env = {**os.environ, "GNUPGHOME": str(home)}
    common = [gpgsm, "--batch", "--disable-dirmngr", "--pinentry-mode", "loopback", "--passphrase", ""]
    try:
        subprocess.run([*common, "--import", str(p12)], env=env, check=True, capture_output=True, timeout=60)
        (tmp / "referral.p7m").write_bytes(cms)
        proc = subprocess.run([*common, "--disable-policy-checks", "--disable-crl-checks", "--decrypt",
                               str(tmp / "referral.p7m")], env=env, capture_output=True, timeout=60)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)
def test_digest_reply_confirm_encrypted_referral_and_no_identity_leaks(
        tmp_path: Path, store_url: str, engine: Engine, dovecot: DovecotMailbox,  # noqa: F811
        smtp_servers, mail_pki: Pki) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    school = generate(2025, 80)
    with engine.begin() as conn:
        school_id = ingest.ensure_school(conn, "916", "2999", "The John Moore Primary School")
    ingest.apply_batch(engine, school_id, SourceBatch("demo", "demo", records=school.records,
                                                      replaces=frozenset({"contacts", "flags", "enrolments"})),
                       datetime(2025, 12, 19, 18, tzinfo=UTC))
    smtp = smtp_servers(mail_pki, tls="starttls", users={"cme-batch@school.example": SMTP_PASSWORD})
    pki = make_pki(tmp_path / "referral-pki")
    replies_section = f"""
[replies]
mailbox = "imap"
token_keys = [{{ id = "k1", secret = {{ env = "{KEY_ENV}" }} }}]
ca_file = "{dovecot.ca_file}"

[replies.imap]
host = "{dovecot.host}"
port = {dovecot.port}
security = "tls"
username = "{dovecot.user}"
password = {{ env = "CME_TEST_IMAP_PASSWORD" }}
"""
    cfg = write_mail_config(tmp_path, store_url, smtp_toml(smtp.port, mail_pki) + smime_config(pki)
                            + replies_section)
    env = {PASSWORD_ENV: SMTP_PASSWORD, KEY_ENV: KEY, "CME_TEST_IMAP_PASSWORD": dovecot.password}

    night = _cli(cfg, "nightly", "--as-of", AS_OF.isoformat(), env=env)
    assert night.returncode == 0, night.stdout + night.stderr
    received = [(r.rcpt_tos, email.message_from_bytes(r.content, policy=email.policy.default))
                for r in smtp.received]
    assert all(r.tls and r.login == "cme-batch@school.example" for r in smtp.received)
    digest = [m for to, m in received if str(m["Subject"]).startswith("CME digest")]
    assert len(digest) == 1 and sorted(digest[0]["To"].addresses[i].addr_spec for i in range(2)) == \
        ["deputy@school.example", DSL]
    requests = [m for to, m in received if to == [DSL] and "please confirm the referral" in str(m["Subject"])]
    assert requests, [str(m["Subject"]) for _, m in received]
    request = requests[0]
    ref = re.search(r"CME-\d{4}-\d{4}", str(request["Subject"])).group(0)  # type: ignore[union-attr]

    answer = reply(DSL, f"Re: {request['Subject']}", f"CONFIRM {ref}\n\nYes, send it.\n\n> the request\n")
    dovecot.deliver(answer)
    morning = _cli(cfg, "nightly", "--as-of", AS_OF.isoformat(), "--only", "replies", "--only", "referrals",
                   "--only", "send", env=env)
    assert morning.returncode == 0, morning.stdout + morning.stderr
    assert "1 accepted (CONFIRM 1)" in morning.stdout and "1 referral(s) queued" in morning.stdout
    with engine.connect() as conn:
        case = conn.execute(select(t.cases.c.confirmed_by, t.cases.c.referred_at).where(t.cases.c.ref == ref)).one()
    assert case.confirmed_by == DSL and case.referred_at is not None

    to_la = [r for r in smtp.received if r.rcpt_tos == [LA]]
    assert len(to_la) == 1
    outer = email.message_from_bytes(to_la[0].content, policy=email.policy.default)
    assert outer.get_content_type() == "application/pkcs7-mime" and ref in str(outer["Subject"])
    inner = email.message_from_bytes(_gpgsm_decrypt(tmp_path, outer.get_payload(decode=True), pki),
                                     policy=email.policy.default)
    files = {p.get_filename(): p.get_payload(decode=True) for p in inner.walk() if p.get_filename()}
    document = json.loads(files[f"{ref}-referral.json"])
    assert document["case"]["ref"] == ref and document["confirmation"]["by"] == DSL
    assert files[f"{ref}-referral.pdf"].startswith(b"%PDF")
    assert any(str(m["Subject"]).startswith(f"Receipt: CME referral {ref}")
               for m in (email.message_from_bytes(r.content, policy=email.policy.default) for r in smtp.received))

    identities = _identities(engine)
    subjects = "\n".join(str(email.message_from_bytes(r.content, policy=email.policy.default)["Subject"])
                         for r in smtp.received)
    assert _leaks(subjects, identities) == []
    logs = night.stderr + morning.stderr
    assert logs.count("\n") > 10, "the runs should have logged"
    assert _leaks(logs, identities) == []
