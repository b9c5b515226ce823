"""Locking and creating sessions; session upsert, status and reconciliation.

The rules these protect:

* A write locks the session row (``SELECT … FOR UPDATE`` on PostgreSQL;
  SQLite's ``BEGIN IMMEDIATE`` takes the write lock up front), so concurrent
  writes to one session queue and never collide; two writers creating the
  same key end with one session.
* A write through a scoped API key touches only sessions of the key's agents
  and never moves a session to another agent; a read-only key writes nothing.
  The scope (``sessions.scopes.KeyScope``, default: full) is checked on the
  locked row, in the write's transaction.
* A deleted key (a tombstone) is never created again by a write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from sessions.choices import ENDED_STATUSES, State, Status
from sessions.errors import InvalidInput, SessionGone
from sessions.inputs import (
    SessionIn,
    check_metadata_size,
    clean_choice,
    clean_key,
    clean_session_fields,
    clean_text,
)
from sessions.models import Session, Tombstone
from sessions.money import to_nanos
from sessions.rollups import COUNTERS as ROLLUP_COUNTERS
from sessions.rollups import Rollup
from sessions.scopes import FULL, KeyScope
from sessions.selectors import session_get
from sessions.services.accounting import save_session

# Session routing context: a write never replaces a stored value with an empty one.
CONTEXT_FIELDS = ("channel_ref", "room_id", "sender_id")


# --- locking and creating sessions -------------------------------------------


def _lock(key: str) -> Session | None:
    return Session.objects.select_for_update().filter(key=key).first()


def lock_existing(key: str, scope: KeyScope = FULL) -> Session:
    session = session_get(key, for_update=True)
    scope.check_write(session.agent, field="key")
    return session


def _claim(session: Session, fields: SessionIn, scope: KeyScope) -> Session:
    """The locked ``session`` if ``scope`` may write it and the agent ``fields`` name."""
    scope.check_write(session.agent, field="key")
    if "agent" in fields.values:
        scope.check_write(fields.values["agent"], field="agent")
    return session


def lock_or_create(
    key: str, fields: SessionIn, now: datetime, rollup: Rollup, scope: KeyScope = FULL
) -> tuple[Session, bool]:
    session = _lock(key)
    if session is not None:
        return _claim(session, fields, scope), False
    if Tombstone.objects.filter(key=key).exists():
        raise SessionGone(
            f"session {key!r} was deleted; writes to a deleted key are refused", field="key"
        )
    agent = scope.agent_for_new_session(fields.values.get("agent"))
    if agent is not None and fields.values.get("agent") != agent:
        fields = SessionIn(
            values={**fields.values, "agent": agent}, metadata=fields.metadata, totals=fields.totals
        )
    session = Session(key=key, created_at=now, last_active_at=now)
    set_fields(session, fields, now)
    try:
        with transaction.atomic():
            session.save(force_insert=True)
    except IntegrityError:
        # Another writer created it a moment ago: use theirs.
        existing = _lock(key)
        if existing is None:
            raise
        return _claim(existing, fields, scope), False
    rollup.add(
        at=session.created_at,
        agent=session.agent,
        model=session.model,
        channel=session.channel,
        sessions_started=1,
    )
    return session, True


def set_fields(session: Session, fields: SessionIn, now: datetime) -> set[str]:
    """Apply validated session fields; returns the names of the fields changed."""
    changed: set[str] = set()
    values = dict(fields.values)
    for name in CONTEXT_FIELDS:
        if name in values and not values[name]:
            del values[name]

    status = values.pop("status", None)
    state = values.pop("state", None)
    turn_started_at = values.pop("turn_started_at", None)
    # Compared before the loop below stores the new turn_id.
    new_turn = "turn_id" in values and values["turn_id"] != session.turn_id
    for name, value in values.items():
        if getattr(session, name) != value:
            setattr(session, name, value)
            changed.add(name)

    if status is not None and status != session.status:
        session.status = status
        changed.add("status")
        if status in ENDED_STATUSES:
            if "ended_at" not in values:
                session.ended_at = now
                changed.add("ended_at")
            state = State.IDLE if state in (None, State.RUNNING) else state
        elif status == Status.ACTIVE and "ended_at" not in values:
            session.ended_at = None
            changed.add("ended_at")
    if state is not None:
        if state == State.RUNNING and session.status in ENDED_STATUSES:
            raise InvalidInput(
                f"a {session.status} session cannot start a turn; set status to active",
                field="state",
            )
        if state == State.RUNNING and (
            session.state != State.RUNNING or new_turn or turn_started_at
        ):
            session.turn_started_at = turn_started_at or now
            changed.add("turn_started_at")
        elif state != State.RUNNING and (session.turn_id or session.turn_started_at):
            session.turn_id = ""
            session.turn_started_at = None
            changed.update({"turn_id", "turn_started_at"})
        if session.state != state:
            session.state = state
            changed.add("state")

    if fields.metadata:
        merged = dict(session.metadata or {})
        for name, value in fields.metadata.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = value
        # The cap holds for the merged result: many small writes cannot grow
        # it without bound. A write that only removes keys always passes, so
        # metadata stored over the cap (before it existed) can be shrunk.
        if any(value is not None for value in fields.metadata.values()):
            check_metadata_size(merged, "metadata", merged=True)
        if merged != session.metadata:
            session.metadata = merged
            changed.add("metadata")
    return changed


def revive(session: Session, fields: SessionIn) -> bool:
    """An ``unknown`` session (presumed crashed) that shows new activity is active again.

    New messages or a turn change prove the agent is alive; a client that
    sends ``status`` itself decides.
    """
    if session.status == Status.UNKNOWN and "status" not in fields.values:
        session.status = Status.ACTIVE
        return True
    return False


# --- upsert, status ----------------------------------------------------------


@transaction.atomic
def _session_upsert(
    key: str, fields: SessionIn, now: datetime, scope: KeyScope
) -> tuple[Session, bool]:
    rollup = Rollup()
    session, created = lock_or_create(key, fields, now, rollup, scope)
    changed: set[str] = set()
    if not created:
        changed = set_fields(session, fields, now)
        if "state" in fields.values and revive(session, fields):
            changed.add("status")
    if fields.totals:
        before = {name: getattr(session, name) for name in fields.totals}
        before_cost = to_nanos(session.cost_usd)
        for name, value in fields.totals.items():
            setattr(session, name, value)
        # With the stored totals the parts must still fit their wholes.
        if session.reasoning_tokens > session.completion_tokens:
            raise InvalidInput(
                f"reasoning_tokens ({session.reasoning_tokens}) must not exceed completion_tokens "
                f"({session.completion_tokens}): reasoning is a part of completion",
                field="reasoning_tokens",
            )
        if session.cache_read_tokens + session.cache_creation_tokens > session.prompt_tokens:
            raise InvalidInput(
                "cache_read_tokens + cache_creation_tokens must not exceed prompt_tokens "
                f"({session.prompt_tokens}): cache tokens are a part of prompt",
                field="cache_read_tokens",
            )
        changed.update(fields.totals)
        # Reported totals and the rollup's counters share their names.
        delta = {
            name: fields.totals[name] - before[name]
            for name in fields.totals
            if name in ROLLUP_COUNTERS and name != "cost_usd"
        }
        if "cost_usd" in fields.totals:
            delta["cost_usd"] = to_nanos(fields.totals["cost_usd"]) - before_cost
        rollup.add(
            at=session.last_active_at,
            agent=session.agent,
            model=session.model,
            channel=session.channel,
            **delta,
        )
    if "last_active_at" not in fields.values:
        session.last_active_at = max(now, session.last_active_at)
        changed.add("last_active_at")
    if created:
        if fields.totals:
            save_session(session, [*fields.totals, "last_active_at"])
    else:
        save_session(session, changed)
    rollup.apply()
    return session, created


def session_upsert(
    *,
    key: str,
    fields: Mapping[str, Any] | SessionIn | None = None,
    now: datetime | None = None,
    scope: KeyScope = FULL,
) -> tuple[Session, bool]:
    """Create the session or update the given fields (absent fields keep their values).

    Reported totals (``turns``, token fields, ``cost_usd`` …) set the session's
    totals, for agents that report totals instead of messages; the daily
    rollup moves by the difference. Returns ``(session, created)``. ``scope``:
    the API key's (``Forbidden`` outside it).
    """
    scope.check_writes()
    key = clean_key(key)
    parsed = clean_session_fields(fields, path="")
    return _session_upsert(key, parsed, now or timezone.now(), scope)


@transaction.atomic
def session_set_status(*, key: str, status: str, now: datetime | None = None) -> Session:
    """Mark a session completed / cancelled / failed (or back to active).

    Ending a session records ``ended_at`` and closes any running turn.
    """
    key = clean_key(key)
    status = clean_choice(status, "status", Status)
    now = now or timezone.now()
    session = lock_existing(key)
    changed = set_fields(session, SessionIn(values={"status": status}), now)
    if changed:
        session.last_active_at = max(now, session.last_active_at)
        changed.add("last_active_at")
        save_session(session, changed)
    return session


def sessions_mark_unknown(
    *, agent: str, except_keys: Sequence[str] = (), scope: KeyScope = FULL
) -> int:
    """Mark every active session of ``agent`` except ``except_keys`` as unknown.

    An agent calls this when it starts: sessions of its previous process died
    with it. A conditional update: idempotent and safe while agents write.
    A scoped key reconciles only its own agents.
    """
    scope.check_writes()
    agent = clean_text(agent, "agent")
    if not agent:
        raise InvalidInput("must name the agent", field="agent")
    scope.check_write(agent)
    keys = [clean_key(key, f"except[{index}]") for index, key in enumerate(except_keys)]
    return (
        Session.objects.filter(agent=agent, status=Status.ACTIVE)
        .exclude(key__in=keys)
        .update(status=Status.UNKNOWN, state=State.IDLE, turn_id="", turn_started_at=None)
    )
