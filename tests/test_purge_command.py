"""``manage.py purge`` and ``sessions.ops.purge``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management.base import CommandError
from django.db import connection
from django.db.models import Count, Q

from sessions import services
from sessions.budgets import budget_status
from sessions.choices import TOKEN_FIELDS
from sessions.errors import SessionGone
from sessions.models import Budget, BudgetUsage, Message, MinuteUsage, Session, Tombstone
from sessions.ops.purge import purge
from sessions.search import search_messages
from tests.ops_support import (
    ago,
    make_session,
    message_counts_agree,
    rollup_rows,
    run,
    run_in_processes,
    run_json,
)

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def keys() -> set[str]:
    return set(Session.objects.values_list("key", flat=True))


def totals(key: str) -> dict[str, Any]:
    return Session.objects.filter(key=key).values(
        "turns", "tool_call_count", "api_calls", "unpriced_calls", "cost_usd", "last_seq",
        *TOKEN_FIELDS,
    )[0]  # fmt: skip


def snapshot() -> tuple[Any, ...]:
    return (
        sorted(Session.objects.values_list("key", "message_count", "last_seq")),
        sorted(Message.objects.values_list("id", "compacted_at")),
        sorted(Tombstone.objects.values_list("key", "deleted_at")),
        rollup_rows(),
    )


def compacted(key: str, *, at: datetime, count: int = 6, keep: int = 2) -> Session:
    """A session of ``count`` messages, all but ``keep`` archived at ``at``."""
    make_session(key, at=at, count=count)
    services.session_compact(key=key, summary="summary so far", keep=keep, now=at)
    return Session.objects.get(key=key)


def test_it_needs_a_criterion() -> None:
    with pytest.raises(CommandError, match="give at least one criterion: --older-than"):
        run("purge")


def test_older_than_removes_old_sessions_of_any_status_with_their_messages() -> None:
    make_session("old-active", at=ago(days=40), count=4)
    make_session("old-done", at=ago(days=31), count=3, status="completed")
    make_session("old-unknown", at=ago(days=35), count=0, status="unknown")
    make_session("recent", at=ago(days=2), count=5)
    recent = Session.objects.get(key="recent")

    out = run("purge", "--older-than", "30d")

    assert keys() == {"recent"}
    assert Message.objects.count() == 5
    assert set(Message.objects.values_list("session_id", flat=True)) == {recent.pk}
    assert out.strip() == "Purged 3 sessions (with 7 messages); daily usage kept."


def test_the_cost_per_day_data_is_identical_after_a_purge() -> None:
    for index, days in enumerate((50, 40, 20, 3, 0)):
        make_session(f"s{index}", at=ago(days=days), count=6, model="gpt-4o")
    compacted("archived", at=ago(days=10))
    services.session_delete(key="s4")
    before = rollup_rows()
    assert before

    run(
        "purge", "--older-than", "7d", "--compacted-older-than", "0", "--tombstones-older-than", "0"
    )

    assert keys() == {"s3"}
    assert rollup_rows() == before


def test_the_latency_history_is_identical_after_a_purge() -> None:
    from sessions.models import FleetLatencyUsage, LatencyUsage, Turn

    timed = [
        {"role": "assistant", "content": "a", "duration_ms": 1200, "time_to_first_token_ms": 90},
        {"role": "tool", "name": "grep", "tool_call_id": "c1", "content": "x", "duration_ms": 40},
    ]
    for index, days in enumerate((50, 20, 0)):
        services.messages_append(
            key=f"s{index}", messages=timed, session={"agent": "koda"}, now=ago(days=days)
        )
    services.session_upsert(key="s0", fields={"state": "running"}, now=ago(days=50))
    services.session_upsert(key="s0", fields={"state": "idle"}, now=ago(days=49))
    before = list(LatencyUsage.objects.order_by("id").values())
    fleet_before = list(FleetLatencyUsage.objects.order_by("id").values())
    assert {row["kind"] for row in before} == {"call", "ttft", "tool", "turn"}
    assert {row["kind"] for row in fleet_before} == {"call", "ttft", "tool", "turn"}

    run("purge", "--older-than", "7d", "--compacted-older-than", "0")

    assert keys() == {"s2"}
    assert list(LatencyUsage.objects.order_by("id").values()) == before
    assert list(FleetLatencyUsage.objects.order_by("id").values()) == fleet_before
    # The purged session's own turn went with it.
    assert not Turn.objects.exists()


def test_a_purged_session_takes_its_otlp_sub_agent_waits_with_it() -> None:
    from sessions.models import SubAgentWait

    make_session("old", at=ago(days=40), count=2)
    make_session("recent", at=ago(days=2), count=2)
    for key in ("old", "recent"):
        SubAgentWait.objects.create(
            session=Session.objects.get(key=key),
            trace_id="ab" * 16,
            span_id=f"{len(key):016x}",
            awaited="cd" * 8,
            created_at=ago(days=1),
        )

    run("purge", "--older-than", "30d")

    assert keys() == {"recent"}
    assert list(SubAgentWait.objects.values_list("session__key", flat=True)) == ["recent"]


def test_a_purged_session_leaves_the_text_filter_s_index() -> None:
    from sessions import selectors

    make_session("old-purged-text", at=ago(days=40), count=2)
    make_session("recent-kept-text", at=ago(days=2), count=2)

    run("purge", "--older-than", "30d")

    # Counted in the text index alone (the triggers' table), not the sessions.
    assert selectors.session_matches(10, now=NOW, q="purged-text") == (0, True)
    assert selectors.session_matches(10, now=NOW, q="-text") == (1, True)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT key FROM agent_sessions_session_text")
            assert cursor.fetchall() == [("recent-kept-text",)]


def test_budgets_spend_the_same_after_a_purge() -> None:
    make_session("old", at=ago(days=10), count=6, model="gpt-4o")
    make_session("new", at=ago(minutes=5), count=6, model="gpt-4o")
    week = Budget.objects.create(name="two", period="week", amount_usd=Decimal(100))
    now = ago()

    def spend() -> tuple[Decimal, int, int]:
        status = budget_status(week, now)
        return status.spent, status.unpriced_calls, status.api_calls

    before = spend()
    rows = list(BudgetUsage.objects.order_by("span", "start").values())
    assert before[0] > 0

    run("purge", "--older-than", "7d", "--compacted-older-than", "0")

    assert keys() == {"new"}
    assert spend() == before
    assert list(BudgetUsage.objects.order_by("span", "start").values()) == rows


def test_a_session_exactly_at_the_cutoff_is_kept() -> None:
    make_session("at-cutoff", at=NOW - timedelta(days=7))
    make_session("just-older", at=NOW - timedelta(days=7, microseconds=1))

    result = purge(now=NOW, older_than=timedelta(days=7))

    assert result.sessions == 1
    assert keys() == {"at-cutoff"}


def test_older_than_zero_removes_every_session_not_written_since_it_started() -> None:
    make_session("a", at=NOW - timedelta(seconds=1))
    make_session("later", at=NOW + timedelta(seconds=1))

    purge(now=NOW, older_than=timedelta(0))

    assert keys() == {"later"}


def test_max_sessions_keeps_the_most_recently_active() -> None:
    for index in range(5):
        make_session(f"s{index}", at=ago(hours=10 - index), count=2)

    result = run_json("purge", "--max-sessions", "2")

    assert keys() == {"s3", "s4"}
    assert (result["sessions"], result["session_messages"]) == (3, 6)


def test_max_sessions_breaks_ties_of_last_activity_by_newest_id() -> None:
    for index in range(4):
        make_session(f"tie{index}", at=NOW - timedelta(hours=1))

    purge(now=NOW, max_sessions=3)

    assert keys() == {"tie1", "tie2", "tie3"}


def test_max_sessions_zero_removes_all_and_more_than_stored_removes_none() -> None:
    for index in range(3):
        make_session(f"s{index}", at=ago(hours=index + 1))

    assert run_json("purge", "--max-sessions", "5")["sessions"] == 0
    assert len(keys()) == 3
    assert run_json("purge", "--max-sessions", "0")["sessions"] == 3
    assert keys() == set()
    assert Message.objects.count() == 0


def test_older_than_and_max_sessions_together_remove_either() -> None:
    make_session("ancient", at=ago(days=100))
    for index in range(4):
        make_session(f"s{index}", at=ago(hours=index + 1))

    result = run_json("purge", "--older-than", "30d", "--max-sessions", "2")

    assert keys() == {"s0", "s1"}
    assert result["sessions"] == 3


def test_compacted_older_than_removes_archived_messages_and_keeps_totals() -> None:
    compacted("old-archive", at=ago(days=20), count=8, keep=2)
    compacted("new-archive", at=ago(days=1), count=6, keep=2)
    old_totals = totals("old-archive")
    before_count = Session.objects.get(key="old-archive").message_count
    assert before_count == 9  # 8 messages and the summary

    result = run_json("purge", "--compacted-older-than", "7d")

    old = Session.objects.get(key="old-archive")
    assert result["archived_messages"] == 6
    assert not Message.objects.filter(session=old, compacted_at__isnull=False).exists()
    assert Message.objects.filter(session=old).count() == 3
    assert old.message_count == 3
    assert totals("old-archive") == old_totals  # usage is history; last_seq stays
    assert Message.objects.filter(session__key="new-archive", compacted_at__isnull=False).count()
    assert message_counts_agree() == []


def test_compacted_older_than_zero_removes_every_archived_message() -> None:
    compacted("a", at=ago(days=20))
    compacted("b", at=ago(seconds=1))
    archived = Message.objects.filter(compacted_at__isnull=False).count()

    result = run_json("purge", "--compacted-older-than", "0")

    assert result["archived_messages"] == archived == 8
    assert not Message.objects.filter(compacted_at__isnull=False).exists()
    assert message_counts_agree() == []


def test_archived_purge_keeps_the_context_view_and_the_next_append_works() -> None:
    compacted("s", at=ago(days=10), count=6, keep=2)

    run("purge", "--compacted-older-than", "1d")
    result = services.messages_append(key="s", messages=[{"role": "user", "content": "next"}])

    assert result.first_seq == 8  # last_seq stayed at 7
    assert list(Message.objects.filter(session__key="s").order_by("seq").values_list("seq")) == [
        (5,),
        (6,),
        (7,),
        (8,),
    ]
    assert Session.objects.get(key="s").message_count == 4


def test_tombstones_older_than_removes_old_tombstones_only() -> None:
    for key in ("old", "new"):
        make_session(key, at=ago(days=1))
    services.session_delete(key="old", now=ago(days=100))
    services.session_delete(key="new", now=ago(days=1))

    result = run_json("purge", "--tombstones-older-than", "90d")

    assert result["tombstones"] == 1
    assert set(Tombstone.objects.values_list("key", flat=True)) == {"new"}
    # The purged tombstone's key is writable again; the other is still refused.
    services.messages_append(key="old", messages=[{"role": "user", "content": "back"}])
    with pytest.raises(SessionGone):
        services.messages_append(key="new", messages=[{"role": "user", "content": "no"}])


def test_purged_sessions_leave_no_tombstone_and_their_key_starts_afresh() -> None:
    make_session("telegram_user123", at=ago(days=60), count=4)

    run("purge", "--older-than", "30d")

    assert not Tombstone.objects.exists()
    result = services.messages_append(
        key="telegram_user123", messages=[{"role": "user", "content": "hello again"}]
    )
    assert result.created
    assert result.first_seq == 1


def test_dry_run_writes_nothing_and_reports_what_the_real_run_then_does() -> None:
    for index in range(3):
        make_session(f"old{index}", at=ago(days=40), count=3)
    compacted("old-compacted", at=ago(days=40), count=6)  # goes whole, with its archive
    compacted("kept-compacted", at=ago(days=20), count=6)
    make_session("tomb", at=ago(days=1))
    services.session_delete(key="tomb", now=ago(days=9))
    before = snapshot()
    args = ["--older-than", "30d", "--compacted-older-than", "7d", "--tombstones-older-than", "7d"]

    out = run("purge", *args, "--dry-run")
    dry = run_json("purge", *args, "-n")

    assert snapshot() == before
    assert out.strip() == (
        "Would purge 4 sessions (with 16 messages), 4 archived messages and 1 tombstone; "
        "daily usage kept."
    )
    real = run_json("purge", *args)
    counted = ("sessions", "session_messages", "archived_messages", "tombstones")
    assert [dry[name] for name in counted] == [real[name] for name in counted] == [4, 16, 4, 1]


def test_a_second_run_changes_nothing() -> None:
    make_session("old", at=ago(days=40))
    compacted("c", at=ago(days=20))
    args = ["--older-than", "30d", "--compacted-older-than", "7d"]
    run("purge", *args)
    after_first = snapshot()

    second = run_json("purge", *args)

    assert (second["sessions"], second["archived_messages"]) == (0, 0)
    assert snapshot() == after_first


def test_verbosity_2_lists_what_goes() -> None:
    make_session("old-one", at=ago(days=40))
    compacted("archived-one", at=ago(days=20), count=6, keep=2)

    dry = run("purge", "--older-than", "30d", "--compacted-older-than", "7d", "-n", "-v", "2")
    quiet = run("purge", "--older-than", "30d", "-n")
    real = run("purge", "--older-than", "30d", "--compacted-older-than", "7d", "-v", "2")

    assert "Would purge session: old-one" in dry
    assert "Would purge archived messages of: archived-one (4 messages)" in dry
    assert "old-one" not in quiet
    assert "Purged session: old-one" in real
    assert "Purged archived messages of: archived-one (4 messages)" in real


def test_small_batches_and_sessions_larger_than_a_batch_purge_the_same() -> None:
    for index in range(5):
        make_session(f"small{index}", at=ago(days=40), count=3)
    make_session("huge", at=ago(days=40), count=23)
    make_session("keep", at=ago(days=1), count=3)
    compacted("archive", at=ago(days=20), count=12, keep=2)

    result = run_json(
        "purge", "--older-than", "30d", "--compacted-older-than", "7d", "--batch-size", "4"
    )

    assert keys() == {"keep", "archive"}
    assert (result["sessions"], result["session_messages"]) == (6, 38)
    assert result["archived_messages"] == 10
    assert message_counts_agree() == []


def test_a_large_session_written_to_during_its_purge_keeps_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A session emptied over several batches re-checks the rule in each one."""
    from sessions.ops import purge as purge_module

    make_session("huge", at=NOW - timedelta(days=40), count=20)
    original = purge_module._decrement_message_counts
    calls = []

    def revive_after_first_batch(removed: dict[int, int]) -> None:
        original(removed)
        calls.append(removed)
        if len(calls) == 1:
            Session.objects.filter(key="huge").update(last_active_at=NOW)

    monkeypatch.setattr(purge_module, "_decrement_message_counts", revive_after_first_batch)

    result = purge(now=NOW, older_than=timedelta(days=30), size=5)

    assert result.sessions == 0
    assert result.session_messages == 5
    assert Session.objects.get(key="huge").message_count == 15
    assert message_counts_agree() == []


def test_it_never_builds_model_instances_of_the_rows_it_deletes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_session("old", at=ago(days=40), count=4)
    compacted("c", at=ago(days=20))
    services.session_delete(key="old")
    make_session("old2", at=ago(days=40), count=4)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("purge loaded a model instance")

    monkeypatch.setattr(Message, "from_db", classmethod(refuse))
    monkeypatch.setattr(Session, "from_db", classmethod(refuse))
    monkeypatch.setattr(Tombstone, "from_db", classmethod(refuse))

    result = run_json(
        "purge",
        "--older-than", "30d", "--compacted-older-than", "0", "--tombstones-older-than", "0",
    )  # fmt: skip

    assert (result["sessions"], result["archived_messages"], result["tombstones"]) == (1, 4, 1)


def test_purged_messages_leave_the_search_index() -> None:
    services.messages_append(
        key="old",
        messages=[{"role": "user", "content": "xylophone quartz"}],
        now=ago(days=40),
    )
    services.messages_append(
        key="new", messages=[{"role": "user", "content": "xylophone again"}], now=ago(days=1)
    )
    assert len(search_messages("xylophone")) == 2

    run("purge", "--older-than", "30d")

    results = search_messages("xylophone")
    assert [result.session.key for result in results] == ["new"]
    assert search_messages("quartz") == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "30"], "--older-than: expected a duration such as 90s"),
        (["--older-than", "a week"], "--older-than: expected a duration"),
        (["--compacted-older-than", "7x"], "--compacted-older-than: expected a duration"),
        (["--tombstones-older-than", ""], "--tombstones-older-than: expected a duration"),
        (["--max-sessions", "-1"], "--max-sessions must be a whole number, 0 or more"),
        (["--max-sessions", "ten"], "--max-sessions must be a whole number"),
        (["--older-than", "1d", "--batch-size", "0"], "--batch-size must be at least 1"),
    ],
)
def test_bad_input_is_a_command_error_and_writes_nothing(args: list[str], message: str) -> None:
    make_session("old", at=ago(days=400))
    compacted("c", at=ago(days=400))
    before = snapshot()

    with pytest.raises(CommandError, match=message):
        run("purge", *args)

    assert snapshot() == before


def test_bad_input_exits_non_zero_from_the_command_line() -> None:
    env = {**os.environ, "DJANGO_SECRET_KEY": "test-only", "FLEET_LOG_LEVEL": "ERROR"}

    done = subprocess.run(
        [sys.executable, "manage.py", "purge", "--older-than", "30"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert done.returncode == 1
    assert "--older-than: expected a duration such as 90s" in done.stderr
    assert done.stdout == ""


@pytest.mark.django_db(transaction=True)
def test_vacuum_runs_after_the_purge() -> None:
    make_session("old", at=ago(days=40), count=10)

    out = run("purge", "--older-than", "30d", "--vacuum")
    dry = run("purge", "--older-than", "30d", "--vacuum", "-n")

    assert out.strip().endswith("Vacuumed the database.")
    assert dry.strip().endswith("Would vacuum the database.")
    assert keys() == set()
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA freelist_count")
            assert cursor.fetchone()[0] == 0


# --- racing with appends in another process ------------------------------------------

ROUNDS = 30


def _append_rounds(keys: list[str]) -> None:
    for number in range(ROUNDS):
        for key in keys:
            services.messages_append(
                key=key,
                messages=[
                    {"role": "user", "content": f"{key} r{number}", "message_id": f"{key}-{number}"}
                ],
            )


def _purge_old_slowly() -> None:
    # Pages of 40 sessions, purged two at a time (20 messages each): a page is
    # chosen well before its last sessions are locked and deleted.
    run("purge", "--older-than", "7d", "--batch-size", "40")


@pytest.mark.django_db(transaction=True)
def test_purge_racing_appends_loses_no_message_of_recent_sessions() -> None:
    old = [f"old-{index:03d}" for index in range(80)]
    for index, key in enumerate(old):
        make_session(key, at=ago(days=30, minutes=-index), count=20)
    recent = [f"recent-{index}" for index in range(3)]
    for key in recent:
        make_session(key, at=ago(hours=1), count=2)
    # Written to while the purge runs: they are recent again and must keep it all.
    revived = old[24:40:2]

    run_in_processes((_append_rounds, (revived + recent,)), (_purge_old_slowly, ()))

    for key in recent + revived:
        stored = set(
            Message.objects.filter(session__key=key, message_id__isnull=False).values_list(
                "message_id", flat=True
            )
        )
        assert stored == {f"{key}-{number}" for number in range(ROUNDS)}, key
    for key in recent:
        assert Message.objects.filter(session__key=key).count() == ROUNDS + 2
    assert keys() >= set(recent + revived)
    assert not keys() & (set(old) - set(revived))
    assert message_counts_agree() == []


def test_a_session_written_to_after_its_page_was_chosen_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sessions.ops import purge as purge_module

    for index in range(4):
        make_session(f"old{index}", at=NOW - timedelta(days=30, minutes=-index), count=2)
    pages = purge_module._session_pages

    def write_after_choosing(rule: Q, size: int) -> Iterator[list]:
        for page in pages(rule, size):
            services.messages_append(
                key="old3", messages=[{"role": "user", "content": "late"}], now=NOW
            )
            yield page

    monkeypatch.setattr(purge_module, "_session_pages", write_after_choosing)

    result = purge(now=NOW, older_than=timedelta(days=7), size=10)

    assert result.sessions == 3
    assert keys() == {"old3"}
    assert Message.objects.filter(session__key="old3").count() == 3


def _append_to_compacted(keys: list[str]) -> None:
    for number in range(ROUNDS):
        for key in keys:
            services.messages_append(key=key, messages=[{"role": "user", "content": f"r{number}"}])
            if number % 10 == 9:
                services.session_compact(key=key, summary=f"after {number}", keep=3)


def _purge_archived_slowly() -> None:
    for _ in range(5):
        run("purge", "--compacted-older-than", "0", "--batch-size", "2")


@pytest.mark.django_db(transaction=True)
def test_archived_purge_racing_appends_and_compactions_keeps_counts_right() -> None:
    keys_ = [f"c{index}" for index in range(6)]
    for key in keys_:
        compacted(key, at=ago(days=3), count=10, keep=2)

    run_in_processes((_append_to_compacted, (keys_,)), (_purge_archived_slowly, ()))

    assert message_counts_agree() == []
    for key in keys_:
        session = Session.objects.get(key=key)
        live = Message.objects.filter(session=session, compacted_at__isnull=True).count()
        # Every message not archived survived: the newest 3 of the last compaction
        # plus its summary, at least.
        assert live >= 4
        assert session.last_seq == 11 + ROUNDS + 3


def _purge_into(path: Path) -> None:
    path.write_text(run("purge", "--older-than", "7d", "--batch-size", "2", "--json"))


@pytest.mark.django_db(transaction=True)
def test_two_copies_at_once_purge_each_session_once(tmp_path: Path) -> None:
    for index in range(80):
        make_session(f"old-{index}", at=ago(days=30), count=2)
    make_session("recent", at=ago(hours=1), count=2)
    first, second = tmp_path / "first.json", tmp_path / "second.json"

    run_in_processes((_purge_into, (first,)), (_purge_into, (second,)))

    reports = [json.loads(path.read_text()) for path in (first, second)]
    assert sum(report["sessions"] for report in reports) == 80
    assert sum(report["session_messages"] for report in reports) == 160
    assert keys() == {"recent"}
    assert Message.objects.values("session").annotate(n=Count("id")).get()["n"] == 2


def test_a_run_drops_minute_buckets_older_than_the_recent_window_and_a_dry_run_keeps_them() -> None:
    for minutes in (5, 90, 119):
        make_session(f"recent-{minutes}", at=ago(minutes=minutes))
    old = ago(minutes=130)
    MinuteUsage.objects.create(minute=old.replace(second=0, microsecond=0), agent="koda")
    assert MinuteUsage.objects.count() == 4

    run("purge", "--tombstones-older-than", "30d", "--dry-run")
    assert MinuteUsage.objects.count() == 4

    run("purge", "--tombstones-older-than", "30d")
    assert MinuteUsage.objects.filter(minute__lt=ago(minutes=120)).count() == 0
    assert MinuteUsage.objects.count() == 3
