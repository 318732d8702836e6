"""Fixtures of the integration tests that read the DSL's replies from a Maildir."""

from __future__ import annotations

import mailbox as stdlib_mailbox
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine

from cme_batch.app import App
from tests.replies_support import KEY, KEY_ENV, maildir_app


@pytest.fixture
def maildir(tmp_path: Path) -> stdlib_mailbox.Maildir:
    """The Maildir the replies stage reads (``tmp_path/replies``)."""
    return stdlib_mailbox.Maildir(str(tmp_path / "replies"), create=True)


@pytest.fixture
def reply_app(tmp_path: Path, store_url: str, engine: Engine, maildir: stdlib_mailbox.Maildir,
              monkeypatch: pytest.MonkeyPatch) -> Callable[..., App]:
    """Make an App reading replies from ``maildir`` at a given moment (``extra``: more configuration)."""
    monkeypatch.setenv(KEY_ENV, KEY)

    def make(now: datetime, extra: str = "") -> App:
        return maildir_app(tmp_path, store_url, engine, now, extra)
    return make
