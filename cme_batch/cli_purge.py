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
    """Remove replies, bundles, old case events, emails, registers, long-gone pupils and archived exports past retention."""
    from cme_batch.purge import purge

    r = app.config.retention
    counts = purge(app.engine(), r, app.now(), dry_run)
    counts["archived_exports"] = _purge_archives(app, dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb}: " + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items()))
    click.echo(f"(kept: replies {r.replies_days} days, bundles {r.bundles_days} days, events of closed cases "
               f"{r.case_events_days} days, emails {r.outbox_days} days, registers {r.registers_years} years, "
               f"archived exports {r.archive_days} days (the newest of each report stays); "
               f"pupils who left before the oldest year of registers kept go with everything about them)")


def _purge_archives(app: App, dry_run: bool) -> int:
    """Old archived exports in the drop folders of the configured sources (``retention.archive_days``)."""
    from datetime import timedelta

    from cme_batch.dropfolder import DropFolder
    from cme_batch.errors import CmeError
    from cme_batch.sources import build_source

    before = app.now() - timedelta(days=app.config.retention.archive_days)
    n = 0
    for cfg in app.config.sources:
        try:
            source = build_source(cfg)
        except CmeError as exc:  # its archive is kept; the night reports the configuration itself
            click.echo(f"source {cfg.name}: archive not checked ({str(exc).splitlines()[0]})", err=True)
            continue
        drop = getattr(source, "drop", None)
        if isinstance(drop, DropFolder):
            n += drop.purge_archive(before, dry_run)
    return n


COMMANDS = [purge_cmd]
