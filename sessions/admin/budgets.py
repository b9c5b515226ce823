"""The admin for budgets: scope, period, amount and warning share; this period's spend.

Validation is the model's (``Budget.clean`` and its constraints): a scope
value no usage can carry, an amount that is not above zero or a warning share
outside 1-100 is a form error. The list shows each budget's spend in its
current period (one query for the page: ``sessions.budgets.budget_statuses``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.http import HttpRequest

from sessions.budgets import BudgetStatus, budget_status, budget_statuses
from sessions.models import Budget
from sessions.money import exact_usd


class _StatusChangeList(ChangeList):
    """Reads the statuses of the page's budgets in one query, after paging."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        statuses = budget_statuses(self.result_list)
        for budget, status in zip(self.result_list, statuses, strict=True):
            budget._status = status


def _describe(status: BudgetStatus) -> str:
    state = "exceeded" if status.exceeded else "warning" if status.warning else "ok"
    unpriced = f" + {status.unpriced_calls} unpriced calls" if status.unpriced_calls else ""
    return (
        f"{exact_usd(status.spent)} of {exact_usd(status.budget.amount_usd)}"
        f" ({status.percent} %, {state}){unpriced}; forecast {exact_usd(status.forecast)};"
        f" {status.period_start:%Y-%m-%d %H:%M} to {status.period_end:%Y-%m-%d %H:%M %Z}"
    )


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["name", "scope_text", "period", "amount", "warning_percent", "this_period"]
    list_filter = ["period", "channel"]
    search_fields = ["name", "agent", "model", "project"]
    readonly_fields = ["this_period"]
    fieldsets = [
        (None, {"fields": ["name", "period", "amount_usd", "warning_percent"]}),
        (
            "Scope (blank everywhere: the whole fleet)",
            {"fields": ["agent", "model", "channel", "project"]},
        ),
        ("Now", {"fields": ["this_period"]}),
    ]

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return _StatusChangeList

    @admin.display(description="scope")
    def scope_text(self, obj: Budget) -> str:
        scope = obj.scope
        return ", ".join(f"{name} {value}" for name, value in scope.items()) or "whole fleet"

    @admin.display(description="amount", ordering="amount_usd")
    def amount(self, obj: Budget) -> str:
        return exact_usd(obj.amount_usd)

    @admin.display(description="this period")
    def this_period(self, obj: Budget) -> str:
        if obj.pk is None:
            return "-"
        status = getattr(obj, "_status", None) or budget_status(obj)
        return _describe(status)
