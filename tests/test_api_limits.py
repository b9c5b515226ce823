"""Bad input and limits: every refusal has the error shape, the right status, and writes nothing.

One test per case of the issue's "Bad input" list (the 410 and 409 cases are
in test_api_sessions.py and test_api_messages.py), plus the HTTP-level ones:
body encoding and size, query parameters, unknown routes and methods.
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db.models import BigIntegerField, Value
from django.test import override_settings

from sessions import services
from sessions.models import (
    BudgetUsage,
    DailyUsage,
    Message,
    MinuteUsage,
    ModelPrice,
    Session,
)
from tests.api_client import ApiClient, assert_error, make_key, store_counts


@pytest.fixture
def api(db: None) -> ApiClient:
    return ApiClient(make_key())


@pytest.fixture
def existing(api: ApiClient) -> tuple[int, int, int]:
    """A session with one message; returns the row counts a refusal must leave."""
    services.messages_append(key="s1", messages=[{"role": "user", "content": "kept"}])
    return store_counts()


def append(api: ApiClient, *messages: Any, key: str = "s1", **body: Any) -> Any:
    return api.post(f"sessions/{key}/messages", {"messages": list(messages), **body})


def ok(**extra: Any) -> dict[str, Any]:
    return {"role": "user", "content": "fine", **extra}


def usage(**tokens: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": "x", "usage": tokens}


# --- the body itself ------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"messages": [',
        b"{'messages': []}",
        b'{"messages": [] } trailing',
        b"\xff\xfe\x00",
        b'{"messages": [{"role": "user", "content": NaN}]}',
        b'{"messages": [], "x": Infinity}',
    ],
)
def test_malformed_json_is_400_and_writes_nothing(
    api: ApiClient, existing: tuple[int, int, int], raw: bytes
) -> None:
    assert_error(api.post("sessions/s1/messages", raw=raw), 400, "malformed")
    assert store_counts() == existing


@pytest.mark.parametrize("raw", [b"[]", b'"messages"', b"42", b"null", b"true"])
def test_a_body_that_is_not_an_object_is_400(
    api: ApiClient, existing: tuple[int, int, int], raw: bytes
) -> None:
    error = assert_error(api.post("sessions/s1/messages", raw=raw), 400, "malformed")
    assert "object" in error["message"]
    assert_error(api.put("sessions/s1", raw=raw), 400, "malformed")
    assert store_counts() == existing


def test_a_pathologically_nested_body_is_refused_not_a_crash(
    api: ApiClient, existing: tuple[int, int, int]
) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    raw = '{"messages": [{"role": "user", "content": "x", "tool_calls": ' + deep + "}]}"

    assert_error(api.post("sessions/s1/messages", raw=raw), 400, "malformed")
    assert store_counts() == existing


def nested_arguments(depth: int) -> str:
    """A body whose one tool call's ``arguments`` are ``depth`` nested lists."""
    nested = "[" * depth + "]" * depth
    call = '{"id": "c1", "name": "f", "arguments": ' + nested + "}"
    return '{"messages": [{"role": "assistant", "tool_calls": [' + call + "]}]}"


@pytest.mark.parametrize("depth", [100, 500])
def test_arguments_nested_well_within_the_interpreters_limit_are_stored_as_sent(
    api: ApiClient, depth: int
) -> None:
    response = api.post(f"sessions/deep-{depth}/messages", raw=nested_arguments(depth))

    assert response.status_code == 201, response.content[:200]
    stored = Message.objects.get(session__key=f"deep-{depth}").tool_calls[0]["arguments"]
    assert stored == json.loads("[" * depth + "]" * depth)


# Python's json reads and writes nested values recursively, one interpreter frame a
# level: a body nested as deep as the recursion limit cannot be read, whatever the
# call stack above it. It is refused as malformed (api.py's RecursionError handler)
# and writes nothing. Between ~500 and the limit the outcome depends on how deep
# the stack already is (test client, gunicorn worker), so no depth there is pinned.
@pytest.mark.parametrize("depth", [sys.getrecursionlimit(), 1200])
def test_arguments_nested_as_deep_as_the_recursion_limit_are_400_and_write_nothing(
    api: ApiClient, existing: tuple[int, int, int], depth: int
) -> None:
    response = api.post(f"sessions/deep-{depth}/messages", raw=nested_arguments(depth))

    error = assert_error(response, 400, "malformed")
    assert error["message"] == "the body is nested too deeply"
    assert store_counts() == existing


def test_a_json_body_is_read_whatever_the_content_type(api: ApiClient) -> None:
    response = api.post("sessions/s1/messages", {"messages": [ok()]}, content_type="text/plain")

    assert response.status_code == 201


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        ("messages=1", "application/x-www-form-urlencoded"),
        ("--b\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n--b--", "multipart/form-data"),
    ],
)
def test_a_form_body_is_400(api: ApiClient, raw: str, content_type: str) -> None:
    response = api.post("sessions/s1/messages", raw=raw, content_type=content_type)

    assert_error(response, 400, "malformed")
    assert store_counts() == (0, 0, 0)


@override_settings(FLEET_API_MAX_BODY_BYTES=2048, DATA_UPLOAD_MAX_MEMORY_SIZE=2048)
def test_a_body_over_the_limit_is_413_and_writes_nothing(
    api: ApiClient, existing: tuple[int, int, int]
) -> None:
    big = {"messages": [ok(content="x" * 3000)]}

    error = assert_error(api.post("sessions/s1/messages", big), 413, "too_large")

    assert "2048" in error["message"]
    assert store_counts() == existing
    assert api.post("sessions/s1/messages", {"messages": [ok()]}).status_code == 200


@override_settings(FLEET_API_MAX_BODY_BYTES=10_000, DATA_UPLOAD_MAX_MEMORY_SIZE=2048)
def test_djangos_own_body_limit_also_answers_413(
    api: ApiClient, existing: tuple[int, int, int]
) -> None:
    big = {"messages": [ok(content="x" * 3000)]}

    assert_error(api.post("sessions/s1/messages", big), 413, "too_large")
    assert store_counts() == existing


def test_the_default_limits_suit_real_agents(settings: Any) -> None:
    # A long tool result can be hundreds of KB; a batch of them several MB.
    assert settings.FLEET_API_MAX_BODY_BYTES >= 16 * 1024 * 1024
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE >= settings.FLEET_API_MAX_BODY_BYTES
    assert settings.FLEET_MAX_MESSAGE_CHARS >= 1_000_000
    assert settings.FLEET_API_MAX_BATCH >= 500


def test_a_long_tool_result_is_accepted(api: ApiClient) -> None:
    result = "line of output\n" * 30_000  # 450 KB
    call = {"id": "c1", "name": "cat", "arguments": {}}

    response = append(
        api,
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": result},
    )

    assert response.status_code == 201
    assert len(api.get("sessions/s1/messages").json()["items"][1]["content"]) == len(result)


def test_six_big_puts_cannot_grow_a_session_without_bound(api: ApiClient) -> None:
    """Issue 10: metadata merged on each PUT grew one session to 159 MB, then every list."""
    statuses = []
    for index in range(6):
        body = {"metadata": {f"part{index}": "x" * 20_000}, "todo": "t" * 200_000}
        statuses.append(api.put("sessions/big", body).status_code)
    one_huge = api.put("sessions/big", {"metadata": {"huge": "x" * 1_000_000}})
    for index in range(20):
        api.put(f"sessions/other{index}", {"agent": "a"})

    # Three 20 KB parts fit the 64 KiB default; each later one is refused whole.
    assert statuses == [201, 200, 200, 422, 422, 422]
    assert_error(one_huge, 422, "invalid", "metadata")
    session = Session.objects.get(key="big")
    assert sorted(session.metadata) == ["part0", "part1", "part2"]
    assert len(json.dumps(session.metadata)) <= 64 * 1024
    listing = api.get("sessions", limit=50)
    assert len(listing.json()["items"]) == 21
    assert len(listing.content) < 50_000
    assert len(api.get("sessions/big").content) < 300 * 1024


def test_a_todo_over_its_cap_is_422_and_writes_nothing(api: ApiClient) -> None:
    api.put("sessions/s1", {"todo": "- [ ] keep"})

    response = api.put("sessions/s1", {"name": "n", "todo": "x" * (256 * 1024 + 1)})

    assert_error(response, 422, "invalid", "todo")
    session = Session.objects.get(key="s1")
    assert (session.todo, session.name) == ("- [ ] keep", "")


# --- values (422 naming the field) ----------------------------------------------


@pytest.mark.parametrize(
    ("messages", "body", "field"),
    [
        ([ok(), ok(), ok(), {"role": "robot", "content": "x"}], {}, "messages[3].role"),
        ([ok()], {"session": {"status": "sleeping"}}, "session.status"),
        ([ok()], {"session": {"kind": "daemon"}}, "session.kind"),
        ([ok()], {"session": {"channel": "irc"}}, "session.channel"),
        ([ok()], {"session": {"state": "dreaming"}}, "session.state"),
    ],
    ids=["role", "status", "kind", "channel", "state"],
)
def test_an_unknown_choice_is_422_naming_the_field(
    api: ApiClient, existing: tuple[int, int, int], messages: list, body: dict, field: str
) -> None:
    error = assert_error(append(api, *messages, **body), 422, "invalid", field)

    assert "must be one of" in error["message"]
    assert store_counts() == existing


@pytest.mark.parametrize("field", ["status", "kind", "channel", "state"])
def test_an_unknown_choice_in_an_upsert_is_422_and_changes_nothing(
    api: ApiClient, existing: tuple[int, int, int], field: str
) -> None:
    before = Session.objects.values().get(key="s1")

    assert_error(api.put("sessions/s1", {"name": "x", field: "bogus"}), 422, "invalid", field)
    assert Session.objects.values().get(key="s1") == before


@pytest.mark.parametrize(
    "value", [-1, "5", 1.5, True, None, 10**20, [], {"n": 1}], ids=lambda v: repr(v)[:20]
)
def test_negative_or_non_integer_tokens_are_422(
    api: ApiClient, existing: tuple[int, int, int], value: Any
) -> None:
    response = append(api, ok(), usage(prompt_tokens=value, completion_tokens=1))

    assert_error(response, 422, "invalid", "messages[1].usage.prompt_tokens")
    assert store_counts() == existing


def test_negative_reported_totals_in_an_upsert_are_422(
    api: ApiClient, existing: tuple[int, int, int]
) -> None:
    assert_error(api.put("sessions/s1", {"turns": -3}), 422, "invalid", "turns")
    assert_error(api.put("sessions/s1", {"cost_usd": "-1"}), 422, "invalid", "cost_usd")
    assert_error(api.put("sessions/s1", {"cost_usd": "NaN"}), 422, "invalid", "cost_usd")
    assert Session.objects.get(key="s1").turns == 0


def test_reasoning_over_completion_is_422(api: ApiClient, existing: tuple[int, int, int]) -> None:
    response = append(api, usage(prompt_tokens=1, completion_tokens=5, reasoning_tokens=6))

    assert_error(response, 422, "invalid", "messages[0].usage.reasoning_tokens")
    assert store_counts() == existing


def test_cache_over_prompt_is_422(api: ApiClient, existing: tuple[int, int, int]) -> None:
    response = append(api, usage(prompt_tokens=10, cache_read_tokens=8, cache_creation_tokens=3))

    assert_error(response, 422, "invalid", "messages[0].usage.cache_read_tokens")
    assert store_counts() == existing


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2026-11-21",
        "2026-11-21T10:00:00",
        "21/11/2026 10:00",
        "2026-13-01T00:00:00Z",
        "2026-11-21T25:00:00Z",
        12345,
        "",
    ],
)
def test_a_timestamp_that_is_not_rfc3339_is_422(
    api: ApiClient, existing: tuple[int, int, int], value: Any
) -> None:
    response = append(api, ok(created_at=value))

    assert_error(response, 422, "invalid", "messages[0].created_at")
    assert store_counts() == existing


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_a_timestamp_that_falls_outside_the_years_1_to_9999_in_utc_is_422(
    api: ApiClient, existing: tuple[int, int, int], value: str
) -> None:
    response = append(api, ok(created_at=value))
    upsert = api.put("sessions/edge", {"created_at": value, "last_active_at": value})

    message = "must fall within the years 1 to 9999 in UTC"
    assert assert_error(response, 422, "invalid", "messages[0].created_at")["message"] == message
    assert assert_error(upsert, 422, "invalid", "created_at")["message"] == message
    assert store_counts() == existing


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"])
def test_a_timestamp_at_the_calendars_edge_in_utc_is_stored(api: ApiClient, value: str) -> None:
    response = append(api, ok(created_at=value), key="edge-append")
    upsert = api.put("sessions/edge", {"created_at": value, "last_active_at": value})

    assert response.status_code == 201, response.content
    assert upsert.status_code == 201, upsert.content
    moment = datetime.fromisoformat(value)
    assert Message.objects.get(session__key="edge-append").created_at == moment
    assert Session.objects.get(key="edge").created_at == moment


def test_a_key_over_255_characters_is_422(api: ApiClient) -> None:
    key = "k" * 256

    assert_error(append(api, ok(), key=key), 422, "invalid", "key")
    assert_error(api.put(f"sessions/{key}", {}), 422, "invalid", "key")
    assert store_counts() == (0, 0, 0)
    assert api.put(f"sessions/{'k' * 255}", {}).status_code == 201


@pytest.mark.parametrize("key", ["%20", "%20%20", "%09", "a%00b", "a%7Fb"])
def test_an_empty_or_control_character_key_is_422(api: ApiClient, key: str) -> None:
    assert_error(api.put(f"sessions/{key}", {}), 422, "invalid", "key")
    assert_error(api.post(f"sessions/{key}/messages", {"messages": [ok()]}), 422, "invalid")
    assert_error(api.get(f"sessions/{key}"), 422, "invalid", "key")
    assert_error(api.get(f"sessions/{key}/messages"), 422, "invalid", "key")
    assert store_counts() == (0, 0, 0)


def test_a_missing_key_is_404_not_a_session(api: ApiClient) -> None:
    assert_error(api.put("sessions/", {}), 404, "not_found")
    # No route matches a path holding a newline.
    assert_error(api.put("sessions/a%0Ab", {}), 404, "not_found")
    assert store_counts() == (0, 0, 0)


@override_settings(FLEET_MAX_MESSAGE_CHARS=100)
def test_content_over_the_limit_is_422(api: ApiClient, existing: tuple[int, int, int]) -> None:
    response = append(api, ok(content="x" * 100), ok(content="x" * 101))

    error = assert_error(response, 422, "invalid", "messages[1].content")
    assert "100" in error["message"]
    assert store_counts() == existing


@override_settings(FLEET_API_MAX_BATCH=3)
def test_a_batch_over_the_limit_is_422(api: ApiClient, existing: tuple[int, int, int]) -> None:
    assert_error(append(api, ok(), ok(), ok(), ok()), 422, "invalid", "messages")
    assert store_counts() == existing
    assert append(api, ok(), ok(), ok()).json()["appended"] == 3


def test_an_unknown_message_field_is_422_naming_it(
    api: ApiClient, existing: tuple[int, int, int]
) -> None:
    assert_error(append(api, ok(colour="red")), 422, "invalid", "messages[0].colour")
    assert store_counts() == existing


def test_an_unknown_session_field_is_422_naming_it(
    api: ApiClient, existing: tuple[int, int, int]
) -> None:
    assert_error(api.put("sessions/s1", {"colour": "red"}), 422, "invalid", "colour")
    assert store_counts() == existing


def test_hostile_strings_are_refused_or_stored_exactly(api: ApiClient) -> None:
    for index, text in enumerate(["\u0000", "\ud800", "\x7f\x1b[31m", "<script>", "é" * 10]):
        raw = json.dumps({"messages": [ok(content=text)]})
        response = api.post(f"sessions/h{index}/messages", raw=raw)
        if response.status_code == 201:
            assert api.get(f"sessions/h{index}/messages").json()["items"][0]["content"] == text
        else:
            assert_error(response, 422, "invalid", "messages[0].content")


# --- query parameters, routes, methods, the unexpected -------------------------


@pytest.mark.parametrize(
    "query",
    [
        "agent=%00",
        "model=a%00b",
        "project_root=%00",
        "status=%00",
        "cursor=%00",
        "cursor=%FF%FE",
        "limit=%00",
        "limit=1e3",
        "limit=99999999999999999999999999",
    ],
)
def test_hostile_query_parameters_are_422(api: ApiClient, query: str) -> None:
    assert_error(api.call("GET", f"/api/v1/sessions?{query}"), 422, "invalid")


@pytest.mark.parametrize(
    "query", ["q=%00", "q=", "q=%20", "q=" + "x" * 501, "q=a&limit=0", "q=a&limit=x", ""]
)
def test_bad_search_parameters_are_422(api: ApiClient, query: str) -> None:
    assert_error(api.call("GET", f"/api/v1/search?{query}"), 422, "invalid")


def test_an_unknown_route_is_a_json_404(api: ApiClient) -> None:
    assert_error(api.get("/api/v1/nope"), 404, "not_found")
    assert_error(api.get("/api/v1/"), 404, "not_found")
    assert_error(api.get("/api/v1/sessions/s/unknown-thing/x/messages/lastx"), 404, "not_found")


def test_a_method_a_route_does_not_have_is_a_json_405(api: ApiClient) -> None:
    response = api.call("PATCH", "sessions/s1", {"name": "x"})

    assert_error(response, 405, "method_not_allowed")
    assert "PUT" in response["Allow"]
    assert_error(api.call("POST", "fleet", {}), 405, "method_not_allowed")
    assert store_counts() == (0, 0, 0)


def test_an_unexpected_error_still_answers_the_error_shape(
    api: ApiClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(services, "session_upsert", broken)

    response = api.put("sessions/s1", {})

    assert_error(response, 500, "server_error")
    assert "boom" not in response.content.decode()
    assert "boom" in caplog.text


def test_an_empty_body_where_one_is_needed_is_422(api: ApiClient) -> None:
    error = assert_error(api.post("sessions/s1/messages", raw=b""), 422, "invalid")

    assert "body" in error["message"]
    assert store_counts() == (0, 0, 0)


# --- bounds: money, tokens and the totals they feed ---------------------------------

JUST_UNDER = "999999999.999999999"  # the largest amount of money the store holds


def spend(cost: str, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": "x", "usage": {"cost_usd": cost}, **extra}


def reads(api: ApiClient, key: str = "s1") -> list[int]:
    paths = [
        f"sessions/{key}",
        "sessions",
        f"sessions/{key}/messages",
        f"sessions/{key}/usage",
        "search?q=kept",
        "fleet",
    ]
    return [api.get(path).status_code for path in paths]


def test_a_cost_that_rounds_to_the_bound_is_refused(
    api: ApiClient, existing: tuple[int, int, int]
) -> None:
    rounds_up = "999999999.9999999999"

    assert_error(api.put("sessions/s1", {"cost_usd": rounds_up}), 422, "invalid", "cost_usd")
    assert_error(append(api, spend(rounds_up)), 422, "invalid", "messages[0].usage.cost_usd")
    assert store_counts() == existing
    assert reads(api) == [200] * 6


def test_a_cost_just_under_the_bound_is_stored_and_reads(api: ApiClient) -> None:
    assert api.put("sessions/s1", {"cost_usd": JUST_UNDER}).status_code == 201

    assert api.get("sessions/s1").json()["cost_usd"] == JUST_UNDER
    assert api.get("fleet").json()["usage"]["all_time"]["cost_usd"] == JUST_UNDER


def test_appends_that_take_the_session_total_past_the_bound_are_refused(
    api: ApiClient, existing: tuple[int, int, int]
) -> None:
    assert append(api, spend("600000000")).status_code == 200
    counts = store_counts()
    rollup = list(DailyUsage.objects.values())

    assert_error(append(api, spend("600000000")), 422, "invalid")
    assert_error(api.put("sessions/s1", {"cost_usd": "1000000000"}), 422, "invalid", "cost_usd")

    assert store_counts() == counts
    assert list(DailyUsage.objects.values()) == rollup
    assert reads(api) == [200] * 6


def test_a_days_rollup_past_its_bound_is_refused_and_writes_nothing(api: ApiClient) -> None:
    fields = {"agent": "a", "model": "m", "cost_usd": "600000000"}
    assert api.put("sessions/one", fields).status_code == 201

    assert_error(api.put("sessions/two", fields), 422, "invalid", "cost_usd")

    assert list(Session.objects.values_list("key", flat=True)) == ["one"]
    assert api.get("fleet").json()["usage"]["all_time"]["cost_usd"] == "600000000.000000000"


def test_a_days_token_rollup_past_its_bound_is_refused(api: ApiClient) -> None:
    tokens = {"agent": "a", "prompt_tokens": 6 * 10**17}
    assert api.put("sessions/one", tokens).status_code == 201

    assert_error(api.put("sessions/two", tokens), 422, "invalid", "prompt_tokens")

    assert api.get("fleet").json()["usage"]["all_time"]["prompt_tokens"] == 6 * 10**17


def test_minute_rollups_are_bounded_like_daily_ones(api: ApiClient) -> None:
    from sessions.bounds import MAX_COST_NANOS

    append(api, spend("1"), key="one")
    # A past day's rollup has room; the minute bucket is the one at its bound.
    MinuteUsage.objects.update(cost_usd=Value(MAX_COST_NANOS, output_field=BigIntegerField()))
    DailyUsage.objects.update(cost_usd=0)

    assert_error(append(api, spend("1"), key="one"), 422, "invalid")


def test_budget_rollups_are_bounded_like_daily_ones(api: ApiClient) -> None:
    from sessions.bounds import MAX_COST_NANOS

    append(api, spend("1"), key="one")
    BudgetUsage.objects.update(cost_usd=Value(MAX_COST_NANOS, output_field=BigIntegerField()))
    DailyUsage.objects.update(cost_usd=0)
    MinuteUsage.objects.update(cost_usd=0)

    assert_error(append(api, spend("1"), key="one"), 422, "invalid")
    assert Message.objects.count() == 1


def test_token_counts_inside_the_limit_never_crash_pricing(api: ApiClient) -> None:
    from sessions.bounds import MAX_TOKENS

    ModelPrice.objects.create(
        model_pattern="dear", input_per_mtok=Decimal(10**6), output_per_mtok=Decimal(10**6)
    )
    big = {"prompt_tokens": 10**15, "completion_tokens": 10**15}
    assert_error(
        append(api, usage(**big), session={"model": "dear"}),
        422,
        "invalid",
        "messages[0].usage.prompt_tokens",
    )
    at_limit = {"prompt_tokens": MAX_TOKENS, "completion_tokens": MAX_TOKENS}
    assert_error(
        append(api, usage(**at_limit), session={"model": "dear"}),
        422,
        "invalid",
        "messages[0].usage",
    )
    assert not Session.objects.exists()
    assert append(api, usage(**at_limit), session={"model": "gpt-4o"}).status_code == 201


@pytest.mark.parametrize("cost", ["1e999999999", "1E+1000000", "-1e999999999", 1e308])
def test_a_cost_with_a_huge_exponent_is_422_naming_the_field(
    api: ApiClient, existing: tuple[int, int, int], cost: Any
) -> None:
    assert_error(append(api, spend(cost)), 422, "invalid", "messages[0].usage.cost_usd")
    assert_error(api.put("sessions/s1", {"cost_usd": cost}), 422, "invalid", "cost_usd")
    assert_error(
        api.put("sessions/s1/messages/last", {"message": {"usage": {"cost_usd": cost}}}),
        422,
        "invalid",
        "message.usage.cost_usd",
    )
    assert store_counts() == existing


@pytest.mark.parametrize("cost", ["1e-999999999", "-0", "0E+999999"])
def test_a_tiny_cost_with_a_huge_exponent_is_zero(api: ApiClient, cost: str) -> None:
    assert append(api, spend(cost)).status_code == 201

    assert api.get("sessions/s1").json()["cost_usd"] == "0.000000000"


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1E999999999"])
def test_non_finite_numbers_inside_json_fields_are_422_naming_the_field(
    api: ApiClient, existing: tuple[int, int, int], number: str
) -> None:
    call = '{"id": "a", "name": "f", "arguments": [' + number + "]}"
    body = '{"messages": [{"role": "assistant", "content": null, "tool_calls": [' + call + "]}]}"
    assert_error(
        api.post("sessions/s1/messages", raw=body), 422, "invalid", "messages[0].tool_calls"
    )
    patch = '{"message": {"tool_calls": [' + call + "]}}"
    assert_error(
        api.put("sessions/s1/messages/last", raw=patch), 422, "invalid", "message.tool_calls"
    )
    metadata = '{"metadata": {"a": ' + number + "}}"
    assert_error(api.put("sessions/s1", raw=metadata), 422, "invalid", "metadata.a")
    assert store_counts() == existing
    assert reads(api) == [200] * 6


def test_clients_cannot_choose_the_cost_source(
    api: ApiClient, existing: tuple[int, int, int]
) -> None:
    forged = {"cost_usd": "1", "cost_source": "computed"}

    assert_error(
        append(api, {"role": "assistant", "content": "x", "usage": forged}),
        422,
        "invalid",
        "messages[0].usage.cost_source",
    )
    assert_error(
        api.put("sessions/s1/messages/last", {"message": {"usage": forged}}),
        422,
        "invalid",
        "message.usage.cost_source",
    )
    assert store_counts() == existing
    assert not Message.objects.exclude(cost_source="").exists()


def test_stored_values_past_a_bound_still_read(
    api: ApiClient, existing: tuple[int, int, int]
) -> None:
    huge = Value(2**63 - 1, output_field=BigIntegerField())
    append(api, spend("1"))
    Session.objects.update(cost_usd=huge, prompt_tokens=huge)
    Message.objects.exclude(cost_source="").update(cost_usd=huge, prompt_tokens=huge)
    DailyUsage.objects.update(cost_usd=huge, prompt_tokens=huge)
    MinuteUsage.objects.update(cost_usd=huge, prompt_tokens=huge)

    assert reads(api) == [200] * 6
    assert api.get("sessions/s1").json()["cost_usd"] == "9223372036.854775807"


def test_fleet_sums_of_rollups_at_their_bound_read_exactly(api: ApiClient) -> None:
    from sessions.bounds import MAX_COST_NANOS, MAX_TOTAL

    days = [date(2026, 1, 1) + timedelta(days=n) for n in range(20)]
    DailyUsage.objects.bulk_create(
        DailyUsage(day=day, cost_usd=Decimal(JUST_UNDER), prompt_tokens=MAX_TOTAL) for day in days
    )

    usage = api.get("fleet").json()["usage"]["all_time"]

    assert usage["prompt_tokens"] == 20 * MAX_TOTAL
    assert usage["cost_usd"] == f"{Decimal(20 * MAX_COST_NANOS).scaleb(-9):f}"


def test_a_write_onto_a_rollup_an_older_version_left_full_is_refused(api: ApiClient) -> None:
    append(api, spend("1"), key="one")
    full = Value(2**63 - 1, output_field=BigIntegerField())
    DailyUsage.objects.update(cost_usd=full)
    MinuteUsage.objects.update(cost_usd=0)

    # SQLite would turn the sum into a float, PostgreSQL fail with "out of range".
    assert_error(append(api, spend("1"), key="one"), 422, "invalid", "cost_usd")
    assert Message.objects.count() == 1
    assert api.get("fleet").status_code == 200
