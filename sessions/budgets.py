"""Budgets: what a budget has spent in its current period, read from the rollup.

The one home of the budget rules (docs/DECISIONS.md "Budgets"):

- **Period**: the current day, ISO week (Monday to Monday) or calendar month
  in the configured time zone (``FLEET_TIME_ZONE``, Django's ``TIME_ZONE``),
  as ``[start, end)``. A day with a DST change is 23 or 25 hours long.
- **Spend**: the sum of the ``BudgetUsage`` rows that tile the period (its
  whole UTC days, whole hours and quarter hours at its edges) and whose dimensions match
  the budget's scope. Every UTC offset in use is a whole number of quarter
  hours, so a local period starts and ends on bucket boundaries and the sum
  is exact (integer nano-dollars, read as ``Decimal``). It holds reported
  and computed costs; calls that could not be priced are counted apart
  (``unpriced_calls``) and add nothing.
- **Scope**: a budget's blank dimension matches any value; a set one matches
  exactly that value. ``budgets_applying`` answers the budgets that may apply
  to a call described by some of (agent, model, channel, project): an
  omitted dimension may be anything, so budgets set on it are included.
- **Key scope**: a key limited to agents sees the budgets of those agents
  and the budgets that name no agent (they count its agents' spend too).
- ``warning`` when the spend reaches ``warning_percent`` of the amount,
  ``exceeded`` when it reaches the amount (nothing remains). Budgets never
  stop a write: agents ask and stop themselves.
- ``forecast``: the spend at the period's end if it goes on at the period's
  average rate so far (elapsed time counted as at least ``FORECAST_MIN_ELAPSED``
  so the first minutes of a period do not forecast wildly).

Cost: ``budget_statuses`` is one query for any number of budgets (see there).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone

from sessions.models import Budget, BudgetUsage, project_key
from sessions.money import display, from_nanos
from sessions.rollups import utc_day_start, utc_hour
from sessions.scopes import FULL, KeyScope
from sessions.sql import exact_sums, exact_totals

FORECAST_MIN_ELAPSED = timedelta(hours=1)
_COUNTERS = ("cost_usd", "unpriced_calls", "api_calls")


@dataclass(frozen=True)
class BudgetStatus:
    """A budget in its current period. Amounts are ``Decimal`` USD."""

    budget: Budget
    period_start: datetime  # aware, in the configured time zone
    period_end: datetime  # exclusive
    spent: Decimal
    unpriced_calls: int
    api_calls: int
    remaining: Decimal  # never below zero
    forecast: Decimal
    warning: bool
    exceeded: bool

    @property
    def percent(self) -> int:
        """The spent share of the amount in whole percent, 0 to 100 (a bar's width)."""
        return _share(self.spent, self.budget.amount_usd)

    @property
    def forecast_percent(self) -> int:
        return _share(self.forecast, self.budget.amount_usd)


def _share(part: Decimal, whole: Decimal) -> int:
    return max(0, min(100, int(part * 100 / whole)))


def period_bounds(
    period: str, now: datetime, zone: tzinfo | None = None
) -> tuple[datetime, datetime]:
    """``[start, end)`` of the day, week or month holding ``now`` in ``zone``.

    ``zone`` defaults to the configured time zone. A local midnight that does
    not exist (a DST gap) starts the day at the first moment that does.
    """
    zone = zone or timezone.get_default_timezone()
    today = now.astimezone(zone).date()
    if period == Budget.Period.DAY:
        first, after = today, today + timedelta(days=1)
    elif period == Budget.Period.WEEK:
        first = today - timedelta(days=today.weekday())
        after = first + timedelta(days=7)
    elif period == Budget.Period.MONTH:
        first = today.replace(day=1)
        after = (first + timedelta(days=32)).replace(day=1)
    else:
        raise ValueError(f"unknown budget period {period!r}")
    return _midnight(first, zone), _midnight(after, zone)


def _midnight(day: date, zone: tzinfo) -> datetime:
    # Through UTC and back: a midnight in a DST gap (fold=0 reads it with the
    # offset before the change) lands on the first moment of the day.
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC).astimezone(zone)


Piece = tuple[str, datetime, datetime]  # span, [start, end) in UTC
# Coarsest first: (span, the start of the unit holding a moment, the unit).
_UNITS = (
    (BudgetUsage.Span.DAY, utc_day_start, timedelta(days=1)),
    (BudgetUsage.Span.HOUR, utc_hour, timedelta(hours=1)),
)


def period_pieces(start: datetime, end: datetime) -> list[Piece]:
    """``[start, end)`` as the rollup's rows tile it: its whole UTC days from day
    rows, then the whole hours of what is left at each edge from hour rows,
    then the rest (under an hour at each end, only in zones with a :30 or :45
    offset) from quarter-hour rows."""
    pieces: list[Piece] = []
    edges = [(start.astimezone(UTC), end.astimezone(UTC))]
    for span, unit_start, unit in _UNITS:
        rest = []
        for lo, hi in edges:
            first = unit_start(lo)
            if first < lo:
                first += unit
            last = unit_start(hi)
            if first >= last:
                rest.append((lo, hi))
                continue
            pieces.append((span, first, last))
            rest.extend(edge for edge in ((lo, first), (last, hi)) if edge[0] < edge[1])
        edges = rest
    pieces.extend((BudgetUsage.Span.QUARTER, lo, hi) for lo, hi in edges)
    return pieces


def budget_statuses(budgets: Iterable[Budget], now: datetime | None = None) -> list[BudgetStatus]:
    """Each budget's status at ``now``: one query, whatever the number of budgets.

    Each period is read as pieces (``period_pieces``: whole UTC days from day rows,
    whole hours at the edges from hour rows, the rest from quarter hours). The
    pieces' boundaries cut each span's time into intervals; the query sums the
    rows of the pieces per interval and the dimensions the budgets' scopes name
    (rows: those dimensions' combinations with usage in the periods, times a
    handful of intervals), and each budget adds the rows of its pieces and scope in
    Python. A month costs at most ~30 day, 46 hour and 6 quarter-hour rows per
    combination.
    """
    now = now or timezone.now()
    budgets = list(budgets)
    if not budgets:
        return []
    bounds = [period_bounds(budget.period, now) for budget in budgets]
    pieces = [period_pieces(start, end) for start, end in bounds]
    distinct = {piece for per_budget in pieces for piece in per_budget}
    cuts = {
        span: sorted({moment for s, lo, hi in distinct if s == span for moment in (lo, hi)})
        for span in BudgetUsage.Span.values
    }
    where = Q()
    for span, lo, hi in distinct:
        where |= Q(span=span, start__gte=lo, start__lt=hi)
    interval = Case(
        *(
            When(span=span, start__lt=cut, then=Value(index))
            for span, span_cuts in cuts.items()
            for index, cut in enumerate(span_cuts[1:])
        ),
        default=Value(-1),
        output_field=IntegerField(),
    )
    scopes = [list(_scope_values(budget).items()) for budget in budgets]
    # Grouped only by the dimensions some budget's scope names: a fleet-wide
    # or per-agent set of budgets adds up agents' rows, not every agent ×
    # model × channel × project combination's.
    dimensions = sorted({name for scope in scopes for name, _ in scope})
    rows: list[tuple[dict[str, Any], dict[str, int]]] = [
        (dict(row), exact_totals(row, _COUNTERS))
        for row in BudgetUsage.objects.filter(where)
        .annotate(interval=interval)
        .values("span", *dimensions, "interval")
        .annotate(**exact_sums(*_COUNTERS))
        .order_by()
    ]
    by_interval: dict[tuple[str, int], list[tuple[dict[str, Any], dict[str, int]]]] = {}
    for row, totals in rows:
        by_interval.setdefault((row["span"], row["interval"]), []).append((row, totals))
    statuses = []
    for budget, (start, end), own, scope in zip(budgets, bounds, pieces, scopes, strict=True):
        covered = [
            (span, index)
            for span, lo, hi in own
            for index, (a, b) in enumerate(itertools.pairwise(cuts[span]))
            if lo <= a and b <= hi
        ]
        sums = dict.fromkeys(_COUNTERS, 0)
        for key in covered:
            for row, totals in by_interval.get(key, ()):
                if all(row[name] == value for name, value in scope):
                    for name in _COUNTERS:
                        sums[name] += totals[name]
        statuses.append(_status(budget, start, end, now, sums))
    return statuses


def budget_status(budget: Budget, now: datetime | None = None) -> BudgetStatus:
    """``budget`` at ``now`` (one query)."""
    return budget_statuses([budget], now)[0]


def _scope_values(budget: Budget) -> dict[str, str]:
    """The budget's scope as the rollup's columns (a project by its key)."""
    scope = dict(budget.scope)
    if "project" in scope:
        scope["project_key"] = project_key(scope.pop("project"))
    return scope


def _status(
    budget: Budget, start: datetime, end: datetime, now: datetime, sums: dict[str, int]
) -> BudgetStatus:
    spent = from_nanos(sums["cost_usd"])
    amount = budget.amount_usd
    # In UTC: subtracting two times of one zone gives the wall-clock difference,
    # an hour off across a DST change.
    length = end.astimezone(UTC) - start.astimezone(UTC)
    elapsed = min(max(now.astimezone(UTC) - start.astimezone(UTC), FORECAST_MIN_ELAPSED), length)
    # Whole microseconds: the ratio of two exact integers, then nine places.
    forecast = display(
        spent
        * Decimal(length // timedelta(microseconds=1))
        / Decimal(elapsed // timedelta(microseconds=1))
    )
    return BudgetStatus(
        budget=budget,
        period_start=start,
        period_end=end,
        spent=spent,
        unpriced_calls=sums["unpriced_calls"],
        api_calls=sums["api_calls"],
        remaining=max(amount - spent, Decimal(0)),
        forecast=max(forecast, spent),
        warning=spent * 100 >= amount * budget.warning_percent,
        exceeded=spent >= amount,
    )


def budgets_applying(
    *,
    agent: str | None = None,
    model: str | None = None,
    channel: str | None = None,
    project: str | None = None,
    scope: KeyScope = FULL,
) -> QuerySet[Budget]:
    """The budgets that may apply to usage with these dimensions, seen through ``scope``.

    A given dimension matches budgets that leave it blank or name exactly it;
    an omitted one (``None``) matches every budget. See the module doc.
    """
    budgets = visible_budgets(scope)
    for name, value in (("agent", agent), ("model", model), ("channel", channel)):
        if value is not None:
            budgets = budgets.filter(Q(**{name: ""}) | Q(**{name: value}))
    if project is not None:
        budgets = budgets.filter(Q(project="") | Q(project=project))
    return budgets


def visible_budgets(scope: KeyScope = FULL) -> QuerySet[Budget]:
    """Every budget a key with ``scope`` may read (its agents' and those naming no agent)."""
    budgets = Budget.objects.order_by("name", "id")
    if scope.agent_filter is not None:
        budgets = budgets.filter(Q(agent="") | Q(agent__in=scope.agent_filter))
    return budgets
