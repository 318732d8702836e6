"""Configuration: the example validates; each kind of mistake is reported with key and remedy."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from cme_batch import config
from cme_batch.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "cme-batch.example.toml"


def _example() -> dict:
    return tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))


def _problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.parse(data, EXAMPLE)
    return info.value.problems


def test_example_config_is_valid_and_frozen() -> None:
    cfg = config.load(EXAMPLE)
    assert cfg.school.la_number == "916"
    assert cfg.staff.dsl.email == "dsl@johnmoore.example"
    assert cfg.thresholds.referral_due == 10
    assert [t.start.isoformat() for t in cfg.calendar.terms] == ["2025-09-02", "2025-11-03"]
    assert cfg.database_url.startswith("sqlite:///") and cfg.database_url.endswith("cme-batch.sqlite")
    with pytest.raises(AttributeError):
        cfg.school.name = "x"  # type: ignore[misc]


def test_every_problem_listed_at_once() -> None:
    data = _example()
    data["school"]["la_number"] = "91"
    data["staff"]["dsl"]["email"] = "not-an-address"
    data["thresholds"]["dsl_review"] = 0
    data["calendar"]["closures"] = ["2025-13-01"]
    data["bogus"] = 1
    problems = _problems(data)
    joined = "\n".join(problems)
    assert len(problems) == 5, joined
    assert "school.la_number: is '91'; expected three digits" in joined
    assert "staff.dsl.email" in joined and "an email address" in joined
    assert "thresholds.dsl_review: is 0" in joined
    assert "calendar.closures[0]" in joined and "YYYY-MM-DD" in joined
    assert "bogus: is not a known key" in joined


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["school"].pop("name"), "school.name: is missing"),
    (lambda d: d["school"].update(establishment_number=2999), "school.establishment_number: is 2999"),
    (lambda d: d["staff"].pop("office"), "staff.office: is missing"),
    (lambda d: d["calendar"]["terms"].append({"start": "2025-10-01", "end": "2025-10-10"}), "overlap"),
    (lambda d: d["calendar"]["terms"].append({"start": "2026-01-10", "end": "2026-01-01"}), "before start"),
    (lambda d: d["calendar"]["terms"].append({"start": "2027-07-20", "end": "2027-09-10"}),  # summer as term
     "calendar.terms[2].end: 2027-09-10 is in another academic year than start 2027-07-20"),
    (lambda d: d["codes"]["local"].update({"!": "sort-of-present"}), "codes.local.!: is 'sort-of-present'"),
    (lambda d: d["thresholds"].update(home_visit=9), "thresholds.referral_prepare: is 8, before home_visit"),
    (lambda d: d["thresholds"].update(referral_due="ten"), "thresholds.referral_due: is 'ten'"),
    (lambda d: d["logging"].update(level="loud"), "logging.level: is 'loud'"),
    (lambda d: d["sources"]["sims"].pop("adapter"), "sources.sims.adapter: is missing"),
    (lambda d: d["staff"].update(dsl="Mrs Smith"), "staff.dsl: is a str"),
])
def test_each_kind_of_mistake(mutate, expected: str) -> None:  # type: ignore[no-untyped-def]
    data = _example()
    mutate(data)
    assert any(expected in p for p in _problems(data)), _problems(data)


def test_secret_must_not_be_a_literal() -> None:
    from cme_batch.settings import Problems, Table

    problems = Problems()
    t = Table({"password": "hunter2", "token": {"env": "TOKEN_VAR"}}, "mail", problems)
    assert t.secret("password") is None
    ref = t.secret("token")
    assert "literal value" in problems.items[0] and "hunter2" not in problems.items[0]
    assert ref is not None and "TOKEN_VAR" in repr(ref)


def test_secret_reads_env_file_and_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cme_batch.errors import BadInputError
    from cme_batch.settings import SecretRef

    monkeypatch.setenv("CME_TEST_SECRET", "s3cret")
    assert SecretRef("env", "CME_TEST_SECRET", "k").reveal() == "s3cret"
    (tmp_path / "pw").write_text("from-file\n")
    assert SecretRef("file", str(tmp_path / "pw"), "k").reveal() == "from-file"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert SecretRef("credential", "pw", "k").reveal() == "from-file"
    # the units load a folder of credentials: systemd names each file's credential "cme-batch_<file>"
    (tmp_path / "cme-batch_arbor-password").write_text("from-folder\n")
    assert SecretRef("credential", "arbor-password", "k").reveal() == "from-folder"
    assert SecretRef("credential", "cme-batch_arbor-password", "k").reveal() == "from-folder"
    monkeypatch.delenv("CME_TEST_SECRET")
    with pytest.raises(BadInputError, match="CME_TEST_SECRET is not set"):
        SecretRef("env", "CME_TEST_SECRET", "mail.password").reveal()


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[school\nname = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(bad)


def test_env_var_names_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CME_BATCH_CONFIG", str(EXAMPLE))
    assert config.load(None).school.name == "The John Moore Primary School"
    monkeypatch.delenv("CME_BATCH_CONFIG")
    with pytest.raises(ConfigError, match="CME_BATCH_CONFIG"):
        config.load(None)


def test_relative_secret_file_is_read_beside_the_config(tmp_path: Path) -> None:
    from cme_batch.settings import Problems, Table

    t = Table({"password": {"file": "secrets/pw"}}, "mail", Problems(), tmp_path)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pw").write_text("beside\n")
    ref = t.secret("password")
    assert ref is not None and ref.reveal() == "beside"


def test_a_secret_file_that_is_not_utf8_is_named_without_quoting_any_byte_of_it(tmp_path: Path) -> None:
    import traceback

    from cme_batch.errors import BadInputError
    from cme_batch.settings import SecretRef, check_secrets

    secret = tmp_path / "smtp-password"
    secret.write_bytes(b"abc\xffsecretpart")
    ref = SecretRef("file", str(secret), "mail.smtp.password")
    with pytest.raises(BadInputError) as refused:
        ref.reveal()
    shown = "".join(traceback.format_exception(refused.value))
    assert "not UTF-8 text" in shown and "0xff" not in shown and "position" not in shown
    assert check_secrets(ref) == ([f"mail.smtp.password: secret file {secret} is not UTF-8 text"], [])
