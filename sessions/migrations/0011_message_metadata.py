"""A message's own metadata: an agent's data about it, and what an importer
keeps from a store that Fleet has no field for (issue 12, section 4).

On SQLite the column is added in place (``ALTER TABLE ADD COLUMN``), not by
Django's copy of the table: that copy would drop the search triggers of
0002 with the old table, and rewrite every message of a large store. The
column keeps a ``DEFAULT '{}'`` there (SQLite adds a NOT NULL column only
with one); Fleet always writes the value itself. PostgreSQL adds it as
Django does (a constant default: no rewrite).
"""

from django.db import migrations, models

# Literal SQL: a migration's text must not change when code elsewhere does.
# The column Django would create, plus the default SQLite needs to add it.
SQLITE_ADD = """
ALTER TABLE "agent_sessions_message" ADD COLUMN "metadata" text NOT NULL DEFAULT '{}'
CHECK ((JSON_VALID("metadata") OR "metadata" IS NULL))
"""
SQLITE_DROP = 'ALTER TABLE "agent_sessions_message" DROP COLUMN "metadata"'


def _field() -> models.JSONField:
    # The state this runs in is the one before AddField (RunPython changes
    # none): the field is built here, as the state operation declares it.
    field = models.JSONField(blank=True, default=dict)
    field.set_attributes_from_name("metadata")
    return field


def add_column(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(SQLITE_ADD, params=None)
        return
    schema_editor.add_field(apps.get_model("agent_sessions", "Message"), _field())


def drop_column(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "sqlite":
        schema_editor.execute(SQLITE_DROP, params=None)
        return
    schema_editor.remove_field(apps.get_model("agent_sessions", "Message"), _field())


class Migration(migrations.Migration):
    dependencies = [
        ("agent_sessions", "0010_budgets"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddField(model_name="message", name="metadata", field=_field()),
            ],
            database_operations=[
                migrations.RunPython(add_column, drop_column, elidable=False),
            ],
        ),
    ]
