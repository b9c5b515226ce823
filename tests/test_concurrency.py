"""Concurrent writers in separate processes, on the real database (SQLite file or PostgreSQL).

Each test closes the parent's connections before forking, so no child ever
shares a database socket with the parent; each child opens its own, works,
and reports failure through its exit code and a queue.
"""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

import pytest

from sessions import services
from sessions.choices import TOKEN_FIELDS
from sessions.errors import Conflict
from sessions.models import DailyUsage, Message, Session
from tests.processes import run_in_processes
from tests.totals_support import sums_of

pytestmark = pytest.mark.django_db(transaction=True)

BATCHES = 50
PER_BATCH = 3


def batch(worker: int, number: int, model: str = "gpt-4o-mini") -> list[dict[str, Any]]:
    return [
        {
            "role": "user" if index == 0 else "assistant",
            "content": f"w{worker} b{number} m{index}",
            "message_id": f"w{worker}-b{number}-m{index}",
            "model": model,
            "tool_calls": [{"id": f"c{worker}-{number}", "name": "t"}] if index == 2 else [],
            "usage": {
                "prompt_tokens": 100 + worker + number,
                "completion_tokens": 10 + index,
                "reasoning_tokens": index,
                "cache_read_tokens": number,
                "cost_usd": f"0.00{worker}{number:02d}{index}7",
            }
            if index
            else None,
        }
        for index in range(PER_BATCH)
    ]


def append_batches(worker: int, key: str, models: tuple[str, ...] = ("gpt-4o-mini",)) -> None:
    for number in range(BATCHES):
        messages = [
            message
            for model in models
            for message in batch(worker, number, model)
            if model == models[0] or message["role"] == "assistant"
        ]
        if len(models) > 1:
            for message in messages:
                message["message_id"] = f"{message['message_id']}-{message['model']}"
        services.messages_append(
            key=key,
            session={"agent": "bot", "channel": "cli", "model": "gpt-4o-mini"},
            messages=messages,
        )


def rollup_sums() -> dict[str, Any]:
    rows = list(DailyUsage.objects.all())
    names = (
        "sessions_started",
        "message_count",
        "turns",
        "tool_call_count",
        "api_calls",
        *TOKEN_FIELDS,
    )
    sums: dict[str, Any] = {name: sum(getattr(r, name) for r in rows) for name in names}
    sums["cost_usd"] = sum((r.cost_usd for r in rows), Decimal(0))
    return sums


def assert_session_consistent(key: str) -> list[Message]:
    session = Session.objects.get(key=key)
    messages = list(Message.objects.filter(session=session).order_by("seq"))
    assert [m.seq for m in messages] == list(range(1, len(messages) + 1))
    assert session.last_seq == len(messages)
    sums = sums_of(messages)
    assert {name: getattr(session, name) for name in sums} == sums
    return messages


def test_two_processes_appending_to_one_new_session() -> None:
    run_in_processes((append_batches, (1, "shared")), (append_batches, (2, "shared")))

    assert Session.objects.count() == 1
    messages = assert_session_consistent("shared")
    assert len(messages) == 2 * BATCHES * PER_BATCH
    # Each process's batches stay whole and in its own order.
    for worker in (1, 2):
        own = [m.content for m in messages if m.content.startswith(f"w{worker} ")]
        assert own == [
            f"w{worker} b{number} m{index}"
            for number in range(BATCHES)
            for index in range(PER_BATCH)
        ]
    sums = sums_of(messages)
    rollup = rollup_sums()
    assert rollup["sessions_started"] == 1
    assert rollup["message_count"] == sums["message_count"]
    assert rollup["tool_call_count"] == sums["tool_call_count"]
    for name in ("turns", "api_calls", *TOKEN_FIELDS, "cost_usd"):
        assert rollup[name] == sums[name], name
    assert sums["cost_usd"] > 0


def test_three_processes_retrying_the_same_batches_store_each_message_once() -> None:
    # All three send worker 1's batches: message ids make the retries no-ops.
    run_in_processes(*[(append_batches, (1, "shared"))] * 3)

    messages = assert_session_consistent("shared")
    assert len(messages) == BATCHES * PER_BATCH
    assert rollup_sums()["message_count"] == BATCHES * PER_BATCH


def test_processes_writing_buckets_in_opposite_orders_do_not_deadlock() -> None:
    # One session each, two models per batch in opposite orders: the rollup
    # rows are locked in the same order whatever the batch's order.
    run_in_processes(
        (append_batches, (1, "first", ("gpt-4o-mini", "gpt-4o"))),
        (append_batches, (2, "second", ("gpt-4o", "gpt-4o-mini"))),
    )

    first = assert_session_consistent("first")
    second = assert_session_consistent("second")
    sums = sums_of(first + second)
    rollup = rollup_sums()
    assert rollup["sessions_started"] == 2
    assert rollup["message_count"] == sums["message_count"]
    for name in ("api_calls", *TOKEN_FIELDS, "cost_usd"):
        assert rollup[name] == sums[name], name


def correct_repeatedly(key: str) -> None:
    for number in range(BATCHES):
        # Conflict when every message was removed and none appended yet.
        with contextlib.suppress(Conflict):
            services.message_update_last(
                key=key,
                message={
                    "content": f"corrected {number}",
                    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "cost_usd": "0.0001"},
                },
            )
        if number % 3 == 0:
            services.message_remove_last(key=key)


def test_corrections_racing_appends_keep_totals_equal_to_the_messages() -> None:
    services.messages_append(key="shared", messages=[{"role": "user", "content": "start"}])

    run_in_processes((append_batches, (1, "shared")), (correct_repeatedly, ("shared",)))

    messages = assert_session_consistent("shared")
    sums = sums_of(messages)
    rollup = rollup_sums()
    assert rollup["message_count"] == sums["message_count"]
    for name in ("turns", "api_calls", *TOKEN_FIELDS, "cost_usd"):
        assert rollup[name] == sums[name], name


def recreate_and_append(worker: int, key: str) -> None:
    for number in range(20):
        services.session_upsert(key=key, fields={"name": f"w{worker}"}, recreate=True)
        services.messages_append(
            key=key,
            messages=[{"message_id": f"w{worker}-{number}", "role": "user", "content": "x"}],
        )


def test_two_processes_recreating_one_deleted_key_share_one_new_session() -> None:
    from sessions.models import Tombstone

    services.session_upsert(key="reset", fields={})
    services.session_delete(key="reset")

    run_in_processes((recreate_and_append, (1, "reset")), (recreate_and_append, (2, "reset")))

    assert Session.objects.filter(key="reset").count() == 1
    assert not Tombstone.objects.filter(key="reset").exists()
    messages = assert_session_consistent("reset")
    assert len(messages) == 40
    # Started twice in all: the first life and the recreated one, never per retry.
    assert rollup_sums()["sessions_started"] == 2
