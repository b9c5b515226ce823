"""``manage.py reconcile`` and ``sessions.ops.reconcile``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.management.base import CommandError
from django.db.models import QuerySet
from django.test import override_settings

from sessions import services
from sessions.choices import State, Status
from sessions.models import LatencyUsage, Session, Turn
from sessions.ops.reconcile import reconcile_agent, reconcile_sessions
from tests.ops_support import ago, make_session, run, run_in_processes, run_json

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def states() -> dict[str, tuple[str, str, str, datetime | None]]:
    return {s.key: (s.status, s.state, s.turn_id, s.turn_started_at) for s in Session.objects.all()}


def running(key: str, *, last_active: datetime, turn_started: datetime) -> Session:
    return make_session(
        key,
        at=last_active,
        state=State.RUNNING,
        turn_id=f"turn-{key}",
        turn_started_at=turn_started,
    )


def test_it_marks_silent_active_sessions_unknown_and_keeps_recent_ones() -> None:
    make_session("silent", at=ago(minutes=45))
    make_session("recent", at=ago(minutes=5))
    make_session("ended", at=ago(days=3), status=Status.COMPLETED)

    out = run("reconcile")

    assert states()["silent"][:2] == (Status.UNKNOWN, State.IDLE)
    assert states()["recent"][:2] == (Status.ACTIVE, State.IDLE)
    assert states()["ended"][0] == Status.COMPLETED
    assert out.strip() == (
        "Marked 1 stale session unknown (silent for 30m) and 0 stuck turns error (running for 15m)."
    )


def test_a_stale_running_session_loses_its_turn() -> None:
    running("crashed", last_active=ago(hours=2), turn_started=ago(hours=2))

    result = run_json("reconcile")

    assert states()["crashed"] == (Status.UNKNOWN, State.IDLE, "", None)
    # Counted once, as stale.
    assert (result["stale"], result["stuck"]) == (1, 0)


def test_it_marks_stuck_turns_error_and_keeps_the_turn_that_hung() -> None:
    started = ago(minutes=25)
    running("stuck", last_active=ago(minutes=20), turn_started=started)
    running("young-turn", last_active=ago(minutes=20), turn_started=ago(minutes=10))

    result = run_json("reconcile")

    # The turn id and start say which turn hung (zeroclaw's "active or last turn").
    assert states()["stuck"] == (Status.ACTIVE, State.ERROR, "turn-stuck", started)
    assert states()["young-turn"][:2] == (Status.ACTIVE, State.RUNNING)
    assert (result["stale"], result["stuck"]) == (0, 1)


def ended_turns() -> dict[str, tuple[str, str, datetime, int]]:
    """Each finished turn by session key: id, outcome, start, duration."""
    return {
        t.session.key: (t.turn_id, t.outcome, t.started_at, t.duration_ms)
        for t in Turn.objects.select_related("session")
    }


def turn_latency() -> list[tuple[str, str, int, int]]:
    """The latency rollup's turns: agent, model, count, sum (ms)."""
    rows = LatencyUsage.objects.filter(kind=LatencyUsage.Kind.TURN)
    return sorted(rows.values_list("agent", "model", "count", "sum_ms"))


def test_a_stuck_turn_marked_error_is_a_finished_turn_with_its_duration() -> None:
    started = ago(minutes=25)
    running("stuck", last_active=ago(minutes=20), turn_started=started)
    running("young-turn", last_active=ago(minutes=20), turn_started=ago(minutes=10))

    run("reconcile")

    ((turn_id, outcome, start, duration),) = ended_turns().values()
    assert (turn_id, outcome, start) == ("turn-stuck", "error", started)
    # From its start to the run that closed it.
    assert 25 * 60_000 <= duration < 26 * 60_000
    assert turn_latency() == [("koda", "gpt-4o-mini", 1, duration)]


def test_a_dead_sessions_running_turn_ends_unknown_and_an_idle_one_records_none() -> None:
    started = ago(hours=2)
    running("crashed", last_active=ago(hours=2), turn_started=started)
    make_session("idle", at=ago(hours=2))

    run("reconcile")
    run("reconcile")

    ((key, (turn_id, outcome, start, duration)),) = ended_turns().items()
    assert (key, turn_id, outcome, start) == ("crashed", "turn-crashed", "unknown", started)
    assert duration >= 2 * 3_600_000
    assert [count for *_, count, _ in turn_latency()] == [1]


def test_the_agent_rule_ends_the_running_turns_it_marks_unknown() -> None:
    started = ago(minutes=3)
    running("old-process", last_active=ago(minutes=2), turn_started=started)
    running("kept", last_active=ago(minutes=2), turn_started=started)

    run("reconcile", "--agent", "koda", "--except", "kept")

    assert {key: turn[:3] for key, turn in ended_turns().items()} == {
        "old-process": ("turn-old-process", "unknown", started)
    }
    assert [count for *_, count, _ in turn_latency()] == [1]


def test_a_dry_run_records_no_turn() -> None:
    running("stuck", last_active=ago(minutes=20), turn_started=ago(minutes=25))
    running("crashed", last_active=ago(hours=2), turn_started=ago(hours=2))

    run("reconcile", "--dry-run")

    assert ended_turns() == {}
    assert turn_latency() == []


def test_a_turn_marked_error_then_stale_is_counted_once() -> None:
    running("stuck", last_active=ago(minutes=20), turn_started=ago(minutes=25))
    run("reconcile")

    reconcile_sessions(
        stale_after=timedelta(minutes=10), stuck_after=timedelta(minutes=15), now=ago(seconds=0)
    )

    assert states()["stuck"][:2] == (Status.UNKNOWN, State.IDLE)
    assert [turn[1] for turn in ended_turns().values()] == ["error"]
    assert [count for *_, count, _ in turn_latency()] == [1]


def test_a_long_turn_whose_agent_keeps_writing_is_not_stuck() -> None:
    running("busy", last_active=ago(minutes=1), turn_started=ago(hours=1))

    run("reconcile")

    assert states()["busy"][:2] == (Status.ACTIVE, State.RUNNING)


def test_reconcile_marks_the_silent_part_of_the_shared_stuck_set() -> None:
    running("busy", last_active=ago(minutes=1), turn_started=ago(hours=1))
    running("hung", last_active=ago(minutes=20), turn_started=ago(minutes=20))
    stuck = Session.objects.stuck(older_than=timedelta(minutes=15))
    assert sorted(stuck.values_list("key", flat=True)) == ["busy", "hung"]

    result = run_json("reconcile", "--dry-run")

    assert result["stuck"] == 1


def test_durations_come_from_the_flags() -> None:
    make_session("a", at=ago(seconds=100))
    make_session("b", at=ago(seconds=80))
    running("c", last_active=ago(seconds=70), turn_started=ago(seconds=70))

    result = run_json("reconcile", "--stale-after", "90s", "--stuck-after", "1m")

    assert states()["a"][0] == Status.UNKNOWN
    assert states()["b"][0] == Status.ACTIVE
    assert states()["c"][:2] == (Status.ACTIVE, State.ERROR)
    assert (result["stale_after"], result["stuck_after"]) == ("1m30s", "1m")


@override_settings(FLEET_STALE_AFTER=2 * 3600, FLEET_STUCK_AFTER=3600)
def test_default_durations_come_from_settings() -> None:
    make_session("one-hour", at=ago(hours=1))
    make_session("three-hours", at=ago(hours=3))

    result = run_json("reconcile")

    assert states()["one-hour"][0] == Status.ACTIVE
    assert states()["three-hours"][0] == Status.UNKNOWN
    assert (result["stale_after"], result["stuck_after"]) == ("2h", "1h")


def test_a_session_exactly_at_the_threshold_is_marked_and_one_later_is_not() -> None:
    make_session("at", at=NOW - timedelta(minutes=30))
    make_session("after", at=NOW - timedelta(minutes=30) + timedelta(microseconds=1))
    running(
        "turn-at", last_active=NOW - timedelta(minutes=15), turn_started=NOW - timedelta(minutes=15)
    )
    running(
        "turn-after",
        last_active=NOW - timedelta(minutes=15),
        turn_started=NOW - timedelta(minutes=15) + timedelta(microseconds=1),
    )

    result = reconcile_sessions(
        stale_after=timedelta(minutes=30), stuck_after=timedelta(minutes=15), now=NOW
    )

    assert (result.stale, result.stuck) == (1, 1)
    assert states()["at"][0] == Status.UNKNOWN
    assert states()["after"][0] == Status.ACTIVE
    assert states()["turn-at"][1] == State.ERROR
    assert states()["turn-after"][1] == State.RUNNING


def test_dry_run_writes_nothing_and_reports_what_the_real_run_then_does() -> None:
    for index in range(3):
        make_session(f"stale-{index}", at=ago(hours=1))
    running("stuck", last_active=ago(minutes=20), turn_started=ago(minutes=20))
    running("stale-and-stuck", last_active=ago(hours=1), turn_started=ago(hours=1))
    make_session("fresh", at=ago(minutes=1))
    before = states()

    out = run("reconcile", "--dry-run")
    dry = run_json("reconcile", "-n")

    assert states() == before
    assert out.strip().startswith("Would mark 4 stale sessions unknown")
    real = run_json("reconcile")
    assert (dry["stale"], dry["stuck"]) == (real["stale"], real["stuck"]) == (4, 1)
    assert dry["dry_run"] is True
    assert real["dry_run"] is False


def test_a_second_run_changes_nothing() -> None:
    make_session("stale", at=ago(hours=1))
    running("stuck", last_active=ago(minutes=20), turn_started=ago(minutes=20))
    run("reconcile")
    after_first = states()

    second = run_json("reconcile")

    assert (second["stale"], second["stuck"]) == (0, 0)
    assert states() == after_first


def test_verbosity_2_lists_each_session_and_verbosity_1_does_not() -> None:
    make_session("gone-quiet", at=ago(hours=1))
    running("hung", last_active=ago(minutes=20), turn_started=ago(minutes=20))

    quiet = run("reconcile", "-n")
    loud = run("reconcile", "-n", "--verbosity", "2")

    assert "gone-quiet" not in quiet
    assert "Would mark unknown (stale): gone-quiet" in loud
    assert "Would mark error (stuck turn): hung" in loud
    done = run("reconcile", "--verbosity", "2")
    assert "Marked unknown (stale): gone-quiet" in done
    assert "Marked error (stuck turn): hung" in done


def test_json_is_one_object_even_at_verbosity_2() -> None:
    make_session("quiet", at=ago(hours=1))

    result = run_json("reconcile", "--verbosity", "2")

    assert result["stale"] == 1


def test_agent_rule_marks_every_active_session_of_the_agent_but_the_kept_ones() -> None:
    make_session("old-1", at=ago(minutes=2), agent="zeroclaw")
    make_session("old-2", at=ago(minutes=1), agent="zeroclaw")
    running("busy-old", last_active=ago(minutes=1), turn_started=ago(minutes=1))
    Session.objects.filter(key="busy-old").update(agent="zeroclaw")
    make_session("new", at=ago(minutes=1), agent="zeroclaw")
    make_session("other-agent", at=ago(minutes=1), agent="koda")
    make_session("done", at=ago(minutes=1), agent="zeroclaw", status=Status.COMPLETED)

    out = run("reconcile", "--agent", "zeroclaw", "--except", "new", "unknown-key")

    assert out.strip() == "Marked 3 active sessions of agent 'zeroclaw' unknown (1 kept)."
    assert states()["old-1"][0] == states()["old-2"][0] == Status.UNKNOWN
    assert states()["busy-old"] == (Status.UNKNOWN, State.IDLE, "", None)
    assert states()["new"][0] == Status.ACTIVE
    assert states()["other-agent"][0] == Status.ACTIVE
    assert states()["done"][0] == Status.COMPLETED


def test_agent_rule_dry_run_and_second_run() -> None:
    make_session("s1", at=ago(minutes=1), agent="appam")
    make_session("s2", at=ago(minutes=1), agent="appam")

    dry = run_json("reconcile", "--agent", "appam", "--except", "s2", "-n")
    assert Session.objects.filter(status=Status.ACTIVE).count() == 2
    real = run_json("reconcile", "--agent", "appam", "--except", "s2")
    again = run_json("reconcile", "--agent", "appam", "--except", "s2")

    assert dry["agent_marked"] == real["agent_marked"] == 1
    assert again["agent_marked"] == 0


def test_agent_rule_spares_sessions_written_after_it_started() -> None:
    make_session("written-later", at=NOW + timedelta(seconds=1), agent="bot")
    make_session("before", at=NOW - timedelta(seconds=1), agent="bot")

    result = reconcile_agent(agent="bot", now=NOW)

    assert result.agent_marked == 1
    assert states()["written-later"][0] == Status.ACTIVE


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--stale-after", "30"], "--stale-after: expected a duration such as 90s"),
        (["--stuck-after", "soon"], "--stuck-after: expected a duration such as 90s"),
        (["--stale-after=-5m"], "--stale-after: expected a duration"),
        (["--stale-after", "0"], "--stale-after must be longer than 0"),
        (["--except", "k"], "--except needs --agent NAME"),
        (["--agent", "a", "--stale-after", "5m"], "--agent applies the start-up rule alone"),
        (["--agent", " "], "--agent must name an agent"),
        (["--batch-size", "0"], "--batch-size must be at least 1"),
    ],
)
def test_bad_input_is_a_command_error_and_writes_nothing(args: list[str], message: str) -> None:
    make_session("stale", at=ago(hours=1))
    before = states()

    with pytest.raises(CommandError, match=message.replace("(", r"\(")):
        run("reconcile", *args)

    assert states() == before


def test_small_batches_mark_the_same_sessions() -> None:
    for index in range(7):
        make_session(f"s{index}", at=ago(hours=1))

    result = run_json("reconcile", "--batch-size", "2")

    assert result["stale"] == 7
    assert not Session.objects.filter(status=Status.ACTIVE).exists()


def test_a_session_written_after_the_candidates_were_read_is_not_marked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sessions.ops import reconcile as reconcile_module

    for key in ("a", "b", "c"):
        make_session(key, at=NOW - timedelta(hours=1))
    read_ids = reconcile_module._ids

    def write_after_reading(qs: QuerySet[Session]) -> list[int]:
        ids = read_ids(qs)
        services.messages_append(key="b", messages=[{"role": "user", "content": "hi"}], now=NOW)
        return ids

    monkeypatch.setattr(reconcile_module, "_ids", write_after_reading)

    result = reconcile_sessions(
        stale_after=timedelta(minutes=30), stuck_after=timedelta(minutes=15), now=NOW
    )

    assert result.stale == 2
    assert states()["b"][0] == Status.ACTIVE


# --- racing with appends in another process ------------------------------------------

RACE_SESSIONS = 120


def _append_to_every_other(keys: list[str]) -> None:
    # "status": "active" revives a session marked before this write: so a
    # session ends unknown only if it was marked *after* this write.
    for key in keys:
        services.messages_append(
            key=key,
            session={"status": Status.ACTIVE},
            messages=[{"role": "user", "content": "still here"}],
        )


def _reconcile_slowly() -> None:
    run("reconcile", "--batch-size", "1")


@pytest.mark.django_db(transaction=True)
def test_reconcile_racing_appends_never_marks_a_session_written_after_the_cutoff() -> None:
    keys = [f"race-{index:03d}" for index in range(RACE_SESSIONS)]
    for key in keys:
        make_session(key, at=ago(hours=2), count=1)
    written = keys[1::2]

    run_in_processes((_append_to_every_other, (written,)), (_reconcile_slowly, ()))

    final = states()
    assert [key for key in written if final[key][0] != Status.ACTIVE] == []
    # The sessions nobody wrote to were all marked: the race really ran.
    assert {final[key][0] for key in keys[0::2]} == {Status.UNKNOWN}


def _reconcile_into(path: Path) -> None:
    path.write_text(run("reconcile", "--json", "--batch-size", "1"))


@pytest.mark.django_db(transaction=True)
def test_two_copies_at_once_mark_each_session_once(tmp_path: Path) -> None:
    for index in range(60):
        make_session(f"twin-{index}", at=ago(hours=2), count=0)
    first, second = tmp_path / "first.json", tmp_path / "second.json"

    run_in_processes((_reconcile_into, (first,)), (_reconcile_into, (second,)))

    reports = [json.loads(path.read_text()) for path in (first, second)]
    assert sum(report["stale"] for report in reports) == 60
    assert Session.objects.filter(status=Status.UNKNOWN).count() == 60
