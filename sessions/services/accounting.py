"""What a message adds to its session's totals and the daily rollup, and moving them.

The rules these protect:

* Session totals are the spending history and the daily rollup follows them;
  both move in the same transaction as the messages (the callers' one
  transaction). Clear and compact never lower them; update-last and
  remove-last move them by the difference (``correct``).
* A write that takes a total past its bound (``sessions.bounds``) is refused
  as input; a total already past it can still be corrected downwards.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from django.db import IntegrityError, transaction

from sessions.bounds import MAX_COST_NANOS, MAX_COUNT, MAX_TOTAL
from sessions.choices import TOKEN_FIELDS, CostSource, Role
from sessions.errors import InvalidInput
from sessions.models import LatencyUsage, Message, Session
from sessions.money import from_nanos, to_nanos
from sessions.rollups import Rollup

SESSION_COUNTERS = ("turns", "tool_call_count", "api_calls", "unpriced_calls", *TOKEN_FIELDS)
# What a write to a session's transcript changes on its row: saved by name, so
# an append does not rewrite the session's metadata, goal or todo text.
TRANSCRIPT_FIELDS = (*SESSION_COUNTERS, "cost_usd", "message_count", "last_seq", "last_active_at")


# --- contributions: what one message adds to totals ---------------------------


class Contributing(Protocol):
    """The fields of a message that its contribution and rollup row read: a
    stored ``Message`` and a ``sessions.bulk.NewMessage`` about to be inserted
    both have them (read-only properties, so either's attribute types fit)."""

    @property
    def role(self) -> str: ...
    @property
    def content(self) -> str | None: ...
    @property
    def tool_calls(self) -> Any: ...  # a JSONField: a list unless hand-edited
    @property
    def cost_source(self) -> str: ...
    @property
    def cost_usd(self) -> Decimal | None: ...
    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def reasoning_tokens(self) -> int: ...
    @property
    def cache_read_tokens(self) -> int: ...
    @property
    def cache_creation_tokens(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def model(self) -> str: ...
    @property
    def is_summary(self) -> bool: ...
    @property
    def name(self) -> str: ...
    @property
    def duration_ms(self) -> int | None: ...
    @property
    def time_to_first_token_ms(self) -> int | None: ...


CONTRIBUTION_COUNTERS = (
    "turns",
    "tool_call_count",
    "api_calls",
    "unpriced_calls",
    "cost_usd",
    *TOKEN_FIELDS,
)


def contribution(message: Contributing) -> dict[str, int]:
    """The counters one stored message adds to its session's totals.

    A turn is an assistant message with content; tool calls are the length of
    ``tool_calls``; an API call is a message that carries usage. Cost is in
    nano-dollars so sums stay exact.
    """
    counts = dict.fromkeys(CONTRIBUTION_COUNTERS, 0)
    contribute(message, counts)
    return counts


def contribute(message: Contributing, into: dict[str, int]) -> None:
    """Add ``contribution(message)`` to ``into``, which holds every one of
    ``CONTRIBUTION_COUNTERS`` (the append sums a batch this way, without a
    dictionary per message)."""
    if message.role == Role.ASSISTANT and message.content:
        into["turns"] += 1
    tool_calls = message.tool_calls
    # Imported or hand-edited rows may hold something other than a list.
    if isinstance(tool_calls, list):
        into["tool_call_count"] += len(tool_calls)
    if message.cost_source:
        into["api_calls"] += 1
        for name in TOKEN_FIELDS:
            into[name] += getattr(message, name)
    if message.cost_source == CostSource.UNPRICED:
        into["unpriced_calls"] += 1
    if message.cost_usd is not None:
        into["cost_usd"] += to_nanos(message.cost_usd)


def _diff(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {name: after.get(name, 0) - before.get(name, 0) for name in after.keys() | before.keys()}


def apply_to_session(session: Session, delta: Mapping[str, int]) -> None:
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


def rollup_add(
    rollup: Rollup,
    session: Session,
    message: Contributing,
    counts: Mapping[str, int],
    sign: int = 1,
) -> None:
    """Add one message's contribution (``counts``) and its durations to ``rollup``."""
    rollup_counts(
        rollup,
        session,
        at=message.created_at,
        model=message.model,
        # A compaction summary is the server's bookkeeping, not ingest: the
        # rollup stays untouched by compaction (only its usage, if any, counts).
        counts={**counts, "message_count": int(not message.is_summary)},
        sign=sign,
    )
    rollup_timings(rollup, session, message, sign)


def rollup_counts(
    rollup: Rollup,
    session: Session,
    *,
    at: datetime,
    model: str,
    counts: Mapping[str, int],
    sign: int = 1,
) -> None:
    """Add the contributions (``counts``, with ``message_count``) of messages of
    ``session`` at ``at`` with ``model`` to the usage tables: one call for any
    number of such messages (the append sums them first)."""
    rollup.add_counts(
        at=at,
        agent=session.agent,
        model=model or session.model,
        channel=session.channel,
        project=session.project_root,
        # The rollup's counters are named like the session's (and cost in nanos).
        counts=counts,
        sign=sign,
    )


def rollup_timings(rollup: Rollup, session: Session, message: Contributing, sign: int = 1) -> None:
    """Count the message's durations (``timings``) in the latency rollup."""
    for kind, name, duration in timings(message):
        rollup.add_latency(
            at=message.created_at,
            agent=session.agent,
            model=message.model or session.model,
            kind=kind,
            name=name,
            duration_ms=duration,
            sign=sign,
        )


def timings(message: Contributing) -> list[tuple[str, str, int]]:
    """The durations a message adds to the latency rollup, as (kind, tool name, ms).

    An assistant message's ``duration_ms`` is its model call and its
    ``time_to_first_token_ms`` the wait for the first token; a tool message's
    ``duration_ms`` is the run of the tool it names (``name``). Durations on
    other roles are stored and shown but rolled up nowhere.
    """
    found: list[tuple[str, str, int]] = []
    if message.role == Role.ASSISTANT:
        if message.duration_ms is not None:
            found.append((LatencyUsage.Kind.CALL, "", message.duration_ms))
        if message.time_to_first_token_ms is not None:
            found.append((LatencyUsage.Kind.TTFT, "", message.time_to_first_token_ms))
    elif message.role == Role.TOOL and message.duration_ms is not None:
        found.append((LatencyUsage.Kind.TOOL, message.name or "", message.duration_ms))
    return found


def save_session(session: Session, fields: Iterable[str]) -> None:
    try:
        with transaction.atomic():
            session.save(update_fields=sorted(set(fields)))
    except IntegrityError as exc:
        raise InvalidInput(f"the session's totals would break a rule: {exc}") from None


def correct(
    session: Session, before: Message | None, after: Message | None, rollup: Rollup
) -> None:
    """Move totals and rollup from ``before``'s contribution to ``after``'s."""
    old = contribution(before) if before is not None else {}
    new = contribution(after) if after is not None else {}
    apply_to_session(session, _diff(new, old))
    if before is not None:
        rollup_add(rollup, session, before, old, sign=-1)
    if after is not None:
        rollup_add(rollup, session, after, new)
