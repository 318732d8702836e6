"""``cme-batch purge``: remove data past its retention period (see cme_batch.purge)."""

from __future__ import annotations

import click

from cme_batch.app import App
from cme_batch.cli import handle_errors, pass_app


@click.command("purge")
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
@pass_app
@handle_errors
def purge_cmd(app: App, dry_run: bool) -> None:
    """Remove raw replies, bundles, old case events, sent emails, registers and long-gone pupils past retention."""
    from cme_batch.purge import purge

    r = app.config.retention
    counts = purge(app.engine(), r, app.now(), dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb}: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items()))
    click.echo(f"(kept: replies {r.replies_days} days, bundles {r.bundles_days} days, events of closed cases "
               f"{r.case_events_days} days, sent emails {r.outbox_days} days, registers {r.registers_years} years; "
               f"pupils who left before the oldest year of registers kept go with everything about them)")


COMMANDS = [purge_cmd]
