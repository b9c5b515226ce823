"""Helpers for the service tests that check totals (``messages_append`` and the
corrections): usage blocks, and the totals recomputed from the stored messages
and from the daily rollup, the way DESIGN defines them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sessions.choices import TOKEN_FIELDS, CostSource
from sessions.models import BudgetUsage, DailyUsage, Message, Session

ROLLUP_COUNTERS = (
    "sessions_started",
    "message_count",
    "turns",
    "tool_call_count",
    "api_calls",
    "unpriced_calls",
    *TOKEN_FIELDS,
    "cost_usd",
)


def usage(prompt: int = 0, completion: int = 0, **extra: Any) -> dict[str, Any]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, **extra}


def message_sums(session: Session) -> dict[str, Any]:
    """The session's totals recomputed from its stored messages, by session field name."""
    return sums_of(list(Message.objects.filter(session=session)))


def sums_of(messages: list[Message]) -> dict[str, Any]:
    """Session totals recomputed from ``messages``, by session field name."""
    with_usage = [m for m in messages if m.cost_source]
    return {
        "message_count": len(messages),
        "turns": sum(1 for m in messages if m.role == "assistant" and m.content),
        "tool_call_count": sum(len(m.tool_calls) for m in messages),
        "api_calls": len(with_usage),
        "unpriced_calls": sum(1 for m in messages if m.cost_source == CostSource.UNPRICED),
        **{name: sum(getattr(m, name) for m in with_usage) for name in TOKEN_FIELDS},
        "cost_usd": sum((m.cost_usd for m in messages if m.cost_usd is not None), Decimal(0)),
    }


def rollup_totals(**filters: Any) -> dict[str, Any]:
    """Every rollup counter summed over the daily usage rows matching ``filters``."""
    rows = list(DailyUsage.objects.filter(**filters))
    totals: dict[str, Any] = {name: sum(getattr(r, name) for r in rows) for name in ROLLUP_COUNTERS}
    totals["cost_usd"] = sum((r.cost_usd for r in rows), Decimal(0))
    if set(filters) <= {"agent", "model", "channel"}:
        # The budgets' rollup moves with every write like the daily one, per span.
        for span in BudgetUsage.Span.values:
            rows_of_span = list(BudgetUsage.objects.filter(span=span, **filters))
            for name in BudgetUsage.COUNTERS:
                zero = Decimal(0) if name == "cost_usd" else 0
                kept = sum((getattr(r, name) for r in rows_of_span), zero)
                assert kept == totals[name], (span, name, kept, totals[name])
    return totals
