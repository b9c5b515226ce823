"""sessions.fleet_stats: the fleet's header numbers, breakdowns and version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from sessions import services
from sessions.fleet_stats import breakdowns, daily_rows, fleet_totals, fleet_version
from sessions.models import DailyUsage, MinuteUsage, Session
from sessions.rollups import utc_minute

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def used(cost: str | None, prompt: int = 10, completion: int = 5) -> dict:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    return usage if cost is None else {**usage, "cost_usd": cost}


def test_it_counts_sessions_by_status_running_stuck_stale_and_today(settings) -> None:
    settings.FLEET_STUCK_AFTER = 600
    settings.FLEET_STALE_AFTER = 1800
    services.session_upsert(key="running-new", fields={"state": "running"}, now=NOW)
    services.session_upsert(
        key="running-stuck", fields={"state": "running"}, now=NOW - timedelta(minutes=20)
    )
    services.session_upsert(key="stale", now=NOW - timedelta(hours=1))
    services.session_upsert(key="done", fields={"status": "completed"}, now=NOW)
    services.session_upsert(key="lost", fields={"status": "failed"}, now=NOW)
    services.session_upsert(key="yesterday", now=NOW - timedelta(days=1))
    Session.objects.filter(key="yesterday").update(last_active_at=NOW)

    sessions = fleet_totals(now=NOW)["sessions"]

    assert sessions["total"] == 6
    assert sessions["by_status"] == {
        "active": 4,
        "completed": 1,
        "failed": 1,
        "cancelled": 0,
        "unknown": 0,
    }
    assert sessions["active"] == 4
    assert sessions["running"] == 2
    assert sessions["stuck"] == 1
    # running-stuck is also silent for 20 minutes: not yet stale at 30.
    assert sessions["stale"] == 1
    assert sessions["today"] == 5


def test_period_usage_reads_the_daily_rollup_by_utc_day() -> None:
    today = NOW.date()
    for days_back, cost in [(0, "1"), (6, "2"), (7, "4"), (29, "8"), (30, "16")]:
        DailyUsage.objects.create(
            day=today - timedelta(days=days_back),
            agent="a",
            prompt_tokens=days_back + 1,
            completion_tokens=1,
            api_calls=1,
            unpriced_calls=days_back % 2,
            cost_usd=Decimal(cost),
        )

    usage = fleet_totals(now=NOW)["usage"]

    assert usage["today"]["cost_usd"] == Decimal(1)
    assert usage["last_7_days"]["cost_usd"] == Decimal(3)
    assert usage["last_30_days"]["cost_usd"] == Decimal(15)
    assert usage["all_time"]["cost_usd"] == Decimal(31)
    assert usage["all_time"]["api_calls"] == 5
    assert usage["all_time"]["unpriced_calls"] == 2
    assert usage["today"]["total_tokens"] == 2
    assert usage["last_7_days"]["prompt_tokens"] == 1 + 7


def test_an_empty_store_gives_zeros_not_none() -> None:
    totals = fleet_totals(now=NOW)

    assert totals["sessions"]["total"] == 0
    assert totals["usage"]["all_time"]["cost_usd"] == Decimal(0)
    assert totals["usage"]["today"]["prompt_tokens"] == 0
    assert totals["burn_rate"]["cost_usd"] == Decimal(0)
    assert totals["burn_rate"]["total_tokens"] == 0


def test_usage_survives_deleting_the_sessions() -> None:
    services.messages_append(
        key="s", messages=[{"role": "assistant", "content": "a", "usage": used("0.5")}], now=NOW
    )
    services.session_delete(key="s", now=NOW)

    assert fleet_totals(now=NOW)["usage"]["today"]["cost_usd"] == Decimal("0.5")


def live_now() -> datetime:
    """Half past the current real minute: the minute rollup keeps only recent usage."""
    return utc_minute(timezone.now()) + timedelta(seconds=30)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_the_burn_rate_is_the_cost_of_the_last_hours_messages() -> None:
    now = live_now()
    services.messages_append(
        key="busy",
        messages=[
            {
                "role": "assistant",
                "content": "old",
                "usage": used("5"),
                "created_at": iso(now - timedelta(hours=2)),
            },
            {
                "role": "assistant",
                "content": "new",
                "usage": used("0.25", 100, 20),
                "created_at": iso(now - timedelta(minutes=30)),
            },
            {"role": "assistant", "content": "newer", "usage": used("0.5", 10, 2)},
        ],
        now=now,
    )
    services.messages_append(
        key="quiet",
        messages=[{"role": "assistant", "content": "x", "usage": used("9")}],
        now=now - timedelta(hours=3),
    )

    burn = fleet_totals(now=now)["burn_rate"]

    assert burn["cost_usd"] == Decimal("0.75")
    assert burn["api_calls"] == 2
    assert burn["total_tokens"] == 132
    assert burn["window_seconds"] == 3600


def test_the_burn_window_is_the_current_minute_and_the_59_before_it() -> None:
    now = live_now()
    minute = utc_minute(now)
    services.messages_append(
        key="edges",
        messages=[
            {"role": "assistant", "content": "out", "usage": used("1"), "created_at": iso(at)}
            for at in (
                minute - timedelta(minutes=60, seconds=1),
                minute - timedelta(minutes=59, seconds=1),
            )
        ]
        + [
            {"role": "assistant", "content": "in", "usage": used("0.5"), "created_at": iso(at)}
            for at in (minute - timedelta(minutes=59), now - timedelta(seconds=1))
        ],
        now=now,
    )

    assert fleet_totals(now=now)["burn_rate"]["cost_usd"] == Decimal(1)


def test_the_burn_rate_follows_corrections_and_counts_unpriced_calls() -> None:
    now = live_now()
    services.messages_append(
        key="s",
        messages=[
            {"role": "assistant", "content": "a", "usage": used("0.5")},
            {"role": "assistant", "content": "b", "model": "no-such-model", "usage": used(None)},
            {"role": "assistant", "content": "c", "usage": used("2")},
        ],
        now=now,
    )
    assert fleet_totals(now=now)["burn_rate"]["cost_usd"] == Decimal("2.5")

    services.message_update_last(key="s", message={"usage": used("0.25")}, now=now)
    burn = fleet_totals(now=now)["burn_rate"]
    assert burn["cost_usd"] == Decimal("0.75")
    assert burn["api_calls"] == 3
    assert burn["unpriced_calls"] == 1

    services.message_remove_last(key="s", now=now)
    burn = fleet_totals(now=now)["burn_rate"]
    assert (burn["cost_usd"], burn["api_calls"], burn["total_tokens"]) == (Decimal("0.5"), 2, 30)


def test_writes_dated_in_the_past_leave_the_minute_rollup_alone() -> None:
    # The demo generator and imports write history "as of" its own time.
    services.messages_append(
        key="demo", messages=[{"role": "assistant", "content": "a", "usage": used("1")}], now=NOW
    )

    assert not MinuteUsage.objects.exists()
    assert fleet_totals(now=NOW)["burn_rate"]["cost_usd"] == Decimal(0)


def test_importing_history_leaves_the_minute_rollup_alone() -> None:
    services.messages_append(
        key="imported",
        messages=[
            {
                "role": "assistant",
                "content": "last week",
                "usage": used("3"),
                "created_at": "2026-11-14T12:00:00Z",
            }
        ],
        now=NOW,
    )

    assert not MinuteUsage.objects.exists()
    assert DailyUsage.objects.get(day="2026-11-14").cost_usd == Decimal(3)


def test_the_query_count_does_not_grow_with_the_data(django_assert_max_num_queries) -> None:
    def fill(count: int) -> None:
        for index in range(count):
            services.messages_append(
                key=f"s{index}-{count}",
                messages=[{"role": "assistant", "content": "a", "usage": used("0.1")}],
                session={"agent": f"agent-{index % 3}", "state": "running"},
            )

    fill(2)
    with django_assert_max_num_queries(3):
        fleet_totals()
    fill(30)
    with django_assert_max_num_queries(3):
        totals = fleet_totals()
    assert totals["sessions"]["running"] == 32


def test_a_long_turn_that_keeps_writing_counts_as_stuck(settings) -> None:
    # One stuck rule (docs/DECISIONS.md): reconcile marks only the silent ones.
    settings.FLEET_STUCK_AFTER = 600
    services.session_upsert(
        key="busy", fields={"state": "running"}, now=NOW - timedelta(minutes=20)
    )
    Session.objects.filter(key="busy").update(last_active_at=NOW)

    assert fleet_totals(now=NOW)["sessions"]["stuck"] == 1


def test_the_stuck_count_is_the_stuck_filters_count_at_its_edges(settings) -> None:
    # The header counts the stuck as the running minus the fresh turns: the
    # same sessions as the stuck rule, turns started on the cutoff, just after
    # it, in the future or never recorded (an admin edit) included.
    settings.FLEET_STUCK_AFTER = 600
    cutoff = NOW - timedelta(seconds=600)
    starts = {
        "on-cutoff": cutoff,
        "just-after": cutoff + timedelta(microseconds=1),
        "just-before": cutoff - timedelta(microseconds=1),
        "future": NOW + timedelta(hours=1),
        "no-start": None,
    }
    for key in starts:
        services.session_upsert(key=key, fields={"state": "running"}, now=cutoff)
    services.session_upsert(key="idle", now=NOW - timedelta(hours=1))
    for key, started in starts.items():
        Session.objects.filter(key=key).update(turn_started_at=started)

    sessions = fleet_totals(now=NOW)["sessions"]

    assert sessions["running"] == 5
    assert sessions["stuck"] == Session.objects.stuck(NOW).count() == 2


def test_breakdowns_carry_the_stored_value_and_leave_naming_it_to_the_dashboard() -> None:
    for agent, channel, cost in [("", "", "1"), ("alpha", "slack", "2")]:
        DailyUsage.objects.create(
            day=NOW.date(),
            agent=agent,
            model="m",
            channel=channel,
            cost_usd=Decimal(cost),
            api_calls=1,
        )

    by_model, by_agent, by_channel = breakdowns(NOW)

    assert [(u.key, u.cost_usd) for u in by_agent.rows] == [("alpha", Decimal(2)), ("", Decimal(1))]
    assert [u.key for u in by_channel.rows] == ["slack", ""]
    assert [(u.key, u.api_calls) for u in by_model.rows] == [("m", 2)]


def test_the_fleet_version_moves_when_a_session_is_written() -> None:
    before = fleet_version(NOW)
    services.session_upsert(key="new", now=NOW)

    assert fleet_version(NOW) != before


def test_stale_counts_the_active_silent_at_the_threshold_whatever_else_is_active(
    settings,
) -> None:
    # The header counts the active sessions with recent activity and takes
    # them from the active: the two rules must split the active exactly.
    settings.FLEET_STALE_AFTER = 1800
    services.session_upsert(key="at", now=NOW - timedelta(seconds=1800))
    services.session_upsert(key="just-after", now=NOW - timedelta(seconds=1799))
    services.session_upsert(key="old", now=NOW - timedelta(days=3))
    services.session_upsert(key="ended", fields={"status": "failed"}, now=NOW - timedelta(days=3))

    counts = fleet_totals(now=NOW)["sessions"]

    assert (counts["active"], counts["stale"]) == (3, 2)
    assert counts["stale"] == Session.objects.stale(NOW).count()


def test_totals_charts_and_breakdowns_sum_past_64_bits_exactly() -> None:
    # 20 rows of 999 999 999 USD: past 2**63 nano-dollars, and tokens likewise.
    big_cost, big_tokens = Decimal("999999999"), 9 * 10**17
    for n in range(20):
        DailyUsage.objects.create(
            day=NOW.date() - timedelta(days=n % 3),
            agent=f"agent-{n}",
            model="o3",
            channel="cli",
            api_calls=1,
            cost_usd=big_cost,
            prompt_tokens=big_tokens,
        )

    start, rows = daily_rows(NOW)
    by_model = breakdowns(NOW)[0].rows[0]

    assert start == NOW.date() - timedelta(days=29)
    assert [row["day"] for row in rows] == [NOW.date() - timedelta(days=d) for d in (2, 1, 0)]
    assert sum(row["cost"] for row in rows) == by_model.cost_usd == big_cost * 20
    assert sum(row["prompt_tokens"] for row in rows) == by_model.prompt_tokens == big_tokens * 20
    usage = fleet_totals(NOW)["usage"]
    assert usage["all_time"]["cost_usd"] == usage["last_7_days"]["cost_usd"] == big_cost * 20
    assert usage["today"]["prompt_tokens"] == big_tokens * 7
    scoped = fleet_totals(NOW, agents=["agent-0", "agent-3", "nobody"])["usage"]["all_time"]
    assert scoped["cost_usd"] == big_cost * 2
