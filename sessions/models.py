"""The session store: sessions, their messages, tombstones, prices, rollups.

Rules the database can hold are constraints here; rules that span rows
(totals, rollups, seq allocation) are kept by ``sessions.services``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.db.models import F, Q
from django.db.models.expressions import CombinedExpression
from django.urls import reverse
from django.utils import timezone

from sessions.choices import (
    Channel,
    CostSource,
    Kind,
    Role,
    State,
    Status,
    TurnOutcome,
)
from sessions.errors import Conflict, InvalidInput
from sessions.money import MoneyField, to_decimal
from sessions.querysets import MessageQuerySet, SessionQuerySet
from sessions.scopes import KeyScope, clean_agents

KEY_MAX_LENGTH = 255
# What ingest refuses in one-line fields (sessions.inputs).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _token_checks(prefix: str) -> list[models.CheckConstraint]:
    """reasoning is a part of completion; cache reads and writes are parts of prompt."""
    return [
        models.CheckConstraint(
            condition=Q(reasoning_tokens__lte=F("completion_tokens")),
            name=f"{prefix}_reasoning_within_completion",
        ),
        models.CheckConstraint(
            condition=Q(
                prompt_tokens__gte=F("cache_read_tokens") + F("cache_creation_tokens"),
            ),
            name=f"{prefix}_cache_within_prompt",
        ),
    ]


# The table's "tokens": prompt + completion (reasoning and cache are parts of them).
TOKEN_TOTAL = F("prompt_tokens") + F("completion_tokens")


def _sort_indexes(
    *columns: str | CombinedExpression, name: str = "", ascending: bool = True
) -> list[models.Index]:
    """Indexes in ``column``'s order then newest activity and id, descending
    (and ascending, unless ``ascending`` is false: a filter index serves it)."""
    indexes = []
    for column in columns:
        label = name or str(column).removesuffix("_usd")
        expression = F(column) if isinstance(column, str) else column
        ties = (F("last_active_at").desc(), F("id").desc())
        indexes.append(models.Index(expression.desc(), *ties, name=f"session_{label}_desc_idx"))
        if ascending:
            indexes.append(models.Index(expression.asc(), *ties, name=f"session_{label}_idx"))
    return indexes


class Totals(models.Model):
    """Token and cost fields shared by sessions, messages and rollups.

    Token fields follow the OpenTelemetry GenAI conventions: ``prompt_tokens``
    counts all input including cache reads and writes; ``completion_tokens``
    all output including reasoning.
    """

    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    cache_read_tokens = models.PositiveBigIntegerField(default=0)
    cache_creation_tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        abstract = True

    @property
    def total_tokens(self) -> int:
        # Cache and reasoning tokens are parts of prompt and completion.
        return self.prompt_tokens + self.completion_tokens


class Session(Totals):
    """One conversation of one agent, identified by a client-chosen key.

    The totals on this row are the session's spending history, updated in the
    same transaction as every write that changes them (``sessions.services``):
    clearing, compacting and purging messages never lower them; update-last and
    remove-last move them by the difference. ``message_count`` is the number of
    messages stored now, ``last_seq`` the highest ``seq`` stored.
    """

    key = models.CharField(max_length=KEY_MAX_LENGTH, unique=True)
    name = models.CharField(max_length=255, blank=True)
    agent = models.CharField(max_length=255, blank=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.INTERACTIVE)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    state = models.CharField(max_length=16, choices=State.choices, default=State.IDLE)
    turn_id = models.CharField(max_length=255, blank=True)
    turn_started_at = models.DateTimeField(null=True, blank=True)
    # Blank = not reported (imported stores often do not say).
    channel = models.CharField(max_length=16, choices=Channel.choices, blank=True)
    channel_ref = models.CharField(max_length=255, blank=True)
    room_id = models.CharField(max_length=255, blank=True)
    sender_id = models.CharField(max_length=255, blank=True)
    model = models.CharField(max_length=255, blank=True)
    goal_text = models.TextField(blank=True)
    project_root = models.CharField(max_length=1024, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    todo = models.TextField(blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    last_active_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)

    turns = models.PositiveIntegerField(default=0)
    message_count = models.PositiveIntegerField(default=0)
    tool_call_count = models.PositiveIntegerField(default=0)
    api_calls = models.PositiveIntegerField(default=0)
    cost_usd = MoneyField(default=Decimal(0))
    # Usage of messages that could not be priced: cost_usd excludes them, so
    # the dashboard can say "unpriced" instead of showing a lower number.
    unpriced_calls = models.PositiveIntegerField(default=0)
    last_seq = models.PositiveIntegerField(default=0)

    objects = SessionQuerySet.as_manager()

    class Meta:
        ordering = ["-last_active_at", "-id"]
        indexes = [
            models.Index(fields=["-last_active_at", "-id"], name="session_activity_idx"),
            models.Index(fields=["status", "-last_active_at"], name="session_status_idx"),
            # The state filter, running and stuck counts (state, status, then
            # turn start as a range), reconcile's stuck turns.
            models.Index(fields=["state", "status", "turn_started_at"], name="session_turn_idx"),
            # The filter indexes end with the status (migration 0023): a
            # filter with a status, the table's commonest pair, counts in the
            # filter's index alone instead of looking up each session for its
            # status (SQLite: 40 -> 1.5 ms to count "10,000+" of one
            # channel's completed sessions). The status is in every one of
            # these entries already rewritten by an append (it holds
            # last_active_at), so it costs an append nothing more.
            models.Index(fields=["agent", "-last_active_at", "status"], name="session_agent_idx"),
            models.Index(fields=["model", "-last_active_at", "status"], name="session_model_idx"),
            models.Index(
                fields=["channel", "-last_active_at", "status"], name="session_channel_idx"
            ),
            models.Index(
                fields=["project_root", "-last_active_at", "status"], name="session_project_idx"
            ),
            models.Index(fields=["created_at"], name="session_created_idx"),
            # The table's sort links (fleet.forms.SORTS), each direction with
            # its ties (newest activity, then id): a page walks one of these and
            # stops after its rows instead of sorting every match (migration
            # 0014; "The sessions table at scale" in docs/DECISIONS.md). The
            # ascending text sorts use the filter indexes above.
            *_sort_indexes("status", "agent", "model", ascending=False),
            *_sort_indexes("turns", "cost_usd"),
            *_sort_indexes(TOKEN_TOTAL, name="tokens"),
            models.Index(fields=["name", "key"], name="session_name_idx"),
            # SQLite also has (project_root, name, key) and (agent, name, key),
            # outside Django's state (migration 0022, selectors.SQLITE_ORDER_INDEXES).
            # The URL-only messages sort (migration 0018): issue 16's matrix
            # holds every sort the URL accepts.
            *_sort_indexes("message_count", name="messages"),
        ]
        constraints = [
            *_token_checks("session"),
            # A turn's start is kept while it runs and after it failed (error
            # keeps "the active or last turn", issue 12); idle has none.
            models.CheckConstraint(
                condition=Q(turn_started_at__isnull=True) | Q(state__in=["running", "error"]),
                name="session_turn_only_while_running_or_error",
            ),
        ]

    def __str__(self) -> str:
        return self.name or self.key

    def get_absolute_url(self) -> str:
        """The dashboard's page of the session (the admin's "View on site")."""
        return reverse("session", kwargs={"key": self.key})

    @property
    def is_active(self) -> bool:
        return self.status == Status.ACTIVE


class SessionTally(models.Model):
    """How many sessions each agent has in each status, kept by the database.

    Triggers (migration 0017, one set per vendor) move it on every insert and
    delete of a session and every change of its ``agent`` or ``status``,
    whatever wrote it: the services, reconcile's bulk UPDATE, purge's raw
    DELETE, imports, the admin, ``bench/generate.py``'s COPY. So the fleet's
    session counts read agents × statuses rows instead of counting sessions
    (docs/DECISIONS.md "Session counts from a tally"). Nothing in Python
    writes it; a row whose count reached 0 stays.
    """

    agent = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices)
    sessions = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["agent", "status"], name="sessiontally_agent_status"),
        ]

    def __str__(self) -> str:
        return f"{self.agent or '(no agent)'} {self.status}: {self.sessions}"


class Message(Totals):
    """One entry of a session's transcript.

    ``seq`` is 1, 2, 3 … per session with no gaps at append time. Usage is
    present when ``cost_source`` is set; ``cost_usd`` is null when unpriced.
    ``compacted_at`` marks a message archived by compaction: it stays in the
    full view until purged but leaves the context view.
    """

    # (session, seq) is unique, so that index serves lookups by session too.
    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, related_name="messages", db_index=False
    )
    seq = models.PositiveIntegerField()
    # NULL, not "", when absent: uniqueness applies only to ids the client set.
    message_id = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    role = models.CharField(max_length=16, choices=Role.choices)
    # NULL = no content (an assistant message may carry only tool calls).
    content = models.TextField(null=True, blank=True)  # noqa: DJ001
    name = models.CharField(max_length=255, blank=True)
    agent_name = models.CharField(max_length=255, blank=True)
    tool_calls = models.JSONField(default=list, blank=True)
    tool_call_id = models.CharField(max_length=255, blank=True)
    reasoning = models.TextField(blank=True)
    model = models.CharField(max_length=255, blank=True)
    provider_response_id = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=32, blank=True)
    # How long it took, in milliseconds, when the client knows (NULL: not
    # reported): the model call of an assistant message, the tool run of a
    # tool message; and the wait for the first token of a streamed answer.
    # Bounded by sessions.bounds.MAX_DURATION_MS; rolled up into LatencyUsage.
    duration_ms = models.PositiveBigIntegerField(null=True, blank=True)
    time_to_first_token_ms = models.PositiveBigIntegerField(null=True, blank=True)
    # The agent's own data about the message, any JSON object (at most
    # FLEET_MAX_METADATA_BYTES); importers keep here what a store has and
    # Fleet has no field for (appam's content blocks, koda's full output).
    metadata = models.JSONField(default=dict, blank=True)
    # A compaction summary: the context view places it before the messages
    # the compaction preserved.
    is_summary = models.BooleanField(default=False)

    cost_usd = MoneyField(null=True, blank=True)
    cost_source = models.CharField(max_length=16, choices=CostSource.choices, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    compacted_at = models.DateTimeField(null=True, blank=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        ordering = ["session", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["session", "seq"], name="message_unique_seq"),
            models.UniqueConstraint(
                fields=["session", "message_id"],
                condition=Q(message_id__isnull=False),
                name="message_unique_client_id",
            ),
            *_token_checks("message"),
            models.CheckConstraint(condition=Q(seq__gte=1), name="message_seq_positive"),
        ]
        indexes = [
            models.Index(fields=["role", "-created_at"], name="message_role_created_idx"),
            models.Index(
                fields=["compacted_at"],
                name="message_compacted_idx",
                condition=Q(compacted_at__isnull=False),
            ),
            # The context view and pending tool calls (selectors): a call's
            # results, and a session's summaries, each one short index range.
            models.Index(
                fields=["session", "tool_call_id"],
                name="message_tool_call_idx",
                condition=~Q(tool_call_id=""),
            ),
            models.Index(
                fields=["session", "seq"],
                name="message_summary_idx",
                condition=Q(is_summary=True),
            ),
            # A session's slowest calls (selectors.session_slowest_calls):
            # only the timed messages, a bounded range in duration order.
            models.Index(
                fields=["session", "-duration_ms", "-seq"],
                name="message_session_duration_idx",
                condition=Q(duration_ms__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.session_id}#{self.seq} {self.role}"

    @property
    def has_usage(self) -> bool:
        return bool(self.cost_source)

    @property
    def is_archived(self) -> bool:
        return self.compacted_at is not None

    @property
    def tool_call_ids(self) -> list[str]:
        return [str(call.get("id")) for call in self.tool_calls or [] if isinstance(call, dict)]


class Turn(models.Model):
    """A finished turn of a session: from ``running`` back to idle or error.

    Recorded by the services with the write that ends the turn (its duration
    also goes into ``LatencyUsage``), so the session page lists its turns'
    durations without reading the transcript. Deleted with the session (the
    rollup keeps the fleet's numbers).
    """

    session = models.ForeignKey(
        Session, on_delete=models.CASCADE, related_name="finished_turns", db_index=False
    )
    turn_id = models.CharField(max_length=255, blank=True)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    duration_ms = models.PositiveBigIntegerField()
    # How it ended: idle (done), error, or unknown (its session presumed dead).
    outcome = models.CharField(max_length=16, choices=TurnOutcome.choices)

    class Meta:
        ordering = ["session", "-ended_at", "-id"]
        indexes = [
            models.Index(fields=["session", "-ended_at", "-id"], name="turn_session_ended_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.session_id} {self.turn_id or '-'} {self.duration_ms} ms"


class SubAgentWait(models.Model):
    """An OTLP span whose messages wait to learn their sub-agent (issue 13).

    A sub-agent's ``invoke_agent`` span ends after its children and usually
    arrives in a later export. A model or tool span whose ancestry leaves its
    export unnamed waits here for ``awaited``, its nearest ancestor not yet
    seen: when that span arrives, it names the sub-agent on the waiting
    span's messages, or passes the wait on to its own missing parent, or ends
    it (a root, no agent). Waits older than a day are dropped (``sessions.otlp``).
    """

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="+")
    trace_id = models.CharField(max_length=32)
    span_id = models.CharField(max_length=16)  # the span whose messages wait
    awaited = models.CharField(max_length=16)  # its nearest ancestor not yet seen
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["session", "trace_id", "span_id"], name="sub_agent_wait_span_unique"
            ),
        ]
        indexes = [
            models.Index(fields=["trace_id", "awaited"], name="sub_agent_wait_awaited_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.trace_id}:{self.span_id} awaits {self.awaited}"


class Tombstone(models.Model):
    """A deleted session's key: later writes to it are refused, not re-created."""

    key = models.CharField(max_length=KEY_MAX_LENGTH, unique=True)
    deleted_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-deleted_at"]

    def __str__(self) -> str:
        return self.key


def all_history() -> datetime:
    """The default ``valid_from`` of a price override: before any message."""
    return datetime(2000, 1, 1, tzinfo=UTC)


class ModelPrice(models.Model):
    """An admin override of a model's price, in USD per million tokens.

    ``model_pattern`` is a model name or a shell-style pattern (``gpt-4o*``),
    matched case-insensitively. For a message, the exact name beats a
    pattern, a longer pattern beats a shorter one, and among equal patterns
    the newest ``valid_from`` not after the message wins. Overrides win over
    the genai-prices table.
    """

    model_pattern = models.CharField(max_length=255)
    input_per_mtok = models.DecimalField(max_digits=14, decimal_places=6)
    output_per_mtok = models.DecimalField(max_digits=14, decimal_places=6)
    cache_read_per_mtok = models.DecimalField(
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Blank: cache reads are charged at the input price.",
    )
    cache_write_per_mtok = models.DecimalField(
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="Blank: cache writes are charged at the input price.",
    )
    # By default an override applies to all history, so `manage.py reprice`
    # after adding one re-prices past messages too; a later date keeps older
    # messages at the price they had.
    valid_from = models.DateTimeField(
        default=all_history,
        help_text="The override applies to messages created at or after this time.",
    )
    note = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["model_pattern", "-valid_from"]
        verbose_name = "model price override"
        constraints = [
            models.UniqueConstraint(
                fields=["model_pattern", "valid_from"], name="modelprice_unique_pattern_from"
            ),
            models.CheckConstraint(
                condition=Q(input_per_mtok__gte=0)
                & Q(output_per_mtok__gte=0)
                & (Q(cache_read_per_mtok__isnull=True) | Q(cache_read_per_mtok__gte=0))
                & (Q(cache_write_per_mtok__isnull=True) | Q(cache_write_per_mtok__gte=0)),
                name="modelprice_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_pattern} from {self.valid_from:%Y-%m-%d}"


class UsageBucket(models.Model):
    """Counters of one agent × model × channel over a period (the subclass's key).

    Written only by ``sessions.rollups.Rollup``, with signed deltas:
    corrections (update-last, remove-last, admin edits) move them by
    differences.
    """

    agent = models.CharField(max_length=255, blank=True)
    model = models.CharField(max_length=255, blank=True)
    channel = models.CharField(max_length=16, blank=True)
    api_calls = models.BigIntegerField(default=0)
    unpriced_calls = models.BigIntegerField(default=0)
    prompt_tokens = models.BigIntegerField(default=0)
    completion_tokens = models.BigIntegerField(default=0)
    cost_usd = MoneyField(default=Decimal(0))

    class Meta:
        abstract = True


class DailyUsage(UsageBucket):
    """Usage per UTC day × agent × model × channel, kept with ingest and by purge.

    Charts and period totals read this table, so cost history survives
    deleting old conversations.
    """

    day = models.DateField()
    sessions_started = models.BigIntegerField(default=0)
    # Named like the session totals they add up (the API's periods call them
    # messages and tool_calls: sessions.shapes.PERIOD_JSON_NAMES).
    message_count = models.BigIntegerField(default=0)
    turns = models.BigIntegerField(default=0)
    tool_call_count = models.BigIntegerField(default=0)
    reasoning_tokens = models.BigIntegerField(default=0)
    cache_read_tokens = models.BigIntegerField(default=0)
    cache_creation_tokens = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-day", "agent", "model", "channel"]
        verbose_name_plural = "daily usage"
        constraints = [
            models.UniqueConstraint(
                fields=["day", "agent", "model", "channel"], name="dailyusage_unique_bucket"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.agent or '-'} {self.model or '-'} {self.channel or '-'}"


class MinuteUsage(UsageBucket):
    """Recent usage per UTC minute × agent × model × channel: the burn rate's source.

    Kept with ingest like ``DailyUsage`` (same deltas, same transaction), but
    only for usage dated within ``RECENT`` of the moment of the write (the
    real clock), so importing history never fills it; ``purge`` deletes rows
    older than ``RECENT``. The burn rate then sums at most 60 minutes of
    buckets instead of the last hour's messages.
    """

    RECENT = timedelta(hours=2)
    COUNTERS = ("api_calls", "unpriced_calls", "prompt_tokens", "completion_tokens", "cost_usd")

    minute = models.DateTimeField()

    class Meta:
        ordering = ["-minute", "agent", "model", "channel"]
        verbose_name_plural = "minute usage"
        constraints = [
            models.UniqueConstraint(
                fields=["minute", "agent", "model", "channel"], name="minuteusage_unique_bucket"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.minute:%Y-%m-%d %H:%M} {self.agent or '-'} {self.model or '-'}"


class LatencyUsage(models.Model):
    """How many timed things of one kind fell in one latency bucket, per UTC day
    × agent × model (× tool name for tool runs): the latency percentiles' source.

    ``kind`` is ``call`` (an assistant message's model call), ``ttft`` (its
    time to first token), ``tool`` (a tool message's run; ``name`` is the
    tool) or ``turn`` (a session's turn, from start to idle or error).
    ``bucket`` is an index into ``sessions.latency.BUCKET_UPPER``; ``sum_ms``
    keeps the exact total, so means and Prometheus' ``_sum`` are exact.
    Written only by ``sessions.rollups.Rollup`` with signed deltas, in the
    write's transaction (corrections move it by differences); kept by purge.
    """

    class Kind(models.TextChoices):
        CALL = "call"
        TTFT = "ttft"
        TOOL = "tool"
        TURN = "turn"

    day = models.DateField()
    agent = models.CharField(max_length=255, blank=True)
    model = models.CharField(max_length=255, blank=True)
    kind = models.CharField(max_length=8, choices=Kind.choices)
    name = models.CharField(max_length=255, blank=True)
    bucket = models.PositiveSmallIntegerField()
    count = models.BigIntegerField(default=0)
    sum_ms = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-day", "kind", "agent", "model", "name", "bucket"]
        verbose_name_plural = "latency usage"
        constraints = [
            models.UniqueConstraint(
                fields=["day", "agent", "model", "kind", "name", "bucket"],
                name="latencyusage_unique_bucket",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.kind} {self.agent or '-'} {self.model or '-'} #{self.bucket}"


class FleetLatencyUsage(models.Model):
    """``LatencyUsage`` without the agent: per UTC day × kind × model (calls and
    times to first token) or tool name (tool runs) × bucket; a turn row names
    neither, a tool row no model. The fleet page's and the unscoped
    ``GET /fleet``'s source: its rows are bounded by the models and tools in
    use × days × buckets, whatever the number of agents. Kept by
    ``sessions.rollups.Rollup`` from the same deltas, in the same
    transaction (so it is always ``LatencyUsage`` summed over agents, and
    tool runs over models); kept by purge.
    """

    day = models.DateField()
    kind = models.CharField(max_length=8, choices=LatencyUsage.Kind.choices)
    model = models.CharField(max_length=255, blank=True)
    name = models.CharField(max_length=255, blank=True)
    bucket = models.PositiveSmallIntegerField()
    count = models.BigIntegerField(default=0)
    sum_ms = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["-day", "kind", "model", "name", "bucket"]
        verbose_name_plural = "fleet latency usage"
        constraints = [
            models.UniqueConstraint(
                fields=["day", "kind", "model", "name", "bucket"],
                name="fleetlatencyusage_unique_bucket",
            ),
        ]
        indexes = [
            # The fleet page's panels (``fleet_stats.page_latency``): every column
            # they read, in their grouping's order, so both databases aggregate
            # an index range in order (no sort, no hash, no table row).
            models.Index(
                fields=["kind", "model", "name", "bucket", "day", "count", "sum_ms"],
                name="fleetlatencyusage_panel_idx",
            ),
            # Its chart: the model calls of the last 30 days by day and bucket.
            models.Index(
                fields=["kind", "day", "bucket", "count", "sum_ms"],
                name="fleetlatencyusage_chart_idx",
            ),
        ]

    def __str__(self) -> str:
        label = self.model or self.name or "-"
        return f"{self.day} {self.kind} {label} #{self.bucket}"


def project_key(project: str) -> str:
    """The fixed-width key of a project path in the budgets' rollup's unique index.

    A path is up to 1024 characters (4 bytes each in UTF-8): too wide for a
    PostgreSQL B-tree entry next to the other dimensions, and an index error
    would refuse the write, while Fleet never refuses to record spend.
    """
    return hashlib.sha256(project.encode("utf-8", "surrogatepass")).hexdigest()


class BudgetUsage(UsageBucket):
    """Spend per UTC quarter hour, hour and day × agent × model × channel × project.

    The budgets' source (``sessions.budgets``). Kept with ingest like
    ``DailyUsage`` (same deltas, same upsert statement: each delta moves one
    row of each span), for all history, and kept by purge. Quarter hours
    because every UTC offset in use is a whole number of them (India +5:30,
    Nepal +5:45): a day, week or month in the configured time zone begins and
    ends on a quarter-hour boundary, so a budget's spend is an exact sum of
    whole rows. Day and hour rows make long periods cheap: a period is read
    as its whole UTC days, then whole hours, then quarter hours at its very
    edges (docs/DECISIONS.md). ``project_key`` is ``project_key(project)``.
    """

    class Span(models.TextChoices):
        QUARTER = "quarter"
        HOUR = "hour"
        DAY = "day"

    QUARTER = timedelta(minutes=15)
    COUNTERS = ("api_calls", "unpriced_calls", "prompt_tokens", "completion_tokens", "cost_usd")

    span = models.CharField(max_length=8, choices=Span.choices)
    start = models.DateTimeField()
    project = models.CharField(max_length=1024, blank=True)
    project_key = models.CharField(max_length=64)

    class Meta:
        ordering = ["span", "-start", "agent", "model", "channel", "project"]
        verbose_name = "budget usage"
        verbose_name_plural = "budget usage"
        constraints = [
            models.UniqueConstraint(
                fields=["span", "start", "agent", "model", "channel", "project_key"],
                name="budgetusage_unique_bucket",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.span} {self.start:%Y-%m-%d %H:%M} {self.agent or '-'} {self.model or '-'}"


class Budget(models.Model):
    """A spending limit over a calendar period, for the fleet or a part of it.

    Scope: each of ``agent``, ``model``, ``channel``, ``project`` narrows the
    budget to usage with exactly that value; all blank is the whole fleet.
    The period is the current day, ISO week (Monday first) or month in the
    configured time zone (``FLEET_TIME_ZONE``). Spend comes from
    ``BudgetUsage`` (``sessions.budgets``); a budget never stops a write.
    """

    class Period(models.TextChoices):
        DAY = "day"
        WEEK = "week"
        MONTH = "month"

    NAME_LENGTH = 100

    name = models.CharField(max_length=NAME_LENGTH, unique=True)
    agent = models.CharField(max_length=255, blank=True, help_text="blank: every agent")
    model = models.CharField(max_length=255, blank=True, help_text="blank: every model")
    channel = models.CharField(
        max_length=16, choices=Channel.choices, blank=True, help_text="blank: every channel"
    )
    project = models.CharField(
        max_length=1024, blank=True, help_text="a session's project_root, exactly; blank: every"
    )
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.MONTH)
    amount_usd = MoneyField(help_text="USD per period, above 0 and below one billion")
    warning_percent = models.PositiveSmallIntegerField(
        default=80, help_text="warn when the spend reaches this share of the amount (1-100)"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(warning_percent__gte=1, warning_percent__lte=100),
                name="budget_warning_percent_range",
                violation_error_message="The warning share is a percent from 1 to 100.",
            ),
            models.CheckConstraint(
                condition=Q(amount_usd__gt=0),
                name="budget_amount_positive",
                violation_error_message="The amount must be above zero.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def scope(self) -> dict[str, str]:
        """The scope's non-blank dimensions (empty: the whole fleet)."""
        values = {
            "agent": self.agent,
            "model": self.model,
            "channel": self.channel,
            "project": self.project,
        }
        return {name: value for name, value in values.items() if value}

    def clean(self) -> None:
        """Refuse an amount past the bound of money, and a scope value no usage
        can carry: ingest refuses control characters in these fields, and a
        value with surrounding spaces is a typo of a name (the channel's
        choices and the lengths are the fields' own checks)."""
        errors = {}
        if self.amount_usd is not None:
            try:
                to_decimal(self.amount_usd)  # the bound of every amount
            except ValueError as exc:
                errors["amount_usd"] = str(exc)
        for name, value in self.scope.items():
            if _CONTROL.search(value):
                errors[name] = "no usage can match: names carry no control characters"
            elif value != value.strip():
                errors[name] = "no usage can match: remove the spaces around the name"
        if errors:
            raise ValidationError(errors)


class ApiKey(models.Model):
    """A bearer key for the JSON API: shown once when made, stored only as a hash.

    The key is ``fleet_`` + 32 random bytes (URL-safe base64). It is stored as
    its SHA-256, not with a slow password hash: slow hashes defend guessable
    passwords against offline guessing, but 256 random bits cannot be guessed
    whatever the hash, and every API call must verify its key in microseconds
    (a lookup by hash, one indexed query). ``prefix`` (the first characters)
    identifies a key in lists without revealing it. A revoked key stays, so
    the record of who wrote what stays readable.

    ``agents`` and ``read_only`` are the key's scope (``sessions.scopes``): an
    empty list is every agent, so keys made before scopes keep full access.
    """

    TOKEN_PREFIX = "fleet_"  # noqa: S105 - a marker, not a secret
    PREFIX_LENGTH = 12
    NAME_LENGTH = 100
    # Record use at most once a minute per key: not a write per request.
    LAST_USED_RESOLUTION = 60

    name = models.CharField(max_length=NAME_LENGTH, unique=True)
    prefix = models.CharField(max_length=PREFIX_LENGTH, editable=False)
    hashed_key = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    agents = models.JSONField(
        default=list,
        blank=True,
        help_text="Agents whose sessions the key may read and write; empty = every agent.",
    )
    read_only = models.BooleanField(
        default=False, help_text="The key may read but never write (every write answers 403)."
    )

    class Meta:
        ordering = ["name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def scope(self) -> KeyScope:
        """What this key may touch; a stored value that is not a list of names is no scope
        at all, never full access."""
        agents = self.agents if isinstance(self.agents, list) else ["\x00invalid"]
        return KeyScope(
            agents=tuple(str(agent) for agent in agents), read_only=bool(self.read_only)
        )

    @staticmethod
    def hash_token(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()

    @classmethod
    def generate(
        cls, *, name: str, agents: Iterable[str] = (), read_only: bool = False
    ) -> tuple[ApiKey, str]:
        """Make a key named ``name``; returns ``(key, plaintext)``, the only time it is seen.

        ``agents`` and ``read_only`` scope it (none: every agent, read and write).
        Raises ``InvalidInput`` for a blank or long name or a bad agent name and
        ``Conflict`` when a key of that name exists (revoked keys keep their names).
        """
        agent_list = clean_agents(agents)
        name = (name or "").strip()
        if not name:
            raise InvalidInput("must not be empty", field="name")
        if len(name) > cls.NAME_LENGTH:
            raise InvalidInput(f"must be at most {cls.NAME_LENGTH} characters", field="name")
        token = cls.TOKEN_PREFIX + secrets.token_urlsafe(32)
        key = cls(
            name=name,
            prefix=token[: cls.PREFIX_LENGTH],
            hashed_key=cls.hash_token(token),
            agents=agent_list,
            read_only=read_only,
        )
        try:
            with transaction.atomic():
                key.save(force_insert=True)
        except IntegrityError:
            raise Conflict(f"an API key named {name!r} already exists", field="name") from None
        return key, token

    @classmethod
    def authenticate(cls, token: str, *, now: datetime | None = None) -> ApiKey | None:
        """The live key whose plaintext is ``token``, or ``None``; records its use.

        Looking the key up by its hash compares nothing secret in Python, so
        there is no timing difference to exploit.
        """
        if not token or len(token) > 200:
            return None
        key = cls.objects.filter(hashed_key=cls.hash_token(token), revoked_at__isnull=True).first()
        if key is None:
            return None
        now = now or timezone.now()
        cutoff = now - timedelta(seconds=cls.LAST_USED_RESOLUTION)
        if key.last_used_at is None or key.last_used_at < cutoff:
            # Conditional: concurrent requests record the use once.
            cls.objects.filter(pk=key.pk).filter(
                Q(last_used_at__isnull=True) | Q(last_used_at__lt=cutoff)
            ).update(last_used_at=now)
            key.last_used_at = now
        return key

    def revoke(self, *, now: datetime | None = None) -> bool:
        """Revoke the key (idempotent); returns whether this call revoked it."""
        now = now or timezone.now()
        updated = (
            type(self).objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=now)
        )
        if updated:
            self.revoked_at = now
        return bool(updated)
