"""Reusable reads (selectors) as QuerySet methods, each with an explicit order."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import connections, models
from django.db.models import F, Q
from django.db.models.expressions import RawSQL
from django.db.models.lookups import Exact, IContains, In
from django.utils import timezone

from sessions.choices import Role, State, Status

SESSION_FILTERS = ("status", "kind", "channel", "agent", "model", "project_root", "state")
# Session fields that can be large (capped, but up to hundreds of KB): lists,
# search results and tables leave them out; the single-session view has them.
SESSION_LARGE_FIELDS = ("metadata", "todo")
# The listing's text filter (``q``): a substring of the key, the name or the
# goal's first ``GOAL_FILTER_CHARS`` characters, any case, of at least
# ``TEXT_FILTER_MIN_CHARS`` characters. Both bounds come from its index
# (migrations 0018 and 0021, which hold the 1000 literally): a trigram index finds
# nothing shorter than a trigram, and a bounded prefix keeps the index, and the
# cost of writing a long goal, bounded. docs/DECISIONS.md "The text filter".
TEXT_FILTER_MIN_CHARS = 3
GOAL_FILTER_CHARS = 1_000


# The session health rules, each written once. The queryset methods below
# filter on them; aggregates that count several at once (``/metrics``) use
# them as ``Count(filter=…)`` conditions. See docs/DECISIONS.md "One rule each".
HEALTH = ("running", "stuck", "stale", "today")


def stuck_after() -> timedelta:
    """How long a turn runs before it is stuck: ``FLEET_STUCK_AFTER``."""
    return timedelta(seconds=settings.FLEET_STUCK_AFTER)


def stale_after() -> timedelta:
    """How long an active session is silent before it is stale: ``FLEET_STALE_AFTER``."""
    return timedelta(seconds=settings.FLEET_STALE_AFTER)


def utc_midnight(now: datetime) -> datetime:
    """The start of ``now``'s UTC day (the dashboard's "today")."""
    return datetime.combine(now.astimezone(UTC).date(), time.min, tzinfo=UTC)


def running_rule() -> Q:
    """Running: an active session with a turn under way."""
    return Q(status=Status.ACTIVE, state=State.RUNNING)


def stuck_rule(now: datetime, older_than: timedelta | None = None) -> Q:
    """Stuck: running, the turn started at or before ``now - older_than``.

    Whatever the session wrote since: reconcile marks only the silent ones
    (``SessionQuerySet.silent_since`` on top of this rule).
    """
    return running_rule() & Q(turn_started_at__lte=_stuck_cutoff(now, older_than))


def fresh_turn_rules(now: datetime, older_than: timedelta | None = None) -> tuple[Q, Q]:
    """Running and not stuck, in two disjoint parts that are each one range of
    the turn index: the turn started after ``now - older_than``, or its start
    is not recorded (which ``stuck_rule`` does not count either).

    With ``stuck_rule`` they split the running sessions, so the stuck are the
    running minus these: counts over the turns under way for less than the
    stuck threshold, however many dead agents left theirs running.
    """
    cutoff = _stuck_cutoff(now, older_than)
    return (
        running_rule() & Q(turn_started_at__gt=cutoff),
        running_rule() & Q(turn_started_at__isnull=True),
    )


def stale_rule(now: datetime, older_than: timedelta | None = None) -> Q:
    """Stale: active, no activity at or after ``now - older_than``."""
    return Q(status=Status.ACTIVE, last_active_at__lte=_stale_cutoff(now, older_than))


def lively_rule(now: datetime, older_than: timedelta | None = None) -> Q:
    """Active and not stale: some activity after ``now - older_than``.

    With ``stale_rule`` it splits the active sessions in two (``last_active_at``
    is never null), so the stale are the active minus these: a count over the
    recent activity, however many stale sessions reconcile has yet to mark.
    """
    return Q(status=Status.ACTIVE, last_active_at__gt=_stale_cutoff(now, older_than))


def _stale_cutoff(now: datetime, older_than: timedelta | None) -> datetime:
    return now - (stale_after() if older_than is None else older_than)


def _stuck_cutoff(now: datetime, older_than: timedelta | None) -> datetime:
    return now - (stuck_after() if older_than is None else older_than)


def started_today_rule(now: datetime) -> Q:
    """Started today: created at or after the start of ``now``'s UTC day."""
    return Q(created_at__gte=utc_midnight(now))


class Unindexed(models.Func):
    """``expression`` unchanged, but on SQLite written ``+expression``: the same
    value, which SQLite's planner will not look up in an index (its documented
    way to steer a plan). PostgreSQL plans from its statistics, unchanged."""

    template = "%(expressions)s"

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, template="+%(expressions)s", **extra)


class GoalHead(models.Func):
    """The goal's first ``GOAL_FILTER_CHARS`` characters (the text the filter
    reads of a goal; its index holds them, kept by triggers: ``text_ids_sql``)."""

    template = f"LEFT(%(expressions)s, {GOAL_FILTER_CHARS})"
    output_field = models.TextField()

    def __init__(self) -> None:
        super().__init__(F("goal_text"))

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(
            compiler, connection, template=f"substr(%(expressions)s, 1, {GOAL_FILTER_CHARS})"
        )


def text_ids_sql(q: str, vendor: str) -> tuple[str, list[Any]]:
    """``SELECT`` of the ids of the sessions whose texts hold ``q``
    (``text_rule``), from the side table the triggers keep (never the session
    table: an append does not write it). ``text_rule`` checks ``q``'s length.

    SQLite: the FTS5 trigram table of migration 0018; ``q`` is one quoted
    phrase (its ``"`` doubled): FTS5's query syntax does not apply.
    PostgreSQL: the table of migration 0021 and its pg_trgm indexes, on the
    expressions written here (Django's ``icontains``: ``UPPER(…) LIKE
    UPPER(…)``, ``\\``, ``%`` and ``_`` escaped as its ``prep_for_like_query``).
    """
    if vendor == "sqlite":
        phrase = '"' + q.replace('"', '""') + '"'
        return (
            "SELECT rowid FROM agent_sessions_session_text "
            "WHERE agent_sessions_session_text MATCH %s",
            [phrase],
        )
    pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return (
        "SELECT session_id FROM agent_sessions_session_text "
        "WHERE UPPER(key) LIKE UPPER(%s) OR UPPER(name) LIKE UPPER(%s) "
        "OR UPPER(goal) LIKE UPPER(%s)",
        [pattern, pattern, pattern],
    )


def text_rule(q: str, vendor: str, *, indexed: bool = True) -> Q:
    """The text filter: ``q`` in the key, the name or the goal's head, any case.

    The session ids the side table of the texts holds ``q`` for
    (``text_ids_sql``). SQLite: a phrase of trigrams matches exactly the
    texts holding it; case folded for every script, not only ASCII as
    SQLite's ``LIKE``. PostgreSQL: ``icontains``' rule (pg_trgm's index is
    lossy, each candidate is rechecked). ``indexed=False``, for a walk of the
    order's index that checks the text on each row it reads: SQLite checks
    the ids (``Unindexed``) rather than letting them drive; PostgreSQL checks
    the session row's own texts with the same rule (``icontains``, the goal's
    head), as cheap as the row is already read, where a look-up in the side
    table cost 2-3x the walk (docs/DECISIONS.md "The text filter's side
    table"). ``q`` shorter than ``TEXT_FILTER_MIN_CHARS`` raises ``ValueError``.
    """
    if len(q) < TEXT_FILTER_MIN_CHARS:
        raise ValueError(f"the text filter needs at least {TEXT_FILTER_MIN_CHARS} characters")
    if vendor != "sqlite" and not indexed:
        return Q(key__icontains=q) | Q(name__icontains=q) | Q(IContains(GoalHead(), q))
    ids = RawSQL(*text_ids_sql(q, vendor))  # noqa: S611 - our SQL, the text is a param
    return Q(In(F("pk") if indexed else Unindexed(F("pk")), ids))


class SessionQuerySet(models.QuerySet):
    def newest_first(self) -> SessionQuerySet:
        return self.order_by("-last_active_at", "-id")

    def without_large_fields(self) -> SessionQuerySet:
        """Rows for a list: the large fields are not read (``SESSION_LARGE_FIELDS``)."""
        return self.defer(*SESSION_LARGE_FIELDS)

    def active(self) -> SessionQuerySet:
        return self.filter(status=Status.ACTIVE)

    def listing(
        self,
        *,
        health: str | None = None,
        q: str | None = None,
        now: datetime | None = None,
        indexed: bool = True,
        indexed_filters: Collection[str] = (),
        **filters: Any,
    ) -> SessionQuerySet:
        """Sessions matching the listing filters, newest activity first.

        The API's list and the dashboard's table both read through here.
        ``filters``: field values (``SESSION_FILTERS``); ``health``: one of
        ``HEALTH`` (at ``now``); ``q``: text in the key, name or goal's head
        (``text_rule``; shorter than ``TEXT_FILTER_MIN_CHARS``: ``ValueError``).
        Empty values are ignored; unknown filter names or health raise ``TypeError``.
        ``indexed=False``: SQLite checks the field filters on the rows it reads
        rather than finding them in the filters' indexes (``Unindexed``), for a
        table that walks its sort's index (``selectors.session_rows``);
        ``indexed_filters``: the field filters left to their index even then
        (an index in the walked order starts with them).
        """
        unknown = set(filters) - set(SESSION_FILTERS)
        if unknown:
            raise TypeError(f"unknown session filters: {', '.join(sorted(unknown))}")
        qs = self
        for name, value in filters.items():
            if value not in (None, ""):
                if indexed or name in indexed_filters:
                    qs = qs.filter(**{name: value})
                else:
                    qs = qs.filter(Exact(Unindexed(F(name)), value))
        if health:
            qs = qs._health(health, now or timezone.now())
        if q:
            qs = qs.filter(text_rule(q, connections[self.db].vendor, indexed=indexed))
        return qs.newest_first()

    def _health(self, health: str, now: datetime) -> SessionQuerySet:
        if health == "running":
            return self.filter(running_rule())
        if health == "stuck":
            return self.filter(stuck_rule(now))
        if health == "stale":
            return self.filter(stale_rule(now))
        if health == "today":
            return self.filter(started_today_rule(now))
        raise TypeError(f"unknown session health: {health!r}")

    def running(self) -> SessionQuerySet:
        """Active sessions with a turn under way, newest turn first."""
        return self.filter(running_rule()).order_by("-turn_started_at", "-id")

    def stuck(
        self, now: datetime | None = None, *, older_than: timedelta | None = None
    ) -> SessionQuerySet:
        """Running turns started ``older_than`` (default ``FLEET_STUCK_AFTER``) ago,
        oldest first."""
        now = now or timezone.now()
        return self.filter(stuck_rule(now, older_than)).order_by("turn_started_at", "id")

    def stale(
        self, now: datetime | None = None, *, older_than: timedelta | None = None
    ) -> SessionQuerySet:
        """Active sessions silent for ``older_than`` (default ``FLEET_STALE_AFTER``), least
        recent first."""
        now = now or timezone.now()
        return self.filter(stale_rule(now, older_than)).order_by("last_active_at", "id")

    def started_today(self, now: datetime | None = None) -> SessionQuerySet:
        """Sessions created since the start of ``now``'s UTC day."""
        return self.filter(started_today_rule(now or timezone.now()))

    def silent_since(self, cutoff: datetime) -> SessionQuerySet:
        """Sessions that wrote nothing after ``cutoff`` (reconcile's extra condition)."""
        return self.filter(last_active_at__lte=cutoff)


class MessageQuerySet(models.QuerySet):
    def in_order(self) -> MessageQuerySet:
        return self.order_by("seq")

    def archived(self) -> MessageQuerySet:
        return self.filter(compacted_at__isnull=False)

    def not_archived(self) -> MessageQuerySet:
        return self.filter(compacted_at__isnull=True)

    def for_session(self, session: models.Model | int) -> MessageQuerySet:
        """Messages of ``session`` (a ``Session`` or its id)."""
        return self.filter(session=session)

    def context(self) -> MessageQuerySet:
        """The context view: not archived; compaction summaries first, then by seq."""
        return self.not_archived().order_by("-is_summary", "seq")

    def with_usage(self) -> MessageQuerySet:
        return self.exclude(cost_source="")

    def recent_user(self) -> MessageQuerySet:
        """User messages across sessions, newest first."""
        return self.recent(Role.USER)

    def recent(self, role: str) -> MessageQuerySet:
        """Messages of ``role`` across sessions, newest first (``message_role_created_idx``)."""
        return self.filter(role=role).order_by("-created_at", "-id")

    def with_tool_calls(self) -> MessageQuerySet:
        return self.filter(role=Role.ASSISTANT).exclude(
            Q(tool_calls=[]) | Q(tool_calls__isnull=True)
        )
