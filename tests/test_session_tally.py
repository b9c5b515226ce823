"""SessionTally: the sessions per agent × status the database keeps (migration 0017).

Whatever writes the sessions (services, reconcile, purge's raw DELETE, bulk
inserts, raw SQL, a full ``save()`` as the admin does), the tally equals a
``COUNT`` of the sessions grouped the same way, on both databases.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.db.models import Count, F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessions import services
from sessions.choices import Status
from sessions.fleet_stats import fleet_totals
from sessions.models import Session, SessionTally
from sessions.ops.purge import purge
from sessions.ops.reconcile import reconcile_agent, reconcile_sessions

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
AGENTS = ("", "koda", "zeph")


def counted() -> dict[tuple[str, str], int]:
    rows = Session.objects.values("agent", "status").annotate(n=Count("id")).order_by()
    return {(row["agent"], row["status"]): row["n"] for row in rows}


def tallied() -> dict[tuple[str, str], int]:
    return {
        (row.agent, row.status): row.sessions
        for row in SessionTally.objects.all()
        if row.sessions != 0
    }


def test_the_services_keep_the_tally() -> None:
    services.session_upsert(key="a", fields={"agent": "koda"}, now=NOW)
    services.session_upsert(key="b", fields={"agent": "koda", "status": "failed"}, now=NOW)
    services.messages_append(
        key="c", messages=[{"role": "user", "content": "hi"}], session={"agent": "zeph"}
    )
    assert tallied() == {("koda", "active"): 1, ("koda", "failed"): 1, ("zeph", "active"): 1}

    services.session_set_status(key="a", status="completed", now=NOW)
    services.session_upsert(key="c", fields={"agent": "koda"}, now=NOW)
    services.session_delete(key="b", now=NOW)

    assert tallied() == counted() == {("koda", "completed"): 1, ("koda", "active"): 1}


def test_an_append_to_a_session_leaves_the_tally_alone() -> None:
    services.session_upsert(key="a", fields={"agent": "koda"}, now=NOW)
    before = list(SessionTally.objects.values_list("agent", "status", "sessions"))

    services.messages_append(key="a", messages=[{"role": "user", "content": "again"}])

    assert list(SessionTally.objects.values_list("agent", "status", "sessions")) == before


def test_reconcile_and_purge_keep_the_tally() -> None:
    for n in range(6):
        services.session_upsert(
            key=f"s{n}", fields={"agent": AGENTS[n % 3]}, now=NOW - timedelta(days=n)
        )
    services.session_set_status(key="s0", status="completed", now=NOW)

    reconcile_agent(agent="koda", now=NOW)
    reconcile_sessions(stale_after=timedelta(hours=1), stuck_after=timedelta(hours=1), now=NOW)
    assert tallied() == counted()
    assert counted()[("", Status.UNKNOWN)] == 1

    purge(now=NOW, older_than=timedelta(days=2, hours=12), size=1)
    assert Session.objects.count() == 3
    assert tallied() == counted()


def test_bulk_inserts_queryset_updates_full_saves_and_raw_sql_keep_the_tally() -> None:
    Session.objects.bulk_create(
        [Session(key=f"b{n}", agent=AGENTS[n % 3], status="completed") for n in range(7)]
    )
    Session.objects.filter(agent="zeph").update(agent="koda", status="cancelled")
    Session.objects.filter(key="b0").update(status="completed")  # no change
    session = Session.objects.get(key="b1")
    session.agent, session.status = "renamed", "failed"
    session.save()  # every column, as the admin's change form saves
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM agent_sessions_session WHERE key IN ('b3', 'b4')")

    assert tallied() == counted()
    assert sum(tallied().values()) == 5


def test_a_rolled_back_write_leaves_the_tally_as_it_was() -> None:
    services.session_upsert(key="a", fields={"agent": "koda"}, now=NOW)

    def write_then_fail() -> None:
        with transaction.atomic():
            services.session_upsert(key="b", fields={"agent": "koda"}, now=NOW)
            Session.objects.filter(key="a").update(status="failed")
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        write_then_fail()

    assert tallied() == {("koda", "active"): 1}


def test_the_fleet_counts_by_status_read_the_tally_not_the_sessions() -> None:
    services.session_upsert(key="a", fields={"agent": "koda"}, now=NOW)
    # A tally that disagreed with the rows would show: the counts come from it.
    SessionTally.objects.filter(agent="koda", status="active").update(sessions=F("sessions") + 41)

    counts = fleet_totals(now=NOW)["sessions"]

    assert counts["active"] == counts["by_status"]["active"] == 42
    assert counts["total"] == 42


def test_a_scoped_count_reads_only_its_agents_rows() -> None:
    services.session_upsert(key="a", fields={"agent": "koda"}, now=NOW)
    services.session_upsert(key="b", fields={"agent": "koda", "status": "failed"}, now=NOW)
    services.session_upsert(key="c", fields={"agent": "zeph"}, now=NOW)

    counts = fleet_totals(now=NOW, agents=["koda"])["sessions"]

    assert counts["total"] == 2
    assert counts["by_status"] == {
        "active": 1,
        "completed": 0,
        "failed": 1,
        "cancelled": 0,
        "unknown": 0,
    }


keys = st.sampled_from([f"k{n}" for n in range(6)])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("create"), keys, st.sampled_from(AGENTS), st.sampled_from(Status)),
        st.tuples(st.just("status"), keys, st.sampled_from(Status)),
        st.tuples(st.just("agent"), keys, st.sampled_from(AGENTS)),
        st.tuples(st.just("delete"), keys),
        st.tuples(st.just("update_all"), st.sampled_from(Status)),
        st.tuples(st.just("delete_agent"), st.sampled_from(AGENTS)),
    ),
    max_size=20,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations)
def test_the_tally_equals_a_count_after_any_writes(steps: list[tuple]) -> None:
    # Each example in a savepoint that is rolled back: the next starts empty.
    with pytest.raises(_Undo):
        _apply(steps)


def _apply(steps: list[tuple]) -> None:
    with transaction.atomic():
        for step in steps:
            kind, rest = step[0], step[1:]
            if kind == "create":
                key, agent, status = rest
                Session.objects.get_or_create(key=key, defaults={"agent": agent, "status": status})
            elif kind == "status":
                Session.objects.filter(key=rest[0]).update(status=rest[1])
            elif kind == "agent":
                Session.objects.filter(key=rest[0]).update(agent=rest[1])
            elif kind == "delete":
                Session.objects.filter(key=rest[0]).delete()
            elif kind == "update_all":
                Session.objects.update(status=rest[0])
            else:
                Session.objects.filter(agent=rest[0]).delete()
            assert tallied() == counted(), step
        raise _Undo


class _Undo(Exception):
    pass
