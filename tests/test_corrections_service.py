"""Update-last, remove-last, clear and admin corrections: totals and rollup move exactly."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessions import services
from sessions.choices import TOKEN_FIELDS, CostSource
from sessions.errors import Conflict, InvalidInput, SessionGone, SessionNotFound
from sessions.inputs import clean_message
from sessions.models import BudgetUsage, DailyUsage, Message, ModelPrice, Session
from sessions.pricing import library_rates
from tests.totals_support import message_sums, rollup_totals, usage

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# The session totals, which the daily rollup keeps under the same names.
SESSION_TOTALS = (
    "message_count",
    "turns",
    "tool_call_count",
    "api_calls",
    "unpriced_calls",
    *TOKEN_FIELDS,
    "cost_usd",
)


def session_totals(key: str) -> dict[str, Any]:
    session = Session.objects.get(key=key)
    return {name: getattr(session, name) for name in SESSION_TOTALS}


def assert_totals_follow_messages(key: str) -> None:
    session = Session.objects.get(key=key)
    sums = message_sums(session)
    assert session_totals(key) == sums
    rollup = rollup_totals()
    assert {name: rollup[name] for name in sums} == sums


def seed(key: str = "k", **session: Any) -> None:
    services.messages_append(
        key=key,
        session={"model": "gpt-4o", **session},
        now=T0,
        messages=[
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "usage": usage(1000, 100, cost_usd="0.25")},
        ],
    )


# --- update-last ---------------------------------------------------------------


def test_update_last_replaces_only_the_given_fields() -> None:
    seed()

    message = services.message_update_last(key="k", message={"content": "final answer"})

    stored = Message.objects.get(seq=2)
    assert stored.pk == message.pk
    assert (stored.content, stored.role, stored.prompt_tokens) == (
        "final answer",
        "assistant",
        1000,
    )
    assert stored.cost_usd == Decimal("0.25")


def test_update_last_moves_totals_and_rollup_by_the_difference() -> None:
    seed()

    services.message_update_last(
        key="k", message={"usage": usage(1500, 300, reasoning_tokens=100, cost_usd="0.4")}
    )

    totals = session_totals("k")
    assert (totals["prompt_tokens"], totals["completion_tokens"], totals["reasoning_tokens"]) == (
        1500,
        300,
        100,
    )
    assert totals["cost_usd"] == Decimal("0.4")
    assert totals["api_calls"] == 1
    assert_totals_follow_messages("k")


def test_streaming_placeholder_then_final_counts_once() -> None:
    services.messages_append(
        key="k", messages=[{"role": "assistant", "content": "", "status": "streaming"}]
    )
    assert session_totals("k")["turns"] == 0

    services.message_update_last(
        key="k",
        message={"content": "hello", "status": "complete", "usage": usage(10, 2, cost_usd="0.01")},
    )

    totals = session_totals("k")
    assert (totals["turns"], totals["api_calls"], totals["message_count"]) == (1, 1, 1)
    assert_totals_follow_messages("k")


def test_update_last_with_a_changed_model_reprices_the_usage() -> None:
    services.messages_append(
        key="k",
        messages=[
            {"role": "assistant", "content": "a", "model": "gpt-4o", "usage": usage(10_000, 1000)}
        ],
    )
    before = Message.objects.get().cost_usd

    services.message_update_last(key="k", message={"model": "gpt-4o-mini"})

    message = Message.objects.get()
    expected = library_rates("gpt-4o-mini").cost(prompt_tokens=10_000, completion_tokens=1000)
    assert message.cost_source == CostSource.COMPUTED
    assert message.cost_usd == expected
    assert expected != before
    assert session_totals("k")["cost_usd"] == expected
    assert rollup_totals(model="gpt-4o")["cost_usd"] == 0
    assert rollup_totals(model="gpt-4o-mini")["cost_usd"] == expected
    assert_totals_follow_messages("k")


def test_update_last_to_an_unknown_model_makes_it_unpriced() -> None:
    services.messages_append(
        key="k",
        messages=[{"role": "assistant", "content": "a", "model": "gpt-4o", "usage": usage(10, 1)}],
    )

    services.message_update_last(key="k", message={"model": "acme-llm-9"})

    message = Message.objects.get()
    assert (message.cost_source, message.cost_usd) == (CostSource.UNPRICED, None)
    totals = session_totals("k")
    assert (totals["unpriced_calls"], totals["cost_usd"]) == (1, Decimal(0))
    assert_totals_follow_messages("k")


def test_update_last_keeps_a_reported_cost_when_the_model_changes() -> None:
    seed()

    services.message_update_last(key="k", message={"model": "gpt-4o-mini"})

    message = Message.objects.get(seq=2)
    assert (message.cost_source, message.cost_usd) == (CostSource.REPORTED, Decimal("0.25"))


def test_update_last_uses_an_admin_price_after_it_was_added() -> None:
    services.messages_append(
        key="k",
        messages=[{"role": "assistant", "content": "a", "model": "house-1", "usage": usage(10, 1)}],
    )
    assert Message.objects.get().cost_source == CostSource.UNPRICED
    ModelPrice.objects.create(
        model_pattern="house-*", input_per_mtok=1, output_per_mtok=2, valid_from=T0
    )

    services.message_update_last(key="k", message={"usage": usage(1_000_000, 1_000_000)})

    message = Message.objects.get()
    assert (message.cost_source, message.cost_usd) == (CostSource.COMPUTED, Decimal(3))
    assert session_totals("k")["unpriced_calls"] == 0


def test_update_last_can_remove_usage() -> None:
    seed()

    services.message_update_last(key="k", message={"usage": None})

    totals = session_totals("k")
    assert (totals["api_calls"], totals["prompt_tokens"], totals["cost_usd"]) == (0, 0, 0)
    assert_totals_follow_messages("k")


def test_update_last_moves_the_rollup_to_the_new_day() -> None:
    seed()

    services.message_update_last(key="k", message={"created_at": "2026-02-01T00:00:00Z"})

    by_day = {r.day.isoformat(): r for r in DailyUsage.objects.all()}
    assert by_day["2026-02-01"].cost_usd == Decimal("0.25")
    assert by_day["2026-02-01"].message_count == 1
    assert by_day["2026-03-01"].cost_usd == 0
    assert by_day["2026-03-01"].message_count == 1  # the user message stays on its day


def test_update_last_on_an_empty_session_is_a_conflict_and_writes_nothing() -> None:
    services.messages_append(key="k", messages=[], now=T0)

    with pytest.raises(Conflict) as caught:
        services.message_update_last(key="k", message={"content": "x"}, now=T0.replace(hour=13))

    assert caught.value.code == "conflict"
    assert "no message" in caught.value.message
    assert Session.objects.get().last_active_at == T0


def test_update_last_refuses_bad_values_and_writes_nothing() -> None:
    seed()
    before, rollup_before = session_totals("k"), rollup_totals()

    with pytest.raises(InvalidInput) as caught:
        services.message_update_last(key="k", message={"usage": usage(10, 1, reasoning_tokens=2)})

    assert caught.value.field == "message.usage.reasoning_tokens"
    assert session_totals("k") == before
    assert rollup_totals() == rollup_before


def test_update_last_refuses_a_tool_role_without_a_call_id() -> None:
    seed()

    with pytest.raises(InvalidInput) as caught:
        services.message_update_last(key="k", message={"role": "tool"})

    assert caught.value.field == "message.tool_call_id"
    assert Message.objects.get(seq=2).role == "assistant"


def test_update_last_refuses_a_message_id_used_by_another_message() -> None:
    services.messages_append(
        key="k",
        messages=[
            {"role": "user", "content": "a", "message_id": "m1"},
            {"role": "user", "content": "b", "message_id": "m2"},
        ],
    )

    with pytest.raises(Conflict):
        services.message_update_last(key="k", message={"message_id": "m1", "content": "c"})

    assert Message.objects.get(seq=2).content == "b"


def test_corrections_refuse_unknown_and_deleted_sessions() -> None:
    with pytest.raises(SessionNotFound):
        services.message_update_last(key="nope", message={"content": "x"})
    with pytest.raises(SessionNotFound):
        services.message_remove_last(key="nope")
    with pytest.raises(SessionNotFound):
        services.messages_clear(key="nope")

    seed()
    services.session_delete(key="k")
    with pytest.raises(SessionGone):
        services.message_update_last(key="k", message={"content": "x"})
    with pytest.raises(SessionGone):
        services.message_remove_last(key="k")
    with pytest.raises(SessionGone):
        services.messages_clear(key="k")
    assert not Session.objects.exists()


# --- remove-last ---------------------------------------------------------------


def test_remove_last_takes_the_message_out_of_totals_and_rollup() -> None:
    seed()

    assert services.message_remove_last(key="k") is True

    totals = session_totals("k")
    assert totals["message_count"] == 1
    assert (totals["api_calls"], totals["prompt_tokens"], totals["cost_usd"]) == (0, 0, 0)
    assert_totals_follow_messages("k")
    assert rollup_totals()["message_count"] == 1


def test_remove_last_frees_the_seq_for_the_next_append() -> None:
    seed()
    services.message_remove_last(key="k")

    result = services.messages_append(key="k", messages=[{"role": "user", "content": "again"}])

    assert result.first_seq == 2
    assert list(Message.objects.values_list("seq", flat=True)) == [1, 2]


def test_remove_last_on_an_empty_session_removes_nothing() -> None:
    services.messages_append(key="k", messages=[], now=T0)
    rollup_before = rollup_totals()

    assert services.message_remove_last(key="k", now=T0.replace(hour=13)) is False

    session = Session.objects.get()
    assert session.last_active_at == T0
    assert rollup_totals() == rollup_before


# --- clear ---------------------------------------------------------------------


def test_clear_removes_messages_and_keeps_the_spending_history() -> None:
    seed()
    before, rollup_before = session_totals("k"), rollup_totals()

    assert services.messages_clear(key="k") == 2

    after = session_totals("k")
    assert after["message_count"] == 0
    assert {n: v for n, v in after.items() if n != "message_count"} == {
        n: v for n, v in before.items() if n != "message_count"
    }
    assert after["cost_usd"] == Decimal("0.25")
    assert rollup_totals() == rollup_before
    assert Message.objects.count() == 0


def test_after_clear_seq_starts_again_and_totals_keep_growing() -> None:
    seed()
    services.messages_clear(key="k")

    result = services.messages_append(
        key="k", messages=[{"role": "assistant", "content": "b", "usage": usage(1, 1, cost_usd=1)}]
    )

    assert result.first_seq == 1
    totals = session_totals("k")
    assert (totals["message_count"], totals["api_calls"], totals["cost_usd"]) == (
        1,
        2,
        Decimal("1.25"),
    )


# --- admin corrections -----------------------------------------------------------


def test_an_admin_correction_moves_totals_by_the_difference() -> None:
    seed()
    message = Message.objects.get(seq=2)
    message.prompt_tokens = 2000
    message.cost_usd = Decimal("0.05")

    services.message_save_correction(message=message)

    totals = session_totals("k")
    assert (totals["prompt_tokens"], totals["cost_usd"]) == (2000, Decimal("0.05"))
    assert_totals_follow_messages("k")


def test_an_admin_correction_without_cost_marks_the_message_unpriced() -> None:
    seed()
    message = Message.objects.get(seq=2)
    message.cost_usd = None

    services.message_save_correction(message=message)

    assert Message.objects.get(seq=2).cost_source == CostSource.UNPRICED
    assert session_totals("k")["unpriced_calls"] == 1
    assert_totals_follow_messages("k")


# --- the spending-history rule under any sequence of operations --------------------

_counter = itertools.count()

usage_blocks = st.one_of(
    st.none(),
    st.builds(
        lambda p, c, r, cr, cw, cost: {
            "prompt_tokens": p + cr + cw,
            "completion_tokens": c + r,
            "reasoning_tokens": r,
            "cache_read_tokens": cr,
            "cache_creation_tokens": cw,
            **({"cost_usd": str(cost)} if cost is not None else {}),
        },
        st.integers(0, 5000),
        st.integers(0, 500),
        st.integers(0, 500),
        st.integers(0, 3000),
        st.integers(0, 300),
        st.one_of(st.none(), st.decimals(0, 2, places=9)),
    ),
)
messages = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system"]),
        "content": st.sampled_from([None, "", "text"]),
        "model": st.sampled_from(["gpt-4o", "claude-3-5-haiku-latest", "unknown-model-q", ""]),
        "usage": usage_blocks,
        "tool_calls": st.lists(
            st.builds(lambda n: {"id": f"c{n}", "name": "t", "arguments": {}}, st.integers()),
            max_size=2,
        ),
    }
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.lists(messages, max_size=3)),
        st.tuples(st.just("update"), messages),
        st.tuples(st.just("remove"), st.none()),
        st.tuples(st.just("clear"), st.none()),
    ),
    max_size=8,
)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations)
def test_totals_follow_the_spending_history_rule(ops: list[tuple[str, Any]]) -> None:
    key = f"prop-{next(_counter)}"
    DailyUsage.objects.all().delete()
    BudgetUsage.objects.all().delete()
    services.messages_append(key=key, messages=[], session={"model": "gpt-4o-mini"})
    cleared = dict.fromkeys(SESSION_TOTALS, 0)
    cleared["cost_usd"] = Decimal(0)
    for name, arg in ops:
        if name == "append":
            services.messages_append(key=key, messages=arg)
        elif name == "update":
            try:
                services.message_update_last(key=key, message=arg)
            except Conflict:
                assert Session.objects.get(key=key).message_count == 0
        elif name == "remove":
            services.message_remove_last(key=key)
        else:
            # Clearing keeps the history: what the cleared messages added stays.
            session = Session.objects.get(key=key)
            for field, value in message_sums(session).items():
                cleared[field] += value
            services.messages_clear(key=key)

    session = Session.objects.get(key=key)
    sums = message_sums(session)
    expected = {name: sums[name] + cleared[name] for name in sums}
    expected["message_count"] = sums["message_count"]
    assert session_totals(key) == expected
    seqs = list(Message.objects.filter(session=session).values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    assert session.last_seq == len(seqs)
    rollup = rollup_totals()
    assert rollup["message_count"] == sums["message_count"] + cleared["message_count"]
    for name in SESSION_TOTALS:
        if name != "message_count":
            assert rollup[name] == expected[name], name


# --- complete: another record of a stored message fills what it lacks ----------


def test_complete_fills_what_a_stored_message_lacks_and_overwrites_nothing() -> None:
    services.messages_append(
        key="k",
        session={"model": "gpt-4o"},
        now=T0,
        messages=[{"role": "assistant", "message_id": "m1", "content": "first"}],
    )
    services.messages_append(
        key="k", now=T0, messages=[{"role": "assistant", "message_id": "m2", "model": "gpt-4o"}]
    )
    before = session_totals("k")
    assert (before["turns"], before["api_calls"]) == (1, 0)
    later = [
        clean_message(
            {
                "role": "assistant",
                "message_id": message_id,
                "content": "second",
                "model": "gpt-4o-mini",
                "duration_ms": 1500,
                "usage": usage(1000, 100),
            },
            "message",
            convention="otel",
        )
        for message_id in ("m1", "m2", "m3")
    ]

    changed = services.messages_complete(key="k", messages=later, now=T0)

    assert changed == 2  # m3 is not stored: completing appends nothing
    rows = {m.message_id: m for m in Message.objects.filter(session__key="k")}
    assert set(rows) == {"m1", "m2"}
    assert (rows["m1"].content, rows["m1"].model, rows["m1"].duration_ms) == (
        "first",
        "gpt-4o-mini",
        1500,
    )
    # m2 keeps its model: the usage is priced at gpt-4o's rates.
    assert (rows["m2"].content, rows["m2"].model, rows["m2"].prompt_tokens) == (
        "second",
        "gpt-4o",
        1000,
    )
    assert rows["m2"].cost_source == CostSource.COMPUTED
    totals = session_totals("k")
    assert (totals["turns"], totals["api_calls"], totals["prompt_tokens"]) == (2, 2, 2000)
    assert_totals_follow_messages("k")

    # Once complete, the same record again changes nothing.
    assert services.messages_complete(key="k", messages=later, now=T0) == 0
    assert session_totals("k") == totals


def test_complete_leaves_a_message_of_another_role_alone() -> None:
    services.messages_append(
        key="k", now=T0, messages=[{"role": "user", "message_id": "m1", "content": None}]
    )
    patch = clean_message({"role": "assistant", "message_id": "m1", "content": "x"}, "m")

    assert services.messages_complete(key="k", messages=[patch], now=T0) == 0
    assert Message.objects.get(message_id="m1").content is None
