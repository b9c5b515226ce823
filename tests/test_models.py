"""Models and money: exact amounts, database constraints, small model helpers."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from hypothesis import given
from hypothesis import strategies as st

from sessions import services
from sessions.choices import TOKEN_FIELDS
from sessions.models import DailyUsage, Message, ModelPrice, Session, Totals
from sessions.money import MAX_USD, from_nanos, to_decimal, to_nanos

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_token_fields_name_the_token_columns_of_sessions_and_messages() -> None:
    # choices.TOKEN_FIELDS sits below the models, so it cannot read them: it
    # must list the same fields, in the same order.
    columns = tuple(field.name for field in Totals._meta.fields)

    assert columns == TOKEN_FIELDS


# --- money -----------------------------------------------------------------------


@given(st.decimals(min_value=0, max_value=10**6, places=9))
def test_nanos_round_trip_exactly(amount: Decimal) -> None:
    assert from_nanos(to_nanos(amount)) == amount


def test_floats_mean_their_decimal_text() -> None:
    assert to_decimal(0.1) == Decimal("0.1")
    assert to_decimal(0.1) + to_decimal(0.2) == Decimal("0.3")


@pytest.mark.parametrize("value", [True, "NaN", "inf", "x", None, MAX_USD, -MAX_USD])
def test_to_decimal_refuses_what_is_not_an_amount(value: object) -> None:
    with pytest.raises(ValueError, match="must"):
        to_decimal(value)


def test_amounts_round_half_even_to_nine_places() -> None:
    assert to_decimal("0.0000000005") == Decimal(0)
    assert to_decimal("0.0000000015") == Decimal("0.000000002")


@pytest.mark.django_db
def test_money_is_stored_as_integer_nanos() -> None:
    Session.objects.create(key="k", cost_usd=Decimal("1.000000001"))

    with connection.cursor() as cursor:
        cursor.execute("SELECT cost_usd FROM agent_sessions_session")
        (raw,) = cursor.fetchone()

    assert raw == 1_000_000_001
    assert isinstance(raw, int)
    assert Session.objects.get().cost_usd == Decimal("1.000000001")


@pytest.mark.django_db
def test_many_small_costs_sum_exactly() -> None:
    rng = random.Random(7)
    costs = [Decimal(rng.randint(1, 999_999)).scaleb(-9) for _ in range(600)]
    costs += [Decimal("0.1")] * 30 + [Decimal("0.000000001")] * 70
    batches = [costs[start : start + 100] for start in range(0, len(costs), 100)]

    for batch in batches:
        services.messages_append(
            key="k",
            messages=[
                {"role": "assistant", "content": "a", "usage": {"cost_usd": str(c)}} for c in batch
            ],
        )

    expected = sum(costs, Decimal(0))
    assert Session.objects.get().cost_usd == expected
    assert sum((r.cost_usd for r in DailyUsage.objects.all()), Decimal(0)) == expected
    assert sum((m.cost_usd for m in Message.objects.all()), Decimal(0)) == expected


@pytest.mark.django_db
def test_float_costs_do_not_drift() -> None:
    for _ in range(10):
        services.messages_append(
            key="k", messages=[{"role": "assistant", "usage": {"cost_usd": 0.1}}]
        )

    # Ten float 0.1 additions give 0.9999999999999999; money must give 1.
    assert Session.objects.get().cost_usd == Decimal(1)


# --- constraints ---------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "tokens",
    [
        {"completion_tokens": 5, "reasoning_tokens": 6},
        {"prompt_tokens": 5, "cache_read_tokens": 3, "cache_creation_tokens": 3},
    ],
)
def test_the_database_refuses_token_parts_larger_than_the_whole(tokens: dict) -> None:
    session = Session.objects.create(key="k")

    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(session=session, seq=1, role="assistant", **tokens)
    with pytest.raises(IntegrityError), transaction.atomic():
        Session.objects.filter(pk=session.pk).update(**tokens)


@pytest.mark.django_db
def test_a_turn_start_needs_a_running_or_error_state() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Session.objects.create(key="k", state="idle", turn_started_at=T0)

    Session.objects.create(key="k", state="running", turn_started_at=T0)
    # error keeps the turn that failed (issue 12).
    Session.objects.create(key="e", state="error", turn_started_at=T0)


@pytest.mark.django_db
def test_seq_is_unique_and_positive_per_session() -> None:
    first = Session.objects.create(key="a")
    second = Session.objects.create(key="b")
    Message.objects.create(session=first, seq=1, role="user")
    Message.objects.create(session=second, seq=1, role="user")

    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(session=first, seq=1, role="user")
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(session=first, seq=0, role="user")


@pytest.mark.django_db
def test_message_ids_are_unique_per_session_only_when_set() -> None:
    first = Session.objects.create(key="a")
    second = Session.objects.create(key="b")
    Message.objects.create(session=first, seq=1, role="user", message_id="m")
    Message.objects.create(session=second, seq=1, role="user", message_id="m")
    Message.objects.create(session=first, seq=2, role="user", message_id=None)
    Message.objects.create(session=first, seq=3, role="user", message_id=None)

    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(session=first, seq=4, role="user", message_id="m")


@pytest.mark.django_db
def test_keys_are_unique() -> None:
    Session.objects.create(key="k")

    with pytest.raises(IntegrityError), transaction.atomic():
        Session.objects.create(key="k")


@pytest.mark.django_db
def test_prices_must_not_be_negative() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelPrice.objects.create(model_pattern="m", input_per_mtok=-1, output_per_mtok=1)


@pytest.mark.django_db
def test_deleting_a_session_deletes_its_messages() -> None:
    services.messages_append(key="k", messages=[{"role": "user", "content": "a"}])

    Session.objects.get().delete()

    assert Message.objects.count() == 0


# --- helpers ---------------------------------------------------------------------------


def test_total_tokens_does_not_count_parts_twice() -> None:
    session = Session(prompt_tokens=100, cache_read_tokens=60, completion_tokens=10)
    session.reasoning_tokens = 4

    assert session.total_tokens == 110


def test_session_helpers() -> None:
    assert str(Session(key="k")) == "k"
    assert str(Session(key="k", name="Named")) == "Named"
    assert Session(status="active").is_active
    assert not Session(status="unknown").is_active


def test_message_helpers() -> None:
    message = Message(
        role="assistant",
        tool_calls=[{"id": "a"}, {"id": 2}, "junk"],
        cost_source="",
        compacted_at=None,
    )

    assert message.tool_call_ids == ["a", "2"]
    assert not message.has_usage
    assert not message.is_archived
    assert Message(cost_source="unpriced", compacted_at=T0).has_usage
    assert Message(compacted_at=T0).is_archived


def test_daily_usage_and_price_have_readable_names() -> None:
    assert str(DailyUsage(day=T0.date(), agent="a")) == "2026-03-01 a - -"
    assert str(ModelPrice(model_pattern="gpt-*", valid_from=T0)) == "gpt-* from 2026-03-01"
