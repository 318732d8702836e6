"""Parse throughput and peak memory of the two file adapters, on files their writers make.

Run by hand (never in the timed test suite):

    .venv/bin/python -m benchmarks.bench_parse [--dir DIR] [--sims-mb 100] [--ctf-pupils 60000]

It writes (once, then reuses) a SIMS CommandReporter marks export of about ``--sims-mb`` MB
(one row per pupil per session for a whole school year) and an LA-scale CTF (``--ctf-pupils``
pupils, each with two contacts and a full year's marks string), plus files a tenth of the size.
Each file is then parsed in a fresh process that reads every record, as ``import`` does
before the store; the process reports seconds, MB/s and its peak RSS. Peak RSS of the small
and the large file side by side shows whether memory grows with the file.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

from cme_batch import upn
from cme_batch.model import Address, ContactRecord, EnrolmentRecord, MarksRecord, PupilRecord, SchoolInfo

CODES = "/" * 40 + "\\" * 40 + "LNIMOCBG"
YEAR_START = date(2024, 9, 2)
SCHOOL = SchoolInfo("916", "2999", "Benchmark School")


def year_codes(rng: random.Random) -> tuple[str, ...]:
    """A school year of session codes from YEAR_START: weekends '#', weekdays mostly present."""
    out: list[str] = []
    for d in range(330):
        if (YEAR_START + timedelta(days=d)).weekday() >= 5:
            out += ["#", "#"]
        else:
            out += [rng.choice(CODES).replace("\\", "/"), rng.choice(CODES).replace("/", "\\")]
    return tuple(out)


def pupil(i: int, rng: random.Random) -> PupilRecord:
    key = str(100000 + i)
    return PupilRecord(key, upn=upn.make(f"9162999{i:05d}"), legal_surname=f"Surname{i}", legal_forename=f"Forename{i}",
                       dob=date(2012, 9, 1) + timedelta(days=rng.randrange(2500)), sex=rng.choice("MF"),
                       year_group=str(rng.randrange(1, 12)), reg_group=f"{rng.randrange(1, 12)}A",
                       address=Address((f"{i} Long Street", "Gloucester"), "GL1 1AA"))


def write_sims(path: Path, pupils: int) -> None:
    from adapters.sims.writer import write_marks

    rng = random.Random(1)
    people = {p.pupil_key: p for p in (pupil(i, rng) for i in range(pupils))}
    write_marks(path, people, (MarksRecord(k, YEAR_START, year_codes(rng)) for k in people))


def write_ctf(path: Path, pupils: int) -> None:
    from adapters.ctf.writer import CtfWriter

    rng = random.Random(2)
    with CtfWriter(path, SCHOOL) as w:
        for i in range(pupils):
            p = pupil(i, rng)
            p = PupilRecord(**{**p.__dict__, "pupil_key": p.upn})
            contacts = [ContactRecord(p.pupil_key, f"order:{n}", priority=n, surname=f"Parent{i}", forename="Sam",
                                      relationship="PAM", parental_responsibility=True, phones=("07700 900000",),
                                      address=p.address) for n in (1, 2)]
            w.pupil(p, contacts, (), [EnrolmentRecord(p.pupil_key, entry_date=date(2020, 9, 1))],
                    [MarksRecord(p.pupil_key, YEAR_START, year_codes(rng))])


def measure(fmt: str, path: Path) -> dict[str, float]:
    """Parse one file in this process; report time, throughput and peak RSS."""
    from cme_batch.config import CodesConfig

    factory = {"sims": "adapters.sims:SimsXmlSource", "ctf": "adapters.ctf:CtfSource"}[fmt]
    mod, cls = factory.split(":")
    source = getattr(__import__(mod, fromlist=[cls]), cls)
    start = time.perf_counter()
    batch = source.parse_file(path, {"codes": CodesConfig()})
    records = sum(1 for _ in batch.records)
    seconds = time.perf_counter() - start
    size = path.stat().st_size / 1e6
    return {"size_mb": round(size, 1), "records": records, "seconds": round(seconds, 2),
            "mb_per_s": round(size / seconds, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def files(folder: Path, sims_mb: float, ctf_pupils: int) -> Iterator[tuple[str, Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    per_pupil = 0.178  # MB of marks rows per pupil for a school year, measured on the writer's output
    for label, n in (("small", max(1, int(sims_mb / per_pupil / 10))), ("large", int(sims_mb / per_pupil))):
        path = folder / f"marks-{label}.xml"
        if not path.exists():
            write_sims(path, n)
        yield "sims", path
    for label, n in (("small", ctf_pupils // 10), ("large", ctf_pupils)):
        path = folder / f"ctf-{label}.xml"
        if not path.exists():
            write_ctf(path, n)
        yield "ctf", path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "cme-bench")
    ap.add_argument("--sims-mb", type=float, default=100)
    ap.add_argument("--ctf-pupils", type=int, default=60000)
    ap.add_argument("--measure", nargs=2, metavar=("FORMAT", "FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure[0], Path(args.measure[1]))))
        return
    print(f"{'file':<18}{'MB':>8}{'records':>10}{'s':>8}{'MB/s':>8}{'peak RSS MB':>13}")
    for fmt, path in files(args.dir, args.sims_mb, args.ctf_pupils):
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_parse", "--measure", fmt, str(path)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout)
        print(f"{path.name:<18}{r['size_mb']:>8}{r['records']:>10}{r['seconds']:>8}{r['mb_per_s']:>8}"
              f"{r['peak_rss_mb']:>13}")


if __name__ == "__main__":
    main()
