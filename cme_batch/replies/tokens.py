"""Reply tokens: the proof that a reply answers a message we sent, to that person, about that case.

A token is ``<key id>.<nonce>.<expiry>.<mac>``; it rides in the subject of the message we send
(``[cme:<token>]``) so that it comes back in the subject of the reply. The MAC (HMAC-SHA256,
truncated to 128 bits) covers the key id, nonce, expiry, the case and the recipient's address,
so a token forwarded to someone else, or pasted into a reply about another case, fails. Each
token is also a row in ``reply_tokens``: a decision (CONFIRM, HOLD, CLOSE) can use it once, and
that use is marked with a conditional UPDATE so two replies racing for one token cannot both win.
A NOTE, which records an action and decides nothing, is checked the same way but uses nothing up.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, func, insert, select, update

from cme_batch.errors import BadInputError
from cme_batch.replies_settings import RepliesConfig
from cme_batch.store import tables as t

MIN_KEY_BYTES = 16
TOKEN_RE = re.compile(r"([A-Za-z0-9]{1,16})\.([A-Za-z0-9_-]{16})\.([0-9]{1,12})\.([A-Za-z0-9_-]{22})")
TAG_RE = re.compile(r"\[cme:([^\]\s]*)\]", re.IGNORECASE)

# Why a token was refused. Stable strings: they are counted, shown in the digest and stored.
NO_TOKEN = "no reply token in the subject"
MANY_TOKENS = "more than one reply token in the subject"
MALFORMED = "reply token is malformed"
UNKNOWN_KEY = "reply token is signed with an unknown key"
UNKNOWN_TOKEN = "reply token was not issued by cme-batch"
OTHER_CASE = "reply token was issued for another case"
OTHER_SENDER = "reply token was issued to another address"
BAD_MAC = "reply token signature does not match"
EXPIRED = "reply token has expired"
USED = "reply token was already used"
BEFORE_REOPENED = ("reply token came with a request sent before the case was closed and raised again: a CONFIRM, "
                   "HOLD or CLOSE answers the request sent since")
NOT_A_REQUEST = ("reply token came with an office action email, not with a request to the DSL: a CONFIRM, "
                 "HOLD or CLOSE answers the DSL's own request")
#: What a token must have been sent with to carry a decision (CONFIRM, HOLD, CLOSE): a request put
#: to the DSL or the deputy (None: a token issued before its purpose was kept).
DECIDING = frozenset({None, "confirm_request", "review_request"})


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def _aware(d: datetime) -> datetime:
    """SQLite hands back naive datetimes; the store writes UTC."""
    return d if d.tzinfo is not None else d.replace(tzinfo=UTC)


class KeyRing:
    """The HMAC keys by id. The first key signs new tokens; every key verifies."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise BadInputError("replies.token_keys: no key configured; reply tokens cannot be made or checked")
        for kid, key in keys:
            if len(key) < MIN_KEY_BYTES:
                raise BadInputError(f"replies.token_keys: key {kid!r} is shorter than {MIN_KEY_BYTES} bytes; "
                                    "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")
        self._keys = dict(keys)
        self.signing_id = keys[0][0]

    def __repr__(self) -> str:
        return f"KeyRing(ids={list(self._keys)})"

    @classmethod
    def from_config(cls, cfg: RepliesConfig) -> KeyRing:
        """Read every configured key from the secret store (environment, file or systemd credential)."""
        return cls([(k.id, k.secret.reveal().encode("utf-8")) for k in cfg.token_keys])

    def key(self, kid: str) -> bytes | None:
        return self._keys.get(kid)


def _mac(key: bytes, kid: str, nonce: str, expiry: int, case_id: int, address: str) -> str:
    msg = f"cme-batch reply v1|{kid}|{nonce}|{expiry}|{case_id}|{address.strip().lower()}".encode()
    return _b64(hmac.new(key, msg, hashlib.sha256).digest()[:16])


def find_in_subject(subject: str) -> tuple[str | None, str | None]:
    """The one token tagged in a subject, or a reason it cannot be taken from there."""
    found = TAG_RE.findall(subject or "")
    if not found:
        return None, NO_TOKEN
    if len(set(found)) > 1:
        return None, MANY_TOKENS
    return found[0], None


def tag(token: str) -> str:
    """How a token is written into a subject."""
    return f"[cme:{token}]"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str | None = None


def reopened_at(conn: Connection, case_id: int) -> datetime | None:
    """When the case was last reopened (its latest ``reopened`` event), or None."""
    ce = t.case_events.c
    at = conn.execute(select(func.max(ce.at)).where(ce.case_id == case_id, ce.kind == "reopened")).scalar()
    return _aware(at) if at is not None else None


def case_of(conn: Connection, token: str) -> int | None:
    """The case a token was issued for, found by its nonce, signature unchecked: only to show a reply
    kept for review under its case, never to act on it."""
    m = TOKEN_RE.fullmatch(token)
    if not m:
        return None
    case_id = conn.execute(select(t.reply_tokens.c.case_id).where(t.reply_tokens.c.nonce == m.group(2))).scalar()
    return int(case_id) if case_id is not None else None


class Tokens:
    """Issues and verifies reply tokens against the ``reply_tokens`` table."""

    def __init__(self, keyring: KeyRing, lifetime: timedelta = timedelta(days=14)) -> None:
        self.keyring = keyring
        self.lifetime = lifetime

    @classmethod
    def from_config(cls, cfg: RepliesConfig) -> Tokens:
        return cls(KeyRing.from_config(cfg), timedelta(days=cfg.token_lifetime_days))

    def issue(self, conn: Connection, case_id: int, recipient: str, now: datetime, purpose: str | None = None) -> str:
        """A new single-use token for ``recipient`` about ``case_id``, stored so its use can be marked;
        ``purpose``, the email it is sent with (see ``DECIDING``)."""
        kid = self.keyring.signing_id
        key = self.keyring.key(kid)
        assert key is not None
        nonce = _b64(secrets.token_bytes(12))
        expires = _aware(now) + self.lifetime
        expiry = int(expires.timestamp())
        conn.execute(insert(t.reply_tokens).values(
            nonce=nonce, case_id=case_id, recipient=recipient.strip().lower(), issued_at=now,
            expires_at=datetime.fromtimestamp(expiry, UTC), purpose=purpose))
        return f"{kid}.{nonce}.{expiry}.{_mac(key, kid, nonce, expiry, case_id, recipient)}"

    def verify(self, conn: Connection, token: str, case_id: int, sender: str, now: datetime,
               use: bool = True) -> Verdict:
        """Check ``token`` for this case and the address the reply came from, and use it up.

        Call this last, once everything else about the reply is acceptable, inside the
        transaction that applies the reply: the token is marked used only if that commits.
        With ``use`` false (a NOTE, which decides nothing) the token is checked as above but not
        used up, nor need it be unused: the CONFIRM the DSL sends later to the same request still
        counts, she can note a home visit on the request she confirmed, and the office can note
        two calls on one action email. A decision (``use``) needs a token sent with a request put
        to the DSL (``DECIDING``): a deputy DSL who also works in the office gets the office's
        action emails too, and her "Confirm" to a first-day call is no confirmation of a referral
        she was never shown. Nor does a request sent before the case was last reopened (closed by
        reply, then raised again): a fresh one, saying why it was closed, is sent.
        """
        m = TOKEN_RE.fullmatch(token)
        if not m:
            return Verdict(False, MALFORMED)
        kid, nonce, expiry_s, mac = m.groups()
        key = self.keyring.key(kid)
        if key is None:
            return Verdict(False, UNKNOWN_KEY)
        row = conn.execute(select(t.reply_tokens).where(t.reply_tokens.c.nonce == nonce)).first()
        if row is None:
            return Verdict(False, UNKNOWN_TOKEN)
        expiry = int(expiry_s)
        if not hmac.compare_digest(mac, _mac(key, kid, nonce, expiry, case_id, sender)):
            if row.case_id != case_id:
                return Verdict(False, OTHER_CASE)
            if row.recipient != sender.strip().lower():
                return Verdict(False, OTHER_SENDER)
            return Verdict(False, BAD_MAC)
        now = _aware(now)
        if now.timestamp() >= expiry or now >= _aware(row.expires_at):
            return Verdict(False, EXPIRED)
        if not use:
            return Verdict(True)
        if row.purpose not in DECIDING:
            return Verdict(False, NOT_A_REQUEST)
        reopened = reopened_at(conn, case_id)
        if reopened is not None and _aware(row.issued_at) < reopened:
            return Verdict(False, BEFORE_REOPENED)
        used = conn.execute(update(t.reply_tokens).where(
            t.reply_tokens.c.nonce == nonce, t.reply_tokens.c.used_at.is_(None)).values(used_at=now))
        if used.rowcount != 1:
            return Verdict(False, USED)
        return Verdict(True)
