"""Reply tokens against a real store (SQLite and PostgreSQL): binding, expiry, single use, rotation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from cme_batch.errors import BadInputError
from cme_batch.replies import tokens as tk
from cme_batch.replies.tokens import KeyRing, Tokens
from cme_batch.replies_settings import RepliesConfig, TokenKey
from cme_batch.settings import SecretRef
from cme_batch.store import tables as t
from tests.conftest import FIXED_NOW
from tests.replies_support import DEPUTY, DSL, KEY, issue, make_case, make_tokens

NOW = FIXED_NOW


@pytest.fixture
def two_cases(engine: Engine) -> tuple[int, int]:
    return make_case(engine, "CME-2025-0001", NOW), make_case(engine, "CME-2025-0002", NOW)


def verify(engine: Engine, toks: Tokens, token: str, case_id: int, sender: str, at=NOW) -> tk.Verdict:
    with engine.begin() as conn:
        return toks.verify(conn, token, case_id, sender, at)


def test_a_token_works_once_for_its_case_and_recipient(engine: Engine, two_cases: tuple[int, int]) -> None:
    toks = make_tokens()
    token = issue(engine, toks, two_cases[0], DSL, NOW)
    assert verify(engine, toks, token, two_cases[0], DSL, NOW + timedelta(days=1)) == tk.Verdict(True)
    assert verify(engine, toks, token, two_cases[0], DSL, NOW + timedelta(days=1)) == tk.Verdict(False, tk.USED)
    with engine.connect() as conn:
        used = conn.execute(select(t.reply_tokens.c.used_at)).scalar_one()
    assert used is not None


def test_the_sender_address_is_compared_without_case(engine: Engine, two_cases: tuple[int, int]) -> None:
    toks = make_tokens()
    token = issue(engine, toks, two_cases[0], "DSL@School.Example", NOW)
    assert verify(engine, toks, token, two_cases[0], "dsl@SCHOOL.example").ok


def test_a_token_is_bound_to_its_case_and_its_recipient(engine: Engine, two_cases: tuple[int, int]) -> None:
    toks = make_tokens()
    token = issue(engine, toks, two_cases[0], DSL, NOW)
    assert verify(engine, toks, token, two_cases[1], DSL) == tk.Verdict(False, tk.OTHER_CASE)
    assert verify(engine, toks, token, two_cases[0], DEPUTY) == tk.Verdict(False, tk.OTHER_SENDER)
    # the failed attempts did not use it up
    assert verify(engine, toks, token, two_cases[0], DSL).ok


def test_a_token_expires_after_its_lifetime(engine: Engine, two_cases: tuple[int, int]) -> None:
    toks = make_tokens(lifetime_days=14)
    token = issue(engine, toks, two_cases[0], DSL, NOW)
    late = NOW + timedelta(days=14)
    assert verify(engine, toks, token, two_cases[0], DSL, late) == tk.Verdict(False, tk.EXPIRED)
    assert verify(engine, toks, token, two_cases[0], DSL, late - timedelta(seconds=1)).ok


def test_any_change_to_a_token_is_refused(engine: Engine, two_cases: tuple[int, int]) -> None:
    toks = make_tokens()
    token = issue(engine, toks, two_cases[0], DSL, NOW)
    kid, nonce, expiry, mac = token.split(".")
    flip = {"A": "B"}.get(mac[0], "A")
    assert verify(engine, toks, f"{kid}.{nonce}.{expiry}.{flip}{mac[1:]}", two_cases[0], DSL).reason == tk.BAD_MAC
    # a later expiry is part of what is signed
    assert verify(engine, toks, f"{kid}.{nonce}.{int(expiry) + 86400}.{mac}", two_cases[0], DSL).reason == tk.BAD_MAC
    other_nonce = ("A" if nonce[0] != "A" else "B") + nonce[1:]
    assert verify(engine, toks, f"{kid}.{other_nonce}.{expiry}.{mac}", two_cases[0], DSL).reason == tk.UNKNOWN_TOKEN
    assert verify(engine, toks, "k9." + token.partition(".")[2], two_cases[0], DSL).reason == tk.UNKNOWN_KEY
    assert verify(engine, toks, token[:-1], two_cases[0], DSL).reason == tk.MALFORMED
    assert verify(engine, toks, token, two_cases[0], DSL).ok


def test_a_token_is_only_used_up_when_the_transaction_commits(engine: Engine, two_cases: tuple[int, int]) -> None:
    toks = make_tokens()
    token = issue(engine, toks, two_cases[0], DSL, NOW)
    with engine.connect() as conn:
        trans = conn.begin()
        assert toks.verify(conn, token, two_cases[0], DSL, NOW).ok
        trans.rollback()
    assert verify(engine, toks, token, two_cases[0], DSL).ok


def test_rotation_old_tokens_verify_new_tokens_use_the_first_key(engine: Engine,
                                                                 two_cases: tuple[int, int]) -> None:
    old = make_tokens()
    token = issue(engine, old, two_cases[0], DSL, NOW)
    rotated = Tokens(KeyRing([("k2", b"a-brand-new-key-for-2026-xyz"), ("k1", KEY.encode())]))
    fresh = issue(engine, rotated, two_cases[1], DSL, NOW)
    assert fresh.startswith("k2.")
    assert verify(engine, rotated, token, two_cases[0], DSL).ok
    retired = Tokens(KeyRing([("k2", b"a-brand-new-key-for-2026-xyz")]))
    assert verify(engine, retired, fresh, two_cases[1], DSL).ok
    token2 = issue(engine, old, two_cases[0], DSL, NOW)
    assert verify(engine, retired, token2, two_cases[0], DSL).reason == tk.UNKNOWN_KEY


def test_keys_come_from_the_secret_store_and_are_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = RepliesConfig(token_keys=(TokenKey("k1", SecretRef("env", "CME_TEST_KEY_A", "replies.token_keys[0]")),))
    monkeypatch.setenv("CME_TEST_KEY_A", "short")
    with pytest.raises(BadInputError, match="shorter than 16 bytes"):
        KeyRing.from_config(cfg)
    monkeypatch.setenv("CME_TEST_KEY_A", KEY)
    ring = KeyRing.from_config(cfg)
    assert KEY not in repr(ring) and KEY not in repr(Tokens(ring))
    monkeypatch.delenv("CME_TEST_KEY_A")
    with pytest.raises(BadInputError, match="CME_TEST_KEY_A is not set"):
        KeyRing.from_config(cfg)


def test_the_token_is_found_in_a_reply_subject() -> None:
    token = "k1.AAAAAAAAAAAAAAAA.1767225600.BBBBBBBBBBBBBBBBBBBBBB"
    assert tk.find_in_subject(f"RE: Re: CME-2025-0001: your reply is needed {tk.tag(token)}") == (token, None)
    assert tk.find_in_subject(f"AW: {tk.tag(token)} {tk.tag(token)}") == (token, None)
    assert tk.find_in_subject("Re: CME-2025-0001") == (None, tk.NO_TOKEN)
    assert tk.find_in_subject(f"{tk.tag(token)} {tk.tag(token[:-1] + 'C')}") == (None, tk.MANY_TOKENS)
