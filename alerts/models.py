"""Alert rules, channels, incidents and the delivery log (docs/DECISIONS.md "Alerts").

- A **rule** names a condition (``AlertRule.Kind``) with its threshold and
  filters; ``manage.py alerts`` evaluates it into the subjects for which it
  holds now (a session key, an agent, a budget, the fleet).
- An **incident** is one (rule, subject) while the condition holds: opened
  when it starts, resolved when it ends. The database allows one open
  incident per rule and subject (a partial unique constraint), so two runs
  can never open the same one twice.
- A **delivery** is one notification of one incident event (opened,
  resolved) to one channel, or of several at once (grouped: no storm when
  many subjects start or end together); it is the log and the retry queue (status,
  attempts, next attempt, the last error).
- A **channel** is where notifications go: a JSON webhook (HMAC-signed with
  its secret), a Slack or Discord incoming webhook, or email. Webhook URLs
  and secrets are credentials: never logged, never shown back in full.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.db.models import Q
from django.utils import timezone

from sessions.choices import Channel as SessionChannel

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class AlertRule(models.Model):
    class Kind(models.TextChoices):
        SESSION_STUCK = "session_stuck", "session stuck (running turn older than the threshold)"
        SESSION_UNKNOWN = "session_unknown", "session became unknown (agent crashed)"
        TURN_ERROR = "turn_error", "turn entered error"
        BURN_RATE = "burn_rate", "burn rate above the threshold (USD/hour)"
        BUDGET_WARNING = "budget_warning", "budget warning"
        BUDGET_EXCEEDED = "budget_exceeded", "budget exceeded"
        AGENT_SILENT = "agent_silent", "agent silent longer than the threshold"
        MODEL_LATENCY = (
            "model_latency",
            "model call p95 latency above the threshold (ms), per model",
        )
        TOOL_LATENCY = "tool_latency", "tool run p95 latency above the threshold (ms), per tool"

    class Per(models.TextChoices):
        FLEET = "fleet"
        AGENT = "agent"

    SESSION_KINDS = (Kind.SESSION_STUCK, Kind.SESSION_UNKNOWN, Kind.TURN_ERROR)
    BUDGET_KINDS = (Kind.BUDGET_WARNING, Kind.BUDGET_EXCEEDED)
    LATENCY_KINDS = (Kind.MODEL_LATENCY, Kind.TOOL_LATENCY)
    # A latency rule's window, in UTC days including today (the rollup's days).
    DEFAULT_WINDOW_DAYS = 1
    MAX_WINDOW_DAYS = 31
    # A latency rule's minimum of calls (runs) in the window when left blank:
    # below 20, the nearest-rank p95 is the slowest call alone.
    DEFAULT_MIN_COUNT = 20

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=32, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    threshold_seconds = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="seconds: stuck turn age, unknown/error window, agent silence",
    )
    threshold_usd_per_hour = models.DecimalField(
        max_digits=14,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="burn rate: fires above this USD spent in the last hour",
    )
    threshold_ms = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="latency: fires when the p95 is above this many milliseconds",
    )
    window_days = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        help_text="latency: the p95 of the last N UTC days, today included "
        "(blank: today only; at most 31)",
    )
    min_count = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="latency: only a model or tool with at least this many calls or runs "
        "in the window fires (blank: 20; below 20 a p95 is the slowest one alone)",
    )
    per = models.CharField(
        max_length=8,
        choices=Per.choices,
        default=Per.FLEET,
        help_text="burn rate: the whole fleet's or each agent's",
    )
    agent = models.CharField(max_length=255, blank=True, help_text="blank: every agent")
    channel = models.CharField(
        max_length=16,
        choices=SessionChannel.choices,
        blank=True,
        help_text="blank: every channel",
    )
    model = models.CharField(max_length=255, blank=True, help_text="blank: every model")
    cooldown_seconds = models.PositiveIntegerField(
        default=3600,
        help_text="seconds after a resolve before the subject may open again",
    )
    channels: models.ManyToManyField[AlertChannel, Any] = models.ManyToManyField(
        "AlertChannel", blank=True, related_name="rules"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def filters(self) -> dict[str, str]:
        values = {"agent": self.agent, "channel": self.channel, "model": self.model}
        return {name: value for name, value in values.items() if value}

    @property
    def minimum_count(self) -> int:
        """A latency rule's minimum of calls or runs in the window (blank: the default)."""
        return self.DEFAULT_MIN_COUNT if self.min_count is None else self.min_count

    @property
    def cooldown(self) -> timedelta:
        return timedelta(seconds=self.cooldown_seconds)

    def clean(self) -> None:
        """Refuse what ``alerts`` could not evaluate: a filter value no session
        can carry, a threshold missing or given to a kind that has none."""
        errors: dict[str, str] = {}
        for name, value in self.filters.items():
            if _CONTROL.search(value):
                errors[name] = "nothing can match: names carry no control characters"
            elif value != value.strip():
                errors[name] = "nothing can match: remove the spaces around the name"
        if self.channel and self.channel not in SessionChannel.values:
            errors["channel"] = f"unknown channel {self.channel!r}"
        if self.kind == self.Kind.BURN_RATE:
            if self.threshold_usd_per_hour is None or self.threshold_usd_per_hour <= 0:
                errors["threshold_usd_per_hour"] = "a burn-rate rule needs a threshold above 0"
        elif self.threshold_usd_per_hour is not None:
            errors["threshold_usd_per_hour"] = "only a burn-rate rule has a USD threshold"
        if self.kind == self.Kind.AGENT_SILENT and not self.threshold_seconds:
            errors["threshold_seconds"] = "an agent-silent rule needs a silence in seconds"
        no_duration = (*self.BUDGET_KINDS, self.Kind.BURN_RATE, *self.LATENCY_KINDS)
        if self.kind in no_duration and self.threshold_seconds is not None:
            errors["threshold_seconds"] = "this kind has no duration threshold"
        if self.threshold_seconds == 0:
            errors["threshold_seconds"] = "a duration above 0 seconds"
        errors.update(self._latency_errors())
        if self.per == self.Per.AGENT and self.kind != self.Kind.BURN_RATE:
            errors["per"] = "only a burn-rate rule is counted per agent"
        if errors:
            raise ValidationError(errors)

    def _latency_errors(self) -> dict[str, str]:
        """``clean``'s part for the latency fields: set on a latency rule only."""
        errors: dict[str, str] = {}
        if self.kind in self.LATENCY_KINDS:
            if not self.threshold_ms:
                errors["threshold_ms"] = "a latency rule needs a threshold above 0 ms"
            if self.channel:
                # The latency rollup is per agent and model, not per channel.
                errors["channel"] = "a latency rule cannot filter by channel"
            if self.window_days is not None and not (1 <= self.window_days <= self.MAX_WINDOW_DAYS):
                errors["window_days"] = f"from 1 to {self.MAX_WINDOW_DAYS} days"
            if self.min_count is not None and self.min_count < 1:
                errors["min_count"] = f"at least 1 call (blank: {self.DEFAULT_MIN_COUNT})"
            return errors
        if self.threshold_ms is not None:
            errors["threshold_ms"] = "only a latency rule has a threshold in ms"
        if self.window_days is not None:
            errors["window_days"] = "only a latency rule has a window in days"
        if self.min_count is not None:
            errors["min_count"] = "only a latency rule has a minimum count"
        return errors


class AlertChannel(models.Model):
    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "JSON webhook (HMAC-SHA256 signed)"
        SLACK = "slack", "Slack incoming webhook"
        DISCORD = "discord", "Discord webhook"
        EMAIL = "email"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    enabled = models.BooleanField(default=True)
    # Credentials: a Slack or Discord webhook URL is its own secret.
    url = models.CharField(max_length=2048, blank=True)
    secret = models.CharField(max_length=255, blank=True)
    email_to = models.CharField(
        max_length=1024, blank=True, help_text="email: recipients, comma-separated"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def recipients(self) -> list[str]:
        return [part.strip() for part in self.email_to.split(",") if part.strip()]

    @property
    def target(self) -> str:
        """Where it sends, with no secret: the URL's scheme and host, or the addresses."""
        if self.kind == self.Kind.EMAIL:
            return ", ".join(self.recipients)
        return mask_url(self.url)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.kind == self.Kind.EMAIL:
            if not self.recipients:
                errors["email_to"] = "an email channel needs at least one recipient"
            for address in self.recipients:
                try:
                    validate_email(address)
                except ValidationError:
                    errors["email_to"] = f"not an email address: {address!r}"
        else:
            if not re.match(r"^https?://[^/\s]+", self.url or ""):
                errors["url"] = "an http:// or https:// URL"
            if self.kind == self.Kind.WEBHOOK and len(self.secret) < 16:
                errors["secret"] = "a signing secret of at least 16 characters"  # noqa: S105
        if errors:
            raise ValidationError(errors)


def mask_url(url: str) -> str:
    """``https://hooks.slack.com/…``: the scheme and host only (paths carry tokens)."""
    match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)([^/?#@]*@)?([^/?#]*)", url or "")
    if not match:
        return "…" if url else ""
    return f"{match.group(1)}{match.group(3)}/…"


def mask_secret(secret: str) -> str:
    return f"…{secret[-4:]}" if len(secret) >= 16 else ("…" if secret else "")


class Incident(models.Model):
    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="incidents")
    subject = models.CharField(max_length=512)
    details = models.JSONField(default=dict, blank=True)
    opened_at = models.DateTimeField(default=timezone.now)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "subject"],
                condition=Q(resolved_at__isnull=True),
                name="incident_one_open_per_rule_subject",
            )
        ]
        indexes = [
            models.Index(fields=["resolved_at", "rule"], name="incident_open_idx"),
            models.Index(fields=["rule", "subject", "-resolved_at"], name="incident_cooldown_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.rule_id}: {self.subject}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None

    @property
    def state(self) -> str:
        return "open" if self.resolved_at is None else "resolved"


class Delivery(models.Model):
    class Event(models.TextChoices):
        OPENED = "opened"
        RESOLVED = "resolved"
        TEST = "test"

    class Status(models.TextChoices):
        PENDING = "pending"  # not tried yet
        SENDING = "sending"  # claimed by a run until claimed_until
        RETRY = "retry"  # failed, tried again at next_attempt_at
        SENT = "sent"
        FAILED = "failed"  # gave up after the last attempt

    # One incident's event; or, grouped (a rule opening or resolving more than
    # FLEET_ALERTS_GROUP_AFTER subjects in one run), the rule and the subjects;
    # or neither: a test.
    incident = models.ForeignKey(
        Incident, on_delete=models.CASCADE, related_name="deliveries", null=True, blank=True
    )
    rule = models.ForeignKey(
        AlertRule, on_delete=models.CASCADE, related_name="grouped_deliveries", null=True,
        blank=True,
    )  # fmt: skip
    subjects = models.JSONField(default=list, blank=True)
    channel = models.ForeignKey(AlertChannel, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=16, choices=Event.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due_idx")]

    def __str__(self) -> str:
        return f"{self.event} → {self.channel_id} ({self.status})"
