"""Budgets and their rollup: spend per UTC quarter hour, hour and day, also per project.

The backfill fills ``BudgetUsage`` (both spans) from the stored messages that
carry usage, so budgets are right for them the moment this migration ends; from
then on ingest keeps it (``sessions.rollups``). What it cannot rebuild:
usage whose messages are gone (purged) and totals that agents report on the
session instead of sending messages (they have no time but the session's):
both count from their next write on (docs/DECISIONS.md "Budgets").
"""

import hashlib
from datetime import UTC
from decimal import Decimal

import django.utils.timezone
from django.db import migrations, models
from django.db.models import Count, Q, Sum, Value
from django.db.models.functions import Coalesce, NullIf, TruncMinute

import sessions.money

BATCH = 5000


def _project_key(project):
    # sessions.models.project_key when this was written.
    return hashlib.sha256(project.encode("utf-8", "surrogatepass")).hexdigest()


def backfill(apps, schema_editor):
    message_model = apps.get_model("agent_sessions", "Message")
    budget_usage = apps.get_model("agent_sessions", "BudgetUsage")
    rows = (
        message_model.objects.filter(cost_source__gt="")
        .annotate(
            bucket=TruncMinute("created_at", tzinfo=UTC),
            bucket_model=Coalesce(NullIf("model", Value("")), "session__model"),
        )
        .values(
            "bucket", "session__agent", "bucket_model", "session__channel", "session__project_root"
        )
        .annotate(
            calls=Count("id"),
            unpriced=Count("id", filter=Q(cost_source="unpriced")),
            prompt=Sum("prompt_tokens"),
            completion=Sum("completion_tokens"),
            cost=Sum("cost_usd"),
        )
        .order_by("bucket")
    )
    # Minutes come in order: a quarter's (an hour's, a day's) buckets are
    # complete once a later one starts, so memory holds one day at a time.
    pending = {"quarter": {}, "hour": {}, "day": {}}
    current = {"quarter": None, "hour": None, "day": None}
    batch = []

    def flush(span):
        batch.extend(pending[span].values())
        pending[span].clear()
        if len(batch) >= BATCH:
            budget_usage.objects.bulk_create(batch)
            batch.clear()

    for row in rows.iterator():
        minute = row["bucket"].astimezone(UTC)
        starts = {
            "quarter": minute.replace(minute=minute.minute - minute.minute % 15, second=0),
            "hour": minute.replace(minute=0, second=0),
            "day": minute.replace(hour=0, minute=0, second=0),
        }
        project = row["session__project_root"] or ""
        key = (row["session__agent"], row["bucket_model"] or "", row["session__channel"], project)
        for span, start in starts.items():
            if start != current[span]:
                flush(span)
                current[span] = start
            bucket = pending[span].get(key)
            if bucket is None:
                bucket = pending[span][key] = budget_usage(
                    span=span,
                    start=start,
                    agent=key[0],
                    model=key[1],
                    channel=key[2],
                    project=project,
                    project_key=_project_key(project),
                    cost_usd=Decimal(0),
                )
            bucket.api_calls += row["calls"]
            bucket.unpriced_calls += row["unpriced"]
            bucket.prompt_tokens += row["prompt"] or 0
            bucket.completion_tokens += row["completion"] or 0
            bucket.cost_usd += row["cost"] or Decimal(0)
    for span in pending:
        flush(span)
    budget_usage.objects.bulk_create(batch)


class Migration(migrations.Migration):
    dependencies = [
        ("agent_sessions", "0009_rollup_counts_named_like_session_totals"),
    ]

    operations = [
        migrations.CreateModel(
            name="Budget",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=100, unique=True)),
                (
                    "agent",
                    models.CharField(blank=True, help_text="blank: every agent", max_length=255),
                ),
                (
                    "model",
                    models.CharField(blank=True, help_text="blank: every model", max_length=255),
                ),
                (
                    "channel",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("cli", "CLI"),
                            ("tui", "TUI"),
                            ("telegram", "Telegram"),
                            ("discord", "Discord"),
                            ("slack", "Slack"),
                            ("acp", "ACP"),
                        ],
                        help_text="blank: every channel",
                        max_length=16,
                    ),
                ),
                (
                    "project",
                    models.CharField(
                        blank=True,
                        help_text="a session's project_root, exactly; blank: every",
                        max_length=1024,
                    ),
                ),
                (
                    "period",
                    models.CharField(
                        choices=[("day", "Day"), ("week", "Week"), ("month", "Month")],
                        default="month",
                        max_length=8,
                    ),
                ),
                (
                    "amount_usd",
                    sessions.money.MoneyField(
                        help_text="USD per period, above 0 and below one billion"
                    ),
                ),
                (
                    "warning_percent",
                    models.PositiveSmallIntegerField(
                        default=80,
                        help_text="warn when the spend reaches this share of the amount (1-100)",
                    ),
                ),
                (
                    "created_at",
                    models.DateTimeField(default=django.utils.timezone.now, editable=False),
                ),
            ],
            options={
                "ordering": ["name"],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            ("warning_percent__gte", 1), ("warning_percent__lte", 100)
                        ),
                        name="budget_warning_percent_range",
                        violation_error_message="The warning share is a percent from 1 to 100.",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("amount_usd__gt", 0)),
                        name="budget_amount_positive",
                        violation_error_message="The amount must be above zero.",
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="BudgetUsage",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("agent", models.CharField(blank=True, max_length=255)),
                ("model", models.CharField(blank=True, max_length=255)),
                ("channel", models.CharField(blank=True, max_length=16)),
                ("api_calls", models.BigIntegerField(default=0)),
                ("unpriced_calls", models.BigIntegerField(default=0)),
                ("prompt_tokens", models.BigIntegerField(default=0)),
                ("completion_tokens", models.BigIntegerField(default=0)),
                ("cost_usd", sessions.money.MoneyField(default=Decimal("0"))),
                (
                    "span",
                    models.CharField(
                        choices=[("quarter", "Quarter"), ("hour", "Hour"), ("day", "Day")],
                        max_length=8,
                    ),
                ),
                ("start", models.DateTimeField()),
                ("project", models.CharField(blank=True, max_length=1024)),
                ("project_key", models.CharField(max_length=64)),
            ],
            options={
                "verbose_name": "budget usage",
                "verbose_name_plural": "budget usage",
                "ordering": ["span", "-start", "agent", "model", "channel", "project"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("span", "start", "agent", "model", "channel", "project_key"),
                        name="budgetusage_unique_bucket",
                    )
                ],
            },
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
    ]
