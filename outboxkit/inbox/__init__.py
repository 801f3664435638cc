"""The consumer side: read outboxkit messages and apply each once, with an inbox.

Driver-free: decoding from headers and bytes (:func:`decode`), the verdicts and the guard
(:mod:`outboxkit.inbox.contract`), the SQLite inbox (:mod:`outboxkit.inbox.sqlite`) and the
FastStream middleware (:mod:`outboxkit.inbox.faststream`). The broker readers and the
database inboxes live in the plugins: ``outboxkit_kafka.read_record``,
``outboxkit_nats.read_msg``, ``outboxkit_postgres.PostgresInbox``,
``outboxkit_mongodb.MongoInbox``. See docs/consumers.md.
"""

from outboxkit.inbox.contract import INBOX_GROUP, Guard, InboxOperations, InboxPlugin, Verdict
from outboxkit.inbox.decoding import InboxMessage, UnreadableMessageError, decode

__all__ = [
    "INBOX_GROUP",
    "Guard",
    "InboxMessage",
    "InboxOperations",
    "InboxPlugin",
    "UnreadableMessageError",
    "Verdict",
    "decode",
]
