"""Latency rules (issue 17): the p95 of model calls per model or of tool runs
per tool over a threshold in ms, over a window of UTC days."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="alertrule",
            name="threshold_ms",
            field=models.PositiveIntegerField(
                blank=True,
                help_text="latency: fires when the p95 is above this many milliseconds",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="alertrule",
            name="window_days",
            field=models.PositiveSmallIntegerField(
                blank=True,
                help_text="latency: the p95 of the last N UTC days, today included "
                "(blank: today only; at most 31)",
                null=True,
            ),
        ),
        migrations.AlterField(
            model_name="alertrule",
            name="kind",
            field=models.CharField(
                choices=[
                    ("session_stuck", "session stuck (running turn older than the threshold)"),
                    ("session_unknown", "session became unknown (agent crashed)"),
                    ("turn_error", "turn entered error"),
                    ("burn_rate", "burn rate above the threshold (USD/hour)"),
                    ("budget_warning", "budget warning"),
                    ("budget_exceeded", "budget exceeded"),
                    ("agent_silent", "agent silent longer than the threshold"),
                    ("model_latency", "model call p95 latency above the threshold (ms), per model"),
                    ("tool_latency", "tool run p95 latency above the threshold (ms), per tool"),
                ],
                max_length=32,
            ),
        ),
    ]
