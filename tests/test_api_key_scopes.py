"""Scoped API keys: every endpoint × {full, scoped to agents, read-only}.

A key scoped to agents reads and writes only those agents' sessions (anything
else 403, nothing written); lists, search and fleet totals leave the others
out. A read-only key's writes answer 403 and write nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from sessions import services
from sessions.models import ApiKey, Message, Session, Tombstone
from tests.api_client import ApiClient, assert_error

pytestmark = pytest.mark.django_db

MINE, THEIRS = "bot-a", "bot-b"
USAGE = {"prompt_tokens": 100, "completion_tokens": 10}


def key(name: str, **scope: Any) -> ApiClient:
    return ApiClient(ApiKey.generate(name=name, **scope)[1])


@pytest.fixture
def store() -> None:
    """One session per agent, each with two messages (one with usage), both running."""
    for session_key, agent, cost in (("mine", MINE, "0.5"), ("theirs", THEIRS, "2")):
        services.messages_append(
            key=session_key,
            session={"agent": agent, "state": "running"},
            messages=[
                {"role": "user", "content": f"hello zebra from {agent}", "message_id": "m-1"},
                {"role": "assistant", "content": "zebra", "usage": {**USAGE, "cost_usd": cost}},
            ],
        )
    Session.objects.update(turn_started_at=timezone.now() - timedelta(hours=2))


@pytest.fixture
def full() -> ApiClient:
    return key("full")


@pytest.fixture
def scoped() -> ApiClient:
    return key("scoped", agents=[MINE])


@pytest.fixture
def read_only() -> ApiClient:
    return key("read-only", read_only=True)


def snapshot(session_key: str) -> tuple[Any, ...]:
    """Everything a write could change about a session."""
    row = Session.objects.filter(key=session_key).values().first()
    messages = list(
        Message.objects.filter(session__key=session_key)
        .order_by("seq")
        .values_list("seq", "content", "compacted_at")
    )
    return row, messages, Tombstone.objects.filter(key=session_key).exists()


# (method, path, body); {k} is the session key, {agent} its agent.
WRITES = {
    "upsert": ("PUT", "sessions/{k}", {"name": "renamed"}),
    "delete": ("DELETE", "sessions/{k}", None),
    "append": ("POST", "sessions/{k}/messages", {"messages": [{"role": "user", "content": "x"}]}),
    "update-last": ("PUT", "sessions/{k}/messages/last", {"message": {"content": "changed"}}),
    "remove-last": ("DELETE", "sessions/{k}/messages/last", None),
    "clear": ("DELETE", "sessions/{k}/messages", None),
    "compact": ("POST", "sessions/{k}/compact", {"summary": "short", "keep": 0}),
    "archive": (
        "POST",
        "sessions/{k}/messages/archive",
        {"messages": [{"message_id": "m-1", "compacted_at": "2026-03-01T12:05:00Z"}]},
    ),
    "reconcile": ("POST", "reconcile", {"agent": "{agent}"}),
}
READS = {
    "get": "sessions/{k}",
    "messages": "sessions/{k}/messages",
    "usage": "sessions/{k}/usage",
    "last": "sessions/{k}/messages/last",
    "pending-tool-calls": "sessions/{k}/pending-tool-calls",
}


def call_write(api: ApiClient, name: str, session_key: str, agent: str) -> Any:
    method, path, body = WRITES[name]
    if body is not None and name == "reconcile":
        body = {"agent": agent}
    return api.call(method, path.format(k=session_key), body)


# --- writes -----------------------------------------------------------------------


@pytest.mark.parametrize("name", WRITES)
def test_a_full_key_writes_any_agents_session(store: None, full: ApiClient, name: str) -> None:
    before = snapshot("theirs")

    response = call_write(full, name, "theirs", THEIRS)

    assert response.status_code in (200, 201, 204), response.content
    assert snapshot("theirs") != before


@pytest.mark.parametrize("name", WRITES)
def test_a_scoped_key_writes_its_own_agents_session(
    store: None, scoped: ApiClient, name: str
) -> None:
    before = snapshot("mine")

    response = call_write(scoped, name, "mine", MINE)

    assert response.status_code in (200, 201, 204), response.content
    assert snapshot("mine") != before


@pytest.mark.parametrize("name", WRITES)
def test_a_scoped_key_writing_another_agents_session_is_403_and_writes_nothing(
    store: None, scoped: ApiClient, name: str
) -> None:
    before = snapshot("theirs")

    response = call_write(scoped, name, "theirs", THEIRS)

    assert_error(response, 403, "forbidden")
    assert snapshot("theirs") == before


@pytest.mark.parametrize("name", WRITES)
def test_a_read_only_key_writing_is_403_and_writes_nothing(
    store: None, read_only: ApiClient, name: str
) -> None:
    before = snapshot("mine")

    response = call_write(read_only, name, "mine", MINE)

    error = assert_error(response, 403, "forbidden")
    assert "read-only" in error["message"]
    assert snapshot("mine") == before


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "sessions/new", {"name": "n"}),
        ("POST", "sessions/new/messages", {"messages": [{"role": "user", "content": "x"}]}),
    ],
)
def test_a_read_only_key_creates_no_session(
    read_only: ApiClient, method: str, path: str, body: dict[str, Any]
) -> None:
    assert_error(read_only.call(method, path, body), 403, "forbidden")
    assert not Session.objects.exists()


def test_a_scoped_and_read_only_key_writes_not_even_its_own_agent(store: None) -> None:
    api = key("watcher", agents=[MINE], read_only=True)
    before = snapshot("mine")

    assert_error(api.put("sessions/mine", {"name": "x"}), 403, "forbidden")
    assert snapshot("mine") == before
    assert api.get("sessions/mine").status_code == 200


# --- owning a session: creating, moving ------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "sessions/new", {"agent": THEIRS}),
        (
            "POST",
            "sessions/new/messages",
            {"messages": [{"role": "user", "content": "x"}], "session": {"agent": THEIRS}},
        ),
        ("PUT", "sessions/new", {"agent": ""}),
    ],
)
def test_a_scoped_key_creating_a_session_of_another_agent_is_403(
    scoped: ApiClient, method: str, path: str, body: dict[str, Any]
) -> None:
    assert_error(scoped.call(method, path, body), 403, "forbidden", field="agent")
    assert not Session.objects.exists()
    assert not Message.objects.exists()


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "sessions/new", {"name": "n"}),
        ("POST", "sessions/new/messages", {"messages": [{"role": "user", "content": "x"}]}),
    ],
)
def test_a_session_made_by_a_single_agent_key_without_an_agent_is_that_agents(
    scoped: ApiClient, method: str, path: str, body: dict[str, Any]
) -> None:
    response = scoped.call(method, path, body)

    assert response.status_code == 201, response.content
    assert Session.objects.get(key="new").agent == MINE


def test_a_key_of_several_agents_must_name_the_agent_of_a_new_session() -> None:
    api = key("pair", agents=[MINE, THEIRS])

    assert_error(api.put("sessions/new", {"name": "n"}), 403, "forbidden", field="agent")
    assert not Session.objects.exists()
    assert api.put("sessions/new", {"agent": THEIRS}).status_code == 201
    assert Session.objects.get(key="new").agent == THEIRS


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "sessions/mine", {"agent": THEIRS}),
        (
            "POST",
            "sessions/mine/messages",
            {"messages": [{"role": "user", "content": "x"}], "session": {"agent": THEIRS}},
        ),
    ],
)
def test_a_scoped_key_moving_its_session_to_another_agent_is_403_and_writes_nothing(
    store: None, scoped: ApiClient, method: str, path: str, body: dict[str, Any]
) -> None:
    before = snapshot("mine")

    assert_error(scoped.call(method, path, body), 403, "forbidden", field="agent")
    assert snapshot("mine") == before


def test_a_key_of_several_agents_may_move_a_session_between_them(store: None) -> None:
    api = key("pair", agents=[MINE, "bot-c"])

    assert api.put("sessions/mine", {"agent": "bot-c"}).status_code == 200
    assert Session.objects.get(key="mine").agent == "bot-c"


def test_a_scoped_key_writing_a_deleted_key_gets_410(store: None, scoped: ApiClient) -> None:
    services.session_delete(key="theirs")

    assert_error(scoped.put("sessions/theirs", {"name": "x"}), 410, "gone")


def test_a_read_only_key_cannot_recreate_a_deleted_key(store: None, read_only: ApiClient) -> None:
    services.session_delete(key="mine")

    assert_error(read_only.put("sessions/mine", {"recreate": True}), 403, "forbidden")
    assert Tombstone.objects.filter(key="mine").exists()
    assert not Session.objects.filter(key="mine").exists()


def test_a_scoped_key_recreates_a_deleted_key_for_its_own_agent(
    store: None, scoped: ApiClient
) -> None:
    services.session_delete(key="theirs")

    assert_error(
        scoped.put("sessions/theirs", {"recreate": True, "agent": THEIRS}), 403, "forbidden"
    )
    assert Tombstone.objects.filter(key="theirs").exists()
    response = scoped.put("sessions/theirs", {"recreate": True})
    assert (response.status_code, response.json()["agent"]) == (201, MINE)


def test_a_scoped_key_may_reconcile_only_its_own_agents(store: None, scoped: ApiClient) -> None:
    assert_error(scoped.post("reconcile", {"agent": THEIRS}), 403, "forbidden", field="agent")
    assert Session.objects.get(key="theirs").status == "active"
    assert scoped.post("reconcile", {"agent": MINE}).json() == {"marked": 1}


def test_a_scope_changed_in_the_database_holds_on_the_next_request(
    store: None, scoped: ApiClient
) -> None:
    assert scoped.get("sessions/theirs").status_code == 403

    ApiKey.objects.filter(name="scoped").update(agents=[MINE, THEIRS])

    assert scoped.get("sessions/theirs").status_code == 200


# --- reads ------------------------------------------------------------------------


@pytest.mark.parametrize("path", READS.values(), ids=READS.keys())
def test_reads_of_one_session_follow_the_scope(
    store: None, full: ApiClient, scoped: ApiClient, read_only: ApiClient, path: str
) -> None:
    assert full.get(path.format(k="theirs")).status_code == 200
    assert read_only.get(path.format(k="theirs")).status_code == 200
    assert scoped.get(path.format(k="mine")).status_code == 200
    assert_error(scoped.get(path.format(k="theirs")), 403, "forbidden")


@pytest.mark.parametrize("path", ["sessions", "sessions/running", "sessions/stuck"])
def test_lists_show_a_scoped_key_only_its_agents_sessions(
    store: None, full: ApiClient, scoped: ApiClient, read_only: ApiClient, path: str
) -> None:
    def keys(api: ApiClient, **query: Any) -> set[str]:
        response = api.get(path, **query)
        assert response.status_code == 200, response.content
        return {item["key"] for item in response.json()["items"]}

    assert keys(full) == keys(read_only) == {"mine", "theirs"}
    assert keys(scoped) == {"mine"}
    if path == "sessions":
        assert keys(scoped, agent=THEIRS) == set()


def test_search_shows_a_scoped_key_only_its_agents_sessions(
    store: None, full: ApiClient, scoped: ApiClient, read_only: ApiClient
) -> None:
    def keys(api: ApiClient) -> list[str]:
        response = api.get("search", q="zebra")
        assert response.status_code == 200, response.content
        return sorted(item["session"]["key"] for item in response.json()["items"])

    assert keys(full) == keys(read_only) == ["mine", "theirs"]
    assert keys(scoped) == ["mine"]


def test_search_finds_a_scoped_keys_sessions_behind_better_matches_of_others(
    store: None, scoped: ApiClient
) -> None:
    # Other agents' sessions that rank higher fill any limit the search applies
    # before the scope: the scope must narrow the search, not its answer.
    for index in range(3):
        services.messages_append(
            key=f"other-{index}",
            session={"agent": THEIRS},
            messages=[{"role": "user", "content": "zebra"}],
        )

    response = scoped.get("search", q="zebra", limit=1)

    assert [item["session"]["key"] for item in response.json()["items"]] == ["mine"]


def test_fleet_totals_count_only_a_scoped_keys_agents(
    store: None, full: ApiClient, scoped: ApiClient, read_only: ApiClient
) -> None:
    everything = full.get("fleet").json()
    assert read_only.get("fleet").json()["sessions"] == everything["sessions"]
    assert everything["sessions"]["total"] == 2
    assert everything["usage"]["all_time"]["cost_usd"] == "2.500000000"

    body = scoped.get("fleet").json()

    assert body["sessions"]["total"] == 1
    assert body["sessions"]["running"] == 1
    assert body["sessions"]["stuck"] == 1
    assert body["sessions"]["today"] == 1
    for period in ("today", "last_7_days", "last_30_days", "all_time"):
        assert body["usage"][period]["cost_usd"] == "0.500000000"
        assert body["usage"][period]["api_calls"] == 1
    assert body["burn_rate"]["cost_usd"] == "0.500000000"


def test_fleet_latency_counts_only_a_scoped_keys_agents(
    store: None, full: ApiClient, scoped: ApiClient
) -> None:
    for session_key, ms in (("mine", 100), ("theirs", 9000)):
        services.messages_append(
            key=session_key,
            messages=[{"role": "assistant", "content": "x", "model": "m", "duration_ms": ms}],
        )

    everything = full.get("fleet").json()["latency"]["today"]["models"]
    mine = scoped.get("fleet").json()["latency"]["today"]["models"]

    assert [(m["model"], m["count"]) for m in everything] == [("m", 2)]
    assert [(m["model"], m["count"], m["mean_ms"]) for m in mine] == [("m", 1, 100.0)]


def test_a_key_made_without_a_scope_has_full_access(store: None) -> None:
    key_row, token = ApiKey.generate(name="plain")

    assert key_row.agents == []
    assert key_row.read_only is False
    assert key_row.scope.is_full
    assert ApiClient(token).put("sessions/theirs", {"name": "x"}).status_code == 200


def test_recent_messages_show_a_scoped_key_only_its_agents(
    store: None, full: ApiClient, scoped: ApiClient, read_only: ApiClient
) -> None:
    def contents(api: ApiClient, **query: Any) -> set[str]:
        response = api.get("messages/recent", **query)
        assert response.status_code == 200, response.content
        return {item["content"] for item in response.json()["items"]}

    everyone = {f"hello zebra from {MINE}", f"hello zebra from {THEIRS}"}
    assert contents(full) == contents(read_only) == everyone
    assert contents(scoped) == {f"hello zebra from {MINE}"}
    assert contents(scoped, agent=THEIRS) == set()


def test_session_counts_follow_the_scope(
    store: None, full: ApiClient, scoped: ApiClient, read_only: ApiClient
) -> None:
    assert full.get("sessions", count="true").json()["total"] == 2
    assert read_only.get("sessions", count="true").json()["total"] == 2
    assert scoped.get("sessions", count="true").json()["total"] == 1
    assert scoped.get("sessions", count="true", agent=THEIRS).json()["total"] == 0
