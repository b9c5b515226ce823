"""Reads that shape data for callers (agents' context, usage, stats)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Count, F, Func, Max, Min, Q, Sum, Value
from django.db.models.functions import Coalesce, Left, NullIf

from sessions.choices import MESSAGE_INCOMPLETE, TOKEN_FIELDS, CostSource, Role
from sessions.errors import SessionGone, SessionNotFound
from sessions.models import TOKEN_TOTAL, Message, Session, SessionTally, Tombstone, Turn
from sessions.querysets import SessionQuerySet, Unindexed


def session_get(key: str, *, for_update: bool = False) -> Session:
    """The session with ``key``: ``SessionNotFound`` if there never was one,
    ``SessionGone`` (with ``deleted_at``) if it was deleted.

    The one "deleted or never existed" lookup: the API, the dashboard and the
    services read a session by key through here; a key's scope is checked by
    the caller. ``for_update``: lock the row (inside a transaction).
    """
    sessions = Session.objects.select_for_update() if for_update else Session.objects
    session = sessions.filter(key=key).first()
    if session is not None:
        return session
    deleted_at = Tombstone.objects.filter(key=key).values_list("deleted_at", flat=True).first()
    if deleted_at is not None:
        raise SessionGone(f"session {key!r} was deleted", field="key", deleted_at=deleted_at)
    raise SessionNotFound(f"no session {key!r}", field="key")


# A filtered table with fewer matches than this reads them through the
# filters' indexes and sorts them; with more, it walks its sort's index and
# stops after the page (see session_rows). On SQLite at 100 000 sessions,
# sorting one model's 11 600 matches took ~6× the walk to page 3; sorting
# 2 000 costs about what walking to page 3 past 98 000 others does.
SORT_MATCHES_BELOW = 2_000


def session_rows(
    *,
    now: datetime,
    order: Sequence[str],
    goal_chars: int,
    health: str | None = None,
    q: str | None = None,
    matches: int | None = None,
    **filters: Any,
) -> SessionQuerySet:
    """Sessions for a table (the dashboard's): ``SessionQuerySet.listing``'s
    filters, ordered by ``order``, ties broken by newest activity, then id.

    ``order``: field names, ``-`` for descending; ``token_total`` is prompt +
    completion tokens. The large fields are not read: ``goal_preview`` holds
    the first ``goal_chars`` characters of the goal.

    ``matches``: how many sessions the filters match, when the caller has
    counted them (at least ``SORT_MATCHES_BELOW`` if it stopped counting
    there or beyond). It picks the plan on SQLite, whose planner prefers a
    filter's index whatever it holds: fewer matches are read through the
    filters' indexes and sorted (a few thousand rows at most); more are found
    by walking the order's index (``Session.Meta.indexes`` has one for each
    sort) and checking the filters on each row, which stops after the page.
    PostgreSQL picks from its statistics and gets the same query either way.
    """
    many = matches is not None and matches >= SORT_MATCHES_BELOW
    rows = Session.objects.without_large_fields().defer("goal_text")
    rows = rows.annotate(goal_preview=Left("goal_text", goal_chars))
    rows = rows.listing(health=health, q=q, now=now, indexed=not many, **filters)
    if any(name.lstrip("-") == "token_total" for name in order):
        rows = rows.annotate(token_total=TOKEN_TOTAL)
    names = [name.lstrip("-") for name in order]
    if "key" not in names:  # unique: nothing ties after it
        order = [*order, *(tie for tie in ("-last_active_at", "-id") if tie[1:] not in names)]
    if matches is not None and not many:
        # Sort the few matches; never walk a whole sort index for them.
        return rows.order_by(
            *(
                Unindexed(F(name.lstrip("-"))).desc()
                if name.startswith("-")
                else Unindexed(F(name)).asc()
                for name in order
            )
        )
    return rows.order_by(*order)


def sessions_count() -> int:
    """Every session stored: the sum of the tally the database keeps
    (``SessionTally``, agents × statuses rows), not a count of the sessions
    (32 ms of index entries at 100 000 on PostgreSQL, on every table poll)."""
    return int(SessionTally.objects.aggregate(n=Sum("sessions"))["n"] or 0)


def count_bounded(queryset: models.QuerySet[Any], cap: int) -> tuple[int, bool]:
    """``(count, exact)``: the rows of ``queryset``, counted up to ``cap``.

    ``SELECT COUNT(*) FROM (SELECT id … LIMIT cap + 1)``: the cost is bounded by
    the cap, not by the table (an exact count over millions of rows reads them
    all, an index at best). The API's ``count=true`` and the dashboard's table
    count through here, each with its own cap, and so do the admin's big lists.
    """
    rows = queryset.order_by().values("pk")[: cap + 1].count()
    return min(rows, cap), rows <= cap


def messages_context(session: Session) -> list[Message]:
    """The context view an agent reloads: not archived, summaries first, in order.

    Never hands out a tool call without its result or a result without its
    call (the archived boundary can split a pair): unanswered calls are removed
    from their message, and results whose call is not in view are dropped.
    An assistant message that gives the model nothing -- no calls, no
    reasoning, blank content (a placeholder, or what removing calls left) --
    is dropped, as is a reply its agent never finished (status
    ``MESSAGE_INCOMPLETE``): koda's own context leaves both out, and
    providers refuse an empty assistant turn.
    """
    messages = list(Message.objects.filter(session=session).context())
    answered = {m.tool_call_id for m in messages if m.role == Role.TOOL and m.tool_call_id}
    offered: set[str] = set()
    kept: list[Message] = []
    for message in messages:
        if message.role == Role.ASSISTANT:
            if message.status == MESSAGE_INCOMPLETE:
                continue
            calls = [
                c
                for c in message.tool_calls or []
                if isinstance(c, dict) and c.get("id") in answered
            ]
            if not calls and not (message.content or "").strip() and not message.reasoning:
                continue
            if len(calls) != len(message.tool_calls or []):
                message.tool_calls = calls
            offered.update(c["id"] for c in calls)
        elif message.role == Role.TOOL and message.tool_call_id not in offered:
            continue
        kept.append(message)
    return kept


def messages_all(session: Session) -> models.QuerySet[Message]:
    """The full view: every stored message, archived ones included, by seq."""
    return Message.objects.filter(session=session).in_order()


@dataclass(frozen=True)
class MessageSlice:
    """Consecutive messages of a session in seq order, and whether more lie
    beyond them in the direction they were read (older or newer)."""

    messages: list[Message]
    more: bool


def messages_newest(
    session: Session, *, limit: int, before: int | None = None, since: int | None = None
) -> MessageSlice:
    """The newest ``limit`` messages (archived ones included) with a seq below
    ``before`` and from ``since`` on, in seq order; ``more``: older ones match too.

    One query, ``limit + 1`` rows: the transcript page's newest page, its
    "earlier" pages and its live tail read through here.
    """
    rows = Message.objects.filter(session=session)
    if before is not None:
        rows = rows.filter(seq__lt=before)
    if since is not None:
        rows = rows.filter(seq__gte=since)
    found = list(rows.order_by("-seq")[: limit + 1])
    return MessageSlice(messages=found[:limit][::-1], more=len(found) > limit)


def messages_oldest(session: Session, *, after: int, limit: int) -> MessageSlice:
    """The oldest ``limit`` messages (archived ones included) with a seq above
    ``after``, in seq order; ``more``: newer ones follow. One query."""
    rows = Message.objects.filter(session=session, seq__gt=after)
    found = list(rows.order_by("seq")[: limit + 1])
    return MessageSlice(messages=found[:limit], more=len(found) > limit)


def last_message(session: Session, role: str | None = None) -> Message | None:
    """The session's newest message (by seq, archived ones included), of ``role`` if given."""
    qs = Message.objects.filter(session=session)
    if role:
        qs = qs.filter(role=role)
    return qs.order_by("-seq").first()


def recent_user_messages(*, limit: int = 20, agent: str | None = None) -> list[Message]:
    qs = Message.objects.recent_user().select_related("session")
    if agent:
        qs = qs.filter(session__agent=agent)
    return list(qs[:limit])


@dataclass(frozen=True)
class RecentMessage:
    message: Message
    session_key: str
    session_agent: str


def recent_messages(
    *,
    role: str = Role.USER,
    limit: int = 20,
    agent: str | None = None,
    agents: Sequence[str] | None = None,
) -> list[RecentMessage]:
    """Messages of ``role`` across sessions, newest first (``created_at``, then id).

    ``agent``: only sessions of that agent; ``agents``: only sessions of these
    (a key's scope; ``None`` = every agent). Each comes with its session's key
    and agent, read by the join: the session row (its large fields) is not
    loaded. Archived messages are included.
    """
    qs = Message.objects.recent(role)
    if agent:
        qs = qs.filter(session__agent=agent)
    if agents is not None:
        qs = qs.filter(session__agent__in=agents)
    rows = qs.annotate(_session_key=F("session__key"), _session_agent=F("session__agent"))
    return [
        RecentMessage(
            message=m, session_key=vars(m)["_session_key"], session_agent=vars(m)["_session_agent"]
        )
        for m in rows[:limit]
    ]


@dataclass(frozen=True)
class PendingCall:
    message: Message
    call: dict[str, Any]


def pending_tool_calls(session: Session) -> list[PendingCall]:
    """Assistant tool calls (not archived) that have no ``tool`` answer yet, in order."""
    active = Message.objects.filter(session=session).not_archived()
    answered = set(
        active.filter(role=Role.TOOL)
        .exclude(tool_call_id="")
        .values_list("tool_call_id", flat=True)
    )
    pending = []
    for message in active.with_tool_calls().order_by("seq"):
        for call in message.tool_calls:
            if isinstance(call, dict) and call.get("id") not in answered:
                pending.append(PendingCall(message=message, call=call))
    return pending


def session_usage(session: Session) -> dict[str, Any]:
    """The session's totals (its spending history), as stored on the row."""
    return {
        "turns": session.turns,
        "message_count": session.message_count,
        "tool_call_count": session.tool_call_count,
        "api_calls": session.api_calls,
        "unpriced_calls": session.unpriced_calls,
        **{name: getattr(session, name) for name in TOKEN_FIELDS},
        "cost_usd": session.cost_usd,
    }


# What the slowest-calls panel shows of a message: never its content or calls.
SLOWEST_FIELDS = (
    "id", "session_id", "seq", "role", "name", "model", "agent_name",
    "duration_ms", "time_to_first_token_ms", "created_at", "compacted_at",
)  # fmt: skip


def session_slowest_calls(session: Session, limit: int = 10) -> list[Message]:
    """The session's ``limit`` slowest timed messages (model calls and tool
    runs, by ``duration_ms``; the later first on a tie), archived ones
    included: one bounded range of ``message_session_duration_idx``, however
    long the session, reading only ``SLOWEST_FIELDS``."""
    return list(
        Message.objects.filter(session=session, duration_ms__isnull=False)
        .order_by("-duration_ms", "-seq")
        .only(*SLOWEST_FIELDS)[:limit]
    )


def session_turns(session: Session, limit: int = 10) -> list[Turn]:
    """The session's last ``limit`` finished turns, newest first: one index
    range (``turn_session_ended_idx``), however long the session."""
    return list(Turn.objects.filter(session=session).order_by("-ended_at", "-id")[:limit])


def usage_by_agent(session: Session) -> list[dict[str, Any]]:
    """Usage of the stored messages grouped by ``agent_name`` (empty = ``main``)."""
    from sessions.money import from_nanos

    rows = (
        Message.objects.filter(session=session)
        .annotate(agent=Coalesce(NullIf("agent_name", Value("")), Value("main")))
        .values("agent")
        .annotate(
            messages=Count("id"),
            api_calls=Count("id", filter=~Q(cost_source="")),
            unpriced_calls=Count("id", filter=Q(cost_source=CostSource.UNPRICED)),
            cost_nanos=Sum(Func("cost_usd", function="", output_field=models.BigIntegerField())),
            **{name: Sum(name) for name in TOKEN_FIELDS},
        )
        .order_by("agent")
    )
    result = []
    for row in rows:
        # The token sums are annotated by name, which django-stubs' row type lacks.
        sums: Mapping[str, Any] = row
        result.append(
            {
                "agent_name": row["agent"],
                "messages": row["messages"],
                "api_calls": row["api_calls"],
                "unpriced_calls": row["unpriced_calls"],
                **{name: sums[name] or 0 for name in TOKEN_FIELDS},
                "cost_usd": from_nanos(row["cost_nanos"] or 0),
            }
        )
    return result


class OctetLength(Func):
    """Bytes of a text column (``length`` counts characters on both databases)."""

    function = "OCTET_LENGTH"
    output_field = models.BigIntegerField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler, connection, template="LENGTH(CAST(%(expressions)s AS BLOB))", **extra
        )


@dataclass(frozen=True)
class CompactionStats:
    archived_messages: int
    sessions_with_archived: int
    archived_bytes: int
    oldest_archived_at: datetime | None
    newest_archived_at: datetime | None


def compaction_stats(
    session: Session | None = None, *, agents: Sequence[str] | None = None
) -> CompactionStats:
    """What compaction archived (koda's ``compacted_stats``): of one ``session``, of the
    sessions of ``agents`` (a key's scope), or of every session.

    One aggregate over the archived messages (the partial index
    ``message_compacted_idx``); its cost grows with what is archived, which
    ``purge --compacted-older-than`` keeps bounded.
    """
    qs = Message.objects.archived()
    if session is not None:
        qs = qs.filter(session=session)
    if agents is not None:
        qs = qs.filter(session__agent__in=agents)
    row = qs.aggregate(
        count=Count("id"),
        sessions=Count("session", distinct=True),
        size=Sum(OctetLength(Coalesce("content", Value("")))),
        oldest=Min("compacted_at"),
        newest=Max("compacted_at"),
    )
    return CompactionStats(
        archived_messages=row["count"],
        sessions_with_archived=row["sessions"],
        archived_bytes=row["size"] or 0,
        oldest_archived_at=row["oldest"],
        newest_archived_at=row["newest"],
    )
