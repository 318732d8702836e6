"""``cme-batch nightly``: the whole night, one stage after another, under the run lock."""

from __future__ import annotations

import sys
from typing import Any

import click

from cme_batch.app import App
from cme_batch.cli import EXIT_FAILED, as_of_date, as_of_option, handle_errors, pass_app, remember_valid_config
from cme_batch.errors import LockHeld
from cme_batch.nightly import STAGES, run_nightly


@click.command("nightly")
@as_of_option
@click.option("--only", multiple=True, type=click.Choice([n for n, _ in STAGES]),
              help="Run only this stage (repeatable). Default: every stage in order.")
@pass_app
@handle_errors
def nightly(app: App, as_of: Any, only: tuple[str, ...]) -> None:
    """Run the night: ingest, detect, replies, referrals, summary, send.

    A failed stage is reported and the others still run; the exit code is then 1.
    If another run holds the lock, say so and exit 0.
    """
    day = as_of_date(app, as_of)
    remember_valid_config(app)  # for notify-failure, should a later edit break the file
    try:
        report = run_nightly(app, day, only, defaulted=as_of is None)
    except LockHeld as exc:
        app.log(stage="nightly").warning("another run holds the lock; nothing done", reason=str(exc))
        click.echo(f"{exc}; nothing done")
        return
    from cme_batch.logfilter import scrub  # (here: every command imports this module)

    for s in report.stages:  # (a stage's detail may quote an MIS's error text, which may name a child)
        click.echo(f"{s.name:<10} {s.outcome:<8} {s.seconds:6.2f}s  {scrub(s.detail or '')}")
    if report.failed:
        sys.exit(EXIT_FAILED)


COMMANDS = [nightly]
