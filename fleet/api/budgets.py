"""Budgets for agents: every budget, or the ones that apply to a call, with their spend.

Read-only: Fleet never refuses to record spend; an agent asks
``/budgets/check`` before it spends and stops itself. The rules (periods,
scope matching, which budgets a scoped key sees) are ``sessions.budgets``'.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import timezone
from ninja import Query, Router

from fleet.api.responses import BudgetCheckOut, BudgetListOut, ErrorOut, example_answer
from fleet.api.sessions import key_scope
from sessions.budgets import BudgetStatus, budget_statuses, budgets_applying, visible_budgets
from sessions.choices import Channel
from sessions.errors import Forbidden
from sessions.inputs import clean_choice, clean_text
from sessions.shapes import jsonable

router = Router()

ERRORS = {code: ErrorOut for code in (401, 422, 429)}

BUDGET_EXAMPLE: dict[str, Any] = {
    "id": 3,
    "name": "koda monthly",
    "scope": {"agent": "koda", "model": "", "channel": "", "project": ""},
    "period": "month",
    "period_start": "2026-11-01T04:00:00Z",
    "period_end": "2026-12-01T05:00:00Z",
    "amount_usd": "50.000000000",
    "warning_percent": 80,
    "spent_usd": "41.250000000",
    "remaining_usd": "8.750000000",
    "forecast_usd": "44.196428571",
    "unpriced_calls": 2,
    "api_calls": 1830,
    "warning": True,
    "exceeded": False,
}


def budget_json(status: BudgetStatus) -> dict[str, Any]:
    budget = status.budget
    return jsonable(
        {
            "id": budget.pk,
            "name": budget.name,
            "scope": {
                "agent": budget.agent,
                "model": budget.model,
                "channel": budget.channel,
                "project": budget.project,
            },
            "period": budget.period,
            "period_start": status.period_start,
            "period_end": status.period_end,
            "amount_usd": budget.amount_usd,
            "warning_percent": budget.warning_percent,
            "spent_usd": status.spent,
            "remaining_usd": status.remaining,
            "forecast_usd": status.forecast,
            "unpriced_calls": status.unpriced_calls,
            "api_calls": status.api_calls,
            "warning": status.warning,
            "exceeded": status.exceeded,
        }
    )


def _answer(statuses: list[BudgetStatus]) -> dict[str, Any]:
    return {
        "time_zone": timezone.get_default_timezone_name(),
        "exceeded": any(status.exceeded for status in statuses),
        "remaining_usd": jsonable(min((s.remaining for s in statuses), default=None)),
        "items": [budget_json(status) for status in statuses],
    }


@router.get(
    "/budgets",
    response={200: BudgetListOut, 401: ErrorOut, 429: ErrorOut},
    summary="Every budget, with its spend in the current period",
    openapi_extra=example_answer(
        {
            "time_zone": "America/New_York",
            "exceeded": False,
            "remaining_usd": "8.750000000",
            "items": [BUDGET_EXAMPLE],
        }
    ),
)
def budgets(request: HttpRequest) -> dict:
    """Every budget (by name) with its current period, spend, what remains, the forecast
    for the period at its rate so far, and `warning` / `exceeded`. A key scoped to agents
    sees the budgets of its agents and the budgets that name no agent (the whole fleet, a
    model, a channel, a project: they count its agents' spend too, so it sees their
    spend). `exceeded` and `remaining_usd` at the top sum up the items (the least
    remaining; null without budgets)."""
    return _answer(budget_statuses(visible_budgets(key_scope(request))))


@router.get(
    "/budgets/check",
    response={200: BudgetCheckOut, **ERRORS, 403: ErrorOut},
    summary="The budgets that apply to a call: ask before spending",
    openapi_extra=example_answer(
        {
            "time_zone": "America/New_York",
            "exceeded": False,
            "remaining_usd": "8.750000000",
            "items": [BUDGET_EXAMPLE],
        }
    ),
)
def budgets_check(
    request: HttpRequest,
    agent: str | None = Query(None, description="the calling agent"),
    model: str | None = Query(None, description="the model it is about to call"),
    channel: str | None = Query(None, description="the session's channel"),
    project: str | None = Query(None, description="the session's project_root, exactly"),
) -> dict:
    """The budgets that apply to a call by `agent` to `model` on `channel` in `project`:
    those whose every scope value is blank or equal to the one given. An omitted (or empty)
    parameter may be anything, so budgets set on it are included: ask with all four for
    the exact set. `exceeded: true` when any of them has spent its amount; stop before
    spending. Fleet still records whatever is spent. A key scoped to agents may ask only
    for its agents (another agent answers 403) and sees what `/budgets` shows it."""
    scope = key_scope(request)
    values = {
        "agent": clean_text(agent, "agent", single_line=True) or None,
        "model": clean_text(model, "model", single_line=True) or None,
        "channel": clean_choice(channel, "channel", Channel, blank=True) or None,
        "project": clean_text(project, "project", max_length=1024, single_line=True) or None,
    }
    if values["agent"] is not None and not scope.covers(values["agent"]):
        raise Forbidden(
            f"this API key may not read the budgets of agent {values['agent']!r}"[:300],
            field="agent",
        )
    return _answer(budget_statuses(budgets_applying(**values, scope=scope)))
