"""``cme-batch referral REF``: write a case's referral bundle, encrypted, or as a private preview.

The encrypted form is the e-mail the nightly run would queue for the LA, written as an ``.eml``
file for a school that sends it some other way. ``--preview`` writes the unencrypted PDF and
JSON for the DSL to check before confirming, into a new directory only its owner can open.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import click

from cme_batch.app import App
from cme_batch.cli import handle_errors, pass_app
from cme_batch.errors import BadInputError

if TYPE_CHECKING:  # the PDF machinery and the store are imported only by the command that uses them (start-up time)
    from cme_batch.referral.bundle import Bundle


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` for its owner only; refuse to overwrite anything."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise BadInputError(f"{path} already exists; move it away or choose another --out") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(data)


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
    _write_private(path, sealed.raw)
    click.echo(f"wrote {path} ({sealed.method}, to {', '.join(sealed.recipients)}, sha256 {sealed.sha256})")


COMMANDS = [referral]
