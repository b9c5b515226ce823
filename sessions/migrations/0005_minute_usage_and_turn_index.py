"""The per-minute usage rollup (the burn rate's source) and the turn index.

``MinuteUsage`` is filled from the messages of the last two hours, so the
burn rate is right the moment this migration ends; from then on ingest keeps
it (``sessions.rollups``). ``session_turn_idx`` (state, status, turn start)
replaces ``session_state_idx`` (state, turn start) so the running and stuck
counts are index range counts.
"""

from datetime import UTC, timedelta
from decimal import Decimal

from django.db import migrations, models
from django.db.models import Count, Q, Sum, Value
from django.db.models.functions import Coalesce, NullIf, TruncMinute
from django.utils import timezone

import sessions.money

RECENT = timedelta(hours=2)  # MinuteUsage.RECENT when this was written


def backfill(apps, schema_editor):
    message_model = apps.get_model("agent_sessions", "Message")
    minute_usage = apps.get_model("agent_sessions", "MinuteUsage")
    since = timezone.now() - RECENT
    rows = (
        # A message in the window moved its session's last_active_at into it:
        # the indexed session filter bounds the scan.
        message_model.objects.filter(
            session__last_active_at__gte=since, created_at__gte=since, cost_source__gt=""
        )
        .annotate(
            bucket=TruncMinute("created_at", tzinfo=UTC),
            bucket_model=Coalesce(NullIf("model", Value("")), "session__model"),
        )
        .values("bucket", "session__agent", "bucket_model", "session__channel")
        .annotate(
            calls=Count("id"),
            unpriced=Count("id", filter=Q(cost_source="unpriced")),
            prompt=Sum("prompt_tokens"),
            completion=Sum("completion_tokens"),
            cost=Sum("cost_usd"),
        )
        .order_by()
    )
    minute_usage.objects.bulk_create(
        minute_usage(
            minute=row["bucket"],
            agent=row["session__agent"],
            model=row["bucket_model"] or "",
            channel=row["session__channel"],
            api_calls=row["calls"],
            unpriced_calls=row["unpriced"],
            prompt_tokens=row["prompt"] or 0,
            completion_tokens=row["completion"] or 0,
            cost_usd=row["cost"] or Decimal(0),
        )
        for row in rows.iterator()
    )


class Migration(migrations.Migration):
    dependencies = [
        ("agent_sessions", "0004_price_override_applies_to_all_history"),
    ]

    operations = [
        migrations.CreateModel(
            name="MinuteUsage",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("minute", models.DateTimeField()),
                ("agent", models.CharField(blank=True, max_length=255)),
                ("model", models.CharField(blank=True, max_length=255)),
                ("channel", models.CharField(blank=True, max_length=16)),
                ("api_calls", models.BigIntegerField(default=0)),
                ("unpriced_calls", models.BigIntegerField(default=0)),
                ("prompt_tokens", models.BigIntegerField(default=0)),
                ("completion_tokens", models.BigIntegerField(default=0)),
                ("cost_usd", sessions.money.MoneyField(default=Decimal("0"))),
            ],
            options={
                "verbose_name_plural": "minute usage",
                "ordering": ["-minute", "agent", "model", "channel"],
            },
        ),
        migrations.RemoveIndex(
            model_name="session",
            name="session_state_idx",
        ),
        migrations.AddIndex(
            model_name="session",
            index=models.Index(
                fields=["state", "status", "turn_started_at"], name="session_turn_idx"
            ),
        ),
        migrations.AddConstraint(
            model_name="minuteusage",
            constraint=models.UniqueConstraint(
                fields=("minute", "agent", "model", "channel"), name="minuteusage_unique_bucket"
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=True),
    ]
