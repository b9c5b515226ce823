"""The Django admin: look at and correct the session store.

Every write here goes through ``sessions.services`` so totals, ``message_count``,
the daily rollup and tombstones stay right: session edits are upserts, message
edits are corrections that move totals by the difference, deleting a session
leaves its tombstone. Sessions and messages are not added here (agents write
them through the API), and messages are not deleted one by one (that would
leave gaps and wrong counts; use compaction, clear or ``manage.py purge``).

Rows imported or written long ago may hold values the domain no longer
accepts (an unknown status, metadata that is a list): lists and change pages
show them as they are, marked invalid, and never crash on them.

One module per concept: ``session``, ``message``, ``budgets``, ``bookkeeping`` (tombstones,
prices, the daily rollup) and ``apikeys``; ``common`` holds what they share.
"""

from __future__ import annotations

# Importing each module registers its ModelAdmins (Django autodiscovers this package).
from sessions.admin import apikeys, bookkeeping, budgets, message, session  # noqa: F401
