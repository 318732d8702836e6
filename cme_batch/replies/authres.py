"""Authentication-Results (RFC 8601): did our own receiving server see DKIM or DMARC pass?

Any server on the way, or the sender, can write an Authentication-Results header, so only
headers whose authserv-id is one we configured count, and of those only the topmost: our
server adds its header above everything that arrived with the message. A DKIM pass counts
only for a signing domain that aligns with the From address's domain; a DMARC pass is about
the From domain already, and counts unless it names another one.

Microsoft 365 (Exchange Online) writes its header with no authserv-id at all, although RFC 8601
requires one: ``spf=pass (sender IP is ...) smtp.mailfrom=...; dkim=...; dmarc=...``. Such a
header is recognised as having none (its first result is not mistaken for a server name). No id
means nothing says who wrote it, so it is believed only when the school says its mail is
received by Microsoft 365, and then only as the message's topmost Authentication-Results
header: the one Exchange Online adds on delivery, above anything the sender wrote into the
message. A header without an id anywhere lower down is never believed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage

NO_TRUSTED = "no Authentication-Results header from a trusted server"
NO_PASS = "trusted Authentication-Results shows no DKIM or DMARC pass for the sender's domain"
DMARC_FAIL = "trusted Authentication-Results shows DMARC fail"


@dataclass(frozen=True)
class Result:
    method: str  # dkim, dmarc, spf, ...
    result: str  # pass, fail, none, ...
    props: dict[str, str] = field(default_factory=dict)  # e.g. {"header.d": "school.example"}


@dataclass(frozen=True)
class AuthResults:
    authserv_id: str | None  # None: the header names no server (as Microsoft 365 writes it)
    results: tuple[Result, ...]


def _strip_comments(value: str) -> str:
    """Drop (comments), which may nest, leaving quoted strings intact."""
    out, depth, quoted, escaped = [], 0, False, False
    for ch in value:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\":
            escaped = True
            if depth == 0:
                out.append(ch)
            continue
        if quoted:
            quoted = ch != '"'
            out.append(ch)
        elif ch == '"' and depth == 0:
            quoted = True
            out.append(ch)
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _split(value: str, sep: str | None) -> list[str]:
    """Split on ``sep`` (or any whitespace when None) outside quoted strings."""
    parts: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        if not quoted and (ch == sep or (sep is None and ch.isspace())):
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _unquote(v: str) -> str:
    return v[1:-1].replace('\\"', '"') if len(v) >= 2 and v[0] == v[-1] == '"' else v


def _is_result(segment: str) -> bool:
    """Whether a ';'-segment is a result ("spf=pass ...") rather than "authserv-id [version]".

    An authserv-id is a token or a quoted string, and a token cannot contain '=' (RFC 8601 takes
    it from RFC 2045), so a first word with an unquoted '=' is a method and its result.
    """
    words = _split(_tighten(segment), None)
    return bool(words) and not words[0].startswith('"') and "=" in words[0]


def parse(value: str) -> AuthResults:
    """One header value. ``authserv_id`` is None when the header names no server (or is empty)."""
    segments = _split(_strip_comments(value), ";")
    if not segments:
        return AuthResults(None, ())
    authserv_id = None if _is_result(segments[0]) else _unquote(_split(segments[0], None)[0]).lower()
    results = []
    for seg in segments if authserv_id is None else segments[1:]:
        words = _split(_tighten(seg), None)
        if not words or "=" not in words[0]:
            continue  # "none", or something unparseable: carries no verdict
        method, _, result = words[0].partition("=")
        props = {}
        for w in words[1:]:
            k, eq, v = w.partition("=")
            if eq:
                props[k.lower()] = _unquote(v)
        results.append(Result(method.split("/")[0].lower(), result.lower(), props))
    return AuthResults(authserv_id, tuple(results))


def _tighten(seg: str) -> str:
    """Drop whitespace around '=' outside quoted strings (RFC 8601 allows 'dkim = pass')."""
    out: list[str] = []
    quoted, skip_space = False, False
    for ch in seg:
        if skip_space and ch.isspace():
            continue
        skip_space = False
        if ch == '"':
            quoted = not quoted
        elif ch == "=" and not quoted:
            while out and out[-1].isspace():
                out.pop()
            skip_space = True
        out.append(ch)
    return "".join(out)


def _aligned(domain: str, from_domain: str) -> bool:
    d, f = domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    return bool(d) and (f == d or f.endswith("." + d))


def passes(ar: AuthResults, from_domain: str) -> bool:
    for r in ar.results:
        if r.result != "pass":
            continue
        if r.method == "dmarc" and _aligned(r.props.get("header.from", from_domain), from_domain):
            return True
        if r.method == "dkim":
            d = r.props.get("header.d") or r.props.get("header.i", "").rpartition("@")[2]
            if _aligned(d, from_domain):
                return True
    return False


def headers(msg: EmailMessage) -> list[AuthResults]:
    """Every Authentication-Results header, topmost first (an empty one as naming no server)."""
    return [parse(str(v)) for v in msg.get_all("Authentication-Results", [])]


def ours(found: list[AuthResults], trusted: Sequence[str], microsoft365: bool) -> AuthResults | None:
    """Our receiving server's verdict among the headers (topmost first), or None.

    With ``microsoft365`` the topmost header counts when it names no server: Exchange Online
    adds it above everything that came with the message. Otherwise, and below it, a header
    without an id is nobody's: only the topmost with a trusted id counts.
    """
    if microsoft365 and found and found[0].authserv_id is None:
        return found[0]
    ids = {x.lower() for x in trusted}
    return next((ar for ar in found if ar.authserv_id is not None and ar.authserv_id in ids), None)


def check(msg: EmailMessage, from_domain: str, trusted: Sequence[str], required: bool,
          microsoft365: bool = False) -> str | None:
    """None when the message may be acted on as far as authentication goes; otherwise why not.

    With no trusted authserv-id configured and ``microsoft365`` off there is nothing to check.
    When not ``required``, a message without our server's verdict passes, but an explicit DMARC
    fail still holds it back.
    """
    if not trusted and not microsoft365:
        return None
    top = ours(headers(msg), trusted, microsoft365)
    if top is None:
        return NO_TRUSTED if required else None
    if any(r.method == "dmarc" and r.result == "fail" for r in top.results):
        return DMARC_FAIL
    if required and not passes(top, from_domain):
        return NO_PASS
    return None
