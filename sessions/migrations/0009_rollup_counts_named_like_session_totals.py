"""The daily rollup's counts take the names of the session totals they add up."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("agent_sessions", "0008_turn_kept_on_error"),
    ]

    operations = [
        migrations.RenameField(
            model_name="dailyusage", old_name="messages", new_name="message_count"
        ),
        migrations.RenameField(
            model_name="dailyusage", old_name="tool_calls", new_name="tool_call_count"
        ),
    ]
