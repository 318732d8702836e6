"""The complete log output of a night on the demo school names no pupil, UPN or date of birth."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, select

from cme_batch.store import tables as t


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("cme-batch")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=600, env={**os.environ})


def test_nightly_on_the_demo_school_logs_no_identity(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    demo = _run("demo", "--dir", str(out), "--pupils", "120", "--no-replay")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    cfg = out / "cme-batch.toml"
    text = cfg.read_text(encoding="utf-8")
    cfg.write_text(re.sub(r'level = "\w+"', 'level = "debug"', text).replace('format = "console"', 'format = "json"'))
    # the next school morning: a new marks export arrives and the whole night runs again
    (out / "drop" / "sims").mkdir(parents=True, exist_ok=True)
    night = _run("--config", str(cfg), "nightly", "--as-of", "2025-12-19")
    assert night.returncode in (0, 1), night.stdout + night.stderr
    lines = [json.loads(line) for line in night.stderr.splitlines() if line.startswith("{")]
    assert len(lines) >= 6 and {ln.get("stage") for ln in lines} >= {"detect", "summary", "send"}
    engine = create_engine(f"sqlite:///{out / 'state' / 'cme-batch.sqlite'}")
    identities: set[str] = set()
    with engine.connect() as conn:
        for row in conn.execute(select(t.pupils.c.legal_surname, t.pupils.c.legal_forename, t.pupils.c.upn,
                                       t.pupils.c.dob)):
            identities |= {x for x in row[:3] if x}
            identities |= {row.dob.isoformat(), row.dob.strftime("%d/%m/%Y")}
    engine.dispose()
    assert len(identities) > 300
    everything = demo.stdout + demo.stderr + night.stdout + night.stderr
    leaks = sorted(i for i in identities if re.search(rf"(?<![\w-]){re.escape(i)}(?![\w-])", everything))
    assert leaks == []


def test_pupils_imported_in_this_process_are_guarded_in_its_log(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from cme_batch import log
    from cme_batch.app import App
    from cme_batch.importer import import_file
    from tests.conftest import write_config

    app = App(str(write_config(tmp_path, f"sqlite:///{tmp_path / 's.sqlite'}")))
    app.init_store()  # an empty store: nothing to guard yet
    fixture = Path(__file__).resolve().parents[1] / "adapters" / "fixtures" / "ctf-25.xml"
    import_file(app, fixture, None)
    with create_engine(f"sqlite:///{tmp_path / 's.sqlite'}").connect() as conn:
        surname = conn.execute(select(t.pupils.c.legal_surname)).scalars().first()
    log.configure("info", "json")
    log.get("test").info("a careless line", who=surname)
    err = capsys.readouterr().err
    assert surname and surname not in err and '"who": "[withheld]"' in err


def test_a_name_an_import_changes_is_guarded_and_a_register_only_file_adds_none(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from cme_batch import log
    from cme_batch.app import App
    from cme_batch.importer import import_file
    from tests.conftest import write_config

    app = App(str(write_config(tmp_path, f"sqlite:///{tmp_path / 's.sqlite'}")))
    app.init_store()
    fixture = Path(__file__).resolve().parents[1] / "adapters" / "fixtures" / "ctf-25.xml"
    first = import_file(app, fixture, None)
    assert first.pupil_ids, "the pupils the file added"
    renamed = tmp_path / "renamed.xml"
    renamed.write_text(fixture.read_text(encoding="utf-8").replace("<Surname>Example</Surname>",
                                                                    "<Surname>Quenbyworth</Surname>"), encoding="utf-8")
    second = import_file(app, renamed, None)
    assert len(second.pupil_ids) == 1, "only the pupil whose surname changed"
    log.configure("info", "json")
    log.get("test").info("a careless line", who="Quenbyworth")
    assert '"who": "[withheld]"' in capsys.readouterr().err
    register = tmp_path / "register.xml"  # UPN and attendance only: no pupil's details change
    register.write_text(re.sub(r"<(Surname|Forename|DOB|Sex|BasicDetails|Address|Contacts)>.*?</\1>", "",
                               renamed.read_text(encoding="utf-8"), flags=re.S).replace(
        "/\\/I####NNON", "/\\/I####NNNN"), encoding="utf-8")
    third = import_file(app, register, None)
    assert third.status == "ok" and third.pupil_ids == frozenset()
