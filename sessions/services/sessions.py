"""Writes to the session store. Each function is one transaction.

The rules these protect:

* A refused write writes nothing: input is validated before the transaction,
  and every domain error inside it rolls the whole transaction back.
* ``seq`` is gap-free per session at append time. Appends lock the session row
  (``SELECT … FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` takes
  the write lock up front), so concurrent appends queue and never collide.
* Session totals are the spending history and the daily rollup follows them;
  both move in the same transaction as the messages. Clear and compact never
  lower them; update-last and remove-last move them by the difference.
* An append costs the same on a long session as on an empty one: it never
  reads or rewrites the transcript (only the session row and the new rows).
* A write through a scoped API key touches only sessions of the key's agents
  and never moves a session to another agent; a read-only key writes nothing.
  The scope (``sessions.scopes.KeyScope``, default: full) is checked on the
  locked row, in the write's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from sessions.bounds import MAX_COST_NANOS, MAX_TOTAL
from sessions.bulk import NewMessage, insert_messages
from sessions.choices import ENDED_STATUSES, TOKEN_FIELDS, CostSource, Role, State, Status
from sessions.errors import Conflict, InvalidInput, SessionGone
from sessions.inputs import (
    MAX_COUNT,
    MESSAGE_FIELDS,
    MessageIn,
    SessionIn,
    UsageIn,
    check_metadata_size,
    clean_choice,
    clean_int,
    clean_key,
    clean_message,
    clean_messages,
    clean_session_fields,
    clean_text,
)
from sessions.models import Message, Session, Tombstone
from sessions.money import from_nanos, to_nanos
from sessions.pricing import PriceBook
from sessions.rollups import Rollup
from sessions.scopes import FULL, KeyScope
from sessions.selectors import session_get

# Session routing context: a write never replaces a stored value with an empty one.
CONTEXT_FIELDS = ("channel_ref", "room_id", "sender_id")
SESSION_COUNTERS = ("turns", "tool_call_count", "api_calls", "unpriced_calls", *TOKEN_FIELDS)
# What a write to a session's transcript changes on its row: saved by name, so
# an append does not rewrite the session's metadata, goal or todo text.
TRANSCRIPT_FIELDS = (*SESSION_COUNTERS, "cost_usd", "message_count", "last_seq", "last_active_at")


# --- contributions: what one message adds to totals ---------------------------


def contribution(message: Message) -> dict[str, int]:
    """The counters one stored message adds to its session's totals.

    A turn is an assistant message with content; tool calls are the length of
    ``tool_calls``; an API call is a message that carries usage. Cost is in
    nano-dollars so sums stay exact.
    """
    has_usage = bool(message.cost_source)
    tool_calls = message.tool_calls
    counts = {
        "turns": int(message.role == Role.ASSISTANT and bool(message.content)),
        # Imported or hand-edited rows may hold something other than a list.
        "tool_call_count": len(tool_calls) if isinstance(tool_calls, list) else 0,
        "api_calls": int(has_usage),
        "unpriced_calls": int(message.cost_source == CostSource.UNPRICED),
        "cost_usd": to_nanos(message.cost_usd) if message.cost_usd is not None else 0,
    }
    for name in TOKEN_FIELDS:
        counts[name] = getattr(message, name) if has_usage else 0
    return counts


def _diff(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {name: after.get(name, 0) - before.get(name, 0) for name in after.keys() | before.keys()}


def _apply_to_session(session: Session, delta: Mapping[str, int]) -> None:
    for name in SESSION_COUNTERS:
        if delta.get(name):
            value = max(0, getattr(session, name) + delta[name])
            _check_total(name, value, delta[name])
            setattr(session, name, value)
    if delta.get("cost_usd"):
        nanos = max(0, to_nanos(session.cost_usd) + delta["cost_usd"])
        _check_total("cost_usd", nanos, delta["cost_usd"])
        session.cost_usd = from_nanos(nanos)


def _check_total(name: str, value: int, delta: int) -> None:
    """A write that takes a total past its bound (``sessions.bounds``) is refused as input.

    Only a write that raises the total is refused: a total past the bound
    (stored by an older version) can still be corrected downwards.
    """
    if name == "cost_usd":
        limit = MAX_COST_NANOS
    elif name in TOKEN_FIELDS:
        limit = MAX_TOTAL
    else:
        limit = MAX_COUNT
    if value > limit and delta > 0:
        shown = from_nanos(limit) if name == "cost_usd" else limit
        raise InvalidInput(
            f"the session's {name} total would exceed its limit of {shown}", field=name
        )


def _rollup_add(
    rollup: Rollup, session: Session, message: Message, counts: Mapping[str, int], sign: int = 1
) -> None:
    rollup.add(
        at=message.created_at,
        agent=session.agent,
        model=message.model or session.model,
        channel=session.channel,
        sign=sign,
        # A compaction summary is the server's bookkeeping, not ingest: the
        # rollup stays untouched by compaction (only its usage, if any, counts).
        messages=int(not message.is_summary),
        turns=counts["turns"],
        tool_calls=counts["tool_call_count"],
        api_calls=counts["api_calls"],
        unpriced_calls=counts["unpriced_calls"],
        cost_usd=counts["cost_usd"],
        **{name: counts[name] for name in TOKEN_FIELDS},
    )


def _save_session(session: Session, fields: Iterable[str]) -> None:
    try:
        with transaction.atomic():
            session.save(update_fields=sorted(set(fields)))
    except IntegrityError as exc:
        raise InvalidInput(f"the session's totals would break a rule: {exc}") from None


# --- locking and creating sessions -------------------------------------------


def _lock(key: str) -> Session | None:
    return Session.objects.select_for_update().filter(key=key).first()


def _lock_existing(key: str, scope: KeyScope = FULL) -> Session:
    session = session_get(key, for_update=True)
    scope.check_write(session.agent, field="key")
    return session


def _claim(session: Session, fields: SessionIn, scope: KeyScope) -> Session:
    """The locked ``session`` if ``scope`` may write it and the agent ``fields`` name."""
    scope.check_write(session.agent, field="key")
    if "agent" in fields.values:
        scope.check_write(fields.values["agent"], field="agent")
    return session


def _lock_or_create(
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
    _set_fields(session, fields, now)
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


def _set_fields(session: Session, fields: SessionIn, now: datetime) -> set[str]:
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


def _revive(session: Session, fields: SessionIn) -> bool:
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
    session, created = _lock_or_create(key, fields, now, rollup, scope)
    changed: set[str] = set()
    if not created:
        changed = _set_fields(session, fields, now)
        if "state" in fields.values and _revive(session, fields):
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
        delta = {
            name: fields.totals[name] - before[name]
            for name in fields.totals
            if name in TOKEN_FIELDS or name == "api_calls"
        }
        if "turns" in fields.totals:
            delta["turns"] = fields.totals["turns"] - before["turns"]
        if "tool_call_count" in fields.totals:
            delta["tool_calls"] = fields.totals["tool_call_count"] - before["tool_call_count"]
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
            _save_session(session, [*fields.totals, "last_active_at"])
    else:
        _save_session(session, changed)
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
    session = _lock_existing(key)
    changed = _set_fields(session, SessionIn(values={"status": status}), now)
    if changed:
        session.last_active_at = max(now, session.last_active_at)
        changed.add("last_active_at")
        _save_session(session, changed)
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


# --- append ------------------------------------------------------------------


@dataclass(frozen=True)
class AppendResult:
    appended: int
    skipped: int
    first_seq: int | None
    last_seq: int | None
    session: Session
    created: bool


def _build_message(
    session: Session,
    item: MessageIn,
    seq: int,
    now: datetime,
    prices: PriceBook | None,
    path: str = "message",
) -> tuple[NewMessage, PriceBook | None]:
    message = NewMessage(
        session_id=session.pk,
        seq=seq,
        message_id=item.message_id,
        role=item.role,
        content=item.content,
        name=item.name,
        agent_name=item.agent_name,
        tool_calls=item.tool_calls,
        tool_call_id=item.tool_call_id,
        reasoning=item.reasoning,
        model=item.model,
        provider_response_id=item.provider_response_id,
        status=item.status,
        is_summary=item.is_summary,
        created_at=item.created_at or now,
        compacted_at=item.compacted_at,
    )
    prices = _set_usage(message, item.usage, session, prices, f"{path}.usage")
    return message, prices


def _set_usage(
    message: Message | NewMessage,
    usage: UsageIn | None,
    session: Session,
    prices: PriceBook | None,
    path: str = "usage",
) -> PriceBook | None:
    """Store usage on the message, pricing it unless the agent reported the cost.

    A cost that the price makes past the bound of money is refused (422 naming
    ``path``), never stored nor a crash.
    """
    if usage is None:
        for name in TOKEN_FIELDS:
            setattr(message, name, 0)
        message.cost_usd = None
        message.cost_source = ""
        return prices
    for name in TOKEN_FIELDS:
        setattr(message, name, getattr(usage, name))
    if (
        usage.cost_source in (CostSource.REPORTED, CostSource.COMPUTED)
        and usage.cost_usd is not None
    ):
        message.cost_usd = usage.cost_usd
        message.cost_source = usage.cost_source
    elif usage.cost_source == CostSource.UNPRICED:
        message.cost_usd = None
        message.cost_source = CostSource.UNPRICED
    else:
        if prices is None:
            prices = PriceBook.load()
        model = message.model or session.model
        try:
            message.cost_usd, message.cost_source = prices.price(
                model=model,
                at=message.created_at,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_creation_tokens=usage.cache_creation_tokens,
            )
        except ValueError as exc:
            raise InvalidInput(
                f"priced at {model[:100]}'s rates this usage would cost too much: {exc}",
                field=path,
            ) from None
    return prices


def _append_rows(
    session: Session,
    items: Sequence[MessageIn],
    now: datetime,
    rollup: Rollup,
    prices: PriceBook | None = None,
) -> tuple[list[NewMessage], int]:
    """Insert ``items`` after the session's last message; returns (stored, skipped).

    The caller holds the session's row lock and saves the session afterwards.
    """
    wanted = [item.message_id for item in items if item.message_id]
    seen: set[str] = set()
    if wanted:
        for start in range(0, len(wanted), 500):
            seen.update(
                Message.objects.filter(
                    session=session, message_id__in=wanted[start : start + 500]
                ).values_list("message_id", flat=True)
            )
    rows: list[NewMessage] = []
    skipped = 0
    seq = session.last_seq
    totals = dict.fromkeys((*SESSION_COUNTERS, "cost_usd"), 0)
    for index, item in enumerate(items):
        if item.message_id:
            if item.message_id in seen:
                skipped += 1
                continue
            seen.add(item.message_id)
        if item.seq is not None:
            # A trusted import keeps the source's seq; one already passed is stored.
            if item.seq <= seq:
                skipped += 1
                continue
            seq = item.seq
        else:
            seq += 1
        message, prices = _build_message(session, item, seq, now, prices, f"messages[{index}]")
        counts = contribution(message)
        for name, value in counts.items():
            totals[name] += value
        _rollup_add(rollup, session, message, counts)
        rows.append(message)
    if rows:
        insert_messages(rows)
        session.last_seq = seq
        session.message_count += len(rows)
        _apply_to_session(session, totals)
    return rows, skipped


@transaction.atomic
def _messages_append(
    key: str, items: list[MessageIn], fields: SessionIn, now: datetime, scope: KeyScope
) -> AppendResult:
    rollup = Rollup()
    session, created = _lock_or_create(key, fields, now, rollup, scope)
    changed: set[str] = set()
    if not created and fields:
        changed = _set_fields(session, fields, now)
    rows, skipped = _append_rows(session, items, now, rollup)
    if rows and _revive(session, fields):
        changed.add("status")
    session.last_active_at = max(now, session.last_active_at)
    session.save(update_fields=[*TRANSCRIPT_FIELDS, *changed])
    rollup.apply()
    return AppendResult(
        appended=len(rows),
        skipped=skipped,
        first_seq=rows[0].seq if rows else None,
        last_seq=rows[-1].seq if rows else None,
        session=session,
        created=created,
    )


def messages_append(
    *,
    key: str,
    messages: Sequence[Mapping[str, Any] | MessageIn],
    session: Mapping[str, Any] | SessionIn | None = None,
    convention: str = "otel",
    now: datetime | None = None,
    scope: KeyScope = FULL,
) -> AppendResult:
    """Append a batch of messages, all or nothing.

    Creates the session (with the given ``session`` fields) if needed, refuses
    a deleted key, skips messages whose ``message_id`` is already stored (so
    retries never duplicate), prices usage the agent did not price, and moves
    the session totals and daily rollup in the same transaction.
    """
    scope.check_writes()
    key = clean_key(key)
    items = clean_messages(list(messages), convention=convention)
    fields = clean_session_fields(session)
    if fields.totals:
        name = sorted(fields.totals)[0]
        raise InvalidInput(
            "totals are reported with a session upsert, not with an append",
            field=f"session.{name}",
        )
    return _messages_append(key, items, fields, now or timezone.now(), scope)


# --- corrections: update-last, remove-last, clear, admin edits ----------------


def _last_message(session: Session) -> Message | None:
    if session.last_seq == 0:
        return None
    return Message.objects.filter(session=session, seq=session.last_seq).first()


def _replace_usage_and_fields(message: Message, patch: MessageIn, session: Session) -> None:
    for name in MESSAGE_FIELDS - {"usage"}:
        if name in patch.provided:
            value = getattr(patch, name)
            if name == "created_at" and value is None:
                continue  # null keeps the stored time
            setattr(message, name, value)
    if "usage" in patch.provided or ("model" in patch.provided and message.cost_source):
        usage = patch.usage
        if "usage" not in patch.provided:
            # The model changed: price the stored usage again at the new model.
            usage = _usage_of(message)
        _set_usage(message, usage, session, None, "message.usage")


def _usage_of(message: Message) -> UsageIn | None:
    if not message.cost_source:
        return None
    usage = UsageIn(**{name: getattr(message, name) for name in TOKEN_FIELDS})
    if message.cost_source == CostSource.REPORTED:
        usage.cost_usd = message.cost_usd
        usage.cost_source = CostSource.REPORTED
    return usage


def _correct(
    session: Session, before: Message | None, after: Message | None, rollup: Rollup
) -> None:
    """Move totals and rollup from ``before``'s contribution to ``after``'s."""
    old = contribution(before) if before is not None else {}
    new = contribution(after) if after is not None else {}
    _apply_to_session(session, _diff(new, old))
    if before is not None:
        _rollup_add(rollup, session, before, old, sign=-1)
    if after is not None:
        _rollup_add(rollup, session, after, new)


@transaction.atomic
def _message_update_last(key: str, patch: MessageIn, now: datetime, scope: KeyScope) -> Message:
    session = _lock_existing(key, scope)
    message = _last_message(session)
    if message is None:
        raise Conflict(f"session {key!r} has no message to update")
    before = Message(
        **{f.attname: getattr(message, f.attname) for f in Message._meta.concrete_fields}
    )
    _replace_usage_and_fields(message, patch, session)
    if message.role == Role.TOOL and not message.tool_call_id:
        raise InvalidInput(
            "a tool message must say which call it answers", field="message.tool_call_id"
        )
    rollup = Rollup()
    _correct(session, before, message, rollup)
    try:
        with transaction.atomic():
            message.save()
    except IntegrityError:
        raise Conflict("another message of this session already has that message_id") from None
    session.last_active_at = max(now, session.last_active_at)
    session.save(update_fields=TRANSCRIPT_FIELDS)
    rollup.apply()
    return message


def message_update_last(
    *,
    key: str,
    message: Mapping[str, Any],
    convention: str = "otel",
    now: datetime | None = None,
    scope: KeyScope = FULL,
) -> Message:
    """Replace the fields given in ``message`` on the session's last message.

    Streaming agents store a placeholder, then update it as tokens arrive.
    Absent fields keep their values; totals and the rollup move by the
    difference. Raises ``Conflict`` on an empty session.
    """
    scope.check_writes()
    key = clean_key(key)
    patch = clean_message(message, "message", convention=convention, partial=True)
    return _message_update_last(key, patch, now or timezone.now(), scope)


@transaction.atomic
def message_remove_last(*, key: str, now: datetime | None = None, scope: KeyScope = FULL) -> bool:
    """Remove the session's last message, taking its usage out of the totals.

    Returns ``False`` when the session has no message.
    """
    scope.check_writes()
    key = clean_key(key)
    now = now or timezone.now()
    session = _lock_existing(key, scope)
    message = _last_message(session)
    if message is None:
        return False
    rollup = Rollup()
    _correct(session, message, None, rollup)
    Message.objects.filter(pk=message.pk).delete()
    session.message_count = max(0, session.message_count - 1)
    session.last_seq = (
        Message.objects.filter(session=session).aggregate(last=Max("seq"))["last"] or 0
    )
    session.last_active_at = max(now, session.last_active_at)
    session.save(update_fields=TRANSCRIPT_FIELDS)
    rollup.apply()
    return True


@transaction.atomic
def messages_clear(*, key: str, now: datetime | None = None, scope: KeyScope = FULL) -> int:
    """Remove every message; the session and its totals (spending history) stay."""
    scope.check_writes()
    key = clean_key(key)
    now = now or timezone.now()
    session = _lock_existing(key, scope)
    removed, _ = Message.objects.filter(session=session).delete()
    session.message_count = 0
    session.last_seq = 0
    session.last_active_at = max(now, session.last_active_at)
    session.save(update_fields=["message_count", "last_seq", "last_active_at"])
    return removed


@transaction.atomic
def message_save_correction(*, message: Message) -> Message:
    """Save an edited message (the admin), keeping totals and rollup right.

    The stored row is the "before"; the edited instance is the "after".
    """
    session = Session.objects.select_for_update().get(pk=message.session_id)
    before = Message.objects.get(pk=message.pk)
    for name in TOKEN_FIELDS:
        if getattr(message, name) != getattr(before, name):
            # The bound of one message's tokens, as for an append (sessions.bounds).
            clean_int(getattr(message, name), name)
    if message.cost_source == CostSource.UNPRICED:
        message.cost_usd = None
    elif not message.cost_source:
        for name in TOKEN_FIELDS:
            setattr(message, name, 0)
        message.cost_usd = None
    elif message.cost_usd is None:
        message.cost_source = CostSource.UNPRICED
    rollup = Rollup()
    _correct(session, before, message, rollup)
    message.save()
    session.save(update_fields=TRANSCRIPT_FIELDS)
    rollup.apply()
    return message


# --- compaction, delete -------------------------------------------------------


@transaction.atomic
def _session_compact(key: str, summary: str, keep: int, now: datetime, scope: KeyScope) -> int:
    session = _lock_existing(key, scope)
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
    _append_rows(
        session,
        [MessageIn(role=Role.SYSTEM, content=summary, is_summary=True, created_at=now)],
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
    """
    scope.check_writes()
    key = clean_key(key)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise InvalidInput(f"must be a non-negative integer, got {keep!r}"[:200], field="keep")
    summary = clean_text(summary, "summary", max_length=10**7)
    if not summary.strip():
        raise InvalidInput("must not be empty", field="summary")
    summary = clean_message({"role": "system", "content": summary}, "summary").content or ""
    return _session_compact(key, summary, keep, now or timezone.now(), scope)


@transaction.atomic
def session_delete(*, key: str, now: datetime | None = None, scope: KeyScope = FULL) -> None:
    """Delete the session with its messages and leave a tombstone for its key.

    Daily rollups are kept: the money was spent. Raises ``SessionGone`` when
    the key is already a tombstone and ``SessionNotFound`` when it never existed.
    """
    scope.check_writes()
    key = clean_key(key)
    now = now or timezone.now()
    session = _lock_existing(key, scope)
    Message.objects.filter(session=session).delete()
    Session.objects.filter(pk=session.pk).delete()
    Tombstone.objects.update_or_create(key=key, defaults={"deleted_at": now})


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
