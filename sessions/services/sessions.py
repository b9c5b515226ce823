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
* A deleted key (a tombstone) is never created again by a write, except a
  session upsert that asks for it (``recreate``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from sessions.bounds import MAX_DURATION_MS, MAX_EXCEPT_KEYS
from sessions.choices import ENDED_STATUSES, TOKEN_FIELDS, State, Status, TurnOutcome
from sessions.errors import InvalidInput, SessionGone
from sessions.inputs import (
    SessionIn,
    TurnIn,
    check_metadata_size,
    clean_choice,
    clean_key,
    clean_session_fields,
    clean_text,
)
from sessions.models import Session, Tombstone, Turn
from sessions.money import to_nanos
from sessions.pricing import PriceBook
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


GONE_HINT = "send recreate: true to start a new session under this key"


def lock_or_create(
    key: str,
    fields: SessionIn,
    now: datetime,
    rollup: Rollup,
    scope: KeyScope = FULL,
    *,
    recreate: bool = False,
) -> tuple[Session, bool]:
    """The locked session ``key``, created if there is none.

    A deleted key (a tombstone) is refused (``SessionGone``) unless
    ``recreate``: then the tombstone goes and a new session starts under the
    key. ``recreate`` changes nothing for a key that has a session.
    """
    session = _lock(key)
    if session is not None:
        return _claim(session, fields, scope), False
    tombstone = Tombstone.objects.filter(key=key)
    if not recreate and tombstone.exists():
        raise SessionGone(
            f"session {key!r}"[:280] + " was deleted; writes to a deleted key are refused "
            f"(PUT /api/v1/sessions/{{key}}: {GONE_HINT})",
            field="key",
        )
    agent = scope.agent_for_new_session(fields.values.get("agent"))
    if recreate:
        # Removed, not kept beside the new session: a key has one fate at a
        # time, and deleting the new session leaves a fresh tombstone.
        tombstone.delete()
    if agent is not None and fields.values.get("agent") != agent:
        fields = SessionIn(
            values={**fields.values, "agent": agent}, metadata=fields.metadata, totals=fields.totals
        )
    session = Session(key=key, created_at=now, last_active_at=now)
    set_fields(session, fields, now, rollup)
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


def set_fields(
    session: Session, fields: SessionIn, now: datetime, rollup: Rollup | None = None
) -> set[str]:
    """Apply validated session fields; returns the names of the fields changed.

    A turn that ends here (the state leaves ``running`` for idle or error,
    also by ending the session) is recorded (``Turn``) with its duration,
    start to ``now``, and counted into ``rollup``'s latency (kind ``turn``):
    turn durations are kept with the write, never derived from the messages
    on a page view.
    """
    changed: set[str] = set()
    running_since = session.turn_started_at if session.state == State.RUNNING else None
    running_turn = session.turn_id
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
        changed |= _set_turn(session, state, new_turn, turn_started_at, now)
        if session.state != state:
            session.state = state
            changed.add("state")
    if running_since is not None and session.state != State.RUNNING and rollup is not None:
        rollup.add_turn(
            session_id=session.pk,
            turn_id=running_turn,
            started_at=running_since,
            ended_at=now,
            duration_ms=turn_duration_ms(running_since, now),
            outcome=session.state,
            agent=session.agent,
            model=session.model,
        )

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


# The running turn of a session closed by a bulk write: what ``end_turns`` needs.
RUNNING_TURN_FIELDS = ("id", "turn_id", "turn_started_at", "agent", "model")


def end_turns(
    running: Sequence[Mapping[str, Any]], *, ended_at: datetime, outcome: str, rollup: Rollup
) -> None:
    """Record the running turns of sessions a bulk write just closed (reconcile,
    ``sessions_mark_unknown``), as ``set_fields`` does for one: a ``Turn`` each
    (``outcome``: ``TurnOutcome``), counted into ``rollup``'s latency. Each row
    holds ``RUNNING_TURN_FIELDS`` as they were before the write."""
    for row in running:
        started = row["turn_started_at"]
        if started is None:
            continue
        rollup.add_turn(
            session_id=row["id"],
            turn_id=row["turn_id"],
            started_at=started,
            ended_at=ended_at,
            duration_ms=turn_duration_ms(started, ended_at),
            outcome=outcome,
            agent=row["agent"],
            model=row["model"],
        )


@transaction.atomic
def turns_record(*, key: str, turns: Sequence[TurnIn]) -> int:
    """Record finished turns an import carries (a Fleet export's), each once:
    a turn already stored for the session (same id, start and end) is skipped,
    so a re-import adds nothing. Each new one is counted into the latency
    rollup (kind ``turn``, the session's agent and model, the day it ended),
    as when it ended. Returns how many were recorded."""
    if not turns:
        return 0
    session = lock_existing(key)
    stored = set(
        Turn.objects.filter(
            session=session,
            ended_at__gte=min(turn.ended_at for turn in turns),
            ended_at__lte=max(turn.ended_at for turn in turns),
        ).values_list("turn_id", "started_at", "ended_at")
    )
    rollup = Rollup()
    recorded = 0
    for turn in turns:
        identity = (turn.turn_id, turn.started_at, turn.ended_at)
        if identity in stored:
            continue
        stored.add(identity)
        rollup.add_turn(
            session_id=session.pk,
            turn_id=turn.turn_id,
            started_at=turn.started_at,
            ended_at=turn.ended_at,
            duration_ms=turn.duration_ms,
            outcome=turn.outcome,
            agent=session.agent,
            model=session.model,
        )
        recorded += 1
    rollup.apply()
    return recorded


def turn_duration_ms(started: datetime, ended: datetime) -> int:
    """A turn's duration in whole milliseconds, within ``[0, MAX_DURATION_MS]``
    (a start sent in the future counts 0; a turn longer than the bound, the
    bound: the last latency bucket)."""
    milliseconds = (ended - started) // timedelta(milliseconds=1)
    return min(max(0, milliseconds), MAX_DURATION_MS)


def _set_turn(
    session: Session, state: str, new_turn: bool, turn_started_at: datetime | None, now: datetime
) -> set[str]:
    """The turn's start for the state the session enters; the fields changed.

    ``running`` starts the clock (a new turn restarts it); ``error`` keeps the
    turn that failed, id and start (a turn named anew has the start sent with
    it, or none known); ``idle`` clears both.
    """
    if state == State.RUNNING:
        if session.state != State.RUNNING or new_turn or turn_started_at:
            session.turn_started_at = turn_started_at or now
            return {"turn_started_at"}
    elif state == State.ERROR:
        if turn_started_at or new_turn:
            session.turn_started_at = turn_started_at
            return {"turn_started_at"}
    elif session.turn_id or session.turn_started_at:
        session.turn_id = ""
        session.turn_started_at = None
        return {"turn_id", "turn_started_at"}
    return set()


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
    key: str, fields: SessionIn, now: datetime, scope: KeyScope, recreate: bool = False
) -> tuple[Session, bool]:
    rollup = Rollup()
    session, created = lock_or_create(key, fields, now, rollup, scope, recreate=recreate)
    changed: set[str] = set()
    if not created:
        changed = set_fields(session, fields, now, rollup)
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
        if (unpriced := _reported_unpriced(session, fields)) is not None:
            delta["unpriced_calls"] = unpriced - session.unpriced_calls
            session.unpriced_calls = unpriced
            changed.add("unpriced_calls")
        rollup.add(
            at=session.last_active_at,
            agent=session.agent,
            model=session.model,
            channel=session.channel,
            project=session.project_root,
            **delta,
        )
    if "last_active_at" not in fields.values:
        session.last_active_at = max(now, session.last_active_at)
        changed.add("last_active_at")
    if created:
        if fields.totals:
            save_session(session, [*fields.totals, "unpriced_calls", "last_active_at"])
    else:
        save_session(session, changed)
    rollup.apply()
    return session, created


def _reported_unpriced(session: Session, fields: SessionIn) -> int | None:
    """The session's ``unpriced_calls`` after reported totals, or ``None``: unchanged.

    Reported tokens with no cost, for a model Fleet cannot price, are unpriced
    (DESIGN: never a fake $0): they count as one unpriced call until the agent
    reports a cost. A session without messages owes its unpriced count to its
    reported totals alone, so a reported cost clears it; messages' unpriced
    calls are theirs (reprice and corrections move them).
    """
    if "cost_usd" in fields.totals:
        return 0 if session.message_count == 0 and session.unpriced_calls else None
    if not fields.totals.keys() & set(TOKEN_FIELDS) or session.unpriced_calls:
        return None
    tokens = session.prompt_tokens + session.completion_tokens
    if not tokens or session.cost_usd:
        return None
    if PriceBook.load().rates(session.model, session.last_active_at) is not None:
        return None
    return 1


def session_upsert(
    *,
    key: str,
    fields: Mapping[str, Any] | SessionIn | None = None,
    now: datetime | None = None,
    scope: KeyScope = FULL,
    recreate: Any = False,
) -> tuple[Session, bool]:
    """Create the session or update the given fields (absent fields keep their values).

    Reported totals (``turns``, token fields, ``cost_usd`` …) set the session's
    totals, for agents that report totals instead of messages; the daily
    rollup moves by the difference. Returns ``(session, created)``. ``scope``:
    the API key's (``Forbidden`` outside it). A deleted key is refused
    (``SessionGone``) unless ``recreate`` is true: then a new session starts
    under it (new row, seq from 1; the tombstone is removed). On a key with a
    session ``recreate`` is ignored, so a retried recreate is harmless.
    """
    scope.check_writes()
    if not isinstance(recreate, bool):
        raise InvalidInput("must be true or false", field="recreate")
    key = clean_key(key)
    parsed = clean_session_fields(fields, path="")
    return _session_upsert(key, parsed, now or timezone.now(), scope, recreate)


@transaction.atomic
def session_set_status(*, key: str, status: str, now: datetime | None = None) -> Session:
    """Mark a session completed / cancelled / failed (or back to active).

    Ending a session records ``ended_at`` and closes any running turn.
    """
    key = clean_key(key)
    status = clean_choice(status, "status", Status)
    now = now or timezone.now()
    session = lock_existing(key)
    rollup = Rollup()
    changed = set_fields(session, SessionIn(values={"status": status}), now, rollup)
    if changed:
        session.last_active_at = max(now, session.last_active_at)
        changed.add("last_active_at")
        save_session(session, changed)
    rollup.apply()
    return session


def sessions_mark_unknown(
    *, agent: str, except_keys: Sequence[str] = (), scope: KeyScope = FULL
) -> int:
    """Mark every active session of ``agent`` except ``except_keys`` as unknown.

    An agent calls this when it starts: sessions of its previous process died
    with it. A conditional update: idempotent and safe while agents write.
    A scoped key reconciles only its own agents. ``except_keys``: a list or
    tuple of at most ``MAX_EXCEPT_KEYS`` keys.
    """
    # The bounds of a request come before its scope (422 before 403), as the
    # API has always answered.
    if not isinstance(except_keys, (list, tuple)):
        raise InvalidInput("must be a list of session keys", field="except")
    if len(except_keys) > MAX_EXCEPT_KEYS:
        raise InvalidInput(f"must list at most {MAX_EXCEPT_KEYS} keys", field="except")
    scope.check_writes()
    agent = clean_text(agent, "agent")
    if not agent:
        raise InvalidInput("must name the agent", field="agent")
    scope.check_write(agent)
    keys = [clean_key(key, f"except[{index}]") for index, key in enumerate(except_keys)]
    now = timezone.now()
    with transaction.atomic():
        marked = Session.objects.filter(agent=agent, status=Status.ACTIVE).exclude(key__in=keys)
        # Their running turns end here, unknown: read (and locked) before the
        # update clears them.
        running = list(
            marked.filter(state=State.RUNNING)
            .select_for_update()
            .order_by("id")
            .values(*RUNNING_TURN_FIELDS)
        )
        # A session that started a turn since is alive: left as it is.
        locked = Q(pk__in=[row["id"] for row in running])
        count = marked.filter(~Q(state=State.RUNNING) | locked).update(
            status=Status.UNKNOWN, state=State.IDLE, turn_id="", turn_started_at=None
        )
        rollup = Rollup()
        end_turns(running, ended_at=now, outcome=TurnOutcome.UNKNOWN, rollup=rollup)
        rollup.apply()
    return count
