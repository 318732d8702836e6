"""Commands of the attendance engine: ``streaks``, ``detect``, ``cases``, ``case REF``, ``returns``.

JSON field names are a contract with scripts (DESIGN.md): keep them stable. Warnings go to
standard error so that standard output stays valid JSON. Pupils are shown by UPN and internal
id only; names stay in the MIS and in the referral.

The engine and the store are imported by the commands that use them: every command's start-up,
``--help`` included, imports this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import click

from cme_batch.app import App, in_school_time
from cme_batch.cli import as_of_date, as_of_option, echo_json, echo_table, format_option, handle_errors, pass_app
from cme_batch.errors import BadInputError

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from cme_batch.criteria import PupilFacts


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d else None


def _warn(warnings: Iterable[str]) -> None:
    for w in warnings:
        click.echo(f"warning: {w}", err=True)


def streak_row(f: PupilFacts) -> dict[str, Any]:
    """One pupil's streaks with the field names of the JSON contract."""
    s = f.streaks
    return {"upn": f.upn, "pupil_id": f.pupil_id,
            "unexplained_days": s.unexplained.days, "unexplained_start": _iso(s.unexplained.start),
            "unauthorised_days": s.unauthorised.days, "unauthorised_start": _iso(s.unauthorised.start),
            "last_attended": _iso(s.last_attended),
            "register_gaps": [d.isoformat() for d in s.unexplained.register_gaps],
            "unauthorised_register_gaps": [d.isoformat() for d in s.unauthorised.register_gaps]}


@click.command("streaks")
@as_of_option
@format_option()
@click.option("--all", "show_all", is_flag=True, help="Every pupil on roll, not only those with a streak or a gap.")
@pass_app
@handle_errors
def streaks_cmd(app: App, as_of: Any, fmt: str, show_all: bool) -> None:
    """Show each pupil's continuous absence in school days as of a date (changes nothing).

    Two streaks per pupil: unexplained (the CME count) and unauthorised (the LA 10-day return),
    with the date last attended and the register gaps (school days with no mark) of each.
    """
    from cme_batch import detect

    ev = detect.evaluate(app, as_of_date(app, as_of))
    news = ev.results.streaks
    pids = ev.on_roll if show_all else [pid for pid in news if pid in ev.on_roll and (
        news[pid].unexplained.days or news[pid].unauthorised.days or news[pid].unexplained.register_gaps
        or news[pid].unauthorised.register_gaps)]
    rows = [streak_row(ev.facts(pid)) for pid in pids]
    rows.sort(key=lambda r: (-r["unexplained_days"], -r["unauthorised_days"], r["upn"] or "", r["pupil_id"]))
    _warn(ev.warnings)
    if fmt == "json":
        echo_json(rows)
        return
    click.echo(f"Streaks as of {ev.as_of} (school days): {len(rows)} pupil(s)")
    for r in rows:
        r["gaps"] = len(set(r["register_gaps"]) | set(r["unauthorised_register_gaps"])) or None
    echo_table(rows, [("upn", "UPN"), ("pupil_id", "id"), ("unexplained_days", "unexpl"),
                  ("unexplained_start", "since"), ("unauthorised_days", "unauth"), ("unauthorised_start", "since"),
                  ("last_attended", "last attended"), ("gaps", "gaps")])


@click.command("detect")
@as_of_option
@format_option()
@pass_app
@handle_errors
def detect_cmd(app: App, as_of: Any, fmt: str) -> None:
    """Count streaks and open, advance and close CME cases as of a date.

    Safe to run again for the same date (nothing changes); an earlier date than the last run
    is refused.
    """
    from cme_batch import detect

    report = detect.run_detect(app, as_of_date(app, as_of))
    _warn(report.warnings)
    if fmt == "json":
        echo_json({"as_of": report.as_of.isoformat(), "counts": report.counts(), "changes": report.changes})
        return
    counts = report.counts()
    parts = [f"{counts.get(a, 0)} {w}" for a, w in (("open", "opened"), ("update", "updated"),
                                                     ("close", "closed"), ("reopen", "reopened"))]
    click.echo(f"detect as of {report.as_of}: {', '.join(parts)}; {report.events} event(s); "
               f"{report.la_returns} new on the LA 10-day return")
    for c in report.changes:
        click.echo(f"  {c['ref']}  {c['action']:<7} {c['kind']:<20} {c['stage'] or ''}"
                   + (f"  ({c['reason']})" if c["reason"] else ""))


def case_rows(conn: Connection, school_id: int, include_closed: bool) -> list[dict[str, Any]]:
    """Cases with the field names of the JSON contract, newest first."""
    from sqlalchemy import select

    from cme_batch.store import tables as t

    c, p = t.cases, t.pupils
    q = select(c, p.c.upn).join(p, p.c.id == c.c.pupil_id).where(p.c.school_id == school_id)
    if not include_closed:
        q = q.where(c.c.status == "open")
    return [_case_json(r) for r in conn.execute(q.order_by(c.c.opened_on.desc(), c.c.id.desc())).mappings()]


def _case_json(r: Any) -> dict[str, Any]:
    return {"ref": r["ref"], "kind": r["kind"], "status": r["status"], "stage": r["stage"], "upn": r["upn"],
            "streak_start": _iso(r["episode_start"]), "school_days": r["school_days"],
            "last_attended": _iso(r["last_attended"]), "referral_due": _iso(r["referral_due"]),
            "closed_reason": r["closed_reason"], "register_gaps": list(r["register_gaps"] or []),
            "pupil_id": r["pupil_id"], "opened_on": _iso(r["opened_on"]), "closed_on": _iso(r["closed_on"]),
            "compulsory_school_age": r["compulsory_school_age"], "alerts": list(r["alerts"] or [])}


@click.command("cases")
@click.option("--all", "show_all", is_flag=True, help="Closed cases too.")
@format_option()
@pass_app
@handle_errors
def cases_cmd(app: App, show_all: bool, fmt: str) -> None:
    """List open CME cases (with --all, closed ones too)."""
    with app.engine().connect() as conn:
        rows = case_rows(conn, app.school_id, show_all)
    if fmt == "json":
        echo_json(rows)
        return
    for r in rows:
        r["alert"] = "SOCIAL CARE" if r["alerts"] else None
    echo_table(rows, [("ref", "ref"), ("kind", "kind"), ("status", "status"), ("stage", "stage"), ("upn", "UPN"),
                  ("streak_start", "since"), ("school_days", "days"), ("last_attended", "last attended"),
                  ("referral_due", "referral due"), ("closed_reason", "closed"), ("alert", "alert")])


def case_history(conn: Connection, school_id: int, ref: str) -> dict[str, Any]:
    """One case with every event and its evidence, oldest first."""
    from sqlalchemy import select

    from cme_batch.store import tables as t

    c, p, e = t.cases, t.pupils, t.case_events
    row = conn.execute(select(c, p.c.upn).join(p, p.c.id == c.c.pupil_id).where(
        c.c.ref == ref.strip().upper(), p.c.school_id == school_id)).mappings().first()
    if row is None:
        raise BadInputError(f"no case {ref!r}: see 'cme-batch cases --all' for the references")
    events = [{"at": r["at"].isoformat(), "as_of": _iso(r["as_of"]), "kind": r["kind"], "stage": r["stage"],
               "actor": r["actor"], "detail": r["detail"], "evidence": r["evidence"] or []}
              for r in conn.execute(select(e).where(e.c.case_id == row["id"]).order_by(e.c.id)).mappings()]
    return {**_case_json(row), "events": events}


@click.command("case")
@click.argument("ref")
@format_option()
@pass_app
@handle_errors
def case_cmd(app: App, ref: str, fmt: str) -> None:
    """Show one case (e.g. CME-2026-0007): its state, history and the marks behind each step."""
    with app.engine().connect() as conn:
        data = case_history(conn, app.school_id, ref)
    if fmt == "json":
        echo_json(data)
        return
    click.echo(f"{data['ref']}  {data['kind']}  {data['status']}  stage {data['stage'] or '-'}")
    for k in ("upn", "pupil_id", "streak_start", "school_days", "last_attended", "referral_due", "opened_on",
              "closed_on", "closed_reason", "compulsory_school_age"):
        if data[k] is not None:
            click.echo(f"  {k.replace('_', ' ')}: {data[k]}")
    if data["register_gaps"]:
        click.echo(f"  register gaps: {', '.join(data['register_gaps'])}")
    for a in data["alerts"]:
        click.echo(f"  ALERT {a.get('kind')}: {a.get('action')} (raised {a.get('raised_on')})")
    click.echo("History (each event with the marks it adds to the evidence; --format json has them all):")
    shown: dict[tuple[str, str], str] = {}  # (date, session) -> the code last shown
    for ev in data["events"]:
        d = ev["detail"] or {}
        detail = ", ".join([*(f"{k}={v}" for k, v in d.items() if k != "changed"),
                            *(f"{k} {a} -> {b}" for k, (a, b) in (d.get("changed") or {}).items())])
        # a person's reply has no evaluation date: it is shown on the day it was acted on, as the school's clocks say
        at = datetime.fromisoformat(ev["at"])
        day = ev["as_of"] or in_school_time(at if at.tzinfo else at.replace(tzinfo=UTC)).date().isoformat()
        click.echo(f"  {day}  {ev['kind']:<8} {ev['stage'] or '':<16} {ev['actor']}  {detail}")
        # a mark not shown yet, or corrected since it was (shown with the code it had)
        new = [m for m in ev["evidence"] if shown.get((m["date"], m["session"])) != m["code"]]
        if new:
            click.echo("      marks: " + "  ".join(
                f"{m['date']} {m['session']} {m['code']}" + (f" (was {shown[(m['date'], m['session'])]})"
                                                             if (m["date"], m["session"]) in shown else "")
                for m in new))
        shown.update(((m["date"], m["session"]), m["code"]) for m in ev["evidence"])


@click.command("returns")
@as_of_option
@format_option()
@pass_app
@handle_errors
def returns_cmd(app: App, as_of: Any, fmt: str) -> None:
    """The LA 10-day return: pupils whose unauthorised streak reached the threshold, once per episode.

    Lists the episodes first listed on the date given; running it again for that date lists
    the same pupils, and a later date lists only episodes that reached the threshold since.
    """
    from cme_batch import detect

    day = as_of_date(app, as_of)
    with app.engine().begin() as conn:
        ev = detect.evaluate_conn(conn, app.config, app.school_id, day)
        detect.record_returns(conn, app.school_id, ev, app.config.thresholds.la_return_days)
        rows = detect.list_returns(conn, app.school_id, day)
    _warn(ev.warnings)
    if fmt == "json":
        echo_json(rows)
        return
    click.echo(f"LA {app.config.thresholds.la_return_days}-day return as of {day}: {len(rows)} pupil(s)")
    for r in rows:
        r["age"] = {True: "compulsory", False: "below compulsory age", None: "DOB unknown"}[r["compulsory_school_age"]]
    echo_table(rows, [("upn", "UPN"), ("pupil_id", "id"), ("unauthorised_start", "since"),
                  ("reached_on", "reached"), ("school_days", "days"), ("age", "school age")])


COMMANDS = [streaks_cmd, detect_cmd, cases_cmd, case_cmd, returns_cmd]
