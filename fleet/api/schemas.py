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

from ninja import Field, Schema
from pydantic import BaseModel, ConfigDict, WithJsonSchema

from sessions.bounds import MAX_COUNT, MAX_TOKENS, MAX_TOTAL, MAX_USD
from sessions.choices import TOKEN_FIELDS, Channel, Kind, Role, State, Status


def documented(schema: dict[str, Any]) -> Any:
    """Accept any JSON value here (the domain validates it); document ``schema``."""
    return Annotated[Any, WithJsonSchema(schema)]


def _enum(choices: type, *, blank: bool = False) -> dict[str, Any]:
    values = list(choices.values)
    return {"type": "string", "enum": [*values, ""] if blank else values}


_TEXT = {"type": "string", "maxLength": 255}
_LONG_TEXT = {"type": "string"}
_TIME = {"type": "string", "format": "date-time", "example": "2026-11-21T10:00:00Z"}
# The bounds of sessions.bounds, so clients (and the fuzzer) see them.
_TOKENS = {"type": "integer", "minimum": 0, "maximum": MAX_TOKENS}
_TOTAL_TOKENS = {"type": "integer", "minimum": 0, "maximum": MAX_TOTAL}
_COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_COUNT}
_MONEY_IN = {
    "anyOf": [
        {"type": "number", "minimum": 0, "exclusiveMaximum": int(MAX_USD)},
        {"type": "string", "example": "0.0123"},
    ],
    "description": (
        f"USD; a number or a decimal string, below {int(MAX_USD)} once rounded to 9 places"
    ),
}

USAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "Token usage of the call that produced the message, in the OpenTelemetry GenAI "
        "convention: prompt_tokens is ALL input including cache reads and writes "
        "(cache_read_tokens and cache_creation_tokens are parts of it); completion_tokens "
        "is all output, reasoning_tokens a part of it. With convention 'anthropic' "
        "(on the request or in this block) prompt_tokens/input_tokens EXCLUDE cache tokens, "
        "Anthropic's input_tokens, output_tokens, cache_read_input_tokens and "
        "cache_creation_input_tokens are accepted, and the server adds the cache tokens "
        "to prompt_tokens. cost_usd, when sent, is stored as reported; otherwise the "
        "server prices the usage from the model's price, or marks it unpriced."
    ),
    "properties": {
        "prompt_tokens": _TOKENS,
        "completion_tokens": _TOKENS,
        "reasoning_tokens": _TOKENS,
        "cache_read_tokens": _TOKENS,
        "cache_creation_tokens": _TOKENS,
        "input_tokens": {**_TOKENS, "description": "anthropic convention only"},
        "output_tokens": {**_TOKENS, "description": "anthropic convention only"},
        "cache_read_input_tokens": {**_TOKENS, "description": "anthropic convention only"},
        "cache_creation_input_tokens": {**_TOKENS, "description": "anthropic convention only"},
        "cost_usd": _MONEY_IN,
        "convention": {"type": "string", "enum": ["otel", "anthropic"]},
    },
    "additionalProperties": False,
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

    name: documented(SESSION_FIELD_SCHEMAS["name"]) = None
    agent: documented(SESSION_FIELD_SCHEMAS["agent"]) = None
    kind: documented(SESSION_FIELD_SCHEMAS["kind"]) = None
    status: documented(SESSION_FIELD_SCHEMAS["status"]) = None
    state: documented(SESSION_FIELD_SCHEMAS["state"]) = None
    turn_id: documented(SESSION_FIELD_SCHEMAS["turn_id"]) = None
    turn_started_at: documented(SESSION_FIELD_SCHEMAS["turn_started_at"]) = None
    channel: documented(SESSION_FIELD_SCHEMAS["channel"]) = None
    channel_ref: documented(SESSION_FIELD_SCHEMAS["channel_ref"]) = None
    room_id: documented(SESSION_FIELD_SCHEMAS["room_id"]) = None
    sender_id: documented(SESSION_FIELD_SCHEMAS["sender_id"]) = None
    model: documented(SESSION_FIELD_SCHEMAS["model"]) = None
    goal_text: documented(SESSION_FIELD_SCHEMAS["goal_text"]) = None
    project_root: documented(SESSION_FIELD_SCHEMAS["project_root"]) = None
    metadata: documented(SESSION_FIELD_SCHEMAS["metadata"]) = None
    todo: documented(SESSION_FIELD_SCHEMAS["todo"]) = None
    created_at: documented(SESSION_FIELD_SCHEMAS["created_at"]) = None
    last_active_at: documented(SESSION_FIELD_SCHEMAS["last_active_at"]) = None
    ended_at: documented(SESSION_FIELD_SCHEMAS["ended_at"]) = None
    turns: documented(SESSION_FIELD_SCHEMAS["turns"]) = None
    tool_call_count: documented(SESSION_FIELD_SCHEMAS["tool_call_count"]) = None
    api_calls: documented(SESSION_FIELD_SCHEMAS["api_calls"]) = None
    prompt_tokens: documented(SESSION_FIELD_SCHEMAS["prompt_tokens"]) = None
    completion_tokens: documented(SESSION_FIELD_SCHEMAS["completion_tokens"]) = None
    reasoning_tokens: documented(SESSION_FIELD_SCHEMAS["reasoning_tokens"]) = None
    cache_read_tokens: documented(SESSION_FIELD_SCHEMAS["cache_read_tokens"]) = None
    cache_creation_tokens: documented(SESSION_FIELD_SCHEMAS["cache_creation_tokens"]) = None
    cost_usd: documented(SESSION_FIELD_SCHEMAS["cost_usd"]) = None

    def sent(self) -> dict[str, Any]:
        """The fields the client sent (absent ones keep their stored values)."""
        return self.model_dump(exclude_unset=True)


Convention = Literal["otel", "anthropic"]


class AppendIn(Schema):
    model_config = ConfigDict(extra="forbid")

    messages: documented({"type": "array", "items": MESSAGE_SCHEMA}) = Field(
        ..., description="the batch, in order; all stored or none"
    )
    session: documented({"anyOf": [SESSION_FIELDS_SCHEMA, {"type": "null"}]}) = Field(
        None, description="session fields: used to create the session, else updated"
    )
    convention: Convention = Field(
        "otel", description="how usage blocks count tokens (see the usage schema)"
    )


class UpdateLastIn(Schema):
    model_config = ConfigDict(extra="forbid")

    message: documented({**MESSAGE_SCHEMA, "required": []}) = Field(
        ..., description="the fields to replace on the last message; absent fields stay"
    )
    convention: Convention = "otel"


class CompactIn(Schema):
    model_config = ConfigDict(extra="forbid")

    summary: documented({"type": "string", "minLength": 1}) = Field(
        ..., description="stored as a system message the context view shows first"
    )
    keep: documented({"type": "integer", "minimum": 0}) = Field(
        ..., description="how many of the newest active messages stay in context"
    )


class ReconcileIn(Schema):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    agent: documented({"type": "string", "minLength": 1, "maxLength": 255}) = Field(...)
    except_keys: documented({"type": "array", "items": {"type": "string"}}) = Field(
        default_factory=list, alias="except", description="session keys to leave active"
    )
