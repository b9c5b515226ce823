"""import_sessions zeph: session totals from zeph's agent_sessions table."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.db.models import Sum

from sessions.models import DailyUsage, Message, Session
from tests.import_stores import run_import, snapshot, zeph_store

pytestmark = pytest.mark.django_db


def row(**values: Any) -> dict[str, Any]:
    return {
        "id": "zeph-1",
        "kind": "acp",
        "status": "active",
        "channel": "acp",
        "model": "claude-sonnet-4-5",
        "created_at": "2026-03-01T12:00:00",
        "last_active_at": "2026-03-01T12:30:00",
        "turns": 7,
        "prompt_tokens": 12000,
        "completion_tokens": 3000,
        "reasoning_tokens": 500,
        "cost_cents": 12.34,
        "goal_text": "Refactor the parser",
        **values,
    }


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return zeph_store(
        tmp_path / "zeph.db",
        [
            row(),
            row(
                id="zeph-2",
                status="completed",
                kind="autonomous",
                channel="cli",
                turns=2,
                cost_cents=0.1,
                last_active_at="2026-03-02T08:00:00",
                created_at="2026-03-02T07:00:00",
            ),
        ],
    )


def test_it_imports_sessions_with_their_totals_and_no_messages(store: Path) -> None:
    out, _ = run_import("zeph", str(store))

    session = Session.objects.get(key="zeph-1")
    assert (session.agent, session.kind, session.status, session.channel) == (
        "zeph",
        "acp",
        "active",
        "acp",
    )
    assert (session.model, session.goal_text) == ("claude-sonnet-4-5", "Refactor the parser")
    assert session.created_at == datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert session.last_active_at == datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    assert (session.turns, session.prompt_tokens, session.completion_tokens) == (7, 12000, 3000)
    assert session.reasoning_tokens == 500
    assert session.cost_usd == Decimal("0.1234")
    assert session.message_count == 0
    assert not Message.objects.exists()
    assert "Imported 2 sessions (2 new, 0 updated, 0 unchanged) with 0 messages" in out


def test_cost_cents_become_exact_dollars(tmp_path: Path) -> None:
    store = zeph_store(
        tmp_path / "zeph.db",
        [row(id="a", cost_cents=0.1), row(id="b", cost_cents=33.333333), row(id="c", cost_cents=7)],
    )

    run_import("zeph", str(store))

    costs = dict(Session.objects.values_list("key", "cost_usd"))
    assert costs == {
        "a": Decimal("0.001"),
        "b": Decimal("0.33333333"),
        "c": Decimal("0.07"),
    }


def test_an_ended_session_ends_at_its_last_activity(store: Path) -> None:
    run_import("zeph", str(store))

    ended = Session.objects.get(key="zeph-2")
    assert ended.status == "completed"
    assert ended.ended_at == datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
    assert Session.objects.get(key="zeph-1").ended_at is None


def test_reasoning_counted_apart_from_completion_is_added_to_it(tmp_path: Path) -> None:
    store = zeph_store(tmp_path / "zeph.db", [row(completion_tokens=100, reasoning_tokens=400)])

    run_import("zeph", str(store))

    session = Session.objects.get()
    assert (session.completion_tokens, session.reasoning_tokens) == (500, 400)


def test_the_daily_rollup_gets_the_reported_totals(store: Path) -> None:
    run_import("zeph", str(store))

    totals = DailyUsage.objects.aggregate(
        cost=Sum("cost_usd"), prompt=Sum("prompt_tokens"), started=Sum("sessions_started")
    )
    assert totals == {"cost": Decimal("0.1244"), "prompt": 24000, "started": 2}


def test_status_words_are_read_case_insensitively_with_aliases(tmp_path: Path) -> None:
    store = zeph_store(
        tmp_path / "zeph.db",
        [row(id="a", status="Done"), row(id="b", status="RUNNING", channel="Telegram")],
    )

    run_import("zeph", str(store))

    assert dict(Session.objects.values_list("key", "status")) == {
        "a": "completed",
        "b": "active",
    }
    assert Session.objects.get(key="b").channel == "telegram"


def test_corrupt_rows_are_reported_with_their_place_and_skipped(tmp_path: Path) -> None:
    store = zeph_store(
        tmp_path / "zeph.db",
        [
            row(id="good"),
            row(id="bad-time", last_active_at="yesterday"),
            row(id="bad-cost", cost_cents="a lot"),
            row(id="bad-tokens", prompt_tokens=-5),
        ],
    )

    out, err = run_import("zeph", str(store), expect_errors=True)

    assert list(Session.objects.values_list("key", flat=True)) == ["good"]
    assert "zeph.db: agent_sessions id='bad-time': last_active_at is not a timestamp" in err
    assert "id='bad-cost': cost_cents is not a number" in err
    assert "id='bad-tokens': prompt_tokens must be a non-negative integer" in err
    assert out.strip().endswith("0 skipped as already stored, 3 errors.")


def test_unknown_kind_status_and_channel_import_the_session_with_a_warning(
    tmp_path: Path,
) -> None:
    store = zeph_store(
        tmp_path / "zeph.db",
        [row(id="odd", kind="batch", status="zombie", channel="matrix"), row(id="good")],
    )

    out, err = run_import("zeph", str(store))

    odd = Session.objects.get(key="odd")
    assert (odd.kind, odd.status, odd.channel) == ("interactive", "active", "")
    assert odd.metadata == {
        "source_kind": "batch",
        "source_status": "zombie",
        "source_channel": "matrix",
    }
    assert odd.turns == 7
    assert "warning: zeph.db: agent_sessions id='odd': kind 'batch' is not one of" in err
    assert "id='odd': status 'zombie'" in err
    assert "id='odd': channel 'matrix'" in err
    assert "error" not in err
    assert out.strip().endswith("0 errors, 3 warnings.")


def test_a_reimport_of_unknown_values_changes_nothing(tmp_path: Path) -> None:
    store = zeph_store(tmp_path / "zeph.db", [row(id="odd", channel="matrix")])
    run_import("zeph", str(store))
    before = snapshot()

    run_import("zeph", str(store))

    assert snapshot() == before


def test_a_goal_over_its_cap_is_reported_and_the_session_skipped(
    tmp_path: Path, settings: Any
) -> None:
    settings.FLEET_MAX_GOAL_CHARS = 50
    store = zeph_store(tmp_path / "zeph.db", [row(id="good"), row(id="long", goal_text="g" * 51)])

    out, err = run_import("zeph", str(store), expect_errors=True)

    assert list(Session.objects.values_list("key", flat=True)) == ["good"]
    assert "id='long': goal_text: must be at most 50 characters" in err
    assert "FLEET_MAX_GOAL_CHARS" in err
    assert out.strip().endswith("1 error.")


def test_a_second_import_adds_nothing_and_changes_nothing(store: Path) -> None:
    run_import("zeph", str(store))
    before = snapshot()

    out, _ = run_import("zeph", str(store))

    assert snapshot() == before
    assert "(0 new, 0 updated, 2 unchanged)" in out


def test_a_changed_store_updates_the_session(store: Path, tmp_path: Path) -> None:
    run_import("zeph", str(store))
    later = zeph_store(
        tmp_path / "later.db",
        [row(turns=9, cost_cents=20, last_active_at="2026-03-01T13:00:00", status="completed")],
    )

    out, _ = run_import("zeph", str(later))

    session = Session.objects.get(key="zeph-1")
    assert (session.turns, session.cost_usd, session.status) == (9, Decimal("0.2"), "completed")
    assert session.last_active_at == datetime(2026, 3, 1, 13, 0, tzinfo=UTC)
    assert "(0 new, 1 updated, 0 unchanged)" in out
    # The rollup moved by the difference: zeph-1's $0.20 and zeph-2's $0.001.
    assert DailyUsage.objects.aggregate(cost=Sum("cost_usd"))["cost"] == Decimal("0.201")


def test_the_agent_option_names_the_agent(store: Path) -> None:
    run_import("zeph", str(store), "--agent", "zeph-laptop")

    assert set(Session.objects.values_list("agent", flat=True)) == {"zeph-laptop"}


def test_a_dry_run_reports_the_same_warnings(tmp_path: Path) -> None:
    store = zeph_store(tmp_path / "zeph.db", [row(id="odd", channel="matrix")])

    out, err = run_import("zeph", str(store), "--dry-run", "--json")

    assert not Session.objects.exists()
    warnings = json.loads(out)["warnings"]
    assert [w["where"] for w in warnings] == ["zeph.db: agent_sessions id='odd'"]
    assert "source_channel" in warnings[0]["message"]
    assert "warning: zeph.db: agent_sessions id='odd': channel 'matrix'" in err
