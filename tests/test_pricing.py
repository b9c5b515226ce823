"""``sessions.pricing`` against the genai-prices library, and admin overrides."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from genai_prices import Usage, calc_price
from hypothesis import given, settings
from hypothesis import strategies as st

from sessions import services
from sessions.choices import CostSource
from sessions.models import Message, ModelPrice, Session
from sessions.money import QUANTUM
from sessions.pricing import PriceBook, Rates, library_rates

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
# Plain, cache-read-priced, cache-write-priced, and tiered (above 200k / 128k input) models.
MODELS = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "claude-3-5-haiku-latest",
    "claude-sonnet-4-20250514",
    "claude-opus-4-1",
    "claude-sonnet-4-5",
    "gemini-2.5-pro",
    "gemini-1.5-pro",
    "gemini-2.5-flash",
    "deepseek-chat",
]
TIERED = ["claude-sonnet-4-5", "gemini-2.5-pro", "gemini-1.5-pro"]


def library_price(
    model: str,
    prompt: int,
    completion: int,
    cache_read: int = 0,
    cache_write: int = 0,
    at: datetime | None = None,
) -> Decimal:
    result = calc_price(
        Usage(
            input_tokens=prompt,
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
            output_tokens=completion,
        ),
        model_ref=model,
        genai_request_timestamp=at,
    )
    return result.total_price.quantize(QUANTUM)


@st.composite
def usages(draw: st.DrawFn, max_prompt: int = 2_000_000) -> tuple[int, int, int, int]:
    prompt = draw(
        st.one_of(
            st.integers(0, max_prompt),
            st.sampled_from([0, 1, 127_999, 128_000, 128_001, 199_999, 200_000, 200_001]),
        )
    )
    cache_read = draw(st.integers(0, prompt))
    cache_write = draw(st.integers(0, prompt - cache_read))
    completion = draw(st.integers(0, 200_000))
    return prompt, completion, cache_read, cache_write


@pytest.mark.parametrize("model", MODELS)
@settings(max_examples=40, deadline=None)
@given(usage=usages())
def test_our_rates_match_the_library(model: str, usage: tuple[int, int, int, int]) -> None:
    prompt, completion, cache_read, cache_write = usage
    # One moment for both: some prices change with the time of day (deepseek).
    rates = library_rates(model, T0)
    assert rates is not None

    ours = rates.cost(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cache_read_tokens=cache_read,
        cache_creation_tokens=cache_write,
    )

    assert ours == library_price(model, prompt, completion, cache_read, cache_write, at=T0)


@pytest.mark.parametrize("model", TIERED)
@pytest.mark.parametrize("prompt", [199_999, 200_000, 200_001, 250_000, 1_000_000])
def test_tiered_models_switch_rate_above_the_threshold(model: str, prompt: int) -> None:
    rates = library_rates(model, T0)

    ours = rates.cost(
        prompt_tokens=prompt,
        completion_tokens=1000,
        cache_read_tokens=prompt // 4,
        cache_creation_tokens=prompt // 8,
    )

    assert ours == library_price(model, prompt, 1000, prompt // 4, prompt // 8, at=T0)


def test_the_long_context_tier_costs_more_per_token() -> None:
    rates = library_rates("gemini-2.5-pro")

    below = rates.cost(prompt_tokens=200_000, completion_tokens=0)
    above = rates.cost(prompt_tokens=200_001, completion_tokens=0)

    assert above / 200_001 > below / 200_000 * Decimal("1.5")


def test_reasoning_is_never_added_on_top_of_completion() -> None:
    rates = library_rates("o3")

    # 900 of the 1000 completion tokens are reasoning: the price is the same.
    cost = rates.cost(prompt_tokens=100, completion_tokens=1000)

    assert cost == library_price("o3", 100, 1000)
    assert cost == rates.cost(prompt_tokens=100, completion_tokens=0) + rates.cost(
        prompt_tokens=0, completion_tokens=1000
    )


@pytest.mark.django_db
def test_a_message_with_reasoning_costs_its_completion_only() -> None:
    services.messages_append(
        key="k",
        messages=[
            {
                "role": "assistant",
                "content": "a",
                "model": "gpt-4.1",
                "usage": {"prompt_tokens": 100, "completion_tokens": 1000, "reasoning_tokens": 900},
            }
        ],
    )

    assert Message.objects.get().cost_usd == library_price("gpt-4.1", 100, 1000)


def test_cache_tokens_are_charged_at_cache_rates() -> None:
    rates = library_rates("claude-3-5-haiku-latest")
    uncached = rates.cost(prompt_tokens=1_000_000, completion_tokens=0)
    read = rates.cost(prompt_tokens=1_000_000, completion_tokens=0, cache_read_tokens=1_000_000)
    write = rates.cost(
        prompt_tokens=1_000_000, completion_tokens=0, cache_creation_tokens=1_000_000
    )

    assert (uncached, read, write) == (Decimal("0.8"), Decimal("0.08"), Decimal("1"))


def test_cache_writes_without_a_cache_write_price_are_charged_as_input() -> None:
    rates = library_rates("gpt-4o")

    cost = rates.cost(prompt_tokens=1_000_000, completion_tokens=0, cache_creation_tokens=500_000)

    assert cost == Decimal("2.5")
    assert cost == library_price("gpt-4o", 1_000_000, 0, 0, 500_000)


def test_a_model_name_is_matched_case_insensitively() -> None:
    assert library_rates("GPT-4o ") == library_rates("gpt-4o")


@pytest.mark.parametrize("model", ["", "   ", "acme-llm-9", "definitely/not-a-model"])
def test_unknown_models_have_no_rates(model: str) -> None:
    assert library_rates(model) is None
    assert PriceBook().price(
        model=model,
        at=None,
        prompt_tokens=10,
        completion_tokens=1,
        cache_read_tokens=0,
        cache_creation_tokens=0,
    ) == (None, CostSource.UNPRICED)


def test_library_prices_follow_the_time_of_the_call() -> None:
    # o3's price dropped on 2025-06-10; a call made before is priced as it was then.
    before = datetime(2025, 6, 1, tzinfo=UTC)
    book = PriceBook()

    old, _ = book.price(
        model="o3",
        at=before,
        prompt_tokens=1_000_000,
        completion_tokens=1_000_000,
        cache_read_tokens=0,
        cache_creation_tokens=0,
    )
    new, _ = book.price(
        model="o3",
        at=T0,
        prompt_tokens=1_000_000,
        completion_tokens=1_000_000,
        cache_read_tokens=0,
        cache_creation_tokens=0,
    )

    assert old == library_price("o3", 1_000_000, 1_000_000, at=before)
    assert new == library_price("o3", 1_000_000, 1_000_000, at=T0)
    assert old > new


def test_time_of_day_prices_follow_the_time_of_the_call() -> None:
    peak = datetime(2026, 3, 1, 20, 0, tzinfo=UTC)
    off_peak = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)

    costs = [
        library_rates("deepseek-chat", at).cost(prompt_tokens=1_000_000, completion_tokens=0)
        for at in (peak, off_peak)
    ]

    assert costs == [library_price("deepseek-chat", 1_000_000, 0, at=at) for at in (peak, off_peak)]
    assert costs[0] != costs[1]


def test_rates_cost_is_exact_to_nine_places() -> None:
    rates = Rates(input=Decimal("0.15"), output=Decimal("0.6"))

    assert rates.cost(prompt_tokens=1, completion_tokens=1) == Decimal("0.00000075")
    assert rates.cost(prompt_tokens=3, completion_tokens=0) == Decimal("0.00000045")


# --- admin overrides -------------------------------------------------------------------


def price(
    pattern: str, input_rate: str, output_rate: str = "0", valid_from: datetime = T0, **extra: str
) -> ModelPrice:
    return ModelPrice.objects.create(
        model_pattern=pattern,
        input_per_mtok=Decimal(input_rate),
        output_per_mtok=Decimal(output_rate),
        valid_from=valid_from,
        **{name: Decimal(value) for name, value in extra.items()},
    )


def million_input(model: str, at: datetime = T0 + timedelta(days=1)) -> Decimal | None:
    return PriceBook.load().price(
        model=model,
        at=at,
        prompt_tokens=1_000_000,
        completion_tokens=0,
        cache_read_tokens=0,
        cache_creation_tokens=0,
    )[0]


@pytest.mark.django_db
def test_an_override_beats_the_library() -> None:
    price("gpt-4o", "7")

    assert million_input("gpt-4o") == Decimal(7)
    assert million_input("gpt-4o-mini") == library_rates("gpt-4o-mini").cost(
        prompt_tokens=1_000_000, completion_tokens=0
    )


@pytest.mark.django_db
def test_the_exact_name_beats_a_pattern() -> None:
    price("gpt-4o*", "1")
    price("gpt-4o-mini", "2")

    assert million_input("gpt-4o-mini") == Decimal(2)
    assert million_input("gpt-4o-2024-08-06") == Decimal(1)


@pytest.mark.django_db
def test_a_longer_pattern_beats_a_shorter_one() -> None:
    price("gpt-*", "1")
    price("gpt-4o-*", "2")

    assert million_input("gpt-4o-mini") == Decimal(2)
    assert million_input("gpt-5") == Decimal(1)


@pytest.mark.django_db
def test_patterns_match_case_insensitively() -> None:
    price("House-*", "3")

    assert million_input("HOUSE-model") == Decimal(3)


@pytest.mark.django_db
def test_valid_from_is_respected() -> None:
    price("house-1", "1", valid_from=T0)
    price("house-1", "2", valid_from=T0 + timedelta(days=10))

    assert million_input("house-1", at=T0 - timedelta(seconds=1)) is None
    assert million_input("house-1", at=T0) == Decimal(1)
    assert million_input("house-1", at=T0 + timedelta(days=9)) == Decimal(1)
    assert million_input("house-1", at=T0 + timedelta(days=10)) == Decimal(2)


@pytest.mark.django_db
def test_an_override_not_yet_valid_leaves_the_library_price() -> None:
    price("gpt-4o", "99", valid_from=T0 + timedelta(days=30))

    assert million_input("gpt-4o") == Decimal("2.5")


@pytest.mark.django_db
def test_override_cache_rates_default_to_the_input_rate() -> None:
    price("house-1", "2", "10")
    price("house-2", "2", "10", cache_read_per_mtok="0.5", cache_write_per_mtok="4")
    book = PriceBook.load()

    def cost(model: str) -> Decimal | None:
        return book.price(
            model=model,
            at=T0,
            prompt_tokens=3_000_000,
            completion_tokens=1_000_000,
            cache_read_tokens=1_000_000,
            cache_creation_tokens=1_000_000,
        )[0]

    # Without cache prices all 3M input tokens pay the input rate.
    assert cost("house-1") == Decimal(2 * 3 + 10)
    assert cost("house-2") == Decimal(2) + Decimal("0.5") + Decimal(4) + Decimal(10)


@pytest.mark.django_db
def test_appends_use_the_override_valid_at_the_message_time() -> None:
    price("house-1", "1", valid_from=T0)
    price("house-1", "2", valid_from=T0 + timedelta(days=1))

    services.messages_append(
        key="k",
        session={"model": "house-1"},
        messages=[
            {
                "role": "assistant",
                "content": "a",
                "created_at": "2026-03-01T13:00:00Z",
                "usage": {"prompt_tokens": 1_000_000},
            },
            {
                "role": "assistant",
                "content": "b",
                "created_at": "2026-03-02T13:00:00Z",
                "usage": {"prompt_tokens": 1_000_000},
            },
        ],
    )

    assert list(Message.objects.values_list("cost_usd", flat=True)) == [Decimal(1), Decimal(2)]
    assert Session.objects.get().cost_usd == Decimal(3)


@pytest.mark.django_db
def test_unknown_model_is_unpriced_and_excluded_from_cost() -> None:
    services.messages_append(
        key="k",
        messages=[
            {
                "role": "assistant",
                "content": "a",
                "model": "acme-llm-9",
                "usage": {"prompt_tokens": 5},
            },
            {
                "role": "assistant",
                "content": "b",
                "model": "gpt-4o",
                "usage": {"prompt_tokens": 400},
            },
        ],
    )

    unpriced = Message.objects.get(seq=1)
    session = Session.objects.get()
    assert (unpriced.cost_source, unpriced.cost_usd) == (CostSource.UNPRICED, None)
    assert (session.unpriced_calls, session.api_calls) == (1, 2)
    assert session.cost_usd == Message.objects.get(seq=2).cost_usd == Decimal("0.001")


@pytest.mark.django_db
def test_a_message_without_a_model_uses_the_session_model() -> None:
    services.messages_append(
        key="k",
        session={"model": "gpt-4o"},
        messages=[{"role": "assistant", "content": "a", "usage": {"prompt_tokens": 400}}],
    )

    assert Message.objects.get().cost_usd == Decimal("0.001")
