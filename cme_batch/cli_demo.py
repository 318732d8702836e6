"""``cme-batch demo``: build the fictional demo school in a folder and run the pipeline on it.

This is what ``make demo`` runs. The work is in ``cme_batch.demo.run``; this is the shell.
Every command's start-up (``--help``, the nightly run) imports this module to list its command,
so the demo, which imports the store and the whole pipeline, is imported only when it runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cme_batch.cli import EXIT_FAILED, handle_errors

#: ``cme_batch.demo.generator.MIN_PUPILS`` and ``cme_batch.demo.loaders.SOURCES``, repeated for the
#: options (built when this module is imported); ``tests/cli/test_demo_cli.py`` keeps them equal.
MIN_PUPILS = 70
SOURCES = ("direct", "files", "arbor")


@click.command("demo")
@click.option("--dir", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the demo's configuration, database and mail (created; cleared on a re-run).")
@click.option("--seed", type=int, default=2025, show_default=True,
              help="Seed of the generator: the same seed always makes the same school.")
@click.option("--pupils", type=click.IntRange(MIN_PUPILS, 5000), default=420, show_default=True,
              help="How many pupils the school has.")
@click.option("--source", type=click.Choice(SOURCES), default="files", show_default=True,
              help="How the data gets in: 'files' writes SIMS CommandReporter exports into a drop folder "
                   "that the ingest stage imports; 'arbor' serves them from a local Arbor stand-in that the "
                   "ingest stage pulls from; 'direct' stores the generated records as they are.")
@click.option("--replay/--no-replay", default=True, show_default=True,
              help="Run detect for every school night of the term (cases open, advance and close as they "
                   "would have), or only for the last day (faster; only the cases open then).")
@handle_errors
def demo(out_dir: Path, seed: int, pupils: int, source: str, replay: bool) -> None:
    """Make a fictional primary school with a term of registers and planted CME cases, and run on it.

    Writes DIR/cme-batch.toml, creates the database under DIR/state, loads the school, replays
    every school night of autumn 2025 through the detect stage, runs the whole nightly pipeline
    for the last day of term (mail goes to the maildrop DIR/mail), and compares the cases found
    with the ones planted (DIR/expected-cases.json). All names, addresses and numbers are made up.
    """
    from cme_batch.demo.run import describe_output, run_demo

    result = run_demo(out_dir, seed, pupils, source, echo=click.echo, replay=replay)
    describe_output(result, click.echo)
    if result.failed:
        sys.exit(EXIT_FAILED)


COMMANDS = [demo]
