# Issue 12: state error keeps the turn that failed (its start too).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("agent_sessions", "0007_apikey_scope"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="session",
            name="session_turn_only_while_running",
        ),
        migrations.AddConstraint(
            model_name="session",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("turn_started_at__isnull", True),
                    ("state__in", ["running", "error"]),
                    _connector="OR",
                ),
                name="session_turn_only_while_running_or_error",
            ),
        ),
    ]
