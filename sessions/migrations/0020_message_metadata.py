"""A message's own metadata: an agent's data about it, and what an importer
keeps from a store that Fleet has no field for (issue 12, section 4)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agent_sessions", "0009_rollup_counts_named_like_session_totals"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="metadata",
            field=models.JSONField(blank=True, default=dict),
        ),
    ]
