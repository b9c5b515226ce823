"""Writes to the session store. Each function is one transaction.

Callers import the writes from here (``from sessions import services``); the
modules below hold them, each with the rules it protects, bottom to top:

* ``accounting``: what one message adds to the totals (``contribution``) and
  moving session totals and the daily rollup by a difference.
* ``sessions``: locking and creating sessions (and the API key's scope
  check on the locked row); ``session_upsert``, ``session_set_status``,
  ``sessions_mark_unknown``, ``turns_record`` (an import's finished turns).
* ``messages``: ``messages_append`` (``messages_append_all`` for a
  transcript longer than one batch) and the corrections (update-last,
  remove-last, clear, the admin's edits) and ``messages_complete`` (fill
  in what a stored message lacks, from another record of it).
* ``subagents``: ``sub_agents_resolve`` (OTLP: a sub-agent named after its
  messages were stored, by the span that ends last).
* ``compaction``: ``session_compact``, ``messages_archive_stored`` (an
  importer's) and ``session_delete``.

The rule they all share: a refused write writes nothing. Input is validated
before the transaction, and every domain error inside it rolls the whole
transaction back.
"""

from sessions.services.accounting import contribution
from sessions.services.compaction import (
    messages_archive_stored,
    session_compact,
    session_delete,
)
from sessions.services.messages import (
    AppendResult,
    message_remove_last,
    message_save_correction,
    message_update_last,
    messages_append,
    messages_append_all,
    messages_clear,
    messages_complete,
)
from sessions.services.sessions import (
    session_set_status,
    session_upsert,
    sessions_mark_unknown,
    turns_record,
)
from sessions.services.subagents import SpanLink, Wait, sub_agents_resolve

__all__ = [
    "AppendResult",
    "SpanLink",
    "Wait",
    "contribution",
    "message_remove_last",
    "message_save_correction",
    "message_update_last",
    "messages_append",
    "messages_append_all",
    "messages_archive_stored",
    "messages_clear",
    "messages_complete",
    "session_compact",
    "session_delete",
    "session_set_status",
    "session_upsert",
    "sessions_mark_unknown",
    "sub_agents_resolve",
    "turns_record",
]
