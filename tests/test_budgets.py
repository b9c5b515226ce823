"""Budgets: periods in the configured time zone, exact spend from the rollup, scope rules."""

from __future__ import annotations

import itertools
import zoneinfo
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from sessions import services
from sessions.budgets import (
    BudgetStatus,
    budget_status,
    budget_statuses,
    budgets_applying,
    period_bounds,
    period_pieces,
    visible_budgets,
)
from sessions.models import Budget, BudgetUsage, DailyUsage
from sessions.scopes import KeyScope

pytestmark = pytest.mark.django_db

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
KOLKATA = zoneinfo.ZoneInfo("Asia/Kolkata")
_keys = itertools.count()


def spend(
    at: datetime,
    cost: str | None,
    *,
    agent: str = "koda",
    model: str = "gpt-4o",
    channel: str = "cli",
    project: str = "/src/app",
) -> None:
    """One call dated ``at`` in a session of its own; ``cost`` None = an unpriced call."""
    call_usage: dict[str, Any] = {"prompt_tokens": 10, "completion_tokens": 1}
    if cost is not None:
        call_usage["cost_usd"] = cost
    services.messages_append(
        key=f"s{next(_keys)}",
        session={"agent": agent, "model": model, "channel": channel, "project_root": project},
        messages=[
            {
                "role": "assistant",
                "content": "x",
                "model": model if cost is not None else "acme-unpriced-9",
                "created_at": at.isoformat(),
                "usage": call_usage,
            }
        ],
    )


def budget(**fields: Any) -> Budget:
    fields.setdefault("name", f"b{next(_keys)}")
    fields.setdefault("amount_usd", Decimal(10))
    return Budget.objects.create(**fields)


def length(status: BudgetStatus) -> timedelta:
    return status.period_end.astimezone(UTC) - status.period_start.astimezone(UTC)


# --- periods -------------------------------------------------------------------


@override_settings(TIME_ZONE="Europe/Berlin")
def test_a_day_with_the_spring_dst_change_is_23_hours_and_its_spend_exact() -> None:
    day = budget(period="day")
    local = datetime(2026, 3, 29, tzinfo=BERLIN)  # clocks go 02:00 → 03:00
    spend(local - timedelta(microseconds=1), "5")  # the day before
    spend(local, "0.000000001")
    spend(datetime(2026, 3, 29, 3, 0, tzinfo=BERLIN), "0.1")  # first moment after the gap
    spend(datetime(2026, 3, 29, 23, 59, 59, 999999, tzinfo=BERLIN), "0.2")
    spend(datetime(2026, 3, 30, tzinfo=BERLIN), "7")  # the day after

    status = budget_status(day, datetime(2026, 3, 29, 12, tzinfo=BERLIN))

    assert length(status) == timedelta(hours=23)
    assert status.spent == Decimal("0.300000001")
    assert status.api_calls == 3


@override_settings(TIME_ZONE="Europe/Berlin")
def test_a_day_with_the_autumn_dst_change_is_25_hours_and_its_spend_exact() -> None:
    day = budget(period="day")
    # 02:30 happens twice on 25 October 2026: both are in the day.
    first = datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN)
    second = datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=BERLIN)
    spend(first, "0.3")
    spend(second, "0.4")
    spend(datetime(2026, 10, 24, 23, 59, tzinfo=BERLIN), "9")

    status = budget_status(day, datetime(2026, 10, 25, 20, tzinfo=BERLIN))

    assert length(status) == timedelta(hours=25)
    assert status.spent == Decimal("0.7")


@override_settings(TIME_ZONE="America/New_York")
def test_a_month_starts_at_local_midnight_not_at_the_utc_day() -> None:
    month = budget(period="month")
    # 23:30 on 31 October in New York is 03:30 UTC on 1 November: October's.
    spend(datetime(2026, 10, 31, 23, 30, tzinfo=NEW_YORK), "1")
    spend(datetime(2026, 11, 1, 0, 0, tzinfo=NEW_YORK), "0.25")
    spend(datetime(2026, 11, 30, 23, 59, 59, tzinfo=NEW_YORK), "0.5")
    spend(datetime(2026, 12, 1, tzinfo=NEW_YORK), "3")

    november = budget_status(month, datetime(2026, 11, 15, tzinfo=NEW_YORK))
    october = budget_status(month, datetime(2026, 10, 15, tzinfo=NEW_YORK))

    assert november.spent == Decimal("0.75")
    assert october.spent == Decimal(1)
    # The UTC-day rollup puts October's last call into November: it cannot answer this.
    assert DailyUsage.objects.filter(day=datetime(2026, 11, 1).date()).get().cost_usd == Decimal(
        "1.25"
    )
    # November 2026 holds the end of DST in New York: 30 days and one hour.
    assert length(november) == timedelta(days=30, hours=1)


@override_settings(TIME_ZONE="Asia/Kolkata")
def test_a_half_hour_offset_day_begins_on_a_quarter_hour_bucket() -> None:
    day = budget(period="day")
    midnight = datetime(2026, 6, 10, tzinfo=KOLKATA)  # 18:30 UTC the day before
    spend(midnight - timedelta(seconds=1), "1")
    spend(midnight, "0.5")

    status = budget_status(day, midnight + timedelta(hours=1))

    assert status.period_start.astimezone(UTC) == datetime(2026, 6, 9, 18, 30, tzinfo=UTC)
    assert status.spent == Decimal("0.5")


def test_a_week_runs_from_monday_to_monday() -> None:
    start, end = period_bounds("week", datetime(2026, 11, 29, 12, tzinfo=UTC))  # a Sunday

    assert (start.date().isoformat(), end.date().isoformat()) == ("2026-11-23", "2026-11-30")


def test_every_time_zone_offset_is_a_whole_number_of_quarter_hours() -> None:
    # Why quarter-hour buckets make every local period exact (docs/DECISIONS.md).
    moments = [
        datetime(year, month, 15, tzinfo=UTC) for year in range(2000, 2041) for month in (1, 7)
    ]
    odd = [
        name
        for name in zoneinfo.available_timezones()
        for moment in moments
        if (offset := moment.astimezone(zoneinfo.ZoneInfo(name)).utcoffset())
        and offset % timedelta(minutes=15)
    ]
    assert odd == []


# --- spend ---------------------------------------------------------------------


def test_unpriced_calls_are_counted_apart_and_add_no_spend() -> None:
    now = datetime.now(UTC)
    fleet = budget(period="day")
    spend(now, "0.5")
    spend(now, None)

    status = budget_status(fleet, now)

    assert (status.spent, status.unpriced_calls, status.api_calls) == (Decimal("0.5"), 1, 2)


def test_reported_session_totals_count_as_spend() -> None:
    now = datetime.now(UTC)
    fleet = budget(period="day")
    services.session_upsert(key="r", fields={"agent": "zeph", "cost_usd": "1.5", "api_calls": 3})
    services.session_upsert(key="r", fields={"cost_usd": "2"})

    assert budget_status(fleet, now).spent == Decimal(2)


def test_a_replaced_last_message_moves_the_spend_by_the_difference() -> None:
    now = datetime.now(UTC)
    fleet = budget(period="day")
    spend(now, "3")
    services.messages_append(
        key="c", messages=[{"role": "assistant", "content": "a", "usage": {"cost_usd": "1"}}]
    )
    services.message_update_last(
        key="c", message={"role": "assistant", "content": "ab", "usage": {"cost_usd": "1.25"}}
    )

    assert budget_status(fleet, now).spent == Decimal("4.25")


def test_a_scope_counts_only_its_dimensions_and_project_exactly() -> None:
    now = datetime.now(UTC)
    spend(now, "1", agent="koda", model="o3", channel="cli", project="/a")
    spend(now, "2", agent="koda", model="gpt-4o", channel="tui", project="/a/b")
    spend(now, "4", agent="zeph", model="o3", channel="cli", project="/a")
    budgets = [
        budget(period="day"),
        budget(period="day", agent="koda"),
        budget(period="day", agent="koda", model="o3"),
        budget(period="day", channel="cli"),
        budget(period="day", project="/a"),
        budget(period="day", agent="nobody"),
    ]

    spent = [status.spent for status in budget_statuses(budgets, now)]

    assert spent == [Decimal(n) for n in (7, 3, 1, 5, 5, 0)]


def test_warning_exceeded_remaining_and_forecast() -> None:
    now = datetime(2026, 11, 10, 12, tzinfo=UTC)  # 12 hours into the day
    day = budget(period="day", amount_usd=Decimal(10), warning_percent=50)
    spend(now - timedelta(hours=1), "4.999999999")

    before = budget_status(day, now)
    spend(now, "0.000000001")
    at_warning = budget_status(day, now)
    spend(now, "5")
    exceeded = budget_status(day, now)

    assert (before.warning, before.exceeded, before.remaining) == (
        False,
        False,
        Decimal("5.000000001"),
    )
    assert before.forecast == Decimal("9.999999998")  # twice the half day's spend
    assert (at_warning.warning, at_warning.exceeded) == (True, False)
    assert (exceeded.exceeded, exceeded.remaining, exceeded.percent) == (True, Decimal(0), 100)


def test_the_forecast_early_in_a_period_counts_at_least_an_hour() -> None:
    start = datetime(2026, 11, 10, tzinfo=UTC)
    day = budget(period="day")
    spend(start, "1")

    status = budget_status(day, start + timedelta(minutes=1))

    assert status.forecast == Decimal(24)


def test_statuses_cost_one_query_whatever_the_number_of_budgets() -> None:
    now = datetime.now(UTC)
    spend(now, "1", project="/a")
    spend(now, "2", agent="zeph", project="/b")
    scopes: list[dict[str, str]] = [{}, {"agent": "koda"}, {"project": "/b"}, {"channel": "cli"}]
    budgets = [
        budget(period=("day", "week", "month")[n % 3], **scopes[n % len(scopes)]) for n in range(60)
    ]

    with CaptureQueriesContext(connection) as one:
        statuses = budget_statuses(budgets[:1], now)
    with CaptureQueriesContext(connection) as sixty:
        statuses = budget_statuses(budgets, now)

    assert (len(one), len(sixty)) == (1, 1)
    assert [s.spent for s in statuses[:4]] == [Decimal(3), Decimal(1), Decimal(2), Decimal(3)]


@override_settings(TIME_ZONE="Asia/Kolkata")
def test_spend_past_64_bits_of_nano_dollars_sums_exactly_from_every_span() -> None:
    now = datetime(2026, 11, 25, 16, tzinfo=UTC)
    month, day = budget(period="month"), budget(period="day")
    big = Decimal("999999999")  # 20 of them are past 2**63 nano-dollars

    def rows(span: str, starts: list[datetime]) -> None:
        BudgetUsage.objects.bulk_create(
            BudgetUsage(span=span, start=start, cost_usd=big) for start in starts
        )

    rows("day", [datetime(2026, 11, 5 + n, tzinfo=UTC) for n in range(20)])
    # The local day is 18:30 to 18:30 UTC: 23 whole hours and two half hours.
    rows("hour", [now - timedelta(hours=n) for n in range(20)])
    rows(
        "quarter",
        [
            datetime(2026, 11, 24, 18, 30, tzinfo=UTC) + timedelta(minutes=15 * n)
            for n in (0, 1, 94, 95)
        ],
    )

    assert [s.spent for s in budget_statuses([month, day], now)] == [big * 20, big * 24]


def test_a_period_is_tiled_by_days_then_hours_then_quarter_hours() -> None:
    start = datetime(2026, 11, 1, 4, 30, tzinfo=UTC)
    end = datetime(2026, 12, 1, 5, 45, tzinfo=UTC)

    pieces = sorted(period_pieces(start, end), key=lambda piece: piece[1])

    utc = lambda *parts: datetime(*parts, tzinfo=UTC)  # noqa: E731
    assert pieces == [
        ("quarter", utc(2026, 11, 1, 4, 30), utc(2026, 11, 1, 5)),
        ("hour", utc(2026, 11, 1, 5), utc(2026, 11, 2)),
        ("day", utc(2026, 11, 2), utc(2026, 12, 1)),
        ("hour", utc(2026, 12, 1), utc(2026, 12, 1, 5)),
        ("quarter", utc(2026, 12, 1, 5), utc(2026, 12, 1, 5, 45)),
    ]
    assert period_pieces(utc(2026, 11, 1), utc(2026, 11, 8)) == [
        ("day", utc(2026, 11, 1), utc(2026, 11, 8))
    ]


def test_a_month_reads_whole_utc_days_from_day_rows_and_its_edges_from_quarter_hours() -> None:
    # Written through the services: both spans move together; in New York the
    # month's first and last local hours are quarter-hour rows of UTC days
    # that straddle the month's edges.
    with override_settings(TIME_ZONE="America/New_York"):
        month = budget(period="month")
        for at, cost in [
            (datetime(2026, 11, 1, 0, 0, tzinfo=NEW_YORK), "1"),  # 04:00 UTC
            (datetime(2026, 10, 31, 23, 59, tzinfo=NEW_YORK), "100"),  # same UTC day, October
            (datetime(2026, 11, 15, 12, tzinfo=NEW_YORK), "0.5"),  # a whole UTC day
            (datetime(2026, 11, 30, 23, 59, tzinfo=NEW_YORK), "0.25"),  # 04:59 UTC, 1 December
            (datetime(2026, 12, 1, 0, 0, tzinfo=NEW_YORK), "1000"),  # 05:00 UTC, December
        ]:
            spend(at, cost)

        with CaptureQueriesContext(connection) as queries:
            status = budget_status(month, datetime(2026, 11, 20, tzinfo=NEW_YORK))

    assert status.spent == Decimal("1.75")
    assert len(queries) == 1


# --- which budgets apply -------------------------------------------------------


def test_budgets_applying_match_blank_or_equal_and_omitted_dimensions_match_all() -> None:
    fleet = budget(name="fleet")
    koda = budget(name="koda", agent="koda")
    koda_o3 = budget(name="koda-o3", agent="koda", model="o3")
    zeph = budget(name="zeph", agent="zeph")
    project = budget(name="project", project="/a")

    def names(**dims: str) -> list[str]:
        return [b.name for b in budgets_applying(**dims)]

    assert names(agent="koda", model="o3", project="/a") == ["fleet", "koda", "koda-o3", "project"]
    assert names(agent="koda", model="gpt-4o", project="/b") == ["fleet", "koda"]
    assert names(agent="koda") == ["fleet", "koda", "koda-o3", "project"]
    assert names() == sorted(b.name for b in (fleet, koda, koda_o3, zeph, project))


def test_a_scoped_key_sees_its_agents_budgets_and_those_naming_no_agent() -> None:
    budget(name="fleet")
    budget(name="koda", agent="koda")
    budget(name="zeph", agent="zeph")
    budget(name="cli", channel="cli")

    seen = [b.name for b in visible_budgets(KeyScope(agents=("koda",)))]

    assert seen == ["cli", "fleet", "koda"]


# --- validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("agent", "ko\nda"), ("model", " o3"), ("project", "/a\x00"), ("channel", "fax")],
)
def test_a_scope_value_no_usage_can_carry_is_refused(field: str, value: str) -> None:
    candidate = Budget(name="b", amount_usd=Decimal(1), **{field: value})

    with pytest.raises(ValidationError) as refused:
        candidate.full_clean()

    assert field in refused.value.message_dict


@pytest.mark.parametrize(
    ("field", "value"), [("amount_usd", "0"), ("amount_usd", "-1"), ("warning_percent", 0)]
)
def test_a_budget_needs_a_positive_amount_and_a_warning_share(field: str, value: Any) -> None:
    candidate = Budget(name="b", amount_usd=Decimal(1))
    setattr(candidate, field, value)

    with pytest.raises(ValidationError):
        candidate.full_clean()


def test_the_spend_is_grouped_only_by_the_dimensions_the_budgets_name() -> None:
    now = datetime.now(UTC)
    for n in range(4):
        spend(now, "1", agent="koda", model=f"m{n}", channel="cli", project=f"/p{n}")
    spend(now, "2", agent="zeph", model="m0", channel="tui", project="/p0")
    budgets = [budget(period="day"), budget(period="month", agent="koda")]

    with CaptureQueriesContext(connection) as read:
        statuses = budget_statuses(budgets, now)

    assert [s.spent for s in statuses] == [Decimal(6), Decimal(4)]
    selected = read.captured_queries[0]["sql"].split(" FROM ")[0]
    assert '"agent"' in selected
    assert not any(name in selected for name in ('"model"', '"channel"', '"project_key"'))
