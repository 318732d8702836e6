"""The demo's last act: the DSL confirms one referral by replying, and it goes out encrypted.

The demo makes its own throwaway certificates (a demo CA, the "LA", the school's archive and
signing identities) so the referral can be sealed with S/MIME exactly as in production, and a
Maildir stands in for the reply mailbox. ``dsl_replies`` writes the reply a DSL would send to
one confirmation request into that Maildir; the next run of the replies, referrals and send
stages then confirms the case, encrypts the bundle and drops it, with the DSL's receipt, into
the maildrop folder.
"""

from __future__ import annotations

import email
import email.policy
import os
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from sqlalchemy import Engine, select

from cme_batch.store import tables as t


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cme-batch DEMO (not for real use)"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


#: How long the demo's certificates stay valid after the later of the demo's date and today.
VALID = timedelta(days=825)


def _valid_to(now: datetime) -> datetime:
    """The end of a demo certificate's validity: ``VALID`` after the demo's own date (its clock runs
    in a past term) or after today, whichever is later. The demo's configuration is also tried by
    hand on the real clock (``check-config``, ``referral --out``): measured from the demo's date
    alone, its certificates expired on 7 October 2027 and every such command failed from then on."""
    return max(now, datetime.now(UTC)) + VALID


def _issue(ca: tuple[x509.Certificate, rsa.RSAPrivateKey] | None, cn: str, mail: str | None, now: datetime,
           serial: int) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca[0].subject if ca else _name(cn))
         .public_key(key.public_key()).serial_number(serial)
         .not_valid_before(now - timedelta(days=1)).not_valid_after(_valid_to(now)))
    if ca is None:
        b = b.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
    else:
        b = (b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False))
        if mail:
            b = b.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(mail)]), critical=False)
    return b.sign(ca[1] if ca else key, hashes.SHA256()), key


def make_pki(folder: Path, la_email: str, school_email: str, now: datetime) -> str:
    """Demo certificates in ``folder`` (keys mode 0600); returns the [referral] keys that use them."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca = _issue(None, "cme-batch demo CA", None, now, 1)
    # The LA's entry first in the envelope (lower serial): some gpgsm versions report an error,
    # though they decrypt, when the first recipient entry is not theirs.
    made = {"la": _issue(ca, "DEMO Access to Education Team", la_email, now, 0x1000),
            "archive": _issue(ca, "DEMO school archive", school_email, now, 0x2000),
            "signer": _issue(ca, "DEMO school CME sender", school_email, now, 0x3000)}
    for name, (cert, key) in {"ca": ca, **made}.items():
        (folder / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        fd = os.open(folder / f"{name}.key", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return (f'method = "smime"\nla_certificate = "{folder / "la.pem"}"\n'
            f'archive_certificate = "{folder / "archive.pem"}"\n'
            f'signing_certificate = "{folder / "signer.pem"}"\nsigning_key = "{folder / "signer.key"}"\n')


def replies_toml(maildir: Path) -> str:
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    return f'mailbox = "maildir"\n\n[replies.maildir]\npath = "{maildir}"\n'


def dsl_replies(engine: Engine, dsl_email: str, maildir: Path, now: datetime) -> str | None:
    """Write the DSL's CONFIRM reply to the confirmation request of the longest-running case."""
    ob, c = t.outbox.c, t.cases.c
    with engine.connect() as conn:
        rows = conn.execute(select(ob.mime, ob.recipients, c.ref, c.school_days).join(
            t.cases, c.id == ob.case_id).where(ob.purpose == "confirm_request")
            .order_by(c.school_days.desc(), c.ref)).all()
    row = next((r for r in rows if [a.lower() for a in r.recipients] == [dsl_email.lower()]), None)
    if row is None:
        return None
    request = email.message_from_bytes(row.mime, policy=email.policy.default)
    reply = EmailMessage()
    reply["From"] = dsl_email
    reply["To"] = str(request["From"])
    reply["Subject"] = f"Re: {request['Subject']}"
    reply["Date"] = format_datetime(now)
    reply["Message-ID"] = make_msgid(domain=dsl_email.rsplit("@", 1)[1])
    reply["In-Reply-To"] = str(request["Message-ID"])
    body = request.get_body(("plain",))
    text = body.get_content() if body is not None else ""
    quoted = "\n".join("> " + line for line in text.splitlines()[:6])
    reply.set_content(f"CONFIRM {row.ref}\n\nThanks, please send it today.\n\nOn {request['Date']} you wrote:\n"
                      f"{quoted}\n")
    name = f"{int(time.time())}.demo-dsl-reply.{row.ref}"
    (maildir / "tmp" / name).write_bytes(reply.as_bytes())
    os.replace(maildir / "tmp" / name, maildir / "new" / name)
    return str(row.ref)
