"""What each rule kind holds for now: its subjects and their details.

Every kind is a bounded number of queries whatever the number of sessions
(the sessions' indexes and the rollups): the rows read are the subjects the
rule fires for, not the fleet.

- ``session_stuck``: the shared stuck rule (``sessions.querysets.stuck_rule``)
  at the rule's threshold (default ``FLEET_STUCK_AFTER``); subject: the session.
- ``session_unknown`` / ``turn_error``: sessions with status ``unknown`` /
  state ``error`` whose last activity is within the rule's window (default a
  day): the incident resolves when the session leaves that state (an agent
  resumed it, someone closed it) or its last activity leaves the window.
- ``burn_rate``: the cost of the usage dated in the last hour
  (``sessions.fleet_stats``' window, from the per-minute rollup) above the
  threshold, for the fleet or per agent.
- ``budget_warning`` / ``budget_exceeded``: ``sessions.budgets.budget_statuses``
  (one query for all budgets); subject: the budget.
- ``agent_silent``: agents with sessions active in the last ``threshold +
  SILENT_LOOKBACK`` but none since ``now - threshold``; an agent with an open
  incident stays silent until it writes again (however long), so a retired
  agent is not reported resolved.

- ``model_latency`` / ``tool_latency``: the p95 of the model calls per model
  / of the tool runs per tool name over the rule's window (the last
  ``window_days`` UTC days, today included; default today) above
  ``threshold_ms``, read from the latency rollup (``LatencyUsage``, one
  query, never the messages); the p95 is the rollup's (at most 9 % above the
  exact value, ``sessions.latency``). Only a model or tool with at least
  ``min_count`` calls or runs in the window (blank: 20) is judged. The
  incident resolves when the p95 falls back (faster calls, or the window
  leaves the slow days behind) or the count falls below the minimum.

Filters (agent, channel, model) narrow the sessions, the rollup's rows, or the
budgets whose scope names that value (a latency rule: agent and model; for a
tool run, the model of its session).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Max, Q

from alerts.models import AlertRule
from sessions.budgets import budget_statuses
from sessions.choices import State, Status
from sessions.fleet_stats import BURN_WINDOW
from sessions.latency import percentile
from sessions.models import Budget, LatencyUsage, MinuteUsage, Session
from sessions.money import from_nanos
from sessions.querysets import stuck_after, stuck_rule
from sessions.rollups import utc_minute
from sessions.sql import exact_sums, exact_totals

SESSION_WINDOW = timedelta(days=1)
SILENT_LOOKBACK = timedelta(days=7)

Holding = dict[str, dict[str, Any]]  # subject → details


def evaluate(rule: AlertRule, now: datetime, open_subjects: Collection[str] = ()) -> Holding:
    """The subjects for which ``rule`` holds at ``now`` and what to say about each."""
    kind = rule.kind
    if kind in AlertRule.SESSION_KINDS:
        return _sessions(rule, now)
    if kind == AlertRule.Kind.BURN_RATE:
        return _burn_rate(rule, now)
    if kind in AlertRule.BUDGET_KINDS:
        return _budgets(rule, now)
    if kind == AlertRule.Kind.AGENT_SILENT:
        return _silent(rule, now, open_subjects)
    if kind in AlertRule.LATENCY_KINDS:
        return _latency(rule, now)
    raise ValueError(f"unknown rule kind {kind!r}")


def _seconds(rule: AlertRule, default: timedelta) -> timedelta:
    return timedelta(seconds=rule.threshold_seconds) if rule.threshold_seconds else default


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _sessions(rule: AlertRule, now: datetime) -> Holding:
    if rule.kind == AlertRule.Kind.SESSION_STUCK:
        condition = stuck_rule(now, _seconds(rule, stuck_after()))
    else:
        window = now - _seconds(rule, SESSION_WINDOW)
        state = (
            Q(status=Status.UNKNOWN)
            if rule.kind == AlertRule.Kind.SESSION_UNKNOWN
            else Q(state=State.ERROR)
        )
        condition = state & Q(last_active_at__gte=window)
    rows = (
        Session.objects.filter(condition, **rule.filters)
        .order_by("id")
        .values(
            "key",
            "name",
            "agent",
            "model",
            "channel",
            "status",
            "state",
            "turn_started_at",
            "last_active_at",
        )
    )
    return {
        f"session {row['key']}": {
            "session": row["key"],
            "name": row["name"],
            "agent": row["agent"],
            "model": row["model"],
            "channel": row["channel"],
            "status": row["status"],
            "state": row["state"],
            "turn_started_at": _iso(row["turn_started_at"]),
            "last_active_at": _iso(row["last_active_at"]),
        }
        for row in rows
    }


def _burn_rate(rule: AlertRule, now: datetime) -> Holding:
    first = utc_minute(now) - BURN_WINDOW + timedelta(minutes=1)
    minutes = MinuteUsage.objects.filter(minute__gte=first, minute__lte=now, **rule.filters)
    threshold = rule.threshold_usd_per_hour
    if threshold is None or threshold <= 0:
        raise ValueError("a burn-rate rule needs a threshold above 0")  # AlertRule.clean
    rows: list[dict[str, Any]]
    if rule.per == AlertRule.Per.AGENT:
        grouped = minutes.values("agent").annotate(**exact_sums("cost_usd")).order_by()
        rows = [dict(row) for row in grouped]
    else:
        total: dict[str, Any] = dict(minutes.aggregate(**exact_sums("cost_usd")))
        rows = [{"agent": None, **total}]
    holding: Holding = {}
    for row in rows:
        cost = from_nanos(exact_totals(row, ["cost_usd"])["cost_usd"])
        if cost > threshold:
            subject = "fleet" if row["agent"] is None else f"agent {row['agent']}"
            holding[subject] = {
                "agent": row["agent"],
                "usd_last_hour": str(cost),
                "threshold_usd_per_hour": str(threshold),
            }
    return holding


def _latency(rule: AlertRule, now: datetime) -> Holding:
    threshold = rule.threshold_ms
    if not threshold:
        raise ValueError("a latency rule needs a threshold above 0 ms")  # AlertRule.clean
    if rule.channel:
        raise ValueError("a latency rule cannot filter by channel")  # AlertRule.clean
    days = rule.window_days or AlertRule.DEFAULT_WINDOW_DAYS
    today = now.astimezone(UTC).date()
    tool = rule.kind == AlertRule.Kind.TOOL_LATENCY
    kind, label = ("tool", "name") if tool else ("call", "model")
    rows = (
        LatencyUsage.objects.filter(
            kind=kind, day__gte=today - timedelta(days=days - 1), day__lte=today, **rule.filters
        )
        .values(label, "bucket")
        .annotate(**exact_sums("count"))
        .order_by()
    )
    histograms: dict[str, dict[int, int]] = {}
    for row in rows:
        count = exact_totals(row, ["count"])["count"]
        if count > 0:
            counts = histograms.setdefault(row[label], {})
            counts[row["bucket"]] = counts.get(row["bucket"], 0) + count
    minimum = rule.minimum_count
    holding: Holding = {}
    for name, counts in sorted(histograms.items()):
        count = sum(counts.values())
        if count < minimum:
            # Too few to judge (below 20, a p95 is the slowest call alone).
            continue
        p95 = percentile(counts, 0.95)
        if p95 is not None and p95 > threshold:
            field = "tool" if tool else "model"
            holding[f"{field} {name or '(none)'}"] = {
                field: name,
                "p95_ms": p95,
                "threshold_ms": threshold,
                "count": count,
                "min_count": minimum,
                "window_days": days,
            }
    return holding


def _budgets(rule: AlertRule, now: datetime) -> Holding:
    budgets = Budget.objects.filter(**rule.filters).order_by("name", "id")
    holding: Holding = {}
    for status in budget_statuses(budgets, now):
        fires = status.exceeded if rule.kind == AlertRule.Kind.BUDGET_EXCEEDED else status.warning
        if fires:
            budget = status.budget
            holding[f"budget {budget.name}"] = {
                "budget": budget.name,
                "scope": budget.scope,
                "period": budget.period,
                "amount_usd": str(budget.amount_usd),
                "spent_usd": str(status.spent),
                "percent": status.percent,
                "warning_percent": budget.warning_percent,
                "period_start": _iso(status.period_start),
                "period_end": _iso(status.period_end),
            }
    return holding


def _silent(rule: AlertRule, now: datetime, open_subjects: Collection[str]) -> Holding:
    silence = _seconds(rule, timedelta(0))
    cutoff = now - silence
    filters = {name: value for name, value in rule.filters.items() if name != "agent"}
    sessions = Session.objects.filter(**filters).exclude(agent="")
    if rule.agent:
        sessions = sessions.filter(agent=rule.agent)
    recent = (
        sessions.filter(last_active_at__gte=cutoff - SILENT_LOOKBACK)
        .values("agent")
        .annotate(last=Max("last_active_at"))
        .order_by()
    )
    last_seen = {row["agent"]: row["last"] for row in recent}
    silent = {agent for agent, last in last_seen.items() if last < cutoff}
    # Agents already reported stay silent until they write again.
    reported = {s.removeprefix("agent ") for s in open_subjects} - set(last_seen)
    if reported:
        resumed = set(
            sessions.filter(agent__in=reported, last_active_at__gte=cutoff)
            .values_list("agent", flat=True)
            .distinct()
        )
        silent |= reported - resumed
    if rule.agent and rule.agent not in last_seen and rule.agent not in reported:
        silent.add(rule.agent)  # named and never heard from in the lookback
    return {
        f"agent {agent}": {
            "agent": agent,
            "silent_for_seconds": int(silence.total_seconds()),
            "last_active_at": _iso(last_seen.get(agent)),
        }
        for agent in sorted(silent)
    }
