"""The passphrase that alone protects a passphrase-PDF referral: refused when weak or readable by others."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from cme_batch import config as config_mod
from cme_batch.config import Config
from cme_batch.errors import BadInputError
from cme_batch.referral.bundle import Encrypted, build_bundle, encrypt_bundle
from cme_batch.store import migrate, open_store
from tests.conftest import write_config
from tests.referral_support import NOW, seed_case


@pytest.fixture
def store(tmp_path: Path) -> Engine:
    engine = open_store(f"sqlite:///{tmp_path / 'store.sqlite'}")
    migrate(engine)
    return engine


def _config_with_file(tmp_path: Path, engine: Engine, passphrase: str, mode: int) -> Config:
    secret = tmp_path / "la-passphrase"
    secret.write_text(passphrase + "\n", encoding="utf-8")
    secret.chmod(mode)
    return config_mod.load(write_config(tmp_path, str(engine.url), f'''
    [referral]
    method = "pdf-passphrase"
    passphrase = {{ file = "{secret}" }}
    '''))


def _seal(engine: Engine, cfg: Config) -> object:
    case_id = seed_case(engine)
    with engine.connect() as conn:
        return encrypt_bundle(build_bundle(conn, case_id, cfg, NOW), cfg)


@pytest.mark.parametrize("weak", ["aaaaaaaaaaaa", "121212121212", "abcabcabcabcabc"])
def test_a_long_but_repetitive_passphrase_is_refused(store: Engine, tmp_path: Path, weak: str) -> None:
    cfg = _config_with_file(tmp_path, store, weak, 0o600)
    with pytest.raises(BadInputError, match="too simple") as err:
        _seal(store, cfg)
    assert weak not in str(err.value)


def test_a_passphrase_file_other_users_can_read_is_refused(store: Engine, tmp_path: Path) -> None:
    cfg = _config_with_file(tmp_path, store, "Tewkesbury-Abbey-lantern-7", 0o644)
    with pytest.raises(BadInputError, match="open to other users.*chmod 600"):
        _seal(store, cfg)


def test_a_good_passphrase_in_a_private_file_seals_the_pdf(store: Engine, tmp_path: Path) -> None:
    cfg = _config_with_file(tmp_path, store, "Tewkesbury-Abbey-lantern-7", 0o600)
    sealed = _seal(store, cfg)
    assert isinstance(sealed, Encrypted) and sealed.method == "pdf-passphrase"
    assert b"Tewkesbury-Abbey-lantern-7" not in sealed.raw
