"""The configuration: one TOML file, validated once at load into frozen objects.

``load(path)`` returns a ``Config`` or raises ``ConfigError`` listing every problem found.
Secrets are never values in the file: a key names an environment variable, a file or a
systemd credential (``SecretRef``). ``config/cme-batch.example.toml`` documents every key.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from cme_batch.errors import ConfigError, ConfigFileError
from cme_batch.mail.settings import MailConfig, parse_mail
from cme_batch.referral.settings import ReferralConfig, parse_referral
from cme_batch.replies_settings import RepliesConfig, parse_replies
from cme_batch.settings import Problems, SecretRef, Table

CODE_CLASSES = (
    "present", "late_after_close", "educational_activity", "authorised", "unauthorised_explained",
    "unexplained", "unable_pupil", "neutral", "no_mark",
)

ENV_VAR = "CME_BATCH_CONFIG"


@dataclass(frozen=True)
class SchoolConfig:
    name: str
    la_number: str
    establishment_number: str
    address: tuple[str, ...]
    postcode: str
    phone: str | None
    email: str | None


@dataclass(frozen=True)
class Person:
    name: str
    email: str
    phone: str | None = None


@dataclass(frozen=True)
class StaffConfig:
    office: tuple[Person, ...]
    dsl: Person
    deputy_dsl: Person | None


@dataclass(frozen=True)
class Term:
    start: date
    end: date
    name: str | None = None


@dataclass(frozen=True)
class CalendarConfig:
    terms: tuple[Term, ...] = ()
    closures: tuple[date, ...] = ()  # INSET and other days the school is closed to pupils
    bank_holidays: bool = True
    extra_holidays: tuple[date, ...] = ()  # added to the England bank holidays
    not_holidays: tuple[date, ...] = ()  # removed from them (a config list overrides the package)


@dataclass(frozen=True)
class CodesConfig:
    local: dict[str, str] = field(default_factory=dict)  # local code -> class
    subcodes: dict[str, str] = field(default_factory=dict)  # MIS sub-code -> national code


@dataclass(frozen=True)
class Thresholds:
    first_day_call: int = 1
    contact_all: int = 2
    dsl_review: int = 3
    home_visit: int = 5
    referral_prepare: int = 8
    referral_due: int = 10
    repeat_episodes: int = 3
    repeat_min_days: int = 2
    repeat_window_days: int = 60
    la_return_days: int = 10
    stale_hours: int = 26


@dataclass(frozen=True)
class SourceConfig:
    name: str
    adapter: str
    settings: dict[str, Any]  # the rest of the table, validated by the adapter itself
    base_dir: Path


@dataclass(frozen=True)
class LoggingConfig:
    level: str = "info"
    format: str = "auto"  # json, console, auto (console on a terminal, JSON otherwise)


@dataclass(frozen=True)
class RetentionConfig:
    replies_days: int = 730
    bundles_days: int = 2190
    case_events_days: int = 2190
    registers_years: int = 6
    outbox_days: int = 90
    archive_days: int = 90  # drop-folder archives of imported MIS exports (the newest of each report stays)


@dataclass(frozen=True)
class Config:
    path: Path | None
    school: SchoolConfig
    staff: StaffConfig
    state_dir: Path
    database_url: str
    calendar: CalendarConfig
    codes: CodesConfig
    thresholds: Thresholds
    sources: tuple[SourceConfig, ...]
    logging: LoggingConfig
    retention: RetentionConfig
    mail: MailConfig
    referral: ReferralConfig
    replies: RepliesConfig
    #: PostgreSQL's password (``database.password``), kept out of the URL and the file
    database_password: SecretRef | None = None

    def source(self, name: str) -> SourceConfig | None:
        return next((s for s in self.sources if s.name == name), None)

    def unused_secret_keys(self) -> tuple[str, ...]:
        """The configuration keys (prefixes) whose secrets this configuration never reads: a section
        kept for later (``[mail.microsoft]`` under ``transport = "maildrop"``), or a referral method
        not chosen. ``check-config`` names their secrets without requiring them to be readable."""
        m, r = self.mail, self.replies
        smtp_auth = m.smtp.auth if m.transport == "smtp" else None
        imap_auth = r.imap.auth if r.mailbox == "imap" and r.imap is not None else None
        method = self.referral.chosen_method()
        unused = {
            "mail.smtp.": smtp_auth != "password",
            "mail.microsoft.": m.transport != "graph" and smtp_auth != "xoauth2-microsoft",
            "mail.google.": smtp_auth != "xoauth2-google",
            "referral.passphrase": method != "pdf-passphrase",
            "referral.signing_key": method != "smime",  # the key and its password
            "replies.imap.": imap_auth != "password",
            "replies.microsoft.": r.mailbox != "graph" and imap_auth != "xoauth2-microsoft",
        }
        return tuple(key for key, is_unused in unused.items() if is_unused)


def default_state_dir() -> Path:
    """systemd's StateDirectory when run as the service; otherwise /var/lib/cme-batch."""
    return Path(os.environ.get("STATE_DIRECTORY", "/var/lib/cme-batch").split(":")[0])


def _person(t: Table, required: bool = True) -> Person | None:
    name = t.str("name", required=required)
    email = t.email("email", required=required)
    phone = t.str("phone")
    t.unknown_keys()
    if name is None or email is None:
        return None
    return Person(name, email, phone)


def _school(t: Table) -> SchoolConfig:
    s = SchoolConfig(
        name=t.str("name", required=True) or "",
        la_number=t.str("la_number", required=True, pattern=r"\d{3}", right="three digits, e.g. \"916\"") or "",
        establishment_number=t.str("establishment_number", required=True, pattern=r"\d{4}",
                                   right="four digits, e.g. \"2001\"") or "",
        address=t.str_list("address"),
        postcode=t.str("postcode", required=True) or "",
        phone=t.str("phone"),
        email=t.email("email"),
    )
    t.unknown_keys()
    return s


def _staff(t: Table) -> StaffConfig:
    office = [p for p in (_person(x) for x in t.list_of_tables("office")) if p]
    if not t.has("office"):
        t.problems.add(t.key("office"), "is missing", "at least one [[staff.office]] table with name and email")
    dsl = _person(t.sub("dsl"))
    deputy = _person(t.sub("deputy_dsl")) if t.has("deputy_dsl") else None
    t.unknown_keys()
    return StaffConfig(tuple(office), dsl or Person("", ""), deputy)


def _academic_year(d: date) -> int:
    return d.year if d.month >= 8 else d.year - 1


def _calendar(t: Table) -> CalendarConfig:
    terms: list[Term] = []
    for tt in t.list_of_tables("terms"):
        start, end = tt.date("start", required=True), tt.date("end", required=True)
        name = tt.str("name")
        tt.unknown_keys()
        if start and end:
            if end < start:
                tt.problems.add(tt.key("end"), f"{end} is before start {start}", "an end on or after the start")
            elif _academic_year(start) != _academic_year(end):  # its August weekdays would be school days
                tt.problems.add(tt.key("end"), f"{end} is in another academic year than start {start} "
                                "(a year runs 1 August to 31 July)", "a term within one academic year")
            else:
                terms.append(Term(start, end, name))
    terms.sort(key=lambda x: x.start)
    for a, b in zip(terms, terms[1:]):
        if b.start <= a.end:
            t.problems.add(t.key("terms"), f"terms {a.start}..{a.end} and {b.start}..{b.end} overlap",
                           "terms that do not overlap")
    c = CalendarConfig(
        terms=tuple(terms),
        closures=t.dates("closures"),
        bank_holidays=t.bool("bank_holidays", True),
        extra_holidays=t.dates("extra_holidays"),
        not_holidays=t.dates("not_holidays"),
    )
    t.unknown_keys()
    return c


def _codes(t: Table) -> CodesConfig:
    local = t.str_map("local")
    for code, cls in local.items():
        if cls not in CODE_CLASSES:
            t.problems.add(f"{t.key('local')}.{code}", f"is {cls!r}", "one of " + ", ".join(CODE_CLASSES))
    c = CodesConfig(local=local, subcodes=t.str_map("subcodes"))
    t.unknown_keys()
    return c


def _thresholds(t: Table) -> Thresholds:
    d = Thresholds()
    vals = {name: t.int(name, getattr(d, name), min=1, max=400) for name in d.__dataclass_fields__}
    th = Thresholds(**vals)  # type: ignore[arg-type]
    order = ["first_day_call", "contact_all", "dsl_review", "home_visit", "referral_prepare", "referral_due"]
    for a, b in zip(order, order[1:]):
        if getattr(th, a) > getattr(th, b):
            t.problems.add(t.key(b), f"is {getattr(th, b)}, before {a} ({getattr(th, a)})",
                           "stage days in policy order")
    t.unknown_keys()
    return th


def _sources(t: Table, base: Path) -> tuple[SourceConfig, ...]:
    out = []
    for name, st in t.subs("sources").items():
        adapter = st.str("adapter", required=True, right="an adapter name: sims-xml, ctf or arbor")
        if adapter:
            settings = {k: v for k, v in st.data.items() if k != "adapter"}
            out.append(SourceConfig(name, adapter, settings, base))
    return tuple(out)


def parse(data: dict[str, Any], path: Path | None = None) -> Config:
    """Validate a parsed TOML document. Raises ConfigError with every problem."""
    problems = Problems()
    base = path.parent if path else Path.cwd()
    root = Table(data, "", problems, base)
    school = _school(root.sub("school"))
    staff = _staff(root.sub("staff"))
    paths = root.sub("paths")
    state_dir = paths.path("state_dir", base) or default_state_dir()
    paths.unknown_keys()
    db = root.sub("database")
    url = db.str("url") or f"sqlite:///{state_dir / 'cme-batch.sqlite'}"
    db_password = db.secret("password")
    if db_password is not None:
        _check_password_place(db, url)
    db.unknown_keys()
    calendar = _calendar(root.sub("calendar"))
    codes = _codes(root.sub("codes"))
    thresholds = _thresholds(root.sub("thresholds"))
    sources = _sources(root, base)
    lg = root.sub("logging")
    logging = LoggingConfig(lg.str("level", "info", choices=("debug", "info", "warning", "error")) or "info",
                            lg.str("format", "auto", choices=("auto", "json", "console")) or "auto")
    lg.unknown_keys()
    rt = root.sub("retention")
    rd = RetentionConfig()
    retention = RetentionConfig(
        replies_days=rt.int("replies_days", rd.replies_days, min=1) or rd.replies_days,
        bundles_days=rt.int("bundles_days", rd.bundles_days, min=1) or rd.bundles_days,
        case_events_days=rt.int("case_events_days", rd.case_events_days, min=1) or rd.case_events_days,
        registers_years=rt.int("registers_years", rd.registers_years, min=6) or rd.registers_years,
        outbox_days=rt.int("outbox_days", rd.outbox_days, min=1) or rd.outbox_days,
        archive_days=rt.int("archive_days", rd.archive_days, min=1) or rd.archive_days,
    )
    rt.unknown_keys()
    mail = parse_mail(root.sub("mail"), base)
    referral = parse_referral(root.sub("referral"), base)
    replies = parse_replies(root.sub("replies"), base)
    root.unknown_keys()
    if problems.items:
        raise ConfigError(problems.items, str(path) if path else None)
    return Config(path, school, staff, state_dir, url, calendar, codes, thresholds, sources, logging,
                  retention, mail, referral, replies, db_password)


def _check_password_place(db: Table, url: str) -> None:
    """``database.password`` is for a server's URL that carries no password of its own."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url)
    except ArgumentError:
        return  # the URL's own problem is reported when the store is opened
    if u.get_backend_name() == "sqlite":
        db.problems.add(db.key("password"), "is set for a SQLite database (a file has no password)",
                        "no password, or a PostgreSQL url")
    elif u.password is not None:
        db.problems.add(db.key("password"), "is set, and database.url holds a password too",
                        "the password in database.password only, and a url without it")


def resolve_path(path: str | os.PathLike[str] | None) -> Path:
    if path is None:
        env = os.environ.get(ENV_VAR)
        if not env:
            raise ConfigFileError(f"no configuration given: use --config FILE or set {ENV_VAR}")
        path = env
    return Path(path)


def _named(path: str | os.PathLike[str] | None, p: Path) -> str:
    """The file as the user named it: by --config, or by the environment variable."""
    return f"{p} (from {ENV_VAR})" if path is None else str(p)


def load(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate the file; every problem is a ``ConfigError`` naming the file (exit 2)."""
    p = resolve_path(path)
    named = _named(path, p)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigFileError(f"cannot read the configuration file {named}: {exc.strerror}; give --config "
                              f"the path of a readable TOML file (or set {ENV_VAR} to it)", str(p)) from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigFileError(f"the configuration file {named} is not UTF-8 text (byte {exc.start}): save it "
                              "as UTF-8", str(p)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"the configuration file {named} is not valid TOML: {exc}; correct that line "
                              "(config/cme-batch.example.toml shows every key)", str(p)) from exc
    try:
        return parse(data, p.resolve())
    except OSError as exc:  # a file the configuration names (a certificate, a folder) cannot be looked at
        raise ConfigFileError(f"{named}: cannot look at {exc.filename}, which the configuration names: "
                              f"{exc.strerror}; run as the user the service runs as, or correct the path",
                              str(p)) from exc
