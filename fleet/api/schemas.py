"""Request schemas of the JSON API (responses are in ``fleet.api.responses``).

Request schemas are deliberately permissive: values are typed ``Any`` for
validation (while the OpenAPI document shows their real types), and
``sessions.inputs`` checks them. That keeps one rule in one place and gives
every refusal the same shape, naming the field to blame
(``messages[3].usage.reasoning_tokens``). Only the envelope of each body is
checked here: a required key missing or an unknown top-level key is refused.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from django.db.models import TextChoices
from ninja import Field, Schema
from pydantic import BaseModel, ConfigDict, WithJsonSchema

from sessions.bounds import MAX_COUNT, MAX_DURATION_MS, MAX_TOKENS, MAX_TOTAL, MAX_USD
from sessions.choices import TOKEN_FIELDS, Channel, Kind, Role, State, Status


def documented(schema: dict[str, Any]) -> WithJsonSchema:
    """For ``Annotated[Any, documented(schema)]``: accept any JSON value (the
    domain validates it), show ``schema`` in the OpenAPI document.

    ``Annotated[Any, ...]`` rather than a helper returning the whole type: a
    type checker only reads a type it can see without running code.
    """
    return WithJsonSchema(schema)


def _session_field(name: str) -> WithJsonSchema:
    return documented(SESSION_FIELD_SCHEMAS[name])


def _enum(choices: type[TextChoices], *, blank: bool = False) -> dict[str, Any]:
    values = list(choices.values)
    return {"type": "string", "enum": [*values, ""] if blank else values}


_TEXT = {"type": "string", "maxLength": 255}
_LONG_TEXT = {"type": "string"}
_TIME = {"type": "string", "format": "date-time", "example": "2026-11-21T10:00:00Z"}
# The bounds of sessions.bounds, so clients (and the fuzzer) see them.
_TOKENS = {"type": "integer", "minimum": 0, "maximum": MAX_TOKENS}
_TOTAL_TOKENS = {"type": "integer", "minimum": 0, "maximum": MAX_TOTAL}
_COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_COUNT}
_DURATION = {"type": ["integer", "null"], "minimum": 0, "maximum": MAX_DURATION_MS}
_MONEY_IN = {
    "anyOf": [
        {"type": "number", "minimum": 0, "exclusiveMaximum": int(MAX_USD)},
        {"type": "string", "example": "0.0123"},
    ],
    "description": (
        f"USD; a number or a decimal string, below {int(MAX_USD)} once rounded to 9 places"
    ),
}

_COUNT_OR_NULL = {**_TOKENS, "type": ["integer", "null"]}
_DETAILS = {"type": ["object", "null"]}
# One example per usage shape the server reads (sessions.usage), as each provider
# returns it: forward it unchanged. tests/test_api_docs.py sends every one.
USAGE_EXAMPLES: dict[str, dict[str, Any]] = {
    "Fleet / OpenTelemetry names (prompt includes cache, completion includes reasoning)": {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "reasoning_tokens": 100,
        "cache_read_tokens": 800,
        "cache_creation_tokens": 300,
        "cost_usd": "0.0123",
    },
    "OpenAI Chat Completions `usage`": {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 800, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 100, "audio_tokens": 0},
    },
    "OpenAI Responses `usage`": {
        "input_tokens": 1200,
        "input_tokens_details": {"cached_tokens": 800},
        "output_tokens": 300,
        "output_tokens_details": {"reasoning_tokens": 100},
        "total_tokens": 1500,
    },
    "Anthropic Messages `usage` (input excludes cache: stored prompt_tokens = 1200)": {
        "input_tokens": 100,
        "cache_read_input_tokens": 800,
        "cache_creation_input_tokens": 300,
        "output_tokens": 300,
        "cache_creation": {"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 0},
        "service_tier": "standard",
    },
    "Gemini `usageMetadata` (stored completion = candidates + thoughts = 300)": {
        "promptTokenCount": 1200,
        "cachedContentTokenCount": 800,
        "candidatesTokenCount": 200,
        "thoughtsTokenCount": 100,
        "totalTokenCount": 1500,
    },
    "koda (prompt excludes cache; thinking_tokens are reasoning)": {
        "prompt_tokens": 100,
        "completion_tokens": 300,
        "cache_read_tokens": 800,
        "cache_creation_tokens": 300,
        "thinking_tokens": 100,
    },
    "bare input/output: say which convention": {
        "input_tokens": 1200,
        "output_tokens": 300,
        "convention": "otel",
    },
}

USAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "Token usage of the call that produced the message. Send Fleet's names or forward "
        "the usage object your provider returned, unchanged: the server tells the shape "
        "by its field names and stores the OpenTelemetry GenAI counts (prompt_tokens is ALL "
        "input including cache reads and writes, completion_tokens all output including "
        "reasoning).\n\n"
        "| shape | told apart by | stored prompt / completion / reasoning / cache |\n"
        "|---|---|---|\n"
        "| Fleet | prompt_tokens … cache_creation_tokens | as sent |\n"
        "| OpenAI Chat Completions | prompt_tokens_details, completion_tokens_details | "
        "prompt_tokens / completion_tokens / completion_tokens_details.reasoning_tokens / "
        "prompt_tokens_details.cached_tokens (read), .cache_write_tokens (write) |\n"
        "| OpenAI Responses | input_tokens_details, output_tokens_details | input_tokens / "
        "output_tokens / output_tokens_details.reasoning_tokens / "
        "input_tokens_details.cached_tokens, .cache_write_tokens |\n"
        "| Anthropic Messages | cache_read_input_tokens, cache_creation_input_tokens, "
        "cache_creation, server_tool_use, service_tier | input_tokens + "
        "cache_read_input_tokens + cache_creation_input_tokens / output_tokens / 0 / "
        "cache_read_input_tokens, cache_creation_input_tokens |\n"
        "| Gemini usageMetadata (or the Python SDK's snake_case names) | promptTokenCount … "
        "| promptTokenCount + toolUsePromptTokenCount / candidatesTokenCount + "
        "thoughtsTokenCount / thoughtsTokenCount / cachedContentTokenCount, 0 |\n"
        "| koda | thinking_tokens | prompt_tokens + cache tokens / completion_tokens / "
        "thinking_tokens / cache_read_tokens, cache_creation_tokens |\n\n"
        "Bare input_tokens (with only output_tokens/total_tokens) is Anthropic's (cache left "
        "out) or OpenAI Responses' (cache included): it is refused (422) unless "
        "convention says which: 'anthropic' (input excludes cache; Anthropic's and Fleet's "
        "names are then accepted together) or 'otel' (input includes cache). A block mixing "
        "two shapes, naming a count twice, or whose convention contradicts its shape is "
        "refused; so is an unknown top-level field. Provider counts may be null (absent); "
        "keys inside *_details objects that Fleet does not store (audio, modality "
        "breakdowns) are ignored. Every count, as sent and as stored, is at most "
        f"{MAX_TOKENS}. cost_usd, when sent, is stored as reported; otherwise the server "
        "prices the usage from the model's price, or marks it unpriced."
    ),
    "properties": {
        "prompt_tokens": _TOKENS,
        "completion_tokens": _TOKENS,
        "reasoning_tokens": _TOKENS,
        "cache_read_tokens": _TOKENS,
        "cache_creation_tokens": _TOKENS,
        "total_tokens": {**_COUNT_OR_NULL, "description": "ignored (the server adds up)"},
        "prompt_tokens_details": {**_DETAILS, "description": "OpenAI Chat Completions"},
        "completion_tokens_details": {**_DETAILS, "description": "OpenAI Chat Completions"},
        "input_tokens": {
            **_COUNT_OR_NULL,
            "description": "OpenAI Responses or Anthropic (told apart by the other fields)",
        },
        "output_tokens": {**_COUNT_OR_NULL, "description": "OpenAI Responses or Anthropic"},
        "input_tokens_details": {**_DETAILS, "description": "OpenAI Responses"},
        "output_tokens_details": {**_DETAILS, "description": "OpenAI Responses"},
        "cache_read_input_tokens": {**_COUNT_OR_NULL, "description": "Anthropic"},
        "cache_creation_input_tokens": {**_COUNT_OR_NULL, "description": "Anthropic"},
        "cache_creation": {**_DETAILS, "description": "Anthropic (a breakdown, ignored)"},
        "server_tool_use": {**_DETAILS, "description": "Anthropic (ignored)"},
        "service_tier": {"type": ["string", "null"], "description": "Anthropic (ignored)"},
        "promptTokenCount": {**_COUNT_OR_NULL, "description": "Gemini"},
        "cachedContentTokenCount": {**_COUNT_OR_NULL, "description": "Gemini"},
        "candidatesTokenCount": {**_COUNT_OR_NULL, "description": "Gemini"},
        "thoughtsTokenCount": {**_COUNT_OR_NULL, "description": "Gemini"},
        "toolUsePromptTokenCount": {**_COUNT_OR_NULL, "description": "Gemini"},
        "totalTokenCount": {**_COUNT_OR_NULL, "description": "Gemini (ignored)"},
        "thinking_tokens": {**_TOKENS, "description": "koda (reasoning)"},
        "cost_usd": _MONEY_IN,
        "convention": {"type": "string", "enum": ["otel", "anthropic"]},
    },
    "additionalProperties": {
        "description": (
            "Gemini's other usageMetadata fields (promptTokensDetails, …) and the Gemini "
            "Python SDK's snake_case names are accepted too; any other field is refused"
        )
    },
    "examples": list(USAGE_EXAMPLES.values()),
}

MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "message_id": {
            **_TEXT,
            "description": "client id, unique per session: re-sending it is a no-op",
        },
        "role": _enum(Role),
        "content": {"type": ["string", "null"]},
        "name": _TEXT,
        "agent_name": {**_TEXT, "description": "the (sub-)agent that produced it; empty = main"},
        "tool_calls": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id"],
                "properties": {"id": _TEXT, "name": _TEXT, "arguments": {}},
            },
        },
        "tool_call_id": {**_TEXT, "description": "required for role 'tool'"},
        "reasoning": _LONG_TEXT,
        "model": _TEXT,
        "provider_response_id": _TEXT,
        "status": {"type": "string", "maxLength": 32, "example": "complete"},
        "duration_ms": {
            **_DURATION,
            "description": (
                "how long it took, in whole milliseconds: the model call of an assistant "
                "message, the tool run of a tool message; null = not measured. Rolled up "
                "into the latency percentiles (/fleet, /metrics)"
            ),
            "example": 2300,
        },
        "time_to_first_token_ms": {
            **_DURATION,
            "description": (
                "milliseconds from the request to the first streamed token; null = not measured"
            ),
            "example": 450,
        },
        "metadata": {
            "type": ["object", "null"],
            "description": (
                "the agent's own data about the message, any JSON object; stored as sent "
                "(update-last replaces it, null empties it). At most FLEET_MAX_METADATA_BYTES "
                "bytes of compact JSON in UTF-8 (default 65536); 422 above"
            ),
            "example": {"trace_id": "4bf92f35"},
        },
        "usage": {"anyOf": [USAGE_SCHEMA, {"type": "null"}]},
        "created_at": _TIME,
    },
    "additionalProperties": False,
}

SESSION_FIELD_SCHEMAS: dict[str, dict[str, Any]] = {
    "name": _TEXT,
    "agent": _TEXT,
    "kind": _enum(Kind),
    "status": _enum(Status),
    "state": _enum(State),
    "turn_id": _TEXT,
    "turn_started_at": _TIME,
    "channel": _enum(Channel, blank=True),
    "channel_ref": {**_TEXT, "example": "discord.clamps"},
    "room_id": _TEXT,
    "sender_id": _TEXT,
    "model": _TEXT,
    "goal_text": {
        **_LONG_TEXT,
        "description": "at most FLEET_MAX_GOAL_CHARS characters (default 16384); 422 above",
    },
    "project_root": {"type": "string", "maxLength": 1024},
    "metadata": {
        "type": "object",
        "additionalProperties": {"type": ["string", "null"]},
        "description": (
            "merged into the stored metadata; a null value removes the key. The merged "
            "object is at most FLEET_MAX_METADATA_BYTES bytes of compact JSON in UTF-8 "
            "(default 65536); a write past it is 422 and changes nothing"
        ),
    },
    "todo": {
        **_LONG_TEXT,
        "description": "at most FLEET_MAX_TODO_CHARS characters (default 262144); 422 above",
    },
    "created_at": _TIME,
    "last_active_at": _TIME,
    "ended_at": _TIME,
    "turns": _COUNT,
    "tool_call_count": _COUNT,
    "api_calls": _COUNT,
    **dict.fromkeys(TOKEN_FIELDS, _TOTAL_TOKENS),
    "cost_usd": _MONEY_IN,
}
SESSION_FIELDS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "Session fields to set; absent fields keep their values. Routing context "
        "(channel_ref, room_id, sender_id) is never replaced by an empty value. Totals "
        "(turns, tool_call_count, api_calls, token fields, cost_usd) are reported "
        "totals, for agents that send totals instead of messages. Read-only fields of "
        "a session (key, message_count, …) may be echoed back and are ignored."
    ),
    "properties": SESSION_FIELD_SCHEMAS,
}


# --- requests ------------------------------------------------------------------


class SessionFieldsIn(BaseModel):
    """The body of ``PUT /sessions/{key}``: session fields, all optional.

    A plain pydantic model: ninja's ``Schema`` reads input through attribute
    access, which drops the unknown names this model must keep.
    """

    # Unknown names reach sessions.inputs, which refuses them naming the field.
    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})

    name: Annotated[Any, _session_field("name")] = None
    agent: Annotated[Any, _session_field("agent")] = None
    kind: Annotated[Any, _session_field("kind")] = None
    status: Annotated[Any, _session_field("status")] = None
    state: Annotated[Any, _session_field("state")] = None
    turn_id: Annotated[Any, _session_field("turn_id")] = None
    turn_started_at: Annotated[Any, _session_field("turn_started_at")] = None
    channel: Annotated[Any, _session_field("channel")] = None
    channel_ref: Annotated[Any, _session_field("channel_ref")] = None
    room_id: Annotated[Any, _session_field("room_id")] = None
    sender_id: Annotated[Any, _session_field("sender_id")] = None
    model: Annotated[Any, _session_field("model")] = None
    goal_text: Annotated[Any, _session_field("goal_text")] = None
    project_root: Annotated[Any, _session_field("project_root")] = None
    metadata: Annotated[Any, _session_field("metadata")] = None
    todo: Annotated[Any, _session_field("todo")] = None
    created_at: Annotated[Any, _session_field("created_at")] = None
    last_active_at: Annotated[Any, _session_field("last_active_at")] = None
    ended_at: Annotated[Any, _session_field("ended_at")] = None
    turns: Annotated[Any, _session_field("turns")] = None
    tool_call_count: Annotated[Any, _session_field("tool_call_count")] = None
    api_calls: Annotated[Any, _session_field("api_calls")] = None
    prompt_tokens: Annotated[Any, _session_field("prompt_tokens")] = None
    completion_tokens: Annotated[Any, _session_field("completion_tokens")] = None
    reasoning_tokens: Annotated[Any, _session_field("reasoning_tokens")] = None
    cache_read_tokens: Annotated[Any, _session_field("cache_read_tokens")] = None
    cache_creation_tokens: Annotated[Any, _session_field("cache_creation_tokens")] = None
    cost_usd: Annotated[Any, _session_field("cost_usd")] = None
    recreate: Annotated[
        Any,
        documented(
            {
                "type": "boolean",
                "default": False,
                "description": (
                    "true: if the key was deleted, start a new session under it (201) instead "
                    "of answering 410; ignored when the key has a session. Only this PUT "
                    "recreates: appends and other writes to a deleted key stay 410."
                ),
                "example": True,
            }
        ),
    ] = None

    def sent(self) -> dict[str, Any]:
        """The fields the client sent (absent ones keep their stored values)."""
        return self.model_dump(exclude_unset=True)


Convention = Literal["otel", "anthropic"]


class AppendIn(Schema):
    model_config = ConfigDict(extra="forbid")

    messages: Annotated[Any, documented({"type": "array", "items": MESSAGE_SCHEMA})] = Field(
        ..., description="the batch, in order; all stored or none"
    )
    session: Annotated[Any, documented({"anyOf": [SESSION_FIELDS_SCHEMA, {"type": "null"}]})] = (
        Field(None, description="session fields: used to create the session, else updated")
    )
    convention: Convention | None = Field(
        None,
        description=(
            "how usage blocks in Fleet's or bare input/output names count input: 'otel' "
            "(cache included) or 'anthropic' (cache left out); a provider's own usage "
            "object needs none (see the usage schema)"
        ),
    )


class ArchiveIn(Schema):
    model_config = ConfigDict(extra="forbid")

    messages: Annotated[
        Any,
        documented(
            {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "message_id": {"type": "string", "minLength": 1, "maxLength": 255},
                        "compacted_at": {"type": "string", "format": "date-time"},
                        "summary": {
                            "type": "boolean",
                            "enum": [True],
                            "description": "the store's compaction summary (a system message)",
                        },
                    },
                    "required": ["message_id"],
                    "additionalProperties": False,
                },
            }
        ),
    ] = Field(
        ...,
        description=(
            "stored messages by message_id: when the agent archived each (compacted_at; "
            "required unless summary is given), and which are its compaction summaries"
        ),
    )


class UpdateLastIn(Schema):
    model_config = ConfigDict(extra="forbid")

    message: Annotated[Any, documented({**MESSAGE_SCHEMA, "required": []})] = Field(
        ...,
        description=(
            "the fields to replace on the last message; absent fields stay, except that "
            "content also replaces tool_calls and reasoning (cleared unless sent with it)"
        ),
    )
    convention: Convention | None = None


class CompactIn(Schema):
    model_config = ConfigDict(extra="forbid")

    summary: Annotated[Any, documented({"type": "string", "minLength": 1})] = Field(
        ..., description="stored as a system message the context view shows first"
    )
    keep: Annotated[Any, documented({"type": "integer", "minimum": 0})] = Field(
        ..., description="how many of the newest active messages stay in context"
    )


class ReconcileIn(Schema):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    agent: Annotated[Any, documented({"type": "string", "minLength": 1, "maxLength": 255})] = Field(
        ...
    )
    except_keys: Annotated[Any, documented({"type": "array", "items": {"type": "string"}})] = Field(
        default_factory=list, alias="except", description="session keys to leave active"
    )
