"""``cme-batch send`` and ``cme-batch outbox``: drain the outbox, and see what is in it and why.

The outbox and the sender (SQLAlchemy, tenacity) are imported by the commands that use them:
every command's start-up, ``--help`` included, imports this module.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from cme_batch.app import App, in_school_time
from cme_batch.cli import EXIT_FAILED, echo_json, echo_table, format_option, handle_errors, pass_app
from cme_batch.errors import BadInputError
from cme_batch.mail import STATUSES

if TYPE_CHECKING:
    from cme_batch.mail.sender import SendReport


def _when(value: Any) -> str:
    """A stored UTC moment as the school's clocks show it, to the minute."""
    return in_school_time(value).strftime("%Y-%m-%d %H:%M") if value else "-"


def _report_json(report: SendReport) -> dict[str, Any]:
    return {
        "transport": report.transport,
        "outcomes": [o.__dict__ for o in report.outcomes],
        "recovered_maybe_duplicate": report.recovered,
        "stopped": str(report.fatal) if report.fatal else None,
        "outbox": report.counts,
    }


@click.command("send")
@click.option("--retry-now", is_flag=True,
              help="Also try messages still waiting out their backoff after a temporary failure.")
@format_option()
@pass_app
@handle_errors
def send(app: App, retry_now: bool, fmt: str) -> None:
    """Send queued email through the configured transport (maildrop, smtp or graph).

    Each message is sent once, with its own stable Message-ID. Temporary failures (server down,
    busy, 4xx) are retried with growing waits, within this run and by later runs; permanent ones
    (5xx, unknown recipient) are kept as 'failed' and reported. Only one 'send' runs at a time.
    Exit code 1 when a message was deferred or failed, or the run had to stop.
    """
    from cme_batch.mail import outbox
    from cme_batch.mail.sender import send_run

    report = send_run(app, ignore_backoff=retry_now)
    with app.engine().connect() as conn:
        problems = outbox.problems(conn)
    if fmt == "json":
        data = _report_json(report)
        data["problems"] = [{**p.__dict__, "text": p.text} for p in problems]
        echo_json(data)
    else:
        for rid in report.recovered:
            click.echo(f"recovered #{rid}: a previous run stopped while sending it; resending (may arrive twice)")
        for o in report.outcomes:
            dup = " (may arrive twice)" if o.maybe_duplicate else ""
            click.echo(f"{o.result:<8} #{o.id} {o.purpose}{dup}: {o.detail}")
        if not report.outcomes:
            click.echo("nothing to send")
        if report.fatal:
            click.echo(f"stopped: {report.fatal}")
        click.echo("outbox: " + ", ".join(f"{k} {v}" for k, v in report.counts.items()))
        for p in problems:
            click.echo(f"  problem: {p.text}")
    if report.fatal is not None:
        sys.exit(report.fatal.exit_code or EXIT_FAILED)
    if report.of("deferred") or report.of("failed"):
        sys.exit(EXIT_FAILED)


@click.command("outbox")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES),
              help="Only messages in this status (repeatable). Default: all.")
@click.option("--requeue", "requeue_id", type=int, default=None,
              help="Put the failed message with this id back in the queue (after fixing the cause).")
@click.option("--limit", type=click.IntRange(1, 100000), default=200, show_default=True,
              help="Show at most this many messages, newest first.")
@format_option()
@pass_app
@handle_errors
def outbox_cmd(app: App, statuses: tuple[str, ...], requeue_id: int | None, limit: int, fmt: str) -> None:
    """List the outbox: each message's status (queued, sending, sent, failed) and the reason."""
    from cme_batch.mail import outbox

    engine = app.engine()
    if requeue_id is not None:
        with engine.begin() as conn:
            if not outbox.requeue(conn, requeue_id, app.now()):
                raise BadInputError(f"outbox message {requeue_id} does not exist or is not failed")
        click.echo(f"message {requeue_id} queued again; it goes with the next 'cme-batch send'")
        return
    with engine.connect() as conn:
        entries = outbox.listing(conn, statuses, limit)
        totals = outbox.counts(conn)
    if fmt == "json":
        echo_json({"counts": totals, "messages": [e.as_dict() for e in entries]})
        return
    click.echo("outbox: " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    if not entries:
        return
    rows = []
    for e in entries:
        later = e.sent_at if e.status == "sent" else e.next_attempt_at
        reason = (e.last_error or "").splitlines()[0][:120] if e.last_error else ""
        if e.maybe_duplicate:  # a failed one was held: its hand-over went unanswered, and it was not resent
            note = "may or may not have arrived (held, not sent again). " if e.status == "failed" \
                else "may have arrived twice. "
            reason = (note + reason).strip()
        rows.append({"id": e.id, "status": e.status, "purpose": e.purpose, "tries": e.attempts,
                     "queued": _when(e.queued_at), "later": _when(later), "reason": reason})
    echo_table(rows, [("id", "id"), ("status", "status"), ("purpose", "purpose"), ("tries", "tries"),
                      ("queued", "queued"), ("later", "sent / next try"), ("reason", "reason")],
               right=("id", "tries"))


COMMANDS = [send, outbox_cmd]
