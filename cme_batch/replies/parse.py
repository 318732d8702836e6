"""Reading a reply: who sent it, its plain text, and the one command on its first unquoted line.

Only the first line that is neither blank nor quoted counts: the quoted original we sent holds
case references and instructions, so searching the whole body would let our own words act. A
reply with no plain-text part (HTML only) or with attachments (an attached e-mail among them)
is refused rather than guessed at; a person looks at it instead. Every refusal is a short fixed
phrase without any of the message's own text, so it can be counted, logged and shown without
leaking personal data.

The rest of the reply's own text (down to where the quoted original starts) is looked at only to
refuse: a second command there ("CONFIRM ..." then "CLOSE ..."), or a command below a greeting,
keeps the reply for review rather than acting on one line and dropping the other without a word.
A CLOSE whose reason reads as a condition or a question ("once the LA confirm ...", "... moved?")
is not a decision to stop watching the child now: it is kept for review too. An automatic reply
(``Auto-Submitted``, an out-of-office subject) never acts, whatever its text. Plain text sent as
``format=flowed`` (RFC 3676) is unwrapped first, so a long reason wrapped by the client is kept whole.
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
AUTOMATIC = "automatic reply (out of office or a mail rule): only a reply a person writes can act"
MANY_COMMANDS = "reply has more than one command: none was done, send one command per reply"
NOT_FIRST = "the command is not the reply's first line (above any greeting or quoted text): nothing was done"
CONDITIONAL_CLOSE = "CLOSE reads as a condition or a question: the case stays open until a plain CLOSE"
_HEADER_END = re.compile(rb"\r?\n\r?\n")
# A line of the reply's own text that reads as a command, however written: "Close CME-2025-0007 too",
# "- HOLD: CME-2025-0007 ...". Only ever used to refuse, never to act.
_COMMANDISH = re.compile(r"[\W_]*(?:CONFIRM|HOLD|CLOSE|NOTE)\b[\s:;,.-]*(?=[A-Za-z0-9-]*[0-9])"
                         r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)+", re.IGNORECASE)
# Where the quoted original starts in a top-posted reply: '>' quoting, Outlook's "From:/Sent:" block or
# its rule, "-----Original Message-----", "On ... wrote:", a phone's or a signature's line.
_QUOTE_START = re.compile(r">|From:\s|Sent:\s|-+\s*Original Message|_{8,}|-- ?$|Sent from my\b|Get Outlook for\b"
                          r"|Begin forwarded message|-+\s*Forwarded message|On\s.*\bwrote:?$", re.IGNORECASE)
# A CLOSE reason that puts the close off or asks: the child must stay watched until the DSL decides.
_CONDITION = re.compile(r"(?:if|once|when|whenever|unless|until|till|pending|provided|providing|assuming|subject to"
                        r"|after|before)\b|.*\?|.*\bnot yet\b|.*\b(?:do not|don['\u2019]?t) close\b", re.IGNORECASE)
# Automatic replies (RFC 3834, and the subjects Exchange, Gmail and others give out-of-office answers).
_AUTO_SUBJECT = re.compile(r"\s*(?:automatic reply|auto[- ]?reply|auto[- ]?response|out of (?:the )?office)\b",
                           re.IGNORECASE)


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


def is_automatic(msg: EmailMessage) -> bool:
    """Whether a message says it was written by a machine: an out-of-office answer, a mail rule's reply.

    ``Auto-Submitted`` other than "no" (RFC 3834), ``X-Autoreply``/``X-Autorespond``, ``Precedence:
    auto_reply``, or a subject an out-of-office answer gets ("Automatic reply: ...").
    """
    try:
        auto = str(msg.get("Auto-Submitted", "") or "").split(";")[0].strip().lower()
        if auto and auto != "no":
            return True
        for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
            value = msg.get(name)
            if value is not None and str(value).strip().lower() not in ("", "no", "false", "0"):
                return True
        if str(msg.get("Precedence", "") or "").strip().lower() == "auto_reply":
            return True
    except Exception:  # noqa: BLE001 - a header too broken to read says nothing either way
        pass
    return bool(_AUTO_SUBJECT.match(subject_of(msg)))


def _unflow(text: str, delsp: bool) -> str:
    """Plain text sent ``format=flowed`` (RFC 3676) with its soft line breaks joined.

    A line ending in a space continues on the next line of the same quote depth; the signature
    separator "-- " does not; a leading space added to protect a line ("space-stuffing") is removed.
    """
    out: list[str] = []
    cur: tuple[int, str] | None = None  # quote depth and text of a paragraph being joined
    for raw in text.split("\n"):
        line = raw.rstrip("\r")
        depth = len(line) - len(line.lstrip(">"))
        body = line[depth:]
        if body.startswith(" "):
            body = body[1:]
        soft = body.endswith(" ") and body != "-- "  # this line's own ending, not the paragraph's so far
        if soft and delsp:
            body = body[:-1]
        if cur is not None and cur[0] == depth:
            body = cur[1] + body
        elif cur is not None:
            out.append(">" * cur[0] + (" " if cur[0] else "") + cur[1])
        cur = (depth, body) if soft else None
        if not soft:
            out.append(">" * depth + (" " if depth else "") + body)
    if cur is not None:
        out.append(">" * cur[0] + (" " if cur[0] else "") + cur[1])
    return "\n".join(out)


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
        if _shown_picture(part):
            continue  # a signature's logo, drawn by the HTML alternative: not read, not an attachment
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
    if str(plain.get_param("format", "") or "").lower() == "flowed":
        content = _unflow(content, str(plain.get_param("delsp", "") or "").lower() == "yes")
    return content, None


def _shown_picture(part: EmailMessage) -> bool:
    """Whether ``part`` is a picture the reply's HTML shows in its text (a ``Content-ID`` it refers
    to, not offered as an attachment): the logo of a signature, which Outlook, Gmail and Apple Mail
    send with every reply of a DSL whose signature has one. Refusing it as an attachment would keep
    every one of their replies for review. It is never opened: the command is read from the plain
    text alone. An image sent as an attachment, or with no ``Content-ID``, is still refused."""
    return (part.get_content_maintype() == "image" and part.get_content_disposition() != "attachment"
            and bool(str(part.get("Content-ID", "")).strip()))


def _clean(line: str) -> str:
    return line.strip().lstrip("\ufeff\u200b").strip()


def first_unquoted_line(text: str) -> str | None:
    """The first line that is neither blank nor quoted with '>'."""
    return next(iter(own_lines(text)), None)


def own_lines(text: str) -> list[str]:
    """The reply's own words: its unquoted lines from the first one (blank lines left out), up to where
    the quoted original starts below them (see ``_QUOTE_START``). The first is ``first_unquoted_line``."""
    out: list[str] = []
    for line in text.splitlines():
        s = _clean(line)
        if not s or (not out and s.startswith(">")):
            continue
        if out and _QUOTE_START.match(s):
            break
        out.append(s)
    return out


def continued(text: str) -> list[str]:
    """The lines that continue the reply's first own line (``own_lines``) in its paragraph: up to a
    blank line, the start of the quoted original, or a line that reads as a command. A client that
    does not send ``format=flowed`` (Outlook's plain text) breaks a long line at about 76
    characters: this is the rest of what the first line began."""
    out: list[str] = []
    started = False
    for line in text.splitlines():
        s = _clean(line)
        if not started:
            started = bool(s) and not s.startswith(">")
            continue
        if not s or _QUOTE_START.match(s) or _COMMANDISH.match(s):
            break
        out.append(s)
    return out


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
    """The command a reply carries, or the reason it carries none we may act on.

    Both are given when a command was read but must not be acted on (a second command below it, a
    CLOSE that reads as a condition): the reviewer is shown the command and its case.
    """
    text, why = plain_text(msg)
    if text is None:
        return None, why
    lines = own_lines(text)
    if not lines:
        return None, EMPTY
    command, why = parse_command(lines[0])
    if command is None:
        # below a greeting, or below the quote (bottom-posted): not acted on, but the DSL is told where it went
        below = any(_COMMANDISH.match(_clean(x)) for x in text.splitlines()[1:] if not _clean(x).startswith(">"))
        return None, NOT_FIRST if why == NOT_COMMAND and below else why
    if command.text is not None and (more := continued(text)):  # a reason wrapped onto more lines: read whole
        command = Command(command.verb, command.ref, " ".join([command.text, *more]))
        if len(command.text or "") > MAX_TEXT:
            return None, TOO_LONG
    later = [x for x in lines[1:] if _COMMANDISH.match(x)]
    if any(parse_command(x)[0] != command for x in later):
        return command, MANY_COMMANDS
    if command.verb == "CLOSE" and command.text and _CONDITION.match(command.text):
        return command, CONDITIONAL_CLOSE
    return command, None


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
