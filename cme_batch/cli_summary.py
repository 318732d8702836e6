"""``cme-batch summary``: queue the office summary, the DSL digest and confirmation requests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from cme_batch.app import App
from cme_batch.cli import as_of_date, as_of_option, handle_errors, pass_app
from cme_batch.errors import BadInputError


@click.command("summary")
@as_of_option
@click.option("--preview", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write the summary and digest (text and HTML) into this new directory (mode 0700) "
                   "instead of queueing them. They contain pupil data: delete them after use.")
@pass_app
@handle_errors
def summary(app: App, as_of: Any, preview: Path | None) -> None:
    """Queue this morning's office summary and DSL digest (once per date), and confirmation requests."""
    from cme_batch.mail import outbox
    from cme_batch.morning import documents, queue
    from cme_batch.morning.facts import gather
    from cme_batch.replies import process as replies_process
    from cme_batch.report import render_html, render_text

    day = as_of_date(app, as_of)
    if preview is None:
        click.echo(queue.queue_morning_mail(app, day))
        return
    try:
        preview.mkdir(mode=0o700, parents=True, exist_ok=False)
    except FileExistsError:
        raise BadInputError(f"--preview {preview} already exists: name a folder that does not exist yet (it is "
                            "made for the preview alone, readable by its owner only)") from None
    os.chmod(preview, 0o700)
    with app.engine().connect() as conn:
        facts = gather(conn, app.config, day, app.now(), queue.calendar_for(app.config, day),
                             outbox.problems(conn, include_reported=False), replies_process.pending_review(conn))
    for name, doc in (("summary", documents.office_document(facts)), ("digest", documents.dsl_document(facts))):
        for ext, text in (("txt", render_text(doc)), ("html", render_html(doc))):
            fd = os.open(preview / f"{name}.{ext}", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
    click.echo(f"warning: {preview} holds pupil data; delete it when done", err=True)
    click.echo(f"wrote summary and digest (text and HTML) to {preview}")


COMMANDS = [summary]
