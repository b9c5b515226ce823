"""Compacting a session's transcript and deleting a session.

The rules these protect:

* Compaction archives, never removes (an import carries an agent's own
  archive over, ``messages_archive_stored``): archived messages stay until purged,
  and the totals and daily rollup are never lowered. A retried compaction
  adds no second summary.
* A deleted session leaves a tombstone for its key; its daily rollups stay
  (the money was spent).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from sessions.bounds import MAX_COUNT
from sessions.choices import Role
from sessions.errors import InvalidInput
from sessions.inputs import (
    MessageIn,
    clean_key,
    clean_message,
    clean_text,
)
from sessions.models import Message, Session, Tombstone
from sessions.rollups import Rollup
from sessions.scopes import FULL, KeyScope
from sessions.services.accounting import TRANSCRIPT_FIELDS, correct
from sessions.services.messages import append_rows
from sessions.services.sessions import lock_existing

# --- compaction, delete -------------------------------------------------------


@transaction.atomic
def _session_compact(key: str, summary: str, keep: int, now: datetime, scope: KeyScope) -> int:
    session = lock_existing(key, scope)
    active = Message.objects.filter(session=session, compacted_at__isnull=True)
    if keep > 0:
        # Summaries do not count towards `keep`: a retried compaction finds the
        # same preserved messages and nothing older to archive.
        boundary = list(
            active.filter(is_summary=False)
            .order_by("-seq")
            .values_list("seq", flat=True)[keep - 1 : keep]
        )
        if not boundary:
            return 0
        active = active.filter(seq__lt=boundary[0])
    if not active.filter(is_summary=False).exists():
        return 0  # only earlier summaries would go: nothing new to summarise
    archived = active.update(compacted_at=now)
    rollup = Rollup()
    append_rows(
        session,
        [
            MessageIn(
                fields={"role": Role.SYSTEM, "content": summary, "created_at": now},
                is_summary=True,
            )
        ],
        now,
        rollup,
    )
    session.last_active_at = max(now, session.last_active_at)
    session.save(update_fields=TRANSCRIPT_FIELDS)
    rollup.apply()
    return archived


def session_compact(
    *, key: str, summary: str, keep: int, now: datetime | None = None, scope: KeyScope = FULL
) -> int:
    """Archive every active message except the newest ``keep`` and add ``summary``.

    The summary is stored as a ``system`` message that the context view places
    before the preserved messages. Archived messages stay (full view) until
    purged. Returns how many were archived; with nothing to archive it writes
    nothing and returns 0, so a retried compaction adds no second summary.
    ``keep`` is at most ``MAX_COUNT``.
    """
    # The bounds of a request come before its scope (422 before 403), as the
    # API has always answered.
    if isinstance(keep, int) and keep > MAX_COUNT:
        raise InvalidInput(f"must be at most {MAX_COUNT}", field="keep")
    scope.check_writes()
    key = clean_key(key)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise InvalidInput(f"must be a non-negative integer, got {keep!r}"[:200], field="keep")
    summary = clean_text(summary, "summary", max_length=10**7)
    if not summary.strip():
        raise InvalidInput("must not be empty", field="summary")
    summary = clean_message({"role": "system", "content": summary}, "summary").fields["content"]
    return _session_compact(key, summary, keep, now or timezone.now(), scope)


CHUNK = 500  # ids per IN (...): below every database's parameter limit


@dataclass(frozen=True)
class StoredMarks:
    """What ``messages_archive_stored`` changed: messages archived, summaries marked."""

    archived: int
    summaries: int


@transaction.atomic
def messages_archive_stored(
    *,
    key: str,
    archived: Mapping[str, datetime],
    summaries: Iterable[str] = (),
    scope: KeyScope = FULL,
) -> StoredMarks:
    """Carry an agent store's compaction over to messages Fleet already holds
    (importers, ``fleet-follow``).

    ``archived`` maps a ``message_id`` to the time the store archived it. Only
    messages still active are archived -- never one un-archived or moved -- so
    a re-import after the agent compacted carries its archive over and a
    second one changes nothing. ``summaries`` names the store's compaction
    summaries: stored ``system`` messages become ``is_summary`` (the context
    view puts them first, as it does Fleet's own). Totals and rollups stay.
    """
    scope.check_writes()
    session = lock_existing(clean_key(key), scope)
    by_moment: dict[datetime, list[str]] = {}
    for message_id, moment in archived.items():
        by_moment.setdefault(moment, []).append(message_id)
    count = 0
    for moment, ids in by_moment.items():
        for offset in range(0, len(ids), CHUNK):
            count += Message.objects.filter(
                session=session,
                message_id__in=ids[offset : offset + CHUNK],
                compacted_at__isnull=True,
            ).update(compacted_at=moment)
    marked = 0
    named = list(dict.fromkeys(summaries))
    rollup = Rollup()
    for offset in range(0, len(named), CHUNK):
        found = Message.objects.filter(
            session=session,
            message_id__in=named[offset : offset + CHUNK],
            role=Role.SYSTEM,
            is_summary=False,
        )
        for message in found:
            # A summary is bookkeeping, not ingest: the rollup's message count
            # drops it, as if it had arrived marked (accounting.rollup_add).
            before = copy.copy(message)
            message.is_summary = True
            correct(session, before, message, rollup)
            message.save(update_fields=["is_summary"])
            marked += 1
    rollup.apply()
    return StoredMarks(archived=count, summaries=marked)


@transaction.atomic
def session_delete(*, key: str, now: datetime | None = None, scope: KeyScope = FULL) -> None:
    """Delete the session with its messages and leave a tombstone for its key.

    Daily rollups are kept: the money was spent. Raises ``SessionGone`` when
    the key is already a tombstone and ``SessionNotFound`` when it never existed.
    """
    scope.check_writes()
    key = clean_key(key)
    now = now or timezone.now()
    session = lock_existing(key, scope)
    Message.objects.filter(session=session).delete()
    Session.objects.filter(pk=session.pk).delete()
    Tombstone.objects.update_or_create(key=key, defaults={"deleted_at": now})
