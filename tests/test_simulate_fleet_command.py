from __future__ import annotations

import socket
import threading
from collections import Counter
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from pytest_django.live_server_helper import LiveServer

from fleet.simulator import Behaviour, run_fleet
from sessions.choices import TOKEN_FIELDS
from sessions.models import ApiKey, Message, Session

# The simulator is an HTTP client: the store's behaviour under it is covered on both
# databases by test_concurrency, test_multi_server and test_crash_safety.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.once]

KeyPair = tuple[ApiKey, str]  # the stored key and its plaintext


@pytest.fixture
def api_key() -> KeyPair:
    return ApiKey.generate(name="simulator")


def simulate(url: str, token: str, *args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(
        "simulate_fleet",
        "--url",
        url,
        "--key",
        token,
        "--step-delay",
        "0.01",
        "--seed",
        "7",
        *args,
        stdout=out,
        stderr=err,
    )
    return out.getvalue(), err.getvalue()


def inconsistencies(session: Session) -> list[str]:
    """How the session's totals and seqs differ from what its stored messages add up to."""
    messages = list(Message.objects.filter(session=session).order_by("seq"))
    problems = []
    seqs = [message.seq for message in messages]
    if seqs != list(range(1, len(messages) + 1)):
        problems.append(f"seq {seqs}")
    priced = [message for message in messages if message.cost_source]
    sums = {
        "message_count": len(messages),
        "last_seq": len(messages),
        "turns": sum(1 for m in messages if m.role == "assistant" and m.content),
        "tool_call_count": sum(len(m.tool_calls) for m in messages),
        "api_calls": len(priced),
        "cost_usd": sum((m.cost_usd for m in priced if m.cost_usd is not None), Decimal(0)),
        **{name: sum(getattr(m, name) for m in priced) for name in TOKEN_FIELDS},
    }
    for name, total in sums.items():
        if getattr(session, name) != total:
            problems.append(f"{name}: stored {getattr(session, name)}, messages add up to {total}")
    return problems


def assert_consistent(sessions: list[Session]) -> None:
    problems = {s.key: found for s in sessions if (found := inconsistencies(s))}
    assert problems == {}


def test_it_writes_a_consistent_fleet_over_http(live_server: LiveServer, api_key: KeyPair) -> None:
    out, err = simulate(
        live_server.url, api_key[1], "--agents", "4", "--rate", "20", "--duration", "3"
    )

    assert "0 errors" in out, out + err
    sessions = list(Session.objects.all())
    assert {s.agent for s in sessions} == {"koda-1", "zeroclaw-1", "appam-1", "zeph-1"}
    assert Message.objects.filter(role="tool").exists()
    assert Message.objects.filter(role="assistant").exclude(cost_source="").exists()
    assert_consistent(sessions)


def test_its_agents_stream_delegate_and_compact(live_server: LiveServer, api_key: KeyPair) -> None:
    behaviour = Behaviour(step_delay=0, crash_chance=0, compact_after=12, delegate_chance=0.5)

    report = run_fleet(
        url=live_server.url, key=api_key[1], agents=4, rate=0, duration=3, behaviour=behaviour
    )

    print(report.line())  # shown when an assertion fails
    assert report.stats.errors == 0, report.stats.error_samples
    assert report.stats.compactions > 0
    assert Message.objects.filter(is_summary=True).exists()
    assert Message.objects.filter(compacted_at__isnull=False).exists()
    # Streamed replies ended complete, with their usage; sub-agents wrote as themselves.
    streamed = Message.objects.filter(session__agent="koda-1", role="assistant", status="complete")
    assert streamed.exclude(cost_source="").exists()
    assert not Message.objects.filter(status="streaming").exclude(session__state="running")
    assert Message.objects.filter(agent_name__in=["researcher", "reviewer", "planner"]).exists()
    assert_consistent(list(Session.objects.all()))


def test_a_crashed_agent_reconciles_its_abandoned_sessions(
    live_server: LiveServer, api_key: KeyPair
) -> None:
    behaviour = Behaviour(step_delay=0, crash_chance=1.0, downtime=0.05)

    report = run_fleet(
        url=live_server.url, key=api_key[1], agents=2, rate=0, duration=2, behaviour=behaviour
    )

    print(report.line())  # shown when an assertion fails
    assert report.stats.errors == 0, report.stats.error_samples
    assert report.stats.crashes > 0
    statuses = Counter(Session.objects.values_list("status", flat=True))
    assert statuses["unknown"] == report.stats.marked_unknown > 0
    assert_consistent(list(Session.objects.all()))


def test_it_fails_when_the_server_refuses_the_key(live_server: LiveServer) -> None:
    with pytest.raises(CommandError, match="refused the API key"):
        simulate(live_server.url, "fleet_not-a-key", "--duration", "1")


def test_it_gives_up_when_no_server_answers() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there

    with pytest.raises(CommandError, match="does not answer"):
        simulate(f"http://127.0.0.1:{port}", "fleet_some-key", "--wait", "0.5")


def test_it_exits_non_zero_when_requests_fail(live_server: LiveServer, api_key: KeyPair) -> None:
    key, token = api_key

    def revoke() -> None:
        key.revoke()
        connection.close()

    timer = threading.Timer(0.5, revoke)
    timer.start()
    try:
        with pytest.raises(CommandError, match="requests failed unexpectedly"):
            simulate(live_server.url, token, "--agents", "2", "--rate", "0", "--duration", "2")
    finally:
        timer.join()
