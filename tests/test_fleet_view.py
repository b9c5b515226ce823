"""The fleet page (``/``): header totals, breakdowns, charts, the sessions table, polling."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from fleet.views.fleet import PAGE_BUDGETS
from sessions import services
from sessions.models import Budget, Session
from tests.clock import Clock

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}
LIVE = {**HX, "HTTP_HX_TARGET": "fleet-live"}
TABLE = {**HX, "HTTP_HX_TARGET": "sessions"}
LATENCY = {**HX, "HTTP_HX_TARGET": "fleet-latency"}


def add_session(key: str, *, messages: list[dict[str, Any]] | None = None, **fields: Any) -> None:
    services.messages_append(
        key=key,
        messages=messages or [{"role": "user", "content": "hello"}],
        session={"agent": "alpha", "model": "gpt-4o", "channel": "cli", **fields},
    )


def priced(cost: str, prompt: int = 100, completion: int = 50) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": "done",
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "cost_usd": cost},
    }


def test_it_shows_the_header_counts_the_database_holds(admin_client: Client) -> None:
    add_session("a1")
    add_session("a2", state="running")
    add_session("done", status="completed")
    add_session("crashed", status="unknown")

    response = admin_client.get("/")

    assert response.status_code == 200
    counts = response.context["counts"]
    assert (counts["active"], counts["running"], counts["by_status"]["unknown"]) == (2, 1, 1)
    assert counts["today"] == 4
    html = response.content.decode()
    assert '<span class="stat-n">2</span><span class="stat-l">active</span>' in html
    assert '<span class="stat-n">1</span><span class="stat-l">running</span>' in html


def test_it_shows_stuck_and_stale_sessions_from_the_thresholds(
    admin_client: Client, settings: Any
) -> None:
    settings.FLEET_STUCK_AFTER = 60
    settings.FLEET_STALE_AFTER = 120
    old = timezone.now() - timedelta(minutes=10)
    services.session_upsert(
        key="stuck",
        fields={"state": "running", "turn_started_at": old.isoformat(), "agent": "a"},
        now=old,
    )
    services.session_upsert(key="silent", fields={"agent": "a"}, now=old)
    add_session("fresh")

    counts = admin_client.get("/").context["counts"]

    assert (counts["stuck"], counts["stale"]) == (1, 2)
    stuck = admin_client.get("/?health=stuck").context["page"].object_list
    assert [s.key for s in stuck] == ["stuck"]


def test_it_shows_period_costs_and_never_shows_unpriced_usage_as_zero(
    admin_client: Client,
) -> None:
    add_session("paid", messages=[priced("0.25")])
    add_session(
        "free",
        model="no-such-model-xyz",
        messages=[
            {
                "role": "assistant",
                "content": "x",
                "usage": {"prompt_tokens": 5, "completion_tokens": 1},
            }
        ],
    )

    response = admin_client.get("/")

    today = dict(response.context["periods"])["Today"]
    assert today["cost_usd"] == Decimal("0.25")
    assert today["unpriced_calls"] == 1
    html = response.content.decode()
    assert "$0.25" in html
    assert "1 unpriced" in html
    free_row = next(s for s in response.context["page"].object_list if s.key == "free")
    assert free_row.unpriced_calls == 1
    # The unpriced session's cost cell says so instead of $0.00.
    row_html = html[html.index(">free<") :]
    row_html = row_html[: row_html.index("</tr>")]
    assert "unpriced" in row_html
    assert "$0.00" not in row_html


def test_it_breaks_usage_down_by_model_agent_and_channel(admin_client: Client) -> None:
    add_session("m1", model="gpt-4o", agent="alpha", messages=[priced("1.00")])
    add_session("m2", model="o3", agent="beta", channel="slack", messages=[priced("3.00")])

    response = admin_client.get("/")

    by_model, by_agent, by_channel = response.context["breakdowns"]
    assert [u.label for u in by_model.rows] == ["o3", "gpt-4o"]
    assert [u.cost_usd for u in by_agent.rows] == [Decimal(3), Decimal(1)]
    assert {u.label for u in by_channel.rows} == {"Slack", "CLI"}


def test_it_shows_latency_by_model_the_slowest_tools_and_turns(admin_client: Client) -> None:
    calls = [{"role": "assistant", "content": "a", "duration_ms": ms} for ms in (800, 900, 1000)]
    tools = [
        {"role": "tool", "name": name, "tool_call_id": f"c{i}", "content": "", "duration_ms": ms}
        for i, (name, ms) in enumerate((("grep", 40), ("pytest", 95_000)))
    ]
    add_session("t1", model="o3", state="running", messages=[*calls, *tools])
    services.session_upsert(key="t1", fields={"state": "idle"})

    response = admin_client.get("/", **LATENCY)

    assert [(m["model"], m["count"]) for m in response.context["latency_models"]] == [("o3", 3)]
    assert [t["name"] for t in response.context["latency_tools"]] == ["pytest", "grep"]
    assert response.context["latency_turns"]["count"] == 1
    html = response.content.decode()
    assert "Latency by model" in html
    from fleet.templatetags.fleet_tags import milliseconds
    from sessions.latency import BUCKET_UPPER, bucket_of

    # pytest's p95: the upper bound of the bucket holding 95 000 ms (1 min 35 s … +9 %).
    assert f'<td class="num">{milliseconds(BUCKET_UPPER[bucket_of(95_000)])}</td>' in html


def test_an_untimed_fleet_says_so_in_the_latency_panels(admin_client: Client) -> None:
    add_session("c1")

    html = admin_client.get("/", **LATENCY).content.decode()

    assert "No timed model calls in the last 30 days." in html
    assert "No timed tool runs in the last 30 days." in html


def latency_rows(day_offset: int, model: str, *durations: int, kind: str = "call") -> None:
    """Latency rollup rows (no messages), through the rollup's write path: what
    the panels and the chart read."""
    from sessions.rollups import Rollup

    rollup = Rollup()
    at = timezone.now() - timedelta(days=day_offset)
    for ms in durations:
        rollup.add_latency(
            at=at,
            agent="a",
            model=model if kind != "tool" else "",
            kind=kind,
            name=model if kind == "tool" else "",
            duration_ms=ms,
        )
    rollup.apply()


def test_the_latency_chart_draws_p50_and_p95_of_the_model_calls_per_day(
    admin_client: Client,
) -> None:
    from fleet.templatetags.fleet_tags import milliseconds
    from sessions.latency import BUCKET_UPPER, bucket_of

    add_session("c1")
    latency_rows(0, "o3", *([100] * 18), 5000, 5000)
    latency_rows(3, "gpt-4o", 200, 900)
    latency_rows(40, "gpt-4o", 60_000)  # older than the chart

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get("/", **LATENCY)

    chart = response.context["latency_chart"]
    assert chart.title == "Model call latency per day"
    # Two days, each a p50 bar and the p50 → p95 bar on top of it.
    titles = [bar.title for bar in chart.bars]
    assert len(titles) == 4

    def upper(ms: int) -> str:
        return milliseconds(BUCKET_UPPER[bucket_of(ms)])

    assert [t.split(" · ")[1] for t in titles] == [
        f"p50: {upper(200)}",
        f"p95: {upper(900)}",
        f"p50: {upper(100)}",
        f"p95: {upper(5000)}",
    ]
    html = response.content.decode()
    assert "Model call latency per day" in html
    # One query of the rollup for the panels and the chart, never the messages.
    latency = [q for q in queries.captured_queries if "latencyusage" in q["sql"]]
    assert len(latency) == 1
    assert not any("agent_sessions_message" in q["sql"] for q in latency)


def test_the_latency_panels_show_the_period_asked_for(admin_client: Client) -> None:
    add_session("c1")
    latency_rows(0, "o3", 100)
    latency_rows(20, "gpt-4o", 100, 100)
    latency_rows(20, "bash", 9000, kind="tool")

    month = admin_client.get("/", **LATENCY)
    today = admin_client.get("/?latency=today", **LATENCY)
    bogus = admin_client.get("/?latency=forever", **LATENCY)

    def models(response: Any) -> list[str]:
        return [m["model"] for m in response.context["latency_models"]]

    assert models(month) == ["gpt-4o", "o3"]
    assert models(today) == ["o3"]
    assert today.context["latency_tools"] == []
    assert models(bogus) == models(month)
    html = today.content.decode()
    assert "No timed tool runs today." in html
    # Each period is a link that keeps the rest of the page's query; the
    # chosen one is marked, and the section's own poll keeps asking for it.
    assert 'href="/?latency=last_7_days"' in html
    assert 'aria-current="true">Today</a>' in html
    assert 'hx-get="/?latency=today" hx-trigger="fleet:poll"' in html
    filtered = admin_client.get("/?status=active&latency=all_time").content.decode()
    assert 'href="/?status=active&amp;latency=today"' in filtered


def test_the_page_and_its_live_poll_leave_the_latency_rollup_to_the_latency_section(
    admin_client: Client,
) -> None:
    add_session("c1")
    latency_rows(0, "o3", 100)

    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get("/")
        live = admin_client.get("/?v=stale", **LIVE)

    assert not [q for q in queries.captured_queries if "latencyusage" in q["sql"]]
    html = page.content.decode()
    # The section loads itself once the page is shown, for the period of the URL.
    assert 'hx-get="/?latency=last_30_days" hx-trigger="load"' in html
    assert "Latency by model" not in html
    assert "Latency by model" not in live.content.decode()
    # Followed without htmx, a period link brings the section whole.
    assert "Latency by model" in admin_client.get("/?latency=today").content.decode()


def test_an_empty_fleet_has_no_latency_section(admin_client: Client) -> None:
    assert 'id="fleet-latency"' not in admin_client.get("/").content.decode()


def test_each_breakdown_sums_the_other_dimensions(admin_client: Client) -> None:
    add_session("a1", model="gpt-4o", agent="alpha", messages=[priced("1.00")])
    add_session("a2", model="o3", agent="alpha", channel="slack", messages=[priced("2.00")])
    add_session("b1", model="gpt-4o", agent="beta", channel="slack", messages=[priced("4.00")])

    response = admin_client.get("/")

    by_model, by_agent, by_channel = response.context["breakdowns"]
    assert [(u.label, u.cost_usd, u.sessions) for u in by_model.rows] == [
        ("gpt-4o", Decimal(5), 2),
        ("o3", Decimal(2), 1),
    ]
    assert [(u.label, u.cost_usd) for u in by_agent.rows] == [
        ("beta", Decimal(4)),
        ("alpha", Decimal(3)),
    ]
    assert [(u.label, u.cost_usd) for u in by_channel.rows] == [
        ("Slack", Decimal(6)),
        ("CLI", Decimal(1)),
    ]


def test_it_draws_the_cost_and_token_charts_as_svg(admin_client: Client) -> None:
    add_session("c1", messages=[priced("2.00")])

    response = admin_client.get("/")

    cost_chart = response.context["cost_chart"]
    assert len(cost_chart.bars) == 1
    assert cost_chart.series[0].label == "gpt-4o"
    html = response.content.decode()
    assert html.count('<svg class="chart-svg"') == 2
    assert "gpt-4o: $2.00</title>" in html


def budget_items(html: str) -> list[str]:
    return re.findall(r'<li class="budget[^"]*">.*?</li>', html, flags=re.S)


def test_each_budget_is_a_bar_of_its_spend_red_when_exceeded(admin_client: Client) -> None:
    add_session("c1", messages=[priced("3.00")])
    Budget.objects.create(name="alpha daily", agent="alpha", period="day", amount_usd=Decimal(2))
    Budget.objects.create(name="fleet month", period="month", amount_usd=Decimal(12))
    Budget.objects.create(
        name="o3 only", model="o3", period="week", amount_usd=Decimal(1), warning_percent=50
    )

    response = admin_client.get("/")

    alpha, fleet, o3 = budget_items(response.content.decode())
    assert 'class="budget exceeded"' in alpha
    assert '<rect class="bar-spent" width="100"' in alpha
    assert "$3.00</span> / $2.00" in alpha
    assert "agent alpha · day" in alpha
    assert 'class="budget"' in fleet
    assert '<rect class="bar-spent" width="25"' in fleet
    assert "whole fleet · month" in fleet
    assert '<rect class="bar-spent" width="0"' in o3
    assert "exceeded" not in fleet + o3


def test_a_budget_past_its_warning_share_is_marked(admin_client: Client) -> None:
    add_session("c1", messages=[priced("0.90")])
    Budget.objects.create(name="b", period="day", amount_usd=Decimal(1), warning_percent=80)

    (item,) = budget_items(admin_client.get("/").content.decode())

    assert 'class="budget warning"' in item
    assert "90 %" in item


def test_the_page_shows_a_bounded_number_of_budgets_and_links_the_rest(
    admin_client: Client,
) -> None:
    add_session("c1")
    Budget.objects.bulk_create(
        Budget(name=f"b{n:02}", amount_usd=Decimal(1)) for n in range(PAGE_BUDGETS + 1)
    )

    response = admin_client.get("/")

    assert len(budget_items(response.content.decode())) == PAGE_BUDGETS
    assert "/admin/agent_sessions/budget/" in response.content.decode()


def test_no_budgets_no_panel_and_one_query_to_know(admin_client: Client) -> None:
    add_session("c1")

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get("/", **LIVE)

    assert "Budgets" not in response.content.decode()
    assert sum("agent_sessions_budget" in q["sql"] for q in queries.captured_queries) == 1


def test_an_empty_fleet_shows_how_to_connect_an_agent(admin_client: Client) -> None:
    response = admin_client.get("/")

    html = response.content.decode()
    assert "No sessions yet" in html
    assert "Authorization: Bearer YOUR_API_KEY" in html
    assert "http://testserver/api/v1/sessions/my-first-session/messages" in html


def test_it_filters_the_table_and_reflects_the_filters_in_the_url(admin_client: Client) -> None:
    add_session("on-slack", channel="slack", agent="beta")
    add_session("on-cli", channel="cli", agent="alpha")

    response = admin_client.get("/?channel=slack&agent=beta&status=", **TABLE)

    assert response.status_code == 200
    assert b'href="/sessions/on-slack/"' in response.content
    assert b'href="/sessions/on-cli/"' not in response.content
    # The address bar gets the canonical URL: empty filters dropped.
    assert response["HX-Push-Url"] == "/?channel=slack&agent=beta"
    assert b"<html" not in response.content
    assert b'id="sessions"' in response.content


def test_it_searches_keys_names_and_goals_with_the_text_filter(admin_client: Client) -> None:
    add_session("k-one", name="Deploy the website")
    add_session("k-two", goal_text="Reconcile invoices")
    add_session("k-three")

    keys = lambda q: [s.key for s in admin_client.get(f"/?q={q}").context["page"].object_list]  # noqa: E731

    assert keys("website") == ["k-one"]
    assert keys("INVOICES") == ["k-two"]
    assert keys("k-three") == ["k-three"]


def test_a_text_filter_shorter_than_three_characters_is_reported_and_ignored(
    admin_client: Client,
) -> None:
    add_session("k-one", name="ab")
    add_session("k-two")

    response = admin_client.get("/?q=ab")

    assert response.status_code == 200
    errors = " ".join(response.context["form_errors"])
    assert "Text: type at least 3 characters" in errors
    # Refused rather than scanned for: the other filters still apply.
    assert {s.key for s in response.context["page"].object_list} == {"k-one", "k-two"}


def test_unknown_filter_values_are_a_form_error_not_a_500(admin_client: Client) -> None:
    add_session("s1")

    response = admin_client.get("/?status=exploded&kind=%00&sort=evil&page=abc&channel=fax")

    assert response.status_code == 200
    errors = " ".join(response.context["form_errors"])
    assert "exploded" in errors
    assert "fax" in errors
    # The valid part of the request still applies: every session is listed.
    assert [s.key for s in response.context["page"].object_list] == ["s1"]
    assert "ignored" in response.content.decode()


def test_a_bad_page_number_shows_a_page_instead_of_failing(admin_client: Client) -> None:
    add_session("s1")

    for page in ("0", "-3", "999999", "1e9", "x" * 500):
        response = admin_client.get(f"/?page={page}")
        assert response.status_code == 200
        assert response.context["page"].number == 1


def test_it_paginates_the_table(admin_client: Client) -> None:
    for index in range(55):
        add_session(f"p{index:02d}")

    first = admin_client.get("/")
    second = admin_client.get("/?page=2")

    assert len(first.context["page"].object_list) == 50
    assert [s.key for s in second.context["page"].object_list] == [
        f"p{i:02d}" for i in range(4, -1, -1)
    ]
    assert 'href="/?page=2"' in first.content.decode()


def test_the_full_page_counts_the_sessions_once(admin_client: Client) -> None:
    for index in range(55):
        add_session(f"p{index:02d}", status="completed" if index < 5 else "active")

    def pager_counts(url: str) -> tuple[int, int]:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(url)
        # The pager's count is bounded (a LIMIT); the header's counts are not.
        sql = [q["sql"].upper() for q in queries.captured_queries]
        counts = sum("COUNT(" in q and "LIMIT" in q for q in sql)
        return counts, response.context["page"].paginator.count

    # Unfiltered, the pager reuses the header's count of every session.
    assert pager_counts("/?page=2") == (0, 55)
    assert "51–55 of 55" in admin_client.get("/?page=2").content.decode()
    # Filtered (or the table alone), it counts what matches.
    assert pager_counts("/?status=completed") == (1, 5)
    assert pager_counts("/?sort=-cost") == (0, 55)


@pytest.mark.parametrize("headers", [{}, TABLE], ids=["page", "table"])
def test_a_filtered_table_counts_its_matches_only_up_to_the_cap(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch, headers: dict[str, str]
) -> None:
    from fleet.views import fleet as fleet_views

    monkeypatch.setattr(fleet_views, "TABLE_COUNT_CAP", 3)
    for index in range(5):
        add_session(f"c{index}", status="completed")

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get("/?status=completed", **headers)

    assert "<strong>3+</strong> sessions match" in response.content.decode()
    counting = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    counting = [sql for sql in counting if "LIMIT" in sql.upper()]
    assert len(counting) == 1
    assert "LIMIT 4" in counting[0].upper()


def test_a_count_within_the_cap_is_exact(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleet.views import fleet as fleet_views

    monkeypatch.setattr(fleet_views, "TABLE_COUNT_CAP", 3)
    for index in range(3):
        add_session(f"c{index}", status="completed")

    response = admin_client.get("/?status=completed")

    assert (response.context["count"], response.context["count_exact"]) == (3, True)
    assert "<strong>3</strong> sessions match" in response.content.decode()


@pytest.mark.parametrize("url", ["/?page=9", "/?status=completed&page=9"])
def test_the_pages_stop_at_the_cap_and_say_how_to_reach_the_rest(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    from fleet.views import fleet as fleet_views

    monkeypatch.setattr(fleet_views, "TABLE_COUNT_CAP", 5)
    monkeypatch.setattr(fleet_views, "PAGE_SIZE", 2)
    for index in range(8):
        add_session(f"p{index}", status="completed")

    response = admin_client.get(url)

    # Pages of 2 reach the 5 newest: page 3 holds the fifth, and is the last.
    page = response.context["page"]
    assert (page.number, [s.key for s in page.object_list]) == (3, ["p3"])
    assert not page.has_next()
    html = response.content.decode()
    assert "the pages stop at 5" in html
    # Unfiltered the count is still every session, exact.
    assert (response.context["count"], response.context["count_exact"]) == (
        (8, True) if "status" not in url else (5, False)
    )


@pytest.mark.parametrize("headers", [{}, TABLE], ids=["page", "table"])
def test_a_text_filter_counts_and_pages_only_to_the_text_cap(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch, headers: dict[str, str]
) -> None:
    from fleet.views import fleet as fleet_views

    monkeypatch.setattr(fleet_views, "TABLE_COUNT_CAP", 5)
    monkeypatch.setattr(fleet_views, "TEXT_COUNT_CAP", 3)
    monkeypatch.setattr(fleet_views, "PAGE_SIZE", 2)
    for index in range(8):
        add_session(f"p{index}", name=f"needle {index}", status="completed")

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get("/?q=needle&status=completed&page=9", **headers)

    # A search: the best 3 in the order, "3+", pages of 2 stopping at the third.
    html = response.content.decode()
    assert "<strong>3+</strong> sessions match" in html
    shown = [index for index in range(8) if f"needle {index}<" in html]
    assert shown == [5]
    assert "the pages stop at 3" in html
    sql = [q["sql"].upper() for q in queries.captured_queries]
    assert any("COUNT(" in q and "LIMIT 4" in q for q in sql)  # counted to the cap + 1
    # Without text the same filters count (and page) to the table's cap.
    response = admin_client.get("/?status=completed", **headers)
    assert "<strong>5+</strong> sessions match" in response.content.decode()


def test_a_text_filter_shows_its_cap_as_the_count(admin_client: Client) -> None:
    from fleet.views.fleet import PAGE_SIZE, TEXT_COUNT_CAP

    now = timezone.now()
    Session.objects.bulk_create(
        Session(key=f"s{n}", name=f"needle {n}", last_active_at=now)
        for n in range(TEXT_COUNT_CAP + 1)
    )

    html = admin_client.get("/?q=needle", **TABLE).content.decode()

    assert f"<strong>{TEXT_COUNT_CAP:,}+</strong> sessions match" in html
    assert f"of {TEXT_COUNT_CAP // PAGE_SIZE:,}+" in html  # page 1 of 20+


def test_the_table_poll_counts_every_session_when_unfiltered(admin_client: Client) -> None:
    for index in range(55):
        add_session(f"p{index:02d}")

    html = admin_client.get("/?v=stale", **TABLE).content.decode()

    assert "<strong>55</strong> sessions" in html
    assert "1–50 of 55<" in html


def test_the_table_poll_counts_from_the_tally_not_the_sessions(admin_client: Client) -> None:
    add_session("one")

    with CaptureQueriesContext(connection) as queries:
        html = admin_client.get("/?v=stale", **TABLE).content.decode()

    assert "<strong>1</strong> session" in html
    # No COUNT over the sessions: the tally's sum (migration 0017).
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert not [sql for sql in counts if 'agent_sessions_session"' in sql.split("FROM", 1)[1]]
    assert any("agent_sessions_sessiontally" in q["sql"] for q in queries.captured_queries)


@pytest.mark.parametrize("headers", [{}, TABLE], ids=["page", "table"])
def test_the_table_never_reads_metadata_or_todo(
    admin_client: Client, headers: dict[str, str]
) -> None:
    add_session("big", goal_text="ship it", metadata={"team": "core"}, todo="- [ ] tests")

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get("/?q=ship", **headers)

    assert 'href="/sessions/big/"' in response.content.decode()
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "agent_sessions_session" in sql
    assert '."metadata"' not in sql
    assert '."todo"' not in sql


def test_it_sorts_by_a_column_and_links_the_reverse_order(admin_client: Client) -> None:
    add_session("cheap", messages=[priced("0.01")])
    add_session("dear", messages=[priced("5.00")])
    add_session("middle", messages=[priced("1.00")])

    by_cost = admin_client.get("/?sort=-cost")
    ascending = admin_client.get("/?sort=cost")
    by_tokens = admin_client.get("/?sort=-tokens")

    assert [s.key for s in by_cost.context["page"].object_list] == ["dear", "middle", "cheap"]
    assert [s.key for s in ascending.context["page"].object_list] == ["cheap", "middle", "dear"]
    assert by_tokens.status_code == 200
    cost_column = next(c for c in by_cost.context["columns"] if c.sort == "cost")
    assert (cost_column.direction, cost_column.url) == ("desc", "?sort=cost")


def test_the_live_fragment_answers_204_when_nothing_changed(
    admin_client: Client, frozen: Clock
) -> None:
    add_session("s1")
    version = admin_client.get("/").context["version"]

    unchanged = admin_client.get(f"/?v={version}", **LIVE)
    frozen.advance(2)
    services.messages_append(key="s1", messages=[{"role": "user", "content": "more"}])
    changed = admin_client.get(f"/?v={version}", **LIVE)

    assert unchanged.status_code == 204
    assert unchanged.content == b""
    assert changed.status_code == 200
    assert changed.content.lstrip().startswith(b'<section id="fleet-live"')
    assert f"?v={version}".encode() not in changed.content  # it carries the new version


def test_the_table_poll_answers_204_when_nothing_changed_and_renders_changes(
    admin_client: Client, frozen: Clock
) -> None:
    add_session("s1")
    version = admin_client.get("/").context["version"]

    unchanged = admin_client.get(f"/?status=active&v={version}", **TABLE)
    add_session("s2")
    changed = admin_client.get(f"/?status=active&v={version}", **TABLE)

    assert unchanged.status_code == 204
    assert changed.status_code == 200
    assert b'href="/sessions/s2/"' in changed.content
    assert "HX-Push-Url" not in changed  # a poll never moves the address bar


def test_a_deletion_changes_the_fleet_version(admin_client: Client, frozen: Clock) -> None:
    add_session("old", messages=[{"role": "user", "content": "x"}])
    add_session("new")
    version = admin_client.get("/").context["version"]

    frozen.advance(1)
    services.session_delete(key="old")

    assert admin_client.get(f"/?v={version}", **LIVE).status_code == 200


def test_the_version_changes_every_minute_so_time_based_numbers_refresh(
    admin_client: Client, frozen: Clock
) -> None:
    add_session("s1")
    version = admin_client.get("/").context["version"]
    frozen.advance(50)
    same_minute = admin_client.get(f"/?v={version}", **LIVE)
    frozen.advance(10)
    next_minute = admin_client.get(f"/?v={version}", **LIVE)

    assert (same_minute.status_code, next_minute.status_code) == (204, 200)


def test_a_history_restore_request_gets_the_full_page(admin_client: Client) -> None:
    response = admin_client.get("/", **TABLE, HTTP_HX_HISTORY_RESTORE_REQUEST="true")

    assert b"<html" in response.content


def test_the_page_polls_at_the_configured_interval(admin_client: Client, settings: Any) -> None:
    settings.FLEET_POLL_SECONDS = 17
    add_session("s1")

    html = admin_client.get("/").content.decode()

    assert html.count('data-poll="17"') == 2
    assert 'hx-trigger="fleet:poll"' in html


def test_session_links_work_for_keys_with_slashes_and_odd_characters(
    admin_client: Client,
) -> None:
    add_session("team/bot 1?x=#y%")

    html = admin_client.get("/").content.decode()

    assert 'href="/sessions/team/bot%201%3Fx=%23y%25/"' in html


def test_a_user_with_the_view_permission_sees_the_page(
    client: Client, django_user_model: Any
) -> None:
    user = django_user_model.objects.create_user("viewer", password="pw-viewer-123")
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="agent_sessions", codename="view_session")
    )
    client.force_login(user)

    assert client.get("/").status_code == 200


def test_a_user_without_the_permission_gets_403(client: Client, django_user_model: Any) -> None:
    client.force_login(django_user_model.objects.create_user("nobody", password="pw-nobody-1"))

    response = client.get("/")

    assert response.status_code == 403
    assert b"Not allowed" in response.content


def test_it_lists_only_sessions_that_exist(admin_client: Client) -> None:
    add_session("kept")
    add_session("gone")
    services.session_delete(key="gone")

    keys = [s.key for s in admin_client.get("/").context["page"].object_list]

    assert keys == ["kept"]
    assert Session.objects.count() == 1


def test_a_long_turn_that_keeps_writing_shows_as_stuck(admin_client: Client, settings: Any) -> None:
    settings.FLEET_STUCK_AFTER = 60
    old = timezone.now() - timedelta(minutes=10)
    services.session_upsert(
        key="busy", fields={"state": "running", "turn_started_at": old.isoformat()}, now=old
    )
    Session.objects.filter(key="busy").update(last_active_at=timezone.now())

    assert admin_client.get("/").context["counts"]["stuck"] == 1
    stuck = admin_client.get("/?health=stuck").context["page"].object_list
    assert [s.key for s in stuck] == ["busy"]


def test_reported_totals_without_a_cost_for_an_unpriced_model_show_as_unpriced(
    admin_client: Client,
) -> None:
    services.session_upsert(
        key="reported",
        fields={"model": "no-such-model-xyz", "prompt_tokens": 100, "completion_tokens": 5},
    )

    response = admin_client.get("/")

    assert dict(response.context["periods"])["Today"]["unpriced_calls"] == 1
    html = response.content.decode()
    row_html = html[html.index(">reported<") :]
    row_html = row_html[: row_html.index("</tr>")]
    assert "unpriced" in row_html
    assert "$0.00" not in row_html
