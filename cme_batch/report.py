"""A small document model for the morning emails, rendered to plain text and to HTML.

The summary and the digest are built once as a ``Document`` (banners and tables); the two
renderers turn that one template into the text part and the HTML part of the same email, so
the two can never say different things. The HTML is plain, inline-styled and a single column,
so it reads on a phone.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

RED = "red"
AMBER = "amber"
GREEN = "green"

_COLOURS = {RED: ("#b00020", "#fdecee"), AMBER: ("#8a5a00", "#fff4e0"), GREEN: ("#1b5e20", "#e8f5e9")}


@dataclass
class Row:
    cells: list[str]
    tone: str = ""  # RED marks an overdue or urgent row


@dataclass
class Section:
    title: str
    columns: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    intro: str = ""
    empty: str = "None."
    tone: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class Document:
    title: str
    subtitle: str
    banners: list[tuple[str, str]] = field(default_factory=list)  # (tone, text)
    sections: list[Section] = field(default_factory=list)
    footer: str = ""


def _text_table(columns: list[str], rows: list[Row]) -> list[str]:
    widths = [len(c) for c in columns]
    for r in rows:
        for i, cell in enumerate(r.cells):
            widths[i] = min(max(widths[i], len(cell)), 40)
    marks = any(r.tone == RED for r in rows)  # keep columns aligned when some rows are flagged "!!"
    pad = "   " if marks else ""
    out = [pad + "  ".join(c.ljust(widths[i]) for i, c in enumerate(columns)).rstrip()]
    out.append(pad + "  ".join("-" * w for w in widths))
    for r in rows:
        line = "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r.cells)).rstrip()
        out.append(("!! " if r.tone == RED else pad) + line)
    return out


def render_text(doc: Document) -> str:
    lines = [doc.title, "=" * len(doc.title), doc.subtitle, ""]
    for tone, text in doc.banners:
        mark = {RED: "!!! ", AMBER: "! "}.get(tone, "")
        lines += [f"{mark}{text}", ""]
    for s in doc.sections:
        lines += [s.title, "-" * len(s.title)]
        if s.intro:
            lines.append(s.intro)
        if s.rows:
            lines += _text_table(s.columns, s.rows)
        else:
            lines.append(s.empty)
        lines += [f"  {n}" for n in s.notes]
        lines.append("")
    if doc.footer:
        lines += ["--", doc.footer]
    return "\n".join(lines).rstrip() + "\n"


def _banner_html(tone: str, text: str) -> str:
    fg, bg = _COLOURS.get(tone, ("#222", "#f2f2f2"))
    return (f'<p style="margin:8px 0;padding:10px;border-left:6px solid {fg};background:{bg};color:{fg};'
            f'font-weight:bold">{html.escape(text)}</p>')


def render_html(doc: Document) -> str:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en-GB"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(doc.title)}</title></head>",
        '<body style="margin:0;padding:12px;font-family:Arial,Helvetica,sans-serif;font-size:15px;'
        'color:#222;max-width:720px">',
        f'<h1 style="font-size:20px;margin:0 0 4px">{e(doc.title)}</h1>',
        f'<p style="margin:0 0 12px;color:#555">{e(doc.subtitle)}</p>',
    ]
    parts += [_banner_html(tone, text) for tone, text in doc.banners]
    for s in doc.sections:
        colour = _COLOURS.get(s.tone, ("#222", ""))[0]
        parts.append(f'<h2 style="font-size:17px;margin:18px 0 6px;color:{colour}">{e(s.title)}</h2>')
        if s.intro:
            parts.append(f'<p style="margin:0 0 6px">{e(s.intro)}</p>')
        if not s.rows:
            parts.append(f'<p style="margin:0;color:#555">{e(s.empty)}</p>')
        else:
            parts.append('<table style="border-collapse:collapse;width:100%;font-size:13px">')
            parts.append("<tr>" + "".join(
                f'<th style="text-align:left;border-bottom:2px solid #999;padding:4px">{e(c)}</th>'
                for c in s.columns) + "</tr>")
            for r in s.rows:
                style = "color:#b00020;font-weight:bold;" if r.tone == RED else ""
                parts.append("<tr>" + "".join(
                    f'<td style="{style}border-bottom:1px solid #ddd;padding:4px;vertical-align:top">{e(c)}</td>'
                    for c in r.cells) + "</tr>")
            parts.append("</table>")
        for n in s.notes:
            parts.append(f'<p style="margin:4px 0;font-size:13px;color:#444">{e(n)}</p>')
    if doc.footer:
        parts.append(f'<p style="margin-top:20px;font-size:12px;color:#666">{e(doc.footer)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
