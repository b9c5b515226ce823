"""The session endpoints: upsert, read, delete (tombstones), lists, running, stuck."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from sessions import services
from sessions.models import Session, Tombstone
from tests.api_client import ApiClient, assert_error, make_key, store_counts


@pytest.fixture
def api(db: None) -> ApiClient:
    return ApiClient(make_key())


def test_it_creates_a_session_with_201_and_answers_the_flat_shape(api: ApiClient) -> None:
    response = api.put(
        "sessions/s1",
        {
            "name": "First",
            "agent": "coder",
            "kind": "autonomous",
            "channel": "telegram",
            "channel_ref": "telegram.bot",
            "model": "gpt-4o",
            "goal_text": "ship it",
            "project_root": "/srv/app",
            "metadata": {"team": "core"},
            "todo": "- [ ] tests",
        },
    )

    assert response.status_code == 201
    body = response.json()
    assert body["key"] == "s1"
    assert body["name"] == "First"
    assert body["kind"] == "autonomous"
    assert body["status"] == "active"
    assert body["state"] == "idle"
    assert body["metadata"] == {"team": "core"}
    assert body["todo"] == "- [ ] tests"
    # Totals sit flat beside the fields; money is a decimal string.
    assert body["turns"] == 0
    assert body["message_count"] == 0
    assert body["cost_usd"] == "0.000000000"
    assert body["created_at"].endswith("Z")
    assert Session.objects.get(key="s1").agent == "coder"


def test_an_upsert_of_an_existing_session_answers_200_and_keeps_absent_fields(
    api: ApiClient,
) -> None:
    api.put("sessions/s1", {"name": "First", "agent": "coder", "metadata": {"a": "1"}})

    response = api.put("sessions/s1", {"todo": "next", "metadata": {"b": "2"}})

    assert response.status_code == 200
    session = Session.objects.get(key="s1")
    assert session.name == "First"
    assert session.agent == "coder"
    assert session.todo == "next"
    assert session.metadata == {"a": "1", "b": "2"}


def test_an_upsert_never_replaces_routing_context_with_an_empty_value(api: ApiClient) -> None:
    api.put("sessions/s1", {"room_id": "room-9"})

    api.put("sessions/s1", {"room_id": ""})

    assert Session.objects.get(key="s1").room_id == "room-9"


def test_a_get_response_can_be_put_back_unchanged(api: ApiClient) -> None:
    body = api.put("sessions/s1", {"name": "n"}).json()

    response = api.put("sessions/s1", body)

    assert response.status_code == 200, response.content
    assert response.json()["name"] == "n"


def test_an_upsert_may_report_totals_for_agents_without_messages(api: ApiClient) -> None:
    response = api.put(
        "sessions/z1",
        {"turns": 3, "prompt_tokens": 100, "completion_tokens": 40, "cost_usd": "0.25"},
    )

    body = response.json()
    assert body["turns"] == 3
    assert body["total_tokens"] == 140
    assert body["cost_usd"] == "0.250000000"


def test_it_reads_a_session(api: ApiClient) -> None:
    services.session_upsert(key="s1", fields={"agent": "coder", "todo": "x"})

    response = api.get("sessions/s1")

    assert response.status_code == 200
    assert response.json()["agent"] == "coder"
    assert response.json()["todo"] == "x"


def test_an_unknown_session_is_404(api: ApiClient) -> None:
    assert_error(api.get("sessions/nope"), 404, "not_found", "key")


def test_keys_may_contain_slashes(api: ApiClient) -> None:
    assert api.put("sessions/discord/clamps/123", {"name": "thread"}).status_code == 201

    response = api.get("sessions/discord/clamps/123")

    assert response.status_code == 200
    assert response.json()["key"] == "discord/clamps/123"
    assert api.get("sessions/discord/clamps/123/messages").status_code == 200


def test_delete_leaves_a_tombstone_and_later_writes_are_410(api: ApiClient) -> None:
    api.post("sessions/s1/messages", {"messages": [{"role": "user", "content": "hi"}]})

    response = api.delete("sessions/s1")

    assert response.status_code == 204
    assert not Session.objects.filter(key="s1").exists()
    assert Tombstone.objects.filter(key="s1").exists()
    before = store_counts()
    assert_error(api.put("sessions/s1", {"name": "again"}), 410, "gone", "key")
    assert_error(
        api.post("sessions/s1/messages", {"messages": [{"role": "user", "content": "x"}]}),
        410,
        "gone",
    )
    assert_error(api.get("sessions/s1"), 410, "gone")
    assert_error(api.delete("sessions/s1"), 410, "gone")
    assert store_counts() == before


def test_deleting_an_unknown_session_is_404(api: ApiClient) -> None:
    assert_error(api.delete("sessions/nope"), 404, "not_found")


def test_the_list_is_newest_activity_first_and_filters(api: ApiClient) -> None:
    now = timezone.now()
    for index, (agent, status) in enumerate(
        [("a", "active"), ("b", "completed"), ("a", "completed"), ("a", "active")]
    ):
        services.session_upsert(
            key=f"s{index}",
            fields={"agent": agent, "status": status},
            now=now + timedelta(seconds=index),
        )

    everything = api.get("sessions").json()
    filtered = api.get("sessions", agent="a", status="completed").json()

    assert [item["key"] for item in everything["items"]] == ["s3", "s2", "s1", "s0"]
    assert everything["next"] is None
    assert [item["key"] for item in filtered["items"]] == ["s2"]


def test_an_unknown_filter_value_is_422_naming_the_parameter(api: ApiClient) -> None:
    assert_error(api.get("sessions", status="sleeping"), 422, "invalid", "status")
    assert_error(api.get("sessions", channel="irc"), 422, "invalid", "channel")


def test_the_cursor_walk_visits_every_session_once_while_new_ones_arrive(
    api: ApiClient,
) -> None:
    start = timezone.now() - timedelta(hours=1)
    # Several sessions share a timestamp: the id breaks the tie.
    for index in range(23):
        services.session_upsert(key=f"old-{index}", now=start + timedelta(seconds=index // 3))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": 5, **({"cursor": cursor} if cursor else {})}
        page = api.get("sessions", **query).json()
        seen.extend(item["key"] for item in page["items"])
        pages += 1
        # New sessions arrive between pages, newer than everything walked.
        services.session_upsert(key=f"new-{pages}")
        cursor = page["next"]
        if cursor is None:
            break

    assert sorted(seen) == sorted(f"old-{index}" for index in range(23))
    assert len(seen) == len(set(seen))
    assert pages == 5


@pytest.mark.parametrize(
    "cursor",
    ["garbage", "!!!", "eyJrIjoic2Vzc2lvbnMifQ", "e30", "W10", "x" * 600, "eyJrIjoib3RoZXIifQ"],
)
def test_a_garbage_cursor_is_422(api: ApiClient, cursor: str) -> None:
    assert_error(api.get("sessions", cursor=cursor), 422, "invalid", "cursor")


def test_a_cursor_at_the_calendars_edge_is_refused_not_a_crash(api: ApiClient) -> None:
    from fleet.api import cursors

    for moment in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "2026-01-01"):
        cursor = cursors.encode("sessions", t=moment, i=1)
        assert_error(api.get("sessions", cursor=cursor), 422, "invalid", "cursor")
    cursor = cursors.encode("sessions", t="2026-01-01T00:00:00Z", i=2**70)
    assert_error(api.get("sessions", cursor=cursor), 422, "invalid", "cursor")


@pytest.mark.parametrize("limit", ["abc", "0", "-1", "1001", "100000", "1.5", ""])
def test_a_bad_limit_is_422_naming_it(api: ApiClient, limit: str) -> None:
    response = api.call("GET", f"/api/v1/sessions?limit={limit}")
    assert_error(response, 422, "invalid", "limit")


def test_running_lists_running_sessions_newest_turn_first(api: ApiClient) -> None:
    now = timezone.now()
    services.session_upsert(key="r1", fields={"state": "running"}, now=now - timedelta(minutes=5))
    services.session_upsert(key="r2", fields={"state": "running"}, now=now)
    services.session_upsert(key="idle", fields={"state": "idle"}, now=now)

    response = api.get("sessions/running")

    assert [item["key"] for item in response.json()["items"]] == ["r2", "r1"]


def test_running_pages_with_a_cursor(api: ApiClient) -> None:
    now = timezone.now()
    for index in range(5):
        services.session_upsert(
            key=f"r{index}", fields={"state": "running"}, now=now - timedelta(seconds=index)
        )

    first = api.get("sessions/running", limit=3).json()
    second = api.get("sessions/running", limit=3, cursor=first["next"]).json()

    keys = [item["key"] for item in first["items"] + second["items"]]
    assert keys == ["r0", "r1", "r2", "r3", "r4"]
    assert second["next"] is None
    assert_error(api.get("sessions/running", cursor=first["next"] + "x"), 422, "invalid")


def test_stuck_lists_turns_older_than_the_threshold_oldest_first(api: ApiClient) -> None:
    now = timezone.now()
    services.session_upsert(key="old", fields={"state": "running"}, now=now - timedelta(hours=2))
    services.session_upsert(key="mid", fields={"state": "running"}, now=now - timedelta(hours=1))
    services.session_upsert(key="new", fields={"state": "running"}, now=now)

    response = api.get("sessions/stuck", older_than=1800)
    default = api.get("sessions/stuck")

    assert [item["key"] for item in response.json()["items"]] == ["old", "mid"]
    assert [item["key"] for item in default.json()["items"]] == ["old", "mid"]


def test_stuck_lists_a_long_turn_whose_session_keeps_writing(api: ApiClient) -> None:
    now = timezone.now()
    services.session_upsert(key="busy", fields={"state": "running"}, now=now - timedelta(hours=1))
    Session.objects.filter(key="busy").update(last_active_at=now)

    response = api.get("sessions/stuck", older_than=1800)

    assert [item["key"] for item in response.json()["items"]] == ["busy"]


LARGE_COLUMNS = ('."metadata"', '."todo"')


@pytest.mark.parametrize(
    "path", ["sessions", "sessions/running", "sessions/stuck?older_than=0", "sessions?agent=coder"]
)
def test_lists_leave_out_metadata_and_todo_and_never_read_them(api: ApiClient, path: str) -> None:
    services.session_upsert(
        key="s1",
        fields={
            "agent": "coder",
            "state": "running",
            "goal_text": "ship it",
            "metadata": {"team": "core"},
            "todo": "- [ ] tests",
        },
        now=timezone.now() - timedelta(hours=1),
    )

    with CaptureQueriesContext(connection) as queries:
        response = api.call("GET", f"/api/v1/{path}")

    assert response.status_code == 200
    [item] = response.json()["items"]
    assert (item["key"], item["goal_text"]) == ("s1", "ship it")
    assert "metadata" not in item
    assert "todo" not in item
    sql = " ".join(query["sql"] for query in queries.captured_queries)
    assert "agent_sessions_session" in sql
    assert not [column for column in LARGE_COLUMNS if column in sql]
    single = api.get("sessions/s1").json()
    assert (single["metadata"], single["todo"]) == ({"team": "core"}, "- [ ] tests")


@pytest.mark.parametrize("older_than", ["-1", "abc", str(10**12), "1e3"])
def test_a_bad_older_than_is_422(api: ApiClient, older_than: str) -> None:
    response = api.call("GET", f"/api/v1/sessions/stuck?older_than={older_than}")
    assert_error(response, 422, "invalid", "older_than")


def test_money_stays_exact_through_the_api(api: ApiClient) -> None:
    api.put("sessions/m", {"cost_usd": 0.1})
    api.put("sessions/m", {"cost_usd": "0.123456789"})

    assert api.get("sessions/m").json()["cost_usd"] == "0.123456789"
    assert Session.objects.get(key="m").cost_usd == Decimal("0.123456789")


@pytest.mark.parametrize(
    "path",
    [
        "sessions",
        "sessions/running",
        "sessions/stuck",
        "sessions/s1",
        "sessions/s1/messages",
        "sessions/s1/usage",
        "search?q=hi",
        "fleet",
        "sessions/unknown",
    ],
)
def test_head_answers_like_get_without_a_body(api: ApiClient, path: str) -> None:
    api.post("sessions/s1/messages", {"messages": [{"role": "user", "content": "hi"}]})
    get = api.call("GET", path)

    head = api.call("HEAD", path)

    assert head.status_code == get.status_code
    assert head["Content-Type"] == get["Content-Type"]
    assert head.content == b""


def test_head_needs_a_key_like_get() -> None:
    response = ApiClient(None).call("HEAD", "sessions")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_head_is_refused_where_get_is_not_allowed(api: ApiClient) -> None:
    response = api.call("HEAD", "reconcile")

    assert response.status_code == 405
    assert "HEAD" not in response.get("Allow", "")


# --- recreate: a deleted routing key used again, on purpose --------------------------


def test_a_plain_put_on_a_deleted_key_says_how_to_start_again(api: ApiClient) -> None:
    api.put("sessions/telegram_user123", {"agent": "bot"})
    api.delete("sessions/telegram_user123")

    error = assert_error(api.put("sessions/telegram_user123", {"name": "x"}), 410, "gone", "key")

    assert "send recreate: true to start a new session under this key" in error["message"]


def test_the_410_hint_survives_a_long_key(api: ApiClient) -> None:
    # repr() escapes every quote of this key: its message doubles in length.
    key = "'" * 254 + '"'
    services.session_upsert(key=key, fields={})
    services.session_delete(key=key)

    error = assert_error(api.put("sessions/" + "%27" * 254 + "%22", {}), 410, "gone", "key")

    assert error["message"].endswith("send recreate: true to start a new session under this key)")


def test_recreate_starts_a_new_session_under_a_deleted_key(api: ApiClient) -> None:
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    api.post(
        "sessions/telegram_user123/messages", {"session": {"agent": "bot"}, "messages": messages}
    )
    old_id = Session.objects.get(key="telegram_user123").id
    api.delete("sessions/telegram_user123")

    response = api.put("sessions/telegram_user123", {"recreate": True, "agent": "bot"})

    assert response.status_code == 201
    body = response.json()
    assert (body["key"], body["agent"], body["message_count"], body["last_seq"]) == (
        "telegram_user123",
        "bot",
        0,
        0,
    )
    assert "recreate" not in body
    assert Session.objects.get(key="telegram_user123").id != old_id
    assert not Tombstone.objects.filter(key="telegram_user123").exists()
    # The new session numbers its messages from 1, and appends work again.
    appended = api.post(
        "sessions/telegram_user123/messages", {"messages": [{"role": "user", "content": "again"}]}
    )
    assert (appended.status_code, appended.json()["first_seq"]) == (200, 1)


def test_recreate_on_a_live_key_is_ignored_so_a_retry_is_safe(api: ApiClient) -> None:
    api.put("sessions/s1", {"agent": "bot"})
    api.delete("sessions/s1")
    assert api.put("sessions/s1", {"recreate": True, "name": "first"}).status_code == 201
    api.post("sessions/s1/messages", {"messages": [{"role": "user", "content": "kept"}]})

    retried = api.put("sessions/s1", {"recreate": True, "name": "second"})

    assert retried.status_code == 200
    assert (retried.json()["name"], retried.json()["message_count"]) == ("second", 1)
    assert Session.objects.filter(key="s1").count() == 1


def test_recreate_on_a_key_that_never_existed_just_creates(api: ApiClient) -> None:
    assert api.put("sessions/fresh", {"recreate": True}).status_code == 201


def test_recreate_false_on_a_deleted_key_is_410(api: ApiClient) -> None:
    api.put("sessions/s1", {})
    api.delete("sessions/s1")

    assert_error(api.put("sessions/s1", {"recreate": False}), 410, "gone", "key")
    assert Tombstone.objects.filter(key="s1").exists()


@pytest.mark.parametrize("value", ["true", 1, None, [True]])
def test_recreate_must_be_a_boolean(api: ApiClient, value: object) -> None:
    api.put("sessions/s1", {})
    api.delete("sessions/s1")
    before = store_counts()

    assert_error(api.put("sessions/s1", {"recreate": value}), 422, "invalid", "recreate")
    assert store_counts() == before


def test_only_a_put_recreates_appends_and_update_last_stay_410(api: ApiClient) -> None:
    api.put("sessions/s1", {})
    api.delete("sessions/s1")

    assert_error(
        api.post(
            "sessions/s1/messages",
            {"session": {"recreate": True}, "messages": [{"role": "user", "content": "x"}]},
        ),
        422,
        "invalid",
    )
    assert_error(
        api.post("sessions/s1/messages", {"messages": [{"role": "user", "content": "x"}]}),
        410,
        "gone",
    )
    assert Tombstone.objects.filter(key="s1").exists()


def test_a_recreated_session_can_be_deleted_again(api: ApiClient) -> None:
    api.put("sessions/s1", {})
    api.delete("sessions/s1")
    api.put("sessions/s1", {"recreate": True})

    assert api.delete("sessions/s1").status_code == 204

    assert Tombstone.objects.filter(key="s1").count() == 1
    assert_error(api.put("sessions/s1", {}), 410, "gone", "key")


# --- counting ------------------------------------------------------------------------


def test_count_true_gives_the_total_of_the_filtered_list(api: ApiClient) -> None:
    for index in range(5):
        services.session_upsert(key=f"a{index}", fields={"agent": "appam"})
    services.session_upsert(key="other", fields={"agent": "koda"})

    everything = api.get("sessions", count="true", limit=2).json()
    appam = api.get("sessions", count="true", agent="appam", limit=1).json()
    plain = api.get("sessions", limit=2).json()

    assert (everything["total"], everything["total_exact"], len(everything["items"])) == (
        6,
        True,
        2,
    )
    assert appam["total"] == 5
    # Not asked for, not counted.
    assert (plain["total"], plain["total_exact"]) == (None, None)
    # The total is of the whole list, not of what is left after the cursor.
    second = api.get("sessions", count="true", limit=2, cursor=everything["next"]).json()
    assert second["total"] == 6


def test_the_count_stops_at_its_bound(api: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from fleet.api import sessions as session_routes

    monkeypatch.setattr(session_routes, "MAX_COUNTED", 3)
    for index in range(5):
        services.session_upsert(key=f"s{index}", fields={})

    with CaptureQueriesContext(connection) as queries:
        body = api.get("sessions", count="true", limit=1).json()

    assert (body["total"], body["total_exact"]) == (3, False)
    counting = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert len(counting) == 1
    assert "LIMIT 4" in counting[0].upper()


def test_count_must_be_a_boolean(api: ApiClient) -> None:
    assert_error(api.get("sessions", count="maybe"), 422, "invalid", "count")


# --- reported totals without a cost (issue 12) ------------------------------------------


def fleet_unpriced(api: ApiClient) -> int:
    return api.get("fleet").json()["usage"]["today"]["unpriced_calls"]


def test_reported_tokens_without_a_cost_for_an_unpriced_model_are_unpriced_not_zero(
    api: ApiClient,
) -> None:
    response = api.put(
        "sessions/z1",
        {"model": "no-such-model-xyz", "prompt_tokens": 100, "completion_tokens": 40},
    )

    assert response.status_code == 201, response.content
    assert response.json()["unpriced_calls"] == 1
    assert api.get("sessions/z1").json()["unpriced_calls"] == 1
    assert fleet_unpriced(api) == 1


def test_reporting_the_same_unpriced_totals_again_counts_the_session_once(
    api: ApiClient,
) -> None:
    fields = {"model": "no-such-model-xyz", "prompt_tokens": 100}
    api.put("sessions/z1", fields)

    response = api.put("sessions/z1", {**fields, "prompt_tokens": 200})

    assert response.json()["unpriced_calls"] == 1
    assert fleet_unpriced(api) == 1


def test_a_reported_cost_makes_reported_totals_priced_again(api: ApiClient) -> None:
    api.put("sessions/z1", {"model": "no-such-model-xyz", "prompt_tokens": 100})

    response = api.put("sessions/z1", {"prompt_tokens": 100, "cost_usd": "0.5"})

    assert response.json()["unpriced_calls"] == 0
    assert response.json()["cost_usd"] == "0.500000000"
    assert fleet_unpriced(api) == 0


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "no-such-model-xyz", "prompt_tokens": 100, "cost_usd": "0"},
        {"model": "no-such-model-xyz", "turns": 2},
        {"model": "no-such-model-xyz", "prompt_tokens": 0},
    ],
    ids=["cost-sent", "no-tokens", "zero-tokens"],
)
def test_reported_totals_with_a_cost_or_without_tokens_are_not_unpriced(
    api: ApiClient, fields: dict[str, object]
) -> None:
    response = api.put("sessions/z1", fields)

    assert response.json()["unpriced_calls"] == 0
    assert fleet_unpriced(api) == 0
