"""Query budgets: each page and poll costs the same number of queries at any data size."""

from __future__ import annotations

import itertools
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone

from fleet.forms import SORT_CHOICES
from fleet.views import fleet as fleet_views
from fleet.views.fleet import PAGE_BUDGETS
from sessions import services
from sessions.latency import BUCKET_UPPER
from sessions.models import Budget, DailyUsage, Message, Session
from sessions.rollups import Rollup

pytestmark = pytest.mark.django_db

PAGE_BUDGET = 15
# Loading the logged-in user costs two queries (the session row, the user);
# an unchanged poll may add one more.
POLL_BUDGET = 3
HX = {"HTTP_HX_REQUEST": "true"}
STATUSES = itertools.cycle(["active", "completed", "failed", "cancelled", "unknown"])
MODELS = ["gpt-4o", "o3", "claude-sonnet-4-5", "gemini-2.5-pro", "local-model"]
_serial = itertools.count()


def grow_fleet(sessions: int) -> None:
    """Add ``sessions`` sessions and a month of rollups (bulk: the counts are what matter)."""
    now = timezone.now()
    rows = []
    for _ in range(sessions):
        n = next(_serial)
        status = next(STATUSES)
        rows.append(
            Session(
                key=f"bulk-{n}",
                name=f"session {n}",
                agent=f"agent-{n % 7}",
                model=MODELS[n % len(MODELS)],
                channel="cli",
                status=status,
                state="running" if status == "active" and n % 2 else "idle",
                turn_started_at=now - timedelta(hours=1) if status == "active" and n % 2 else None,
                created_at=now - timedelta(minutes=n),
                last_active_at=now - timedelta(minutes=n),
                turns=n % 13,
                prompt_tokens=1000 + n,
                completion_tokens=100,
            )
        )
    Session.objects.bulk_create(rows)
    usage = []
    for day in range(30):
        for model in MODELS:
            agent = f"agent-{next(_serial)}"
            usage.append(
                DailyUsage(
                    day=(now - timedelta(days=day)).date(),
                    agent=agent,
                    model=model,
                    channel="cli",
                    api_calls=10,
                    prompt_tokens=5000,
                    completion_tokens=500,
                    cost_usd="0.5",
                )
            )
    DailyUsage.objects.bulk_create(usage)
    # A month of latency rollups (the latency panels, the chart, the alerts),
    # through the rollup's write path (both latency tables).
    latency = Rollup()
    for day in range(30):
        for model in MODELS:
            agent = f"agent-{next(_serial)}"
            for kind in ("call", "tool", "turn"):
                for bucket in (40, 90):
                    for _ in range(3):
                        latency.add_latency(
                            at=now - timedelta(days=day),
                            agent=agent,
                            model=model,
                            kind=kind,
                            name="grep" if kind == "tool" else "",
                            duration_ms=BUCKET_UPPER[bucket],
                        )
    latency.apply()


def grow_transcript(key: str, messages: int) -> None:
    """Append ``messages`` messages with tool calls, results, reasoning and usage."""
    batch = []
    for i in range(messages):
        n = next(_serial)
        if i % 3 == 0:
            batch.append({"role": "user", "content": f"question {n} needle"})
        elif i % 3 == 1:
            batch.append(
                {
                    "role": "assistant",
                    "content": f"answer {n} needle",
                    "reasoning": "because",
                    "agent_name": f"sub-{n % 4}",
                    "tool_calls": [{"id": f"c{n}", "name": "grep", "arguments": {"q": n}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5},
                    "duration_ms": 100 + n % 5000,
                }
            )
        else:
            batch.append(
                {
                    "role": "tool",
                    "tool_call_id": f"c{n - 1}",
                    "content": "result",
                    "duration_ms": n % 900,
                }
            )
        if len(batch) == 500:
            services.messages_append(key=key, messages=batch)
            batch = []
    if batch:
        services.messages_append(key=key, messages=batch)


def measure(client: Client, url: str, budget: int, **headers: Any) -> tuple[int, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        response = client.get(url, **headers)
    assert response.status_code in (200, 204), url
    assert len(captured) <= budget, [q["sql"][:120] for q in captured.captured_queries]
    return len(captured), response.status_code


def at_two_sizes(client: Client, urls: dict[str, tuple[str, int, dict[str, str]]]) -> None:
    """Measure every URL at 10 sessions, grow to 1 000, measure again: counts must match."""
    grow_fleet(10)
    grow_transcript("long", 10)
    small = {name: measure(client, *spec[:2], **spec[2]) for name, spec in urls.items()}
    grow_fleet(990)
    grow_transcript("long", 1000)
    Message.objects.filter(session__key="long", seq__lt=300).update(compacted_at=timezone.now())
    large = {name: measure(client, *spec[:2], **spec[2]) for name, spec in urls.items()}
    assert small == large


def add_budgets(count: int) -> None:
    """Budgets of every period and scope kind; more than the fleet page shows."""
    scopes: list[dict[str, str]] = [
        {},
        {"agent": "agent-1"},
        {"model": "o3"},
        {"channel": "cli"},
        {"project": "/src/app"},
        {"agent": "agent-2", "model": "gpt-4o", "channel": "cli"},
    ]
    Budget.objects.bulk_create(
        Budget(
            name=f"budget {n:03}",
            period=("day", "week", "month")[n % 3],
            amount_usd=Decimal(n + 1),
            **scopes[n % len(scopes)],
        )
        for n in range(count)
    )


def test_the_fleet_page_and_its_fragments_cost_the_same_at_any_size(admin_client: Client) -> None:
    at_two_sizes(
        admin_client,
        {
            "page": ("/", PAGE_BUDGET, {}),
            "filtered": ("/?status=active&sort=-cost&q=session&page=2", PAGE_BUDGET, {}),
            "live poll": ("/?v=stale", PAGE_BUDGET, {**HX, "HTTP_HX_TARGET": "fleet-live"}),
            "table poll": ("/?v=stale", PAGE_BUDGET, {**HX, "HTTP_HX_TARGET": "sessions"}),
            "latency": ("/", PAGE_BUDGET, {**HX, "HTTP_HX_TARGET": "fleet-latency"}),
            "latency today": (
                "/?latency=today",
                PAGE_BUDGET,
                {**HX, "HTTP_HX_TARGET": "fleet-latency"},
            ),
        },
    )


# Issue 16's common filters, alone and combined.
TABLE_FILTERS: dict[str, dict[str, str]] = {
    "none": {},
    "agent": {"agent": "agent-1"},
    "status": {"status": "completed"},
    "channel": {"channel": "cli"},
    "model": {"model": "o3"},
    "project": {"project": "/src/app"},
    "state": {"state": "idle"},
    "text": {"q": "needle"},
}
TABLE_FILTERS["combined"] = {k: v for f in TABLE_FILTERS.values() for k, v in f.items()}


def grow_table(sessions: int) -> None:
    """Add ``sessions`` sessions, two in three matching every filter of
    ``TABLE_FILTERS`` (each filter has matches at any size), the rest none."""
    now = timezone.now()
    rows = []
    for index in range(sessions):
        n = next(_serial)
        match = index % 3 != 2
        rows.append(
            Session(
                key=f"needle-{n}" if match else f"other-{n}",
                name=f"session {n}",
                agent="agent-1" if match else "agent-2",
                model="o3" if match else "gpt-4o",
                channel="cli" if match else "telegram",
                project_root="/src/app" if match else "/src/other",
                status="completed" if match else "active",
                state="idle" if match else "running",
                turn_started_at=None if match else now,
                last_active_at=now - timedelta(minutes=n),
                turns=n % 13,
                message_count=n % 5,
                prompt_tokens=1000 + n,
                completion_tokens=100,
                cost_usd=Decimal(n % 7),
            )
        )
    Session.objects.bulk_create(rows)


@pytest.mark.parametrize("filters", TABLE_FILTERS.values(), ids=TABLE_FILTERS)
def test_the_sessions_table_costs_the_same_filtered_and_sorted_at_any_size(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch, filters: dict[str, str]
) -> None:
    # The larger fleet has more matches than the pager counts (and pages).
    monkeypatch.setattr(fleet_views, "TABLE_COUNT_CAP", 60)
    urls = {}
    for sort, _ in SORT_CHOICES:
        query = urlencode({**filters, "sort": sort, "page": 2})
        urls[f"page {sort}"] = (f"/?{query}", PAGE_BUDGET, {})
        table = {**HX, "HTTP_HX_TARGET": "sessions"}
        urls[f"table {sort}"] = (f"/?{query}&v=stale", PAGE_BUDGET, table)

    grow_table(3)
    small = {name: measure(admin_client, *spec[:2], **spec[2]) for name, spec in urls.items()}
    grow_table(147)
    large = {name: measure(admin_client, *spec[:2], **spec[2]) for name, spec in urls.items()}

    assert small == large


def test_the_fleet_page_costs_the_same_with_any_number_of_budgets(admin_client: Client) -> None:
    grow_fleet(10)
    urls = {
        "page": ("/", PAGE_BUDGET, {}),
        "live poll": ("/?v=stale", PAGE_BUDGET, {**HX, "HTTP_HX_TARGET": "fleet-live"}),
    }
    add_budgets(1)
    one = {name: measure(admin_client, *spec[:2], **spec[2]) for name, spec in urls.items()}
    Budget.objects.all().delete()
    add_budgets(PAGE_BUDGETS * 3)
    grow_fleet(500)
    many = {name: measure(admin_client, *spec[:2], **spec[2]) for name, spec in urls.items()}

    assert one == many
    # Budgets cost two queries: the budgets shown, and their spend.
    Budget.objects.all().delete()
    none = {name: measure(admin_client, *spec[:2], **spec[2]) for name, spec in urls.items()}
    assert {name: count - 1 for name, (count, _) in one.items()} == {
        name: count for name, (count, _) in none.items()
    }


def test_an_unchanged_fleet_poll_costs_one_query(admin_client: Client, frozen: None) -> None:
    grow_fleet(10)
    version = admin_client.get("/").context["version"]

    for target in ("fleet-live", "sessions"):
        count, status = measure(
            admin_client, f"/?v={version}", POLL_BUDGET, **HX, HTTP_HX_TARGET=target
        )
        assert (count, status) == (POLL_BUDGET, 204)


def test_the_session_page_costs_the_same_at_any_length(admin_client: Client) -> None:
    at_two_sizes(
        admin_client,
        {
            "page": ("/sessions/long/", PAGE_BUDGET, {}),
            "at": ("/sessions/long/?at=5", PAGE_BUDGET, {}),
            "earlier": ("/sessions/long/?before=9", PAGE_BUDGET, HX),
            "tail poll": ("/sessions/long/?tail=1&v=stale", PAGE_BUDGET, HX),
        },
    )


def test_an_unchanged_session_poll_costs_one_query(admin_client: Client, frozen: None) -> None:
    grow_transcript("long", 20)
    version = admin_client.get("/sessions/long/").context["version"]

    count, status = measure(admin_client, f"/sessions/long/?tail=1&v={version}", POLL_BUDGET, **HX)

    assert (count, status) == (POLL_BUDGET, 204)


def test_search_costs_the_same_at_any_size(admin_client: Client) -> None:
    at_two_sizes(admin_client, {"search": ("/search?q=needle+question", PAGE_BUDGET, {})})
