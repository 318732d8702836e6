"""Mail: the outbox, its transports, S/MIME and the reply mailbox."""
