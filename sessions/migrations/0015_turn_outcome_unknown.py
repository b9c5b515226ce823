"""A finished turn can end unknown: its session presumed dead by reconcile
(issue 17). Choices only: no schema change."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agent_sessions", "0012_latency"),
    ]

    operations = [
        migrations.AlterField(
            model_name="turn",
            name="outcome",
            field=models.CharField(
                choices=[("idle", "Idle"), ("error", "Error"), ("unknown", "Unknown")],
                max_length=16,
            ),
        ),
    ]
