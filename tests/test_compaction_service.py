"""``services.session_compact`` and ``selectors.compaction_stats``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from sessions import selectors, services
from sessions.bounds import MAX_COUNT
from sessions.choices import TOKEN_FIELDS
from sessions.errors import InvalidInput, SessionGone, SessionNotFound
from sessions.models import DailyUsage, Message, Session

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)


def rollup_rows() -> list[dict[str, Any]]:
    return list(DailyUsage.objects.order_by("day", "agent", "model", "channel").values())


def totals(key: str) -> dict[str, Any]:
    return Session.objects.filter(key=key).values(
        "turns", "tool_call_count", "api_calls", "unpriced_calls", "cost_usd", *TOKEN_FIELDS
    )[0]


def seed(key: str = "k", count: int = 6) -> Session:
    services.messages_append(
        key=key,
        session={"model": "gpt-4o"},
        now=T0,
        messages=[
            {
                "role": "user" if index % 2 == 0 else "assistant",
                "content": f"m{index + 1}",
                **(
                    {"usage": {"prompt_tokens": 10, "completion_tokens": 2, "cost_usd": "0.1"}}
                    if index % 2
                    else {}
                ),
            }
            for index in range(count)
        ],
    )
    return Session.objects.get(key=key)


def test_it_archives_all_but_keep_and_appends_the_summary() -> None:
    session = seed()

    archived = services.session_compact(key="k", summary="so far: m1..m4", keep=2, now=T1)

    assert archived == 4
    rows = list(Message.objects.filter(session=session).order_by("seq"))
    assert [m.seq for m in rows if m.compacted_at == T1] == [1, 2, 3, 4]
    assert [m.seq for m in rows if m.compacted_at is None] == [5, 6, 7]
    summary = rows[-1]
    assert (summary.seq, summary.role, summary.content, summary.is_summary) == (
        7,
        "system",
        "so far: m1..m4",
        True,
    )
    assert summary.created_at == T1


def test_the_context_view_places_the_summary_before_the_kept_messages() -> None:
    session = seed()
    services.session_compact(key="k", summary="summary", keep=2)

    context = selectors.messages_context(session)

    assert [m.content for m in context] == ["summary", "m5", "m6"]
    assert [m.seq for m in selectors.messages_all(session)] == [1, 2, 3, 4, 5, 6, 7]


def test_a_keep_past_the_count_bound_is_refused_whoever_calls() -> None:
    seed()

    with pytest.raises(InvalidInput) as refused:
        services.session_compact(key="k", summary="s", keep=MAX_COUNT + 1)

    assert (refused.value.field, refused.value.message) == ("keep", f"must be at most {MAX_COUNT}")
    assert not Message.objects.filter(compacted_at__isnull=False).exists()
    assert services.session_compact(key="k", summary="s", keep=MAX_COUNT) == 0


def test_keep_zero_archives_every_active_message() -> None:
    session = seed(count=3)

    assert services.session_compact(key="k", summary="all", keep=0) == 3

    assert [m.content for m in selectors.messages_context(session)] == ["all"]


def test_a_second_compaction_archives_the_first_summary() -> None:
    session = seed()
    services.session_compact(key="k", summary="first", keep=2)
    services.messages_append(key="k", messages=[{"role": "user", "content": "m8"}])

    assert services.session_compact(key="k", summary="second", keep=1) == 3

    assert [m.content for m in selectors.messages_context(session)] == ["second", "m8"]


@pytest.mark.parametrize("keep", [0, 2])
def test_a_retried_compaction_changes_nothing(keep: int) -> None:
    session = seed()
    first = services.session_compact(key="k", summary="summary", keep=keep, now=T1)
    before = list(Message.objects.filter(session=session).order_by("seq").values())

    assert services.session_compact(key="k", summary="summary", keep=keep, now=T1) == 0

    assert first == 6 - keep
    assert list(Message.objects.filter(session=session).order_by("seq").values()) == before
    assert Message.objects.filter(session=session, is_summary=True).count() == 1


def test_with_nothing_to_archive_it_writes_nothing() -> None:
    session = seed(count=2)

    assert services.session_compact(key="k", summary="s", keep=2, now=T1) == 0
    assert services.session_compact(key="k", summary="s", keep=5, now=T1) == 0

    session.refresh_from_db()
    assert session.message_count == 2
    assert session.last_active_at == T0
    assert not Message.objects.filter(is_summary=True).exists()


def test_compaction_keeps_totals_and_rollup() -> None:
    session = seed()
    before, rollup_before = totals("k"), rollup_rows()

    services.session_compact(key="k", summary="s", keep=1)

    assert totals("k") == before
    assert rollup_rows() == rollup_before
    session.refresh_from_db()
    # Archived messages are still stored; the summary is one more.
    assert session.message_count == Message.objects.filter(session=session).count() == 7


def test_compaction_moves_the_heartbeat() -> None:
    seed()

    services.session_compact(key="k", summary="s", keep=1, now=T1)

    assert Session.objects.get().last_active_at == T1


@pytest.mark.parametrize(
    ("keep", "summary", "field", "words"),
    [
        (-1, "s", "keep", "non-negative integer"),
        ("2", "s", "keep", "non-negative integer"),
        (True, "s", "keep", "non-negative integer"),
        (1, "", "summary", "must not be empty"),
        (1, "   ", "summary", "must not be empty"),
        (1, None, "summary", "must not be empty"),
        (1, "nul\x00", "summary", "NUL"),
        (1, 42, "summary", "must be a string"),
    ],
)
def test_it_refuses_bad_arguments_and_writes_nothing(
    keep: Any, summary: Any, field: str, words: str
) -> None:
    seed()
    rollup_before = rollup_rows()

    with pytest.raises(InvalidInput) as caught:
        services.session_compact(key="k", summary=summary, keep=keep)

    assert caught.value.field == field
    assert words in caught.value.message
    assert not Message.objects.filter(compacted_at__isnull=False).exists()
    assert Message.objects.count() == 6
    assert rollup_rows() == rollup_before


def test_it_refuses_unknown_and_deleted_sessions() -> None:
    with pytest.raises(SessionNotFound):
        services.session_compact(key="nope", summary="s", keep=0)
    seed()
    services.session_delete(key="k")
    with pytest.raises(SessionGone):
        services.session_compact(key="k", summary="s", keep=0)


def test_compaction_stats_count_archived_messages() -> None:
    first = seed("a")
    seed("b")
    seed("c")
    services.session_compact(key="a", summary="s", keep=2, now=T1)
    services.session_compact(key="b", summary="s", keep=5, now=T1 + timedelta(hours=1))

    stats = selectors.compaction_stats()

    assert stats.archived_messages == 4 + 1
    assert stats.sessions_with_archived == 2
    assert stats.archived_bytes == len("m1m2m3m4") + len("m1")
    assert stats.oldest_archived_at == T1
    assert stats.newest_archived_at == T1 + timedelta(hours=1)
    assert selectors.compaction_stats(first).archived_messages == 4


def test_compaction_stats_limited_to_agents() -> None:
    for key, agent in (("a", "alpha"), ("b", "beta")):
        services.messages_append(
            key=key,
            session={"agent": agent},
            messages=[{"role": "user", "content": "x"}, {"role": "user", "content": "y"}],
        )
        services.session_compact(key=key, summary="s", keep=1)

    assert selectors.compaction_stats(agents=["alpha"]).archived_messages == 1
    assert selectors.compaction_stats(agents=["alpha", "beta"]).archived_messages == 2
    assert selectors.compaction_stats(agents=["gamma"]).sessions_with_archived == 0


def test_compaction_stats_count_bytes_not_characters() -> None:
    services.messages_append(
        key="k",
        messages=[{"role": "user", "content": "héllo ✓"}, {"role": "assistant", "content": None}],
    )
    services.messages_append(key="k", messages=[{"role": "user", "content": "keep"}])
    services.session_compact(key="k", summary="s", keep=1)

    stats = selectors.compaction_stats()

    assert stats.archived_messages == 2
    assert stats.archived_bytes == len("héllo ✓".encode())


def test_compaction_stats_are_empty_without_archives() -> None:
    seed()

    stats = selectors.compaction_stats()

    assert (stats.archived_messages, stats.sessions_with_archived, stats.archived_bytes) == (
        0,
        0,
        0,
    )
    assert stats.oldest_archived_at is None


def test_summary_is_part_of_the_spending_history_only_by_its_usage() -> None:
    seed()
    cost_before = Session.objects.get().cost_usd

    services.session_compact(key="k", summary="s", keep=0)

    assert Session.objects.get().cost_usd == cost_before == Decimal("0.3")


def test_removing_the_summary_leaves_the_rollup_as_it_was() -> None:
    seed()
    rollup_before = rollup_rows()
    services.session_compact(key="k", summary="s", keep=1)

    assert services.message_remove_last(key="k") is True

    assert rollup_rows() == rollup_before
    assert not Message.objects.filter(is_summary=True).exists()


def test_an_import_archives_stored_messages_at_the_stores_time_and_never_unarchives() -> None:
    seed(count=4)
    ids = dict(Message.objects.values_list("seq", "id"))
    Message.objects.filter(id=ids[1]).update(compacted_at=T0, message_id="a")
    Message.objects.filter(id=ids[2]).update(message_id="b")
    Message.objects.filter(id=ids[3]).update(message_id="c")
    before, rollup_before = totals("k"), rollup_rows()

    done = services.messages_archive_stored(key="k", archived={"a": T1, "b": T1, "missing": T1})

    assert (done.archived, done.summaries) == (1, 0)
    stored = dict(Message.objects.values_list("message_id", "compacted_at"))
    # Already archived keeps its time; only the active one moves to the archive.
    assert (stored["a"], stored["b"], stored["c"]) == (T0, T1, None)
    assert totals("k") == before
    assert rollup_rows() == rollup_before
    assert services.messages_archive_stored(key="k", archived={"b": T1}).archived == 0
