"""Validation of untrusted input (``sessions.inputs``), directly and through the services."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from sessions import inputs, services
from sessions.choices import Channel, Kind, Role, State, Status
from sessions.errors import FleetError, InvalidInput
from sessions.models import Message, Session

# --- choices ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("choices", "path"),
    [(Role, "role"), (Status, "status"), (Kind, "kind"), (Channel, "channel"), (State, "state")],
)
def test_unknown_choices_name_the_field_and_the_allowed_values(choices: type, path: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        inputs.clean_choice("bogus", path, choices)

    assert caught.value.field == path
    assert caught.value.code == "invalid"
    assert all(value in caught.value.message for value in choices.values)
    assert "'bogus'" in caught.value.message


@pytest.mark.parametrize("value", [None, "", 1, ["user"], "User", " user"])
def test_a_role_must_be_exactly_one_of_the_values(value: Any) -> None:
    with pytest.raises(InvalidInput):
        inputs.clean_choice(value, "role", Role)


def test_a_blank_channel_is_allowed_when_blank_is() -> None:
    assert inputs.clean_choice(None, "channel", Channel, blank=True) == ""
    assert inputs.clean_choice("", "channel", Channel, blank=True) == ""
    assert inputs.clean_choice("slack", "channel", Channel, blank=True) == "slack"


# --- integers and money ----------------------------------------------------------


@pytest.mark.parametrize("value", [-1, 1.0, "5", True, None, 10**15 + 1])
def test_token_counts_must_be_non_negative_integers_in_range(value: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        inputs.clean_int(value, "usage.prompt_tokens")

    assert caught.value.field == "usage.prompt_tokens"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.1", Decimal("0.1")),
        (0.1, Decimal("0.1")),
        (3, Decimal(3)),
        ("1e-9", Decimal("0.000000001")),
        ("0.0000000004", Decimal(0)),
        ("0.123456789123", Decimal("0.123456789")),
    ],
)
def test_money_parses_exactly(value: Any, expected: Decimal) -> None:
    assert inputs.clean_money(value, "cost_usd") == expected


@pytest.mark.parametrize("value", ["-0.01", "NaN", "Infinity", "abc", True, [], "1e12"])
def test_bad_money_is_refused(value: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        inputs.clean_money(value, "usage.cost_usd")

    assert caught.value.field == "usage.cost_usd"


# --- usage -------------------------------------------------------------------------


def test_reasoning_may_not_exceed_completion() -> None:
    with pytest.raises(InvalidInput) as caught:
        inputs.clean_usage({"completion_tokens": 5, "reasoning_tokens": 6}, "u")

    assert caught.value.field == "u.reasoning_tokens"
    assert "reasoning is a part of completion" in caught.value.message


def test_cache_tokens_may_not_exceed_prompt() -> None:
    with pytest.raises(InvalidInput) as caught:
        inputs.clean_usage(
            {"prompt_tokens": 10, "cache_read_tokens": 6, "cache_creation_tokens": 5}, "u"
        )

    assert caught.value.field == "u.cache_read_tokens"
    assert "anthropic" in caught.value.message


def test_reasoning_is_never_added_to_completion() -> None:
    usage = inputs.clean_usage(
        {"prompt_tokens": 10, "completion_tokens": 8, "reasoning_tokens": 8}, "u"
    )

    assert (usage.completion_tokens, usage.reasoning_tokens) == (8, 8)


def test_anthropic_convention_adds_cache_tokens_to_prompt() -> None:
    usage = inputs.clean_usage(
        {"input_tokens": 10, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 5},
        "u",
        convention="anthropic",
    )

    assert (usage.prompt_tokens, usage.cache_read_tokens, usage.cache_creation_tokens) == (
        115,
        100,
        5,
    )


def test_the_convention_can_be_named_in_the_block() -> None:
    usage = inputs.clean_usage(
        {"convention": "anthropic", "prompt_tokens": 1, "cache_read_tokens": 4}, "u"
    )

    assert usage.prompt_tokens == 5


def test_otel_usage_is_taken_as_is() -> None:
    usage = inputs.clean_usage({"prompt_tokens": 10, "cache_read_tokens": 4}, "u")

    assert usage.prompt_tokens == 10


def test_anthropic_names_need_the_anthropic_convention() -> None:
    with pytest.raises(InvalidInput) as caught:
        inputs.clean_usage({"input_tokens": 1}, "u")

    assert caught.value.field == "u.input_tokens"


def test_an_unknown_convention_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        inputs.clean_usage({"convention": "openai"}, "u")

    assert caught.value.field == "u.convention"
    assert "otel, anthropic" in caught.value.message


def test_a_cost_makes_the_usage_reported() -> None:
    usage = inputs.clean_usage({"prompt_tokens": 1, "cost_usd": "0.5"}, "u")

    assert (usage.cost_usd, usage.cost_source) == (Decimal("0.5"), "reported")


# --- timestamps ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-21T10:00:00Z", datetime(2026, 11, 21, 10, tzinfo=UTC)),
        ("2026-11-21t10:00:00z", datetime(2026, 11, 21, 10, tzinfo=UTC)),
        ("2026-11-21 10:00:00+02:00", datetime(2026, 11, 21, 8, tzinfo=UTC)),
        ("2026-11-21T10:00:00.123456789-01:30", datetime(2026, 11, 21, 11, 30, 0, 123456, UTC)),
    ],
)
def test_rfc3339_timestamps_are_accepted(value: str, expected: datetime) -> None:
    assert inputs.clean_timestamp(value, "created_at") == expected


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-21T10:00:00",
        "2026-11-21",
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-11-21T25:00:00Z",
        "2026-11-21T10:00:00+24:00",
        "0000-01-01T00:00:00Z",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+01:00",
        1700000000,
        None,
        datetime(2026, 11, 21, 10),  # naive
    ],
)
def test_bad_timestamps_are_refused(value: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        inputs.clean_timestamp(value, "messages[0].created_at")

    assert caught.value.field == "messages[0].created_at"


def test_an_aware_datetime_is_accepted() -> None:
    moment = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=5)))

    assert inputs.clean_timestamp(moment, "t") == moment


# --- keys and text ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["", " ", "x" * 256, "a\tb", "a\nb", "a\x7fb", "a\x00b", "\ud800", None, 5]
)
def test_bad_keys_are_refused(key: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        inputs.clean_key(key)

    assert caught.value.field == "key"


@pytest.mark.parametrize("key", ["k", "x" * 255, "telegram_user123", "ключ ✓", "a b"])
def test_good_keys_are_accepted(key: str) -> None:
    assert inputs.clean_key(key) == key


def test_json_with_a_literal_backslash_u0000_is_not_mistaken_for_nul() -> None:
    calls = inputs.clean_tool_calls(
        [{"id": "c1", "name": "sh", "arguments": {"cmd": "printf '\\u0000'"}}], "tool_calls"
    )

    assert calls[0]["arguments"] == {"cmd": "printf '\\u0000'"}


@pytest.mark.parametrize(
    "arguments", [{"cmd": "a\x00b"}, {"a\x00": "b"}, ["\\\x00"], {"x": "\udc00"}]
)
def test_tool_call_arguments_with_nul_or_surrogates_are_refused(arguments: Any) -> None:
    with pytest.raises(InvalidInput) as caught:
        inputs.clean_tool_calls([{"id": "c1", "name": "t", "arguments": arguments}], "tc")

    assert caught.value.field == "tc"


def test_openai_style_tool_calls_are_flattened() -> None:
    calls = inputs.clean_tool_calls(
        [{"id": "c1", "type": "function", "function": {"name": "ls", "arguments": "{}"}}], "tc"
    )

    assert calls == [{"id": "c1", "name": "ls", "arguments": "{}"}]


@pytest.mark.parametrize(
    ("calls", "field"),
    [("x", "tc"), ([1], "tc[0]"), ([{"name": "t"}], "tc[0].id"), ([{"id": 5}], "tc[0].id")],
)
def test_malformed_tool_calls_are_refused(calls: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        inputs.clean_tool_calls(calls, "tc")

    assert caught.value.field == field


# --- through the services, on the real database: never a database error -------------------

BAD_STRINGS = ["nul \x00 inside", "lone \ud83d surrogate", "\udfff"]
MESSAGE_TEXT_FIELDS = [
    "content",
    "reasoning",
    "name",
    "agent_name",
    "model",
    "provider_response_id",
    "status",
    "message_id",
]
SESSION_TEXT_FIELDS = [
    "name",
    "agent",
    "turn_id",
    "channel_ref",
    "room_id",
    "sender_id",
    "model",
    "project_root",
    "goal_text",
    "todo",
]


@pytest.mark.django_db
@pytest.mark.parametrize("bad", BAD_STRINGS)
@pytest.mark.parametrize("name", MESSAGE_TEXT_FIELDS)
def test_bad_text_in_a_message_is_invalid_input(name: str, bad: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        services.messages_append(key="k", messages=[{"role": "user", name: bad}])

    assert caught.value.field == f"messages[0].{name}"
    assert not Session.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("bad", BAD_STRINGS)
@pytest.mark.parametrize("name", SESSION_TEXT_FIELDS)
def test_bad_text_in_session_fields_is_invalid_input(name: str, bad: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        services.session_upsert(key="k", fields={name: bad})

    assert caught.value.field == name
    assert not Session.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("bad", BAD_STRINGS)
@pytest.mark.parametrize(
    "call",
    [
        lambda bad: services.messages_append(key=bad, messages=[]),
        lambda bad: services.session_upsert(key=bad),
        lambda bad: services.message_update_last(key=bad, message={}),
        lambda bad: services.message_remove_last(key=bad),
        lambda bad: services.messages_clear(key=bad),
        lambda bad: services.session_delete(key=bad),
        lambda bad: services.session_set_status(key=bad, status="completed"),
        lambda bad: services.session_compact(key=bad, summary="s", keep=0),
        lambda bad: services.sessions_mark_unknown(agent="a", except_keys=[bad]),
        lambda bad: services.sessions_mark_unknown(agent=bad),
        lambda bad: services.session_upsert(key="k", fields={"metadata": {bad: "v"}}),
        lambda bad: services.session_upsert(key="k", fields={"metadata": {"k": bad}}),
        lambda bad: services.messages_append(
            key="k", messages=[{"role": "tool", "tool_call_id": bad}]
        ),
        lambda bad: services.messages_append(
            key="k", messages=[{"role": "assistant", "tool_calls": [{"id": bad}]}]
        ),
        lambda bad: services.session_compact(key="k", summary=bad, keep=0),
    ],
)
def test_every_service_refuses_bad_text_with_invalid_input(call: Any, bad: str) -> None:
    services.messages_append(key="k", messages=[{"role": "user", "content": "a"}])

    with pytest.raises(InvalidInput):
        call(bad)

    assert list(Message.objects.values_list("content", flat=True)) == ["a"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "messages",
    [
        "not a list",
        [None],
        [["role", "user"]],
        [{"role": "user", "tool_calls": {"id": "x"}}],
        [{"role": "user", "usage": [1, 2]}],
        [{"role": "user", "usage": {"prompt_tokens": 2**70}}],
        [{"role": "user", "created_at": {"at": 1}}],
        [{"role": "user", "content": 5}],
        [{"role": "user", "content": "x" * 2_000_001}],
        [{"role": "user", "model": "m" * 256}],
        [{"role": "user", "status": "s" * 33}],
    ],
)
def test_malformed_batches_are_domain_errors(messages: Any) -> None:
    with pytest.raises(FleetError):
        services.messages_append(key="k", messages=messages)

    assert not Session.objects.exists()


@pytest.mark.django_db
def test_unicode_text_round_trips() -> None:
    text = "emoji 😀, CJK 中文, RTL עברית, combining é, tab\tand newline\n"

    services.messages_append(
        key="k ✓",
        session={"name": "naïve ✓", "metadata": {"ключ": "значение"}},
        messages=[{"role": "user", "content": text, "name": "名前"}],
    )

    session = Session.objects.get(key="k ✓")
    assert session.name == "naïve ✓"
    assert session.metadata == {"ключ": "значение"}
    assert Message.objects.get().content == text
