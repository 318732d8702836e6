"""The summary stage: once per date, requests carry tokens, and the office can record an action by reply."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from cme_batch import detect
from cme_batch.app import App
from cme_batch.demo.generator import generate
from cme_batch.model import SourceBatch
from cme_batch.morning.queue import queue_morning_mail
from cme_batch.replies.process import read_replies
from cme_batch.store import ingest
from cme_batch.store import tables as t
from tests.conftest import write_config
from tests.replies_support import KEY, KEY_ENV, reply

AS_OF = date(2025, 12, 19)
NOW = datetime(2025, 12, 20, 5, 30, tzinfo=UTC)


@pytest.fixture
def school_app(tmp_path: Path, store_url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> App:
    monkeypatch.setenv(KEY_ENV, KEY)
    maildir = tmp_path / "replies"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    cfg = write_config(tmp_path, store_url, f"""
[replies]
mailbox = "maildir"
token_keys = [{{ id = "k1", secret = {{ env = "{KEY_ENV}" }} }}]

[replies.maildir]
path = "{maildir}"
""")
    clock = {"now": NOW}
    app = App(str(cfg), clock=lambda: clock["now"])
    app._engine = engine
    school = generate(2025, 80)
    ingest.apply_batch(engine, app.school_id, SourceBatch("demo", "demo", records=school.records), NOW)
    detect.run_detect(app, AS_OF)
    app.clock_box = clock  # type: ignore[attr-defined]
    return app


def _outbox(engine: Engine, purpose: str) -> list[tuple[list[str], bytes]]:
    with engine.connect() as conn:
        return [(r.recipients, bytes(r.mime)) for r in conn.execute(
            select(t.outbox.c.recipients, t.outbox.c.mime).where(t.outbox.c.purpose == purpose))]


def test_once_per_date_and_requests_only_while_no_live_token(school_app: App, engine: Engine) -> None:
    first = queue_morning_mail(school_app, AS_OF)
    assert "summary #" in first
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(t.outbox)).scalar_one()
    assert len(_outbox(engine, "summary")) == 1 and len(_outbox(engine, "digest")) == 1
    requests = _outbox(engine, "confirm_request")
    assert requests and {r[0][0] for r in requests} == {"dsl@school.example", "deputy@school.example"}
    queue_morning_mail(school_app, AS_OF)  # the same night again: nothing new
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(t.outbox)).scalar_one() == n
    school_app.clock_box["now"] = NOW + timedelta(days=15)  # type: ignore[attr-defined]
    queue_morning_mail(school_app, AS_OF + timedelta(days=1))  # tokens expired: new requests go out
    assert len(_outbox(engine, "confirm_request")) == 2 * len(requests)


def test_office_records_a_first_day_call_by_replying_note(school_app: App, engine: Engine, tmp_path: Path) -> None:
    queue_morning_mail(school_app, AS_OF)
    actions = [(to, email.message_from_bytes(raw, policy=email.policy.default))
               for to, raw in _outbox(engine, "office_action")]
    assert actions, "a first-day call case should have an office action message"
    to, request = actions[0]
    assert to == ["office@school.example"] and "[cme:" in str(request["Subject"])
    ref = str(request["Subject"]).split(":")[0]
    note = reply("office@school.example", f"Re: {request['Subject']}",
                 f"NOTE {ref} first-day-call: spoke to dad, child unwell, back Monday\n")
    (tmp_path / "replies" / "new" / "1.office").write_bytes(note)
    report = read_replies(school_app)
    assert report is not None and report.as_dict()["accepted"] == 1
    with engine.connect() as conn:
        kinds = conn.execute(select(t.case_events.c.kind, t.case_events.c.actor, t.case_events.c.detail).join(
            t.cases, t.cases.c.id == t.case_events.c.case_id).where(t.cases.c.ref == ref,
                                                                      t.case_events.c.kind.in_(("action", "note")))).all()
    assert len(kinds) == 1 and kinds[0].actor == "office@school.example"
    assert (kinds[0].detail["action"], kinds[0].detail["outcome"]) == (
        "first_day_call", "spoke to dad, child unwell, back Monday")
