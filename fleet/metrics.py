"""The fleet's numbers as Prometheus metrics, read from the database when collected.

``/metrics`` (fleet/views/health.py) registers one ``FleetCollector`` per
scrape: nothing is counted in the process.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from datetime import datetime
from itertools import accumulate
from typing import Any

from django.conf import settings
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from sessions import fleet_stats, selectors
from sessions.choices import TOKEN_FIELDS, State, Status
from sessions.latency import BUCKET_UPPER
from sessions.models import DailyUsage, FleetLatencyUsage, Session
from sessions.money import from_nanos
from sessions.sql import count_of, exact_sums, exact_total, exact_totals, scalars


class FleetCollector(Collector):
    """The fleet's numbers, read from the database when collected.

    Gauges: the fleet page's session counts (``fleet_stats._session_counts``),
    active sessions in error (an index range) and the messages stored
    (``selectors.messages_stored``), never an aggregate over every session;
    counters from the daily rollups, which purges keep, so they only grow
    (corrections of recorded usage can lower them a little).
    """

    def __init__(self, now: datetime) -> None:
        self.now = now

    def collect(self) -> Iterator[Metric]:
        yield from self._sessions()
        yield from self._usage()
        yield from self._latency()

    def _sessions(self) -> Iterator[Metric]:
        # The fleet page's header counts (by status, running, stuck, stale),
        # read as cheaply as that page reads them; never an aggregate over
        # every session row.
        counts = fleet_stats._session_counts(self.now, None)
        by_state = _active_by_state(counts)
        stored, _ = selectors.messages_stored()
        by_status = GaugeMetricFamily(
            "fleet_sessions", "Sessions stored, by status.", labels=["status"]
        )
        for status in Status.values:
            by_status.add_metric([status], counts["by_status"][status])
        yield by_status
        active = GaugeMetricFamily(
            "fleet_active_sessions", "Active sessions, by turn state.", labels=["state"]
        )
        for state in State.values:
            active.add_metric([state], by_state[state])
        yield active
        yield GaugeMetricFamily(
            "fleet_sessions_stuck",
            f"Active sessions whose running turn started over {settings.FLEET_STUCK_AFTER}s ago.",
            value=counts["stuck"],
        )
        yield GaugeMetricFamily(
            "fleet_sessions_stale",
            f"Active sessions silent for over {settings.FLEET_STALE_AFTER}s.",
            value=counts["stale"],
        )
        yield GaugeMetricFamily(
            "fleet_messages_stored",
            "Messages stored now (purges lower it); past "
            f"{selectors.MESSAGES_COUNTED_UP_TO}, PostgreSQL's estimate from its statistics.",
            value=stored,
        )

    def _usage(self) -> Iterator[Metric]:
        counters = (
            "sessions_started",
            "message_count",
            "api_calls",
            "unpriced_calls",
            "cost_usd",
            *TOKEN_FIELDS,
        )
        # Exact sums: the rollup's rows can add up past 64 bits.
        found = (
            DailyUsage.objects.values("agent", "model")
            .annotate(**exact_sums(*counters))
            .order_by("agent", "model")
        )
        labels = ["agent", "model"]
        sessions = CounterMetricFamily(
            "fleet_sessions_started", "Sessions started (kept by purge).", labels=labels
        )
        messages = CounterMetricFamily(
            "fleet_messages", "Messages ingested (kept by purge).", labels=labels
        )
        api_calls = CounterMetricFamily(
            "fleet_api_calls", "Messages that carried usage (LLM API calls).", labels=labels
        )
        unpriced = CounterMetricFamily(
            "fleet_unpriced_calls",
            "API calls with no known price: their cost is missing from fleet_cost_usd.",
            labels=labels,
        )
        tokens = CounterMetricFamily(
            "fleet_tokens",
            "Tokens by kind (OpenTelemetry GenAI: prompt includes cache_read and "
            "cache_creation, completion includes reasoning).",
            labels=["kind", *labels],
        )
        cost = CounterMetricFamily("fleet_cost_usd", "Cost in USD.", labels=labels)
        for group in found:
            key = [group["agent"], group["model"]]
            row = exact_totals(group, counters)
            sessions.add_metric(key, row["sessions_started"] or 0)
            messages.add_metric(key, row["message_count"] or 0)
            api_calls.add_metric(key, row["api_calls"] or 0)
            unpriced.add_metric(key, row["unpriced_calls"] or 0)
            for name in TOKEN_FIELDS:
                tokens.add_metric([name.removesuffix("_tokens"), *key], row[name] or 0)
            # Exact Decimal in the database; Prometheus samples are floats.
            cost.add_metric(key, float(from_nanos(row["cost_usd"])))
        yield from (sessions, messages, api_calls, unpriced, tokens, cost)

    def _latency(self) -> Iterator[Metric]:
        """``fleet_latency_seconds``: the fleet-wide latency rollup
        (``FleetLatencyUsage``) as a Prometheus histogram.

        One series per kind and model (calls, times to first token), tool name
        (tool runs, every model together) or neither (turns): bounded by the
        models and tools in use, never by the agents (per agent: ``GET
        /api/v1/fleet`` with a key scoped to it). Its ``le`` bounds are every
        sixteenth bucket bound of ``sessions.latency`` (about x4: 1 ms … 5.7
        days, ``PROMETHEUS_BOUNDS``), the same for every series and every
        scrape, so each cumulative count is exact. Every day's rows are read,
        grouped in the order of ``fleetlatencyusage_panel_idx`` (which holds
        every column read): bounded by days x models and tools x buckets.
        """
        found = (
            FleetLatencyUsage.objects.values("kind", "model", "name", "bucket")
            .annotate(**exact_sums("count", "sum_ms"))
            .order_by("kind", "model", "name", "bucket")
            .values_list("kind", "model", "name", "bucket", *exact_sums("count", "sum_ms"))
        )
        # (kind, model, tool) -> (count per Prometheus bucket, not cumulative; sum_ms)
        series: dict[tuple[str, str, str], tuple[list[int], int]] = {}
        for kind, model, name, bucket, count_high, count_low, ms_high, ms_low in found:
            key = (kind, model, name)
            counts, sum_ms = series.get(key) or ([0] * len(PROMETHEUS_BOUNDS), 0)
            counts[_PROMETHEUS_BUCKET[bucket]] += exact_total(count_high, count_low)
            series[key] = (counts, sum_ms + exact_total(ms_high, ms_low))
        histogram = HistogramMetricFamily(
            "fleet_latency_seconds",
            "Durations by kind: call (a model call), ttft (time to its first token), tool "
            "(a tool run, by tool), turn (running to idle or error); every agent. Kept by purge.",
            labels=["kind", "model", "tool"],
        )
        for key, (counts, sum_ms) in series.items():
            cumulative = list(accumulate(counts))
            buckets = [
                (_seconds(bound), count)
                for bound, count in zip(PROMETHEUS_BOUNDS[:-1], cumulative, strict=False)
            ]
            # The last bound is the largest duration stored: everything is at most it.
            buckets.append(("+Inf", cumulative[-1]))
            histogram.add_metric(list(key), buckets, sum_ms / 1000)
        yield histogram


def _active_by_state(counts: dict[str, Any]) -> dict[str, int]:
    """Active sessions by turn state: running from the header's counts, those in
    error counted (an index range of ``session_turn_idx``: active sessions in
    error only), idle the rest of the active ones."""
    error = Session.objects.filter(status=Status.ACTIVE, state=State.ERROR)
    (errored,) = scalars(count_of(error))
    running = counts["running"]
    # The counts may come from statements a write fell between: never below 0.
    idle = max(counts["active"] - running - errored, 0)
    return {State.IDLE: idle, State.RUNNING: running, State.ERROR: errored}


# Every sixteenth bound of the latency buckets (1, 23, 110, 464 ms … 5.7 days,
# about x4 apart) and the last one (the bound of a duration): 15 per series, in
# Prometheus' usual 10-20, and each Prometheus bucket's count an exact sum of
# whole buckets. (Every eighth, about doubling, was 28 per series.)
PROMETHEUS_BOUNDS: tuple[int, ...] = (*BUCKET_UPPER[1:-1:16], BUCKET_UPPER[-1])
# The Prometheus bucket of each latency bucket: the first bound at or above its
# upper bound.
_PROMETHEUS_BUCKET: tuple[int, ...] = tuple(
    bisect_left(PROMETHEUS_BOUNDS, upper) for upper in BUCKET_UPPER
)


def _seconds(milliseconds: int) -> str:
    return str(milliseconds / 1000)  # the shortest exact decimal: "0.009", "1.874"
