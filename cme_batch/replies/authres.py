"""Authentication-Results (RFC 8601): did our own receiving server see DKIM or DMARC pass?

Any server on the way, or the sender, can write an Authentication-Results header, so only
headers whose authserv-id is one we configured count, and of those only the topmost: our
server adds its header above everything that arrived with the message. A DKIM pass counts
only for a signing domain that aligns with the From address's domain; a DMARC pass is about
the From domain already, and counts unless it names another one.
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
    authserv_id: str
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


def parse(value: str) -> AuthResults | None:
    """One header value, or None if it has no authserv-id."""
    segments = _split(_strip_comments(value), ";")
    if not segments:
        return None
    authserv_id = _unquote(_split(segments[0], None)[0]).lower()
    results = []
    for seg in segments[1:]:
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
    """Every parseable Authentication-Results header, topmost first."""
    out = []
    for v in msg.get_all("Authentication-Results", []):
        ar = parse(str(v))
        if ar is not None:
            out.append(ar)
    return out


def check(msg: EmailMessage, from_domain: str, trusted: Sequence[str], required: bool) -> str | None:
    """None when the message may be acted on as far as authentication goes; otherwise why not.

    With no trusted authserv-id configured there is nothing to check. When not ``required``, a
    message without our server's verdict passes, but an explicit DMARC fail still holds it back.
    """
    if not trusted:
        return None
    ours = [ar for ar in headers(msg) if ar.authserv_id in {x.lower() for x in trusted}]
    if not ours:
        return NO_TRUSTED if required else None
    top = ours[0]
    if any(r.method == "dmarc" and r.result == "fail" for r in top.results):
        return DMARC_FAIL
    if required and not passes(top, from_domain):
        return NO_PASS
    return None
