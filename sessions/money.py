"""Money as exact integers of nano-dollars in the database, ``Decimal`` in Python.

SQLite stores Django's ``DecimalField`` with NUMERIC affinity, i.e. as a float,
so ``cost = cost + 0.000123`` drifts on every append. An integer count of
1e-9 USD is exact on SQLite and PostgreSQL alike, sums exactly, and still
reads back as a ``Decimal`` with nine places.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models

from sessions.bounds import MAX_USD

if TYPE_CHECKING:
    from django.db.models.expressions import Combinable

PLACES = 9
QUANTUM = Decimal(1).scaleb(-PLACES)
NANOS_PER_USD = 10**PLACES
# The largest BIGINT, what the column holds. The bounds a write must keep
# (MAX_USD for any amount or total) are in sessions.bounds; values past them
# written by older versions still convert, so reading never fails.
MAX_NANOS = 2**63 - 1
# Exact arithmetic for any amount a column or a sum of columns can hold: the
# default context (28 digits) cannot quantize a sum of rollups to 9 places.
_WIDE = Context(prec=80)
# The most a BIGINT of nano-dollars holds, in USD (exact: 19 digits).
_MAX_NANOS_USD = Decimal(MAX_NANOS).scaleb(-PLACES)


def to_decimal(value: Any) -> Decimal:
    """Parse a money amount (Decimal, int, str or float) into a quantized Decimal.

    Floats go through ``repr`` so ``0.1`` means 0.1, not its binary expansion.
    The bound is checked on the rounded amount (``999999999.9999999999``
    rounds to the bound and is refused). Raises ``ValueError`` for anything
    that is not a finite amount below ``MAX_USD``.
    """
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    if isinstance(value, float):
        value = repr(value)
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"must be a decimal number, got {str(value)[:50]!r}") from None
    if not amount.is_finite():
        raise ValueError("must be a finite number")
    # copy_abs and compare are exact: abs() would apply the context and
    # overflow on an exponent such as 1e999999999.
    if amount.copy_abs() >= MAX_USD:
        raise ValueError(f"must be below {MAX_USD} USD")
    amount = amount.quantize(QUANTUM, rounding=ROUND_HALF_EVEN, context=_WIDE)
    if amount.copy_abs() >= MAX_USD:
        raise ValueError(f"must be below {MAX_USD} USD once rounded to {PLACES} places")
    return amount


def to_nanos(value: Any) -> int:
    """Integer nano-dollars of an amount; raises ``ValueError`` beyond a BIGINT.

    A ``Decimal`` is converted whatever its size up to the column (a stored
    total past the bound must still save unchanged); other types are parsed
    with ``to_decimal``. Bounds are the callers' (``sessions.bounds``).
    """
    if not isinstance(value, Decimal):
        value = to_decimal(value)
    if not value.is_finite():
        raise ValueError("must be a finite number")
    if value.copy_abs() > _MAX_NANOS_USD:
        raise ValueError(f"must be at most {MAX_NANOS // NANOS_PER_USD} USD")
    return int(value.scaleb(PLACES, context=_WIDE).to_integral_value(ROUND_HALF_EVEN, _WIDE))


def from_nanos(nanos: Any) -> Decimal:
    """The amount of a count of nano-dollars (an int, or the Decimal or float of a sum)."""
    return Decimal(int(nanos)).scaleb(-PLACES, context=_WIDE)


def display(value: Decimal) -> Decimal:
    """A stored or summed amount with nine places, whatever its size: never raises."""
    return value.quantize(QUANTUM, rounding=ROUND_HALF_EVEN, context=_WIDE)


# --- formatting: one function per reader ------------------------------------
# The API wants the exact stored amount (``api_usd``); people reading the admin
# or a command's output want every significant digit without the trailing
# zeros (``exact_usd``); the dashboard wants a short figure (``short_usd``).


def api_usd(value: Decimal | None) -> str | None:
    """``"1.150000000"``: always nine places, for JSON answers and exports.

    ``format(..., "f")`` because ``str(Decimal)`` writes zero as ``0E-9``;
    ``display``, not the input parser, so a stored value past today's bound
    still reads.
    """
    return None if value is None else format(display(Decimal(value)), "f")


def exact_usd(value: Decimal | None) -> str:
    """``$0.012345``: every significant digit, at least cents, never a float; ``—`` for none."""
    if value is None:
        return "—"
    sign = "-" if value < 0 else ""
    whole, _, fraction = f"{abs(value).normalize():f}".partition(".")
    return f"{sign}${whole}.{fraction.ljust(2, '0')}"


def short_usd(amount: Decimal | int | None) -> str:
    """``$1,234.56`` from a dollar and up; three significant digits below a dollar.

    ``$0.0123``, ``$0.000042``; exactly zero is ``$0.00``; none is ``""``.
    """
    if amount is None:
        return ""
    amount = Decimal(amount)
    if amount == 0:
        return "$0.00"
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if amount >= 1:
        return f"{sign}${amount:,.2f}"
    places = min(9, max(2, 2 - amount.adjusted()))
    whole, _, frac = f"{amount:.{places}f}".partition(".")
    return f"{sign}${whole}.{frac.rstrip('0').ljust(2, '0')}"


class MoneyField(models.BigIntegerField):
    """USD amount: ``Decimal`` in Python, integer nano-dollars in the database."""

    description = "Amount of money in USD (stored as integer nano-dollars)"
    # The attribute types django-stubs gives a model's MoneyField: a Decimal,
    # not BigIntegerField's int. The ignores: narrowing the base class's types
    # is exactly the point (the column is an integer, the value is not).
    _pyi_private_set_type: Decimal | int | str | Combinable  # type: ignore[assignment]
    _pyi_private_get_type: Decimal  # type: ignore[assignment]

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

    def formfield(self, **kwargs: Any) -> forms.Field | None:
        defaults: dict[str, Any] = {
            "form_class": forms.DecimalField,
            "decimal_places": PLACES,
            "max_digits": 19,
        }
        defaults.update(kwargs)
        return models.Field.formfield(self, **defaults)

    def value_to_string(self, obj: models.Model) -> str:
        value = self.value_from_object(obj)
        return "" if value is None else str(value)

    @property
    def validators(self) -> list:
        # BigIntegerField's range validators compare the Decimal against the
        # integer range; the bound lives in to_decimal (sessions.bounds) instead.
        return []
