"""The fleet page: header totals, charts, breakdowns and the sessions table.

Two fragments poll: ``#fleet-live`` (numbers, charts, breakdowns) and
``#sessions`` (the table, with its filters in the URL). A poll carries the
fleet version it shows (``v``); when the fleet has not changed since, the
answer is an empty ``204`` after one cheap query and htmx swaps nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_safe
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import push_url

from fleet.charts import cost_chart, latency_chart, tokens_chart
from fleet.forms import DEFAULT_SORT, SORTS, FleetFilterForm
from fleet.templatetags.fleet_tags import CHANNEL_LABELS
from fleet.views import HtmxHttpRequest
from fleet.views.auth import dashboard_view
from sessions.budgets import BudgetStatus, budget_statuses, visible_budgets
from sessions.fleet_stats import (
    Breakdown,
    Usage,
    breakdowns,
    daily_rows,
    fleet_totals,
    fleet_version,
    page_latency,
    utc_today,
)
from sessions.models import Session
from sessions.selectors import session_matches, session_rows, sessions_count

PAGE_SIZE = 50
# A filtered table counts its matches up to this many ("10 000+" beyond), and
# any table pages through at most this many rows of its order (the last are the
# first of the reverse sort): a page's work is bounded by it, not by the
# sessions that match (docs/DECISIONS.md "The sessions table at scale").
TABLE_COUNT_CAP = 10_000
# With text in the filters, the cap is this: a search shows the first 1 000
# rows of its order ("1 000+"), to narrow rather than page through. PostgreSQL
# cannot count from its trigram indexes alone: the count reads a heap row per
# candidate (~13 500 for 10 000 matches); 1 000 reads a tenth of them.
TEXT_COUNT_CAP = 1_000
# The fleet page shows at most this many budgets (by name; the admin lists them
# all): a bounded panel, and a bounded amount of work per poll. Their spend is
# one query however many there are.
PAGE_BUDGETS = 20
GOAL_PREVIEW = 500
TEMPLATE = "fleet/fleet.html"
LATENCY_TEMPLATE = "fleet/_latency.html"


@dataclass(frozen=True)
class Column:
    label: str
    sort: str | None = None  # the sort key, when the column sorts
    numeric: bool = False
    url: str = ""
    direction: str = ""  # "asc" / "desc" when the table is sorted by this column
    title: str = ""


COLUMNS = (
    Column("Status", "status"),
    Column("Kind"),
    Column("Channel"),
    Column("Agent", "agent"),
    Column("Model", "model"),
    Column("Session", "name"),
    Column("Turns", "turns", numeric=True),
    Column("Tokens", "tokens", numeric=True, title="prompt + completion"),
    Column("Cost", "cost", numeric=True),
    Column("Last activity", "last_active", numeric=True),
)
# Text columns sort A→Z first; numbers and times biggest/newest first.
ASCENDING_FIRST = {"status", "agent", "model", "name"}


def _filters(values: dict[str, Any]) -> dict[str, Any]:
    """The form's valid values as ``SessionQuerySet.listing``'s arguments (the
    API's list reads through the same method)."""
    fields = ("status", "state", "kind", "channel", "agent", "model")
    filters = {name: values[name] for name in fields if name in values}
    if "project" in values:
        filters["project_root"] = values["project"]
    return {**filters, "health": values.get("health"), "q": values.get("q")}


def _rows(
    values: dict[str, Any],
    sort: str,
    now: datetime,
    matches: int | None = None,
    exact: bool = True,
) -> QuerySet[Session]:
    """The table's rows: the form's valid values as listing filters, in
    ``sort``'s order; ``matches``: how many match, when counted (it picks the
    plan), ``exact``: False when the count stopped at its cap."""
    prefix = "-" if sort.startswith("-") else ""
    return session_rows(
        now=now,
        order=[prefix + name for name in SORTS[sort.lstrip("-")]],
        # Goals and todo lists can be long: the table needs only a preview.
        goal_chars=GOAL_PREVIEW,
        matches=matches,
        exact=exact,
        **_filters(values),
    )


def table_cap(values: dict[str, Any]) -> int:
    """How far the table counts and pages: ``TEXT_COUNT_CAP`` with text in its
    filters, else ``TABLE_COUNT_CAP``."""
    return TEXT_COUNT_CAP if values.get("q") else TABLE_COUNT_CAP


def _columns(query: Any, sort: str) -> list[Column]:
    """Column headers; a sortable one links to its order (or the reverse, when current)."""
    columns = []
    for column in COLUMNS:
        if column.sort is None:
            columns.append(column)
            continue
        direction = ""
        if sort.lstrip("-") == column.sort:
            direction = "desc" if sort.startswith("-") else "asc"
            next_sort = column.sort if direction == "desc" else f"-{column.sort}"
        else:
            next_sort = column.sort if column.sort in ASCENDING_FIRST else f"-{column.sort}"
        column_query = query.copy()
        column_query["sort"] = next_sort
        if next_sort == DEFAULT_SORT:
            del column_query["sort"]
        url = "?" + column_query.urlencode() if column_query else reverse("fleet")
        columns.append(Column(**{**column.__dict__, "url": url, "direction": direction}))
    return columns


def sessions_table(
    request: HttpRequest, form: FleetFilterForm, now: datetime, *, total: int | None = None
) -> dict[str, Any]:
    """The table's context. ``total``: every session, when the caller has counted them.

    Unfiltered, the count is every session (the header's, or the sum of the
    session tally the database keeps); filtered, the matches counted up to
    ``table_cap`` (``TEXT_COUNT_CAP`` with text). Either way the pages reach
    the first ``table_cap`` rows of the order.
    """
    values = form.valid_values()
    sort = values.get("sort") or DEFAULT_SORT
    cap = table_cap(values)
    rows = _rows(values, sort, now)
    if not form.is_filtered:
        # The header has just counted every session; counting them again for
        # the pager is the fleet page's costliest query on PostgreSQL.
        count, exact = (sessions_count() if total is None else total), True
    else:
        count, exact = session_matches(cap, now=now, **_filters(values))
        rows = _rows(values, sort, now, matches=count, exact=exact)
    paginator = Paginator(rows, PAGE_SIZE)
    paginator.count = min(count, cap)
    page = paginator.get_page(request.GET.get("page"))
    query = form.canonical_query()
    columns = _columns(query, sort)
    page_query = query.copy()
    if page.number > 1:
        page_query["page"] = str(page.number)
    return {
        "form": form,
        "page": page,
        "columns": columns,
        "query": query,
        "page_query": page_query,
        "count": count,
        "count_exact": exact,
        # The last page the pager reaches, with more rows beyond it.
        "pages_end": not page.has_next() and (count > paginator.count or not exact),
        "filtered": form.is_filtered,
        "form_errors": [
            f"{form.fields[name].label or name}: {' '.join(str(e) for e in errors)}"
            for name, errors in form.errors.items()
        ],
    }


PERIOD_LABELS = (
    ("today", "Today"),
    ("last_7_days", "7 days"),
    ("last_30_days", "30 days"),
    ("all_time", "All time"),
)


BLANK_LABELS = {"model": "(no model)", "agent": "(no agent)", "channel": "(not reported)"}


@dataclass(frozen=True)
class UsageRow(Usage):
    """A breakdown row with the name people read: a channel's label, "(no agent)"."""

    label: str = ""


def labelled(breakdown: Breakdown) -> Breakdown:
    names = CHANNEL_LABELS if breakdown.dimension == "channel" else {}
    rows: list[Usage] = [
        UsageRow(**vars(u), label=names.get(u.key, u.key) or BLANK_LABELS[breakdown.dimension])
        for u in breakdown.rows
    ]
    return Breakdown(dimension=breakdown.dimension, rows=rows, more=breakdown.more)


def budget_panel(now: datetime) -> dict[str, Any]:
    """The budgets' bars: one query for the budgets, one for their spend (none without)."""
    budgets = list(visible_budgets()[: PAGE_BUDGETS + 1])
    statuses: list[BudgetStatus] = budget_statuses(budgets[:PAGE_BUDGETS], now)
    return {
        "budgets": statuses,
        "budgets_more": len(budgets) > PAGE_BUDGETS,
        "budget_zone": timezone.get_default_timezone_name(),
    }


# The latency panels list at most this many models and tools (the API has all).
LATENCY_ROWS = 10
# The latency panels' period (``?latency=``), one of the totals' periods.
LATENCY_PERIOD = "last_30_days"
# The latency section's own poll (seconds): its percentiles are over days.
LATENCY_POLL_SECONDS = 60
LATENCY_EMPTY = {
    "today": "today",
    "last_7_days": "in the last 7 days",
    "last_30_days": "in the last 30 days",
    "all_time": "yet",
}


@dataclass(frozen=True)
class PeriodLink:
    key: str
    label: str
    url: str
    current: bool


def latency_period(request: HttpRequest) -> str:
    """The latency panels' period the URL asks for (anything else: 30 days)."""
    asked = request.GET.get("latency", "")
    return asked if asked in LATENCY_EMPTY else LATENCY_PERIOD


def _latency_links(request: HttpRequest, period: str) -> list[PeriodLink]:
    """A link per period: the page's own query with that period (no poll version)."""
    links = []
    for key, label in PERIOD_LABELS:
        query = request.GET.copy()
        query.pop("v", None)
        if key == LATENCY_PERIOD:
            query.pop("latency", None)
        else:
            query["latency"] = key
        url = _page_url(query)
        links.append(PeriodLink(key=key, label=label, url=url, current=key == period))
    return links


def latency_panel(now: datetime, request: HttpRequest) -> dict[str, Any]:
    """Latency over the period the URL asks for (``PERIOD_LABELS``, the totals'
    periods; 30 days like the breakdowns by default) and the 30-day chart of
    model call latency per day: one query over the latency rollup, whatever
    the traffic."""
    period = latency_period(request)
    latency, days = page_latency(now, period)
    return {
        "latency_period": period,
        "latency_links": _latency_links(request, period),
        "latency_empty": LATENCY_EMPTY[period],
        "latency_label": dict(PERIOD_LABELS)[period],
        "latency_models": latency["models"][:LATENCY_ROWS],
        "latency_models_more": max(0, len(latency["models"]) - LATENCY_ROWS),
        "latency_tools": latency["tools"][:LATENCY_ROWS],
        "latency_tools_more": max(0, len(latency["tools"]) - LATENCY_ROWS),
        "latency_turns": latency["turns"],
        "latency_chart": latency_chart(days, start=utc_today(now) - timedelta(days=29)),
        "latency_loaded": True,
        "latency_poll_seconds": LATENCY_POLL_SECONDS,
    }


def live_context(now: datetime) -> dict[str, Any]:
    totals = fleet_totals(now)
    start, rows = daily_rows(now)
    by_model, by_agent, by_channel = (labelled(b) for b in breakdowns(now))
    return {
        "counts": totals["sessions"],
        "periods": [(label, totals["usage"][key]) for key, label in PERIOD_LABELS],
        "burn": totals["burn_rate"],
        "breakdowns": [by_model, by_agent, by_channel],
        "agents": [u.key for u in by_agent.rows if u.key],
        "models": [u.key for u in by_model.rows if u.key],
        "cost_chart": cost_chart(rows, start=start),
        "tokens_chart": tokens_chart(rows, start=start),
        "stale_minutes": settings.FLEET_STALE_AFTER // 60,
        "stuck_minutes": settings.FLEET_STUCK_AFTER // 60,
        **budget_panel(now),
    }


@require_safe
@dashboard_view
@vary_on_headers("HX-Request", "HX-Target")
def fleet_page(request: HtmxHttpRequest) -> HttpResponse:
    now = timezone.now()
    fragment = None
    if request.htmx and not request.htmx.history_restore_request:
        fragment = {"fleet-live": "live", "sessions": "sessions", "fleet-latency": "latency"}.get(
            request.htmx.target or ""
        )
    if fragment == "latency":
        # The latency section loads after the page and polls on its own, slower
        # beat: a month of percentiles barely moves between two fleet polls, and
        # its rollup read is the page's most expensive (DECISIONS).
        return render(request, LATENCY_TEMPLATE, latency_panel(now, request))
    version = fleet_version(now)
    form = FleetFilterForm(request.GET)
    if fragment and request.GET.get("v") == version:
        # Nothing changed since the poller's version: one query, nothing to swap.
        return HttpResponse(status=204)
    context: dict[str, Any] = {
        "version": version,
        "poll_seconds": settings.FLEET_POLL_SECONDS,
        "api_url": request.build_absolute_uri("/api/v1/"),
    }
    if fragment == "live":
        # The header's open-incident count follows the poll (out of band).
        live = {**context, **live_context(now), "live_oob": True}
        return render(request, f"{TEMPLATE}#live", live)
    if fragment == "sessions":
        context.update(sessions_table(request, form, now))
        # The filter form's hidden sort input follows the table (out of band).
        response = render(request, f"{TEMPLATE}#sessions", {**context, "oob": True})
        if "v" not in request.GET:
            # A filter, sort or page change (not a poll): the address bar follows.
            push_url(response, _page_url(context["page_query"]))
        return response
    live = live_context(now)
    context.update(live)
    context["show_latency"] = bool(live["counts"]["total"])
    context["latency_period"] = latency_period(request)
    if context["show_latency"] and "latency" in request.GET:
        # A period link followed without htmx: the section comes whole.
        context.update(latency_panel(now, request))
    context.update(sessions_table(request, form, now, total=live["counts"]["total"]))
    return render(request, TEMPLATE, context)


def _page_url(query: Any) -> str:
    base = reverse("fleet")
    return f"{base}?{query.urlencode()}" if query else base
