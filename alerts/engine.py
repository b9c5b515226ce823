"""``manage.py alerts``: evaluate the rules, open and resolve incidents, deliver.

Idempotent and safe to run concurrently (docs/DECISIONS.md "Alerts"):

- **Opening** inserts a rule's new incidents and their "opened" deliveries
  in one transaction (each insert in a savepoint); the database allows one
  open incident per rule and subject (``incident_one_open_per_rule_subject``),
  so of two runs that see the same new condition one inserts and the other
  gets an ``IntegrityError`` and queues nothing for it.
- **Resolving** is a conditional ``UPDATE … WHERE resolved_at IS NULL``; only
  the run whose update changed the row queues the "resolved" deliveries.
- **Grouping**: a rule that opens (or resolves) more than
  ``FLEET_ALERTS_GROUP_AFTER`` subjects in one run sends one notification per
  channel naming them all, not one each (no storm when a fleet crashes).
- **Disabling** a rule resolves its open incidents without a notification.
- **Cooldown**: a subject whose incident of the rule resolved less than the
  rule's cooldown ago does not open a new one (no storm from a flapping
  condition).
- **Delivering** claims one due delivery at a time (status ``sending`` with a
  lease, ``claimed_until``): on PostgreSQL ``SELECT … FOR UPDATE SKIP LOCKED``
  then the update, on SQLite a conditional ``UPDATE`` of that row that only
  one writer can win. A claim whose lease ran out (its run died mid-send) is
  due again: a crash may send twice, a race never. A failure is retried with
  exponential backoff (``BACKOFF_BASE`` doubling up to ``BACKOFF_MAX``) until
  ``FLEET_ALERTS_MAX_ATTEMPTS``; a channel that fails is skipped for the rest
  of the run so it never holds up the others.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Max, Q
from django.utils import timezone

from alerts.models import AlertChannel, AlertRule, Delivery, Incident
from alerts.notify import send
from alerts.rules import evaluate
from alerts.transport import DeliveryError

logger = logging.getLogger("alerts")

BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=1)
MAX_SENDS_PER_RUN = 500
ALL_KINDS = tuple(AlertRule.Kind.values)
# What reconcile marks: crashed (unknown) sessions and stuck turns (error).
RECONCILE_KINDS = (
    AlertRule.Kind.SESSION_UNKNOWN,
    AlertRule.Kind.SESSION_STUCK,
    AlertRule.Kind.TURN_ERROR,
)


@dataclass
class AlertsResult:
    dry_run: bool
    rules: int = 0
    opened: list[dict[str, Any]] = field(default_factory=list)
    resolved: list[dict[str, Any]] = field(default_factory=list)
    cooling: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    due: int = 0
    errors: list[dict[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        verb = "Would open" if self.dry_run else "Opened"
        resolved = "would resolve" if self.dry_run else "resolved"
        sends = (
            f"{self.due} deliveries due"
            if self.dry_run
            else f"sent {self.sent}, {self.retrying} to retry, {self.failed} given up"
        )
        errors = f"; {len(self.errors)} rules failed" if self.errors else ""
        return (
            f"{verb} {len(self.opened)} incidents, {resolved} {len(self.resolved)} "
            f"({self.rules} rules); {sends}{errors}."
        )


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failure: 1, 2, 4 … minutes, at most an hour."""
    return min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_MAX)


def run_alerts(
    now: datetime | None = None,
    *,
    dry_run: bool = False,
    kinds: Collection[str] = ALL_KINDS,
    deliver: bool = True,
) -> AlertsResult:
    """Evaluate the enabled rules of ``kinds`` at ``now``, then send what is due."""
    now = now or timezone.now()
    result = AlertsResult(dry_run=dry_run)
    if not dry_run:
        # A disabled rule watches nothing: its incidents close, with no notification.
        Incident.objects.filter(resolved_at__isnull=True, rule__enabled=False).update(
            resolved_at=now
        )
    rules = list(
        AlertRule.objects.filter(enabled=True, kind__in=list(kinds)).prefetch_related("channels")
    )
    result.rules = len(rules)
    # Only incidents resolved within the longest cooldown matter (not all history).
    longest = max((rule.cooldown for rule in rules), default=timedelta(0))
    open_by_rule: dict[int, dict[str, Incident]] = {}
    still_open = Incident.objects.filter(rule__in=rules, resolved_at__isnull=True)
    for incident in still_open.only("id", "rule", "subject").order_by():
        open_by_rule.setdefault(incident.rule_id, {})[incident.subject] = incident
    last_resolved = {
        (row["rule"], row["subject"]): row["last"]
        for row in Incident.objects.filter(rule__in=rules, resolved_at__gte=now - longest)
        .values("rule", "subject")
        .annotate(last=Max("resolved_at"))
        .order_by()
    }
    for rule in rules:
        current = open_by_rule.get(rule.pk, {})
        try:
            holding = evaluate(rule, now, current.keys())
        except Exception as exc:  # one broken rule never stops the others
            logger.exception("alert rule %s failed", rule.pk)
            result.errors.append({"rule": rule.name, "error": f"{type(exc).__name__}: {exc}"})
            continue
        starting = {}
        for subject, details in holding.items():
            if subject in current:
                continue
            resolved_at = last_resolved.get((rule.pk, subject))
            if resolved_at is not None and now - resolved_at < rule.cooldown:
                result.cooling += 1
                continue
            starting[subject] = details
        ending = [incident for subject, incident in current.items() if subject not in holding]
        if not dry_run:
            starting = _open(rule, starting, now)
            ending = _resolve(rule, ending, now)
        result.opened.extend({"rule": rule.name, "subject": subject} for subject in starting)
        result.resolved.extend({"rule": rule.name, "subject": i.subject} for i in ending)
    if dry_run:
        result.due = Delivery.objects.filter(_due(now)).count()
    elif deliver:
        deliver_due(result)
    return result


def _channels(rule: AlertRule) -> list[AlertChannel]:
    return [channel for channel in rule.channels.all() if channel.enabled]


def _queue(rule: AlertRule, event: str, incidents: list[Incident], now: datetime) -> None:
    """The deliveries of ``event`` for ``incidents`` of ``rule``: one per incident and
    channel, or, past ``FLEET_ALERTS_GROUP_AFTER`` incidents, one per channel for all."""
    channels = _channels(rule)
    if not incidents or not channels:
        return
    if len(incidents) <= settings.FLEET_ALERTS_GROUP_AFTER:
        rows = [
            Delivery(incident=incident, channel=channel, event=event, next_attempt_at=now)
            for incident in incidents
            for channel in channels
        ]
    else:
        subjects = [incident.subject for incident in incidents]
        rows = [
            Delivery(rule=rule, subjects=subjects, channel=c, event=event, next_attempt_at=now)
            for c in channels
        ]
    Delivery.objects.bulk_create(rows)


def _open(
    rule: AlertRule, starting: dict[str, dict[str, Any]], now: datetime
) -> dict[str, dict[str, Any]]:
    """Open an incident per subject and queue their notifications, in one transaction;
    the subjects this run opened (another run may have opened some first)."""
    if not starting:
        return {}
    opened: dict[str, dict[str, Any]] = {}
    incidents = []
    with transaction.atomic():
        for subject, details in starting.items():
            try:
                with transaction.atomic():
                    incident = Incident.objects.create(
                        rule=rule, subject=subject, details=details, opened_at=now
                    )
            except IntegrityError:
                continue  # another run opened it first: its notification is that run's
            opened[subject] = details
            incidents.append(incident)
        _queue(rule, Delivery.Event.OPENED, incidents, now)
    return opened


def _resolve(rule: AlertRule, ending: list[Incident], now: datetime) -> list[Incident]:
    """Resolve ``ending`` and queue their notifications, in one transaction; the
    incidents this run resolved (a conditional update: another run may have)."""
    if not ending:
        return []
    resolved = []
    with transaction.atomic():
        for incident in ending:
            won = Incident.objects.filter(pk=incident.pk, resolved_at__isnull=True).update(
                resolved_at=now
            )
            if won:
                incident.resolved_at = now
                resolved.append(incident)
        _queue(rule, Delivery.Event.RESOLVED, resolved, now)
    return resolved


def _due(now: datetime) -> Q:
    waiting = Q(
        status__in=[Delivery.Status.PENDING, Delivery.Status.RETRY], next_attempt_at__lte=now
    )
    abandoned = Q(status=Delivery.Status.SENDING, claimed_until__lt=now)
    return waiting | abandoned


def _lease() -> timedelta:
    # One send: connect and a read or two, each bounded by the timeout.
    return timedelta(seconds=4 * settings.FLEET_ALERTS_TIMEOUT + 30)


def claim_next(skip_channels: Collection[int] = ()) -> Delivery | None:
    """Claim one due delivery for this run (see the module doc), or ``None``."""
    now = timezone.now()
    due = Delivery.objects.filter(_due(now)).exclude(channel__in=list(skip_channels))
    due = due.order_by("next_attempt_at", "id")
    claim = {"status": Delivery.Status.SENDING, "claimed_until": now + _lease()}
    if connection.vendor == "postgresql":
        with transaction.atomic():
            pk = due.select_for_update(skip_locked=True).values_list("id", flat=True).first()
            if pk is None:
                return None
            Delivery.objects.filter(pk=pk).update(**claim)
    else:
        while True:
            pk = due.values_list("id", flat=True).first()
            if pk is None:
                return None
            # Only one writer's UPDATE still finds the row due; the loser tries the next.
            if Delivery.objects.filter(_due(now), pk=pk).update(**claim):
                break
    return Delivery.objects.select_related("channel", "incident__rule", "rule").get(pk=pk)


def attempt(delivery: Delivery) -> bool:
    """Send a claimed delivery and record the outcome; whether it was sent."""
    error = ""
    try:
        send(delivery)
    except DeliveryError as exc:
        error = str(exc)
    except Exception as exc:  # a bug in one channel's formatting fails that delivery only
        logger.exception("alert delivery %s failed", delivery.pk)
        error = f"unexpected error: {type(exc).__name__}"
    now = timezone.now()
    delivery.attempts += 1
    delivery.claimed_until = None
    if not error:
        delivery.status = Delivery.Status.SENT
        delivery.sent_at = now
        delivery.last_error = ""
    elif (
        delivery.attempts >= settings.FLEET_ALERTS_MAX_ATTEMPTS
        or delivery.event == Delivery.Event.TEST
    ):
        delivery.status = Delivery.Status.FAILED
        delivery.last_error = error
    else:
        delivery.status = Delivery.Status.RETRY
        delivery.next_attempt_at = now + backoff(delivery.attempts)
        delivery.last_error = error
    delivery.save(
        update_fields=[
            "attempts",
            "claimed_until",
            "status",
            "sent_at",
            "last_error",
            "next_attempt_at",
        ]
    )
    if error:
        logger.warning(
            "alert delivery %s to channel %s failed (attempt %s): %s",
            delivery.pk,
            delivery.channel.name,
            delivery.attempts,
            error,
        )
    return not error


def deliver_due(result: AlertsResult) -> None:
    """Send every due delivery once; a channel that fails is left for the next run."""
    failing: set[int] = set()
    for _ in range(MAX_SENDS_PER_RUN):
        delivery = claim_next(failing)
        if delivery is None:
            return
        if attempt(delivery):
            result.sent += 1
        else:
            failing.add(delivery.channel_id)
            if delivery.status == Delivery.Status.FAILED:
                result.failed += 1
            else:
                result.retrying += 1


def send_test(channel: AlertChannel) -> Delivery:
    """Send a test notification to ``channel`` now, logged as a delivery."""
    delivery = Delivery.objects.create(
        channel=channel,
        event=Delivery.Event.TEST,
        status=Delivery.Status.SENDING,
        claimed_until=timezone.now() + _lease(),
    )
    delivery.channel = channel
    attempt(delivery)
    return delivery
