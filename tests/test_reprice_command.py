"""``manage.py reprice`` and ``sessions.ops.reprice``."""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.management.base import CommandError
from django.db.models import Sum

from sessions import services
from sessions.choices import CostSource
from sessions.models import DailyUsage, Message, ModelPrice, Session
from sessions.pricing import PriceBook
from tests.ops_support import ago, rollup_rows, run, run_in_processes, run_json

pytestmark = pytest.mark.django_db

UNPRICED_MODEL = "local/llama-3.3-70b"
USAGE = {"prompt_tokens": 1000, "completion_tokens": 200}


def append(key: str, *, model: str, count: int = 3, days_ago: float = 2, **usage: Any) -> None:
    """``count`` assistant messages with usage, written ``days_ago`` days ago."""
    at = ago(days=days_ago)
    services.messages_append(
        key=key,
        session={"agent": "koda", "model": model, "channel": "cli"},
        messages=[
            {"role": "assistant", "content": f"{key} {index}", "usage": {**USAGE, **usage}}
            for index in range(count)
        ],
        now=at,
    )


def override(pattern: str, *, input_mtok: str = "1000", output_mtok: str = "2000") -> ModelPrice:
    return ModelPrice.objects.create(
        model_pattern=pattern,
        input_per_mtok=Decimal(input_mtok),
        output_per_mtok=Decimal(output_mtok),
        valid_from=ago(days=365),
    )


def costs() -> dict[tuple[str, int], tuple[Decimal | None, str]]:
    return {
        (key, seq): (cost, source)
        for key, seq, cost, source in Message.objects.values_list(
            "session__key", "seq", "cost_usd", "cost_source"
        )
    }


def state() -> tuple[Any, ...]:
    sessions = sorted(Session.objects.values_list("key", "cost_usd", "unpriced_calls"))
    return costs(), rollup_rows(), sessions


def assert_totals_follow_messages() -> None:
    """Session totals and the rollup equal the sums over the stored messages."""
    rollup: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    for session in Session.objects.all():
        rows = Message.objects.filter(session=session)
        cost = rows.aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)
        unpriced = rows.filter(cost_source=CostSource.UNPRICED).count()
        assert (session.cost_usd, session.unpriced_calls) == (cost, unpriced), session.key
    for message in Message.objects.select_related("session"):
        model = message.model or message.session.model
        bucket = rollup[(message.created_at.date().isoformat(), model)]
        bucket[0] += message.cost_usd or Decimal(0)
        bucket[1] += int(message.cost_source == CostSource.UNPRICED)
    stored: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [Decimal(0), 0])
    for row in DailyUsage.objects.values("day", "model", "cost_usd", "unpriced_calls"):
        bucket = stored[(row["day"].isoformat(), row["model"])]
        bucket[0] += row["cost_usd"]
        bucket[1] += row["unpriced_calls"]
    stored = {key: value for key, value in stored.items() if any(value)}
    assert stored == {key: value for key, value in rollup.items() if any(value)}


def test_an_override_changes_exactly_the_computed_costs() -> None:
    append("computed", model="gpt-4o-mini")
    append("reported", model="gpt-4o-mini", cost_usd="0.5")
    append("other-model", model="gpt-4o")
    before = costs()
    assert before[("computed", 1)][1] == CostSource.COMPUTED
    override("gpt-4o-mini")

    out = run("reprice")

    after = costs()
    changed = {name for name in after if after[name] != before[name]}
    assert changed == {("computed", 1), ("computed", 2), ("computed", 3)}
    # 1000 input at $1000/M + 200 output at $2000/M.
    assert after[("computed", 1)] == (Decimal("1.4"), CostSource.COMPUTED)
    assert after[("reported", 1)] == (Decimal("0.5"), CostSource.REPORTED)
    assert out.strip().startswith("Repriced 3 messages of 6 checked in 1 session: cost +$")
    assert_totals_follow_messages()


def test_an_override_added_with_the_default_valid_from_reprices_history() -> None:
    append("computed", model="gpt-4o-mini")
    ModelPrice.objects.create(
        model_pattern="gpt-4o-mini", input_per_mtok=Decimal(1000), output_per_mtok=Decimal(2000)
    )

    run("reprice")

    assert costs()[("computed", 1)] == (Decimal("1.4"), CostSource.COMPUTED)


def test_a_model_that_became_priced_stops_showing_as_unpriced() -> None:
    append("local", model=UNPRICED_MODEL, count=2)
    session = Session.objects.get(key="local")
    assert (session.unpriced_calls, session.cost_usd) == (2, Decimal(0))
    override("local/*", input_mtok="10", output_mtok="10")

    result = run_json("reprice")

    session.refresh_from_db()
    assert (result["changed"], result["newly_priced"], result["newly_unpriced"]) == (2, 2, 0)
    assert session.unpriced_calls == 0
    assert session.cost_usd == Decimal("0.024")
    assert not Message.objects.filter(cost_source=CostSource.UNPRICED).exists()
    assert DailyUsage.objects.aggregate(n=Sum("unpriced_calls"))["n"] == 0
    assert_totals_follow_messages()


def test_removing_the_override_restores_the_table_prices() -> None:
    append("s", model="gpt-4o-mini")
    original = costs()
    original_rollups = rollup_rows()
    price = override("gpt-4o-mini")
    run("reprice")
    assert costs() != original

    price.delete()
    run("reprice")

    assert costs() == original
    assert rollup_rows() == original_rollups


def test_a_message_priced_by_its_own_model_not_its_sessions() -> None:
    services.messages_append(
        key="mixed",
        session={"model": "gpt-4o"},
        messages=[
            {"role": "assistant", "content": "a", "model": "gpt-4o-mini", "usage": USAGE},
            {"role": "assistant", "content": "b", "usage": USAGE},
        ],
        now=ago(days=1),
    )
    override("gpt-4o-mini")

    result = run_json("reprice", "--model", "GPT-4o-mini")

    assert result["changed"] == 1
    assert costs()[("mixed", 1)][0] == Decimal("1.4")
    assert costs()[("mixed", 2)][0] != Decimal("1.4")
    assert_totals_follow_messages()


def test_model_limits_the_messages_repriced() -> None:
    append("mini", model="gpt-4o-mini")
    append("big", model="gpt-4o")
    override("gpt-4o*")

    result = run_json("reprice", "--model", "gpt-4o")

    assert (result["checked"], result["changed"]) == (3, 3)
    assert costs()[("mini", 1)][0] != Decimal("1.4")
    assert costs()[("big", 1)][0] == Decimal("1.4")


def test_since_limits_the_messages_repriced() -> None:
    append("old", model="gpt-4o-mini", days_ago=10)
    append("new", model="gpt-4o-mini", days_ago=1)
    override("gpt-4o-mini")
    since = ago(days=3).date().isoformat()

    result = run_json("reprice", "--since", since)

    assert result["changed"] == 3
    assert costs()[("old", 1)][0] != Decimal("1.4")
    assert costs()[("new", 1)][0] == Decimal("1.4")
    assert_totals_follow_messages()


def test_overrides_apply_from_their_valid_from_as_at_ingest() -> None:
    append("before", model="gpt-4o-mini", days_ago=10)
    append("after", model="gpt-4o-mini", days_ago=1)
    price = override("gpt-4o-mini")
    price.valid_from = ago(days=5)
    price.save()

    run("reprice")

    assert costs()[("before", 1)][0] != Decimal("1.4")
    assert costs()[("after", 1)][0] == Decimal("1.4")
    expected = PriceBook.load().price(
        model="gpt-4o-mini",
        at=ago(days=10),
        cache_read_tokens=0,
        cache_creation_tokens=0,
        **USAGE,
    )
    assert costs()[("before", 1)] == expected


def test_dry_run_writes_nothing_and_reports_what_the_real_run_then_does() -> None:
    append("a", model="gpt-4o-mini")
    append("b", model=UNPRICED_MODEL)
    override("gpt-4o-mini")
    override("local/*")
    before = state()

    dry = run_json("reprice", "--dry-run")
    out = run("reprice", "-n")

    assert state() == before
    assert out.startswith("Would reprice 6 messages")
    real = run_json("reprice")
    counted = ["checked", "changed", "sessions", "newly_priced", "newly_unpriced"]
    counted.append("cost_delta_usd")
    assert [dry[name] for name in counted] == [real[name] for name in counted]
    assert (real["changed"], real["newly_priced"]) == (6, 3)


def test_a_second_run_changes_nothing() -> None:
    append("a", model="gpt-4o-mini")
    override("gpt-4o-mini")
    run("reprice")
    after_first = (costs(), rollup_rows())

    second = run_json("reprice")

    assert second["changed"] == 0
    assert second["cost_delta_usd"] == "0.000000000"
    assert (costs(), rollup_rows()) == after_first


def test_verbosity_2_lists_each_message() -> None:
    append("listed", model="gpt-4o-mini", count=1)
    override("gpt-4o-mini")

    out = run("reprice", "-n", "-v", "2")

    assert "Would reprice: listed#1 gpt-4o-mini: $" in out
    assert "-> $1.4" in out


def test_a_model_known_only_to_the_price_table_is_accepted() -> None:
    append("a", model="gpt-4o-mini")

    result = run_json("reprice", "--model", "gpt-4o")

    assert result["changed"] == result["checked"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "gtp-4o-mini"], "unknown model 'gtp-4o-mini'"),
        (["--model", " "], "--model must name a model"),
        (["--since", "2999-01-01"], "--since must not be in the future"),
        (["--since", "yesterday"], r"--since must be a date \(YYYY-MM-DD\)"),
        (["--since", "2025-13-01"], "--since must be a date"),
        (["--batch-size", "-1"], "--batch-size must be at least 1"),
    ],
)
def test_bad_input_is_a_command_error_and_writes_nothing(args: list[str], message: str) -> None:
    append("a", model="gpt-4o-mini")
    override("gpt-4o-mini")
    before = (costs(), rollup_rows())

    with pytest.raises(CommandError, match=message):
        run("reprice", *args)

    assert (costs(), rollup_rows()) == before


def test_small_batches_across_sessions_reprice_the_same() -> None:
    for index in range(4):
        append(f"s{index}", model="gpt-4o-mini", count=3, days_ago=index + 1)
    override("gpt-4o-mini")

    result = run_json("reprice", "--batch-size", "2")

    assert (result["changed"], result["sessions"]) == (12, 4)
    assert {cost for cost, _ in costs().values()} == {Decimal("1.4")}
    assert_totals_follow_messages()


def _reprice_into(path: Path) -> None:
    path.write_text(run("reprice", "--json", "--batch-size", "3"))


@pytest.mark.django_db(transaction=True)
def test_two_copies_at_once_move_the_totals_once(tmp_path: Path) -> None:
    for index in range(12):
        append(f"s{index}", model="gpt-4o-mini", count=4)
    override("gpt-4o-mini")
    first, second = tmp_path / "first.json", tmp_path / "second.json"

    run_in_processes((_reprice_into, (first,)), (_reprice_into, (second,)))

    reports = [json.loads(path.read_text()) for path in (first, second)]
    assert sum(report["changed"] for report in reports) == 48
    assert {cost for cost, _ in costs().values()} == {Decimal("1.4")}
    assert_totals_follow_messages()


def _append_more(keys: list[str]) -> None:
    for number in range(20):
        for key in keys:
            services.messages_append(
                key=key,
                messages=[{"role": "assistant", "content": f"more {number}", "usage": USAGE}],
            )


@pytest.mark.django_db(transaction=True)
def test_reprice_racing_appends_keeps_totals_equal_to_the_messages() -> None:
    keys = [f"s{index}" for index in range(6)]
    for key in keys:
        append(key, model="gpt-4o-mini", count=10)
    override("gpt-4o-mini")

    run_in_processes((_append_more, (keys,)), (_reprice_into, (Path("/dev/null"),)))

    assert_totals_follow_messages()
    run("reprice")
    assert {cost for cost, _ in costs().values()} == {Decimal("1.4")}
    assert_totals_follow_messages()
