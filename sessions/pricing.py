"""Pricing of message usage: reported cost wins, else computed, else unpriced.

Rates come from an admin ``ModelPrice`` override or the ``genai-prices``
table. Looking a model up in genai-prices costs ~0.2 ms and pricing through it
~0.1 ms, so a model is looked up once per process (``_library_model``), each of
its prices (they change over time) is converted once (``_library_rates``), and
messages are priced here with plain ``Decimal`` arithmetic — the same
arithmetic genai-prices applies (tier chosen by total input tokens, cache
tokens carved out of input only when the model prices them separately).
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any

from sessions.choices import CostSource
from sessions.models import ModelPrice
from sessions.money import to_decimal

MTOK = Decimal(1_000_000)
_ZERO = Decimal(0)
Tiered = tuple[Decimal, tuple[tuple[int, Decimal], ...]]  # base, ((start, price), ...)


def _rate(value: Decimal | Tiered | None, input_tokens: int) -> Decimal | None:
    if value is None or isinstance(value, Decimal):
        return value
    base, tiers = value
    for start, price in reversed(tiers):
        if input_tokens > start:
            return price
    return base


@dataclass(frozen=True)
class Rates:
    """A model's prices per million tokens; ``None`` cache rates fall back to input."""

    input: Decimal | Tiered
    output: Decimal | Tiered
    cache_read: Decimal | Tiered | None = None
    cache_write: Decimal | Tiered | None = None
    source: str = ""

    def cost(
        self,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        cache_read_tokens: int = 0,
        cache_creation_tokens: int = 0,
    ) -> Decimal:
        """USD for one call. Reasoning is part of completion and is never added again."""
        input_rate = _rate(self.input, prompt_tokens) or _ZERO
        read_rate = _rate(self.cache_read, prompt_tokens)
        write_rate = _rate(self.cache_write, prompt_tokens)
        uncached = prompt_tokens
        total = _ZERO
        if read_rate is not None:
            uncached -= cache_read_tokens
            total += read_rate * cache_read_tokens
        if write_rate is not None:
            uncached -= cache_creation_tokens
            total += write_rate * cache_creation_tokens
        total += input_rate * uncached
        total += (_rate(self.output, prompt_tokens) or _ZERO) * completion_tokens
        return to_decimal(total / MTOK)


def _convert(value: object) -> Decimal | Tiered | None:
    from genai_prices.types import TieredPrices

    if value is None:
        return None
    if isinstance(value, TieredPrices):
        return (value.base, tuple((tier.start, tier.price) for tier in value.tiers))
    if isinstance(value, Decimal):
        return value
    return None


@functools.lru_cache(maxsize=4096)
def _library_model(model: str) -> tuple[Any, Any] | None:
    """(provider, model info) for ``model`` from genai-prices, looked up once per process."""
    from genai_prices.data_snapshot import get_snapshot

    try:
        return get_snapshot().find_provider_model(model, None, None, None)
    except LookupError:
        return None


# (model, id of the library's price object) -> (that object, our rates). The
# object is kept so its id cannot be reused while the entry lives.
_converted: dict[tuple[str, int], tuple[object, Rates | None]] = {}


def _library_rates(model: str, at: datetime | None = None) -> Rates | None:
    """Rates for ``model`` from genai-prices as they were at ``at`` (default: now).

    Prices can change over time (a price drop, off-peak hours): the library
    picks the price in force at the call's time, and each distinct price is
    converted once per process.
    """
    found = _library_model(model)
    if found is None:
        return None
    provider, info = found
    prices = info.get_prices(at or datetime.now(tz=UTC))
    cached = _converted.get((model, id(prices)))
    if cached is not None and cached[0] is prices:
        return cached[1]
    input_rate = _convert(getattr(prices, "input_mtok", None))
    output_rate = _convert(getattr(prices, "output_mtok", None))
    rates = None
    if input_rate is not None or output_rate is not None:
        rates = Rates(
            input=input_rate if input_rate is not None else Decimal(0),
            output=output_rate if output_rate is not None else Decimal(0),
            cache_read=_convert(getattr(prices, "cache_read_mtok", None)),
            cache_write=_convert(getattr(prices, "cache_write_mtok", None)),
            source=f"genai-prices:{provider.id}/{info.id}",
        )
    _converted[(model, id(prices))] = (prices, rates)
    return rates


def library_rates(model: str, at: datetime | None = None) -> Rates | None:
    model = model.strip().lower()
    if not model:
        return None
    return _library_rates(model, at)


class PriceBook:
    """Prices for one batch of work: the overrides are read once, then every
    lookup is a dictionary hit. Build one per transaction (``PriceBook.load()``)."""

    def __init__(self, overrides: Iterable[ModelPrice] = ()) -> None:
        self._overrides = list(overrides)
        self._cache: dict[tuple[str, datetime | None], Rates | None] = {}
        # (model, moment, its zone) -> its rates: a batch's messages mostly
        # share them, and the answer for a given moment never changes.
        self._at: dict[tuple[str, datetime, tzinfo | None], Rates | None] = {}

    @classmethod
    def load(cls) -> PriceBook:
        return cls(ModelPrice.objects.all())

    def _override(self, model: str, at: datetime | None) -> ModelPrice | None:
        best: tuple[tuple[int, int, datetime], ModelPrice] | None = None
        for override in self._overrides:
            pattern = override.model_pattern.strip().lower()
            exact = pattern == model
            if not exact and not fnmatch.fnmatchcase(model, pattern):
                continue
            if at is not None and override.valid_from > at:
                continue
            rank = (int(exact), len(pattern), override.valid_from)
            if best is None or rank > best[0]:
                best = (rank, override)
        return best[1] if best else None

    def rates(self, model: str, at: datetime | None = None) -> Rates | None:
        if at is None:
            return self._rates(model, None)  # "now" moves: not kept
        key = (model, at, at.tzinfo)
        if key not in self._at:
            self._at[key] = self._rates(model, at)
        return self._at[key]

    def _rates(self, model: str, at: datetime | None) -> Rates | None:
        model = (model or "").strip().lower()
        if not model:
            return None
        if self._overrides:
            override = self._override(model, at)
            if override is not None:
                # Keyed by override so messages at different times share it.
                cache_key = (f"override:{override.pk}:{model}", None)
                if cache_key not in self._cache:
                    self._cache[cache_key] = Rates(
                        input=override.input_per_mtok,
                        output=override.output_per_mtok,
                        cache_read=override.cache_read_per_mtok,
                        cache_write=override.cache_write_per_mtok,
                        source=f"override:{override.pk}",
                    )
                return self._cache[cache_key]
        return library_rates(model, at)

    def price(
        self,
        *,
        model: str,
        at: datetime | None,
        prompt_tokens: int,
        completion_tokens: int,
        cache_read_tokens: int,
        cache_creation_tokens: int,
    ) -> tuple[Decimal | None, str]:
        """(cost, cost_source) for usage the agent did not price itself."""
        rates = self.rates(model, at)
        if rates is None:
            return None, CostSource.UNPRICED
        cost = rates.cost(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cache_read_tokens=cache_read_tokens,
            cache_creation_tokens=cache_creation_tokens,
        )
        return cost, CostSource.COMPUTED
