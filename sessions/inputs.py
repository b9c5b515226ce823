"""Validation of what agents send, before anything is written.

Everything here is untrusted input. Each parser either returns clean values or
raises ``InvalidInput`` whose ``field`` is the path of the value to blame
(``messages[3].usage.reasoning_tokens``) and whose message says what is
accepted. The JSON API, the importers and the admin all go through these, so a
rule lives in one place.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import TextChoices

from sessions.bounds import MAX_COUNT, MAX_DURATION_MS, MAX_TOTAL
from sessions.choices import (
    TOKEN_FIELDS,
    Channel,
    CostSource,
    Kind,
    Role,
    State,
    Status,
    TurnOutcome,
)
from sessions.errors import InvalidInput
from sessions.fields import (
    MESSAGE_CLIENT_FIELDS,
    MESSAGE_INPUT_KEYS,
    MESSAGE_NUMBER_BOUNDS,
    MESSAGE_SINGLE_LINE_FIELDS,
    message_field,
)
from sessions.models import KEY_MAX_LENGTH
from sessions.money import to_decimal
from sessions.usage import CONVENTIONS, clean_int
from sessions.usage import normalise as normalise_usage

SHORT_TEXT = 255
LONG_TEXT_DEFAULT = 1_000_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_RFC3339 = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)
TOKEN_KEYS = TOKEN_FIELDS


def _allowed(choices: type[TextChoices]) -> str:
    return ", ".join(choices.values)


def _max_chars() -> int:
    return getattr(settings, "FLEET_MAX_MESSAGE_CHARS", LONG_TEXT_DEFAULT)


def _check_encodable(value: str, path: str) -> None:
    if "\x00" in value:
        raise InvalidInput("must not contain NUL characters (\\u0000)", field=path)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput("must be valid Unicode (no lone surrogates)", field=path) from None


def _is_mapping(value: Any) -> bool:
    # A dict (every JSON object) without the ABC's instance check.
    return type(value) is dict or isinstance(value, Mapping)


def _plain_text(value: Any, max_length: int, *, single_line: bool = False) -> bool:
    """Whether ``clean_text`` would pass ``value`` as it is, told by the common
    case alone (a ``str`` in ASCII within the bound): ``False`` says only "ask
    ``clean_text``", which is the rule."""
    return (
        type(value) is str
        and len(value) <= max_length
        and value.isascii()
        and "\x00" not in value
        and not (single_line and _CONTROL.search(value))
    )


def clean_text(
    value: Any, path: str, *, max_length: int = SHORT_TEXT, single_line: bool = False
) -> str:
    """A string (``None`` reads as empty) of at most ``max_length`` characters."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidInput(f"must be a string, got {type(value).__name__}", field=path)
    if len(value) > max_length:
        raise InvalidInput(f"must be at most {max_length} characters, got {len(value)}", field=path)
    _check_encodable(value, path)
    if single_line and _CONTROL.search(value):
        raise InvalidInput("must not contain control characters", field=path)
    return value


def clean_key(value: Any, path: str = "key") -> str:
    """A session key: 1 to 255 characters, no control characters."""
    key = clean_text(value, path, max_length=KEY_MAX_LENGTH, single_line=True)
    if not key.strip():
        raise InvalidInput("must not be empty", field=path)
    return key


_CHOICE_VALUES: dict[type[TextChoices], frozenset[str]] = {}


def clean_choice(value: Any, path: str, choices: type[TextChoices], *, blank: bool = False) -> str:
    if blank and value in (None, ""):
        return ""
    allowed = _CHOICE_VALUES.get(choices)
    if allowed is None:
        allowed = _CHOICE_VALUES[choices] = frozenset(choices.values)
    if isinstance(value, str) and value in allowed:
        return value
    raise InvalidInput(f"must be one of {_allowed(choices)}, got {value!r}"[:300], field=path)


def clean_money(value: Any, path: str) -> Decimal:
    try:
        amount = to_decimal(value)
    except ValueError as exc:
        raise InvalidInput(f"cost {exc}", field=path) from None
    if amount < 0:
        raise InvalidInput("must not be negative", field=path)
    return amount


def clean_timestamp(value: Any, path: str) -> datetime:
    """An aware datetime or an RFC 3339 string with an offset (``2026-11-21T10:00:00Z``)."""
    moment = None
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise InvalidInput("must carry a time zone", field=path)
        moment = value
    elif isinstance(value, str) and _RFC3339.match(value):
        with contextlib.suppress(ValueError):
            moment = datetime.fromisoformat(value.upper().replace(" ", "T"))
    if moment is not None:
        try:
            # Stored in UTC: 0001-01-01T00:00:00+01:00 has no UTC datetime.
            moment.astimezone(UTC)
        except OverflowError:
            raise InvalidInput("must fall within the years 1 to 9999 in UTC", field=path) from None
        return moment
    raise InvalidInput(
        f"must be an RFC 3339 timestamp such as 2026-11-21T10:00:00Z, got {value!r}"[:200],
        field=path,
    )


_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
# ``json.dumps`` with options builds an encoder per call; these are made once.
_CHECK_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _check_json_text(value: Any, path: str) -> None:
    try:
        # NUL is written as the escape \u0000. allow_nan=False: a number past
        # a float (1e400 parses as inf) is not JSON either database accepts.
        dumped = _CHECK_JSON(value)
    except ValueError:
        raise InvalidInput(
            "must hold only finite numbers (no NaN, Infinity or numbers beyond ±1.8e308)",
            field=path,
        ) from None
    if "u0000" in dumped and _JSON_NUL.search(dumped):
        raise InvalidInput("must not contain NUL characters (\\u0000)", field=path)
    if not dumped.isascii():
        try:
            dumped.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput("must be valid Unicode (no lone surrogates)", field=path) from None
    if len(dumped) > _max_chars():
        raise InvalidInput(f"must be at most {_max_chars()} characters of JSON", field=path)


def clean_tool_calls(value: Any, path: str) -> list[dict[str, Any]]:
    """A list of ``{"id", "name", "arguments"}``; OpenAI's ``{"function": {...}}`` is flattened."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidInput("must be a list of tool calls", field=path)
    calls = []
    for index, call in enumerate(value):
        if not _is_mapping(call):
            raise InvalidInput(
                "must be an object with id, name and arguments", field=f"{path}[{index}]"
            )
        function = call.get("function")
        if _is_mapping(function):
            name = function.get("name")
            arguments = function.get("arguments")
        else:
            name = call.get("name")
            arguments = call.get("arguments", call.get("input"))
        call_id = call.get("id")
        if call_id is None or call_id == "":
            raise InvalidInput("must have an id", field=f"{path}[{index}].id")
        if not isinstance(call_id, str):
            raise InvalidInput("must be a string", field=f"{path}[{index}].id")
        if not _plain_text(call_id, SHORT_TEXT, single_line=True):
            clean_text(call_id, f"{path}[{index}].id", single_line=True)
        if not _plain_text(name, SHORT_TEXT):
            clean_text(name, f"{path}[{index}].name")
        calls.append({"id": call_id, "name": name or "", "arguments": arguments})
    _check_json_text(calls, path)
    return calls


def metadata_size(value: Mapping[str, Any]) -> int:
    """What the metadata cap measures: UTF-8 bytes of ``value`` as compact JSON."""
    dumped = _COMPACT_JSON(value)
    # surrogatepass: a value stored before validation must not make this raise.
    return len(dumped.encode("utf-8", "surrogatepass"))


def check_metadata_size(
    value: Mapping[str, Any],
    path: str,
    *,
    merged: bool = False,
    hint: str = "; a null value removes a key",
) -> None:
    """Refuse metadata over ``FLEET_MAX_METADATA_BYTES`` (``merged``: the session's result).

    ``hint`` ends the message: how to shrink it (a message's metadata is
    replaced, not merged, so it has none).
    """
    limit = settings.FLEET_MAX_METADATA_BYTES
    size = metadata_size(value)
    if size > limit:
        what = "merged with the stored metadata, would be" if merged else "is"
        raise InvalidInput(
            f"must be at most {limit} bytes of JSON in UTF-8 (the server's "
            f"FLEET_MAX_METADATA_BYTES); {what} {size}{hint}",
            field=path,
        )


def clean_metadata(value: Any, path: str) -> dict[str, str | None]:
    """Key → string values; ``null`` as a value removes the key on merge.

    The values set already refuse past the metadata cap here; the merged
    result is checked again where it is stored (``services``).
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInput("must be an object of string values", field=path)
    cleaned: dict[str, str | None] = {}
    for name, item in value.items():
        clean_text(name, f"{path}.{str(name)[:50]}")
        if item is not None:
            clean_text(item, f"{path}.{name[:50]}", max_length=_max_chars())
        cleaned[name] = item
    check_metadata_size({name: item for name, item in cleaned.items() if item is not None}, path)
    return cleaned


@dataclass(slots=True)
class UsageIn:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0
    cost_usd: Decimal | None = None
    # Set only by trusted round trips (our own export): "computed" or "unpriced".
    cost_source: str = ""


def clean_usage(value: Any, path: str, *, convention: str | None = None) -> UsageIn | None:
    """A usage block, normalised to the OpenTelemetry convention by its shape.

    Fleet's names, or a provider's usage object as it returned it
    (``sessions.usage`` tells them apart). ``convention`` is the one the
    request named (``None``: none); ``"convention"`` in the block wins.
    """
    if value is None:
        return None
    if not _is_mapping(value):
        raise InvalidInput("must be an object of token counts", field=path)
    convention = value.get("convention", convention)
    if convention is not None and convention not in CONVENTIONS:
        raise InvalidInput(
            f"must be one of {', '.join(CONVENTIONS)}, got {convention!r}"[:200],
            field=f"{path}.convention",
        )
    counts = normalise_usage(value, path, convention)
    tokens = counts.values
    usage = UsageIn(
        prompt_tokens=tokens["prompt_tokens"],
        completion_tokens=tokens["completion_tokens"],
        reasoning_tokens=tokens["reasoning_tokens"],
        cache_read_tokens=tokens["cache_read_tokens"],
        cache_creation_tokens=tokens["cache_creation_tokens"],
    )
    if (cost := value.get("cost_usd")) is not None:
        usage.cost_usd = clean_money(cost, f"{path}.cost_usd")
    if "cost_source" in value:
        usage.cost_source = clean_choice(
            value["cost_source"], f"{path}.cost_source", CostSource, blank=True
        )
    blame = counts.sources
    if usage.reasoning_tokens > usage.completion_tokens:
        raise InvalidInput(
            f"reasoning_tokens ({usage.reasoning_tokens}) must not exceed completion_tokens "
            f"({usage.completion_tokens}): reasoning is a part of completion",
            field=blame.get("reasoning_tokens", f"{path}.reasoning_tokens"),
        )
    cached = usage.cache_read_tokens + usage.cache_creation_tokens
    if cached > usage.prompt_tokens:
        raise InvalidInput(
            f"cache_read_tokens + cache_creation_tokens ({cached}) must not exceed "
            f"prompt_tokens ({usage.prompt_tokens}): cache tokens are a part of prompt "
            'input (send "convention": "anthropic" if your input count excludes them)',
            field=blame.get("cache_read_tokens") or blame.get("cache_creation_tokens", path),
        )
    if usage.cost_source == CostSource.UNPRICED:
        usage.cost_usd = None
    elif usage.cost_usd is not None and usage.cost_source != CostSource.COMPUTED:
        usage.cost_source = CostSource.REPORTED
    elif usage.cost_usd is None:
        usage.cost_source = ""
    return usage


def clean_json(value: Any, path: str) -> Any:
    """Any JSON value both databases store (finite numbers, no NUL, valid Unicode)."""
    _check_json_text(value, path)
    return value


def clean_json_object(value: Any, path: str) -> dict[str, Any]:
    """A JSON object of any values, at most ``FLEET_MAX_METADATA_BYTES`` like
    a session's metadata (a message's ``metadata``)."""
    if not isinstance(value, Mapping):
        raise InvalidInput(f"must be an object, got {type(value).__name__}", field=path)
    for name in value:
        if not isinstance(name, str):
            raise InvalidInput(f"keys must be strings, got {name!r}"[:200], field=path)
    _check_json_text(value, path)
    check_metadata_size(value, path, hint="")
    return dict(value)


def clean_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"must be true or false, got {value!r}"[:200], field=path)
    return value


Cleaner = Callable[[Any, str], Any]


def _choice_cleaner(field: models.Field) -> Cleaner:
    allowed = frozenset(value for value, _ in field.flatchoices)
    listed = ", ".join(str(value) for value, _ in field.flatchoices)
    blank = field.blank

    def clean(value: Any, path: str) -> Any:
        if blank and value in (None, ""):
            return ""
        if isinstance(value, str) and value in allowed:
            return value
        raise InvalidInput(f"must be one of {listed}, got {value!r}"[:300], field=path)

    return clean


def _text_cleaner(
    max_length: int | None, *, single_line: bool = False, null: bool = False
) -> Cleaner:
    """``clean_text`` for one field (``max_length`` ``None``: ``FLEET_MAX_MESSAGE_CHARS``;
    ``null``: empty text is ``None``). Runs for every text a message carries:
    a plain string (``_plain_text``) passes as it is, anything else goes
    through ``clean_text``."""

    def clean(value: Any, path: str) -> Any:
        limit = _max_chars() if max_length is None else max_length
        if _plain_text(value, limit, single_line=single_line):
            text = value
        else:
            text = clean_text(value, path, max_length=limit, single_line=single_line)
        return (text or None) if null else text

    return clean


def _field_cleaner(field: models.Field) -> Cleaner:
    """How a client's value for a message field is checked, from the field's type."""
    name = field.name
    if field.choices:
        return _choice_cleaner(field)
    if isinstance(field, models.CharField):
        # NULL, not "", when absent (the column's uniqueness skips NULL).
        return _text_cleaner(
            field.max_length or SHORT_TEXT,
            single_line=name in MESSAGE_SINGLE_LINE_FIELDS,
            null=field.null,
        )
    if isinstance(field, models.TextField):
        return _text_cleaner(None)
    if isinstance(field, models.DateTimeField):
        return clean_timestamp
    if isinstance(field, models.BooleanField):
        return clean_bool
    if isinstance(field, models.IntegerField):
        maximum = MESSAGE_NUMBER_BOUNDS.get(name, MAX_COUNT)
        return lambda value, path: clean_int(value, path, maximum=maximum)
    if isinstance(field, models.JSONField):
        # A field whose default is an object holds an object, bounded like
        # a session's metadata; any other holds any JSON.
        return clean_json_object if isinstance(field.get_default(), dict) else clean_json
    raise TypeError(f"no rule checks a client's {type(field).__name__} (Message.{name})")


# A client's message fields, each with its check: from the model, but for
# the tool calls, whose shape is ours (``clean_tool_calls``).
_MESSAGE_CLEANERS: dict[str, Cleaner] = {
    name: _field_cleaner(message_field(name)) for name in MESSAGE_CLIENT_FIELDS
}
_MESSAGE_CLEANERS["tool_calls"] = clean_tool_calls
_ROLE_CLEANER = _MESSAGE_CLEANERS["role"]
# The fields ``clean_message`` checks in its loop (``role`` comes first, alone).
_LOOPED = frozenset(_MESSAGE_CLEANERS) - {"role"}
_CLEANER_ORDER = {name: index for index, name in enumerate(_MESSAGE_CLEANERS)}


@dataclass(slots=True)
class MessageIn:
    """A message as validated: the client fields it sent, its usage, and what
    only trusted imports (``sessions.importers``) set.

    ``fields`` holds the client fields sent, by model field name; a field sent
    as ``null`` is there as ``None``. Absent fields take the model's default.
    ``clean_message`` never parses ``seq``, ``is_summary`` or ``compacted_at``
    from a client's mapping: ``seq`` keeps a source's position (an export with
    purged messages has gaps; a message whose seq is already passed is skipped
    as stored); ``compacted_at`` carries an archive time over.
    """

    fields: dict[str, Any] = field(default_factory=dict)
    usage: UsageIn | None = None
    is_summary: bool = False
    seq: int | None = None
    compacted_at: datetime | None = None
    # The keys the client sent (update-last replaces only these).
    provided: frozenset[str] = frozenset()

    @property
    def role(self) -> str:
        return self.fields.get("role") or ""

    @property
    def message_id(self) -> str | None:
        return self.fields.get("message_id")

    @property
    def created_at(self) -> datetime | None:
        return self.fields.get("created_at")

    def values(self) -> dict[str, Any]:
        """The client fields sent with a value (``null`` ones left to the defaults)."""
        return {name: value for name, value in self.fields.items() if value is not None}


def clean_message(
    value: Any, path: str, *, convention: str | None = None, partial: bool = False
) -> MessageIn:
    """One message of a batch. With ``partial`` (update-last) ``role`` may be omitted."""
    if isinstance(value, MessageIn):
        return value
    if not _is_mapping(value):
        raise InvalidInput("must be an object", field=path)
    unknown = value.keys() - MESSAGE_INPUT_KEYS
    if unknown:
        name = sorted(map(str, unknown))[0]
        accepted = ", ".join(sorted(MESSAGE_INPUT_KEYS))
        raise InvalidInput(
            f"unknown message field {name!r}; accepted: {accepted}"[:400],
            field=f"{path}.{name}"[:200],
        )
    message = MessageIn(provided=frozenset(value.keys()))
    fields = message.fields
    if "role" in value or not partial:
        fields["role"] = _ROLE_CLEANER(value.get("role"), f"{path}.role")
    # Only the fields sent, in the model's order (which of two bad fields is blamed).
    sent = value.keys() & _LOOPED
    for name in sorted(sent, key=_CLEANER_ORDER.__getitem__) if len(sent) > 1 else sent:
        raw = value[name]
        fields[name] = None if raw is None else _MESSAGE_CLEANERS[name](raw, f"{path}.{name}")
    get = value.get
    if (usage := get("usage")) is not None:
        message.usage = clean_usage(usage, f"{path}.usage", convention=convention)
    if message.role == Role.TOOL and not fields.get("tool_call_id") and not partial:
        raise InvalidInput(
            "a tool message must say which call it answers", field=f"{path}.tool_call_id"
        )
    return message


@dataclass(frozen=True)
class ArchiveMarks:
    """An agent store's compaction marks for messages Fleet already holds:
    ``archived`` maps a ``message_id`` to when the store archived it;
    ``summaries`` are the ``message_id``s of the store's compaction summaries."""

    archived: dict[str, datetime]
    summaries: tuple[str, ...] = ()


def clean_archived(values: Any, path: str = "messages") -> ArchiveMarks:
    """``[{message_id, compacted_at?, summary?}]`` (at most ``FLEET_API_MAX_BATCH``):
    each item archives its message at ``compacted_at``, marks it as a summary
    (``"summary": true``), or both."""
    if not isinstance(values, list):
        raise InvalidInput("must be a list of {message_id, compacted_at}", field=path)
    limit = settings.FLEET_API_MAX_BATCH
    if len(values) > limit:
        raise InvalidInput(
            f"a batch holds at most {limit} messages, got {len(values)}; send several", field=path
        )
    archived: dict[str, datetime] = {}
    summaries: list[str] = []
    for index, item in enumerate(values):
        where = f"{path}[{index}]"
        if not isinstance(item, dict) or set(item) - {"message_id", "compacted_at", "summary"}:
            raise InvalidInput(
                "must be an object of message_id, compacted_at and/or summary", field=where
            )
        message_id = clean_text(
            item.get("message_id"), f"{where}.message_id", max_length=255, single_line=True
        )
        if not message_id:
            raise InvalidInput("must name a stored message", field=f"{where}.message_id")
        if "summary" in item:
            if item["summary"] is not True:
                raise InvalidInput("must be true when given", field=f"{where}.summary")
            summaries.append(message_id)
        if "compacted_at" in item or "summary" not in item:
            archived[message_id] = clean_timestamp(
                item.get("compacted_at"), f"{where}.compacted_at"
            )
    return ArchiveMarks(archived=archived, summaries=tuple(summaries))


def clean_messages(
    values: Any, path: str = "messages", *, convention: str | None = None
) -> list[MessageIn]:
    """A batch to append: at most ``FLEET_API_MAX_BATCH`` messages, each cleaned.

    The bound holds for every caller (the API, importers, the demo), so one
    append's work stays bounded; a longer transcript goes in several batches.
    """
    if not isinstance(values, list):
        raise InvalidInput("must be a list of messages", field=path)
    limit = settings.FLEET_API_MAX_BATCH
    if len(values) > limit:
        raise InvalidInput(
            f"a batch holds at most {limit} messages, got {len(values)}; send several", field=path
        )
    return [
        clean_message(item, f"{path}[{index}]", convention=convention)
        for index, item in enumerate(values)
    ]


# Session fields a client may set, and how each is read.
_SESSION_TEXT = {
    "name": SHORT_TEXT,
    "agent": SHORT_TEXT,
    "turn_id": SHORT_TEXT,
    "channel_ref": SHORT_TEXT,
    "room_id": SHORT_TEXT,
    "sender_id": SHORT_TEXT,
    "model": SHORT_TEXT,
    "project_root": 1024,
}
# Long text and the setting that caps it, in characters.
_SESSION_LONG_TEXT = {"goal_text": "FLEET_MAX_GOAL_CHARS", "todo": "FLEET_MAX_TODO_CHARS"}
_SESSION_CHOICES: dict[str, type[TextChoices]] = {
    "kind": Kind,
    "status": Status,
    "state": State,
    "channel": Channel,
}
_SESSION_TIMES = ("created_at", "last_active_at", "ended_at", "turn_started_at")
TOTAL_COUNTS = ("turns", "tool_call_count", "api_calls")
SESSION_FIELDS = frozenset(
    [
        *_SESSION_TEXT,
        *_SESSION_LONG_TEXT,
        *_SESSION_CHOICES,
        *_SESSION_TIMES,
        "metadata",
        *TOTAL_COUNTS,
        *TOKEN_KEYS,
        "cost_usd",
    ]
)
# Read-only fields a client may echo back (a GET response PUT back is fine).
READ_ONLY_SESSION_FIELDS = frozenset(
    {"key", "message_count", "unpriced_calls", "last_seq", "id", "total_tokens"}
)


@dataclass(slots=True)
class SessionIn:
    values: dict[str, Any]
    metadata: dict[str, str | None] | None = None
    # Reported totals, for agents that do not send messages.
    totals: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.values or self.metadata or self.totals)


def clean_session_fields(value: Any, path: str = "session") -> SessionIn:
    """Session fields for an upsert; absent fields keep their stored values."""
    if value is None:
        return SessionIn(values={})
    if isinstance(value, SessionIn):
        return value
    if not isinstance(value, Mapping):
        raise InvalidInput("must be an object of session fields", field=path)
    prefix = f"{path}." if path else ""
    values: dict[str, Any] = {}
    totals: dict[str, Any] = {}
    metadata = None
    for name, raw in value.items():
        where = f"{prefix}{name}"[:200]
        if name in _SESSION_TEXT:
            values[name] = clean_text(raw, where, max_length=_SESSION_TEXT[name], single_line=True)
        elif name in _SESSION_LONG_TEXT:
            limit = getattr(settings, _SESSION_LONG_TEXT[name])
            if isinstance(raw, str) and len(raw) > limit:
                raise InvalidInput(
                    f"must be at most {limit} characters (the server's "
                    f"{_SESSION_LONG_TEXT[name]}), got {len(raw)}",
                    field=where,
                )
            values[name] = clean_text(raw, where, max_length=limit)
        elif name in _SESSION_CHOICES:
            values[name] = clean_choice(raw, where, _SESSION_CHOICES[name], blank=name == "channel")
        elif name in _SESSION_TIMES:
            values[name] = None if raw is None else clean_timestamp(raw, where)
        elif name == "metadata":
            metadata = clean_metadata(raw, where)
        elif name in TOTAL_COUNTS:
            totals[name] = clean_int(raw, where, maximum=MAX_COUNT)
        elif name in TOKEN_KEYS:
            totals[name] = clean_int(raw, where, maximum=MAX_TOTAL)
        elif name == "cost_usd":
            totals[name] = clean_money(raw, where)
        elif name in READ_ONLY_SESSION_FIELDS:
            continue
        else:
            raise InvalidInput(
                f"unknown session field {str(name)!r}; accepted: "
                f"{', '.join(sorted(SESSION_FIELDS))}"[:600],
                field=where,
            )
    if values.get("created_at") is None:
        values.pop("created_at", None)
    if values.get("last_active_at") is None:
        values.pop("last_active_at", None)
    reasoning = totals.get("reasoning_tokens")
    completion = totals.get("completion_tokens")
    if reasoning is not None and completion is not None and reasoning > completion:
        raise InvalidInput(
            "must not exceed completion_tokens: reasoning is a part of completion",
            field=f"{prefix}reasoning_tokens",
        )
    prompt = totals.get("prompt_tokens")
    cached = totals.get("cache_read_tokens", 0) + totals.get("cache_creation_tokens", 0)
    if prompt is not None and cached > prompt:
        raise InvalidInput(
            "cache_read_tokens + cache_creation_tokens must not exceed prompt_tokens",
            field=f"{prefix}cache_read_tokens",
        )
    return SessionIn(values=values, metadata=metadata, totals=totals)


@dataclass(frozen=True, slots=True)
class TurnIn:
    """A finished turn as an import carries it (a Fleet export's ``finished_turns``)."""

    turn_id: str
    started_at: datetime
    ended_at: datetime
    duration_ms: int
    outcome: str


def clean_turn(value: Any, path: str) -> TurnIn:
    """A finished turn: its id (may be blank), start and end (RFC 3339), duration
    (whole ms within ``MAX_DURATION_MS``) and outcome (``TurnOutcome``)."""
    if not isinstance(value, Mapping):
        raise InvalidInput("must be a turn object", field=path)
    return TurnIn(
        turn_id=clean_text(value.get("turn_id"), f"{path}.turn_id", single_line=True),
        started_at=clean_timestamp(value.get("started_at"), f"{path}.started_at"),
        ended_at=clean_timestamp(value.get("ended_at"), f"{path}.ended_at"),
        duration_ms=clean_int(
            value.get("duration_ms"), f"{path}.duration_ms", maximum=MAX_DURATION_MS
        ),
        outcome=clean_choice(value.get("outcome"), f"{path}.outcome", TurnOutcome),
    )
