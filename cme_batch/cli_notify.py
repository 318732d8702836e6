"""``cme-batch notify-failure``: tell the office the night failed (run by systemd's OnFailure= unit).

The message names the unit, the host and the time, and where to look. It carries no pupil
data. It goes straight to the mail transport, not through the outbox, because the failure may
be the database itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cme_batch.app import App, in_school_time
from cme_batch.cli import handle_errors, pass_app
from cme_batch.errors import BadInputError

if TYPE_CHECKING:
    from email.message import EmailMessage


def failure_message(app: App, unit: str) -> EmailMessage:
    import socket  # here, not at start-up: every command's --help imports this module
    from email.message import EmailMessage
    from email.utils import format_datetime, make_msgid

    cfg = app.config
    sender = cfg.mail.from_address or cfg.school.email
    if not sender:
        raise BadInputError("mail.from is not set: cannot tell the office that the night failed")
    host = socket.gethostname()
    now = app.now()
    msg = EmailMessage()
    msg["Subject"] = f"cme-batch: the nightly run FAILED at {cfg.school.name}"
    msg["From"] = sender
    msg["To"] = ", ".join(p.email for p in cfg.staff.office)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[1])
    msg.set_content(
        f"The nightly CME run ({unit}) on {host} failed at {in_school_time(now):%H:%M on %d %b %Y}.\n\n"
        "This morning's summary may be missing or based on old data: please make the first-day calls "
        "from the registers as you would without cme-batch, and ask the school's IT technician to look at\n"
        f"    journalctl -u {unit}\n    cme-batch status\non {host}.\n")
    return msg


@click.command("notify-failure")
@click.option("--unit", default="cme-batch.service", show_default=True, help="The systemd unit that failed.")
@pass_app
@handle_errors
def notify_failure(app: App, unit: str) -> None:
    """Email the office that the nightly run failed (no pupil data); used by systemd's OnFailure=."""
    from cme_batch.mail.transport import Outgoing, build_transport

    msg = failure_message(app, unit)
    recipients = tuple(p.email for p in app.config.staff.office)
    transport = build_transport(app.config.mail)
    try:
        transport.send(Outgoing(0, str(msg["Message-ID"]), str(msg["From"]), recipients, msg.as_bytes()))
    finally:
        close = getattr(transport, "close", None)
        if close:
            close()
    click.echo(f"told {', '.join(recipients)} that {unit} failed")


COMMANDS = [notify_failure]
