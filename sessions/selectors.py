"""Reads that shape data for callers (agents' context, usage, stats)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, connections, models
from django.db.models import Count, F, Func, Max, Min, Q, Sum, Value
from django.db.models.functions import Coalesce, Left, NullIf

from sessions.choices import MESSAGE_INCOMPLETE, TOKEN_FIELDS, CostSource, Role
from sessions.errors import SessionGone, SessionNotFound
from sessions.models import TOKEN_TOTAL, Message, Session, SessionTally, Tombstone, Turn
from sessions.querysets import SessionQuerySet, Unindexed, text_ids_sql


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

# Filters with an index in a sort's order on SQLite (migration 0022, SQLite
# only: the filter, then name and key): a walk of that order reads the
# filter's sessions only, where the sort's own index passes the others first
# (names start with their project; an agent names its sessions after its
# projects). Keyed by the order's first field.
SQLITE_ORDER_INDEXES = {"name": ("project_root", "agent")}


def session_rows(
    *,
    now: datetime,
    order: Sequence[str],
    goal_chars: int,
    health: str | None = None,
    q: str | None = None,
    matches: int | None = None,
    exact: bool = True,
    **filters: Any,
) -> SessionQuerySet:
    """Sessions for a table (the dashboard's): ``SessionQuerySet.listing``'s
    filters, ordered by ``order``, ties broken by newest activity, then id.

    ``order``: field names, ``-`` for descending; ``token_total`` is prompt +
    completion tokens. The large fields are not read: ``goal_preview`` holds
    the first ``goal_chars`` characters of the goal.

    ``matches``: how many sessions the filters match, when the caller has
    counted them; ``exact=False``: the count stopped at its cap, more match
    (many, whatever the cap: the text filter's is below ``SORT_MATCHES_BELOW``).
    It picks the plan on SQLite, whose planner prefers a
    filter's index whatever it holds: fewer matches are read through the
    filters' indexes and sorted (a few thousand rows at most); more are found
    by walking the order's index (``Session.Meta.indexes`` has one for each
    sort) and checking the filters on each row, which stops after the page;
    a filter with an index in that order (``SQLITE_ORDER_INDEXES``) stays on
    it, so the walk reads its sessions only.
    PostgreSQL picks from its statistics and gets the same query either way.
    """
    many = matches is not None and (matches >= SORT_MATCHES_BELOW or not exact)
    rows = Session.objects.without_large_fields().defer("goal_text")
    rows = rows.annotate(goal_preview=Left("goal_text", goal_chars))
    rows = rows.listing(
        health=health,
        q=q,
        now=now,
        indexed=not many,
        indexed_filters=SQLITE_ORDER_INDEXES.get(order[0].lstrip("-"), ()) if order else (),
        **filters,
    )
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


def session_matches(
    cap: int,
    *,
    now: datetime,
    health: str | None = None,
    q: str | None = None,
    **filters: Any,
) -> tuple[int, bool]:
    """``count_bounded`` of the sessions ``SessionQuerySet.listing`` finds.

    A text filter alone is counted in the side table of the texts
    (``text_ids_sql``: the same rows, its triggers keep it to the session
    table's) rather than looking each match up in the session table: on
    SQLite ~2 µs a match, 17–33 ms for the 9 961 sessions holding "test" at
    100 000, against 1.5 ms for the index alone; PostgreSQL rechecks its
    candidates in the side table's narrow rows.
    """
    rows = Session.objects.listing(health=health, q=q, now=now, **filters)
    alone = not health and not any(value not in (None, "") for value in filters.values())
    if q and alone:
        ids, params = text_ids_sql(q, connections[rows.db].vendor)
        with connections[rows.db].cursor() as cursor:
            sql = f"SELECT COUNT(*) FROM ({ids} LIMIT %s) AS matches"  # noqa: S608 - our SQL, values are params
            cursor.execute(sql, [*params, cap + 1])
            (counted,) = cursor.fetchone()
        return min(counted, cap), counted <= cap
    return count_bounded(rows, cap)


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


# Up to this many messages the store's message count is exact (a bounded
# count); beyond it PostgreSQL's statistics give it (``messages_stored``).
MESSAGES_COUNTED_UP_TO = 10_000


def messages_stored(cap: int | None = None) -> tuple[int, bool]:
    """``(messages, exact)``: how many messages the store holds, at a cost that
    does not grow with the store on PostgreSQL.

    PostgreSQL, one query: when the table's statistics say it holds more than
    ``cap`` (default ``MESSAGES_COUNTED_UP_TO``) rows, their estimate -- the
    planner's own arithmetic, ``reltuples`` per page of the last ``ANALYZE``
    (autovacuum's, or ``purge --vacuum``'s) times the table's pages now, so it
    follows growth between analyses; a purge shows once the table is
    vacuumed -- else an exact count of at most ``cap + 1`` rows. SQLite keeps
    no statistics unless ``ANALYZE`` ran: an exact ``COUNT(*)``, a walk of the
    narrowest message index (~20 ms per million messages).
    """
    cap = MESSAGES_COUNTED_UP_TO if cap is None else cap
    table = connection.ops.quote_name(Message._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            cursor.execute(f"SELECT COUNT(*) FROM {table}")  # noqa: S608 -- a model's table
            return int(cursor.fetchone()[0]), True
        # CASE evaluates the count only when the statistics do not say "large".
        cursor.execute(
            f"""
            WITH stats AS (
                SELECT CASE WHEN c.reltuples >= 0 AND c.relpages > 0 THEN
                    (c.reltuples / c.relpages
                     * (pg_relation_size(c.oid) / current_setting('block_size')::bigint))::bigint
                END AS estimate
                FROM pg_class c WHERE c.oid = %s::regclass
            )
            SELECT estimate, CASE WHEN estimate IS NULL OR estimate <= %s THEN
                (SELECT COUNT(*) FROM (SELECT 1 FROM {table} LIMIT %s) AS bounded)
            END FROM stats
            """,  # noqa: S608 -- a model's table
            [Message._meta.db_table, cap, cap + 1],
        )
        estimate, counted = cursor.fetchone()
    if counted is not None and counted <= cap:
        return int(counted), True
    return max(int(estimate or 0), int(counted or 0)), False


def messages_context(session: Session) -> list[Message]:
    """The whole context view (``messages_context_page``'s rule, every page)."""
    return messages_context_page(session, limit=None).messages


@dataclass(frozen=True)
class ContextPage:
    """A page of the context view; ``more``: kept messages follow it, from
    ``position`` (the context order's key of the page's last message)."""

    messages: list[Message]
    more: bool
    position: tuple[bool, int] | None


# Rows read per round of the context view's scan (at least): a page of 500
# is one round unless many of its rows are left out.
CONTEXT_BATCH = 100


def messages_context_page(
    session: Session,
    *,
    limit: int | None,
    after: int = 0,
    role: str | None = None,
    position: tuple[bool, int] | None = None,
    skip: int = 0,
) -> ContextPage:
    """The context view an agent reloads: not archived, summaries first, in order.

    Never hands out a tool call without its result or a result without its
    call (the archived boundary can split a pair): unanswered calls are removed
    from their message, and results whose call is not in view are dropped.
    An assistant message that gives the model nothing -- no calls, no
    reasoning, blank content (a placeholder, or what removing calls left) --
    is dropped, as is a reply its agent never finished (status
    ``MESSAGE_INCOMPLETE``): koda's own context leaves both out, and
    providers refuse an empty assistant turn.

    One page: the first ``limit`` kept messages (``None``: all) with a seq
    above ``after``, of ``role`` when given, after ``position`` (a previous
    page's), past the first ``skip`` of them. Read as a keyset window over
    the context order (summaries by seq, then the rest by seq), a round of
    rows at a time; whether a row is kept is looked up for that round only
    (``_context_keep``), so a page costs what it returns, not the transcript.
    """
    rows = Message.objects.filter(session=session).not_archived().filter(seq__gt=after)
    if role and role != Role.TOOL:
        # A result's fate depends on the messages before it: results are
        # picked from the whole view, the other roles are read alone.
        rows = rows.filter(role=role)
    batch = CONTEXT_BATCH * 10 if limit is None else max(limit + skip + 1, CONTEXT_BATCH)
    # The few summaries (message_summary_idx), whole: they come first, and
    # a result's call may be in any of them.
    summaries = list(
        Message.objects.filter(session=session, is_summary=True).not_archived().order_by("seq")
    )
    made = _calls_made(summaries)
    kept: list[Message] = []
    last: tuple[bool, int] | None = None

    def take(chunk: list[Message]) -> bool:
        """Add the chunk's kept messages; False once the page is full."""
        nonlocal skip, last
        for message in _context_keep(session, chunk, made):
            if role and message.role != role:
                continue
            if skip:
                skip -= 1
                continue
            if limit is not None and len(kept) == limit:
                return False
            kept.append(message)
            last = (message.is_summary, message.seq)
        return True

    if position is None or position[0]:
        seq_from = position[1] if position is not None else 0
        chunk = [m for m in summaries if m.seq > max(after, seq_from)]
        if not take([m for m in chunk if not role or role == Role.TOOL or m.role == role]):
            return ContextPage(kept, True, last)
    # Then the rest by seq (the (session, seq) index), from the position on.
    walk = rows.filter(is_summary=False)
    seq_from = position[1] if position is not None and not position[0] else 0
    while True:
        chunk = list(walk.filter(seq__gt=seq_from).order_by("seq")[:batch])
        if not take(chunk):
            return ContextPage(kept, True, last)
        if len(chunk) < batch:
            return ContextPage(kept, False, last)
        seq_from = chunk[-1].seq


def _order(message: Message) -> tuple[bool, int]:
    """A message's place in the context order: summaries by seq, then the rest."""
    return (not message.is_summary, message.seq)


def _call_ids(calls: Any) -> list[Any]:
    """The ids of a message's tool calls as stored (validated ones are strings)."""
    return [c.get("id") for c in calls or [] if isinstance(c, dict)]


def _calls_made(messages: list[Message]) -> dict[Any, list[tuple[bool, int]]]:
    """Call id -> the context places of the ``messages`` making it (assistant
    messages not left unfinished)."""
    made: dict[Any, list[tuple[bool, int]]] = {}
    for message in messages:
        if message.role == Role.ASSISTANT and message.status != MESSAGE_INCOMPLETE:
            for call_id in _call_ids(message.tool_calls):
                made.setdefault(call_id, []).append(_order(message))
    return made


def _context_keep(
    session: Session, chunk: list[Message], summaries: dict[Any, list[tuple[bool, int]]]
) -> list[Message]:
    """The messages of ``chunk`` (consecutive in the context order, all
    summaries or none) the context view keeps, assistant messages' calls cut
    to the answered ones.

    The session-wide facts a message's fate depends on are looked up for the
    chunk's ids only, at most two queries: which of its calls have a result
    (``message_tool_call_idx``), and for its results whose call is not made
    before them in the chunk or a summary, which calls are made before the
    chunk (one walk back over the assistant messages: a result follows its
    call, so the walk is short; an orphan walks to the archived boundary).
    """
    asked = {i for m in chunk if m.role == Role.ASSISTANT for i in _call_ids(m.tool_calls)}
    answered: set[str] = set()
    if asked:
        answered = set(
            Message.objects.filter(session=session, role=Role.TOOL)
            .not_archived()
            .filter(tool_call_id__in=[i for i in asked if isinstance(i, str)])
            .exclude(tool_call_id="")
            .order_by()  # Message's default order joins the session
            .values_list("tool_call_id", flat=True)
        )
    made = _calls_made(chunk)
    offered: dict[int, bool] = {}
    earlier: list[Message] = []
    for message in chunk:
        if message.role != Role.TOOL:
            continue
        call_id, here = message.tool_call_id, _order(message)
        if not call_id:
            offered[message.pk] = False
        elif any(place < here for place in (*made.get(call_id, ()), *summaries.get(call_id, ()))):
            offered[message.pk] = True
        elif message.is_summary:
            offered[message.pk] = False  # only summaries come before a summary
        else:
            earlier.append(message)
    if earlier:
        found = _calls_made_before(session, chunk[0].seq, {m.tool_call_id for m in earlier})
        offered.update((m.pk, m.tool_call_id in found) for m in earlier)
    kept = []
    for message in chunk:
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
        elif message.role == Role.TOOL and not offered[message.pk]:
            continue
        kept.append(message)
    return kept


def _calls_made_before(session: Session, seq: int, wanted: set[str]) -> set[str]:
    """Which of the call ids ``wanted`` an assistant message (not a summary,
    not archived, not unfinished) below ``seq`` makes: walking back from
    ``seq`` a round at a time, until all are found or the session's start."""
    rows = (
        Message.objects.filter(session=session, role=Role.ASSISTANT, is_summary=False)
        .not_archived()
        .exclude(status=MESSAGE_INCOMPLETE)
        .exclude(tool_calls=[])
        .order_by("-seq")
        .values_list("seq", "tool_calls")
    )
    found: set[str] = set()
    while wanted - found:
        batch = list(rows.filter(seq__lt=seq)[:CONTEXT_BATCH])
        for _, calls in batch:
            found.update(wanted.intersection(_call_ids(calls)))
        if len(batch) < CONTEXT_BATCH:
            break
        seq = batch[-1][0]
    return found


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
    """Assistant tool calls (not archived) that have no ``tool`` answer yet, in order.

    The database pairs them: each call of the session's assistant messages
    against the results (``message_tool_call_idx``, one index probe a call:
    ~30 ms for a 10 000-message session), and only the messages with a
    pending call are loaded, so Python handles what is returned, not the
    transcript.
    """
    table = connection.ops.quote_name(Message._meta.db_table)
    if connection.vendor == "postgresql":
        calls = (
            "LATERAL jsonb_array_elements(CASE WHEN jsonb_typeof(m.tool_calls) = 'array' "
            "THEN m.tool_calls ELSE '[]'::jsonb END) WITH ORDINALITY AS e(call, position)"
        )
        is_object, position = "jsonb_typeof(e.call) = 'object'", "e.position - 1"
        string_id = "jsonb_typeof(e.call -> 'id') = 'string'"
        call_id = "e.call ->> 'id'"
    else:
        calls = (
            "json_each(CASE WHEN json_type(m.tool_calls) = 'array' "
            "THEN m.tool_calls ELSE '[]' END) AS e"
        )
        is_object, position = "e.type = 'object'", "CAST(e.key AS INTEGER)"
        string_id = "json_type(e.value, '$.id') = 'text'"
        call_id = "json_extract(e.value, '$.id')"
    # An anti-join, not NOT EXISTS: PostgreSQL estimates 100 elements per
    # array and a subplan per element, which priced the query past
    # jit_above_cost (0.6 s of JIT compilation for 30 ms of work).
    sql = f"""
        SELECT m.id, {position} FROM {table} m CROSS JOIN {calls}
        LEFT JOIN {table} t ON t.session_id = m.session_id AND NOT (t.tool_call_id = '')
            AND t.tool_call_id = {call_id} AND {string_id}
            AND t.role = %s AND t.compacted_at IS NULL
        WHERE m.session_id = %s AND m.role = %s AND m.compacted_at IS NULL AND {is_object}
            AND t.id IS NULL
        ORDER BY m.seq, {position}
    """  # noqa: S608 -- a model's table and fixed SQL
    with connection.cursor() as cursor:
        cursor.execute(sql, [Role.TOOL, session.pk, Role.ASSISTANT])
        found = [(int(pk), int(index)) for pk, index in cursor.fetchall()]
    messages = (
        Message.objects.only("id", "seq", "message_id", "tool_calls")
        .order_by()
        .in_bulk({pk for pk, _ in found})
    )
    return [
        PendingCall(message=messages[pk], call=messages[pk].tool_calls[index])
        for pk, index in found
    ]


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
