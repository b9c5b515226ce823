"""Response schemas of the JSON API: the shapes of DESIGN "Shapes", for its OpenAPI document.

Endpoints build plain dicts (``sessions.shapes``); these schemas check them on
the way out and document them. Money is a decimal string, timestamps RFC 3339.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias

from ninja import Field, Schema
from pydantic import WithJsonSchema

from sessions.choices import CostSource, Kind, State, Status

Money = Annotated[str, WithJsonSchema({"type": "string", "example": "0.012345000"})]
Timestamp = Annotated[
    str | None, WithJsonSchema({"type": ["string", "null"], "format": "date-time"})
]

# The OpenAPI document lists each choice field's values, so a Literal of them
# is built at run time; a type checker cannot evaluate that, and sees str.
if TYPE_CHECKING:
    KindValue: TypeAlias = str
    StatusValue: TypeAlias = str
    StateValue: TypeAlias = str
    CostSourceValue: TypeAlias = str
else:
    KindValue = Literal[tuple(Kind.values)]
    StatusValue = Literal[tuple(Status.values)]
    StateValue = Literal[tuple(State.values)]
    CostSourceValue = Literal[tuple(CostSource.values)]


class ErrorDetail(Schema):
    code: str = Field(
        ...,
        description=(
            "malformed (400), unauthorized (401), forbidden (403: outside the API key's "
            "scope), not_found (404), method_not_allowed (405), conflict (409), gone (410), "
            "too_large (413), invalid (422), throttled (429)"
        ),
    )
    message: str
    field: str | None = Field(None, description="path of the value to blame, e.g. messages[3].role")


class ErrorOut(Schema):
    error: ErrorDetail


class TokensOut(Schema):
    """Token counts, OpenTelemetry convention: prompt includes cache, completion reasoning."""

    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cache_read_tokens: int
    cache_creation_tokens: int
    total_tokens: int


class SpendOut(TokensOut):
    api_calls: int
    unpriced_calls: int = Field(..., description="calls with no known price: not in cost_usd")
    cost_usd: Money


class TotalsOut(SpendOut):
    turns: int
    message_count: int
    tool_call_count: int


class SessionSummaryOut(TotalsOut):
    """A session in a list or search result: every field but `metadata` and `todo`."""

    key: str
    name: str
    agent: str
    kind: KindValue
    status: StatusValue
    state: StateValue
    turn_id: str
    turn_started_at: Timestamp
    channel: str
    channel_ref: str
    room_id: str
    sender_id: str
    model: str
    goal_text: str
    project_root: str
    created_at: Timestamp
    last_active_at: Timestamp
    ended_at: Timestamp
    last_seq: int


class SessionOut(SessionSummaryOut):
    """A whole session, with its large fields (the single-session GET and write answers)."""

    metadata: dict[str, Any]
    todo: str


class UsageOut(TokensOut):
    cost_usd: Money | None
    cost_source: CostSourceValue


class MessageOut(Schema):
    seq: int
    message_id: str | None
    role: str
    content: str | None
    name: str
    agent_name: str
    tool_calls: list[Any]
    tool_call_id: str
    reasoning: str
    model: str
    provider_response_id: str
    status: str
    duration_ms: int | None
    time_to_first_token_ms: int | None
    metadata: dict[str, Any]
    usage: UsageOut | None
    is_summary: bool
    created_at: Timestamp
    compacted_at: Timestamp


class SessionListOut(Schema):
    items: list[SessionSummaryOut]
    next: str | None = Field(None, description="pass as cursor= for the next page; null at the end")


class SessionPageOut(SessionListOut):
    """A page of ``GET /sessions``; ``total`` when asked for with ``count=true``."""

    total: int | None = Field(
        None,
        description=(
            "with count=true: how many sessions match the filters (the whole list, not "
            "what follows the cursor), counted up to a bound; null otherwise"
        ),
    )
    total_exact: bool | None = Field(
        None,
        description=(
            "false when counting stopped at the bound (100000): total is then a lower "
            "bound; null without count=true"
        ),
    )


class RecentMessageOut(MessageOut):
    session_key: str = Field(..., description="the session the message belongs to")
    session_agent: str = Field(..., description="that session's agent")


class RecentMessagesOut(Schema):
    items: list[RecentMessageOut]


class PendingToolCallOut(Schema):
    seq: int = Field(..., description="seq of the assistant message that made the call")
    message_id: str | None = Field(..., description="that message's client id, if it had one")
    call: dict[str, Any] = Field(..., description="the call as stored: id, name, arguments")


class PendingToolCallsOut(Schema):
    items: list[PendingToolCallOut] = Field(..., description="in message order; empty: none")


class CompactionStatsOut(Schema):
    archived_messages: int = Field(..., description="messages compaction archived, not purged")
    sessions_with_archived: int
    archived_bytes: int = Field(..., description="UTF-8 bytes of their content")
    oldest_archived_at: Timestamp = Field(..., description="when the oldest was archived")
    newest_archived_at: Timestamp


class MessageListOut(Schema):
    items: list[MessageOut]
    next: str | None = Field(None, description="pass as cursor= for the next page; null at the end")


class AppendOut(Schema):
    appended: int
    skipped: int = Field(..., description="messages whose message_id was already stored")
    first_seq: int | None
    last_seq: int | None
    session: SessionOut


class UpdateLastOut(Schema):
    message: MessageOut
    session: SessionOut


class RemovedFlagOut(Schema):
    removed: bool


class RemovedCountOut(Schema):
    removed: int


class ArchivedOut(Schema):
    archived: int


class ArchiveMarksOut(Schema):
    archived: int = Field(..., description="messages archived by this request")
    summaries: int = Field(..., description="messages marked as compaction summaries by it")


class MarkedOut(Schema):
    marked: int


class AgentUsageOut(SpendOut):
    agent_name: str
    messages: int


class SessionUsageOut(Schema):
    totals: TotalsOut
    by_agent: list[AgentUsageOut]


class SearchHitOut(Schema):
    seq: int
    role: str
    created_at: Timestamp
    text: str = Field(..., description="the snippet as plain text")
    highlights: list[tuple[int, int]] = Field(
        ..., description="[start, end) character ranges of text that matched"
    )
    archived: bool = Field(..., description="the message was archived by compaction")


class SearchItemOut(Schema):
    session: SessionSummaryOut
    snippets: list[str] = Field(..., description="snippets with the matches wrapped in **…**")
    hits: list[SearchHitOut]


class SearchOut(Schema):
    items: list[SearchItemOut]


class FleetSessionsOut(Schema):
    total: int
    by_status: dict[str, int]
    active: int
    running: int
    stuck: int
    stale: int
    today: int = Field(..., description="sessions created today (UTC)")


class PeriodUsageOut(SpendOut):
    sessions_started: int
    messages: int
    turns: int
    tool_calls: int


class FleetUsageOut(Schema):
    today: PeriodUsageOut
    last_7_days: PeriodUsageOut
    last_30_days: PeriodUsageOut
    all_time: PeriodUsageOut


class BurnRateOut(Schema):
    window_seconds: int
    cost_usd: Money
    api_calls: int
    unpriced_calls: int
    total_tokens: int


class LatencyOut(Schema):
    count: int
    mean_ms: float | None = Field(..., description="exact; null when count is 0")
    p50_ms: int | None = Field(..., description="at most bucket_ratio times the exact one")
    p95_ms: int | None
    p99_ms: int | None


class ModelLatencyOut(LatencyOut):
    model: str


class ToolLatencyOut(LatencyOut):
    name: str


class PeriodLatencyOut(Schema):
    models: list[ModelLatencyOut] = Field(..., description="model calls, most calls first")
    time_to_first_token: list[ModelLatencyOut]
    tools: list[ToolLatencyOut] = Field(..., description="tool runs, slowest p95 first")
    turns: LatencyOut = Field(..., description="turns, from running to idle or error")


class FleetLatencyOut(Schema):
    bucket_ratio: float = Field(
        ..., description="a percentile is at least the exact one and at most this times it"
    )
    today: PeriodLatencyOut
    last_7_days: PeriodLatencyOut
    last_30_days: PeriodLatencyOut
    all_time: PeriodLatencyOut


class FleetOut(Schema):
    generated_at: Timestamp
    stuck_after: int = Field(..., description="seconds a turn runs before it counts as stuck")
    stale_after: int = Field(..., description="seconds of silence before a session is stale")
    sessions: FleetSessionsOut
    usage: FleetUsageOut
    burn_rate: BurnRateOut
    latency: FleetLatencyOut


class BudgetScopeOut(Schema):
    agent: str = Field(..., description="empty: every agent")
    model: str = Field(..., description="empty: every model")
    channel: str = Field(..., description="empty: every channel")
    project: str = Field(..., description="a project_root, exactly; empty: every project")


class BudgetOut(Schema):
    id: int
    name: str
    scope: BudgetScopeOut
    period: Literal["day", "week", "month"] = Field(
        ..., description="in the server's time zone (time_zone); weeks start on Monday"
    )
    period_start: Timestamp
    period_end: Timestamp = Field(..., description="exclusive")
    amount_usd: Money
    warning_percent: int
    spent_usd: Money = Field(
        ..., description="reported and computed costs dated in the period, exact"
    )
    remaining_usd: Money = Field(..., description="amount - spent, never below zero")
    forecast_usd: Money = Field(
        ..., description="the spend at the period's end at its average rate so far"
    )
    unpriced_calls: int = Field(
        ..., description="calls in the period with no known price: not in spent_usd"
    )
    api_calls: int
    warning: bool = Field(..., description="spent has reached warning_percent of the amount")
    exceeded: bool = Field(..., description="spent has reached the amount")


class BudgetListOut(Schema):
    time_zone: str = Field(..., description="the zone the periods' days begin in")
    exceeded: bool = Field(..., description="any of the items is exceeded")
    remaining_usd: Money | None = Field(..., description="the least remaining; null: no budget")
    items: list[BudgetOut]


class BudgetCheckOut(BudgetListOut):
    pass


def example_answer(example: dict[str, Any]) -> dict[str, Any]:
    """An operation's ``openapi_extra``: ``example`` as its 200 answer in the docs."""
    return {"responses": {200: {"content": {"application/json": {"example": example}}}}}


MESSAGE_EXAMPLE: dict[str, Any] = {
    "seq": 7,
    "message_id": "m7",
    "role": "assistant",
    "content": "Done: the tests pass.",
    "name": "",
    "agent_name": "",
    "tool_calls": [],
    "tool_call_id": "",
    "reasoning": "",
    "model": "claude-sonnet-4-5",
    "provider_response_id": "msg_01",
    "status": "complete",
    "duration_ms": 2300,
    "time_to_first_token_ms": 450,
    "metadata": {"trace_id": "4bf92f35"},
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 40,
        "reasoning_tokens": 0,
        "cache_read_tokens": 1000,
        "cache_creation_tokens": 0,
        "total_tokens": 1240,
        "cost_usd": "0.000960000",
        "cost_source": "computed",
    },
    "is_summary": False,
    "created_at": "2026-11-21T10:00:05Z",
    "compacted_at": None,
}
