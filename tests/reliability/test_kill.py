"""Kill tests: ``import``, ``detect`` and ``nightly`` killed with SIGKILL at seeded random moments.

Each command is first run cleanly on a copy of the same starting store, and timed. Then, a few
times, a fresh copy is given to the command, which is killed (SIGKILL: no clean-up of any
kind) after a random delay between the interpreter's start-up time and the clean run's
duration, so that the kill lands while the command is working; the command is then run again
to completion. The store must end identical to the clean run's (every data row, timestamps
aside; the outbox compared by what each message is and whether it was sent), with no message
twice in the outbox or in the mail drop, and an ``import`` or ``detect`` killed half-way must
leave either nothing or everything of its single transaction.

``CME_KILL_SEED`` changes the kill moments, ``CME_KILL_REPEATS`` how many kills per command;
``CME_KILL_LOG=FILE`` appends one JSON line per kill (what the kill left, what the rerun did),
the material of the table in ``benchmarks/failures.md``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.reliability import (
    AS_OF,
    CLI,
    SchoolFiles,
    copy_store,
    integrity,
    make_store,
    school_files,
    sims_source,
    state,
)

REPEATS = int(os.environ.get("CME_KILL_REPEATS", "2"))
SEED = os.environ.get("CME_KILL_SEED", "2025")


def run(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, "--config", str(config), *args], capture_output=True, text=True, timeout=timeout,
                          check=False)


def killed(config: Path, delay: float, *args: str) -> bool:
    """Start the command, SIGKILL it after ``delay`` seconds; whether it was still running then."""
    proc = subprocess.Popen([CLI, "--config", str(config), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
        return False  # finished before the kill
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


class Scene:
    """A starting point (a store, maybe a drop folder) copied afresh for every run of a command."""

    def __init__(self, root: Path, store: Path, drop: Path | None = None) -> None:
        self.root, self.store, self.drop = root, store, drop
        self.n = 0

    def fresh(self) -> tuple[Path, str]:
        """A new folder holding a copy of the starting store (and drop folder); its config and URL."""
        self.n += 1
        folder = self.root / f"run{self.n}"
        config = make_store(folder, sims_source(folder / "drop") if self.drop else "")
        copy_store(self.store, folder / "store.sqlite")
        if self.drop:
            shutil.copytree(self.drop, folder / "drop")
        return config, f"sqlite:///{folder / 'store.sqlite'}"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> SchoolFiles:
    return school_files(tmp_path_factory.mktemp("school"))


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, files: SchoolFiles) -> dict[str, Any]:
    """An empty migrated store, and one holding the school (imported from its CTF); start-up time."""
    root = tmp_path_factory.mktemp("stores")
    empty = make_store(root / "empty")
    done = run(empty, "init")
    assert done.returncode == 0, done.stderr
    loaded = root / "loaded"
    config = make_store(loaded)
    copy_store(root / "empty" / "store.sqlite", loaded / "store.sqlite")
    done = run(config, "import", str(files.ctf))
    assert done.returncode == 0, done.stderr
    started = time.monotonic()
    run(empty, "--help")
    return {"empty": root / "empty" / "store.sqlite", "loaded": loaded / "store.sqlite",
            "startup": time.monotonic() - started}


def outbox_problems(url: str, maildrop: Path) -> list[str]:
    """Messages doubled in the outbox or the mail drop, or sent but not dropped."""
    rows = state(url)["outbox"]
    problems = [f"idempotency key twice: {k}" for k, n in Counter(r[0] for r in rows).items() if n > 1]
    problems += [f"message id twice: {k}" for k, n in Counter(r[1] for r in rows).items() if n > 1]
    dropped = sorted(p.name for p in maildrop.glob("*.eml")) if maildrop.exists() else []
    sent = [r for r in rows if r[6] == "sent"]
    if len(dropped) != len(sent):
        problems.append(f"{len(sent)} message(s) sent but {len(dropped)} file(s) in the mail drop")
    return problems


def kill_and_rerun(scene: Scene, args: tuple[str, ...], startup: float, single_transaction: bool,
                   tag: str) -> list[str]:
    """The clean run, then REPEATS kills each followed by a rerun; every difference found."""
    config, url = scene.fresh()
    before = state(url)
    started = time.monotonic()
    clean = run(config, *args)
    duration = time.monotonic() - started
    assert clean.returncode == 0, clean.stdout + clean.stderr
    expected = state(url)
    assert outbox_problems(url, config.parent / "maildrop") == []
    rng = random.Random(f"{SEED}/{tag}")
    problems: list[str] = []
    hits = 0
    window = duration
    for _ in range(REPEATS * 4):  # until REPEATS runs were killed while working (a quick machine finishes some)
        if hits >= REPEATS:
            break
        config, url = scene.fresh()
        lo = min(startup * 0.9, window * 0.5)
        delay = lo + rng.random() * (window - lo)
        hit = killed(config, delay, *args)
        hits += hit
        if not hit:  # it finished before the kill: aim earlier next time
            window = max(lo, delay * 0.8)
        where = f"{tag} killed after {delay:.2f} s (clean run {duration:.2f} s, seed {SEED})"
        check = integrity(config.parent / "store.sqlite")
        if check != "ok":
            problems.append(f"{where}: integrity check says {check}")
        mid = state(url)
        left = "nothing" if mid == before else "everything" if mid == expected else "part"
        if single_transaction and left == "part":
            problems.append(f"{where}: the store holds part of the command's work")
        again = run(config, *args)
        if again.returncode != 0:
            problems.append(f"{where}: the rerun exited {again.returncode}: {again.stderr[-500:]}")
        elif state(url) != expected:
            problems.append(f"{where}: the store differs from the clean run's")
        problems += [f"{where}: {p}" for p in outbox_problems(url, config.parent / "maildrop")]
        if os.environ.get("CME_KILL_LOG"):
            with open(os.environ["CME_KILL_LOG"], "a", encoding="utf-8") as log:
                log.write(json.dumps({"command": tag, "delay": round(delay, 2), "clean": round(duration, 2),
                                      "killed": hit, "left": left, "rerun": again.returncode,
                                      "same_as_clean": state(url) == expected, "outbox_ok": not outbox_problems(
                                          url, config.parent / "maildrop")}) + "\n")
    assert hits, f"{tag}: every run finished before its kill; the kills tested nothing"
    return problems


def test_import_killed_anywhere_imports_all_or_nothing(tmp_path: Path, files: SchoolFiles,
                                                       stores: dict[str, Any]) -> None:
    scene = Scene(tmp_path, stores["empty"])
    assert kill_and_rerun(scene, ("import", str(files.ctf)), stores["startup"], True, "import") == []


def test_detect_killed_anywhere_leaves_the_cases_of_a_clean_run(tmp_path: Path, stores: dict[str, Any]) -> None:
    scene = Scene(tmp_path, stores["loaded"])
    assert kill_and_rerun(scene, ("detect", "--as-of", AS_OF), stores["startup"], True, "detect") == []


def test_nightly_killed_anywhere_then_rerun_ends_as_a_clean_night(tmp_path: Path, files: SchoolFiles,
                                                                  stores: dict[str, Any]) -> None:
    """Ingest (four files, four transactions), detect, summary and send: killed in any of them."""
    scene = Scene(tmp_path, stores["empty"], files.sims)
    assert kill_and_rerun(scene, ("nightly", "--as-of", AS_OF), stores["startup"], False, "nightly") == []
