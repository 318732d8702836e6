"""The least the current design can take for the LA's new day: its floors, measured.

Run by hand after ``python -m benchmarks.run`` (which writes the day files and the LA store):

    python -m benchmarks.floor          # --dir: the folder benchmarks.run used

- **Reading**: expat (C) builds each day file's tree, and nothing else is done with it; every
  CTF reader of this design does at least that.
- **Storing**: straight through ``sqlite3`` on a copy of the LA store, with no per-pupil work
  but the least: look the pupils up by key, read their strips, lay the day's two marks by
  slicing, write the strips back, commit; one transaction per file, as an import does.

The two halves of an import run at once on two cores, so the new day cannot take less than the
larger of the two, plus ``detect``. Nothing here is checked or kept: it is not an importer.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from xml.etree.ElementTree import TreeBuilder, XMLParser

from benchmarks import generate as gen
from cme_batch import marks as mk

IN = 500  # keys per IN (...), as the store's lookups


def read_floor(files: list[Path]) -> float:
    started = time.perf_counter()
    for f in files:
        parser = XMLParser(target=TreeBuilder())
        parser.feed(f.read_bytes())
        parser.close()
    return time.perf_counter() - started


def day_of(path: Path) -> list[tuple[str, str]]:
    """Each pupil's key and the day's marks, from a second parse outside the timing. (Taking them
    from the timed parse keeps 100,000 tuples alive while the next files are parsed, and the
    cycle collector then walks them: 1.75-2.00 s measured instead of 1.20-1.25 s.)"""
    parser = XMLParser(target=TreeBuilder())
    parser.feed(path.read_bytes())
    root = parser.close()
    return [(str(u.text), str(m.text)) for u, m in zip(root.iter("UPN"), root.iter("AttendanceMarks"), strict=True)]


def store_floor(store: Path, days: list[list[tuple[str, str]]]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "store.sqlite"
        shutil.copy(store, copy)
        con = sqlite3.connect(copy, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")  # as the store's own connections
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
        con.close()
    return parts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "cme-bench",
                    help="the benchmark's folder (ctf/day-*.xml and la/state/cme-batch.sqlite)")
    args = ap.parse_args()
    files = sorted((args.dir / "ctf").glob("day-*.xml"))
    store = args.dir / "la" / "state" / "cme-batch.sqlite"
    if not files or not store.exists():
        raise SystemExit(f"no day files or LA store under {args.dir}: run python -m benchmarks.run first")
    reading = read_floor(files)
    parts = store_floor(store, [day_of(f) for f in files])
    storing = sum(parts.values())
    print(f"{len(files)} day files: reading floor {reading:.2f} s; storing floor {storing:.2f} s "
          f"({', '.join(f'{k} {v:.2f}' for k, v in parts.items())}); the import cannot take less than "
          f"{max(reading, storing):.2f} s on two cores, before detect")


if __name__ == "__main__":
    main()
