"""The dashboard's formatting filters and tags (fleet/templatetags/fleet_tags.py)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from fleet.templatetags.fleet_tags import clip, compact_number, money, tokens


@pytest.mark.parametrize(
    ("value", "length", "expected"),
    [
        ("short", 10, "short"),
        ("exactly10!", 10, "exactly10!"),
        ("eleven chars", 10, "eleven ch…"),
        ("<script>alert(1)</script>", 9, "<script>…"),  # escaping is the template's job
        (12345, 3, "12…"),
    ],
)
def test_clip_cuts_to_the_length_with_an_ellipsis(
    value: object, length: int, expected: str
) -> None:
    assert clip(value, length) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(950, "950"), (12_345, "12.3k"), (123_456, "123k"), (1_234_567, "1.23M"), (None, "0")],
)
def test_compact_number(value: int | None, expected: str) -> None:
    assert compact_number(value) == expected


def test_money_says_unpriced_instead_of_zero() -> None:
    assert ">unpriced</span>" in money(Decimal(0), 3)
    assert "$0.00" not in money(Decimal(0), 3)
    assert ">unpriced</span>" in money(None)
    priced = money(Decimal("1.5"), 2)
    assert "$1.50" in priced
    assert "2 unpriced" in priced


def test_tokens_shows_the_exact_count_on_hover() -> None:
    assert tokens(1_234_567) == '<span class="num" title="1,234,567 tokens">1.23M</span>'


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, ""),
        (0, "0 ms"),
        (999, "999 ms"),
        (1000, "1.0 s"),
        (2345, "2.3 s"),
        (59_999, "1 min"),
        (60_000, "1 min"),
        (245_000, "4 min 5 s"),
        (3_600_000, "1 h"),
        (7_500_000, "2 h 5 min"),
    ],
)
def test_a_duration_in_milliseconds_reads_in_its_unit(value: int | None, shown: str) -> None:
    from fleet.templatetags.fleet_tags import milliseconds

    assert milliseconds(value) == shown
