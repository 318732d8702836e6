"""``cme-batch replies``: read the reply mailbox and act on authenticated commands.

Prints counts and fixed reasons only: never a sender, a subject or a line of a reply, so the
output can go to the journal and to a terminal anyone may see.
"""

from __future__ import annotations

import click

from cme_batch.app import App
from cme_batch.cli import echo_json, format_option, handle_errors, pass_app


@click.command("replies")
@format_option()
@pass_app
@handle_errors
def replies(app: App, fmt: str) -> None:
    """Read the reply mailbox: store every reply, apply the DSL's authenticated commands
    (CONFIRM, HOLD, CLOSE, NOTE) and keep everything else for review in the next digest."""
    from cme_batch.replies.process import read_replies  # here, not at every command's start-up

    report = read_replies(app)
    if report is None:
        if fmt == "json":
            echo_json({"mailbox": "none"})
        else:
            click.echo('replies: no mailbox configured ([replies] mailbox = "none"); nothing read')
        return
    data = report.as_dict()
    if fmt == "json":
        echo_json(data)
        return
    click.echo(f"replies: {data['stored']} new, {data['seen_before']} seen before; "
               f"{data['accepted']} accepted, {data['review']} kept for review")
    for verb, n in sorted(report.accepted.items()):
        click.echo(f"  accepted {verb}: {n}")
    for reason, n in sorted(report.review.items(), key=lambda x: (-x[1], x[0])):
        click.echo(f"  kept for review ({n}): {reason}")


COMMANDS = [replies]
