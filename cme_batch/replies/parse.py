"""Reading a reply: who sent it, its plain text, and the one command on its first unquoted line.

Only the first line that is neither blank nor quoted counts: the quoted original we sent holds
case references and instructions, so searching the whole body would let our own words act. A
reply with no plain-text part (HTML only) or with attachments (an attached e-mail among them)
is refused rather than guessed at; a person looks at it instead. Every refusal is a short fixed
phrase without any of the message's own text, so it can be counted, logged and shown without
leaking personal data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses, parsedate_to_datetime

VERBS = ("CONFIRM", "HOLD", "CLOSE", "NOTE")
MAX_TEXT = 1000
#: The largest reply whose body is read. A command is one line; the email package needs some eight
#: times a message's size to parse it, so a 100 MB message from anyone would take the night past
#: its memory cap, at the same message every night. A larger one is kept for review, headers read.
MAX_BYTES = 2 << 20
COMMAND_RE = re.compile(r"(?P<verb>[A-Za-z]+)\s+(?P<ref>[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+)(?:\s+(?P<text>.*))?")

# Actions an office NOTE can record, by the word that starts its text; the value is stored.
ACTIONS = {
    "first-day-call": "first_day_call",
    "contacts-tried": "contacts_tried",
    "home-visit": "home_visit",
    "social-media": "social_media",
    "other-agencies": "other_agencies",
}

ATTACHMENTS = "reply has attachments"
HTML_ONLY = "reply has no plain-text part (HTML only)"
UNREADABLE = "reply text cannot be decoded"
EMPTY = "reply has no unquoted text"
NOT_COMMAND = "first unquoted line is not a command"
NEEDS_TEXT = "command needs a reason or text after the case reference"
CONFIRM_ONLY_REF = "CONFIRM takes only a case reference"
TOO_LONG = f"command text is longer than {MAX_TEXT} characters"
TOO_LARGE = f"reply is larger than {MAX_BYTES >> 20} MB: its text was not read"
_HEADER_END = re.compile(rb"\r?\n\r?\n")


@dataclass(frozen=True)
class Command:
    verb: str  # CONFIRM, HOLD, CLOSE, NOTE
    ref: str  # the case reference, upper case
    text: str | None = None  # HOLD/CLOSE reason, NOTE text


def read_message(raw: bytes) -> EmailMessage:
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(msg, EmailMessage)
    return msg


def read_headers(raw: bytes) -> EmailMessage:
    """Only a message's header section (up to its first empty line, within ``MAX_BYTES``), parsed:
    the body is never decoded, whatever its size."""
    head = raw[:MAX_BYTES]
    end = _HEADER_END.search(head)
    msg = BytesHeaderParser(policy=policy.default).parsebytes(head[:end.end()] if end else head)
    assert isinstance(msg, EmailMessage)
    return msg


def sender_of(msg: EmailMessage) -> str | None:
    """The one address in From, lower-cased; None when there is not exactly one."""
    try:
        addrs = [a for _, a in getaddresses([str(v) for v in msg.get_all("From", [])]) if a]
    except Exception:  # noqa: BLE001 - a header so broken the parser gives up: treat as no sender
        return None
    if len(addrs) != 1 or "@" not in addrs[0]:
        return None
    return addrs[0].strip().lower()


def subject_of(msg: EmailMessage) -> str:
    try:
        return str(msg.get("Subject", "") or "")
    except Exception:  # noqa: BLE001 - an undecodable subject is shown as none
        return ""


def plain_text(msg: EmailMessage) -> tuple[str | None, str | None]:
    """The reply's plain text, or why it cannot be used: attachments, HTML only, undecodable.

    An attached e-mail (``message/rfc822``, or any ``message/*`` part) counts as an attachment and
    is never looked inside: its text is someone else's words, and must not act as the sender's command.
    """
    plain: EmailMessage | None = None
    html = False
    for part in msg.walk():
        if part.get_content_maintype() == "message":
            return None, ATTACHMENTS  # checked before walk() descends into the attached message
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        if part.get_content_disposition() == "attachment" or part.get_filename() \
                or ctype not in ("text/plain", "text/html"):
            return None, ATTACHMENTS
        if ctype == "text/html":
            html = True
        elif plain is None:
            plain = part
    if plain is None:
        return None, HTML_ONLY if html else EMPTY
    try:
        content = plain.get_content()
    except (LookupError, UnicodeError, ValueError):
        return None, UNREADABLE
    if not isinstance(content, str):
        return None, UNREADABLE
    return content, None


def first_unquoted_line(text: str) -> str | None:
    """The first line that is neither blank nor quoted with '>'."""
    for line in text.splitlines():
        s = line.strip().lstrip("\ufeff\u200b").strip()
        if s and not s.startswith(">"):
            return s
    return None


def parse_command(line: str) -> tuple[Command | None, str | None]:
    """One command from one line, or why the line is not one."""
    m = COMMAND_RE.fullmatch(line.strip())
    if not m or m["verb"].upper() not in VERBS:
        return None, NOT_COMMAND
    verb, ref, text = m["verb"].upper(), m["ref"].upper(), (m["text"] or "").strip() or None
    if verb == "CONFIRM":
        return (None, CONFIRM_ONLY_REF) if text else (Command(verb, ref), None)
    if text is None:
        return None, NEEDS_TEXT
    if len(text) > MAX_TEXT:
        return None, TOO_LONG
    return Command(verb, ref, text), None


def command_of(msg: EmailMessage) -> tuple[Command | None, str | None]:
    """The command a reply carries, or the reason it carries none we may act on."""
    text, why = plain_text(msg)
    if text is None:
        return None, why
    line = first_unquoted_line(text)
    if line is None:
        return None, EMPTY
    return parse_command(line)


def note_detail(text: str, by: str) -> tuple[str, dict[str, str]]:
    """A NOTE's event kind and detail: an ``action`` when its text starts with a known action word."""
    word, _, rest = text.partition(" ")
    key = word.rstrip(":").lower().replace("_", "-")
    if key in ACTIONS:
        return "action", {"action": ACTIONS[key], "outcome": rest.lstrip(": ").strip(), "by": by}
    return "note", {"action": "note", "text": text, "by": by}


def written_at(msg: EmailMessage, received: datetime) -> datetime:
    """When the reply was written: its Date header, never later than when it was read (``received``).

    Replies are read by the next night's run, the morning after a person wrote them: what a NOTE
    records was done on the day of the reply, not on the morning it was read. A missing, broken or
    future Date is read as ``received``.
    """
    try:
        when = parsedate_to_datetime(str(msg.get("Date", "") or ""))
    except (TypeError, ValueError, IndexError):
        return received
    if when is None:
        return received
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(when, received)
