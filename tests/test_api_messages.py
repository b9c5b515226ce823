"""The message endpoints: append, read, update-last, remove-last, clear, compact, usage."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from sessions.models import Message, ModelPrice, Session
from tests.api_client import ApiClient, assert_error, make_key, store_counts


@pytest.fixture
def api(db: None) -> ApiClient:
    return ApiClient(make_key())


@pytest.fixture
def priced_model(db: None) -> str:
    ModelPrice.objects.create(
        model_pattern="test-model", input_per_mtok=Decimal(1), output_per_mtok=Decimal(2)
    )
    return "test-model"


def user(content: str, **extra: Any) -> dict[str, Any]:
    return {"role": "user", "content": content, **extra}


def assistant(content: str | None, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, **extra}


def append(api: ApiClient, key: str, *messages: dict[str, Any], **body: Any) -> Any:
    return api.post(f"sessions/{key}/messages", {"messages": list(messages), **body})


# --- append -------------------------------------------------------------------


def test_the_first_append_creates_the_session_with_the_fields_given(api: ApiClient) -> None:
    response = append(
        api,
        "s1",
        user("hello"),
        assistant("hi"),
        session={"agent": "coder", "channel": "discord", "model": "m1", "state": "running"},
    )

    assert response.status_code == 201
    body = response.json()
    assert body["appended"] == 2
    assert body["skipped"] == 0
    assert (body["first_seq"], body["last_seq"]) == (1, 2)
    assert body["session"]["agent"] == "coder"
    assert body["session"]["channel"] == "discord"
    assert body["session"]["state"] == "running"
    assert body["session"]["message_count"] == 2
    assert body["session"]["turns"] == 1


def test_a_later_append_answers_200_and_continues_the_seq(api: ApiClient) -> None:
    append(api, "s1", user("one"))

    response = append(api, "s1", user("two"), user("three"), session={"todo": "x"})

    assert response.status_code == 200
    assert (response.json()["first_seq"], response.json()["last_seq"]) == (2, 3)
    assert Session.objects.get(key="s1").todo == "x"


def test_a_retried_message_id_is_stored_once_and_reported_skipped(api: ApiClient) -> None:
    first = append(api, "s1", user("hi", message_id="m-1"), assistant("yo", message_id="m-2"))

    retry = append(
        api, "s1", user("hi", message_id="m-1"), assistant("yo", message_id="m-2"), user("new")
    )

    assert first.json()["appended"] == 2
    body = retry.json()
    assert (body["appended"], body["skipped"]) == (1, 2)
    assert (body["first_seq"], body["last_seq"]) == (3, 3)
    assert Message.objects.filter(session__key="s1").count() == 3
    assert body["session"]["turns"] == 1


def test_a_batch_with_one_bad_message_stores_none_of_them(api: ApiClient) -> None:
    append(api, "s1", user("before"))
    before = store_counts()

    response = append(api, "s1", user("a"), user("b"), {"role": "robot", "content": "c"})

    assert_error(response, 422, "invalid", "messages[2].role")
    assert store_counts() == before
    assert Session.objects.get(key="s1").message_count == 1


def test_a_refused_first_append_does_not_create_the_session(api: ApiClient) -> None:
    response = append(api, "new", user("a"), session={"kind": "weird"})

    assert_error(response, 422, "invalid", "session.kind")
    assert store_counts() == (0, 0, 0)


def test_usage_is_normalised_from_the_anthropic_convention(api: ApiClient) -> None:
    usage = {
        "input_tokens": 100,
        "output_tokens": 50,
        "cache_read_input_tokens": 300,
        "cache_creation_input_tokens": 20,
        "cost_usd": "0.01",
    }

    response = append(api, "s1", assistant("ok", usage=usage), convention="anthropic")

    assert response.status_code == 201, response.content
    message = Message.objects.get(session__key="s1")
    assert message.prompt_tokens == 420
    assert message.cache_read_tokens == 300
    assert message.completion_tokens == 50
    assert response.json()["session"]["prompt_tokens"] == 420


def test_anthropic_style_usage_without_the_convention_is_refused(api: ApiClient) -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 5, "cache_read_tokens": 300}

    response = append(api, "s1", assistant("ok", usage=usage))

    assert_error(response, 422, "invalid", "messages[0].usage.cache_read_tokens")
    assert store_counts() == (0, 0, 0)


def test_an_unknown_convention_is_422_naming_it(api: ApiClient) -> None:
    assert_error(append(api, "s1", user("x"), convention="openai"), 422, "invalid", "convention")
    assert store_counts() == (0, 0, 0)


def test_an_unknown_top_level_field_is_422_naming_it(api: ApiClient) -> None:
    response = append(api, "s1", user("x"), sesion={"agent": "typo"})

    assert_error(response, 422, "invalid", "sesion")
    assert store_counts() == (0, 0, 0)


def test_a_missing_messages_list_is_422(api: ApiClient) -> None:
    assert_error(api.post("sessions/s1/messages", {}), 422, "invalid", "messages")
    assert_error(api.post("sessions/s1/messages", {"messages": "hi"}), 422, "invalid", "messages")
    assert_error(api.post("sessions/s1/messages", {"messages": [7]}), 422, "invalid", "messages[0]")
    assert store_counts() == (0, 0, 0)


def test_reported_cost_wins_and_unreported_cost_is_priced(
    api: ApiClient, priced_model: str
) -> None:
    usage = {"prompt_tokens": 1000, "completion_tokens": 500}

    body = append(
        api,
        "s1",
        assistant("a", model=priced_model, usage=usage),
        assistant("b", model=priced_model, usage={**usage, "cost_usd": 1}),
        assistant("c", model="no-such-model-anywhere", usage=usage),
    ).json()

    items = api.get("sessions/s1/messages", view="all").json()["items"]
    assert [item["usage"]["cost_source"] for item in items] == ["computed", "reported", "unpriced"]
    assert [item["usage"]["cost_usd"] for item in items] == ["0.002000000", "1.000000000", None]
    assert body["session"]["cost_usd"] == "1.002000000"
    assert body["session"]["unpriced_calls"] == 1
    assert body["session"]["api_calls"] == 3


# --- read ---------------------------------------------------------------------


def test_messages_have_every_field_and_usage_is_null_without_usage(api: ApiClient) -> None:
    append(
        api,
        "s1",
        user("q", message_id="u1", created_at="2026-11-21T10:00:00Z"),
        assistant(
            None,
            tool_calls=[{"id": "c1", "name": "ls", "arguments": {"path": "."}}],
            usage={"prompt_tokens": 10, "completion_tokens": 3, "reasoning_tokens": 1},
            reasoning="think",
            agent_name="sub",
        ),
        {"role": "tool", "content": "a.txt", "tool_call_id": "c1"},
    )

    items = api.get("sessions/s1/messages", view="all").json()["items"]

    assert items[0]["usage"] is None
    assert items[0]["message_id"] == "u1"
    assert items[0]["created_at"] == "2026-11-21T10:00:00Z"
    assert items[1]["content"] is None
    assert items[1]["tool_calls"] == [{"id": "c1", "name": "ls", "arguments": {"path": "."}}]
    assert items[1]["usage"]["reasoning_tokens"] == 1
    assert items[1]["usage"]["total_tokens"] == 13
    assert items[1]["agent_name"] == "sub"
    assert items[2]["tool_call_id"] == "c1"
    assert set(items[0]) >= {
        "seq",
        "message_id",
        "role",
        "content",
        "name",
        "agent_name",
        "tool_calls",
        "tool_call_id",
        "reasoning",
        "model",
        "provider_response_id",
        "status",
        "metadata",
        "usage",
        "created_at",
        "compacted_at",
    }


def test_a_message_keeps_the_metadata_object_it_was_sent_with(api: ApiClient) -> None:
    meta = {"trace": {"span": "a1", "steps": [1, 2]}, "source": "éclair", "flag": None}

    response = append(api, "s1", user("q", metadata=meta), assistant("a"))

    assert response.status_code == 201, response.content
    items = api.get("sessions/s1/messages", view="all").json()["items"]
    assert items[0]["metadata"] == meta
    assert items[1]["metadata"] == {}


@pytest.mark.parametrize("value", ["text", ["a"], 3, True])
def test_message_metadata_that_is_not_an_object_is_422_naming_it(
    api: ApiClient, value: Any
) -> None:
    response = append(api, "s1", user("q"), user("r", metadata=value))

    assert_error(response, 422, "invalid", "messages[1].metadata")
    assert not Session.objects.filter(key="s1").exists()


def test_message_metadata_past_the_metadata_cap_is_422(api: ApiClient, settings: Any) -> None:
    settings.FLEET_MAX_METADATA_BYTES = 20
    fits = {"k": "x" * 12}  # {"k":"xxxxxxxxxxxx"} is 20 bytes

    assert append(api, "s1", user("q", metadata=fits)).status_code == 201
    response = append(api, "s1", user("r", metadata={"k": "x" * 13}))

    error = assert_error(response, 422, "invalid", "messages[0].metadata")
    assert "FLEET_MAX_METADATA_BYTES" in error["message"]
    assert Message.objects.filter(session__key="s1").count() == 1


def test_update_last_replaces_the_metadata_and_keeps_it_when_absent(api: ApiClient) -> None:
    append(api, "s1", assistant("", status="streaming", metadata={"a": 1}))

    replaced = api.put("sessions/s1/messages/last", {"message": {"metadata": {"b": [2]}}})
    kept = api.put("sessions/s1/messages/last", {"message": {"content": "done"}})
    refused = api.put("sessions/s1/messages/last", {"message": {"metadata": "b"}})

    assert replaced.status_code == 200, replaced.content
    assert replaced.json()["message"]["metadata"] == {"b": [2]}
    assert kept.json()["message"]["metadata"] == {"b": [2]}
    assert_error(refused, 422, "invalid", "message.metadata")
    assert Message.objects.get(session__key="s1").metadata == {"b": [2]}


def test_update_last_with_null_metadata_clears_it(api: ApiClient) -> None:
    append(api, "s1", assistant("a", metadata={"a": 1}))

    response = api.put("sessions/s1/messages/last", {"message": {"metadata": None}})

    assert response.status_code == 200, response.content
    assert response.json()["message"]["metadata"] == {}


def test_the_all_view_pages_by_seq_with_after_role_and_a_cursor(api: ApiClient) -> None:
    append(api, "s1", *[user(f"u{i}") if i % 2 else assistant(f"a{i}") for i in range(10)])

    first = api.get("sessions/s1/messages", view="all", limit=4).json()
    second = api.get("sessions/s1/messages", view="all", limit=4, cursor=first["next"]).json()
    after = api.get("sessions/s1/messages", view="all", after=8).json()
    users = api.get("sessions/s1/messages", view="all", role="user").json()

    assert [m["seq"] for m in first["items"]] == [1, 2, 3, 4]
    assert [m["seq"] for m in second["items"]] == [5, 6, 7, 8]
    assert [m["seq"] for m in after["items"]] == [9, 10]
    assert after["next"] is None
    assert {m["role"] for m in users["items"]} == {"user"}
    assert len(users["items"]) == 5


def test_the_context_view_hides_archived_messages_and_shows_the_summary_first(
    api: ApiClient,
) -> None:
    append(api, "s1", *[user(f"m{i}") for i in range(6)])
    assert api.post("sessions/s1/compact", {"summary": "so far", "keep": 2}).json() == {
        "archived": 4
    }

    context = api.get("sessions/s1/messages").json()["items"]
    everything = api.get("sessions/s1/messages", view="all").json()["items"]
    paged = api.get("sessions/s1/messages", limit=2).json()
    rest = api.get("sessions/s1/messages", limit=2, cursor=paged["next"]).json()

    assert [m["content"] for m in context] == ["so far", "m4", "m5"]
    assert context[0]["is_summary"] is True
    assert len(everything) == 7
    assert sum(1 for m in everything if m["compacted_at"]) == 4
    assert [m["content"] for m in paged["items"] + rest["items"]] == ["so far", "m4", "m5"]
    assert rest["next"] is None


def test_a_cursor_of_another_list_is_refused(api: ApiClient) -> None:
    append(api, "s1", *[user(f"m{i}") for i in range(3)])
    context_cursor = api.get("sessions/s1/messages", limit=1).json()["next"]

    response = api.get("sessions/s1/messages", view="all", cursor=context_cursor)

    assert_error(response, 422, "invalid", "cursor")


def test_a_context_cursor_given_out_before_the_keyset_still_reads_on(api: ApiClient) -> None:
    from fleet.api import cursors

    append(api, "s1", *[user(f"m{i}") for i in range(5)])

    rest = api.get("sessions/s1/messages", limit=2, cursor=cursors.encode("context", o=2)).json()

    assert [m["content"] for m in rest["items"]] == ["m2", "m3"]
    following = api.get("sessions/s1/messages", limit=2, cursor=rest["next"]).json()
    assert [m["content"] for m in following["items"]] == ["m4"]


@pytest.mark.parametrize(
    "position", [{"s": 2, "q": 1}, {"s": True, "q": 1}, {"s": 0, "q": 0}, {"s": 0}, {"q": 3}]
)
def test_a_forged_context_cursor_is_refused(api: ApiClient, position: dict[str, Any]) -> None:
    from fleet.api import cursors

    append(api, "s1", user("m0"))

    response = api.get("sessions/s1/messages", cursor=cursors.encode("context", **position))

    assert_error(response, 422, "invalid", "cursor")


def test_the_context_view_and_pending_calls_cost_the_same_at_any_length(
    api: ApiClient, django_assert_max_num_queries: Any
) -> None:
    def turns(key: str, count: int) -> None:
        for start in range(0, count, 100):
            append(
                api,
                key,
                *[
                    message
                    for n in range(start, min(start + 100, count))
                    for message in (
                        user(f"u{n}"),
                        assistant(None, tool_calls=[{"id": f"c{n}", "name": "t"}]),
                        {"role": "tool", "tool_call_id": f"c{n}", "content": "r"},
                    )
                ],
            )

    turns("short", 20)
    turns("long", 400)
    counts = {}
    for key in ("short", "long"):
        api.get(f"sessions/{key}/messages")  # records the key's use
        for route, query in (("messages", {"limit": 30, "after": 10}), ("pending-tool-calls", {})):
            from django.db import connection
            from django.test.utils import CaptureQueriesContext

            with CaptureQueriesContext(connection) as captured:
                assert api.get(f"sessions/{key}/{route}", **query).status_code == 200
            counts[key, route] = len(captured)
    assert counts["short", "messages"] == counts["long", "messages"] <= 5
    assert counts["short", "pending-tool-calls"] == counts["long", "pending-tool-calls"] <= 4


def test_reading_messages_of_an_unknown_session_is_404(api: ApiClient) -> None:
    assert_error(api.get("sessions/nope/messages"), 404, "not_found")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("view=everything", "view"),
        ("role=robot", "role"),
        ("after=-1", "after"),
        ("limit=0", "limit"),
    ],
)
def test_bad_transcript_parameters_are_422(api: ApiClient, query: str, field: str) -> None:
    append(api, "s1", user("x"))

    response = api.call("GET", f"/api/v1/sessions/s1/messages?{query}")

    assert_error(response, 422, "invalid", field)


# --- update-last, remove-last, clear ----------------------------------------------


def test_update_last_replaces_the_placeholder_and_moves_totals_by_the_difference(
    api: ApiClient,
) -> None:
    append(api, "s1", user("q"), assistant("", status="streaming"))

    response = api.put(
        "sessions/s1/messages/last",
        {
            "message": {
                "content": "full answer",
                "status": "complete",
                "usage": {"prompt_tokens": 10, "completion_tokens": 20, "cost_usd": "0.5"},
            }
        },
    )
    again = api.put(
        "sessions/s1/messages/last",
        {"message": {"usage": {"prompt_tokens": 10, "completion_tokens": 30, "cost_usd": "0.7"}}},
    )

    assert response.status_code == 200, response.content
    assert response.json()["message"]["content"] == "full answer"
    assert response.json()["session"]["turns"] == 1
    body = again.json()
    assert body["message"]["content"] == "full answer"
    assert body["message"]["status"] == "complete"
    assert body["session"]["completion_tokens"] == 30
    assert body["session"]["cost_usd"] == "0.700000000"
    assert body["session"]["api_calls"] == 1
    assert Message.objects.filter(session__key="s1").count() == 2


def test_update_last_with_a_null_time_keeps_the_stored_time(api: ApiClient) -> None:
    append(api, "s1", user("q", created_at="2026-11-21T10:00:00Z"))

    response = api.put(
        "sessions/s1/messages/last", {"message": {"content": "edited", "created_at": None}}
    )

    assert response.status_code == 200, response.content
    assert response.json()["message"]["created_at"] == "2026-11-21T10:00:00Z"
    assert response.json()["message"]["content"] == "edited"


def test_update_last_takes_the_anthropic_convention(api: ApiClient) -> None:
    append(api, "s1", assistant("x"))

    response = api.put(
        "sessions/s1/messages/last",
        {
            "message": {"usage": {"input_tokens": 5, "cache_read_input_tokens": 10}},
            "convention": "anthropic",
        },
    )

    assert response.json()["message"]["usage"]["prompt_tokens"] == 15


def test_update_last_on_an_empty_session_is_409_and_writes_nothing(api: ApiClient) -> None:
    api.put("sessions/s1", {})
    before = store_counts()
    before_row = Session.objects.values().get(key="s1")

    response = api.put("sessions/s1/messages/last", {"message": {"content": "x"}})

    assert_error(response, 409, "conflict")
    assert store_counts() == before
    assert Session.objects.values().get(key="s1") == before_row


def test_update_last_with_a_bad_value_writes_nothing(api: ApiClient) -> None:
    append(api, "s1", assistant("keep"))

    response = api.put("sessions/s1/messages/last", {"message": {"role": "robot"}})

    assert_error(response, 422, "invalid", "message.role")
    assert Message.objects.get(session__key="s1").content == "keep"


def test_remove_last_removes_one_message_and_says_so(api: ApiClient) -> None:
    append(api, "s1", user("q"), assistant("a", usage={"prompt_tokens": 3, "completion_tokens": 2}))

    removed = api.delete("sessions/s1/messages/last").json()
    session = api.get("sessions/s1").json()
    api.delete("sessions/s1/messages/last")
    nothing = api.delete("sessions/s1/messages/last").json()

    assert removed == {"removed": True}
    assert session["message_count"] == 1
    assert session["turns"] == 0
    assert session["prompt_tokens"] == 0
    assert nothing == {"removed": False}


def test_clear_removes_every_message_but_keeps_the_totals(api: ApiClient) -> None:
    append(api, "s1", user("q"), assistant("a", usage={"prompt_tokens": 3, "completion_tokens": 2}))

    response = api.delete("sessions/s1/messages")

    assert response.json() == {"removed": 2}
    session = api.get("sessions/s1").json()
    assert session["message_count"] == 0
    assert session["turns"] == 1
    assert session["total_tokens"] == 5


def test_corrections_on_an_unknown_session_are_404(api: ApiClient) -> None:
    assert_error(api.delete("sessions/nope/messages"), 404, "not_found")
    assert_error(api.delete("sessions/nope/messages/last"), 404, "not_found")
    assert_error(api.put("sessions/nope/messages/last", {"message": {}}), 404, "not_found")
    assert store_counts() == (0, 0, 0)


# --- compact --------------------------------------------------------------------


def test_a_compaction_with_nothing_to_archive_writes_nothing(api: ApiClient) -> None:
    append(api, "s1", *[user(f"m{i}") for i in range(4)])

    response = api.post("sessions/s1/compact", {"summary": "s", "keep": 4})

    assert response.json() == {"archived": 0}
    assert not Message.objects.filter(session__key="s1", is_summary=True).exists()
    assert Session.objects.get(key="s1").message_count == 4


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"summary": "s", "keep": -1}, "keep"),
        ({"summary": "s", "keep": "2"}, "keep"),
        ({"summary": "s", "keep": 10**30}, "keep"),
        ({"summary": "", "keep": 1}, "summary"),
        ({"summary": 5, "keep": 1}, "summary"),
        ({"keep": 1}, "summary"),
        ({"summary": "s"}, "keep"),
    ],
)
def test_a_bad_compaction_is_422_and_writes_nothing(
    api: ApiClient, body: dict[str, Any], field: str
) -> None:
    append(api, "s1", *[user(f"m{i}") for i in range(4)])

    assert_error(api.post("sessions/s1/compact", body), 422, "invalid", field)
    assert not Message.objects.filter(compacted_at__isnull=False).exists()
    assert Message.objects.count() == 4


# --- archive (an agent's store archived messages already stored) ------------------


def test_archiving_stored_messages_by_id_takes_them_out_of_the_context(api: ApiClient) -> None:
    append(api, "s1", *[user(f"m{i}", message_id=f"m{i}") for i in range(4)])
    before = Session.objects.get(key="s1")
    moment = "2026-03-01T12:05:00Z"
    body = {
        "messages": [
            {"message_id": "m0", "compacted_at": moment},
            {"message_id": "m1", "compacted_at": "2026-03-01T13:05:00+01:00"},
            {"message_id": "not-stored", "compacted_at": moment},
        ]
    }

    assert api.post("sessions/s1/messages/archive", body).json()["archived"] == 2
    # Again, or later with another time: an archived message stays as it was.
    body["messages"][0]["compacted_at"] = "2026-04-01T00:00:00Z"
    assert api.post("sessions/s1/messages/archive", body).json()["archived"] == 0

    context = api.get("sessions/s1/messages", view="context").json()["items"]
    assert [m["message_id"] for m in context] == ["m2", "m3"]
    archived = Message.objects.filter(session__key="s1", compacted_at__isnull=False)
    assert {m.compacted_at.isoformat() for m in archived} == {"2026-03-01T12:05:00+00:00"}
    after = Session.objects.get(key="s1")
    assert (after.message_count, after.total_tokens) == (before.message_count, before.total_tokens)


def test_an_archive_marks_a_stores_own_summary_so_the_context_puts_it_first(
    api: ApiClient,
) -> None:
    # koda's compaction: old rows archived, a summary written as a system row.
    append(
        api,
        "s1",
        user("old", message_id="m0"),
        assistant("older answer", message_id="m1"),
        user("kept", message_id="m2"),
        {"role": "system", "content": "what happened so far", "message_id": "sum"},
    )
    body = {
        "messages": [
            {"message_id": "m0", "compacted_at": "2026-03-01T12:05:00Z"},
            {"message_id": "m1", "compacted_at": "2026-03-01T12:05:00Z"},
            {"message_id": "sum", "summary": True},
            {"message_id": "m2", "summary": True},  # not a system message: left alone
        ]
    }

    assert api.post("sessions/s1/messages/archive", body).json() == {"archived": 2, "summaries": 1}
    assert api.post("sessions/s1/messages/archive", body).json() == {"archived": 0, "summaries": 0}

    context = api.get("sessions/s1/messages", view="context").json()["items"]
    assert [m["message_id"] for m in context] == ["sum", "m2"]
    assert Message.objects.get(message_id="m2").is_summary is False


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"messages": "m0"}, "messages"),
        ({"messages": ["m0"]}, "messages[0]"),
        ({"messages": [{"compacted_at": "2026-03-01T12:05:00Z"}]}, "messages[0].message_id"),
        (
            {"messages": [{"message_id": "", "compacted_at": "2026-03-01T12:05:00Z"}]},
            "messages[0].message_id",
        ),
        ({"messages": [{"message_id": "m0"}]}, "messages[0].compacted_at"),
        ({"messages": [{"message_id": "m0", "summary": 1}]}, "messages[0].summary"),
        ({"messages": [{"message_id": "m0", "summary": False}]}, "messages[0].summary"),
        (
            {"messages": [{"message_id": "m0", "compacted_at": "2026-03-01 12:05"}]},
            "messages[0].compacted_at",
        ),
        (
            {"messages": [{"message_id": "m0", "compacted_at": "2026-03-01T12:05:00Z", "x": 1}]},
            "messages[0]",
        ),
        ({}, "messages"),
    ],
)
def test_a_bad_archive_is_422_and_archives_nothing(
    api: ApiClient, body: dict[str, Any], field: str
) -> None:
    append(api, "s1", user("m0", message_id="m0"))

    assert_error(api.post("sessions/s1/messages/archive", body), 422, "invalid", field)
    assert not Message.objects.filter(compacted_at__isnull=False).exists()


def test_an_archive_holds_at_most_a_batch(api: ApiClient, settings: Any) -> None:
    settings.FLEET_API_MAX_BATCH = 1
    append(api, "s1", user("m0", message_id="m0"))
    moment = "2026-03-01T12:05:00Z"
    body = {"messages": [{"message_id": f"m{i}", "compacted_at": moment} for i in range(2)]}

    assert_error(api.post("sessions/s1/messages/archive", body), 422, "invalid", "messages")
    assert_error(api.post("sessions/nope/messages/archive", {"messages": []}), 404, "not_found")


# --- usage ----------------------------------------------------------------------


def test_usage_answers_the_totals_and_usage_by_agent(api: ApiClient) -> None:
    def used(prompt: int, cost: str) -> dict[str, Any]:
        return {"prompt_tokens": prompt, "completion_tokens": 1, "cost_usd": cost}

    append(
        api,
        "s1",
        assistant("a", usage=used(10, "0.1")),
        assistant("b", usage=used(20, "0.2"), agent_name="researcher"),
        assistant("c", usage=used(30, "0.3"), agent_name="researcher"),
    )

    body = api.get("sessions/s1/usage").json()

    assert body["totals"]["api_calls"] == 3
    assert body["totals"]["prompt_tokens"] == 60
    assert body["totals"]["total_tokens"] == 63
    assert body["totals"]["cost_usd"] == "0.600000000"
    by_agent = {row["agent_name"]: row for row in body["by_agent"]}
    assert set(by_agent) == {"main", "researcher"}
    assert by_agent["main"]["prompt_tokens"] == 10
    assert by_agent["researcher"]["prompt_tokens"] == 50
    assert by_agent["researcher"]["messages"] == 2
    assert by_agent["researcher"]["cost_usd"] == "0.500000000"


def test_usage_of_an_unknown_session_is_404(api: ApiClient) -> None:
    assert_error(api.get("sessions/nope/usage"), 404, "not_found")


# --- reads koda makes on resume: last, recent, pending tool calls ----------------------------


def call(call_id: str, name: str = "ls") -> dict[str, Any]:
    return {"id": call_id, "name": name, "arguments": {"path": "."}}


def test_last_message_of_a_role_is_the_newest_one(api: ApiClient) -> None:
    append(api, "s1", user("u1"), assistant("a1"), user("u2"), assistant("a2"), user("u3"))

    last_assistant = api.get("sessions/s1/messages/last", role="assistant")
    last_user = api.get("sessions/s1/messages/last", role="user")
    last_any = api.get("sessions/s1/messages/last")

    assert last_assistant.status_code == 200
    assert (last_assistant.json()["seq"], last_assistant.json()["content"]) == (4, "a2")
    assert (last_user.json()["seq"], last_user.json()["content"]) == (5, "u3")
    assert last_any.json()["seq"] == 5
    # The list keeps its order (oldest first): limit=1 there is the first, by design.
    first = api.get("sessions/s1/messages", role="assistant", limit=1).json()["items"]
    assert [m["content"] for m in first] == ["a1"]


def test_last_message_counts_archived_messages_too(api: ApiClient) -> None:
    append(api, "s1", user("u1"), assistant("a1"))
    api.post("sessions/s1/compact", {"summary": "short", "keep": 0})

    body = api.get("sessions/s1/messages/last", role="user").json()

    assert (body["content"], body["compacted_at"] is not None) == ("u1", True)


def test_last_message_of_a_role_the_session_lacks_is_404(api: ApiClient) -> None:
    append(api, "s1", user("u1"))

    error = assert_error(api.get("sessions/s1/messages/last", role="assistant"), 404, "not_found")

    assert "no assistant message" in error["message"]
    assert_error(api.get("sessions/nope/messages/last", role="user"), 404, "not_found", "key")


def test_last_message_refuses_an_unknown_role(api: ApiClient) -> None:
    append(api, "s1", user("u1"))

    assert_error(api.get("sessions/s1/messages/last", role="robot"), 422, "invalid", "role")


def test_last_message_of_a_deleted_session_is_410(api: ApiClient) -> None:
    append(api, "s1", user("u1"))
    api.delete("sessions/s1")

    assert_error(api.get("sessions/s1/messages/last", role="user"), 410, "gone")


def test_recent_user_messages_are_newest_first_across_sessions(api: ApiClient) -> None:
    append(api, "s1", user("one", created_at="2026-01-01T10:00:00Z"), session={"agent": "koda"})
    append(api, "s2", user("two", created_at="2026-01-01T11:00:00Z"), session={"agent": "koda"})
    append(
        api,
        "s3",
        user("three", created_at="2026-01-01T12:00:00Z"),
        assistant("not a user", created_at="2026-01-01T13:00:00Z"),
        session={"agent": "other"},
    )

    everyone = api.get("messages/recent", role="user")
    koda = api.get("messages/recent", role="user", agent="koda", limit=1)

    assert everyone.status_code == 200
    items = everyone.json()["items"]
    assert [(m["content"], m["session_key"]) for m in items] == [
        ("three", "s3"),
        ("two", "s2"),
        ("one", "s1"),
    ]
    assert items[0]["session_agent"] == "other"
    assert [m["content"] for m in koda.json()["items"]] == ["two"]
    assistants = api.get("messages/recent", role="assistant").json()["items"]
    assert [m["content"] for m in assistants] == ["not a user"]


def test_recent_messages_default_to_user_messages(api: ApiClient) -> None:
    append(api, "s1", user("u"), assistant("a"))

    assert [m["content"] for m in api.get("messages/recent").json()["items"]] == ["u"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"role": "robot"}, "role"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "many"}, "limit"),
    ],
)
def test_recent_messages_refuse_bad_parameters(
    api: ApiClient, query: dict[str, Any], field: str
) -> None:
    assert_error(api.get("messages/recent", **query), 422, "invalid", field)


def test_pending_tool_calls_are_the_calls_without_an_answer(api: ApiClient) -> None:
    append(
        api,
        "s1",
        user("go"),
        assistant(None, tool_calls=[call("c1"), call("c2", "cat")], message_id="m-a"),
        {"role": "tool", "tool_call_id": "c1", "content": "files"},
    )

    response = api.get("sessions/s1/pending-tool-calls")

    assert response.status_code == 200
    assert response.json() == {
        "items": [
            {
                "seq": 2,
                "message_id": "m-a",
                "call": {"id": "c2", "name": "cat", "arguments": {"path": "."}},
            }
        ]
    }
    # The context view hides the unanswered call; this route is how an agent sees it.
    context = api.get("sessions/s1/messages").json()["items"]
    assert [c["id"] for m in context for c in m["tool_calls"]] == ["c1"]


def test_no_pending_tool_calls_is_an_empty_list(api: ApiClient) -> None:
    append(api, "s1", user("hi"))

    assert api.get("sessions/s1/pending-tool-calls").json() == {"items": []}
    assert_error(api.get("sessions/nope/pending-tool-calls"), 404, "not_found")


# --- provider-native usage objects (sessions.usage) ------------------------------------

# Each provider's usage object as the provider returns it, and what Fleet stores:
# (prompt, completion, reasoning, cache_read, cache_creation), prompt all input.
NATIVE_USAGE: dict[str, tuple[dict[str, Any], tuple[int, int, int, int, int]]] = {
    "fleet": (
        {
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "reasoning_tokens": 100,
            "cache_read_tokens": 800,
            "cache_creation_tokens": 300,
        },
        (1200, 300, 100, 800, 300),
    ),
    "anthropic_messages": (
        {
            "input_tokens": 100,
            "output_tokens": 300,
            "cache_read_input_tokens": 800,
            "cache_creation_input_tokens": 300,
            "cache_creation": {"ephemeral_5m_input_tokens": 300, "ephemeral_1h_input_tokens": 0},
            "server_tool_use": {"web_search_requests": 0},
            "service_tier": "standard",
        },
        (1200, 300, 0, 800, 300),
    ),
    "anthropic_sdk_dump_with_nulls": (
        {
            "input_tokens": 1200,
            "output_tokens": 300,
            "cache_read_input_tokens": None,
            "cache_creation_input_tokens": None,
            "cache_creation": None,
            "server_tool_use": None,
            "service_tier": None,
        },
        (1200, 300, 0, 0, 0),
    ),
    "anthropic_stream_delta": ({"output_tokens": 300}, (0, 300, 0, 0, 0)),
    "openai_chat": (
        {
            "prompt_tokens": 1200,
            "completion_tokens": 300,
            "total_tokens": 1500,
            "prompt_tokens_details": {"cached_tokens": 800, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 100,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        },
        (1200, 300, 100, 800, 0),
    ),
    "openai_responses": (
        {
            "input_tokens": 1200,
            "input_tokens_details": {"cached_tokens": 800},
            "output_tokens": 300,
            "output_tokens_details": {"reasoning_tokens": 100},
            "total_tokens": 1500,
        },
        (1200, 300, 100, 800, 0),
    ),
    "gemini_usage_metadata": (
        {
            "promptTokenCount": 1200,
            "candidatesTokenCount": 200,
            "thoughtsTokenCount": 100,
            "cachedContentTokenCount": 800,
            "totalTokenCount": 1500,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 1200}],
        },
        (1200, 300, 100, 800, 0),
    ),
    "gemini_python_sdk_dump": (
        {
            "prompt_token_count": 1200,
            "candidates_token_count": 200,
            "thoughts_token_count": 100,
            "cached_content_token_count": 800,
            "tool_use_prompt_token_count": None,
            "total_token_count": 1500,
            "traffic_type": None,
        },
        (1200, 300, 100, 800, 0),
    ),
    "koda": (
        {
            "prompt_tokens": 100,
            "completion_tokens": 300,
            "cache_read_tokens": 800,
            "cache_creation_tokens": 300,
            "thinking_tokens": 100,
        },
        (1200, 300, 100, 800, 300),
    ),
}


def stored_tokens(message: dict[str, Any]) -> tuple[int, int, int, int, int]:
    usage = message["usage"]
    return (
        usage["prompt_tokens"],
        usage["completion_tokens"],
        usage["reasoning_tokens"],
        usage["cache_read_tokens"],
        usage["cache_creation_tokens"],
    )


@pytest.mark.parametrize("shape", NATIVE_USAGE)
def test_a_provider_usage_object_is_normalised_by_its_shape_on_append(
    api: ApiClient, shape: str
) -> None:
    usage, expected = NATIVE_USAGE[shape]

    response = append(api, "s1", assistant("ok", usage=usage))

    assert response.status_code == 201, response.content
    assert stored_tokens(api.get("sessions/s1/messages").json()["items"][0]) == expected
    session = response.json()["session"]
    assert session["prompt_tokens"] == expected[0]
    assert session["completion_tokens"] == expected[1]


@pytest.mark.parametrize("shape", NATIVE_USAGE)
def test_a_provider_usage_object_is_normalised_by_its_shape_on_update_last(
    api: ApiClient, shape: str
) -> None:
    usage, expected = NATIVE_USAGE[shape]
    append(api, "s1", assistant("", status="streaming"))

    response = api.put("sessions/s1/messages/last", {"message": {"content": "ok", "usage": usage}})

    assert response.status_code == 200, response.content
    assert stored_tokens(response.json()["message"]) == expected
    assert response.json()["session"]["prompt_tokens"] == expected[0]


def test_bare_input_and_output_tokens_are_refused_naming_what_to_send(api: ApiClient) -> None:
    response = append(api, "s1", assistant("ok", usage={"input_tokens": 100, "output_tokens": 5}))

    error = assert_error(response, 422, "invalid", "messages[0].usage.input_tokens")
    assert '"convention"' in error["message"]
    assert "input_tokens_details" in error["message"]
    assert store_counts() == (0, 0, 0)


def test_bare_input_tokens_on_update_last_are_refused_too(api: ApiClient) -> None:
    append(api, "s1", assistant("x"))

    response = api.put("sessions/s1/messages/last", {"message": {"usage": {"input_tokens": 5}}})

    assert_error(response, 422, "invalid", "message.usage.input_tokens")


@pytest.mark.parametrize(
    ("convention", "prompt"), [("otel", 110), ("anthropic", 120)], ids=["otel", "anthropic"]
)
def test_a_named_convention_settles_bare_input_tokens(
    api: ApiClient, convention: str, prompt: int
) -> None:
    usage = {"input_tokens": 110, "output_tokens": 5, "convention": convention}
    if convention == "anthropic":
        usage = {**usage, "input_tokens": 100, "cache_read_input_tokens": 20}

    response = append(api, "s1", assistant("ok", usage=usage))

    assert response.status_code == 201, response.content
    assert response.json()["session"]["prompt_tokens"] == prompt


@pytest.mark.parametrize(
    ("usage", "field"),
    [
        (
            {"input_tokens": 1, "cache_read_input_tokens": 1, "input_tokens_details": {}},
            "cache_read_input_tokens",
        ),
        ({"prompt_tokens": 5, "cache_read_input_tokens": 1}, "cache_read_input_tokens"),
        ({"prompt_tokens": 5, "promptTokenCount": 5}, "promptTokenCount"),
        (
            {"prompt_tokens": 5, "cache_read_tokens": 1, "prompt_tokens_details": {}},
            "prompt_tokens_details",
        ),
        ({"input_tokens": 5, "prompt_tokens": 5}, "input_tokens"),
    ],
    ids=["anthropic+responses", "fleet+anthropic", "fleet+gemini", "fleet+chat", "two-inputs"],
)
def test_a_usage_object_mixing_two_shapes_is_refused(
    api: ApiClient, usage: dict[str, Any], field: str
) -> None:
    response = append(api, "s1", assistant("ok", usage=usage))

    error = assert_error(response, 422, "invalid", f"messages[0].usage.{field}")
    assert "mix" in error["message"] or "both" in error["message"]
    assert store_counts() == (0, 0, 0)


def test_a_convention_that_contradicts_the_shape_is_refused(api: ApiClient) -> None:
    usage = {"prompt_tokens": 10, "prompt_tokens_details": {"cached_tokens": 4}}

    response = append(api, "s1", assistant("ok", usage=usage), convention="anthropic")

    assert_error(response, 422, "invalid", "messages[0].usage.prompt_tokens_details")


def test_an_unknown_field_of_a_provider_shape_is_refused_naming_it(api: ApiClient) -> None:
    usage = {"prompt_tokens": 10, "prompt_tokens_details": {}, "prompt_cache_hit_tokens": 4}

    response = append(api, "s1", assistant("ok", usage=usage))

    assert_error(response, 422, "invalid", "messages[0].usage.prompt_cache_hit_tokens")


def test_the_bound_applies_to_the_normalised_prompt(api: ApiClient) -> None:
    big = 10**12
    usage = {"input_tokens": big, "output_tokens": 1, "cache_read_input_tokens": big}

    response = append(api, "s1", assistant("ok", usage=usage))

    error = assert_error(response, 422, "invalid", "messages[0].usage.input_tokens")
    assert "cache_read_input_tokens" in error["message"]
    assert store_counts() == (0, 0, 0)


def test_the_bound_applies_to_gemini_candidates_and_thoughts_together(api: ApiClient) -> None:
    usage = {"candidatesTokenCount": 10**12, "thoughtsTokenCount": 1}

    response = append(api, "s1", assistant("ok", usage=usage))

    assert_error(response, 422, "invalid", "messages[0].usage.candidatesTokenCount")


def test_openai_reasoning_above_completion_is_refused_naming_the_details_field(
    api: ApiClient,
) -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "completion_tokens_details": {}}
    usage["completion_tokens_details"] = {"reasoning_tokens": 6}

    response = append(api, "s1", assistant("ok", usage=usage))

    assert_error(
        response, 422, "invalid", "messages[0].usage.completion_tokens_details.reasoning_tokens"
    )


def test_a_provider_usage_object_is_priced_like_fleet_names(
    api: ApiClient, priced_model: str
) -> None:
    usage = NATIVE_USAGE["openai_responses"][0]

    response = append(api, "s1", assistant("ok", model=priced_model, usage=usage))

    message = api.get("sessions/s1/messages").json()["items"][0]
    assert response.status_code == 201
    assert message["usage"]["cost_source"] == "computed"


# --- update-last replaces what streaming replaces ------------------------------------


def test_the_final_message_replaces_the_placeholders_tool_calls_and_reasoning(
    api: ApiClient,
) -> None:
    placeholder = assistant(
        "", status="streaming", reasoning="thinking about c1…", tool_calls=[call("c1")]
    )
    append(api, "s1", user("q"), placeholder)

    response = api.put(
        "sessions/s1/messages/last",
        {"message": {"content": "final", "status": "complete", "tool_calls": [call("c2")]}},
    )

    assert response.status_code == 200, response.content
    message = response.json()["message"]
    assert message["content"] == "final"
    assert [c["id"] for c in message["tool_calls"]] == ["c2"]
    assert message["reasoning"] == ""
    assert response.json()["session"]["tool_call_count"] == 1


def test_content_without_tool_calls_clears_the_placeholders_tool_calls(api: ApiClient) -> None:
    placeholder = assistant("", reasoning="r", tool_calls=[call("c1"), call("c2")])
    append(api, "s1", user("q"), placeholder)

    response = api.put("sessions/s1/messages/last", {"message": {"content": "just text"}})

    message = response.json()["message"]
    assert message["tool_calls"] == []
    assert message["reasoning"] == ""
    assert response.json()["session"]["tool_call_count"] == 0
    assert Session.objects.get(key="s1").tool_call_count == 0


def test_content_with_reasoning_sent_again_keeps_that_reasoning(api: ApiClient) -> None:
    append(api, "s1", assistant("", reasoning="old", tool_calls=[call("c1")]))

    response = api.put(
        "sessions/s1/messages/last",
        {"message": {"content": "done", "reasoning": "new", "tool_calls": [call("c1")]}},
    )

    message = response.json()["message"]
    assert (message["reasoning"], [c["id"] for c in message["tool_calls"]]) == ("new", ["c1"])


def test_an_update_without_content_keeps_tool_calls_and_reasoning(api: ApiClient) -> None:
    append(api, "s1", assistant("partial", reasoning="r", tool_calls=[call("c1")]))

    response = api.put(
        "sessions/s1/messages/last",
        {"message": {"status": "complete", "usage": {"prompt_tokens": 5}}},
    )

    message = response.json()["message"]
    assert (message["content"], message["reasoning"]) == ("partial", "r")
    assert [c["id"] for c in message["tool_calls"]] == ["c1"]
    assert response.json()["session"]["tool_call_count"] == 1


# --- durations (issue 17) -------------------------------------------------------


def test_a_message_keeps_its_duration_and_time_to_first_token(api: ApiClient) -> None:
    response = append(
        api, "s1", user("q"), assistant("a", duration_ms=2300, time_to_first_token_ms=450)
    )

    assert response.status_code == 201, response.content
    items = api.get("sessions/s1/messages", view="all").json()["items"]
    assert [(m["duration_ms"], m["time_to_first_token_ms"]) for m in items] == [
        (None, None),
        (2300, 450),
    ]


@pytest.mark.parametrize("name", ["duration_ms", "time_to_first_token_ms"])
@pytest.mark.parametrize("value", [-1, 10**12, "120", 1.5, True, [3], {"ms": 3}])
def test_a_bad_duration_is_422_naming_the_field_and_writes_nothing(
    api: ApiClient, name: str, value: Any
) -> None:
    before = store_counts()

    response = append(api, "s1", user("q"), assistant("a", **{name: value}))

    assert_error(response, 422, "invalid", f"messages[1].{name}")
    assert store_counts() == before


def test_a_duration_at_its_bound_is_accepted_and_one_past_it_refused(api: ApiClient) -> None:
    from sessions.bounds import MAX_DURATION_MS

    fits = append(api, "s1", assistant("a", duration_ms=MAX_DURATION_MS))
    past = append(api, "s1", assistant("b", duration_ms=MAX_DURATION_MS + 1))

    assert fits.status_code == 201, fits.content
    assert_error(past, 422, "invalid", "messages[0].duration_ms")
    assert Message.objects.filter(session__key="s1").count() == 1


def test_update_last_sets_and_clears_the_duration_and_refuses_a_bad_one(api: ApiClient) -> None:
    append(api, "s1", assistant("", status="streaming"))

    timed = api.put(
        "sessions/s1/messages/last",
        {"message": {"content": "done", "duration_ms": 900, "time_to_first_token_ms": 120}},
    )
    refused = api.put("sessions/s1/messages/last", {"message": {"duration_ms": -5}})
    kept = Message.objects.get(session__key="s1").duration_ms
    cleared = api.put("sessions/s1/messages/last", {"message": {"duration_ms": None}})

    assert timed.status_code == 200, timed.content
    assert timed.json()["message"]["duration_ms"] == 900
    assert_error(refused, 422, "invalid", "message.duration_ms")
    assert kept == 900
    assert cleared.json()["message"]["duration_ms"] is None
    assert cleared.json()["message"]["time_to_first_token_ms"] == 120
