"""The least the current design can take for the LA's new day: its floors, measured.

Run by hand after ``python -m benchmarks.run`` (which writes the day files and the LA store):

    python -m benchmarks.floor          # --dir: the folder benchmarks.run used

- **Reading**: expat (C) builds each day file's tree, and nothing else is done with it; every
  CTF reader of this design does at least that.
- **Storing**: straight through ``sqlite3`` on a copy of the LA store, with no per-pupil work
  but the least: look the pupils up by key, read their strips, lay the day's two marks by
  slicing, write the strips back, commit; one transaction per file, as an import does.

The two halves of an import run at once on two cores, so the new day cannot take less than the
larger of the two, plus ``detect``.

The same two floors for the other design the README weighs (``--other``):

- **Reading in C**: libxml2 builds each day file's whole tree and XPath takes the keys, start
  dates and marks out of it, so Python touches only the strings.
- **Appending**: every pupil's key looked up once for the whole import, then the day laid down
  as one short row per pupil in a table of its own, one transaction per file, to be folded
  into the strips later (the folding is not timed: it is off the night's path). What ``detect``
  would pay on top, to see the unfolded day, is timed apart: reading the day's rows back and
  laying them on strips held in memory.

And the floor of ``detect`` as the issue sketches it (``--reference``): every strip of the year
already in memory, each code made "attended" or "unexplained" by ``str.translate`` (the engine's
code sets), then ``rfind`` for the last session attended and a count of the unexplained sessions
after it: the sketch, not the engine (no calendar, no register gaps). The issue gives
about 0.15 s for it on its 2-core machine, so the same pass timed here tells how this machine's
Python speed compares with that one's.

Nothing here is checked or kept: it is not an importer.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from xml.etree.ElementTree import TreeBuilder, XMLParser

from lxml import etree

from benchmarks import generate as gen
from cme_batch import marks as mk
from cme_batch.codes import ATTENDED, UNEXPLAINED, Classifier

IN = 500  # keys per IN (...), as the store's lookups


def read_floor(files: list[Path]) -> float:
    started = time.perf_counter()
    for f in files:
        parser = XMLParser(target=TreeBuilder())
        parser.feed(f.read_bytes())
        parser.close()
    return time.perf_counter() - started


def read_in_c(files: list[Path]) -> float:
    pupils = "/CTfile/CTFpupilData/Pupil"
    sessions = f"{pupils}/Attendance/YearData/AttendSessions"
    parser = etree.XMLParser(no_network=True, load_dtd=False, remove_blank_text=True)
    keys_of, starts_of, marks_of = (etree.XPath(f"{path}/text()", smart_strings=False) for path in (
        f"{pupils}/UPN", f"{sessions}/AttendanceStartDate", f"{sessions}/AttendanceMarks"))
    count = etree.XPath(f"count({pupils})")
    started = time.perf_counter()
    for f in files:
        root = etree.fromstring(f.read_bytes(), parser)
        found = [keys_of(root), starts_of(root), marks_of(root)]
        if not all(isinstance(texts, list) and len(texts) == count(root) for texts in found):
            raise SystemExit(f"{f}: not one UPN and one run of marks per pupil; this floor reads only such files")
        del root
    return time.perf_counter() - started


def day_of(path: Path) -> list[tuple[str, str]]:
    """Each pupil's key and the day's marks, from a second parse outside the timing. (Taking them
    from the timed parse keeps 100,000 tuples alive while the next files are parsed, and the
    cycle collector then walks them: 1.75-2.00 s measured instead of 1.20-1.25 s.)"""
    parser = XMLParser(target=TreeBuilder())
    parser.feed(path.read_bytes())
    root = parser.close()
    return [(str(u.text), str(m.text)) for u, m in zip(root.iter("UPN"), root.iter("AttendanceMarks"), strict=True)]


@contextmanager
def store_copy(store: Path) -> Iterator[sqlite3.Connection]:
    """A connection, in autocommit, to a throw-away copy of the store, set up as the store's own."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "store.sqlite"
        shutil.copy(store, copy)
        con = sqlite3.connect(copy, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        try:
            yield con
        finally:
            con.close()


def store_floor(store: Path, days: list[list[tuple[str, str]]]) -> dict[str, float]:
    with store_copy(store) as con:
        # the day after the benchmark's new day (the same academic year, no marks yet): the strips
        # change whether or not the new day was imported already (SQLite skips writing a row unchanged)
        day = gen.NEW_DAY + timedelta(days=1)
        at, year = mk.position(day, "AM"), mk.academic_year_of(day)
        assert year == mk.academic_year_of(gen.NEW_DAY)
        parts = dict.fromkeys(("look up", "read strips", "lay", "write strips", "commit"), 0.0)
        for pupils in days:
            con.execute("BEGIN")
            t0 = time.perf_counter()
            ids: dict[str, int] = {}
            for i in range(0, len(pupils), IN):
                keys = [k for k, _ in pupils[i:i + IN]]
                ids.update(con.execute("SELECT pupil_key, pupil_id FROM pupil_keys WHERE source = 'ctf' AND "
                                       f"pupil_key IN ({','.join('?' * len(keys))})", keys).fetchall())
            t1 = time.perf_counter()
            strips: dict[int, str] = {}
            found = list(ids.values())
            for i in range(0, len(found), IN):
                part = found[i:i + IN]
                strips.update(con.execute("SELECT pupil_id, marks FROM mark_strips WHERE academic_year = ? AND "
                                          f"pupil_id IN ({','.join('?' * len(part))})", [year, *part]).fetchall())
            t2 = time.perf_counter()
            rows = [(s[:at] + codes + s[at + len(codes):], pid, year)
                    for key, codes in pupils for pid in (ids[key],) for s in (strips[pid],)]
            t3 = time.perf_counter()
            con.executemany("UPDATE mark_strips SET marks = ? WHERE pupil_id = ? AND academic_year = ?", rows)
            t4 = time.perf_counter()
            con.execute("COMMIT")
            t5 = time.perf_counter()
            for name, took in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4), strict=True):
                parts[name] += took
    return parts


def append_floor(store: Path, days: list[list[tuple[str, str]]]) -> dict[str, float]:
    with store_copy(store) as con:
        con.execute("CREATE TABLE day_marks (pupil_id INTEGER NOT NULL, day TEXT NOT NULL, marks TEXT NOT NULL, "
                    "PRIMARY KEY (pupil_id, day)) WITHOUT ROWID")
        day = (gen.NEW_DAY + timedelta(days=1)).isoformat()
        parts = dict.fromkeys(("look up", "append", "commit"), 0.0)
        t0 = time.perf_counter()
        ids = dict(con.execute("SELECT pupil_key, pupil_id FROM pupil_keys WHERE source = 'ctf'").fetchall())
        parts["look up"] = time.perf_counter() - t0
        for pupils in days:
            t1 = time.perf_counter()
            con.execute("BEGIN")
            con.executemany("INSERT INTO day_marks VALUES (?, ?, ?)", [(ids[k], day, codes) for k, codes in pupils])
            t2 = time.perf_counter()
            con.execute("COMMIT")
            t3 = time.perf_counter()
            parts["append"] += t2 - t1
            parts["commit"] += t3 - t2
        at, year = mk.position(gen.NEW_DAY + timedelta(days=1), "AM"), mk.academic_year_of(gen.NEW_DAY)
        strips = dict(con.execute("SELECT pupil_id, marks FROM mark_strips WHERE academic_year = ?", [year]))
        t4 = time.perf_counter()
        for pid, codes in con.execute("SELECT pupil_id, marks FROM day_marks WHERE day = ?", [day]):
            s = strips[pid]
            strips[pid] = s[:at] + codes + s[at + len(codes):]
        parts["detect's extra"] = time.perf_counter() - t4
    return parts


def reference_pass(store: Path) -> tuple[int, list[float]]:
    """Three timings of the issue's per-pupil pass over the new day's year of strips (read first, untimed)."""
    year = mk.academic_year_of(gen.NEW_DAY)
    with store_copy(store) as con:
        strips = [s for (s,) in con.execute("SELECT marks FROM mark_strips WHERE academic_year = ?", [year])]
    classifier = Classifier()
    # the sketch's two classes, by the engine's own code sets: attended breaks, unexplained counts
    table = {ord(c): "B" for c in classifier.symbols(ATTENDED, gen.NEW_DAY)}
    table.update({ord(c): "U" for c in classifier.symbols({UNEXPLAINED}, gen.NEW_DAY)})
    end = 2 * ((gen.NEW_DAY - mk.year_start(year)).days + 1)
    took = []
    for _ in range(3):
        started = time.perf_counter()
        counts = []
        for strip in strips:
            letters = strip.translate(table)
            counts.append(letters.count("U", letters.rfind("B", 0, end) + 1, end))
        took.append(round(time.perf_counter() - started, 3))
    if len(counts) != len(strips):
        raise SystemExit("the pass did not cover every strip")
    return len(strips), took


def _parts(parts: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in parts.items())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "cme-bench",
                    help="the benchmark's folder (ctf/day-*.xml and la/state/cme-batch.sqlite)")
    ap.add_argument("--other", action="store_true",
                    help="also the floors of the other design: reading in C, appending the day")
    ap.add_argument("--reference", action="store_true",
                    help="only the issue's per-pupil pass over the strips (its reference: about 0.15 s)")
    args = ap.parse_args()
    store = args.dir / "la" / "state" / "cme-batch.sqlite"
    if args.reference:
        if not store.exists():
            raise SystemExit(f"no LA store under {args.dir}: run python -m benchmarks.run first")
        n, took = reference_pass(store)
        print(f"the issue's per-pupil pass over {n:,} strips: {', '.join(map(str, took))} s "
              "(the issue: about 0.15 s on its machine)")
        return
    files = sorted((args.dir / "ctf").glob("day-*.xml"))
    if not files or not store.exists():
        raise SystemExit(f"no day files or LA store under {args.dir}: run python -m benchmarks.run first")
    reading = read_floor(files)
    days = [day_of(f) for f in files]
    parts = store_floor(store, days)
    storing = sum(parts.values())
    print(f"{len(files)} day files: reading floor {reading:.2f} s; storing floor {storing:.2f} s "
          f"({_parts(parts)}); the import cannot take less than {max(reading, storing):.2f} s on two cores, "
          "before detect")
    if args.other:
        reading = read_in_c(files)
        parts = append_floor(store, days)
        extra = parts.pop("detect's extra")
        storing = sum(parts.values())
        print(f"the other design: reading in C {reading:.2f} s; appending {storing:.2f} s ({_parts(parts)}); "
              f"its import cannot take less than {max(reading, storing):.2f} s on two cores, before detect, which would "
              f"take {extra:.2f} s more to see the day before it is folded")


if __name__ == "__main__":
    main()
