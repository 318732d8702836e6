"""Scale benchmarks: one school's night, a local authority's year, and the SQL baseline.

    .venv/bin/python -m benchmarks.run                 # everything, full size (minutes)
    .venv/bin/python -m benchmarks.run --quick         # 10,000 LA pupils in 2 files: a quick check
    .venv/bin/python -m benchmarks.run --only school   # or la, baseline (comma-separated)
    .venv/bin/python -m benchmarks.run --pupils 50000 --files 5 --dir DIR

Every measured step runs in a fresh process (``--phase``), so its peak memory (``ru_maxrss``
of that process) is its own. The school's night is the real command line, ``cme-batch nightly``,
timed from outside (process start to exit). The LA steps time the work inside the process
(imports and configuration loading excluded, stated in the table). Results are printed as a
table and written, with the machine they ran on, to ``benchmarks/results.md``; the raw
numbers go to ``results.json`` in the working folder. Generated files are kept and reused by
the next run with the same parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any

from benchmarks import generate as gen

HERE = Path(__file__).resolve().parent
CLI = Path(sys.executable).with_name("cme-batch")
PHASES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {}


def phase(fn: Callable[[argparse.Namespace], dict[str, Any]]) -> Callable[[argparse.Namespace], dict[str, Any]]:
    PHASES[fn.__name__.replace("_", "-")] = fn
    return fn


# -- running steps in their own processes -----------------------------------------------------------
def run_phase(name: str, args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """One phase of this module in a fresh interpreter; its JSON result plus wall time and peak RSS."""
    cmd = [sys.executable, "-m", "benchmarks.run", "--phase", name, "--dir", str(args.dir), "--pupils",
           str(args.pupils), "--files", str(args.files), "--seed", str(args.seed)]
    for k, v in extra.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    done, wall, rss = isolated(cmd)
    if done.returncode != 0:
        raise SystemExit(f"phase {name} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "process_seconds": round(wall, 2), "peak_rss_mb": round(rss, 1)}


def isolated(cmd: list[str]) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run ``cmd`` through a tiny wrapper process that reports the child's own ``ru_maxrss``."""
    wrapper = ("import json, resource, subprocess, sys, time\n"
               "t = time.perf_counter()\n"
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "w = time.perf_counter() - t\n"
               "sys.stderr.write(p.stderr)\n"
               "print(p.stdout, end='')\n"
               "print(json.dumps({'__wall': w, '__rss': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
               "sys.exit(p.returncode)\n")
    proc = subprocess.run([sys.executable, "-c", wrapper, *cmd], check=False, capture_output=True, text=True)
    lines = proc.stdout.rstrip("\n").splitlines()
    meta = json.loads(lines[-1]) if lines and lines[-1].startswith('{"__wall"') else {"__wall": 0, "__rss": 0}
    body = "\n".join(lines[:-1])
    return subprocess.CompletedProcess(cmd, proc.returncode, body, proc.stderr), meta["__wall"], meta["__rss"] / 1024


def compile_project() -> str:
    """Write the project's bytecode before anything is timed, as installing a package does.

    An editable install compiles each module the first time it is imported and caches the
    result, unless ``PYTHONDONTWRITEBYTECODE`` is set (it is on some machines): then every
    process would compile the project again, about 0.1 s a start that an installed system
    never pays. ``compileall`` writes the cache whatever that setting says."""
    import compileall

    root = HERE.parent
    ok = all(compileall.compile_dir(str(root / pkg), quiet=1) for pkg in ("cme_batch", "adapters"))
    setting = "set" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "not set"
    return f"project compiled beforehand ({'ok' if ok else 'with errors'}); PYTHONDONTWRITEBYTECODE {setting}"


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    mem = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0)
    return {"cpus": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem / 1024 / 1024, 1),
            "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "load_average": [round(x, 2) for x in os.getloadavg()]}


# -- the school: the real command line ---------------------------------------------------------------
def school(args: argparse.Namespace) -> dict[str, Any]:
    """Two nights of a 420-pupil primary, the first on an empty store, then the next one: once
    with the four SIMS CommandReporter exports (marks one row per session, the whole year every
    night), once with one Common Transfer File a night (marks as one string per pupil)."""
    records = gen.school_records(args.seed, args.school_pupils)
    marks = sum(1 for r in records if hasattr(r, "codes") for c in r.codes if c and c != "#")
    out: dict[str, Any] = {"pupils": args.school_pupils, "session_marks": marks, "repeats": args.repeats}
    for fmt in ("sims", "ctf"):
        runs = [_school_nights(args, records, fmt) for _ in range(args.repeats)]
        out[fmt] = {label: _median_run([r[label] for r in runs]) for label in runs[0]}
    out["cli_start_seconds"] = statistics.median(isolated([str(CLI), "--help"])[1] for _ in range(args.repeats))
    return out


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median time, with the fastest and slowest times of all the runs."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    probes = [r["cpu_probe"] for r in runs if "cpu_probe" in r]
    return {**ordered[len(ordered) // 2], "min_seconds": ordered[0]["seconds"], "max_seconds": ordered[-1]["seconds"],
            "probes": [min(probes), max(probes)] if probes else None}


def cpu_probe() -> float:
    """Seconds a fixed piece of pure-Python work takes now: the machine's speed at that moment
    (on a shared virtual machine it changes by half from one minute to the next)."""
    started = time.perf_counter()
    total = 0
    for i in range(10_000_000):
        total += i
    return round(time.perf_counter() - started, 2)


def _school_nights(args: argparse.Namespace, records: list[Any], fmt: str) -> dict[str, Any]:
    from cme_batch.demo.generator import config_toml

    root = args.dir / f"school-{fmt}"
    if root.exists():
        shutil.rmtree(root)
    drop = root / "drop"
    root.mkdir(parents=True)
    adapter = "sims-xml" if fmt == "sims" else "ctf"
    config = root / "cme-batch.toml"
    config.write_text(config_toml("state", "mail") + f'\n[sources.{fmt}]\nadapter = "{adapter}"\n'
                      f'drop_dir = "{drop}"\nmax_age_hours = 0\n', encoding="utf-8")
    cli = [str(CLI), "--config", str(config)]
    done, _, _ = isolated([*cli, "init"])
    if done.returncode:
        raise SystemExit(done.stderr)
    out: dict[str, Any] = {}
    for label, night in (("first_night", gen.AS_OF), ("next_night", gen.NEW_DAY)):
        stamp = f"{night:%Y%m%d}T180000"
        if fmt == "sims":
            files = list(gen.write_school(drop, records, night, stamp).values())
        else:
            files = [gen.write_school_ctf(drop / f"school-{stamp}.xml", records, night)]
        size = sum(p.stat().st_size for p in files)
        probe = cpu_probe()  # the machine's speed just before this night
        done, wall, rss = isolated([*cli, "nightly", "--as-of", night.isoformat()])
        if done.returncode:
            raise SystemExit(f"nightly failed:\n{done.stdout}\n{done.stderr[-2000:]}")
        out[label] = {"as_of": night.isoformat(), "seconds": round(wall, 2), "peak_rss_mb": round(rss, 1),
                      "export_mb": round(size / 1e6, 1), "stages": _stage_times(done.stdout), "cpu_probe": probe}
    return out


def _stage_times(stdout: str) -> dict[str, float]:
    """The per-stage seconds ``nightly`` prints (``ingest     ok   9.56s  ...``)."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2].endswith("s"):
            try:
                out[parts[0]] = float(parts[2][:-1])
            except ValueError:
                continue
    return out


# -- the local authority: phases in their own processes ---------------------------------------------
def _app(args: argparse.Namespace, day: date, config: str = "cme-batch.toml") -> Any:
    from cme_batch.app import App

    work = args.dir / "la"
    clock = datetime.combine(day + timedelta(days=1), dtime(5, 30), tzinfo=UTC)
    return App(str(work / config), clock=lambda: clock)


@phase
def la_import(args: argparse.Namespace) -> dict[str, Any]:
    from cme_batch.demo.generator import config_toml
    from cme_batch.importer import import_files

    work = args.dir / "la"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "cme-batch.toml").write_text(config_toml("state", "mail"), encoding="utf-8")  # the demo's calendar
    files = gen.write_la(args.dir / "ctf", args.pupils, args.files, args.seed)
    app = _app(args, gen.AS_OF)
    app.init_store()
    _ = app.school_id
    started = time.perf_counter()
    for _result in import_files(app, files.year_files, "ctf"):  # as `cme-batch import FILE...` does
        pass
    seconds = time.perf_counter() - started
    marks = school_day_marks(app, gen.AS_OF)
    return {"files": len(files.year_files), "mb": round(sum(p.stat().st_size for p in files.year_files) / 1e6, 1),
            "session_marks": marks, "seconds": round(seconds, 2), "marks_per_second": round(marks / seconds),
            "planted": files.planted, **_peaks()}


def _peaks() -> dict[str, float]:
    """This process's peak memory and its reading processes' (``cme_batch.readahead``) largest, in MB."""
    import resource

    return {"own_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "readers_peak_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}


def school_day_marks(app: Any, as_of: date) -> int:
    """Session marks stored on school days up to ``as_of`` (every session that is not ``-``)."""
    from sqlalchemy import select

    from cme_batch import marks as mk
    from cme_batch.store import tables as t

    days = [mk.position(d, "AM") for d in gen.SCHOOL_DAYS if d <= as_of]
    n = 0
    with app.engine().connect() as conn:
        for (strip,) in conn.execute(select(t.mark_strips.c.marks).where(
                t.mark_strips.c.academic_year == gen.ACADEMIC_YEAR)):
            n += sum((strip[i] != mk.NO_MARK) + (strip[i + 1] != mk.NO_MARK) for i in days)
    return n


@phase
def la_detect(args: argparse.Namespace) -> dict[str, Any]:
    from cme_batch.detect import run_detect

    app = _app(args, gen.AS_OF)
    started = time.perf_counter()
    report = run_detect(app, gen.AS_OF)
    first = time.perf_counter() - started
    started = time.perf_counter()
    again = run_detect(app, gen.AS_OF)
    return {"seconds": round(first, 2), "counts": report.counts(), "rerun_seconds": round(time.perf_counter() - started, 2),
            "rerun_counts": again.counts()}


@phase
def la_day(args: argparse.Namespace) -> dict[str, Any]:
    """The new day's ten files, then ``detect``: through ``cme-batch import`` (``--via import``) or
    through the nightly's ``ingest`` of a CTF drop folder holding them (``--via drop``), which also
    archives each file once stored."""
    from cme_batch.detect import run_detect
    from cme_batch.importer import import_files, ingest_sources

    files = gen.write_la(args.dir / "ctf", args.pupils, args.files, args.seed)
    if args.via == "drop":
        work = args.dir / "la"
        (work / "cme-batch-drop.toml").write_text((work / "cme-batch.toml").read_text(encoding="utf-8") + DROP_SOURCE,
                                                 encoding="utf-8")
        folder = work / "drop"
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        for path in files.day_files:
            shutil.copy(path, folder / path.name)
        os.sync()
        app = _app(args, gen.NEW_DAY, "cme-batch-drop.toml")
    else:
        app = _app(args, gen.NEW_DAY)
    _ = app.school_id
    started = time.perf_counter()
    if args.via == "drop":
        outcomes = ingest_sources(app)
        if [o.status for o in outcomes] != ["ok"]:
            raise SystemExit(f"the drop folder's ingest failed: {outcomes}")
    else:
        for _result in import_files(app, files.day_files, "ctf"):
            pass
    imported = time.perf_counter() - started
    report = run_detect(app, gen.NEW_DAY)
    total = time.perf_counter() - started
    return {"marks": _marks_stored(app), "import_seconds": round(imported, 2),
            "detect_seconds": round(total - imported, 2), "seconds": round(total, 2), "counts": report.counts(),
            **_peaks()}


#: The LA's drop folder of CTFs, for ``la-day --via drop`` (the nightly's ``ingest``).
DROP_SOURCE = '\n[sources.ctf]\nadapter = "ctf"\ndrop_dir = "drop"\nmax_age_hours = 0\n'


def _marks_stored(app: Any) -> int:
    """The marks the imports of this run stored (their ``ingest_runs`` counts), read after the timing."""
    from sqlalchemy import select

    from cme_batch.store import tables as t

    with app.engine().connect() as conn:
        counts = conn.execute(select(t.ingest_runs.c.counts).where(t.ingest_runs.c.started_at == app.now())).scalars()
        return sum((c or {}).get("marks", 0) for c in counts)


def new_days(args: argparse.Namespace) -> dict[str, Any]:
    """The new day ``--repeats`` times, each from the store as ``detect`` left it the day before
    (a copy, put back before each run): the median run, with the fastest and slowest, the CPU
    probe before each, and the largest memory of any run."""
    store = args.dir / "la" / "state" / "cme-batch.sqlite"
    kept = args.dir / "la" / "before-the-new-day"
    if kept.exists():
        shutil.rmtree(kept)
    kept.mkdir()
    sides = [store.with_name(store.name + s) for s in ("", "-wal")]
    for path in sides:
        if path.exists():
            shutil.copy(path, kept / path.name)
    runs: dict[str, list[dict[str, Any]]] = {"import": [], "drop": []}
    for _ in range(args.repeats):
        for via, done in runs.items():  # in turn, so that both see the machine's same minutes
            for path in [*sides, store.with_name(store.name + "-shm")]:
                path.unlink(missing_ok=True)
                if (kept / path.name).exists():
                    shutil.copy(kept / path.name, path)
            os.sync()  # on the server the night before's store is long on disk: no write-back during the run
            probe = cpu_probe()
            done.append({**run_phase("la-day", args, via=via), "cpu_probe": probe})
    shutil.rmtree(kept)
    out = {}
    for via, done in runs.items():
        out[via] = _median_run(done)
        for key in ("own_peak_mb", "readers_peak_mb", "peak_rss_mb"):
            out[via][key] = max(r[key] for r in done)
    return out


@phase
def la_baseline(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks import baseline
    from cme_batch import detect

    app = _app(args, gen.NEW_DAY)
    calendar = detect.evaluate(app, gen.NEW_DAY).calendar
    year = [d for d in calendar.days if gen.FIRST <= d <= gen.NEW_DAY]
    if year != list(gen.SCHOOL_DAYS):
        raise SystemExit("the engine's calendar differs from the generator's school days")
    return baseline.run(app, args.dir / "baseline.sqlite", gen.NEW_DAY)


# -- the report ----------------------------------------------------------------------------------------
def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def table(results: dict[str, Any]) -> str:
    rows = ["| benchmark | target | measured | |", "| --- | --- | --- | --- |"]
    s = results.get("school")
    if s:
        for fmt, what in (("sims", "SIMS exports"), ("ctf", "one CTF")):
            for key, label in (("first_night", "first night, empty store"), ("next_night", "next night")):
                n = s[fmt][key]
                probes = f"; CPU probe before each: {n['probes'][0]}-{n['probes'][1]} s" if n.get("probes") else ""
                spread = (f" (of {s['repeats']} runs: {n['min_seconds']}-{n['max_seconds']} s{probes})"
                          if s.get("repeats", 1) > 1 else "")
                rows.append(f"| school: `nightly` end to end, {label} ({s['pupils']} pupils, {s['session_marks']:,} "
                            f"marks; {what}, {n['export_mb']} MB) | < 3 s wall, < 200 MB | {n['seconds']} s{spread}, "
                            f"{n['peak_rss_mb']} MB ({_stages(n['stages'])}) | "
                            f"{verdict(n['seconds'] < 3)}, {verdict(n['peak_rss_mb'] < 200)} |")
        rows.append(f"| school: `cme-batch --help` (interpreter start and imports) | | "
                    f"{round(s['cli_start_seconds'], 2)} s | |")
    la = results.get("la")
    if la:
        i, d, day = la["import"], la["detect"], la["day"]
        rows.append(f"| LA import: {la['pupils']:,} pupils, {i['files']} CTF files ({i['mb']} MB), "
                    f"{i['session_marks']:,} session marks | >= 2,000,000 marks/s | {i['marks_per_second']:,} marks/s "
                    f"({i['seconds']} s) | {verdict(i['marks_per_second'] >= 2_000_000)} |")
        rows.append(f"| LA `detect` as of {gen.AS_OF} ({_counts(d['counts'])}) | < 3 s | {d['seconds']} s "
                    f"(again, nothing to do: {d['rerun_seconds']} s) | {verdict(d['seconds'] < 3)} |")
        spread = (f"; of {la['repeats']} runs: {day['min_seconds']}-{day['max_seconds']} s, CPU probe before each: "
                  f"{day['probes'][0]}-{day['probes'][1]} s" if day.get("probes") and la.get("repeats", 1) > 1 else "")
        rows.append(f"| LA one new school day: `import` of {day['marks']:,} marks + `detect` | < 2 s | {day['seconds']} s "
                    f"(import {day['import_seconds']} s, detect {day['detect_seconds']} s{spread}) | "
                    f"{verdict(day['seconds'] < 2)} |")
        steps = {"import": i, "detect": d, "new day": day}
        drop = la.get("day_drop")
        if drop:
            spread = (f"; of {la['repeats']} runs: {drop['min_seconds']}-{drop['max_seconds']} s, CPU probe before "
                      f"each: {drop['probes'][0]}-{drop['probes'][1]} s"
                      if drop.get("probes") and la.get("repeats", 1) > 1 else "")
            rows.append(f"| LA one new school day through the nightly: `ingest` of a drop folder of the same files "
                        f"({drop['marks']:,} marks, each file archived once stored) + `detect` | < 2 s | "
                        f"{drop['seconds']} s (ingest {drop['import_seconds']} s, detect {drop['detect_seconds']} s"
                        f"{spread}) | {verdict(drop['seconds'] < 2)} |")
            steps["new day, drop folder"] = drop
        both = {k: round(x.get("own_peak_mb", x["peak_rss_mb"]) + x.get("readers_peak_mb", 0), 1)
                for k, x in steps.items()}
        peak = max(both.values())
        shown = ", ".join(f"{k} {both[k]}" + (f" = {x['own_peak_mb']} + reader {x['readers_peak_mb']}"
                                              if x.get("readers_peak_mb") else "") for k, x in steps.items())
        rows.append(f"| LA peak memory (largest of the three steps; a step's process and its file-reading process "
                    f"added together) | < 500 MB | {peak} MB ({shown}) | {verdict(peak < 500)} |")
    b = results.get("baseline")
    if b:
        engine = results.get("la", {}).get("detect", {}).get("seconds")
        ratio = b["query_seconds"] / engine if engine else None
        rows.append(f"| baseline: gaps-and-islands SQL over {b['rows']:,} rows (one per mark) | | "
                    f"{b['query_seconds']} s (table built in {b['build_seconds']} s) | |")
        rows.append(f"| engine vs baseline: same unexplained streak (days, start) on every pupil | every pupil | "
                    f"{b['pupils_compared'] - b['differences']:,} of {b['pupils_compared']:,} agree "
                    f"({b['pupils_with_streak']} with a streak) | {verdict(b['differences'] == 0)} |")
        if ratio:
            rows.append(f"| engine vs baseline: speed (SQL query / whole `detect` run; / evaluation alone: "
                        f"{b['query_seconds'] / b['engine_evaluate_seconds']:.0f}x) | >= 30x | {ratio:.0f}x | "
                        f"{verdict(ratio >= 30)} |")
    return "\n".join(rows)


def _stages(stages: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f} s" for k, v in stages.items() if v >= 0.05)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v)


def write_report(results: dict[str, Any], path: Path) -> None:
    m = results["machine"]
    shown = "".join(" " + a for a in _shown(results["argv"]))
    text = (f"# Benchmark results\n\nMeasured {results['when']} by `python -m benchmarks.run{shown}` on "
            f"{m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB RAM, "
            f"Python {m['python']}, SQLite {m['sqlite']}; load average {m['load_average']} at the start and "
            f"{results['load_after']} at the end. A fixed piece of Python work (10 million additions) took "
            f"{results.get('cpu_probe', ['?'])[0]} s at the start and {results.get('cpu_probe', ['?', '?'])[-1]} s at "
            "the end: this virtual machine's speed varies from minute to minute, so compare times within one run. "
            f"Bytecode: {results.get('bytecode', 'not recorded')}.\n\n"
            f"{table(results)}\n")
    path.write_text(text, encoding="utf-8")


def _shown(argv: list[str]) -> list[str]:
    """The options that change what is measured (not where files go)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--dir", "--out"):
            skip = True
        elif not a.startswith(("--dir=", "--out=")):
            out.append(a)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pupils", type=int, default=100_000, help="LA pupils (default 100,000)")
    ap.add_argument("--files", type=int, default=10, help="CTF files they are split into (default 10)")
    ap.add_argument("--school-pupils", type=int, default=420)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5,
                    help="runs of each school night and of the LA's new day; the median is reported")
    ap.add_argument("--quick", action="store_true", help="10,000 LA pupils in 2 files")
    ap.add_argument("--only", default="school,la,baseline", help="comma-separated: school, la, baseline")
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "cme-bench")
    ap.add_argument("--out", type=Path, default=HERE / "results.md")
    ap.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    ap.add_argument("--via", choices=("import", "drop"), default="import", help=argparse.SUPPRESS)
    ap.add_argument("--report", type=Path, help="only write the report again from a results.json")
    args = ap.parse_args()
    if args.report:
        saved = json.loads(args.report.read_text(encoding="utf-8"))
        write_report(saved, args.out)
        print(table(saved))
        return
    if args.phase:
        print(json.dumps(PHASES[args.phase](args), default=str))
        return
    if args.quick:
        args.pupils, args.files = 10_000, 2
    args.dir.mkdir(parents=True, exist_ok=True)
    compiled = compile_project()
    wanted = set(args.only.split(","))
    results: dict[str, Any] = {"when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "argv": sys.argv[1:],
                               "machine": machine(), "cpu_probe": [cpu_probe()], "bytecode": compiled}
    if "school" in wanted:
        print("school: two nights of a 420-pupil primary ...", flush=True)
        results["school"] = school(args)
    if "la" in wanted or "baseline" in wanted:
        print(f"LA: {args.pupils:,} pupils in {args.files} CTF files under {args.dir} ...", flush=True)
        results["la"] = {"pupils": args.pupils, "repeats": args.repeats, "import": run_phase("la-import", args)}
        results["la"]["detect"] = run_phase("la-detect", args)
        days = new_days(args)
        results["la"]["day"], results["la"]["day_drop"] = days["import"], days["drop"]
    if "baseline" in wanted:
        print("baseline: building the one-row-per-mark table and running the SQL ...", flush=True)
        results["baseline"] = run_phase("la-baseline", args)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["cpu_probe"].append(cpu_probe())
    (args.dir / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    write_report(results, args.out)
    print(table(results))
    print(f"\nwritten to {args.out} (raw numbers: {args.dir / 'results.json'})")


if __name__ == "__main__":
    main()
