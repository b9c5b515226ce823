"""bench/generate.py: the COPY bulk generator leaves a store the services could have written.

PostgreSQL only (it writes with COPY). Checked at a tiny size: every session's
totals are the sums of its messages, seq is 1..n, and every rollup's sums are
the messages' (and sessions') sums, for distinct sessions and for replicas.
"""

from __future__ import annotations

import importlib.util
from decimal import Decimal
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from sessions.models import (
    Budget,
    BudgetUsage,
    DailyUsage,
    FleetLatencyUsage,
    LatencyUsage,
    Message,
    MinuteUsage,
    Session,
    SessionTally,
)
from sessions.search import search_messages

_PATH = Path(__file__).resolve().parent.parent / "bench" / "generate.py"
_SPEC = importlib.util.spec_from_file_location("bench_generate", _PATH)
assert _SPEC
assert _SPEC.loader
generate_module = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(generate_module)

TOKENS = (
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
)


def _rows(sql: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return list(cursor.fetchall())


def _message_sums_per_session() -> dict[int, tuple]:
    usage = ", ".join(f"sum(CASE WHEN cost_source <> '' THEN {t} ELSE 0 END)" for t in TOKENS)
    rows = _rows(
        "SELECT session_id, count(*), min(seq), max(seq), count(DISTINCT seq), "  # noqa: S608
        "sum(CASE WHEN role = 'assistant' AND content <> '' THEN 1 ELSE 0 END), "
        "sum(jsonb_array_length(tool_calls)), "
        "sum(CASE WHEN cost_source <> '' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN cost_source = 'unpriced' THEN 1 ELSE 0 END), "
        f"coalesce(sum(cost_usd), 0), {usage} "
        "FROM agent_sessions_message GROUP BY session_id"
    )
    return {row[0]: row[1:] for row in rows}


@pytest.fixture
def generated(postgres_only):
    def run(sessions: int, distinct: int | None = None) -> dict:
        return generate_module.generate(
            sessions=sessions, per_session=10, seed=3, workers=1, chunk=7, distinct=distinct
        )

    return run


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("distinct", [None, 6], ids=["distinct", "replicas"])
def test_generated_totals_and_rollups_are_the_sums_of_the_messages(generated, distinct):
    started = timezone.now()
    figures = generated(20, distinct)

    assert figures["sessions"] == Session.objects.count() == 20
    assert figures["messages"] == Message.objects.count() > 100
    assert Session.objects.values("key").distinct().count() == 20
    # COPY fires the tally's triggers like any insert (migration 0017).
    per_status = Session.objects.values("agent", "status").annotate(n=Count("id")).order_by()
    assert {(r.agent, r.status, r.sessions) for r in SessionTally.objects.all()} == {
        (row["agent"], row["status"], row["n"]) for row in per_status
    }
    sums = _message_sums_per_session()
    for session in Session.objects.all():
        count, first, last, seqs, turns, tools, calls, unpriced, nanos, *tokens = sums.get(
            session.pk, (0, None, None, 0, 0, 0, 0, 0, 0, *(0 for _ in TOKENS))
        )
        assert session.message_count == count
        assert session.last_seq == (last or 0) == seqs  # gap-free: 1..n
        assert first in (None, 1)
        assert (session.turns, session.tool_call_count) == (turns, tools)
        assert (session.api_calls, session.unpriced_calls) == (calls, unpriced)
        assert session.cost_usd == Decimal(nanos) / 10**9
        assert [getattr(session, t) for t in TOKENS] == tokens
    sessions_total = [sum(getattr(s, t) for s in Session.objects.all()) for t in TOKENS]
    cost_total = sum(s.cost_usd for s in Session.objects.all())

    # The daily rollup: per UTC day × agent × model × channel, the messages' counts.
    per_day = dict(
        (tuple(row[:4]), row[4])
        for row in _rows(
            "SELECT (m.created_at AT TIME ZONE 'UTC')::date, s.agent, "
            "coalesce(nullif(m.model, ''), s.model), s.channel, count(*) "
            "FROM agent_sessions_message m JOIN agent_sessions_session s ON s.id = m.session_id "
            "GROUP BY 1, 2, 3, 4"
        )
    )
    daily = {
        (row.day, row.agent, row.model, row.channel): row.message_count
        for row in DailyUsage.objects.all()
        if row.message_count
    }
    assert daily == per_day
    assert sum(row.sessions_started for row in DailyUsage.objects.all()) == 20
    assert sum(row.cost_usd for row in DailyUsage.objects.all()) == cost_total
    assert [sum(getattr(r, t) for r in DailyUsage.objects.all()) for t in TOKENS] == (
        sessions_total
    )
    for span in BudgetUsage.Span.values:
        rows = BudgetUsage.objects.filter(span=span)
        assert sum(row.cost_usd for row in rows) == cost_total, span
        assert sum(row.prompt_tokens for row in rows) == sessions_total[0], span

    # The minute rollup holds the model calls of the last RECENT, minute by
    # minute ("recent" is the clock's during the run: between start and end).
    finished = timezone.now()
    calls = Message.objects.exclude(cost_source="")
    minutes = sum(row.api_calls for row in MinuteUsage.objects.all())
    assert calls.filter(created_at__gte=finished - MinuteUsage.RECENT).count() <= minutes
    assert minutes <= calls.filter(created_at__gte=started - MinuteUsage.RECENT).count()
    assert minutes > 0

    # Latency: one count per model call and per timed tool run.
    calls = Message.objects.filter(role="assistant", duration_ms__isnull=False)
    call_rows = LatencyUsage.objects.filter(kind=LatencyUsage.Kind.CALL)
    assert sum(row.count for row in call_rows) == calls.count() > 0
    assert sum(row.sum_ms for row in call_rows) == sum(calls.values_list("duration_ms", flat=True))
    tools = Message.objects.filter(role="tool", duration_ms__isnull=False)
    tool_rows = LatencyUsage.objects.filter(kind=LatencyUsage.Kind.TOOL)
    assert sum(row.count for row in tool_rows) == tools.count()
    # The fleet-wide copy (the fleet page's) holds the same counts.
    for kind, timed in ((LatencyUsage.Kind.CALL, calls), (LatencyUsage.Kind.TOOL, tools)):
        fleet_rows = FleetLatencyUsage.objects.filter(kind=kind)
        assert sum(row.count for row in fleet_rows) == timed.count()

    # Indexed for search (the generated column), budgets sized on the spend.
    assert search_messages("the")
    assert Budget.objects.exists()
    # The sequence continues after the copied ids.
    assert Session.objects.create(key="after-the-load").pk > max(sums)


@pytest.mark.django_db(transaction=True)
def test_a_store_that_holds_sessions_is_refused(generated):
    Session.objects.create(key="already-here")
    with pytest.raises(SystemExit, match="already holds sessions"):
        generated(3)
