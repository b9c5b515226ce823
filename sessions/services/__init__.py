"""Writes to the session store (moved into a package; split next)."""

from sessions.services.sessions import (
    AppendResult,
    contribution,
    message_remove_last,
    message_save_correction,
    message_update_last,
    messages_append,
    messages_clear,
    session_compact,
    session_delete,
    session_set_status,
    session_upsert,
    sessions_mark_unknown,
)

__all__ = [
    "AppendResult",
    "contribution",
    "message_remove_last",
    "message_save_correction",
    "message_update_last",
    "messages_append",
    "messages_clear",
    "session_compact",
    "session_delete",
    "session_set_status",
    "session_upsert",
    "sessions_mark_unknown",
]
