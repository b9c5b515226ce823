"""manage.py alerts: every rule kind opens and resolves an incident exactly once,
cooldowns, dry runs, broken rules, concurrent runs, and reconcile's trigger."""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from alerts.engine import run_alerts
from alerts.models import AlertChannel, AlertRule, Delivery, Incident
from sessions.models import Budget, BudgetUsage, LatencyUsage, MinuteUsage, Session
from sessions.rollups import utc_day_start, utc_minute
from tests.alerts_support import receiver
from tests.processes import run_in_processes

pytestmark = pytest.mark.django_db
_n = itertools.count()


def email_channel() -> AlertChannel:
    return AlertChannel.objects.create(
        name=f"mail {next(_n)}", kind=AlertChannel.Kind.EMAIL, email_to="ops@example.com"
    )


def rule(kind: str, *channels: AlertChannel, **fields: Any) -> AlertRule:
    made = AlertRule.objects.create(name=f"rule {next(_n)}", kind=kind, **fields)
    made.full_clean()
    made.channels.set(channels)
    return made


def session(**fields: Any) -> Session:
    fields.setdefault("key", f"s{next(_n)}")
    fields.setdefault("agent", "koda")
    fields.setdefault("channel", "cli")
    fields.setdefault("model", "gpt-4o")
    return Session.objects.create(**fields)


# Each kind: the rule's fields, then what starts the condition and what ends it.
Case = tuple[dict[str, Any], Callable[[datetime], Any], Callable[[datetime, Any], None]]


def _stuck_start(now: datetime) -> Session:
    return session(state="running", turn_started_at=now - timedelta(hours=1), last_active_at=now)


def _stuck_stop(now: datetime, made: Session) -> None:
    Session.objects.filter(pk=made.pk).update(state="idle", turn_started_at=None)


def _unknown_start(now: datetime) -> Session:
    return session(status="unknown", last_active_at=now - timedelta(minutes=40))


def _unknown_stop(now: datetime, made: Session) -> None:
    Session.objects.filter(pk=made.pk).update(status="active", last_active_at=now)


def _error_start(now: datetime) -> Session:
    return session(state="error", turn_started_at=now - timedelta(hours=1), last_active_at=now)


def _error_stop(now: datetime, made: Session) -> None:
    Session.objects.filter(pk=made.pk).update(state="idle", turn_started_at=None)


def _burn_start(now: datetime) -> None:
    MinuteUsage.objects.create(
        minute=utc_minute(now), agent="koda", model="gpt-4o", channel="cli", cost_usd=Decimal(6)
    )


def _burn_stop(now: datetime, made: None) -> None:
    MinuteUsage.objects.all().delete()


def _budget_start(now: datetime) -> Budget:
    BudgetUsage.objects.create(
        span="day", start=utc_day_start(now), agent="koda", model="gpt-4o", channel="cli",
        project="", project_key="", cost_usd=Decimal("9.5"),
    )  # fmt: skip
    return Budget.objects.create(name=f"b{next(_n)}", amount_usd=Decimal(9), period="day")


def _budget_stop(now: datetime, made: Budget) -> None:
    Budget.objects.filter(pk=made.pk).update(amount_usd=Decimal(1000))


def _silent_start(now: datetime) -> Session:
    return session(agent="quiet", last_active_at=now - timedelta(hours=2))


def _silent_stop(now: datetime, made: Session) -> None:
    Session.objects.filter(pk=made.pk).update(last_active_at=now)


def _slow(now: datetime, kind: str, name: str, *durations: int) -> None:
    """Latency rollup rows of today (the rule reads the rollup, never messages)."""
    from sessions.latency import bucket_of

    for ms in durations:
        row, _ = LatencyUsage.objects.get_or_create(
            day=now.astimezone(UTC).date(), agent="koda",
            model="o3" if kind == "call" else "gpt-4o", kind=kind,
            name=name, bucket=bucket_of(ms),
        )  # fmt: skip
        LatencyUsage.objects.filter(pk=row.pk).update(count=row.count + 1, sum_ms=row.sum_ms + ms)


def _model_latency_start(now: datetime) -> None:
    # 22 calls (a rule's default minimum is 20), the two slowest above 2 s.
    _slow(now, "call", "", *[500] * 20, 9000, 9000)


def _model_latency_stop(now: datetime, made: None) -> None:
    _slow(now, "call", "", *[400] * 60)  # the p95 falls below the threshold


def _tool_latency_start(now: datetime) -> None:
    _slow(now, "tool", "bash", 90_000)
    _slow(now, "tool", "grep", 20)


def _tool_latency_stop(now: datetime, made: None) -> None:
    LatencyUsage.objects.filter(name="bash").delete()


CASES: dict[str, Case] = {
    "session_stuck": ({"threshold_seconds": 600}, _stuck_start, _stuck_stop),
    "session_unknown": ({}, _unknown_start, _unknown_stop),
    "turn_error": ({}, _error_start, _error_stop),
    "burn_rate": ({"threshold_usd_per_hour": Decimal(5)}, _burn_start, _burn_stop),
    "burn_rate_per_agent": (
        {"threshold_usd_per_hour": Decimal(5), "per": "agent"}, _burn_start, _burn_stop,
    ),
    "budget_warning": ({}, _budget_start, _budget_stop),
    "budget_exceeded": ({}, _budget_start, _budget_stop),
    "agent_silent": ({"threshold_seconds": 3600}, _silent_start, _silent_stop),
    "model_latency": ({"threshold_ms": 2000}, _model_latency_start, _model_latency_stop),
    "tool_latency": (
        {"threshold_ms": 30_000, "window_days": 2, "min_count": 1},
        _tool_latency_start, _tool_latency_stop,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_every_rule_kind_opens_and_resolves_once_across_repeated_runs(case: str) -> None:
    fields, start, stop = CASES[case]
    channel = email_channel()
    watched = rule(case.removesuffix("_per_agent"), channel, cooldown_seconds=0, **fields)
    now = timezone.now()

    assert run_alerts(now).opened == []
    made = start(now)
    runs = [run_alerts(now) for _ in range(3)]

    assert [len(r.opened) for r in runs] == [1, 0, 0]
    incident = Incident.objects.get(rule=watched)
    assert incident.resolved_at is None
    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject.startswith(f"[Fleet] Alert: {watched.name}")

    stop(now, made)
    runs = [run_alerts(now) for _ in range(3)]

    assert [len(r.resolved) for r in runs] == [1, 0, 0]
    assert Incident.objects.get(pk=incident.pk).resolved_at == now
    assert Incident.objects.filter(rule=watched).count() == 1
    assert [m.subject.split(":")[0] for m in mail.outbox] == ["[Fleet] Alert", "[Fleet] Resolved"]
    assert set(Delivery.objects.values_list("event", "status")) == {
        ("opened", "sent"),
        ("resolved", "sent"),
    }


def test_a_latency_rule_fires_per_model_over_its_window_and_names_the_p95() -> None:
    from sessions.latency import BUCKET_UPPER, bucket_of

    now = timezone.now()
    watched = rule("model_latency", threshold_ms=2000, window_days=2, min_count=2)
    _slow(now, "call", "", 9000)
    _slow(now - timedelta(days=1), "call", "", 9000)
    _slow(now - timedelta(days=2), "call", "", *[100] * 50)  # outside the window
    LatencyUsage.objects.create(
        day=now.date(), agent="koda", model="gpt-4o", kind="call", bucket=bucket_of(100), count=9
    )

    run_alerts(now)

    (incident,) = Incident.objects.filter(rule=watched)
    assert incident.subject == "model o3"
    assert incident.details == {
        "model": "o3",
        "p95_ms": BUCKET_UPPER[bucket_of(9000)],
        "threshold_ms": 2000,
        "count": 2,
        "min_count": 2,
        "window_days": 2,
    }
    # The window slides past the slow days: resolved.
    assert len(run_alerts(now + timedelta(days=2)).resolved) == 1


def test_a_latency_rules_filters_narrow_the_rollup_it_reads() -> None:
    now = timezone.now()
    rule("model_latency", threshold_ms=2000, agent="other", min_count=1)
    rule("tool_latency", threshold_ms=2000, model="o3", min_count=1)
    _model_latency_start(now)
    _tool_latency_start(now)

    assert run_alerts(now).opened == []


def test_a_latency_rule_ignores_a_model_with_fewer_calls_than_its_minimum() -> None:
    now = timezone.now()
    # Blank: 20 calls at least (below 20, a p95 is the slowest call alone).
    default = rule("model_latency", threshold_ms=2000)
    three = rule("tool_latency", threshold_ms=2000, min_count=3)
    _slow(now, "call", "", *[9000] * 19)
    _slow(now, "tool", "bash", 9000, 9000)

    assert run_alerts(now).opened == []

    _slow(now, "call", "", 9000)
    _slow(now, "tool", "bash", 9000)
    run_alerts(now)

    assert Incident.objects.get(rule=default).details["count"] == 20
    assert Incident.objects.get(rule=three).details["count"] == 3
    # Fewer calls in the window than the minimum: the condition no longer holds.
    LatencyUsage.objects.filter(kind="tool").update(count=2)
    assert len(run_alerts(now).resolved) == 1


def test_filters_narrow_the_sessions_a_rule_watches() -> None:
    now = timezone.now()
    watched = rule("session_unknown", agent="koda", channel="cli", model="o3")
    session(status="unknown", last_active_at=now, agent="koda", model="gpt-4o")
    session(status="unknown", last_active_at=now, agent="other", model="o3")
    target = session(status="unknown", last_active_at=now, agent="koda", model="o3")

    run_alerts(now)

    assert list(Incident.objects.filter(rule=watched).values_list("subject", flat=True)) == [
        f"session {target.key}"
    ]


def test_a_subject_does_not_reopen_within_the_cooldown() -> None:
    now = timezone.now()
    watched = rule("session_unknown", cooldown_seconds=3600)
    made = _unknown_start(now)
    run_alerts(now)
    _unknown_stop(now, made)
    run_alerts(now)
    Session.objects.filter(pk=made.pk).update(status="unknown")

    cooling = run_alerts(now + timedelta(minutes=30))
    later = run_alerts(now + timedelta(minutes=61))

    assert (len(cooling.opened), cooling.cooling) == (0, 1)
    assert len(later.opened) == 1
    assert Incident.objects.filter(rule=watched).count() == 2


def test_a_silent_agent_already_reported_stays_open_past_the_lookback() -> None:
    now = timezone.now()
    watched = rule("agent_silent", threshold_seconds=3600)
    made = _silent_start(now)
    run_alerts(now)

    later = run_alerts(now + timedelta(days=30))

    assert later.resolved == []
    _silent_stop(now + timedelta(days=30), made)
    Session.objects.filter(pk=made.pk).update(last_active_at=now + timedelta(days=30))
    assert len(run_alerts(now + timedelta(days=30)).resolved) == 1
    assert Incident.objects.filter(rule=watched, resolved_at__isnull=True).count() == 0


def test_a_dry_run_reports_and_writes_nothing() -> None:
    now = timezone.now()
    rule("session_unknown", email_channel())
    _unknown_start(now)
    out = io.StringIO()

    call_command("alerts", "--dry-run", "--json", stdout=out)

    report = json.loads(out.getvalue())
    assert (report["dry_run"], len(report["opened"])) == (True, 1)
    assert not Incident.objects.exists()
    assert not Delivery.objects.exists()
    assert mail.outbox == []


def test_the_command_prints_a_summary_line() -> None:
    rule("session_unknown", email_channel())
    _unknown_start(timezone.now())
    out = io.StringIO()

    call_command("alerts", stdout=out)

    assert out.getvalue().strip() == (
        "Opened 1 incidents, resolved 0 (1 rules); sent 1, 0 to retry, 0 given up."
    )


def test_a_rule_that_cannot_be_evaluated_is_reported_and_the_others_run() -> None:
    now = timezone.now()
    broken = AlertRule.objects.create(name="broken", kind="burn_rate")  # no threshold: invalid
    rule("session_unknown")
    _unknown_start(now)

    result = run_alerts(now)

    assert [e["rule"] for e in result.errors] == [broken.name]
    assert len(result.opened) == 1


def test_rule_kinds_are_evaluated_in_a_constant_number_of_queries(
    django_assert_max_num_queries: Any,
) -> None:
    now = timezone.now()
    for kind, (fields, _, _) in CASES.items():
        rule(kind.removesuffix("_per_agent"), **fields)
    for _ in range(30):
        session(agent=f"a{next(_n)}", last_active_at=now - timedelta(hours=3))
    run_alerts(now, deliver=False)  # opens the silent agents' incidents
    # Rules, their channels, open incidents, cooldowns, then one or two per rule.
    with django_assert_max_num_queries(4 + 2 * len(CASES)):
        run_alerts(now, deliver=False)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("group_after", [100, 2], ids=["one each", "grouped"])
def test_concurrent_runs_never_send_twice(group_after: int) -> None:
    now = timezone.now()
    with receiver(delay=0.05) as server:
        hook = AlertChannel.objects.create(
            name="hook", kind="webhook", url=server.url(), secret="s" * 32
        )
        slack = AlertChannel.objects.create(name="slack", kind="slack", url=server.url("/slack"))
        rule("session_unknown", hook, slack)
        for _ in range(6):
            _unknown_start(now)

        def run() -> None:
            from django.test import override_settings

            with override_settings(
                FLEET_ALERTS_ALLOW_PRIVATE_TARGETS=True, FLEET_ALERTS_GROUP_AFTER=group_after
            ):
                call_command("alerts", stdout=io.StringIO())

        run_in_processes((run, ()), (run, ()), (run, ()))

        hooks = [r for r in server.requests if r.path == "/hook"]
        slacks = [r for r in server.requests if r.path == "/slack"]
    ids = [r.headers["X-Fleet-Delivery"] for r in hooks]
    assert len(ids) == len(set(ids)) == len(slacks)
    subjects = [
        subject
        for r in hooks
        for subject in (
            [r.json["incident"]["subject"]] if r.json["incident"] else r.json["group"]["subjects"]
        )
    ]
    assert sorted(subjects) == sorted(Incident.objects.values_list("subject", flat=True))
    assert Incident.objects.count() == 6
    assert Delivery.objects.exclude(status="sent").count() == 0
    if group_after == 100:
        assert len(hooks) == 6


def test_many_subjects_at_once_are_one_notification_per_channel(settings: Any) -> None:
    settings.FLEET_ALERTS_GROUP_AFTER = 3
    now = timezone.now()
    watched = rule("session_unknown", email_channel(), cooldown_seconds=0)
    crashed = [_unknown_start(now) for _ in range(4)]

    run_alerts(now)
    Session.objects.filter(pk__in=[c.pk for c in crashed]).update(status="active")
    run_alerts(now)
    run_alerts(now)

    assert Incident.objects.filter(rule=watched).count() == 4
    assert [m.subject for m in mail.outbox] == [
        f"[Fleet] Alert: {watched.name} — 4 subjects",
        f"[Fleet] Resolved: {watched.name} — 4 subjects",
    ]
    assert all(f"- session {c.key}" in mail.outbox[0].body for c in crashed)


def test_up_to_the_group_size_each_subject_is_its_own_notification(settings: Any) -> None:
    settings.FLEET_ALERTS_GROUP_AFTER = 3
    now = timezone.now()
    rule("session_unknown", email_channel())
    for _ in range(3):
        _unknown_start(now)

    run_alerts(now)

    assert len(mail.outbox) == 3


def test_reconcile_opens_the_crash_and_stuck_incidents_of_what_it_marks() -> None:
    now = timezone.now()
    crashed = rule("session_unknown", email_channel())
    errored = rule("turn_error")
    rule("budget_exceeded")
    stale = session(last_active_at=now - timedelta(hours=1))
    hung = session(
        state="running",
        turn_started_at=now - timedelta(minutes=20),
        last_active_at=now - timedelta(minutes=20),
    )

    call_command("reconcile", stdout=io.StringIO())

    assert list(Incident.objects.values_list("rule", "subject").order_by("rule")) == [
        (crashed.pk, f"session {stale.key}"),
        (errored.pk, f"session {hung.key}"),
    ]
    assert len(mail.outbox) == 1


def test_a_dry_reconcile_triggers_no_alerts() -> None:
    rule("session_unknown")
    session(last_active_at=timezone.now() - timedelta(hours=1))

    call_command("reconcile", "--dry-run", stdout=io.StringIO())

    assert not Incident.objects.exists()


def test_the_database_allows_one_open_incident_per_rule_and_subject() -> None:
    from django.db import IntegrityError, transaction

    watched = rule("session_unknown")
    Incident.objects.create(rule=watched, subject="session x")
    Incident.objects.create(rule=watched, subject="session x", resolved_at=timezone.now())

    with pytest.raises(IntegrityError), transaction.atomic():
        Incident.objects.create(rule=watched, subject="session x")


def test_disabling_a_rule_closes_its_incidents_quietly() -> None:
    now = timezone.now()
    watched = rule("session_unknown", email_channel())
    _unknown_start(now)
    run_alerts(now)
    AlertRule.objects.filter(pk=watched.pk).update(enabled=False)

    result = run_alerts(now)

    assert result.resolved == []
    assert Incident.objects.get(rule=watched).resolved_at == now
    assert len(mail.outbox) == 1


def test_a_claim_abandoned_by_a_dead_run_is_sent_by_the_next() -> None:
    now = timezone.now()
    rule("session_unknown", email_channel())
    _unknown_start(now)
    run_alerts(now, deliver=False)
    Delivery.objects.update(status="sending", claimed_until=now - timedelta(seconds=1))

    run_alerts(now)

    assert Delivery.objects.get().status == "sent"
    assert len(mail.outbox) == 1


def test_a_claim_still_leased_is_left_alone() -> None:
    now = timezone.now()
    rule("session_unknown", email_channel())
    _unknown_start(now)
    run_alerts(now, deliver=False)
    Delivery.objects.update(status="sending", claimed_until=now + timedelta(minutes=5))

    run_alerts(now)

    assert mail.outbox == []


def test_a_failing_alerts_run_never_fails_reconcile(monkeypatch: pytest.MonkeyPatch) -> None:
    import alerts.receivers

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("alerts are down")

    monkeypatch.setattr(alerts.receivers, "run_alerts", broken)
    stale = session(last_active_at=timezone.now() - timedelta(hours=1))
    out = io.StringIO()

    call_command("reconcile", stdout=out)

    assert Session.objects.get(pk=stale.pk).status == "unknown"
    assert out.getvalue().startswith("Marked 1 stale session unknown")
