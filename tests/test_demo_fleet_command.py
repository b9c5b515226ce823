from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Count
from django.utils import timezone

from sessions import services
from sessions.budgets import budget_statuses
from sessions.choices import TOKEN_FIELDS, Channel, CostSource, Kind, Role, State, Status
from sessions.demo.fleet import plan_session
from sessions.demo.text import HOSTILE
from sessions.models import Budget, Message, Session

pytestmark = pytest.mark.django_db


def demo(**options: object) -> str:
    out = StringIO()
    options = {"sessions": 16, "messages_per_session": 6, "seed": 7, **options}
    call_command("demo_fleet", stdout=out, **options)
    return out.getvalue()


def test_it_fills_every_kind_channel_status_and_state() -> None:
    demo()

    sessions = Session.objects.all()
    assert set(sessions.values_list("kind", flat=True)) == set(Kind.values)
    assert set(Channel.values) <= set(sessions.values_list("channel", flat=True))
    assert set(sessions.values_list("status", flat=True)) == set(Status.values)
    assert set(sessions.filter(status=Status.ACTIVE).values_list("state", flat=True)) == set(
        State.values
    )
    assert set(sessions.values_list("agent", flat=True)) == {"koda", "zeroclaw", "appam", "zeph"}


def test_it_leaves_running_stuck_stale_and_todays_sessions() -> None:
    demo()
    now = timezone.now()

    assert Session.objects.running().exists()
    assert Session.objects.stuck(older_than=timedelta(minutes=15)).exists()
    assert Session.objects.filter(state=State.RUNNING, turn_id="").count() == 0
    stale = Session.objects.stale(older_than=timedelta(minutes=30)).exclude(state=State.RUNNING)
    assert stale.exists()
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    assert Session.objects.filter(created_at__gte=today).exists()
    assert not Message.objects.filter(created_at__gt=now).exists()


def test_it_pairs_tool_calls_with_their_results() -> None:
    demo()

    finished = Session.objects.exclude(state=State.RUNNING)
    calls: dict[int, set[str]] = {}
    results: dict[int, set[str]] = {}
    for message in Message.objects.filter(session__in=finished):
        if message.role == Role.ASSISTANT:
            calls.setdefault(message.session_id, set()).update(message.tool_call_ids)
        elif message.role == Role.TOOL:
            results.setdefault(message.session_id, set()).add(message.tool_call_id)
    assert sum(len(ids) for ids in calls.values()) > 10
    for session_id in calls.keys() | results.keys():
        assert calls.get(session_id, set()) == results.get(session_id, set())


def test_it_gives_messages_sub_agents_reasoning_and_usage_within_the_rules() -> None:
    demo()

    messages = Message.objects.all()
    assert {"researcher", "reviewer"} & set(messages.values_list("agent_name", flat=True))
    assert messages.exclude(reasoning="").exists()
    assert messages.filter(cache_read_tokens__gt=0).exists()
    assert messages.filter(cache_creation_tokens__gt=0).exists()
    assert messages.filter(reasoning_tokens__gt=0).exists()
    for message in messages.exclude(cost_source=""):
        assert message.reasoning_tokens <= message.completion_tokens
        assert message.cache_read_tokens + message.cache_creation_tokens <= message.prompt_tokens
    long_results = [
        m for m in messages.filter(role=Role.TOOL) if (m.content or "").count("\n") >= 20
    ]
    assert long_results


def test_it_records_every_cost_source() -> None:
    demo()

    sources = set(Message.objects.values_list("cost_source", flat=True))
    assert {CostSource.REPORTED, CostSource.COMPUTED, CostSource.UNPRICED} <= sources
    assert Session.objects.filter(unpriced_calls__gt=0).exists()


def test_it_compacts_some_sessions() -> None:
    demo()

    compacted = Session.objects.filter(messages__compacted_at__isnull=False).distinct()
    assert compacted.exists()
    for session in compacted:
        summary = session.messages.get(is_summary=True)
        assert summary.role == Role.SYSTEM
        archived = session.messages.filter(compacted_at__isnull=False)
        assert archived.filter(seq__gt=summary.seq).count() == 0
        # Messages appended after the compaction are not archived.
        assert session.messages.filter(seq__gt=summary.seq).exists()


def test_session_totals_equal_the_sums_over_their_messages() -> None:
    demo(sessions=20, messages_per_session=8)

    checked = 0
    for session in Session.objects.exclude(messages__is_summary=True):
        messages = list(session.messages.all())
        with_usage = [m for m in messages if m.cost_source]
        assert session.message_count == len(messages)
        assert session.turns == sum(m.role == Role.ASSISTANT and bool(m.content) for m in messages)
        assert session.tool_call_count == sum(len(m.tool_calls) for m in messages)
        assert session.api_calls == len(with_usage)
        for name in TOKEN_FIELDS:
            assert getattr(session, name) == sum(getattr(m, name) for m in with_usage), name
        assert session.cost_usd == sum((m.cost_usd or Decimal(0) for m in messages), Decimal(0))
        checked += 1
    assert checked >= 15


def test_it_stores_a_session_full_of_hostile_markup() -> None:
    demo()

    hostile = Session.objects.get(name__contains="<script>alert(1)</script>")
    contents = " ".join(m.content or "" for m in hostile.messages.all())
    assert HOSTILE in contents
    assert "javascript:" in contents
    assert "<img src=x onerror=alert(1)>" in hostile.metadata["note"]


def test_it_prints_a_one_line_summary_with_counts() -> None:
    output = demo()

    lines = output.strip().splitlines()
    assert len(lines) == 1
    stored = Message.objects.count()
    assert lines[0].startswith("Created 16 demo sessions (")
    assert f"with {stored} messages" in lines[0]
    assert "(seed 7)" in lines[0]


def test_it_reports_progress_only_at_verbosity_2() -> None:
    quiet = demo(sessions=12, seed=1)
    loud = demo(sessions=12, seed=2, verbosity=2)

    assert "12/12 sessions" not in quiet
    assert "12/12 sessions" in loud


def test_if_empty_does_nothing_when_sessions_exist() -> None:
    services.session_upsert(key="existing", fields={"agent": "koda"})

    output = demo(if_empty=True)

    assert Session.objects.count() == 1
    assert Message.objects.count() == 0
    assert "already holds sessions" in output


def test_if_empty_fills_an_empty_database() -> None:
    demo(if_empty=True)

    assert Session.objects.count() == 16


def _fleet() -> dict[str, int]:
    return dict(Session.objects.values_list("key").annotate(n=Count("messages")))


def test_the_same_seed_gives_the_same_fleet() -> None:
    demo(seed=11)
    first = _fleet()
    Session.objects.all().delete()

    demo(seed=11)

    assert _fleet() == first
    assert len(first) == 16


def test_another_seed_gives_another_fleet() -> None:
    demo(seed=11)
    first = _fleet()

    demo(seed=12)

    assert len(set(_fleet()) - set(first)) == 16


def test_a_plan_does_not_depend_on_the_fleet_size() -> None:
    now = timezone.now()
    one = plan_session(20, seed=3, now=now, messages_per_session=10)
    again = plan_session(20, seed=3, now=now, messages_per_session=10)

    assert one.head.key == again.head.key
    assert one.messages == again.messages
    assert plan_session(21, seed=3, now=now).head.key != one.head.key


def test_it_refuses_to_load_the_same_seed_twice() -> None:
    demo(seed=5)

    with pytest.raises(CommandError, match="already loaded"):
        demo(seed=5)
    assert Session.objects.count() == 16


def test_unknown_sessions_spare_active_sessions_it_did_not_write() -> None:
    services.session_upsert(key="mine", fields={"agent": "zeph", "kind": "acp"})

    demo()

    assert Session.objects.get(key="mine").status == Status.ACTIVE
    assert Session.objects.filter(agent="zeph", status=Status.UNKNOWN).exists()


def test_it_spreads_history_over_the_given_days() -> None:
    demo(sessions=30, days=3)
    now = timezone.now()

    oldest = Session.objects.order_by("created_at").first()
    assert oldest.created_at >= now - timedelta(days=3, minutes=1)
    assert Message.objects.order_by("created_at").first().created_at >= oldest.created_at


def test_it_writes_sessions_without_messages() -> None:
    demo(messages_per_session=0)

    assert Session.objects.count() == 16
    assert Message.objects.count() == 0


@pytest.mark.parametrize(
    ("option", "value"),
    [("sessions", -1), ("messages_per_session", -3), ("days", 0), ("seed", -1)],
)
def test_it_refuses_bad_flags(option: str, value: int) -> None:
    with pytest.raises(CommandError):
        demo(**{option: value})
    assert not Session.objects.exists()


@pytest.mark.parametrize("clock", ["00:00:30", "00:05:00", "23:59:00"])
def test_todays_sessions_start_after_midnight_at_any_time_of_day(clock: str) -> None:
    from datetime import datetime

    from sessions.demo.heads import SHOWCASE, session_head

    now = datetime.fromisoformat(f"2026-11-22T{clock}+00:00")
    midnight = now.replace(hour=0, minute=0, second=0)
    for index, entry in enumerate(SHOWCASE):
        if entry[4].get("today"):
            head = session_head(index, seed=7, now=now)
            assert midnight <= head.created_at < head.last_active_at <= now


def test_it_sets_budgets_one_under_way_one_in_warning_one_exceeded() -> None:
    demo(sessions=40)

    statuses = {s.budget.name: s for s in budget_statuses(Budget.objects.all())}
    assert len(statuses) == 3
    states = sorted((s.exceeded, s.warning) for s in statuses.values())
    assert states == [(False, False), (False, True), (True, True)]
    assert all(s.spent > 0 for s in statuses.values())


def test_a_second_seed_leaves_the_budgets_it_found() -> None:
    demo()
    Budget.objects.filter(agent="").update(amount_usd=Decimal(123))

    demo(seed=8)

    assert Budget.objects.count() == 3
    assert Budget.objects.get(agent="", model="").amount_usd == Decimal(123)


def test_its_calls_and_tool_runs_are_timed_the_same_on_every_run() -> None:
    from sessions.models import LatencyUsage

    demo(sessions=8, messages_per_session=10, seed=4)
    timed = sorted(
        Message.objects.filter(duration_ms__isnull=False).values_list(
            "session__key", "seq", "duration_ms", "time_to_first_token_ms"
        )
    )
    kinds = set(LatencyUsage.objects.values_list("kind", flat=True))
    Message.objects.all().delete()
    Session.objects.all().delete()

    demo(sessions=8, messages_per_session=10, seed=4)

    assert {"call", "ttft", "tool"} <= kinds
    assert all(0 < row[2] < 10**7 for row in timed)
    assert (
        sorted(
            Message.objects.filter(duration_ms__isnull=False).values_list(
                "session__key", "seq", "duration_ms", "time_to_first_token_ms"
            )
        )
        == timed
    )
