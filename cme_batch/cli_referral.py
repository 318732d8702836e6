"""``cme-batch referral REF``: write a case's referral bundle, encrypted, or as a private preview.

The encrypted form is the e-mail the nightly run would queue for the LA, written as an ``.eml``
file for a school that sends it some other way. ``--preview`` writes the unencrypted PDF and
JSON for the DSL to check before confirming, into a new directory only its owner can open.

Every encrypted export is an event in the case's history (who, which bundle, its SHA-256), so
the audit trail shows a copy that may have reached the LA outside cme-batch. Once the nightly
run has queued the bundle, the export is that archived message, byte for byte (same
Message-ID), not a second encryption: a copy sent by hand is then recognisably the same message.
"""

from __future__ import annotations

import getpass
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cme_batch.app import App
from cme_batch.cli import handle_errors, pass_app
from cme_batch.errors import BadInputError

if TYPE_CHECKING:  # the PDF machinery and the store are imported only by the command that uses them (start-up time)
    from sqlalchemy import Connection

    from cme_batch.referral.bundle import Bundle, Encrypted


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` for its owner only; refuse to overwrite anything."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise BadInputError(f"{path} already exists; move it away or choose another --out") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@dataclass(frozen=True)
class _Queued:
    """The archived message the nightly run queued for this bundle, and how its delivery stands;
    ``raw`` is empty once purge has removed the archived copy (retention)."""

    raw: bytes
    sha256: str
    method: str
    outbox_id: int | None
    status: str | None
    sent_at: datetime | None
    queued_at: datetime


def _queued(conn: Connection, case_id: int, kind: str) -> _Queued | None:
    from sqlalchemy import select

    from cme_batch.store import tables as t

    a, o = t.referral_archive, t.outbox
    row = conn.execute(select(a.c.encrypted, a.c.sha256, a.c.method, a.c.outbox_id, o.c.status, o.c.sent_at,
                              a.c.created_at)
                       .outerjoin(o, o.c.id == a.c.outbox_id)
                       .where(a.c.case_id == case_id, a.c.kind == kind).order_by(a.c.id.desc()).limit(1)).first()
    if row is None:  # never queued
        return None
    return _Queued(bytes(row.encrypted or b""), row.sha256, row.method, row.outbox_id, row.status, row.sent_at,
                   row.created_at)


def _exporter() -> str:
    """Who ran the export, for the case's history: the login name (the DSL's e-mail is not known here)."""
    try:
        return f"{getpass.getuser()} (by hand)"
    except (KeyError, OSError):  # no login name for this uid
        return "unknown user (by hand)"


def _export(app: App, case_id: int, sealed: Encrypted, path: Path) -> _Queued | None:
    """Write the bundle to ``path`` and record the export in the case's history, both or neither."""
    from sqlalchemy import insert

    from cme_batch.app import in_school_time
    from cme_batch.store import tables as t

    now = app.now()
    with app.engine().begin() as conn:
        queued = _queued(conn, case_id, sealed.kind)
        archived = queued is not None and bool(queued.raw)
        raw, sha256, method = (queued.raw, queued.sha256, queued.method) if queued and archived else (
            sealed.raw, sealed.sha256, sealed.method)
        conn.execute(insert(t.case_events).values(
            case_id=case_id, at=now, as_of=in_school_time(now).date(), kind=f"{sealed.kind}_exported",
            actor=_exporter(), detail={"file": path.name, "sha256": sha256, "method": method,
                                       "copy_of_outbox_id": queued.outbox_id if queued and archived else None}))
        _write_private(path, raw)  # an error here rolls the event back
    return queued


def _what_now(queued: _Queued | None, kind: str) -> str:
    if queued is None:
        return (f"this {kind} has not been queued yet: the nightly run will still send it by secure mail. Send this "
                "file by hand only if the nightly run cannot, or the LA will receive it twice")
    if not queued.raw:
        return (f"this {kind} was queued for the LA on {queued.queued_at:%Y-%m-%d}; its archived copy has since been "
                "removed under the retention rules, so this file is a new encryption (another Message-ID) of what "
                "the store holds today")
    if queued.status == "sent" and queued.sent_at is not None:
        return (f"this is the message cme-batch delivered to the LA on {queued.sent_at:%Y-%m-%d} (outbox "
                f"#{queued.outbox_id}); sending it again gives the LA a second copy of the same message")
    return (f"this is the message queued for the LA (outbox #{queued.outbox_id}, {queued.status or 'removed'}), "
            "byte for byte; 'cme-batch outbox' shows whether it has been delivered")


def _preview(bundle: Bundle, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = Path(tempfile.mkdtemp(prefix=f"{bundle.ref}-{bundle.kind}-preview-", dir=out_dir))  # mode 0700
    _write_private(target / bundle.filename("pdf"), bundle.pdf)
    _write_private(target / bundle.filename("json"), bundle.json)
    _write_private(target / f"{bundle.ref}-{bundle.kind}-note.txt", bundle.note.encode("utf-8"))
    return target


@click.command("referral")
@click.argument("ref")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write into (created if missing).")
@click.option("--preview", is_flag=True,
              help="Write the UNENCRYPTED PDF, JSON and covering note into a new directory of mode 0700 "
                   "inside --out, for checking. Never send or copy these files.")
@click.option("--update", "kind", flag_value="update", default="referral",
              help="The update bundle for a referred child who returned or whose destination is known.")
@pass_app
@handle_errors
def referral(app: App, ref: str, out_dir: Path, preview: bool, kind: str) -> None:
    """Write the referral bundle of case REF (e.g. CME-2026-0007), encrypted as configured.

    The bundle is an e-mail (.eml) ready to send to the LA: S/MIME to the LA's certificate and the
    school's archive certificate, or an AES-256 PDF opened with the passphrase agreed with the LA.
    A referral is written only once the DSL has confirmed it; --preview works before that.
    Each export is recorded in the case's history; once the nightly run has queued the bundle,
    the file is that queued message, byte for byte.
    """
    from sqlalchemy import select

    from cme_batch.referral.bundle import Held, build_bundle, encrypt_bundle
    from cme_batch.store import tables as t

    with app.engine().connect() as conn:
        case_id = conn.execute(select(t.cases.c.id).where(t.cases.c.ref == ref)).scalar()
        if case_id is None:
            raise BadInputError(f"no case {ref}; 'cme-batch cases --all' lists them")
        bundle = build_bundle(conn, int(case_id), app.config, app.now(), kind)
    if preview:
        target = _preview(bundle, out_dir)
        click.echo(f"wrote the unencrypted {kind} of {ref} to {target}")
        click.echo(f"warning: {target} holds personal data about a child, unencrypted. Do not e-mail or copy it; "
                   f"delete it once checked (rm -r {target}).", err=True)
        return
    sealed = encrypt_bundle(bundle, app.config)
    if isinstance(sealed, Held):
        raise BadInputError(f"{ref}: {sealed.reason}")
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = out_dir / f"{ref}-{kind}.eml"
    queued = _export(app, bundle.case_id, sealed, path)
    method, sha256 = (queued.method, queued.sha256) if queued and queued.raw else (sealed.method, sealed.sha256)
    click.echo(f"wrote {path} ({method}, to {', '.join(sealed.recipients)}, sha256 {sha256})")
    click.echo(f"note: {_what_now(queued, kind)}; the export is recorded in the case's history ('cme-batch case {ref}').")


COMMANDS = [referral]
