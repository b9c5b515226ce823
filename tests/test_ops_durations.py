"""``sessions.ops.durations``: the durations the ops commands accept."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sessions.ops.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1h30m", timedelta(minutes=90)),
        (" 30D ", timedelta(days=30)),
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
    ],
)
def test_it_parses_amounts_with_units(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "30", "-5m", "5 m", "1.5h", "1y", "m", "h1", "15min", "1e3s", "99999999w"]
)
def test_it_refuses_anything_else_saying_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected (a duration such as 90s|at most 100 years)"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(0), "0"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(minutes=30), "30m"),
        (timedelta(days=7, hours=1), "7d1h"),
    ],
)
def test_it_formats_durations_back(delta: timedelta, text: str) -> None:
    assert format_duration(delta) == text
    assert parse_duration(text) == delta
