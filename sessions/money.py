"""Money as exact integers of nano-dollars in the database, ``Decimal`` in Python.

SQLite stores Django's ``DecimalField`` with NUMERIC affinity, i.e. as a float,
so ``cost = cost + 0.000123`` drifts on every append. An integer count of
1e-9 USD is exact on SQLite and PostgreSQL alike, sums exactly, and still
reads back as a ``Decimal`` with nine places.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

PLACES = 9
QUANTUM = Decimal(1).scaleb(-PLACES)
NANOS_PER_USD = 10**PLACES
# A BIGINT holds 9.2e18 nanos; refuse amounts that would not fit, with room
# for totals to grow.
MAX_USD = Decimal(10**9)


def to_decimal(value: Any) -> Decimal:
    """Parse a money amount (Decimal, int, str or float) into a quantized Decimal.

    Floats go through ``repr`` so ``0.1`` means 0.1, not its binary expansion.
    Raises ``ValueError`` for anything that is not a finite amount.
    """
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, float):
        value = repr(value)
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"must be a decimal number, got {value!r}") from None
    if not amount.is_finite():
        raise ValueError("must be a finite number")
    if abs(amount) >= MAX_USD:
        raise ValueError(f"must be below {MAX_USD} USD")
    return amount.quantize(QUANTUM, rounding=ROUND_HALF_EVEN)


# The largest BIGINT: totals (a session's cost, a day's cost) may grow past
# MAX_USD, the limit of one amount, up to what the column holds.
MAX_NANOS = 2**63 - 1


def to_nanos(value: Decimal) -> int:
    """Integer nano-dollars of an amount; raises ``ValueError`` beyond a BIGINT."""
    if isinstance(value, Decimal) and value.is_finite() and abs(value) >= MAX_USD:
        if abs(value) > MAX_NANOS // NANOS_PER_USD:
            raise ValueError(f"must be at most {MAX_NANOS // NANOS_PER_USD} USD")
        return int(value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN) * NANOS_PER_USD)
    return int(to_decimal(value) * NANOS_PER_USD)


def from_nanos(nanos: int) -> Decimal:
    return (Decimal(int(nanos)) / NANOS_PER_USD).quantize(QUANTUM)


class MoneyField(models.BigIntegerField):
    """USD amount: ``Decimal`` in Python, integer nano-dollars in the database."""

    description = "Amount of money in USD (stored as integer nano-dollars)"

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Decimal | None:
        if value is None:
            return None
        return from_nanos(value)

    def to_python(self, value: Any) -> Decimal | None:
        if value is None or isinstance(value, Decimal):
            return value
        try:
            return to_decimal(value)
        except ValueError as exc:
            raise ValidationError(str(exc), code="invalid") from None

    def get_prep_value(self, value: Any) -> int | None:
        value = models.Field.get_prep_value(self, value)
        if value is None:
            return None
        if hasattr(value, "resolve_expression"):
            return value
        return to_nanos(value)

    def get_db_prep_value(self, value: Any, connection: Any, prepared: bool = False) -> Any:
        if not prepared:
            value = self.get_prep_value(value)
        return value

    def formfield(self, **kwargs: Any) -> forms.Field:
        defaults = {"form_class": forms.DecimalField, "decimal_places": PLACES, "max_digits": 19}
        defaults.update(kwargs)
        return models.Field.formfield(self, **defaults)

    def value_to_string(self, obj: models.Model) -> str:
        value = self.value_from_object(obj)
        return "" if value is None else str(value)

    @property
    def validators(self) -> list:
        # BigIntegerField's range validators compare the Decimal against the
        # integer range; the range check lives in to_decimal instead.
        return []
