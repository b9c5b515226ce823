"""``services.messages_append``: seq, idempotency, tombstones, totals, rollup, refusals."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings
from django.utils import timezone

from sessions import services
from sessions.choices import TOKEN_FIELDS, CostSource
from sessions.errors import InvalidInput, SessionGone
from sessions.models import BudgetUsage, DailyUsage, Message, MinuteUsage, Session, Tombstone
from sessions.pricing import library_rates
from sessions.rollups import Rollup
from tests.totals_support import message_sums, rollup_totals, usage

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def session_totals(session: Session) -> dict[str, Any]:
    session.refresh_from_db()
    return {name: getattr(session, name) for name in message_sums(session)}


def test_it_numbers_messages_one_two_three_across_batches() -> None:
    first = services.messages_append(
        key="k", messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    )
    second = services.messages_append(key="k", messages=[{"role": "user", "content": "c"}])

    assert (first.first_seq, first.last_seq, first.created) == (1, 2, True)
    assert (second.first_seq, second.last_seq, second.created) == (3, 3, False)
    assert list(Message.objects.filter(session__key="k").values_list("seq", "content")) == [
        (1, "a"),
        (2, "b"),
        (3, "c"),
    ]


@override_settings(FLEET_API_MAX_BATCH=3)
def test_an_append_larger_than_the_batch_bound_is_refused_whoever_calls() -> None:
    services.messages_append(key="k", messages=[{"role": "user", "content": "a"}])
    batch = [{"role": "user", "content": str(n)} for n in range(4)]

    with pytest.raises(InvalidInput) as refused:
        services.messages_append(key="k", messages=batch)

    assert refused.value.field == "messages"
    assert refused.value.message == "a batch holds at most 3 messages, got 4; send several"
    assert Message.objects.count() == 1
    assert services.messages_append(key="k", messages=batch[:3]).appended == 3


@override_settings(FLEET_API_MAX_BATCH=2)
def test_append_all_writes_a_long_transcript_in_batches_all_or_nothing() -> None:
    batch = [{"role": "user", "content": str(n)} for n in range(5)]

    result = services.messages_append_all(key="k", messages=batch)

    assert (result.appended, result.first_seq, result.last_seq, result.created) == (5, 1, 5, True)
    with pytest.raises(InvalidInput) as refused:
        services.messages_append_all(key="k", messages=[*batch[:3], {"role": "x"}, batch[4]])
    assert refused.value.field == "messages[3].role"
    assert Message.objects.count() == 5


def test_it_creates_the_session_with_the_given_fields() -> None:
    result = services.messages_append(
        key="telegram_u1",
        messages=[{"role": "user", "content": "hi"}],
        session={"agent": "bot", "channel": "telegram", "model": "gpt-4o", "room_id": "r1"},
        now=T0,
    )

    session = Session.objects.get(key="telegram_u1")
    assert result.created is True
    assert (session.agent, session.channel, session.model, session.room_id) == (
        "bot",
        "telegram",
        "gpt-4o",
        "r1",
    )
    assert session.created_at == T0
    assert session.last_active_at == T0


def test_it_skips_messages_already_stored() -> None:
    batch = [
        {"role": "user", "content": "a", "message_id": "m1"},
        {"role": "assistant", "content": "b", "message_id": "m2", "usage": usage(10, 5)},
    ]
    services.messages_append(key="k", messages=batch)
    session = Session.objects.get(key="k")
    before = session_totals(session)
    rollup_before = rollup_totals()

    retry = services.messages_append(
        key="k", messages=[*batch, {"role": "user", "content": "c", "message_id": "m3"}]
    )

    assert (retry.appended, retry.skipped) == (1, 2)
    assert (retry.first_seq, retry.last_seq) == (3, 3)
    after = session_totals(session)
    assert after["message_count"] == before["message_count"] + 1
    assert after["prompt_tokens"] == before["prompt_tokens"]
    assert rollup_totals()["message_count"] == rollup_before["message_count"] + 1
    assert Message.objects.filter(session=session).count() == 3


def test_it_skips_a_message_id_repeated_within_one_batch() -> None:
    result = services.messages_append(
        key="k",
        messages=[
            {"role": "user", "content": "a", "message_id": "dup"},
            {"role": "user", "content": "b", "message_id": "dup"},
        ],
    )

    assert (result.appended, result.skipped) == (1, 1)
    assert list(Message.objects.values_list("content", flat=True)) == ["a"]


def test_a_retry_of_only_stored_messages_appends_nothing() -> None:
    batch = [{"role": "user", "content": "a", "message_id": "m1"}]
    services.messages_append(key="k", messages=batch)

    retry = services.messages_append(key="k", messages=batch)

    assert (retry.appended, retry.skipped, retry.first_seq, retry.last_seq) == (0, 1, None, None)
    assert Session.objects.get(key="k").message_count == 1


def test_it_refuses_an_append_to_a_deleted_key() -> None:
    services.messages_append(key="k", messages=[{"role": "user", "content": "a"}])
    services.session_delete(key="k")
    rollup_before = rollup_totals()

    with pytest.raises(SessionGone) as caught:
        services.messages_append(key="k", messages=[{"role": "user", "content": "b"}])

    assert caught.value.code == "gone"
    assert caught.value.field == "key"
    assert not Session.objects.filter(key="k").exists()
    assert Message.objects.count() == 0
    assert rollup_totals() == rollup_before


def test_it_refuses_a_tombstone_even_without_a_prior_session() -> None:
    Tombstone.objects.create(key="gone")

    with pytest.raises(SessionGone):
        services.messages_append(key="gone", messages=[])

    assert not Session.objects.filter(key="gone").exists()


def test_totals_equal_the_sums_over_messages_after_appends() -> None:
    services.messages_append(
        key="k",
        session={"model": "gpt-4o"},
        messages=[
            {"role": "system", "content": "be nice"},
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "name": "ls", "arguments": {}},
                    {"id": "c2", "name": "cat", "arguments": {"path": "x"}},
                ],
                "usage": usage(1000, 50, reasoning_tokens=20, cache_read_tokens=400),
            },
            {"role": "tool", "tool_call_id": "c1", "content": "a b"},
            {"role": "tool", "tool_call_id": "c2", "content": "text"},
            {
                "role": "assistant",
                "content": "done",
                "usage": usage(1200, 30, cost_usd="0.01"),
            },
            {"role": "assistant", "content": "x", "model": "no-such-model-xyz", "usage": usage(5)},
        ],
    )
    session = Session.objects.get(key="k")

    totals = session_totals(session)
    assert totals == message_sums(session)
    assert totals["turns"] == 2
    assert totals["tool_call_count"] == 2
    assert totals["api_calls"] == 3
    assert totals["unpriced_calls"] == 1
    assert totals["prompt_tokens"] == 2205
    assert totals["reasoning_tokens"] == 20
    assert totals["message_count"] == 7


def test_a_reported_cost_wins_over_the_price_table() -> None:
    services.messages_append(
        key="k",
        messages=[
            {
                "role": "assistant",
                "content": "a",
                "model": "gpt-4o",
                "usage": usage(1000, 100, cost_usd="0.123456789"),
            }
        ],
    )

    message = Message.objects.get()
    assert message.cost_source == CostSource.REPORTED
    assert message.cost_usd == Decimal("0.123456789")
    assert Session.objects.get().cost_usd == Decimal("0.123456789")


def test_it_prices_usage_the_agent_did_not_price() -> None:
    services.messages_append(
        key="k",
        session={"model": "gpt-4o"},
        messages=[{"role": "assistant", "content": "a", "usage": usage(1000, 100)}],
    )

    message = Message.objects.get()
    expected = library_rates("gpt-4o").cost(prompt_tokens=1000, completion_tokens=100)
    assert message.cost_source == CostSource.COMPUTED
    assert message.cost_usd == expected
    assert expected > 0


def test_unpriced_usage_counts_as_unpriced_and_adds_no_cost() -> None:
    services.messages_append(
        key="k",
        messages=[
            {"role": "assistant", "content": "a", "model": "gpt-4o", "usage": usage(1000, 100)},
            {"role": "assistant", "content": "b", "model": "acme-llm-9", "usage": usage(5, 5)},
        ],
    )

    session = Session.objects.get()
    unpriced = Message.objects.get(seq=2)
    assert unpriced.cost_source == CostSource.UNPRICED
    assert unpriced.cost_usd is None
    assert session.unpriced_calls == 1
    assert session.api_calls == 2
    assert session.cost_usd == Message.objects.get(seq=1).cost_usd
    assert rollup_totals()["unpriced_calls"] == 1


def test_anthropic_usage_is_normalised_to_all_input_tokens() -> None:
    services.messages_append(
        key="k",
        convention="anthropic",
        messages=[
            {
                "role": "assistant",
                "content": "a",
                "usage": {
                    "input_tokens": 100,
                    "cache_read_input_tokens": 1000,
                    "cache_creation_input_tokens": 50,
                    "output_tokens": 7,
                },
            }
        ],
    )

    message = Message.objects.get()
    assert (message.prompt_tokens, message.cache_read_tokens, message.cache_creation_tokens) == (
        1150,
        1000,
        50,
    )
    assert message.completion_tokens == 7
    assert Session.objects.get().prompt_tokens == 1150


def test_the_rollup_moves_with_appends() -> None:
    services.messages_append(
        key="k",
        session={"agent": "bot", "channel": "cli", "model": "gpt-4o"},
        now=T0,
        messages=[
            {"role": "user", "content": "a", "created_at": "2026-03-01T10:00:00Z"},
            {
                "role": "assistant",
                "content": "b",
                "created_at": "2026-03-02T10:00:00Z",
                "usage": usage(100, 10, cost_usd="0.5"),
            },
        ],
    )

    rows = {r.day.isoformat(): r for r in DailyUsage.objects.all()}
    assert set(rows) == {"2026-03-01", "2026-03-02"}
    first, second = rows["2026-03-01"], rows["2026-03-02"]
    assert (first.agent, first.model, first.channel) == ("bot", "gpt-4o", "cli")
    assert (first.sessions_started, first.message_count, first.api_calls) == (1, 1, 0)
    assert (second.sessions_started, second.message_count, second.turns, second.api_calls) == (
        0,
        1,
        1,
        1,
    )
    assert (second.prompt_tokens, second.completion_tokens, second.cost_usd) == (
        100,
        10,
        Decimal("0.5"),
    )


def test_a_batch_across_span_boundaries_lands_in_each_rollup_span() -> None:
    old = ["2026-03-01T10:14:59Z", "2026-03-01T10:15:00Z", "2026-03-01T10:59:59Z"]
    old += ["2026-03-01T11:00:00Z", "2026-03-02T00:00:00Z"]
    recent = timezone.now()
    messages: list[dict[str, Any]] = [
        {"role": "assistant", "content": "a", "created_at": at, "usage": usage(100, 10)}
        for at in old
    ]
    messages.append({"role": "assistant", "content": "b", "usage": usage(7, 1)})
    services.messages_append(key="k", session={"model": "gpt-4o"}, now=recent, messages=messages)

    def at(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    def calls(span: str) -> dict[datetime, int]:
        rows = BudgetUsage.objects.filter(span=span, start__lt=at("2026-03-03T00:00"))
        return {row.start: row.api_calls for row in rows}

    assert calls(BudgetUsage.Span.QUARTER) == {
        at("2026-03-01T10:00"): 1,
        at("2026-03-01T10:15"): 1,
        at("2026-03-01T10:45"): 1,
        at("2026-03-01T11:00"): 1,
        at("2026-03-02T00:00"): 1,
    }
    assert calls(BudgetUsage.Span.HOUR) == {
        at("2026-03-01T10:00"): 3,
        at("2026-03-01T11:00"): 1,
        at("2026-03-02T00:00"): 1,
    }
    assert calls(BudgetUsage.Span.DAY) == {at("2026-03-01T00:00"): 4, at("2026-03-02T00:00"): 1}
    daily = {row.day.isoformat(): row.message_count for row in DailyUsage.objects.all()}
    assert daily["2026-03-01"] == 4
    assert daily["2026-03-02"] == 1
    # Only the recent message has a minute row.
    minutes = list(MinuteUsage.objects.values_list("minute", "prompt_tokens"))
    assert minutes == [(recent.replace(second=0, microsecond=0), 7)]


def test_an_append_adds_to_the_rollup_once_per_time_and_model_not_per_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The append's cost must not grow with the rollup tables times the
    # messages: a batch's contributions are summed per rollup key first.
    models: list[str] = []
    add_counts = Rollup.add_counts

    def counted(self: Rollup, **arguments: Any) -> None:
        models.append(arguments["model"])
        add_counts(self, **arguments)

    monkeypatch.setattr(Rollup, "add_counts", counted)
    one = {"role": "assistant", "content": "a", "usage": usage(10, 1)}
    services.messages_append(
        key="k",
        session={"model": "m1"},
        now=T0,
        messages=[one] * 50 + [{**one, "model": "m2"}] * 50,
    )

    # The session's start, then one call per model for a hundred messages.
    assert sorted(models) == ["m1", "m1", "m2"]
    row = DailyUsage.objects.get(model="m2")
    assert (row.message_count, row.prompt_tokens) == (50, 500)


def test_the_rollup_equals_the_session_totals() -> None:
    for index in range(3):
        services.messages_append(
            key=f"k{index}",
            session={"model": "gpt-4o-mini"},
            messages=[
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a", "usage": usage(300 + index, 40)},
            ],
        )

    rollup = rollup_totals()
    sessions = list(Session.objects.all())
    assert rollup["sessions_started"] == 3
    assert rollup["message_count"] == sum(s.message_count for s in sessions)
    for name in (*TOKEN_FIELDS, "turns", "api_calls"):
        assert rollup[name] == sum(getattr(s, name) for s in sessions)
    assert rollup["cost_usd"] == sum((s.cost_usd for s in sessions), Decimal(0))


def test_the_heartbeat_moves_on_every_append() -> None:
    services.messages_append(key="k", messages=[], now=T0)
    later = T0.replace(hour=13)

    services.messages_append(key="k", messages=[{"role": "user", "content": "a"}], now=later)

    assert Session.objects.get().last_active_at == later


def test_it_updates_session_fields_sent_with_an_append() -> None:
    services.messages_append(key="k", messages=[], session={"agent": "a", "room_id": "r1"})

    services.messages_append(key="k", messages=[], session={"name": "Named", "room_id": ""})

    session = Session.objects.get()
    assert (session.name, session.agent, session.room_id) == ("Named", "a", "r1")


def test_it_refuses_totals_in_the_session_fields_of_an_append() -> None:
    with pytest.raises(InvalidInput) as caught:
        services.messages_append(key="k", messages=[], session={"prompt_tokens": 5})

    assert caught.value.field == "session.prompt_tokens"
    assert not Session.objects.exists()


@pytest.mark.parametrize(
    ("bad", "field", "words"),
    [
        ({"role": "wizard", "content": "x"}, "messages[1].role", "system, user, assistant, tool"),
        ({"role": "user", "usage": usage(-1)}, "messages[1].usage.prompt_tokens", "non-negative"),
        (
            {"role": "assistant", "usage": usage(10, 5, reasoning_tokens=6)},
            "messages[1].usage.reasoning_tokens",
            "must not exceed completion_tokens",
        ),
        (
            {
                "role": "assistant",
                "usage": usage(10, 5, cache_read_tokens=8, cache_creation_tokens=3),
            },
            "messages[1].usage.cache_read_tokens",
            "must not exceed prompt_tokens",
        ),
        ({"role": "tool", "content": "x"}, "messages[1].tool_call_id", "which call"),
        ({"role": "user", "created_at": "2026-03-01T10:00:00"}, "messages[1].created_at", "RFC"),
        ({"role": "user", "content": "nul\x00"}, "messages[1].content", "NUL"),
        ({"role": "user", "content": "lone \ud800"}, "messages[1].content", "surrogate"),
        ({"role": "user", "colour": "red"}, "messages[1].colour", "accepted"),
        ({"role": "user", "usage": usage(1, cost_usd="-1")}, "messages[1].usage.cost_usd", "neg"),
    ],
)
def test_a_batch_with_one_bad_message_stores_none(bad: dict, field: str, words: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        services.messages_append(
            key="new", messages=[{"role": "user", "content": "fine"}, bad, {"role": "user"}]
        )

    assert caught.value.field == field
    assert words in caught.value.message
    assert not Session.objects.filter(key="new").exists()
    assert Message.objects.count() == 0
    assert DailyUsage.objects.count() == 0


def test_a_refused_append_to_an_existing_session_changes_nothing() -> None:
    services.messages_append(
        key="k", now=T0, messages=[{"role": "user", "content": "a", "usage": usage(10, 0)}]
    )
    session = Session.objects.get()
    before = session_totals(session)
    rollup_before = rollup_totals()

    with pytest.raises(InvalidInput):
        services.messages_append(
            key="k",
            session={"name": "changed"},
            messages=[{"role": "user", "content": "b"}, {"role": "robot"}],
        )

    session.refresh_from_db()
    assert session.name == ""
    assert session.last_active_at == T0
    assert session_totals(session) == before
    assert rollup_totals() == rollup_before


@pytest.mark.parametrize("key", ["", "   ", "x" * 256, "tab\there", "new\nline", "nul\x00"])
def test_it_refuses_bad_keys(key: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        services.messages_append(key=key, messages=[{"role": "user", "content": "a"}])

    assert caught.value.field == "key"
    assert not Session.objects.exists()


def test_it_accepts_a_key_of_255_characters() -> None:
    services.messages_append(key="k" * 255, messages=[])

    assert Session.objects.get().key == "k" * 255


def test_a_refused_session_field_in_an_append_creates_no_session() -> None:
    with pytest.raises(InvalidInput) as caught:
        services.messages_append(
            key="k", session={"channel": "fax"}, messages=[{"role": "user", "content": "a"}]
        )

    assert caught.value.field == "session.channel"
    assert "cli, tui, telegram, discord, slack, acp" in caught.value.message
    assert not Session.objects.exists()
    assert DailyUsage.objects.count() == 0


def test_a_session_cost_may_not_grow_past_the_bound_of_money() -> None:
    spend = [{"role": "assistant", "usage": {"cost_usd": "999999999.5"}}]
    services.messages_append(key="k", messages=spend)

    with pytest.raises(InvalidInput) as refused:
        services.messages_append(key="k", messages=spend)

    assert refused.value.field == "cost_usd"
    assert Session.objects.get().cost_usd == Decimal("999999999.5")
    assert DailyUsage.objects.get().cost_usd == Decimal("999999999.5")
    assert Message.objects.count() == 1


def test_a_total_the_database_cannot_hold_is_refused_as_input() -> None:
    services.messages_append(key="k", messages=[])
    services.messages_append(key="c", messages=[])
    Session.objects.filter(key="k").update(prompt_tokens=2**63 - 10)
    Session.objects.filter(key="c").update(cost_usd=Decimal("9223372036"))

    with pytest.raises(InvalidInput) as tokens:
        services.messages_append(key="k", messages=[{"role": "user", "usage": usage(11)}])
    with pytest.raises(InvalidInput) as cost:
        services.messages_append(
            key="c", messages=[{"role": "user", "usage": usage(1, cost_usd="1")}]
        )

    assert (tokens.value.field, cost.value.field) == ("prompt_tokens", "cost_usd")
    assert Message.objects.count() == 0
