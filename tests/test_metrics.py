"""``GET /metrics``: Prometheus text, behind a bearer token, read from the database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from sessions import fleet_stats, selectors, services
from sessions.choices import State
from sessions.models import Message, Session
from tests.ops_support import ago, make_session

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-tests"
AUTH = {"HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}


def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", **AUTH)
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def fleet() -> None:
    services.messages_append(
        key="a",
        session={"agent": "koda", "model": "gpt-4o", "channel": "cli"},
        messages=[
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "content": "hello",
                "usage": {
                    "prompt_tokens": 100,
                    "completion_tokens": 20,
                    "reasoning_tokens": 5,
                    "cache_read_tokens": 40,
                    "cache_creation_tokens": 10,
                    "cost_usd": "0.25",
                },
            },
        ],
    )
    services.messages_append(
        key="b",
        session={"agent": "zeroclaw", "model": "local/llama-3.3-70b"},
        messages=[
            {
                "role": "assistant",
                "content": "x",
                "usage": {"prompt_tokens": 7, "completion_tokens": 3},
            }
        ],
    )
    make_session("stale", at=ago(hours=2), agent="koda", model="gpt-4o", count=0)
    make_session(
        "stuck",
        at=ago(minutes=20),
        count=0,
        state=State.RUNNING,
        turn_id="t",
        turn_started_at=ago(minutes=20),
    )
    make_session("done", at=ago(days=1), count=0, status="completed")


@override_settings(FLEET_METRICS_TOKEN="")
def test_it_is_off_when_no_token_is_set(client: Client) -> None:
    assert client.get("/metrics", **AUTH).status_code == 404


@override_settings(FLEET_METRICS_TOKEN=TOKEN)
@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer", f"Token {TOKEN}"],
)
def test_a_missing_or_wrong_token_is_refused(client: Client, header: str | None) -> None:
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}

    response = client.get("/metrics", **extra)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"fleet_" not in response.content


@override_settings(FLEET_METRICS_TOKEN=TOKEN)
def test_it_needs_no_dashboard_log_in_and_speaks_prometheus(client: Client) -> None:
    response = client.get("/metrics", **AUTH)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b"# TYPE fleet_sessions gauge" in response.content
    assert b"# TYPE fleet_cost_usd_total counter" in response.content


@override_settings(FLEET_METRICS_TOKEN=TOKEN)
def test_it_speaks_openmetrics_when_asked(client: Client) -> None:
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"

    response = client.get("/metrics", HTTP_ACCEPT=accept, **AUTH)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    assert response.content.endswith(b"# EOF\n")


@override_settings(FLEET_METRICS_TOKEN=TOKEN, FLEET_STALE_AFTER=1800, FLEET_STUCK_AFTER=900)
def test_gauges_count_sessions_by_status_state_stuck_and_stale(client: Client) -> None:
    fleet()

    samples = scrape(client)

    assert value(samples, "fleet_sessions", status="active") == 4
    assert value(samples, "fleet_sessions", status="completed") == 1
    assert value(samples, "fleet_sessions", status="unknown") == 0
    assert value(samples, "fleet_active_sessions", state="running") == 1
    assert value(samples, "fleet_active_sessions", state="idle") == 3
    assert value(samples, "fleet_sessions_stuck") == 1
    assert value(samples, "fleet_sessions_stale") == 1
    assert value(samples, "fleet_messages_stored") == 3


@override_settings(FLEET_METRICS_TOKEN=TOKEN, FLEET_STUCK_AFTER=900)
def test_a_long_turn_that_keeps_writing_is_a_stuck_gauge(client: Client) -> None:
    # The dashboard's rule, not reconcile's narrower "stuck and silent".
    make_session("busy", at=ago(minutes=1), state=State.RUNNING, turn_started_at=ago(hours=1))

    assert value(scrape(client), "fleet_sessions_stuck") == 1


@override_settings(FLEET_METRICS_TOKEN=TOKEN)
def test_counters_give_tokens_by_kind_and_cost_by_model_and_agent(client: Client) -> None:
    fleet()

    samples = scrape(client)

    koda = {"agent": "koda", "model": "gpt-4o"}
    assert value(samples, "fleet_cost_usd_total", **koda) == 0.25
    assert value(samples, "fleet_messages_total", **koda) == 2
    assert value(samples, "fleet_api_calls_total", **koda) == 1
    assert value(samples, "fleet_tokens_total", kind="prompt", **koda) == 100
    assert value(samples, "fleet_tokens_total", kind="completion", **koda) == 20
    assert value(samples, "fleet_tokens_total", kind="reasoning", **koda) == 5
    assert value(samples, "fleet_tokens_total", kind="cache_read", **koda) == 40
    assert value(samples, "fleet_tokens_total", kind="cache_creation", **koda) == 10
    local = {"agent": "zeroclaw", "model": "local/llama-3.3-70b"}
    assert value(samples, "fleet_unpriced_calls_total", **local) == 1
    assert value(samples, "fleet_cost_usd_total", **local) == 0
    assert value(samples, "fleet_sessions_started_total", **local) == 1


@override_settings(FLEET_METRICS_TOKEN=TOKEN)
def test_scrapes_read_the_database_and_keep_nothing_in_the_process(client: Client) -> None:
    fleet()
    before = {metric.name for metric in REGISTRY.collect()}

    first = scrape(client)
    second = scrape(client)

    assert first == second  # nothing accumulates between scrapes
    assert {metric.name for metric in REGISTRY.collect()} == before
    assert not any(name.startswith("fleet") for name in before)
    services.messages_append(key="a", messages=[{"role": "user", "content": "more"}])
    assert value(scrape(client), "fleet_messages_stored") == 4


@override_settings(FLEET_METRICS_TOKEN=TOKEN)
def test_cost_counters_survive_a_purge(client: Client) -> None:
    fleet()
    before = scrape(client)
    Session.objects.update(last_active_at=ago(days=100))

    call_command("purge", "--older-than", "30d", stdout=None)

    after = scrape(client)
    assert value(after, "fleet_sessions", status="active") == 0
    for name in ("fleet_cost_usd_total", "fleet_tokens_total", "fleet_messages_total"):
        assert {k: v for k, v in after.items() if k[0] == name} == {
            k: v for k, v in before.items() if k[0] == name
        }


@override_settings(FLEET_METRICS_TOKEN=TOKEN)
def test_hostile_agent_names_are_escaped(client: Client) -> None:
    name = 'evil"} fleet_sessions{status="active"} 1e9 \\'
    services.messages_append(
        key="h",
        session={"agent": name},
        messages=[{"role": "assistant", "content": "x", "usage": {"cost_usd": "1"}}],
    )

    samples = scrape(client)

    assert value(samples, "fleet_cost_usd_total", agent=name, model="") == 1
    assert value(samples, "fleet_sessions", status="active") == 1


@override_settings(FLEET_METRICS_TOKEN=TOKEN)
def test_the_number_of_queries_does_not_grow_with_the_data(
    client: Client, django_assert_max_num_queries: Callable[..., Any]
) -> None:
    fleet()
    # The session counts, the active sessions in error, the messages stored,
    # the daily rollup, the latency rollup.
    with django_assert_max_num_queries(5):
        client.get("/metrics", **AUTH)
    for index in range(20):
        services.messages_append(
            key=f"more-{index}",
            session={"agent": f"agent-{index}", "model": f"model-{index % 3}"},
            messages=[{"role": "assistant", "content": "x", "usage": {"cost_usd": "0.01"}}],
            now=ago(days=index) + timedelta(seconds=1),
        )
    with django_assert_max_num_queries(5):
        response = client.get("/metrics", **AUTH)
    assert b'agent="agent-19"' in response.content


@override_settings(FLEET_METRICS_TOKEN=TOKEN)
def test_cost_is_exact_to_the_cent_of_the_rollup(client: Client) -> None:
    for index in range(10):
        services.messages_append(
            key=f"k{index}",
            session={"agent": "a", "model": "m"},
            messages=[{"role": "assistant", "content": "x", "usage": {"cost_usd": "0.1"}}],
        )

    samples = scrape(client)

    assert Decimal(str(value(samples, "fleet_cost_usd_total", agent="a", model="m"))) == Decimal(
        "1"
    )


@override_settings(FLEET_METRICS_TOKEN=TOKEN)
def test_latency_is_a_histogram_with_the_same_exact_buckets_for_every_series(
    client: Client,
) -> None:
    from fleet.metrics import PROMETHEUS_BOUNDS

    services.messages_append(
        key="t",
        session={"agent": "koda", "model": "gpt-4o"},
        messages=[
            *(
                {"role": "assistant", "content": "a", "duration_ms": ms}
                for ms in (5, 100, 110, 3000)
            ),
            {"role": "tool", "name": "grep", "tool_call_id": "c", "content": "", "duration_ms": 0},
        ],
    )

    samples = scrape(client)

    call = {"kind": "call", "model": "gpt-4o", "tool": ""}
    assert value(samples, "fleet_latency_seconds_count", **call) == 4
    assert value(samples, "fleet_latency_seconds_sum", **call) == pytest.approx(3.215)
    assert value(samples, "fleet_latency_seconds_bucket", **call, le="0.001") == 0
    assert value(samples, "fleet_latency_seconds_bucket", **call, le="0.023") == 1
    # le is inclusive: 110 ms is at most 0.11 s (a bucket bound), so 5, 100 and 110 count.
    assert value(samples, "fleet_latency_seconds_bucket", **call, le="0.11") == 3
    assert value(samples, "fleet_latency_seconds_bucket", **call, le="1.874") == 3
    assert value(samples, "fleet_latency_seconds_bucket", **call, le="7.514") == 4
    assert value(samples, "fleet_latency_seconds_bucket", **call, le="+Inf") == 4
    buckets = [
        labels
        for (name, labels) in samples
        if name == "fleet_latency_seconds_bucket" and ("kind", "tool") in labels
    ]
    assert len(buckets) == len(PROMETHEUS_BOUNDS)
    # A tool run's series is by tool name, every model together.
    tool = {"kind": "tool", "model": "", "tool": "grep"}
    assert value(samples, "fleet_latency_seconds_bucket", **tool, le="0.001") == 1


def test_the_histogram_has_prometheus_few_bounds_each_a_bucket_bound() -> None:
    from fleet.metrics import PROMETHEUS_BOUNDS
    from sessions.latency import BUCKET_UPPER

    # ~10-20 per series (Prometheus practice), each an exact sum of whole buckets.
    assert 10 <= len(PROMETHEUS_BOUNDS) <= 20
    assert set(PROMETHEUS_BOUNDS) <= set(BUCKET_UPPER)
    assert list(PROMETHEUS_BOUNDS) == sorted(set(PROMETHEUS_BOUNDS))
    assert PROMETHEUS_BOUNDS[-1] == BUCKET_UPPER[-1]


def latency_series(samples: dict[Any, float]) -> set[tuple[tuple[str, str], ...]]:
    return {labels for (name, labels) in samples if name == "fleet_latency_seconds_count"}


def timed_work(agents: range, tools: int = 3) -> None:
    for index in agents:
        services.messages_append(
            key=f"w{index}",
            session={"agent": f"agent-{index}", "model": "o3"},
            messages=[
                {"role": "assistant", "content": "a", "duration_ms": 40 + index * 97},
                *(
                    {
                        "role": "tool",
                        "name": f"tool-{tool}",
                        "tool_call_id": f"c{tool}",
                        "content": "",
                        "duration_ms": tool * 31 + index,
                    }
                    for tool in range(tools)
                ),
            ],
        )


@override_settings(FLEET_METRICS_TOKEN=TOKEN)
def test_the_latency_series_do_not_multiply_with_the_agents(client: Client) -> None:
    # Issue 16: at 1 M sessions (54 agents x 13 tools) a scrape was 3.4 MB,
    # ~30 000 samples, most of them fleet_latency_seconds per agent x tool.
    timed_work(range(2))
    with CaptureQueriesContext(connection) as few:
        small = scrape(client)
    timed_work(range(2, 40))
    with CaptureQueriesContext(connection) as many:
        large = scrape(client)

    assert len(many) == len(few) <= 5
    assert latency_series(large) == latency_series(small)
    assert len(latency_series(large)) == 1 + 3  # the model's calls, the three tools
    latency_samples = [key for key in large if key[0].startswith("fleet_latency_seconds")]
    assert len(latency_samples) == len([k for k in small if k[0].startswith("fleet_latency")])
    # What grows is only the usage counters, one set per agent x model used.
    grown = len(large) - len(small)
    per_pair = len([k for k in small if ("agent", "agent-0") in k[1]])
    assert grown == 38 * per_pair


@override_settings(FLEET_METRICS_TOKEN=TOKEN)
def test_each_cumulative_count_is_the_rollups_exact_count(client: Client) -> None:
    from fleet.metrics import PROMETHEUS_BOUNDS
    from sessions.latency import BUCKET_UPPER
    from sessions.models import LatencyUsage

    timed_work(range(7))
    services.messages_append(
        key="bounds",
        session={"agent": "edge", "model": "o3"},
        # On a bound, one past it, the largest duration stored, zero.
        messages=[
            {"role": "assistant", "content": "a", "duration_ms": ms}
            for ms in (*PROMETHEUS_BOUNDS[:4], PROMETHEUS_BOUNDS[3] + 1, 604_800_000, 0)
        ],
    )

    samples = scrape(client)

    # Every agent's rows of the per-agent rollup, summed here bucket by bucket.
    expected: dict[tuple[str, str, str], list[int]] = {}
    sums: dict[tuple[str, str, str], int] = {}
    for row in LatencyUsage.objects.all():
        tool = row.name if row.kind == LatencyUsage.Kind.TOOL else ""
        model = "" if row.kind in (LatencyUsage.Kind.TOOL, LatencyUsage.Kind.TURN) else row.model
        key = (row.kind, model, tool)
        counts = expected.setdefault(key, [0] * len(PROMETHEUS_BOUNDS))
        for index, bound in enumerate(PROMETHEUS_BOUNDS):
            if BUCKET_UPPER[row.bucket] <= bound:
                counts[index] += row.count
        sums[key] = sums.get(key, 0) + row.sum_ms
    assert len(expected) == 4
    for (kind, model, tool), counts in expected.items():
        labels = {"kind": kind, "model": model, "tool": tool}
        les = [str(bound / 1000) for bound in PROMETHEUS_BOUNDS[:-1]] + ["+Inf"]
        scraped = [value(samples, "fleet_latency_seconds_bucket", **labels, le=le) for le in les]
        assert scraped == counts
        assert value(samples, "fleet_latency_seconds_count", **labels) == counts[-1]
        assert (
            value(samples, "fleet_latency_seconds_sum", **labels)
            == sums[(kind, model, tool)] / 1000
        )


@override_settings(FLEET_METRICS_TOKEN=TOKEN)
def test_an_active_session_in_error_is_counted_apart_from_the_idle_ones(client: Client) -> None:
    fleet()
    make_session("broken", at=ago(minutes=1), count=0, state=State.ERROR)

    samples = scrape(client)

    assert value(samples, "fleet_active_sessions", state="error") == 1
    assert value(samples, "fleet_active_sessions", state="idle") == 3
    assert value(samples, "fleet_active_sessions", state="running") == 1


@override_settings(FLEET_METRICS_TOKEN=TOKEN)
def test_session_gauges_are_the_fleet_pages_session_counts(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 16: the same numbers as the fleet page's header, read the same
    # (cheap) way -- not an aggregate of their own over every session row.
    counts = {
        "total": 60,
        "by_status": {"active": 9, "completed": 40, "failed": 5, "cancelled": 4, "unknown": 2},
        "active": 9,
        "running": 3,
        "stuck": 2,
        "stale": 4,
        "today": 7,
    }
    monkeypatch.setattr(fleet_stats, "_session_counts", lambda now, agents: counts)

    samples = scrape(client)

    for status, count in counts["by_status"].items():
        assert value(samples, "fleet_sessions", status=status) == count
    assert value(samples, "fleet_active_sessions", state="running") == 3
    assert value(samples, "fleet_active_sessions", state="idle") == 6
    assert value(samples, "fleet_sessions_stuck") == 2
    assert value(samples, "fleet_sessions_stale") == 4


@override_settings(FLEET_METRICS_TOKEN=TOKEN)
def test_a_scrape_never_reads_every_session_row(client: Client) -> None:
    fleet()

    with CaptureQueriesContext(connection) as captured:
        samples = scrape(client)

    assert value(samples, "fleet_messages_stored") == 3
    sessions_table = connection.ops.quote_name(Session._meta.db_table)
    for query in captured:
        sql = query["sql"]
        # The old gauges: SUM(message_count) and COUNT … FILTER over the whole table.
        assert f"SUM({sessions_table}." not in sql, sql
        assert not (sessions_table in sql and "FILTER" in sql), sql


def grow(sessions: int, start: int = 0) -> None:
    for index in range(start, start + sessions):
        make_session(f"g{index}", at=ago(minutes=index % 90), count=1, agent=f"a{index % 4}")


@override_settings(FLEET_METRICS_TOKEN=TOKEN)
def test_a_scrape_costs_the_same_queries_at_any_size(client: Client) -> None:
    grow(3)
    with CaptureQueriesContext(connection) as small:
        scrape(client)
    grow(40, start=3)
    with CaptureQueriesContext(connection) as large:
        samples = scrape(client)

    assert value(samples, "fleet_sessions", status="active") == 43
    assert len(large) == len(small) <= 5


@override_settings(FLEET_METRICS_TOKEN=TOKEN)
def test_past_the_cap_messages_stored_is_postgresqls_estimate_not_a_count(
    client: Client, monkeypatch: pytest.MonkeyPatch, postgres_only: None
) -> None:
    fleet()
    monkeypatch.setattr(selectors, "MESSAGES_COUNTED_UP_TO", 2)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Message._meta.db_table}")
    assert selectors.messages_stored() == (3, False)
    # One more message on the same page: the statistics (one page, three rows)
    # do not see it until the next ANALYZE; a count would.
    services.messages_append(key="a", messages=[{"role": "user", "content": "more"}])

    samples = scrape(client)

    assert value(samples, "fleet_messages_stored") == 3


def test_up_to_the_cap_messages_stored_is_exact_whatever_the_statistics_say(
    monkeypatch: pytest.MonkeyPatch, on_postgres: bool
) -> None:
    fleet()
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Message._meta.db_table}")
    services.messages_append(key="a", messages=[{"role": "user", "content": "more"}])

    assert selectors.messages_stored() == (4, True)
    # The statistics say 3 rows, the cap is 3: counted (4 > 3, so past the cap).
    monkeypatch.setattr(selectors, "MESSAGES_COUNTED_UP_TO", 3)
    assert selectors.messages_stored() == (4, not on_postgres)


@override_settings(FLEET_METRICS_TOKEN=TOKEN)
def test_metrics_and_the_fleet_api_count_the_same_latency(client: Client) -> None:
    from sessions.models import ApiKey
    from tests.api_client import ApiClient

    # Two agents: /metrics and /fleet (a key that sees every agent) read the
    # fleet-wide rollup; per agent, /fleet with a key scoped to the agent.
    for agent, durations in (("koda", (40, 900, 5000)), ("zed", (70, 80))):
        services.messages_append(
            key=agent,
            session={"agent": agent, "model": "o3"},
            messages=[
                *({"role": "assistant", "content": "a", "duration_ms": ms} for ms in durations),
                {
                    "role": "tool",
                    "name": "grep",
                    "tool_call_id": "c",
                    "content": "",
                    "duration_ms": 9,
                },
            ],
        )
    every = ApiClient(ApiKey.generate(name="r", read_only=True)[1]).get("fleet").json()
    koda_key = ApiKey.generate(name="k", agents=["koda"], read_only=True)[1]
    koda = ApiClient(koda_key).get("fleet").json()
    samples = scrape(client)

    (model,) = every["latency"]["all_time"]["models"]
    (tool,) = every["latency"]["all_time"]["tools"]
    call = {"kind": "call", "model": "o3", "tool": ""}
    assert model["count"] == value(samples, "fleet_latency_seconds_count", **call) == 5
    assert tool["count"] == 2
    assert value(samples, "fleet_latency_seconds_count", kind="tool", model="", tool="grep") == 2
    assert model["mean_ms"] * model["count"] / 1000 == pytest.approx(
        value(samples, "fleet_latency_seconds_sum", **call)
    )
    # No agent label: per agent, the API's latency for a key scoped to it.
    assert not any(("agent", "koda") in labels for name, labels in samples if "latency" in name)
    (koda_model,) = koda["latency"]["all_time"]["models"]
    assert koda_model["count"] == 3
    assert koda_model["mean_ms"] == pytest.approx((40 + 900 + 5000) / 3, abs=0.1)


@pytest.mark.django_db
def test_the_latency_histogram_reads_one_covering_index_in_order_on_sqlite() -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from fleet.metrics import FleetCollector

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's plan: PostgreSQL chooses by its statistics")
    services.messages_append(
        key="t", messages=[{"role": "assistant", "content": "a", "duration_ms": 5}]
    )
    with CaptureQueriesContext(connection) as queries:
        list(FleetCollector(timezone.now())._latency())
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + queries.captured_queries[0]["sql"])
        plan = [row[-1] for row in cursor.fetchall()]

    # Every day's rows of the rollup without the agent, but no table row and
    # no sort: /metrics is scraped often.
    assert plan == [
        "SCAN agent_sessions_fleetlatencyusage USING COVERING INDEX fleetlatencyusage_panel_idx"
    ]
