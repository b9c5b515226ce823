"""What each session of the demo fleet is: agent, lifecycle, times, fields.

A session's head (key, agent, channel, model, lifecycle, times, fields) is
drawn from ``(seed, index)`` alone, apart from its messages: session *i* of
a seed is the same whatever the fleet's size, and the fleet can be planned
without building every transcript in memory.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from sessions.demo.text import (
    AGENTS,
    CHAT_CHANNELS,
    HOSTILE,
    HOSTS,
    UNPRICED_MODEL,
    Agent,
    agent_named,
    session_identity,
)

_AGENT_WEIGHTS = (40, 30, 18, 12)

# Lifecycles: final status (and state) of a session, with their weights.
LIFECYCLES = {
    "completed": 62,
    "idle": 6,  # active, recent activity
    "running": 4,
    "stuck": 2,  # running turn started long ago
    "stale": 4,  # active, no activity for hours
    "error": 2,  # active, state error
    "failed": 7,
    "cancelled": 5,
    "unknown": 8,
}
# The first sessions of every fleet: every kind, channel, status and state,
# the cost sources, a compaction and the hostile session, even at small sizes.
SHOWCASE: tuple[tuple[str, str, str, str, dict[str, bool]], ...] = (
    ("koda", "cli", "claude-sonnet-4-5", "completed", {"compact": True, "today": True}),
    ("koda", "tui", "claude-opus-4-1", "running", {"today": True}),
    ("zeroclaw", "telegram", UNPRICED_MODEL, "stuck", {}),
    ("zeroclaw", "discord", "deepseek-chat", "stale", {"hostile": True}),
    ("zeroclaw", "slack", "claude-haiku-4-5", "failed", {}),
    ("appam", "cli", "o3", "cancelled", {"reports": True}),
    ("zeph", "acp", "claude-sonnet-4-5", "unknown", {}),
    ("koda", "cli", "gpt-5", "error", {}),
    ("appam", "", "gemini-2.5-pro", "idle", {"compact": True}),
    ("zeph", "acp", "gpt-5", "completed", {}),
    ("koda", "cli", "gemini-2.5-pro", "completed", {"today": True}),
)


@dataclass
class SessionHead:
    """What a session is, drawn without its transcript."""

    index: int
    key: str
    agent: Agent
    channel: str
    model: str
    lifecycle: str
    created_at: datetime
    last_active_at: datetime
    fields: dict[str, Any]
    reports_cost: bool = False
    compact: bool = False
    hostile: bool = False


def _today_start(now: datetime) -> datetime:
    local = timezone.localtime(now)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _times(
    rng: random.Random, agent: Agent, channel: str, lifecycle: str, *, now: datetime, days: int
) -> tuple[datetime, float]:
    """Last activity by lifecycle, and how long the session lasted (minutes)."""
    if lifecycle in ("idle", "running", "error"):
        last = now - timedelta(seconds=rng.uniform(20, 20 * 60))
    elif lifecycle == "stuck":
        last = now - timedelta(minutes=rng.uniform(40, 6 * 60))
    elif lifecycle == "stale":
        last = now - timedelta(minutes=rng.uniform(60, 10 * 60))
    else:
        # More activity lately: ages skew towards now.
        age = max(30 * 60, days * 86400 * rng.random() ** 1.7)
        last = now - timedelta(seconds=age)
    if agent.kind == "autonomous":
        minutes = rng.uniform(20, 8 * 60)
    elif channel in CHAT_CHANNELS:
        minutes = rng.uniform(30, 3 * 24 * 60)  # bot sessions live for days
    else:
        minutes = rng.uniform(3, 3 * 60)
    return last, minutes


def session_head(index: int, *, seed: int, now: datetime, days: int = 35) -> SessionHead:
    """Session ``index`` of the fleet of ``seed``: key, agent, lifecycle and times."""
    rng = random.Random(f"{seed}:{index}:head")
    extra: dict[str, Any] = {}
    if index < len(SHOWCASE):
        agent_name, channel, model, lifecycle, extra = SHOWCASE[index]
        agent = agent_named(agent_name)
    else:
        agent = rng.choices(AGENTS, weights=_AGENT_WEIGHTS)[0]
        channel = rng.choice(agent.channels)
        model = rng.choice(agent.models)
        lifecycle = rng.choices(tuple(LIFECYCLES), weights=tuple(LIFECYCLES.values()))[0]

    last, minutes = _times(rng, agent, channel, lifecycle, now=now, days=days)
    if extra.get("today"):
        # Created and active since midnight, even just after midnight.
        start = _today_start(now)
        since_midnight = (now - start).total_seconds()
        last = now - timedelta(seconds=rng.uniform(0, min(120, since_midnight / 2)))
        minutes = min(minutes, (last - start).total_seconds() * 0.9 / 60)
    created = max(now - timedelta(days=days), last - timedelta(minutes=minutes))
    if created >= last:
        created = last - timedelta(seconds=1)

    key, fields = session_identity(rng, kind=agent.kind, channel=channel, prompts=agent.prompts)
    fields.update(
        agent=agent.name, kind=agent.kind, channel=channel, model=model, created_at=created
    )
    if rng.random() < 0.3:
        fields["metadata"] = {
            "version": f"{agent.name} 0.{rng.randint(3, 12)}.{rng.randint(0, 9)}",
            "host": rng.choice(HOSTS),
        }
        if agent.name == "koda":
            fields["metadata"]["git_branch"] = rng.choice(("main", "fix/billing", "feat/export"))
    if rng.random() < 0.2:
        fields["todo"] = "- [x] reproduce the failure\n- [x] write a test\n- [ ] fix and re-run CI"
    hostile = bool(extra.get("hostile"))
    if hostile:
        fields["name"] = f"{HOSTILE} hostile session"
        fields["todo"] = "- [ ] <script>alert('todo')</script>\n- [ ] javascript:alert(1)"
        fields["metadata"] = {"note": "<img src=x onerror=alert(1)>", "link": "javascript:alert(1)"}
        fields["channel_ref"] = "discord.<b>clamps</b>"
    compact = bool(extra.get("compact")) or (
        index >= len(SHOWCASE) and lifecycle not in ("running", "stuck") and rng.random() < 0.08
    )
    reports = bool(extra.get("reports")) or (
        model != UNPRICED_MODEL and rng.random() < agent.reports_cost
    )
    return SessionHead(
        index=index,
        key=key,
        agent=agent,
        channel=channel,
        model=model,
        lifecycle=lifecycle,
        created_at=created,
        last_active_at=last,
        fields=fields,
        reports_cost=reports,
        compact=compact,
        hostile=hostile,
    )
