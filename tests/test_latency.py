"""Latency: the fixed buckets (``sessions.latency``), the latency rollup kept with
the writes (``sessions.rollups``, ``sessions.services``) and the percentiles read
from it (``sessions.fleet_stats.latency_summary``)."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessions import services
from sessions.bounds import MAX_DURATION_MS
from sessions.fleet_stats import PERIODS, latency_summary, page_latency
from sessions.latency import (
    BUCKET_LOWER,
    BUCKET_UPPER,
    RATIO,
    bucket_of,
    cumulative,
    percentile,
)
from sessions.models import FleetLatencyUsage, LatencyUsage, Message, Session

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = T0.date()


def nearest_rank(values: list[int], fraction: float) -> int:
    """The percentile of the raw durations, by the nearest-rank definition."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered) - 1e-9)) - 1]


def histogram(values: list[int]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for value in values:
        counts[bucket_of(value)] = counts.get(bucket_of(value), 0) + 1
    return counts


def assert_within_precision(answer: int | None, true: int) -> None:
    assert answer is not None
    assert true <= answer <= true * RATIO, (answer, true)


# --- the buckets ---------------------------------------------------------------


def test_the_buckets_are_fixed_contiguous_and_each_within_the_ratio() -> None:
    # A rollup row's bucket is an index into these: the layout must never change.
    assert len(BUCKET_UPPER) == 213
    assert BUCKET_UPPER[:14] == (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15)
    assert BUCKET_UPPER[-1] == MAX_DURATION_MS
    for index in range(1, len(BUCKET_UPPER)):
        assert BUCKET_LOWER[index] == BUCKET_UPPER[index - 1] + 1
        assert BUCKET_UPPER[index] <= BUCKET_LOWER[index] * RATIO


@pytest.mark.parametrize("value", [0, 1, 11, 12, 13, 999, 1000, 65_432, MAX_DURATION_MS])
def test_a_duration_falls_in_the_bucket_whose_bounds_hold_it(value: int) -> None:
    bucket = bucket_of(value)

    assert BUCKET_LOWER[bucket] <= value <= BUCKET_UPPER[bucket]


def test_a_duration_past_the_bound_counts_in_the_last_bucket() -> None:
    assert bucket_of(MAX_DURATION_MS * 10) == len(BUCKET_UPPER) - 1


def test_an_empty_histogram_has_no_percentile() -> None:
    assert percentile({}, 0.5) is None


def test_the_cumulative_series_ends_at_the_count() -> None:
    counts = histogram([5, 5, 100, 2000])

    series = list(cumulative(counts))

    assert series == [(5, 2), (BUCKET_UPPER[bucket_of(100)], 3), (BUCKET_UPPER[bucket_of(2000)], 4)]


@given(
    st.lists(st.integers(min_value=0, max_value=MAX_DURATION_MS), min_size=1, max_size=300),
    st.sampled_from([0.01, 0.5, 0.9, 0.95, 0.99, 1.0]),
)
def test_a_histograms_percentile_is_the_raw_percentile_within_one_bucket_ratio(
    values: list[int], fraction: float
) -> None:
    assert_within_precision(percentile(histogram(values), fraction), nearest_rank(values, fraction))


# --- the rollup, kept with the writes -------------------------------------------


def call(duration: int | None, *, ttft: int | None = None, model: str = "m1") -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": "done",
        "model": model,
        "duration_ms": duration,
        "time_to_first_token_ms": ttft,
    }


def tool(name: str, duration: int | None, call_id: str = "c1") -> dict[str, Any]:
    return {
        "role": "tool",
        "content": "ok",
        "name": name,
        "tool_call_id": call_id,
        "duration_ms": duration,
    }


def append(key: str, *messages: dict[str, Any], agent: str = "bot") -> None:
    services.messages_append(key=key, messages=list(messages), session={"agent": agent}, now=T0)


def rows() -> list[tuple[Any, ...]]:
    # Every write that moves the latency rollup moves its fleet-wide copy alike.
    assert fleet_rows() == summed_over_agents()
    return sorted(
        LatencyUsage.objects.filter(count__gt=0).values_list(
            "day", "agent", "model", "kind", "name", "bucket", "count", "sum_ms"
        )
    )


def fleet_rows() -> list[tuple[Any, ...]]:
    return sorted(
        FleetLatencyUsage.objects.filter(count__gt=0).values_list(
            "day", "kind", "model", "name", "bucket", "count", "sum_ms"
        )
    )


def summed_over_agents() -> list[tuple[Any, ...]]:
    """``LatencyUsage`` summed over agents (and over models for tool runs and
    turns): what ``FleetLatencyUsage`` must hold."""
    sums: dict[tuple[Any, ...], tuple[int, int]] = {}
    for day, model, kind, name, bucket, count, sum_ms in LatencyUsage.objects.values_list(
        "day", "model", "kind", "name", "bucket", "count", "sum_ms"
    ):
        key = (day, kind, model if kind in ("call", "ttft") else "", name, bucket)
        before = sums.get(key, (0, 0))
        sums[key] = (before[0] + count, before[1] + sum_ms)
    return sorted((*key, count, sum_ms) for key, (count, sum_ms) in sums.items() if count > 0)


def summary(kind: str, by: tuple[str, ...] = ("model",), **kwargs: Any) -> dict[Any, Any]:
    return latency_summary(DAY, DAY, kind=kind, by=by, **kwargs)


@pytest.mark.django_db
def test_an_append_counts_calls_tools_and_times_to_first_token_by_day_agent_and_model() -> None:
    append("s1", call(1200, ttft=300), tool("grep", 40), tool("grep", 60, "c2"), call(None))

    # A tool message names no model: its run counts under the session's (none here).
    assert rows() == [
        (DAY, "bot", "", "tool", "grep", bucket_of(40), 1, 40),
        (DAY, "bot", "", "tool", "grep", bucket_of(60), 1, 60),
        (DAY, "bot", "m1", "call", "", bucket_of(1200), 1, 1200),
        (DAY, "bot", "m1", "ttft", "", bucket_of(300), 1, 300),
    ]
    tools = summary("tool", by=("name",))
    assert tools[("grep",)]["count"] == 2
    assert tools[("grep",)]["mean_ms"] == 50.0


@pytest.mark.django_db
def test_the_fleet_wide_rollup_counts_calls_by_model_and_tools_by_name_over_every_agent() -> None:
    append("s1", call(1200, ttft=300), tool("grep", 40), agent="a")
    services.messages_append(
        key="s2",
        messages=[call(1200, model="m2"), tool("grep", 40)],
        session={"agent": "b", "model": "m2"},
        now=T0,
    )
    services.session_upsert(key="s2", fields={"state": "running"}, now=T0)
    services.session_upsert(key="s2", fields={"state": "idle"}, now=T0 + timedelta(seconds=3))

    assert fleet_rows() == [
        (DAY, "call", "m1", "", bucket_of(1200), 1, 1200),
        (DAY, "call", "m2", "", bucket_of(1200), 1, 1200),
        # Tool runs of both agents and both sessions' models: one row per tool.
        (DAY, "tool", "", "grep", bucket_of(40), 2, 80),
        (DAY, "ttft", "m1", "", bucket_of(300), 1, 300),
        (DAY, "turn", "", "", bucket_of(3000), 1, 3000),
    ]
    assert fleet_rows() == summed_over_agents()


@pytest.mark.django_db
def test_a_duration_on_a_user_message_is_stored_but_rolled_up_nowhere() -> None:
    append("s1", {"role": "user", "content": "q", "duration_ms": 5})

    assert Message.objects.get().duration_ms == 5
    assert rows() == []


@pytest.mark.django_db
def test_update_last_moves_the_latency_rollup_by_the_difference() -> None:
    append("s1", call(None))
    services.message_update_last(key="s1", message={"duration_ms": 900}, now=T0)
    services.message_update_last(key="s1", message={"duration_ms": 1500}, now=T0)

    assert rows() == [(DAY, "bot", "m1", "call", "", bucket_of(1500), 1, 1500)]

    services.message_update_last(key="s1", message={"duration_ms": None}, now=T0)

    assert rows() == []


@pytest.mark.django_db
def test_update_last_changing_the_model_moves_the_duration_to_the_new_model() -> None:
    append("s1", call(700))

    services.message_update_last(key="s1", message={"model": "m2"}, now=T0)

    assert [(row[2], row[6]) for row in rows()] == [("m2", 1)]


@pytest.mark.django_db
def test_remove_last_takes_its_duration_out_of_the_rollup() -> None:
    append("s1", call(700), tool("grep", 30))

    services.message_remove_last(key="s1", now=T0)

    assert [row[3] for row in rows()] == ["call"]


@pytest.mark.django_db
def test_an_admin_edit_of_a_duration_moves_the_rollup() -> None:
    append("s1", call(700))
    message = Message.objects.get()
    message.duration_ms = 80

    services.message_save_correction(message=message)

    assert rows() == [(DAY, "bot", "m1", "call", "", bucket_of(80), 1, 80)]


@pytest.mark.django_db
def test_clearing_and_compacting_keep_the_latency_history() -> None:
    append("s1", call(700), call(800))
    before = rows()

    services.session_compact(key="s1", summary="so far", keep=1, now=T0)
    services.messages_clear(key="s1", now=T0)

    assert rows() == before


@pytest.mark.django_db
def test_the_summary_reads_only_the_days_and_agents_asked_for() -> None:
    append("s1", call(100), agent="a")
    services.messages_append(
        key="s2", messages=[call(5000)], session={"agent": "b"}, now=T0 + timedelta(days=1)
    )

    assert summary("call")[("m1",)]["count"] == 1
    assert summary("call", agents=["b"]) == {}
    everything = latency_summary(None, DAY + timedelta(days=1), kind="call", by=())
    assert everything[()]["count"] == 2


# --- the property: percentiles from the rollup equal the raw ones ----------------


@pytest.mark.django_db
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.integers(min_value=0, max_value=MAX_DURATION_MS)
        | st.integers(min_value=0, max_value=5000),
        min_size=1,
        max_size=120,
    )
)
def test_percentiles_from_the_rollup_equal_the_raw_ones_within_the_bucket_precision(
    durations: list[int],
) -> None:
    Session.objects.all().delete()
    LatencyUsage.objects.all().delete()
    FleetLatencyUsage.objects.all().delete()
    services.messages_append_all(
        key="p", messages=[call(duration) for duration in durations], now=T0
    )
    raw = list(Message.objects.values_list("duration_ms", flat=True))

    found = summary("call", by=())[()]
    # The fleet page reads the same from the rollup without the agent.
    (on_page,) = page_latency(T0, "today")[0]["models"]

    for answer in (found, on_page):
        assert answer["count"] == len(raw)
        assert answer["mean_ms"] == round(sum(durations) / len(durations), 1)
        for name, fraction in (("p50_ms", 0.5), ("p95_ms", 0.95), ("p99_ms", 0.99)):
            assert_within_precision(answer[name], nearest_rank(raw, fraction))


@pytest.mark.django_db
def test_percentiles_survive_random_corrections_within_the_bucket_precision() -> None:
    # A seeded walk of appends, updates and removals: the rollup follows the
    # messages stored now, whatever the order of corrections.
    chance = random.Random(17)
    for step in range(60):
        action = chance.random()
        duration = chance.choice([None, chance.randint(0, 200), chance.randint(0, 10**6)])
        if action < 0.6 or not Message.objects.exists():
            append("s", call(duration, model=chance.choice(["m1", "m2"])))
        elif action < 0.85:
            services.message_update_last(key="s", message={"duration_ms": duration}, now=T0)
        else:
            services.message_remove_last(key="s", now=T0)
        if step % 10 == 9:
            assert fleet_rows() == summed_over_agents()
            for model in ("m1", "m2"):
                raw = [
                    d
                    for d in Message.objects.filter(model=model).values_list(
                        "duration_ms", flat=True
                    )
                    if d is not None
                ]
                found = summary("call").get((model,))
                if not raw:
                    assert found is None
                    continue
                assert found is not None
                assert found["count"] == len(raw)
                assert_within_precision(found["p95_ms"], nearest_rank(raw, 0.95))


def timed(day: Any, agent: str, kind: str, duration_ms: int, *, times: int = 1, **key: str) -> None:
    """Count ``times`` durations through the rollup's one write path."""
    from sessions.rollups import Rollup

    rollup = Rollup()
    at = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    for _ in range(times):
        rollup.add_latency(at=at, agent=agent, kind=kind, duration_ms=duration_ms, **key)
    rollup.apply()


@pytest.mark.django_db
def test_fleet_latency_reads_rows_bounded_by_what_is_timed_not_by_the_days() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from sessions.fleet_stats import fleet_latency

    now = timezone.now()
    today = now.astimezone(UTC).date()
    for days_back in range(90):
        day = today - timedelta(days=days_back)
        timed(day, f"a{days_back % 3}", "call", 500, times=2, model="o3")

    with CaptureQueriesContext(connection) as queries:
        latency = fleet_latency(now)

    (query,) = queries.captured_queries
    with connection.cursor() as cursor:
        cursor.execute(query["sql"])
        returned = cursor.fetchall()
    # One row per period window (today, 7, 30 days, older), not one per day.
    assert len(returned) == 4
    counts = {period: latency[period]["models"][0]["count"] for period in PERIODS}
    assert counts == {"today": 2, "last_7_days": 14, "last_30_days": 60, "all_time": 180}
    # A key scoped to agents reads theirs only.
    scoped = fleet_latency(now, agents=["a0"])
    assert scoped["all_time"]["models"][0]["count"] == 60


@pytest.mark.django_db
def test_the_fleet_pages_latency_reads_rows_bounded_by_models_and_tools_not_by_agents() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    now = timezone.now()
    today = now.astimezone(UTC).date()
    for agent in range(40):
        timed(today, f"agent-{agent}", "call", 900, model="o3")
        timed(today, f"agent-{agent}", "tool", 40, model=f"model-{agent}", name="grep")

    with CaptureQueriesContext(connection) as queries:
        latency, days = page_latency(now, "last_30_days")

    (query,) = queries.captured_queries
    # Its one query reads the rollup without the agent: one row per day, kind,
    # model or tool and bucket, whatever the number of agents.
    assert LatencyUsage._meta.db_table not in query["sql"]
    assert FleetLatencyUsage._meta.db_table in query["sql"]
    assert FleetLatencyUsage.objects.count() == 2
    assert [(m["model"], m["count"]) for m in latency["models"]] == [("o3", 40)]
    assert [(t["name"], t["count"]) for t in latency["tools"]] == [("grep", 40)]
    assert days[today][0] == {bucket_of(900): 40}


@pytest.mark.django_db
def test_fleet_latency_of_some_periods_reads_only_their_days() -> None:
    from django.utils import timezone

    from sessions.fleet_stats import fleet_latency

    now = timezone.now()
    today = now.astimezone(UTC).date()
    for days_back, ms in ((0, 100), (3, 5000), (40, 60_000)):
        timed(today - timedelta(days=days_back), "", "tool", ms, model="o3", name="bash")

    latency = fleet_latency(now, periods=["last_7_days"])

    assert set(latency) == {"bucket_ratio", "last_7_days"}
    ((tool,),) = [latency["last_7_days"]["tools"]]
    assert (tool["name"], tool["count"], tool["p95_ms"]) == (
        "bash",
        2,
        BUCKET_UPPER[bucket_of(5000)],
    )


@pytest.mark.django_db
def test_the_fleet_pages_latency_aggregates_its_indexes_in_order_on_sqlite() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's plan: PostgreSQL chooses by its statistics")
    now = timezone.now()
    timed(now.date(), "a", "call", 900, model="o3")
    with CaptureQueriesContext(connection) as queries:
        page_latency(now, "last_30_days")
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + queries.captured_queries[0]["sql"])
        plan = [row[-1] for row in cursor.fetchall()]

    # The panels and the chart each read one covering index, in its order: no
    # sort of the rows, no table row.
    assert plan == [
        "COMPOUND QUERY",
        "LEFT-MOST SUBQUERY",
        "SCAN agent_sessions_fleetlatencyusage USING COVERING INDEX fleetlatencyusage_panel_idx",
        "UNION ALL",
        "SEARCH agent_sessions_fleetlatencyusage USING COVERING INDEX fleetlatencyusage_chart_idx"
        " (kind=? AND day>?)",
    ]
