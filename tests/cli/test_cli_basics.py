"""The command line: help everywhere, check-config, init, and the exit codes scripts rely on."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cme_batch.cli import cli
from tests.conftest import write_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "cme-batch.example.toml"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed console script as a user would."""
    exe = Path(sys.executable).with_name("cme-batch")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def test_help_for_every_command() -> None:
    runner = CliRunner()
    top = runner.invoke(cli, ["--help"])
    assert top.exit_code == 0 and "Exit codes" in top.output
    for name, command in cli.all_commands.items():  # type: ignore[attr-defined]
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, name
        assert (command.help or "").strip(), f"{name} has no help text"
        assert "Usage: cli " in result.output or "Usage:" in result.output


def test_start_up_imports_only_what_the_command_runs() -> None:
    """--help imports no database, PDF, crypto, HTTP, calendar or logging library, and running
    one command imports no other command's module (start-up time, issue 9)."""
    probe = ("import sys\n"
             "from click.testing import CliRunner\n"
             "from cme_batch.cli import cli\n"
             "assert CliRunner().invoke(cli, ['nightly', '--help']).exit_code == 0\n"
             "print(sorted(m for m in sys.modules if m.startswith('cme_batch.cli_')))\n"
             "assert CliRunner().invoke(cli, ['--help']).exit_code == 0\n"
             "heavy = ('sqlalchemy', 'alembic', 'fpdf', 'cryptography', 'requests', 'msal', 'holidays', 'structlog',\n"
             "         'jsonschema', 'tenacity', 'filelock')\n"
             "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["['cme_batch.cli_nightly']", "[]"]


def test_check_config_passes_on_the_example(tmp_path: Path) -> None:
    # the example's SIMS source reads a drop folder relative to the file: give it one
    cfg = tmp_path / "example.toml"
    cfg.write_text(EXAMPLE.read_text())
    (tmp_path / "drop" / "sims").mkdir(parents=True)
    result = run("--config", str(cfg), "check-config")
    assert result.returncode == 0, result.stderr
    assert "configuration valid" in result.stdout


def test_check_config_finds_a_weak_or_exposed_referral_passphrase(tmp_path: Path) -> None:
    """Found at set-up, not at 05:30 when the first referral is held."""
    secret = tmp_path / "la-passphrase"
    secret.write_text("aaaaaaaaaaaaaaaa\n")
    secret.chmod(0o600)
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 's.sqlite'}",
                       f'[referral]\npassphrase = {{ file = "{secret}" }}\n')
    weak = run("--config", str(cfg), "check-config")
    assert weak.returncode == 2 and "referral" in weak.stderr and "aaaa" not in weak.stderr, weak.stderr
    secret.write_text("correct-horse-battery-staple-42\n")
    secret.chmod(0o644)
    exposed = run("--config", str(cfg), "check-config")
    assert exposed.returncode == 2 and "chmod 600" in exposed.stderr, exposed.stderr
    secret.chmod(0o600)
    assert run("--config", str(cfg), "check-config").returncode == 0


def test_broken_config_lists_every_error_and_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "broken.toml"
    cfg.write_text('[school]\nla_number = "91"\n[staff.dsl]\nemail = "nobody"\n')
    result = run("--config", str(cfg), "check-config")
    assert result.returncode == 2
    for expected in ("school.name: is missing", "school.la_number: is '91'", "staff.office: is missing",
                     "staff.dsl.name: is missing", "staff.dsl.email: is 'nobody'"):
        assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_no_config_at_all_exits_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CME_BATCH_CONFIG"}
    result = subprocess.run([str(Path(sys.executable).with_name("cme-batch")), "status"], capture_output=True,
                            text=True, env=env, cwd=tmp_path)
    assert result.returncode == 2 and "CME_BATCH_CONFIG" in result.stderr


def test_init_twice_is_harmless_and_the_file_is_private(tmp_path: Path) -> None:
    db = tmp_path / "state" / "cme.sqlite"
    cfg = write_config(tmp_path, f"sqlite:///{db}")
    first = run("--config", str(cfg), "init")
    assert first.returncode == 0, first.stderr
    assert "applied" in first.stdout
    second = run("--config", str(cfg), "init")
    assert second.returncode == 0 and "already up to date" in second.stdout
    assert stat.S_IMODE(db.stat().st_mode) == 0o600


def test_commands_before_init_say_what_to_do(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 'none.sqlite'}")
    result = run("--config", str(cfg), "status")
    assert result.returncode == 2
    assert "run 'cme-batch init' first" in result.stderr
    assert not (tmp_path / "none.sqlite").exists()


def test_bad_import_file_exits_2_and_changes_nothing(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 's.sqlite'}")
    assert run("--config", str(cfg), "init").returncode == 0
    bad = tmp_path / "weird.xml"
    bad.write_text("<Unknown/>")
    result = run("--config", str(cfg), "import", str(bad))
    assert result.returncode == 2
    assert "unknown file format" in result.stderr


@pytest.mark.parametrize("args", [["import", "/nonexistent/file.xml"], ["ingest", "--source", "nope"]])
def test_usage_and_input_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 's.sqlite'}")
    assert run("--config", str(cfg), "init").returncode == 0
    result = run("--config", str(cfg), *args)
    assert result.returncode == 2, result.stderr


def test_a_failing_source_exits_1_and_is_recorded(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, f"sqlite:///{tmp_path / 's.sqlite'}",
                       '\n[sources.mis]\nadapter = "no-such-adapter"\n')
    assert run("--config", str(cfg), "init").returncode == 0
    result = run("--config", str(cfg), "ingest")
    assert result.returncode == 1
    assert "mis: failed" in result.stdout
    status = run("--config", str(cfg), "status")
    assert "mis" in status.stdout and "STALE" in status.stdout and "no source adapter" in status.stdout
