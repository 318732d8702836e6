"""Confirmation by reply: the DSL (or office) answers one of our messages with a one-line command.

``tokens`` issues and checks the signed single-use token carried in the subject; ``parse``
reads the reply's first unquoted line; ``authres`` checks our receiving server's DKIM/DMARC
verdict; ``mailbox`` (with ``imap`` and ``graph``) reads the mailbox; ``process`` is the
``replies`` stage. The digest writer uses ``subject_for``, ``pending_review`` and ``mark_shown``.
"""

from __future__ import annotations

from cme_batch.replies.process import mark_shown, pending_review, subject_for
from cme_batch.replies.tokens import Tokens

__all__ = ["Tokens", "mark_shown", "pending_review", "subject_for"]
