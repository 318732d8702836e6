"""The baseline: the classic SQL gaps-and-islands query over one row per session mark.

``build(store_engine, path, school_id, classifier, calendar, as_of)`` copies the store's marks
into a separate SQLite file as the textbook schema would hold them, one row per pupil per
school-day session (``marks(pupil, day, session, code)``, primary key in that order, plus a
``codes(code, cls)`` table of the national classes), then ``unexplained_streaks(path, as_of)``
computes every pupil's current unexplained streak with SQL alone:

1. keep the marks up to the evaluation date whose class is not dropped (``neutral``,
   ``no_mark``, ``unknown``), flagged ``n = 1`` when unexplained;
2. number them twice with ``ROW_NUMBER()``, per pupil and per pupil and flag: the difference is
   constant along a run of equal flags (an *island*);
3. group the islands; a pupil's streak is the unexplained island that holds their last kept
   mark, counted in distinct days. A day whose morning kept a mark that is not unexplained but
   whose afternoon is (seen, then absent) broke the streak: ``LAG`` over the same window finds
   that afternoon, the first mark of its island, and the island does not count its day.

``compare(engine_streaks, sql_streaks)`` lists every pupil on which the two disagree. The
engine is never consulted while building or querying: the SQL is the independent check.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from cme_batch import codes as codes_mod
from cme_batch import marks as mk
from cme_batch.store import tables as t

DROPPED = (codes_mod.NEUTRAL, codes_mod.NO_MARK, codes_mod.UNKNOWN)

QUERY = """
WITH kept AS (
    SELECT m.pupil, m.day, m.session, CASE WHEN c.cls = 'unexplained' THEN 1 ELSE 0 END AS n
    FROM marks m JOIN codes c ON c.code = m.code
    WHERE m.day <= :as_of AND c.cls NOT IN ('neutral', 'no_mark', 'unknown')
),
numbered AS (
    SELECT pupil, day, n,
           ROW_NUMBER() OVER w AS rn,
           ROW_NUMBER() OVER w - ROW_NUMBER() OVER (PARTITION BY pupil, n ORDER BY day, session) AS island,
           CASE WHEN n = 1 AND LAG(day) OVER w = day AND LAG(n) OVER w = 0 THEN 1 ELSE 0 END AS broke
    FROM kept
    WINDOW w AS (PARTITION BY pupil ORDER BY day, session)
),
islands AS (
    SELECT pupil, n, island, MAX(rn) AS last_rn,
           COUNT(DISTINCT CASE WHEN broke = 0 THEN day END) AS days,
           MIN(CASE WHEN broke = 0 THEN day END) AS start
    FROM numbered GROUP BY pupil, n, island
)
SELECT i.pupil, i.days, i.start
FROM islands i JOIN (SELECT pupil, MAX(last_rn) AS last_rn FROM islands GROUP BY pupil) latest
     ON latest.pupil = i.pupil AND latest.last_rn = i.last_rn
WHERE i.n = 1
"""


@dataclass
class Built:
    path: Path
    rows: int
    seconds: float


def _rows(store: Engine, school_id: int, alphabet: mk.Alphabet, school_days: list[date],
          year: int) -> Iterator[tuple[int, str, int, str]]:
    """One row per pupil per school-day session, from the stored strips, pupil by pupil."""
    positions = [(d.isoformat(), mk.position(d, "AM")) for d in school_days]
    code_for = alphabet.code_for
    with store.connect() as conn:
        result = conn.execution_options(yield_per=2000).execute(
            select(t.mark_strips.c.pupil_id, t.mark_strips.c.marks).join(
                t.pupils, t.pupils.c.id == t.mark_strips.c.pupil_id).where(
                t.pupils.c.school_id == school_id, t.mark_strips.c.academic_year == year).order_by(
                t.mark_strips.c.pupil_id))
        for pid, strip in result:
            for iso, i in positions:
                yield pid, iso, 0, code_for(strip[i])
                yield pid, iso, 1, code_for(strip[i + 1])


def build(store: Engine, path: Path, school_id: int, classifier: codes_mod.Classifier, school_days: list[date],
          as_of: date) -> Built:
    """Write the one-row-per-mark copy of one academic year's marks up to ``as_of``."""
    started = time.perf_counter()
    path.unlink(missing_ok=True)
    year = mk.academic_year_of(as_of)
    days = [d for d in school_days if mk.academic_year_of(d) == year and d <= as_of]
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE codes (code TEXT PRIMARY KEY, cls TEXT NOT NULL)")
        db.execute("CREATE TABLE marks (pupil INTEGER NOT NULL, day TEXT NOT NULL, session INTEGER NOT NULL, "
                   "code TEXT NOT NULL, PRIMARY KEY (pupil, day, session)) WITHOUT ROWID")
        db.executemany("INSERT INTO codes VALUES (?, ?)", _classes(classifier, as_of))
        cur = db.executemany("INSERT INTO marks VALUES (?, ?, ?, ?)",
                             _rows(store, school_id, classifier.alphabet, days, year))
        rows = cur.rowcount
        db.commit()
        # codes the store holds that no table names: classed unknown, as the engine treats them
        db.execute("INSERT INTO codes SELECT DISTINCT code, 'unknown' FROM marks WHERE code NOT IN "
                   "(SELECT code FROM codes)")
        db.commit()
    finally:
        db.close()
    return Built(path, rows, time.perf_counter() - started)


def _classes(classifier: codes_mod.Classifier, day: date) -> list[tuple[str, str]]:
    """Every code the engine knows, with its class on ``day`` (national set, sub-codes, local codes)."""
    known = {*codes_mod.national_set(day), *classifier.subcodes, *classifier.local,
             *(c for c, _ in classifier.alphabet.codes())}
    return sorted((c, classifier.class_of(c, day)) for c in known if c)


def unexplained_streaks(path: Path, as_of: date) -> tuple[dict[int, tuple[int, date | None]], float]:
    """Every pupil's current unexplained streak (days, start) by SQL alone, and the query's seconds.

    Pupils with no current streak are absent from the result (their streak is 0 days).
    """
    db = sqlite3.connect(path)
    try:
        started = time.perf_counter()
        rows = db.execute(QUERY, {"as_of": as_of.isoformat()}).fetchall()
        seconds = time.perf_counter() - started
    finally:
        db.close()
    out = {int(pid): (int(days), date.fromisoformat(start) if days and start else None)
           for pid, days, start in rows if days}
    return out, seconds


def compare(engine: Mapping[int, tuple[int, date | None]], sql: Mapping[int, tuple[int, date | None]]
            ) -> list[dict[str, Any]]:
    """Every pupil (by internal id) on which the engine and the SQL disagree."""
    out = []
    for pid in sorted(set(engine) | set(sql)):
        e, s = engine.get(pid, (0, None)), sql.get(pid, (0, None))
        if e != s:
            out.append({"pupil_id": pid, "engine": [e[0], e[1] and e[1].isoformat()],
                        "sql": [s[0], s[1] and s[1].isoformat()]})
    return out


def engine_streaks(evaluation: Any) -> dict[int, tuple[int, date | None]]:
    """The engine's unexplained streak of every pupil on roll, from ``detect.evaluate``."""
    out = {}
    for pid in evaluation.on_roll:
        s = evaluation.results.get(pid).unexplained
        out[pid] = (s.days, s.start)
    return out


def run(app: Any, path: Path, as_of: date) -> dict[str, Any]:
    """Build, query, evaluate with the engine, compare: the numbers for the results table."""
    from cme_batch import detect

    started = time.perf_counter()
    ev = detect.evaluate(app, as_of)
    engine_seconds = time.perf_counter() - started
    classifier = codes_mod.Classifier(app.config.codes.local, app.config.codes.subcodes, ev.alphabet)
    built = build(app.engine(), path, app.school_id, classifier, ev.calendar.days, as_of)
    sql, sql_seconds = unexplained_streaks(path, as_of)
    mine = engine_streaks(ev)
    differences = compare({p: v for p, v in mine.items() if v[0]}, sql)
    return {"rows": built.rows, "build_seconds": round(built.seconds, 2), "query_seconds": round(sql_seconds, 2),
            "engine_evaluate_seconds": round(engine_seconds, 3), "pupils_compared": len(mine),
            "pupils_with_streak": sum(1 for v in mine.values() if v[0]), "differences": len(differences),
            "first_differences": differences[:10]}


__all__ = ["QUERY", "build", "compare", "engine_streaks", "run", "unexplained_streaks"]
