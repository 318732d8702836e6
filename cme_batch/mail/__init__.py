"""Mail: the outbox, its transports, S/MIME and the reply mailbox."""

#: An outbox message's statuses (``cme_batch.mail.outbox``). Here rather than in the outbox so that
#: the command line can offer them as choices without importing the store at start-up.
STATUSES = ("queued", "sending", "sent", "failed")
