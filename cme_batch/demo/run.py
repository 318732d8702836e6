"""Run the demo: make the folder, load the demo school into a fresh store, replay the term's nights.

The folder holds ``cme-batch.toml`` (the demo configuration), ``state/`` (the database),
``mail/`` (the maildrop) and ``expected-cases.json`` (what the engine should find). A re-run
starts clean: it removes ``state/`` and ``mail/``, and only in a folder an earlier demo made.

The records reach the store through a loader (``loaders``: stored directly, or pulled from a
stand-in Arbor), and the "newer export" that corrects a mark arrives before the night it is
dated. Then every school night up to ``as_of`` is replayed with
the detect stage, so cases open, advance and close as they would have over the term, and the
last night runs the whole nightly pipeline. Stages that do not exist yet are reported as
skipped by ``nightly``; nothing here names them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from cme_batch.app import App
from cme_batch.demo import confirm
from cme_batch.demo.check import CheckResult, compare, stored_cases, stored_la_returns
from cme_batch.demo.generator import DemoSchool, generate
from cme_batch.demo.loaders import Echo, Loader, check_source, make_loader
from cme_batch.errors import BadInputError
from cme_batch.nightly import NightlyReport, run_nightly
from cme_batch.store import sqlite_path

MARKER = ".cme-batch-demo"


@dataclass
class DemoResult:
    config_path: Path
    database: str
    maildrop: Path | None
    expectations: Path
    nights: int = 0
    final: NightlyReport | None = None
    failed_nights: list[str] = field(default_factory=list)
    check: CheckResult | None = None
    confirmation: NightlyReport | None = None

    @property
    def failed(self) -> bool:
        return bool(self.failed_nights) or any(r is not None and r.failed for r in (self.final, self.confirmation))


class NightClock:
    """The demo's clock: early on the morning after the night being replayed."""

    def __init__(self, day: date) -> None:
        self.set(day)

    def set(self, day: date) -> None:
        self.at = datetime.combine(day + timedelta(days=1), time(5, 30), tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at


def prepare_dir(out: Path, echo: Echo) -> None:
    """Create the folder, or clear an earlier demo's state and mail; refuse a folder the demo did not make."""
    if out.exists() and any(out.iterdir()) and not (out / MARKER).exists():
        raise BadInputError(f"{out} is not empty and was not made by 'cme-batch demo'; choose another --dir")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by cme-batch demo: re-running the demo clears state/ and mail/\n",
                              encoding="utf-8")
    for name in ("state", "mail", "drop"):
        if (out / name).exists():
            echo(f"Removing the previous demo's {out / name} (the demo starts clean)")
            shutil.rmtree(out / name)


def reply_key(state: Path) -> Path:
    """A fresh random secret for signing the demo's reply tokens, readable only by its owner."""
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = (state / "reply-key-demo1").resolve()
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_hex(32) + "\n")
    return path


def run_demo(out: Path, seed: int = 2025, pupils: int = 420, source: str = "files",
             echo: Echo = print, replay: bool = True) -> DemoResult:
    """Build the demo in ``out``; ``replay`` runs detect for every school night before the last."""
    check_source(source)  # before touching the folder
    school = generate(seed, pupils)
    echo(f"Demo school: The John Moore Primary School (fictional data, seed {seed}): "
         f"{len(school.pupil_keys())} pupils, {len(school.school_days)} school days of autumn 2025, "
         f"{len(school.planted)} planted cases, evaluated as of {school.as_of}")
    prepare_dir(out, echo)
    key = reply_key(out / "state")
    loader = make_loader(source, school, out / "state", echo)
    try:
        return _run(out, school, loader, key, echo, replay)
    finally:
        loader.close()


def _run(out: Path, school: DemoSchool, loader: Loader, key: Path, echo: Echo, replay: bool) -> DemoResult:
    config_path = out / "cme-batch.toml"
    state = (out / "state").resolve()
    referral_keys = confirm.make_pki(state / "pki", "missing-pupils@la.example.org",
                                     "cme-batch@johnmoore.example.org",
                                     datetime.combine(school.school_days[0], time(), tzinfo=UTC) - timedelta(days=60))
    config_path.write_text(school.config_toml("state", "mail", str(key), extra=referral_keys)
                           + confirm.replies_toml(state / "replies") + loader.config_extra(), encoding="utf-8")
    expectations = out / "expected-cases.json"
    expectations.write_text(json.dumps(school.expectations(), indent=2) + "\n", encoding="utf-8")

    first_night = school.school_days[0]
    clock = NightClock(first_night - timedelta(days=1))
    app = App(str(config_path), clock=clock)
    applied = app.init_store()
    echo(f"Database created ({len(applied)} migration(s) applied)")
    loader.first(app, first_night)

    maildrop = getattr(app.config.mail, "maildrop_dir", None)
    result = DemoResult(config_path, app.config.database_url, maildrop, expectations)
    replaying = replay
    for day in school.school_days:
        if day == school.corrections_on:
            clock.set(day - timedelta(days=1))
            loader.corrections(app, day)
        if day >= school.as_of or not replaying:
            continue
        clock.set(day)
        stages = run_nightly(app, day, only=loader.nightly_stages).stages
        stage = next((s for s in stages if s.outcome != "ok"), stages[-1])
        if stage.outcome == "ok":
            result.nights += 1
            continue
        replaying = False  # a missing or broken detect would fail the same way every night
        if stage.outcome == "failed":
            result.failed_nights.append(f"{day}: {stage.name}: {stage.detail}")
            echo(f"Replay of the term stopped: {stage.name} failed on the night of {day}: {stage.detail}")
        else:
            echo(f"Replay of the term skipped: {stage.name} {stage.detail}")
    if replaying and result.nights:
        echo(f"Replayed {' and '.join(loader.nightly_stages)} for {result.nights} school nights ({first_night} .. "
             f"{school.school_days[result.nights - 1]})")
    clock.set(school.as_of)
    loader.last_night(app, school.as_of)
    result.final = run_nightly(app, school.as_of)
    echo(f"Nightly run as of {school.as_of}:")
    for s in result.final.stages:
        detail = s.detail if len(s.detail) <= 150 else s.detail[:147] + "..."
        echo(f"  {s.name:<10} {s.outcome:<8} {detail}")
    if not result.failed_nights and _outcome(result.final, "detect") == "ok":
        result.check = compare(school, stored_cases(app.engine(), school), only_open=not replaying,
                               la_returns=stored_la_returns(app.engine(), school))
    _dsl_confirms(app, clock, school.as_of, state / "replies", result, echo)
    app.engine().dispose()
    return result


def _dsl_confirms(app: App, clock: NightClock, as_of: date, maildir: Path, result: DemoResult, echo: Echo) -> None:
    """The DSL replies CONFIRM to one request; the next run sends that referral, encrypted."""
    clock.at += timedelta(hours=2)
    ref = confirm.dsl_replies(app.engine(), app.config.staff.dsl.email, maildir, clock())
    if ref is None:
        echo("No confirmation request was sent, so the DSL had nothing to confirm")
        return
    echo(f"The DSL replied 'CONFIRM {ref}' (a reply placed in {maildir}); running replies, referrals, send:")
    result.confirmation = run_nightly(app, as_of, only=("replies", "referrals", "send"))
    for s in result.confirmation.stages:
        echo(f"  {s.name:<10} {s.outcome:<8} {s.detail if len(s.detail) <= 150 else s.detail[:147] + '...'}")


def _outcome(report: NightlyReport, stage: str) -> str | None:
    return next((s.outcome for s in report.stages if s.name == stage), None)


def describe_output(result: DemoResult, echo: Echo) -> None:
    """Say where everything went, and how the engine did against the planted cases."""
    if result.check is not None:
        c = result.check
        echo(f"Planted cases found as expected: {c.found} of {c.expected}"
             + ("" if c.ok else f"; {len(c.problems)} difference(s):"))
        for p in c.problems[:30]:
            echo(f"  {p}")
    else:
        echo("Cases not compared with the planted ones: the detect stage did not run")
    db = sqlite_path(result.database)
    echo("Output:")
    echo(f"  configuration  {result.config_path}")
    echo(f"  database       {db if db is not None else result.database}")
    if result.maildrop is not None:
        n = len(list(result.maildrop.glob("**/*.eml"))) if result.maildrop.exists() else 0
        echo(f"  mail (maildrop) {result.maildrop} ({n} message(s))")
    echo(f"  expected cases {result.expectations}")
    echo(f"Try: cme-batch --config {result.config_path} status")
