"""``cme-batch referral``: the encrypted bundle as a file, and the private preview."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import stat
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select, update

from cme_batch.cli import cli
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.referral_support import Family, make_pki, seed_case, smime_config
from tests.servers import need_tool


def _ref(engine: Engine, case_id: int) -> str:
    with engine.connect() as conn:
        return str(conn.execute(select(t.cases.c.ref).where(t.cases.c.id == case_id)).scalar_one())


@pytest.fixture
def setup(engine: Engine, store_url: str, tmp_path: Path) -> tuple[Path, Path]:
    # The command runs on the real clock, so the certificates are made valid now.
    pki = make_pki(tmp_path / "pki", datetime.now(UTC))
    return write_config(tmp_path, store_url, smime_config(pki)), pki.la.cert_path.parent


def test_writes_the_encrypted_bundle_that_the_la_can_open(engine: Engine, setup: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    config, pki_dir = setup
    ref = _ref(engine, seed_case(engine))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["--config", str(config), "referral", ref, "--out", str(out)])
    assert result.exit_code == 0, result.output
    path = out / f"{ref}-referral.eml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "application/pkcs7-mime"
    assert b"Amelia" not in raw and "Amelia" not in result.output
    openssl = need_tool("openssl", "openssl")
    plain = subprocess.run([openssl, "cms", "-decrypt", "-in", str(path), "-recip", str(pki_dir / "la.pem"),
                            "-inkey", str(pki_dir / "la.key")], check=False, capture_output=True)
    assert plain.returncode == 0 and b"multipart/signed" in plain.stdout
    again = CliRunner().invoke(cli, ["--config", str(config), "referral", ref, "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_preview_writes_pdf_and_json_into_a_new_private_directory_with_a_warning(
        engine: Engine, setup: tuple[Path, Path], tmp_path: Path) -> None:
    config, _ = setup
    ref = _ref(engine, seed_case(engine, Family(confirmed=False)))
    out = tmp_path / "previews"
    result = CliRunner().invoke(cli, ["--config", str(config), "referral", ref, "--out", str(out), "--preview"])
    assert result.exit_code == 0, result.output
    (target,) = list(out.iterdir())
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    files = sorted(p.name for p in target.iterdir())
    assert files == [f"{ref}-referral-note.txt", f"{ref}-referral.json", f"{ref}-referral.pdf"]
    doc = json.loads((target / f"{ref}-referral.json").read_text())
    assert doc["child"]["legal_forename"] == "Amelia" and doc["confirmation"]["confirmed"] is False
    assert (target / f"{ref}-referral.pdf").read_bytes().startswith(b"%PDF")
    assert "warning:" in result.stderr and "unencrypted" in result.stderr
    assert "Amelia" not in result.output


def test_an_unconfirmed_referral_is_not_written_encrypted(engine: Engine, setup: tuple[Path, Path],
                                                          tmp_path: Path) -> None:
    config, _ = setup
    ref = _ref(engine, seed_case(engine, Family(confirmed=False)))
    result = CliRunner().invoke(cli, ["--config", str(config), "referral", ref, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "never sent without" in result.output
    assert not (tmp_path / "o").exists()


def test_an_unknown_case_and_a_missing_encryption_setup_are_input_errors(engine: Engine, store_url: str,
                                                                         tmp_path: Path) -> None:
    config = write_config(tmp_path, store_url)
    result = CliRunner().invoke(cli, ["--config", str(config), "referral", "CME-1999-0001", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "no case CME-1999-0001" in result.output
    ref = _ref(engine, seed_case(engine))
    held = CliRunner().invoke(cli, ["--config", str(config), "referral", ref, "--out", str(tmp_path / "o")])
    assert held.exit_code == 2 and "no encryption is configured" in held.output


@pytest.mark.parametrize("change, says", [
    ({"hold_reason": "mother phoned; checking with social care"}, "on HOLD"),
    ({"status": "closed", "closed_on": datetime(2025, 12, 1).date(), "closed_reason": "returned"},
     "before it was referred"),
])
def test_a_held_or_closed_unreferred_case_is_not_written_for_the_la(
        engine: Engine, setup: tuple[Path, Path], tmp_path: Path, change: dict[str, object], says: str) -> None:
    config, _ = setup
    case_id = seed_case(engine)  # confirmed by the DSL, then held, or closed before the nightly run sent it
    with engine.begin() as conn:
        conn.execute(update(t.cases).where(t.cases.c.id == case_id).values(**change))
    ref = _ref(engine, case_id)
    result = CliRunner().invoke(cli, ["--config", str(config), "referral", ref, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and says in result.output
    assert not (tmp_path / "o").exists()


def _exports(engine: Engine, case_id: int) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [{"actor": r.actor, **(r.detail or {})} for r in conn.execute(
            select(t.case_events.c.actor, t.case_events.c.detail).where(
                t.case_events.c.case_id == case_id, t.case_events.c.kind == "referral_exported"))]


def test_an_export_before_the_nightly_run_is_in_the_history_and_says_the_night_still_sends(
        engine: Engine, setup: tuple[Path, Path], tmp_path: Path) -> None:
    config, _ = setup
    case_id = seed_case(engine)
    ref = _ref(engine, case_id)
    result = CliRunner().invoke(cli, ["--config", str(config), "referral", ref, "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    raw = (tmp_path / "o" / f"{ref}-referral.eml").read_bytes()
    (export,) = _exports(engine, case_id)
    assert export["sha256"] == hashlib.sha256(raw).hexdigest() and export["file"] == f"{ref}-referral.eml"
    assert str(export["actor"]).endswith("(by hand)") and export["copy_of_outbox_id"] is None
    assert "the nightly run will still send it" in result.output
    shown = CliRunner().invoke(cli, ["--config", str(config), "case", ref])
    assert "referral_exported" in shown.output and str(export["sha256"]) in shown.output
    # a second export into the same folder is refused, and leaves no second event
    again = CliRunner().invoke(cli, ["--config", str(config), "referral", ref, "--out", str(tmp_path / "o")])
    assert again.exit_code == 2 and len(_exports(engine, case_id)) == 1


def test_an_export_after_the_nightly_run_queued_it_is_the_queued_message_byte_for_byte(
        engine: Engine, setup: tuple[Path, Path], tmp_path: Path) -> None:
    from cme_batch.app import App
    from cme_batch.dispatch import queue_confirmed_referrals

    config, _ = setup
    case_id = seed_case(engine)
    ref = _ref(engine, case_id)
    night = App(str(config), clock=lambda: datetime.now(UTC))
    assert queue_confirmed_referrals(night, datetime.now(UTC).date()).referred == [ref]
    with engine.connect() as conn:
        queued = conn.execute(select(t.outbox.c.id, t.outbox.c.mime, t.outbox.c.message_id).where(
            t.outbox.c.purpose == "referral", t.outbox.c.case_id == case_id)).one()
    result = CliRunner().invoke(cli, ["--config", str(config), "referral", ref, "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    raw = (tmp_path / "o" / f"{ref}-referral.eml").read_bytes()
    assert raw == bytes(queued.mime)  # the same message (same Message-ID), not a second encryption
    assert str(email.message_from_bytes(raw, policy=email.policy.default)["Message-ID"]).strip() == queued.message_id
    assert f"outbox #{queued.id}" in result.output and "queued" in result.output
    (export,) = _exports(engine, case_id)
    assert export["copy_of_outbox_id"] == queued.id and export["sha256"] == hashlib.sha256(raw).hexdigest()


def test_an_export_after_purge_removed_the_archived_copy_says_so(
        engine: Engine, setup: tuple[Path, Path], tmp_path: Path) -> None:
    from cme_batch.app import App
    from cme_batch.dispatch import queue_confirmed_referrals

    config, _ = setup
    case_id = seed_case(engine)
    ref = _ref(engine, case_id)
    assert queue_confirmed_referrals(App(str(config), clock=lambda: datetime.now(UTC)),
                                     datetime.now(UTC).date()).referred == [ref]
    with engine.begin() as conn:  # as purge leaves a bundle past its retention: the row, without the message
        conn.execute(update(t.referral_archive).where(t.referral_archive.c.case_id == case_id).values(encrypted=b""))
    result = CliRunner().invoke(cli, ["--config", str(config), "referral", ref, "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "removed under the retention rules" in result.output and "has not been queued" not in result.output
    assert (tmp_path / "o" / f"{ref}-referral.eml").stat().st_size > 0  # a new encryption, not an empty file
    (export,) = _exports(engine, case_id)
    assert export["copy_of_outbox_id"] is None
