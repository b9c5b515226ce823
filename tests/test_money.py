"""The dollar formatters of sessions/money.py: one per reader."""

from __future__ import annotations

from decimal import Decimal

import pytest

from sessions.money import api_usd, exact_usd, short_usd


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (Decimal(0), "0.000000000"),  # not str(Decimal)'s "0E-9"
        (Decimal("1.15"), "1.150000000"),
        (Decimal("0.0000000004"), "0.000000000"),
        (Decimal("12345678901234567890.5"), "12345678901234567890.500000000"),  # past the bound
        (None, None),
    ],
)
def test_api_usd_writes_the_exact_amount_with_nine_places(
    amount: Decimal | None, expected: str | None
) -> None:
    assert api_usd(amount) == expected


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (Decimal(0), "$0.00"),
        (Decimal("0E-9"), "$0.00"),
        (Decimal("1.234500000"), "$1.2345"),
        (Decimal("0.000000001"), "$0.000000001"),
        (Decimal("100"), "$100.00"),
        (Decimal("-0.5"), "-$0.50"),
        (None, "—"),
    ],
)
def test_exact_usd_shows_every_significant_digit_and_at_least_cents(
    amount: Decimal | None, expected: str
) -> None:
    assert exact_usd(amount) == expected


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (Decimal(0), "$0.00"),
        (Decimal("1234.5"), "$1,234.50"),
        (Decimal("0.0123"), "$0.0123"),
        (Decimal("0.000042"), "$0.000042"),
        (Decimal("-2"), "-$2.00"),
        (None, ""),
    ],
)
def test_short_usd_rounds_for_the_dashboard(amount: Decimal | None, expected: str) -> None:
    assert short_usd(amount) == expected
