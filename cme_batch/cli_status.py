"""``cme-batch status``: what the last runs did, how fresh each source is, cases and outbox."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import click

from cme_batch.app import App
from cme_batch.cli import echo_json, format_option, handle_errors, pass_app


def gather(app: App) -> dict[str, Any]:
    from sqlalchemy import func, select  # here, not at start-up: every command imports this module

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
                "last_error": (row.last_error or "").splitlines()[0] if row and row.last_error else None,
            })
        stages = []
        latest = select(func.max(t.stage_runs.c.id)).group_by(t.stage_runs.c.stage)
        for r in conn.execute(select(t.stage_runs).where(t.stage_runs.c.id.in_(latest))
                              .order_by(t.stage_runs.c.id)).mappings():
            dur = (r["finished_at"] - r["started_at"]).total_seconds() if r["finished_at"] else None
            stages.append({"stage": r["stage"], "run_id": r["run_id"], "outcome": r["outcome"],
                           "started_at": r["started_at"].isoformat(), "duration_s": dur, "detail": r["detail"]})
        cases = {f"{k}/{st or '-'}": n for k, st, n in conn.execute(
            select(t.cases.c.kind, t.cases.c.stage, func.count()).where(t.cases.c.status == "open")
            .group_by(t.cases.c.kind, t.cases.c.stage)).all()}
        from cme_batch.mail import outbox as mail_outbox

        outbox = mail_outbox.counts(conn)
        all_problems = mail_outbox.problems(conn)
        failed = [{"id": p.id, "purpose": p.purpose, "error": p.error} for p in all_problems if p.kind == "failed"]
        waiting = [{"id": e.id, "purpose": e.purpose, "status": e.status, "error": e.last_error,
                    "next_attempt_at": e.next_attempt_at.isoformat() if e.next_attempt_at else None}
                   for e in mail_outbox.listing(conn, ("queued", "sending")) if e.last_error]
        problems = [{"id": p.id, "kind": p.kind, "text": p.text} for p in all_problems if p.kind != "failed"]
    return {"as_of_now": now.isoformat(), "sources": sources, "stages": stages, "open_cases": cases,
            "outbox": outbox, "outbox_failed": failed, "outbox_waiting": waiting, "outbox_problems": problems}


@click.command("status")
@format_option()
@pass_app
@handle_errors
def status(app: App, fmt: str) -> None:
    """Show source freshness, the last run of each stage, open cases by stage and the outbox."""
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
    click.echo("Stages (last run):")
    for st in data["stages"] or [{"stage": "(none yet)"}]:
        if "outcome" not in st:
            click.echo(f"  {st['stage']}")
            continue
        click.echo(f"  {st['stage']:<12} {st['outcome']:<8} {st['started_at']}  {st['duration_s'] or 0:.1f}s")
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
