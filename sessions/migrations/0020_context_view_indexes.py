"""The context view and pending tool calls read a page, not the transcript (issue 16).

- ``message_tool_call_idx``: a session's tool results by call id (only rows
  that answer a call), so pairing a call with its result is one index probe.
- ``message_summary_idx``: a session's compaction summaries (few per session),
  which the context view places first.

Both partial and on the message table: plain ``CREATE INDEX`` on both databases
(writes to the message table wait while PostgreSQL builds them; see
bench/README.md for the time at 1 M sessions).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agent_sessions", "0019_fleet_latency_usage"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=~models.Q(tool_call_id=""),
                fields=["session", "tool_call_id"],
                name="message_tool_call_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(is_summary=True),
                fields=["session", "seq"],
                name="message_summary_idx",
            ),
        ),
    ]
