"""Latency follow-ups (issue 17).

- A finished turn can end ``unknown``: its session presumed dead by
  reconcile's stale or agent rule (choices only, no schema change).
- ``message_session_duration_idx``: a session's timed messages by duration,
  partial (only messages with a ``duration_ms``), so the session page's
  slowest calls are one bounded index range however long the transcript.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agent_sessions", "0013_sub_agent_wait"),
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
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(("duration_ms__isnull", False)),
                fields=["session", "-duration_ms", "-seq"],
                name="message_session_duration_idx",
            ),
        ),
    ]
