"""Planning the demo fleet's sessions and writing them through the services."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_UP, Decimal
from typing import Any

from django.utils import timezone

from sessions import services
from sessions.budgets import budget_statuses
from sessions.choices import Status
from sessions.demo.heads import SessionHead, session_head
from sessions.demo.transcript import build_messages
from sessions.models import Budget, DailyUsage, Session, Tombstone


class FleetLoaded(Exception):
    """The keys of this seed's fleet are already in the database."""


@dataclass
class SessionPlan:
    head: SessionHead
    messages: list[dict[str, Any]]
    compact_after: int = 0  # compact once this many messages are stored
    compact_keep: int = 0
    compact_at: datetime | None = None


@dataclass
class FleetSummary:
    seed: int
    sessions: int = 0
    messages: int = 0
    compacted: int = 0
    statuses: Counter = field(default_factory=Counter)

    def line(self) -> str:
        parts = ", ".join(f"{n} {status}" for status, n in sorted(self.statuses.items()))
        return (
            f"Created {self.sessions} demo sessions ({parts or 'none'}) with "
            f"{self.messages} messages, {self.compacted} compacted (seed {self.seed})."
        )


# Mean pause before a message, by role: people take a while to write, models a
# few seconds, tools less.
_GAP = {"system": 0.01, "user": 20.0, "assistant": 1.0, "tool": 0.1}


def plan_session(
    index: int, *, seed: int, now: datetime, days: int = 35, messages_per_session: int = 24
) -> SessionPlan:
    """The whole session: head and timestamped messages, ready to write."""
    head = session_head(index, seed=seed, now=now, days=days)
    rng = random.Random(f"{seed}:{index}:count")
    count = messages_per_session
    if count > 0:
        count = rng.randint(max(1, count // 3), max(1, count * 5 // 3))
    if head.compact and count > 0:
        count = max(count, 16)
    messages = build_messages(head, count, seed=seed)
    # Timestamps from creation to last activity; the last message is the last activity.
    gaps = [_GAP[m["role"]] * rng.expovariate(1.0) for m in messages]
    scale = (head.last_active_at - head.created_at).total_seconds() / (sum(gaps) or 1)
    elapsed = 0.0
    for message, gap in zip(messages, gaps, strict=True):
        elapsed += gap * scale
        message["created_at"] = head.created_at + timedelta(seconds=elapsed)
    if messages:
        messages[-1]["created_at"] = head.last_active_at
    plan = SessionPlan(head=head, messages=messages)
    if head.compact and len(messages) >= 8:
        plan.compact_after = len(messages) * 2 // 3
        plan.compact_keep = rng.randint(2, 5)
        before = messages[plan.compact_after - 1]["created_at"]
        after = messages[plan.compact_after]["created_at"]
        plan.compact_at = before + (after - before) / 2
    return plan


def _turn_fields(head: SessionHead) -> dict[str, Any]:
    if head.lifecycle in ("running", "stuck"):
        started = head.last_active_at - timedelta(seconds=5)
        return {"state": "running", "turn_id": f"turn-{head.index}", "turn_started_at": started}
    if head.lifecycle == "error":
        return {"state": "error"}
    return {}


def write_session(plan: SessionPlan, *, now: datetime) -> int:
    """Write one planned session through the services; returns messages stored."""
    head, messages = plan.head, plan.messages
    fields = {**head.fields, **_turn_fields(head)}
    stored = 0
    if not messages:
        services.session_upsert(key=head.key, fields=fields, now=head.last_active_at)
    elif plan.compact_after and plan.compact_at:
        first, rest = messages[: plan.compact_after], messages[plan.compact_after :]
        services.messages_append_all(
            key=head.key, messages=first, session=head.fields, now=first[-1]["created_at"]
        )
        summary = (
            f"Summary of the first {len(first)} messages: the user asked for a fix; "
            "the agent read the code, ran the tests and changed two files."
        )
        services.session_compact(
            key=head.key, summary=summary, keep=plan.compact_keep, now=plan.compact_at
        )
        services.messages_append_all(
            key=head.key, messages=rest, session=_turn_fields(head), now=head.last_active_at
        )
        stored += 1  # the summary
    else:
        services.messages_append_all(
            key=head.key, messages=messages, session=fields, now=head.last_active_at
        )
    stored += len(messages)
    if head.lifecycle in ("completed", "failed", "cancelled"):
        ended = head.last_active_at + timedelta(seconds=2)
        services.session_set_status(key=head.key, status=head.lifecycle, now=min(ended, now))
    return stored


def existing_keys(keys: list[str]) -> list[str]:
    """Keys already used by a session or a tombstone (another run with this seed)."""
    found: list[str] = []
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        found += Session.objects.filter(key__in=chunk).values_list("key", flat=True)
        found += Tombstone.objects.filter(key__in=chunk).values_list("key", flat=True)
    return found


def write_fleet(
    *,
    sessions: int,
    messages_per_session: int = 24,
    seed: int = 1,
    days: int = 35,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    progress_every: int = 1000,
) -> FleetSummary:
    """Write a fleet of ``sessions`` sessions through ``sessions.services``.

    Sessions that end ``unknown`` are written first, still active; then each
    agent "restarts" and calls ``sessions_mark_unknown`` (sparing the active
    sessions the database already held), as real agents do at startup.
    """
    now = now or timezone.now()
    keys: list[str] = []
    unknown: list[int] = []
    agents: set[str] = set()
    for index in range(sessions):
        head = session_head(index, seed=seed, now=now, days=days)
        keys.append(head.key)
        if head.lifecycle == "unknown":
            unknown.append(index)
            agents.add(head.agent.name)
    taken = existing_keys(keys)
    if taken:
        raise FleetLoaded(f"the demo fleet of seed {seed} is already loaded (key {taken[0]!r})")
    spared = {
        agent: list(
            Session.objects.filter(agent=agent, status=Status.ACTIVE).values_list("key", flat=True)
        )
        for agent in sorted(agents)
    }
    chosen = set(unknown)
    order = unknown + [index for index in range(sessions) if index not in chosen]
    del keys, chosen
    summary = FleetSummary(seed=seed)
    for done, index in enumerate(order, 1):
        plan = plan_session(
            index, seed=seed, now=now, days=days, messages_per_session=messages_per_session
        )
        summary.messages += write_session(plan, now=now)
        summary.compacted += bool(plan.compact_after)
        summary.sessions += 1
        status = plan.head.lifecycle
        summary.statuses[status if status in Status.values else Status.ACTIVE] += 1
        if done == len(unknown):
            for agent in sorted(agents):
                services.sessions_mark_unknown(agent=agent, except_keys=spared[agent])
        if progress and (done % progress_every == 0 or done == len(order)):
            progress(done, len(order))
    demo_budgets(now)
    return summary


def _top(dimension: str, since: datetime) -> str:
    """The agent or model that spent most since ``since`` (from the daily rollup)."""
    rows = DailyUsage.objects.filter(day__gte=since.date()).exclude(**{dimension: ""})
    totals: Counter[str] = Counter()
    for name, cost in rows.values_list(dimension, "cost_usd"):
        totals[name] += int(cost * 10**9)
    return totals.most_common(1)[0][0] if totals else ""


def demo_budgets(now: datetime) -> list[Budget]:
    """Three budgets sized on the demo's own spend, so the fleet page shows one
    under way, one past its warning share and one exceeded. Budgets an operator
    set are left alone: nothing is written when any exists."""
    if Budget.objects.exists():
        return []
    month_ago = now - timedelta(days=30)
    agent, model = _top("agent", month_ago), _top("model", month_ago)
    plans = [
        # (budget, its amount as a share of what its scope spent so far)
        (Budget(name="Fleet, this month", period=Budget.Period.MONTH), Decimal("1.6")),
        (Budget(name=f"{agent}, this month", agent=agent), Decimal("1.1")),
        (Budget(name=f"{model}, this month", model=model), Decimal("0.75")),
    ]
    made = []
    for budget, share in plans:
        budget.amount_usd = Decimal(1)
        spent = budget_statuses([budget], now)[0].spent
        if spent <= 0 or budget.name.startswith(","):
            continue  # nothing spent, or no agent/model spent yet (a tiny demo): no bar
        amount = (spent * share).quantize(Decimal("0.01"), ROUND_UP)
        budget.amount_usd = max(Decimal("0.01"), amount)
        budget.full_clean()
        budget.save()
        made.append(budget)
    return made
