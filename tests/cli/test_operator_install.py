"""The school server install as README.md describes it: what the IT technician would notice.

The example configuration copied to /etc/cme-batch keeps its database where the service may
write; every secret the example names is one the service unit hands over; a configuration
broken by an edit after a good night still gets the office told that the night failed.
"""

from __future__ import annotations

import email
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "cme-batch.example.toml"
UNITS = ROOT / "systemd"


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the installed console script, with the environment systemd would give it."""
    exe = Path(sys.executable).with_name("cme-batch")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


def test_the_example_copied_to_etc_keeps_its_database_in_the_state_directory(tmp_path: Path) -> None:
    """Install step 3 copies the example to /etc/cme-batch, step 6 runs init with STATE_DIRECTORY:
    the database must land there (the service may write nowhere in /etc), not beside the file."""
    etc, state = tmp_path / "etc" / "cme-batch", tmp_path / "var" / "lib" / "cme-batch"
    etc.mkdir(parents=True)
    state.mkdir(parents=True, mode=0o700)
    (etc / "drop" / "sims").mkdir(parents=True)  # the example's drop folder, for check-config
    cfg = etc / "cme-batch.toml"
    cfg.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    env = {"STATE_DIRECTORY": str(state)}
    checked = run("--config", str(cfg), "check-config", env=env)
    assert checked.returncode == 0, checked.stderr
    assert f"sqlite:///{state / 'cme-batch.sqlite'}" in checked.stdout
    done = run("--config", str(cfg), "init", env=env)
    assert done.returncode == 0, done.stderr
    assert (state / "cme-batch.sqlite").exists()
    assert sorted(p.name for p in etc.iterdir()) == ["cme-batch.toml", "drop"]
    mail = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))["mail"]
    assert Path(mail["maildrop_dir"]).is_absolute(), "a relative maildrop_dir would be in read-only /etc"


def _credential_ids(unit: str) -> list[str]:
    return re.findall(r"^LoadCredential=([^:\s]+):/etc/cme-batch/credentials$", (UNITS / unit).read_text(), re.M)


def _credentials_named(text: str) -> list[str]:
    return re.findall(r"credential\s*=\s*\"([^\"]+)\"", text)


def test_every_credential_the_example_names_is_one_the_units_hand_over(tmp_path: Path) -> None:
    """systemd loads a folder given to LoadCredential=ID:DIR as credentials named ID_<file name>
    (systemd.exec(5)); a name without that prefix is never found at 05:30."""
    ids = {_credential_ids("cme-batch.service")[0], _credential_ids("cme-batch-failure@.service")[0]}
    assert len(ids) == 1
    (prefix,) = ids
    named = _credentials_named(EXAMPLE.read_text(encoding="utf-8"))
    assert "cme-batch_reply-key-k1" in named
    assert [n for n in named if not n.startswith(prefix + "_") and n != "name"] == []  # "name": the syntax line
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install = readme.split("## Installing on a school server", 1)[1].split("\n## ", 1)[0]
    assert "/etc/cme-batch/credentials/reply-key-k1" in install  # the file the example's token key names

    # the credentials folder as systemd presents it to the service, and the example's token key read from it
    from cme_batch import config

    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / f"{prefix}_reply-key-k1").write_text("k" * 43 + "\n")
    os.environ["CREDENTIALS_DIRECTORY"] = str(creds)
    try:
        key: Any = config.load(EXAMPLE).replies.token_keys[0]
        assert key.secret.reveal() == "k" * 43
    finally:
        del os.environ["CREDENTIALS_DIRECTORY"]


def test_a_configuration_broken_after_a_good_night_still_gets_the_office_told(tmp_path: Path) -> None:
    """The timer's run finds the file broken by a daytime edit: nightly exits 2, systemd starts
    cme-batch-failure@, and its notify-failure must still email the office (no pupil data)."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    cfg = write_config(tmp_path, f"sqlite:///{state / 'cme-batch.sqlite'}")
    env = {"STATE_DIRECTORY": str(state), "CME_BATCH_CONFIG": str(cfg)}  # as cme-batch.service sets them
    assert run("--config", str(cfg), "init", env=env).returncode == 0
    night = run("--config", str(cfg), "nightly", "--as-of", "2025-12-01", env=env)
    assert night.returncode == 0, night.stdout + night.stderr

    cfg.write_text(cfg.read_text().replace('closures = ["2025-09-01"', 'closures = ["2025-09-31"'))
    broken = run("--config", str(cfg), "nightly", env=env)
    assert broken.returncode == 2 and "calendar.closures[0]" in broken.stderr

    told = run("--config", str(cfg), "notify-failure", "--unit", "cme-batch.service", env=env)
    assert told.returncode == 0, told.stderr
    assert "calendar.closures[0]" in told.stderr  # the journal still says what is wrong
    sent = [email.message_from_bytes(p.read_bytes()) for p in (tmp_path / "maildrop").glob("*.eml")]
    failed = [m for m in sent if "FAILED" in m["Subject"]]
    assert len(failed) == 1, [m["Subject"] for m in sent]
    msg = failed[0]
    assert msg["To"] == "office@school.example"
    assert "cme-batch.service" in msg.get_payload(decode=True).decode()
    assert (state / "last-valid-config.toml").stat().st_mode & 0o077 == 0


def test_a_configuration_never_valid_is_still_refused_with_exit_2(tmp_path: Path) -> None:
    """No copy of a valid configuration: notify-failure cannot know where to send, says why, exits 2."""
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    cfg = write_config(tmp_path, f"sqlite:///{state / 'cme-batch.sqlite'}")
    cfg.write_text(cfg.read_text().replace('closures = ["2025-09-01"', 'closures = ["2025-09-31"'))
    told = run("--config", str(cfg), "notify-failure", env={"STATE_DIRECTORY": str(state)})
    assert told.returncode == 2 and "calendar.closures[0]" in told.stderr
    assert not (tmp_path / "maildrop").exists()
