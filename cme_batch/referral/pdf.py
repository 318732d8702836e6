"""The referral as a PDF laid out like an LA referral form, drawn from the referral document.

Everything printed comes from the dict that is also sent as JSON, so the two cannot disagree.
Sections follow the older Gloucestershire form and DOMAIN.md 6: school, child, parents and
carers, siblings, criterion and dates, vulnerability, actions taken, evidence, confirmation.
Fonts ship with the package (``fonts/``), so every machine draws the same glyphs, including
names with accents. ``build_pdf`` returns the unfinished ``FPDF`` so ``pdfcrypt`` can add an
attachment and encryption before it is written out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.fonts import FontFace

from cme_batch.app import in_school_time

FONTS = Path(__file__).with_name("fonts")
FAMILY = "DejaVuCond"
MARKING = "OFFICIAL-SENSITIVE"
SHADE = (226, 232, 240)
BAND = (31, 56, 100)
WARN = (170, 20, 20)
LABEL_W = 52


class _UnnamedGlyphs(logging.Filter):
    """fpdf2 logs every character a font lacks, one by one (``'李' (\\u674e), '明' ...``): for a
    child whose name is written in a script the form's font does not cover, that spells the name
    out in the night's journal, and the log filter, which compares whole words, cannot see it.
    The line keeps the font and the number of characters, never the characters."""

    _ENTRY = re.compile(r"'.' \(", re.DOTALL)
    _MORE = re.compile(r"\(and (\d+) others\)")

    def filter(self, record: logging.LogRecord) -> bool:
        if "missing the following glyphs" in str(record.msg):
            args = record.args if isinstance(record.args, tuple) else ()
            listed = str(args[1]) if len(args) > 1 else ""
            more = self._MORE.search(listed)
            count = len(self._ENTRY.findall(listed)) + (int(more.group(1)) if more else 0)
            record.msg = (f"the referral form's font %s has no glyph for {count} character(s) of the form's text: "
                          "they are left blank in the PDF, and the JSON copy holds them (not named here: they "
                          "may be a child's name)")
            record.args = (args[0] if args else "",)
        return True


logging.getLogger("fpdf.output").addFilter(_UnnamedGlyphs())


def fmt_date(value: str | None) -> str:
    """An ISO date as the form shows it (``14 Mar 2017``); blank when unknown.

    A moment (``confirmation.at``, ``generated_at``) is shown as England's clocks showed it,
    with GMT or BST (``14 Apr 2026 00:30 BST``): the school and the LA's officer work in that
    time, and nothing on the LA's form asks for UTC. A moment without an offset is UTC, as the
    store means it. The JSON keeps the moment itself in UTC, with its offset.
    """
    if not value:
        return ""
    if "T" in value:
        moment = datetime.fromisoformat(value)
        local = in_school_time(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
        return f"{local:%d %b %Y %H:%M %Z}"
    return f"{date.fromisoformat(value):%d %b %Y}"


def yes_no(value: bool | None) -> str:
    return "not recorded" if value is None else ("Yes" if value else "No")


def _join(items: Iterable[str | None], sep: str = "\n") -> str:
    return sep.join(i for i in items if i)


def _address(a: Mapping[str, Any] | None) -> str:
    if not a:
        return ""
    return ", ".join([*a.get("lines", []), a.get("postcode") or ""]).strip(", ")


class ReferralPDF(FPDF):
    """A4 portrait with the protective marking, case reference and page count on every page."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.doc = doc
        self.add_font(FAMILY, "", str(FONTS / "DejaVuSansCondensed.ttf"))
        self.add_font(FAMILY, "B", str(FONTS / "DejaVuSansCondensed-Bold.ttf"))
        self.set_margins(15, 18, 15)
        self.set_auto_page_break(True, margin=16)
        self.set_font(FAMILY, size=9)
        ref = doc["case"]["ref"]
        # Metadata names the case only: a PDF's info dictionary is easy to read without opening it.
        self.set_title(f"CME {doc['kind']} {ref}")
        self.set_subject("Children Missing Education")
        self.set_author(doc["school"]["name"])
        self.set_creator("cme-batch")

    def header(self) -> None:
        self.set_font(FAMILY, "B", 8)
        self.set_text_color(*WARN)
        self.cell(0, 4, MARKING, align="C", new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0)
        self.set_font(FAMILY, "", 8)
        self.cell(0, 4, f"CME {self.doc['kind']} {self.doc['case']['ref']}  ·  {self.doc['school']['name']}",
                  align="C", new_x="LMARGIN", new_y="NEXT")
        self.ln(2)
        self.set_font(FAMILY, "", 9)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(FAMILY, "", 7.5)
        self.cell(0, 4, f"{MARKING}  ·  generated {fmt_date(self.doc['generated_at'])}  ·  schema "
                  f"{self.doc['schema_version']}  ·  page {self.page_no()} of {{nb}}", align="C")

    # -- building blocks ------------------------------------------------------------------
    def section(self, title: str) -> None:
        if self.get_y() > self.h - 45:
            self.add_page()
        self.ln(3)
        self.set_fill_color(*BAND)
        self.set_text_color(255)
        self.set_font(FAMILY, "B", 10)
        self.cell(0, 6.5, f"  {title}", fill=True, new_x="LMARGIN", new_y="NEXT")
        self.set_fill_color(255)
        self.set_text_color(0)
        self.set_font(FAMILY, "", 9)
        self.ln(1)

    def note(self, text: str, colour: tuple[int, int, int] | None = None, bold: bool = False) -> None:
        if colour:
            self.set_text_color(*colour)
        self.set_font(FAMILY, "B" if bold else "", 9)
        self.multi_cell(0, 4.5, text, new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0)
        self.set_font(FAMILY, "", 9)

    def fields(self, rows: Sequence[tuple[str, str | None]]) -> None:
        """Label and value pairs, like the boxes of a paper form."""
        label = FontFace(emphasis="BOLD", fill_color=SHADE)
        with self.table(col_widths=(LABEL_W, self.epw - LABEL_W), first_row_as_headings=False,
                        line_height=4.6, text_align="LEFT", padding=1.2) as table:
            for name, value in rows:
                row = table.row()
                row.cell(name, style=label)
                row.cell(value or "")

    def grid(self, headings: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[float],
             empty: str) -> None:
        """A table with a heading row repeated on each page; ``empty`` is printed when there are no rows."""
        if not rows:
            self.note(empty)
            return
        heading = FontFace(emphasis="BOLD", fill_color=SHADE)
        with self.table(col_widths=tuple(widths), headings_style=heading, line_height=4.6,
                        text_align="LEFT", padding=1.2, repeat_headings=1) as table:
            head = table.row()
            for h in headings:
                head.cell(h)
            for values in rows:
                row = table.row()
                for v in values:
                    row.cell(v)


def _title(pdf: ReferralPDF, doc: Mapping[str, Any]) -> None:
    to = doc["to"]
    pdf.set_font(FAMILY, "B", 15)
    title = "Children Missing Education: referral" if doc["kind"] == "referral" else \
        "Children Missing Education: update to a referral"
    pdf.cell(0, 8, title, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FAMILY, "", 9)
    pdf.multi_cell(0, 4.5, f"To: {to['name']}, {', '.join(to['address'])}. Tel {to['phone']}. {to['email']}",
                   new_x="LMARGIN", new_y="NEXT")
    pdf.fields([("Case reference", doc["case"]["ref"]), ("Date of this form", fmt_date(doc["generated_at"]))])
    if not doc["confirmation"]["confirmed"] and doc["kind"] == "referral":
        pdf.ln(2)
        pdf.note("DRAFT: not yet confirmed by the Designated Safeguarding Lead. Do not send.", WARN, bold=True)
    csa = doc["child"]["compulsory_school_age"]
    if csa["status"] == "below_compulsory_school_age":
        pdf.ln(2)
        pdf.note(f"The child is below compulsory school age (reached on {fmt_date(csa['from'])}).", WARN, bold=True)


def _school(pdf: ReferralPDF, s: Mapping[str, Any]) -> None:
    pdf.section("A. Referring school")
    pdf.fields([
        ("School", s["name"]), ("LA and establishment number", f"{s['la_number']}/{s['establishment_number']}"),
        ("Address", ", ".join([*s["address"], s["postcode"]])), ("Phone", s["phone"]), ("Email", s["email"]),
        ("Designated Safeguarding Lead", _join([s["dsl"]["name"], s["dsl"]["phone"], s["dsl"]["email"]], ", ")),
    ])


def _child(pdf: ReferralPDF, c: Mapping[str, Any], short: bool = False) -> None:
    pdf.section("B. Child")
    csa = c["compulsory_school_age"]
    csa_text = {"of_compulsory_school_age": f"Of compulsory school age (since {fmt_date(csa['from'])})",
                "below_compulsory_school_age": f"BELOW compulsory school age (reached {fmt_date(csa['from'])})",
                "unknown": "Unknown (no date of birth)"}[csa["status"]]
    rows = [
        ("Legal name", _join([c["legal_forename"], c["middle_names"], c["legal_surname"]], " ")),
        ("Preferred name", _join([c["preferred_forename"], c["preferred_surname"]], " ")),
        ("Date of birth", fmt_date(c["date_of_birth"])), ("Sex", c["sex"]), ("UPN", c["upn"]),
        ("Year group", _join([c["year_group"], c["reg_group"] and f"(registration group {c['reg_group']})"], " ")),
        ("Address", _address(c["address"])),
    ]
    if not short:
        rows += [("Phone", ", ".join(c["phones"])), ("Email", ", ".join(c["emails"])),
                 ("Admission date", fmt_date(c["admission_date"])), ("Compulsory school age", csa_text)]
    if c["leaving_date"] or c["destination"]:
        rows += [("Left on", fmt_date(c["leaving_date"])), ("Leaving reason", c["leaving_reason"]),
                 ("Destination", c["destination"] or "unknown")]
    pdf.fields(rows)


def _people(pdf: ReferralPDF, doc: Mapping[str, Any]) -> None:
    pdf.section("C. Parents and carers")
    if doc["lives_with"]:
        pdf.note("The child lives with: " + ", ".join(doc["lives_with"]))
        pdf.ln(1)
    pdf.grid(["Name", "Relationship", "Parental resp.", "Lives with", "Phone", "Email", "Address"],
             [[c["name"], c["relationship"] or "", yes_no(c["parental_responsibility"]), yes_no(c["lives_with"]),
               "\n".join(c["phones"]), "\n".join(c["emails"]), _address(c["address"])] for c in doc["contacts"]],
             (29, 23, 16, 13, 24, 37, 38), "No parents or carers are recorded for this child.")
    pdf.section("D. Siblings (other pupils on roll sharing a contact or the address)")
    pdf.grid(["Name", "Date of birth", "Year group", "Shares", "Missing too?"],
             [[s["name"], fmt_date(s["date_of_birth"]), s["year_group"] or "", " and ".join(s["link"]),
               _sibling_cases(s.get("open_cases") or [])] for s in doc["siblings"]],
             (48, 26, 18, 28, 60), "No siblings found on roll at this school.")


def _sibling_cases(cases: Sequence[Mapping[str, Any]]) -> str:
    """A sibling's open cases: a brother listed "on roll" reads as seen at school every day."""
    if not cases:
        return "No: no open case"
    return "\n".join(
        f"ALSO MISSING: case {c['ref']} ({c['kind'].replace('_', ' ')} since {fmt_date(c['episode_start'])}"
        + (f"; referred {fmt_date(c['referred_on'])})" if c["referred_on"] else "; not yet referred)")
        for c in cases)


def _days_missed(case: Mapping[str, Any]) -> str:
    """School days of absence, and the school days with no register at all since the last break.

    Those are not counted as missed (nobody recorded the child either way), but the referral is
    due on the 10th school day counting them: "9" alone under a "10 or more school days" box
    reads as a referral sent too early.
    """
    days, gaps = case["school_days_missed"], len(case["register_gaps"])
    if days is None:
        return ""
    if not gaps:
        return str(days)
    return f"{days}, plus {gaps} school day(s) with no register mark (listed below)"


def _criterion(pdf: ReferralPDF, doc: Mapping[str, Any]) -> None:
    case, att = doc["case"], doc["attendance"]
    pdf.section("E. CME criterion and dates")
    for code, text in (("continuous_absence", "10 or more school days of continuous absence without explanation"),
                       ("place_not_taken_up", "Has not taken up an allocated school place"),
                       ("destination_unknown", "Left the school suddenly and the destination is unknown")):
        pdf.note(("☒ " if case["criterion"] == code else "☐ ") + text, bold=case["criterion"] == code)
    pdf.ln(1)
    for e in case.get("earlier_referrals") or []:
        pdf.note(f"Earlier referral of this child: {e['ref']} ({e['kind'].replace('_', ' ')}, referred "
                 f"{fmt_date(e['referred_on'])}; its actions taken were sent with it)", WARN, bold=True)
        pdf.ln(1)
    pct = "not known" if att["attendance_percent"] is None else f"{att['attendance_percent']}%"
    pdf.fields([
        ("Case", f"{case['criterion_text']} ({case['kind'].replace('_', ' ')})"),
        ("Episode started", fmt_date(case["episode_start"])), ("Date last attended", fmt_date(case["last_attended"])),
        ("School days missed", _days_missed(case)),
        ("Referral due by", fmt_date(case["referral_due"])), ("Facts as of", fmt_date(case["evaluated_on"])),
        ("Days with no register mark", ", ".join(fmt_date(g) for g in case["register_gaps"]) or "none"),
        (f"Attendance {att['academic_year']}",
         (f"{pct}: attended {att['attended_sessions']} of {att['possible_sessions']} possible sessions; "
          f"{att['authorised_absence_sessions']} authorised and {att['unauthorised_absence_sessions']} "
          f"unauthorised absence sessions ({fmt_date(att['from'])} to {fmt_date(att['to'])})")),
    ])


def _flag_details(f: Mapping[str, Any]) -> str:
    """What is recorded with a flag: its detail, and the day it ended if it ended during the absence."""
    return "; ".join(x for x in (f["detail"], f.get("until") and f"ended {fmt_date(f['until'])}") if x)


def _with_details(value: str, flags: Iterable[Mapping[str, Any]], kind: str) -> str:
    """A box's value followed by the details recorded with its flag, so they are shown there and only there."""
    details = "; ".join(d for f in flags if f["kind"] == kind and (d := _flag_details(f)))
    return f"{value} ({details})" if details else value


def _vulnerability(pdf: ReferralPDF, v: Mapping[str, Any]) -> None:
    pdf.section("F. Vulnerability")
    if v["child_protection_plan"] or v["looked_after"]:
        pdf.note("Child protection plan or looked after: Social Care must be informed immediately.", WARN, bold=True)
    sen = {"none": "No", "sen_support": "SEN support", "ehcp": "Education, health and care plan"}[v["sen"]]
    flags = v["flags"]
    # Flags with a box of their own are shown there; the SEN box shows one of SEN support and EHCP.
    boxed = {"child_protection_plan", "looked_after", "young_carer", v["sen"]}
    pdf.fields([
        ("Child protection plan", _with_details(yes_no(v["child_protection_plan"]), flags, "child_protection_plan")),
        ("Looked after", _with_details(yes_no(v["looked_after"]), flags, "looked_after")),
        ("SEN or EHCP", _with_details(sen, flags, v["sen"])),
        ("Young carer", _with_details(yes_no(v["young_carer"]), flags, "young_carer")),
        ("Also recorded", "\n".join(f"{f['label']}{' (' + d + ')' if (d := _flag_details(f)) else ''}"
                                    for f in flags if f["kind"] not in boxed) or "nothing else"),
        ("Alerts raised", ", ".join(a.replace("_", " ") for a in v["alerts"]) or "none"),
    ])


def _actions(pdf: ReferralPDF, doc: Mapping[str, Any]) -> None:
    pdf.section("G. Actions taken")
    pdf.grid(["Step", "Done on"],
             [[c["label"], ", ".join(fmt_date(d) for d in c["dates"]) or "not recorded"] for c in doc["checklist"]],
             (90, 90), "")
    pdf.ln(2)
    pdf.grid(["Date", "Action", "Who", "Outcome"],
             [[fmt_date(a["date"]), a["label"], a["who"], a["outcome"]] for a in doc["actions"]],
             (22, 38, 40, 80), "No actions are recorded on this case.")


def _evidence(pdf: ReferralPDF, evidence: Sequence[Mapping[str, str]]) -> None:
    pdf.section("H. Evidence: register marks of the episode")
    by_day: dict[str, dict[str, str]] = {}
    for e in evidence:
        by_day.setdefault(e["date"], {})[e["session"]] = e["code"]
    pdf.grid(["Date", "AM", "PM"], [[fmt_date(d), s.get("AM", ""), s.get("PM", "")] for d, s in by_day.items()],
             (60, 60, 60), "No register marks fall in this episode.")
    pdf.note("'-' means no mark was recorded for that session.")


def _confirmation(pdf: ReferralPDF, c: Mapping[str, Any], heading: str) -> None:
    pdf.section(heading)
    if not c["confirmed"]:
        pdf.note("Not confirmed by the Designated Safeguarding Lead.", WARN, bold=True)
        return
    who = _join([c.get("name"), c.get("role") and f"({c['role']})"], " ")
    pdf.fields([("Confirmed by", _join([who, c["by"]], ", ")), ("Confirmed at", fmt_date(c["at"])),
                ("Reply Message-ID", c["message_id"])])


def _update(pdf: ReferralPDF, doc: Mapping[str, Any]) -> None:
    u, att = doc["update"], doc["attendance"]
    pdf.section("C. What has changed")
    reason = {"returned": "The child has returned to school", "destination_known": "The destination is now known",
              "closed": "The school has closed the case", "other": "Other change"}[u["reason"]]
    if u["reason"] == "closed" and u["closed_reason"] == "left" and not u["destination"]:
        # the school's own "destination unknown" case opens for the leaving, referred on its own confirmation
        reason = ("The child has LEFT the school's roll with NO DESTINATION KNOWN: the child is still missing; "
                  "our Designated Safeguarding Lead is asked to confirm a referral for the leaving")
    if u["reason"] == "closed" and u["closed_reason"] == "superseded":
        # a place not taken up took over (the child admitted again, or first, and not come)
        reason = ("The child is STILL MISSING: the school has opened a new case for the child, a place not taken "
                  "up, and closed this one; our Designated Safeguarding Lead is asked to confirm a referral for it")
    if u["reason"] == "other" and doc["case"]["status"] == "open" and u["closed_on"] is None:
        # sent when a case the LA was told had closed is open again (``dispatch._updates_due``)
        reason = ("The case is OPEN AGAIN: the school had closed it (see our last update), and the register "
                  "still records the child absent without explanation")
    pct = "not known" if att["attendance_percent"] is None else f"{att['attendance_percent']}%"
    pdf.fields([("Update", reason), ("Referred on", fmt_date(u["referred_on"])),
                ("Date last attended", fmt_date(u["last_attended"])), ("Destination", u["destination"] or ""),
                ("Left on", fmt_date(u["leaving_date"])), ("Case closed on", fmt_date(u["closed_on"])),
                ("Closing reason", (u["closed_reason"] or "").replace("_", " ")),
                (f"Attendance {att['academic_year']}", pct)])


def build_pdf(doc: Mapping[str, Any], created: datetime) -> ReferralPDF:
    """Lay the document out; the caller outputs it (plain, or with attachments and encryption)."""
    pdf = ReferralPDF(doc)
    pdf.set_creation_date(created)
    pdf.add_page()
    _title(pdf, doc)
    _school(pdf, doc["school"])
    if doc["kind"] == "update":
        _child(pdf, doc["child"], short=True)
        _update(pdf, doc)
        if doc["confirmation"]["confirmed"]:
            _confirmation(pdf, doc["confirmation"], "D. Original referral confirmed")
        _missing_glyphs_note(pdf)
        return pdf
    _child(pdf, doc["child"])
    _people(pdf, doc)
    _criterion(pdf, doc)
    _vulnerability(pdf, doc["vulnerability"])
    _actions(pdf, doc)
    _evidence(pdf, doc["evidence"])
    _confirmation(pdf, doc["confirmation"], "I. Confirmed by the school's safeguarding lead")
    _missing_glyphs_note(pdf)
    return pdf


def _missing_glyphs_note(pdf: ReferralPDF) -> None:
    """Say on the form when its font lacked characters of its text (a name written in a script the
    font does not cover): they show as blank boxes, and the reader must know to look at the JSON."""
    if any(getattr(font, "missing_glyphs", None) for font in pdf.fonts.values()):
        pdf.ln(3)
        pdf.note("Some characters of this form's text are not in its font and are left blank (a name written "
                 "in another script, for example): the JSON copy of this referral holds every text exactly as "
                 "recorded.", WARN, bold=True)


def render_pdf(doc: Mapping[str, Any], created: datetime) -> bytes:
    """The unencrypted PDF (it only ever leaves the school inside an encrypted envelope)."""
    return bytes(build_pdf(doc, created).output())
