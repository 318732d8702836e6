"""``cme-batch status``: what the last runs did, how fresh each source is, cases and outbox."""

from __future__ import annotations

import contextlib
from datetime import UTC
from typing import Any

import click

from cme_batch.app import App
from cme_batch.cli import echo_json, format_option, handle_errors, pass_app
from cme_batch.errors import BadInputError, brief

#: The first 16 bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"


def refuse_a_file_that_holds_no_database(url: str) -> None:
    """Refuse, before opening the store, a SQLite file that is empty or is not a database.

    ``status`` only reads: opening the store prepares its file (mode 0600) and SQLite writes a
    header into an empty file, so a wrong file named by database.url would be changed by the
    command that should only look at it. The message names the file, never its content.
    """
    from cme_batch.store import sqlite_path

    try:
        path = sqlite_path(url)
    except Exception:  # a malformed URL: opening the store says what is wrong with it
        return
    if path is None or not path.is_file():  # PostgreSQL, or missing, or a folder: refused when opened, untouched
        return
    with path.open("rb") as f:
        head = f.read(len(SQLITE_HEADER))
    if not head:
        raise BadInputError(f"the database file {path} is empty (0 bytes), so it holds no cme-batch database: "
                            "restore it from a backup (README: Backing up and restoring) if it held the school's "
                            "data, or run 'cme-batch init' to make a new database there; it was left as it is")
    if head != SQLITE_HEADER:
        raise BadInputError(f"the database file {path} is not a SQLite database: check database.url, or restore "
                            "the file from a backup (README: Backing up and restoring); it was left as it is")
    # another program's SQLite file: looked at read-only, since opening it as the store would switch it
    # to WAL and change its mode
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as con:
            tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error:
        return  # locked or unreadable now: opening the store says what is wrong
    if "alembic_version" not in tables:
        raise BadInputError(f"the database file {path} is a SQLite database but not a cme-batch one (no "
                            "alembic_version table): check database.url; it was left as it is"
                            if tables else
                            f"the database file {path} holds no tables: run 'cme-batch init' to make the "
                            "school's database there; it was left as it is")


def gather(app: App) -> dict[str, Any]:
    from sqlalchemy import func, select  # here, not at start-up: every command imports this module

    from cme_batch.logfilter import scrub
    from cme_batch.store import tables as t

    eng = app.engine()
    now = app.now()
    stale_hours = app.config.thresholds.stale_hours
    with eng.connect() as conn:
        sources = []
        for s in app.config.sources:
            row = conn.execute(select(t.source_state).where(t.source_state.c.source == s.name)).first()
            last_ok = row.last_success_at if row else None
            if last_ok is not None and last_ok.tzinfo is None:  # SQLite hands back naive UTC
                last_ok = last_ok.replace(tzinfo=UTC)
            age_h = (now - last_ok).total_seconds() / 3600 if last_ok else None
            sources.append({
                "source": s.name, "adapter": s.adapter,
                "last_success": last_ok.isoformat() if last_ok else None,
                "hours_since_success": round(age_h, 1) if age_h is not None else None,
                "stale": age_h is None or age_h > stale_hours,
                "last_error": scrub(brief(row.last_error)) if row and row.last_error else None,
            })
        stages = []
        last_run_id = conn.execute(select(t.stage_runs.c.run_id).order_by(t.stage_runs.c.id.desc()).limit(1)).scalar()
        latest = select(func.max(t.stage_runs.c.id)).group_by(t.stage_runs.c.stage)
        for r in conn.execute(select(t.stage_runs).where(t.stage_runs.c.id.in_(latest))
                              .order_by(t.stage_runs.c.id)).mappings():
            dur = (r["finished_at"] - r["started_at"]).total_seconds() if r["finished_at"] else None
            stages.append({"stage": r["stage"], "run_id": r["run_id"], "outcome": _outcome(r, last_run_id),
                           "started_at": r["started_at"].isoformat(), "duration_s": dur,
                           "detail": scrub(r["detail"]) if r["detail"] else r["detail"],
                           "in_last_run": r["run_id"] == last_run_id})
        last_run = _last_run(conn, last_run_id) if last_run_id else None
        detect_warnings = _detect_warnings(conn)
        cases = {f"{k}/{st or '-'}": n for k, st, n in conn.execute(
            select(t.cases.c.kind, t.cases.c.stage, func.count()).where(t.cases.c.status == "open")
            .group_by(t.cases.c.kind, t.cases.c.stage)).all()}
        from cme_batch.mail import outbox as mail_outbox

        outbox = mail_outbox.counts(conn)
        all_problems = mail_outbox.problems(conn)
        # (an MIS's or a mail server's error text, stored as it came, may quote a child's name: withheld)
        failed = [{"id": p.id, "purpose": p.purpose, "error": scrub(p.error) if p.error else p.error}
                  for p in all_problems if p.kind == "failed"]
        waiting = [{"id": e.id, "purpose": e.purpose, "status": e.status, "error": scrub(e.last_error),
                    "next_attempt_at": e.next_attempt_at.isoformat() if e.next_attempt_at else None}
                   for e in mail_outbox.listing(conn, ("queued", "sending")) if e.last_error]
        problems = [{"id": p.id, "kind": p.kind, "text": p.text} for p in all_problems if p.kind != "failed"]
    return {"as_of_now": now.isoformat(), "sources": sources, "last_run": last_run, "stages": stages,
            "detect_warnings": detect_warnings, "open_cases": cases,
            "outbox": outbox, "outbox_failed": failed, "outbox_waiting": waiting, "outbox_problems": problems}


def _detect_warnings(conn: Any) -> dict[str, Any] | None:
    """The warnings of the latest detect run (its evaluation date and the texts), as the morning
    emails give them: the technician who runs ``status`` sees what the configuration lacks (a
    calendar the registers contradict, term dates missing) without reading the office's mail.
    They name classes and dates, never a pupil."""
    from sqlalchemy import select

    from cme_batch.store import tables as t

    run = conn.execute(select(t.detect_runs.c.as_of, t.detect_runs.c.warnings)
                       .order_by(t.detect_runs.c.id.desc()).limit(1)).first()
    if run is None:
        return None
    texts = [str(w.get("message", w)) if isinstance(w, dict) else str(w) for w in run.warnings or []]
    return {"as_of": run.as_of.isoformat(), "warnings": texts}


def _outcome(row: Any, last_run_id: str | None) -> str:
    """A stage's outcome; one left "running" by a run older than the last was stopped part-way."""
    if row["outcome"] == "running" and row["run_id"] != last_run_id:
        return "interrupted"
    return str(row["outcome"])


def _last_run(conn: Any, run_id: str) -> dict[str, Any]:
    """The last nightly run as a whole: when, for which date, and whether every stage it began finished.

    Each stage's line alone is not enough: after a run killed during ingest, the stages after it
    still show the night before's "ok", and the night looks done when it is not.
    """
    from sqlalchemy import select

    from cme_batch.store import tables as t

    rows = conn.execute(select(t.stage_runs.c.stage, t.stage_runs.c.outcome, t.stage_runs.c.started_at)
                        .where(t.stage_runs.c.run_id == run_id).order_by(t.stage_runs.c.id)).all()
    as_of = conn.execute(select(t.detect_runs.c.as_of).where(t.detect_runs.c.run_id == run_id)).scalar()
    unfinished = [r.stage for r in rows if r.outcome == "running"]
    failed = [r.stage for r in rows if r.outcome == "failed"]
    state = "not finished" if unfinished else "failed" if failed else "ok"
    return {"run_id": run_id, "started_at": rows[0].started_at.isoformat(), "as_of": as_of.isoformat() if as_of else None,
            "state": state, "stages": [r.stage for r in rows], "failed": failed, "not_finished": unfinished}


def _last_run_line(run: dict[str, Any] | None) -> str:
    if run is None:
        return "Last run: none yet"
    text = f"Last run: {run['started_at']}" + (f" (as of {run['as_of']})" if run["as_of"] else "")
    if run["state"] == "not finished":
        return text + (f": NOT FINISHED: {', '.join(run['not_finished'])} has no finish recorded "
                       "(still running, or the run was stopped part-way)")
    return text + (f": FAILED: {', '.join(run['failed'])}" if run["failed"] else ": ok")


@click.command("status")
@format_option()
@pass_app
@handle_errors
def status(app: App, fmt: str) -> None:
    """Show source freshness, the last run of each stage, open cases by stage and the outbox."""
    refuse_a_file_that_holds_no_database(app.config.database_url)
    data = gather(app)
    if fmt == "json":
        echo_json(data)
        return
    click.echo("Sources:")
    for s in data["sources"] or [{"source": "(none configured)"}]:
        if "adapter" not in s:
            click.echo(f"  {s['source']}")
            continue
        flag = "STALE" if s["stale"] else "ok"
        click.echo(f"  {s['source']:<20} {flag:<6} last success {s['last_success'] or 'never'}"
                   + (f"  last error: {s['last_error']}" if s["last_error"] else ""))
    click.echo(_last_run_line(data["last_run"]))
    found = data["detect_warnings"]
    if found and found["warnings"]:
        click.echo(f"Warnings of the last detect run (as of {found['as_of']}):")
        for w in found["warnings"]:
            click.echo(f"  - {w}")
    click.echo("Stages (the latest run of each):")
    for st in data["stages"] or [{"stage": "(none yet)"}]:
        if "outcome" not in st:
            click.echo(f"  {st['stage']}")
            continue
        click.echo(f"  {st['stage']:<12} {st['outcome']:<11} {st['started_at']}  {st['duration_s'] or 0:.1f}s"
                   + ("" if st["in_last_run"] else "  (an earlier run: not in the last run)"))
    click.echo("Open cases: " + (", ".join(f"{k} {v}" for k, v in sorted(data["open_cases"].items())) or "none"))
    click.echo("Outbox: " + (", ".join(f"{k} {v}" for k, v in sorted(data["outbox"].items())) or "empty"))
    for f in data["outbox_failed"]:
        click.echo(f"  failed #{f['id']} ({f['purpose']}): {f['error']}")
    for w in data["outbox_waiting"]:
        click.echo(f"  {w['status']} #{w['id']} ({w['purpose']}): {w['error']}; "
                   f"next try {w['next_attempt_at'] or 'next run'}")
    for p in data["outbox_problems"]:
        click.echo(f"  {p['kind']} #{p['id']}: {p['text']}")


COMMANDS = [status]
