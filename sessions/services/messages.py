"""Appending messages and correcting them (update-last, remove-last, clear, admin edits).

The rules these protect:

* ``seq`` is gap-free per session at append time: appends hold the session's
  row lock (``sessions.services.sessions``), so concurrent appends queue.
* An append costs the same on a long session as on an empty one: it never
  reads or rewrites the transcript (only the session row and the new rows).
* A retried append never duplicates: a stored ``message_id`` is skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from sessions.bulk import insert_messages, new_message
from sessions.choices import TOKEN_FIELDS, CostSource, Role
from sessions.errors import Conflict, FleetError, InvalidInput
from sessions.fields import MESSAGE_NUMBER_BOUNDS, message_default
from sessions.inputs import (
    MessageIn,
    SessionIn,
    UsageIn,
    clean_key,
    clean_message,
    clean_messages,
    clean_session_fields,
)
from sessions.models import Message, Session
from sessions.pricing import PriceBook
from sessions.rollups import Rollup
from sessions.scopes import FULL, KeyScope
from sessions.services.accounting import (
    CONTRIBUTION_COUNTERS,
    SESSION_COUNTERS,
    TRANSCRIPT_FIELDS,
    apply_to_session,
    contribute,
    correct,
    rollup_counts,
    rollup_timings,
)
from sessions.services.sessions import lock_existing, lock_or_create, revive, set_fields
from sessions.usage import clean_int

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
) -> tuple[Message, PriceBook | None]:
    values = item.values()
    values.update(
        session_id=session.pk,
        seq=seq,
        is_summary=item.is_summary,
        created_at=item.created_at or now,
        compacted_at=item.compacted_at,
    )
    message = new_message(**values)
    prices = _set_usage(message, item.usage, session, prices, f"{path}.usage")
    return message, prices


def _set_usage(
    message: Message,
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


# SQLite bounds a statement's variables: message ids are looked up this many at a time.
ID_CHUNK = 500


def _with_message_ids(session: Session, ids: Sequence[str]) -> Iterator[QuerySet[Message]]:
    """The session's messages with these ``message_id``s, one query per chunk."""
    for start in range(0, len(ids), ID_CHUNK):
        yield Message.objects.filter(session=session, message_id__in=ids[start : start + ID_CHUNK])


def _copy(message: Message) -> Message:
    """An unsaved copy of ``message``'s stored values: the "before" of a correction."""
    return Message(
        **{f.attname: getattr(message, f.attname) for f in Message._meta.concrete_fields}
    )


def append_rows(
    session: Session,
    items: Sequence[MessageIn],
    now: datetime,
    rollup: Rollup,
    prices: PriceBook | None = None,
) -> tuple[list[Message], int]:
    """Insert ``items`` after the session's last message; returns (stored, skipped).

    The caller holds the session's row lock and saves the session afterwards.
    """
    wanted = [item.message_id for item in items if item.message_id]
    seen: set[str | None] = set()  # message_id is nullable; these rows hold wanted ids
    for stored in _with_message_ids(session, wanted):
        seen.update(stored.values_list("message_id", flat=True))
    rows, skipped, _ = build_rows(session, items, now, rollup, prices, seen)
    insert_messages(rows)
    return rows, skipped


def build_rows(
    session: Session,
    items: Sequence[MessageIn],
    now: datetime,
    rollup: Rollup,
    prices: PriceBook | None = None,
    seen: set[str | None] | None = None,
) -> tuple[list[Message], int, PriceBook | None]:
    """The rows ``items`` become after the session's last message, unsaved:
    seq, price, the session's totals and ``rollup`` moved; returns (rows,
    skipped, the price book loaded). ``seen``: message ids already stored
    (skipped, as retries are). ``append_rows`` inserts them; the benchmarks'
    bulk generator (``bench/generate.py``) copies them.
    """
    seen = set() if seen is None else seen
    rows: list[Message] = []
    skipped = 0
    seq = session.last_seq
    # One pass: each message's contribution is added once, to the sums of its
    # rollup key (a batch's messages mostly share their time and model); the
    # session's totals and the rollup are fed from those sums.
    sums: dict[tuple[datetime, str], dict[str, int]] = {}
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
        key = (message.created_at, message.model)
        counts = sums.get(key)
        if counts is None:
            counts = sums[key] = dict.fromkeys(_SUMMED, 0)
        contribute(message, counts)
        # A summary is the server's bookkeeping, not ingest (accounting.rollup_add).
        counts["message_count"] += not message.is_summary
        rollup_timings(rollup, session, message)
        rows.append(message)
    if rows:
        session.last_seq = seq
        session.message_count += len(rows)
        apply_to_session(
            session, {name: sum(counts[name] for counts in sums.values()) for name in _TOTALS}
        )
        for (at, model), counts in sums.items():
            rollup_counts(rollup, session, at=at, model=model, counts=counts)
    return rows, skipped, prices


# What a message adds to its session's totals, and what the rollup counts too.
_TOTALS = (*SESSION_COUNTERS, "cost_usd")
_SUMMED = (*CONTRIBUTION_COUNTERS, "message_count")


@transaction.atomic
def _messages_append(
    key: str, items: list[MessageIn], fields: SessionIn, now: datetime, scope: KeyScope
) -> AppendResult:
    rollup = Rollup()
    session, created = lock_or_create(key, fields, now, rollup, scope)
    changed: set[str] = set()
    if not created and fields:
        changed = set_fields(session, fields, now, rollup)
    rows, skipped = append_rows(session, items, now, rollup)
    if rows and revive(session, fields):
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
    convention: str | None = None,
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


_BATCH_INDEX = re.compile(r"^messages\[(\d+)\]")


def _in_whole(field: str, offset: int) -> str:
    """``messages[3].role`` of a batch starting at ``offset``, as a place in the whole list."""
    return _BATCH_INDEX.sub(lambda found: f"messages[{int(found[1]) + offset}]", field)


@transaction.atomic
def messages_append_all(
    *,
    key: str,
    messages: Sequence[Mapping[str, Any] | MessageIn],
    session: Mapping[str, Any] | SessionIn | None = None,
    convention: str = "otel",
    now: datetime | None = None,
    scope: KeyScope = FULL,
) -> AppendResult:
    """``messages_append`` for a transcript of any length (importers, the demo,
    the OTLP receiver): batches of at most ``FLEET_API_MAX_BATCH`` messages in
    one transaction, so still all or nothing. A refusal names the message by its
    place in ``messages`` (``messages[1500].role``), not in its batch.
    """
    size = settings.FLEET_API_MAX_BATCH
    results: list[AppendResult] = []
    for offset in range(0, max(len(messages), 1), size):
        try:
            results.append(
                messages_append(
                    key=key,
                    messages=list(messages[offset : offset + size]),
                    session=session,
                    convention=convention,
                    now=now,
                    scope=scope,
                )
            )
        except FleetError as error:
            if offset and error.field:
                error.field = _in_whole(error.field, offset)
            raise
    seqs = [r.first_seq for r in results if r.first_seq is not None]
    return AppendResult(
        appended=sum(r.appended for r in results),
        skipped=sum(r.skipped for r in results),
        first_seq=seqs[0] if seqs else None,
        last_seq=max((r.last_seq for r in results if r.last_seq is not None), default=None),
        session=results[-1].session,
        created=results[0].created,
    )


# --- completing stored messages (OTLP: a span and its events arrive apart) -----

# The fields ``messages_complete`` fills on a stored message that lacks them.
COMPLETED_FIELDS = frozenset(
    {
        "content",
        "reasoning",
        "tool_calls",
        "model",
        "provider_response_id",
        "agent_name",
        "status",
        "duration_ms",
        "time_to_first_token_ms",
    }
)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


@transaction.atomic
def messages_complete(
    *,
    key: str,
    messages: Sequence[MessageIn],
    now: datetime | None = None,
    scope: KeyScope = FULL,
) -> int:
    """Fill in, on the stored messages with the same ``message_id`` and role,
    the fields they lack (``COMPLETED_FIELDS``, and usage when they carry none);
    returns how many changed.

    Two records of one message can arrive apart (an OTLP span with the usage,
    its events with the content): whichever is stored first is completed by
    the other. Nothing stored is overwritten, so a retry changes nothing.
    Totals and the rollup move by the difference, as for update-last.
    """
    scope.check_writes()
    wanted = {item.message_id: item for item in messages if item.message_id is not None}
    if not wanted:
        return 0
    session = lock_existing(clean_key(key), scope)
    stored = [m for chunk in _with_message_ids(session, list(wanted)) for m in chunk]
    rollup = Rollup()
    changed = 0
    for message in stored:
        item = wanted.get(message.message_id or "")
        if item is None or item.role != message.role:
            continue
        before = _copy(message)
        names = [
            name
            for name, value in item.fields.items()
            if name in COMPLETED_FIELDS and not _empty(value) and _empty(getattr(message, name))
        ]
        for name in names:
            setattr(message, name, item.fields[name])
        priced = item.usage is not None and not message.cost_source
        if priced:
            _set_usage(message, item.usage, session, None, "message.usage")
        if not names and not priced:
            continue
        correct(session, before, message, rollup)
        message.save()
        changed += 1
    if changed:
        session.last_active_at = max(now or timezone.now(), session.last_active_at)
        session.save(update_fields=TRANSCRIPT_FIELDS)
        rollup.apply()
    return changed


# --- corrections: update-last, remove-last, clear, admin edits ----------------


def _last_message(session: Session) -> Message | None:
    if session.last_seq == 0:
        return None
    return Message.objects.filter(session=session, seq=session.last_seq).first()


# What update-last replaces together with ``content`` (zeroclaw replaces the
# whole message while streaming): the answer, its tool calls and its reasoning.
# Usage, model, status and the rest keep their values unless sent.
REPLACED_WITH_CONTENT = frozenset({"tool_calls", "reasoning"})


def _replace_usage_and_fields(message: Message, patch: MessageIn, session: Session) -> None:
    for name, value in patch.fields.items():
        if value is None:
            if name == "created_at":
                continue  # null keeps the stored time
            value = message_default(name)
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


@transaction.atomic
def _message_update_last(key: str, patch: MessageIn, now: datetime, scope: KeyScope) -> Message:
    session = lock_existing(key, scope)
    message = _last_message(session)
    if message is None:
        raise Conflict(f"session {key!r} has no message to update")
    before = _copy(message)
    _replace_usage_and_fields(message, patch, session)
    if message.role == Role.TOOL and not message.tool_call_id:
        raise InvalidInput(
            "a tool message must say which call it answers", field="message.tool_call_id"
        )
    rollup = Rollup()
    correct(session, before, message, rollup)
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
    convention: str | None = None,
    now: datetime | None = None,
    scope: KeyScope = FULL,
) -> Message:
    """Replace the fields given in ``message`` on the session's last message.

    Streaming agents store a placeholder, then update it as tokens arrive.
    Absent fields keep their values, except that ``content`` replaces the
    message's content fields together (``REPLACED_WITH_CONTENT``): a final
    message's tool calls and reasoning are what it sends, never stale ones
    of the placeholder. Totals and the rollup move by the difference. Raises
    ``Conflict`` on an empty session.
    """
    scope.check_writes()
    key = clean_key(key)
    patch = clean_message(message, "message", convention=convention, partial=True)
    if "content" in patch.fields:
        # Absent ones are cleared: None takes the model's default (no calls, no reasoning).
        for name in REPLACED_WITH_CONTENT:
            patch.fields.setdefault(name, None)
    return _message_update_last(key, patch, now or timezone.now(), scope)


@transaction.atomic
def message_remove_last(*, key: str, now: datetime | None = None, scope: KeyScope = FULL) -> bool:
    """Remove the session's last message, taking its usage out of the totals.

    Returns ``False`` when the session has no message.
    """
    scope.check_writes()
    key = clean_key(key)
    now = now or timezone.now()
    session = lock_existing(key, scope)
    message = _last_message(session)
    if message is None:
        return False
    rollup = Rollup()
    correct(session, message, None, rollup)
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
    session = lock_existing(key, scope)
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
    for name, maximum in MESSAGE_NUMBER_BOUNDS.items():
        value = getattr(message, name)
        if value is not None and value != getattr(before, name):
            clean_int(value, name, maximum=maximum)  # as for an append (sessions.bounds)
    if message.cost_source == CostSource.UNPRICED:
        message.cost_usd = None
    elif not message.cost_source:
        for name in TOKEN_FIELDS:
            setattr(message, name, 0)
        message.cost_usd = None
    elif message.cost_usd is None:
        message.cost_source = CostSource.UNPRICED
    rollup = Rollup()
    correct(session, before, message, rollup)
    message.save()
    session.save(update_fields=TRANSCRIPT_FIELDS)
    rollup.apply()
    return message
