"""``cme-batch demo --dir D``: a fresh folder becomes a loaded demo store, and a re-run starts clean."""

from __future__ import annotations

import email
import email.policy
import json
import re
from pathlib import Path

from click.testing import CliRunner, Result
from sqlalchemy import create_engine, func, select

from cme_batch import cli_demo
from cme_batch.cli import cli
from cme_batch.config import load
from cme_batch.demo import generator, loaders
from cme_batch.store import tables as t


def run_demo(out: Path, *extra: str) -> Result:
    return CliRunner().invoke(cli, ["demo", "--dir", str(out), "--pupils", "80", *extra])


def counts(db: Path) -> dict[str, int]:
    eng = create_engine(f"sqlite:///{db}")
    try:
        with eng.connect() as conn:
            return {name: conn.execute(select(func.count()).select_from(t.metadata.tables[name])).scalar_one()
                    for name in ("pupils", "mark_strips", "contacts", "enrolments", "flags", "mark_changes")}
    finally:
        eng.dispose()


def _mail(out: Path) -> list[email.message.EmailMessage]:
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in sorted((out / "mail").glob("*.eml"))]


def test_demo_runs_the_whole_night_from_sims_files(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run_demo(out)
    assert result.exit_code == 0, result.output
    db = out / "state" / "cme-batch.sqlite"
    assert str(db) in result.output and str(out / "mail") in result.output
    n = counts(db)
    assert n["pupils"] == 80 and n["mark_strips"] == 80 and n["enrolments"] == 80
    assert n["contacts"] >= 80 and n["flags"] > 0
    assert n["mark_changes"] == 4  # the newer export corrected two days of N into I
    # the SIMS exports went through the drop folder and were archived once stored
    archived = sorted(p.name.split("-")[0] for p in (out / "drop" / "sims" / "archive").glob("*.xml"))
    assert {"pupils", "admissions", "leavers", "marks"} <= set(archived)
    assert not list((out / "drop" / "sims").glob("*.xml"))
    cfg = load(out / "cme-batch.toml")
    assert cfg.school.name == "The John Moore Primary School"
    assert cfg.state_dir == (out / "state").resolve()
    expected = json.loads((out / "expected-cases.json").read_text())
    assert expected["as_of"] == "2025-12-19" and len(expected["cases"]) >= 20
    k = len(expected["cases"])
    assert f"Planted cases found as expected: {k} of {k}\n" in result.output, result.output
    # the night's mail: summary, digest, confirmation requests; then the confirmed referral, encrypted
    mails = _mail(out)
    subjects = [str(m["Subject"]) for m in mails]
    assert any(s.startswith("CME summary") for s in subjects) and any(s.startswith("CME digest") for s in subjects)
    referral = [m for m in mails if str(m["Subject"]).startswith("CME referral CME-")]
    assert len(referral) == 1 and referral[0].get_content_type() == "application/pkcs7-mime"
    assert any(s.startswith("Receipt: CME referral") for s in subjects)
    with create_engine(f"sqlite:///{db}").connect() as conn:
        names = {x for row in conn.execute(select(t.pupils.c.legal_surname, t.pupils.c.legal_forename,
                                                  t.pupils.c.upn)) for x in row if x}
    assert not [s for s in subjects for x in names if x in s]


def test_a_rerun_starts_clean(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert run_demo(out, "--no-replay").exit_code in (0, 1)
    again = run_demo(out, "--seed", "9", "--no-replay")
    assert again.exit_code in (0, 1), again.output
    assert "Removing the previous demo's" in again.output
    assert counts(out / "state" / "cme-batch.sqlite")["pupils"] == 80
    if "Planted cases found as expected" in again.output:  # only the cases open on the last day
        assert re.search(r"found as expected: (\d+) of \1\n", again.output), again.output


def test_refuses_a_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    result = run_demo(tmp_path)
    assert result.exit_code == 2
    assert "was not made by 'cme-batch demo'" in result.output
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert not (tmp_path / "cme-batch.toml").exists()


def test_through_the_arbor_stand_in_the_ingest_stage_loads_the_school(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run_demo(out, "--source", "arbor", "--no-replay")
    assert result.exit_code in (0, 1), result.output
    assert "Pulled the school from the Arbor stand-in" in result.output
    assert "[sources.arbor]" in (out / "cme-batch.toml").read_text(encoding="utf-8")
    n = counts(out / "state" / "cme-batch.sqlite")
    assert n["pupils"] == 80 and n["mark_strips"] >= 79
    if "Planted cases found as expected" in result.output:
        assert re.search(r"found as expected: (\d+) of \1\n", result.output), result.output


def test_direct_source_loads_without_files(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run_demo(out, "--source", "direct", "--no-replay")
    assert result.exit_code == 0, result.output
    assert not (out / "drop").exists()
    assert counts(out / "state" / "cme-batch.sqlite")["pupils"] == 80


def test_the_commands_options_agree_with_the_demo() -> None:
    """The command repeats two of the demo's constants so that start-up does not import the demo."""
    assert cli_demo.MIN_PUPILS == generator.MIN_PUPILS
    assert cli_demo.SOURCES == loaders.SOURCES


def test_the_demo_certificates_outlast_today_not_only_the_demo_term(tmp_path: Path) -> None:
    """The demo runs on a clock in a past term, but its configuration is also tried by hand on the real
    clock. Its certificates were valid 825 days from 60 days before that term: from 7 October 2027,
    ``check-config`` on a fresh demo refused them as expired. They now run two years past today."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509

    from cme_batch.demo import confirm

    confirm.make_pki(tmp_path / "pki", "la@la.example.org", "cme@school.example.org", datetime(2025, 7, 7, tzinfo=UTC))
    today = datetime.now(UTC)
    for name in ("ca", "la", "archive", "signer"):
        cert = x509.load_pem_x509_certificate((tmp_path / "pki" / f"{name}.pem").read_bytes())
        assert cert.not_valid_before_utc <= datetime(2025, 7, 7, tzinfo=UTC), name
        assert cert.not_valid_after_utc >= today + timedelta(days=2 * 365), name
