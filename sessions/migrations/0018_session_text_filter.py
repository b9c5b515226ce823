"""The sessions table's text filter gets an index (issue 16), and the
URL-only ``messages`` sort its two (``Session.Meta.indexes``, as 0015's).

The text filter: a substring of
a session's key, name or the first 1 000 characters of its goal, any case.

PostgreSQL: ``pg_trgm`` GIN indexes on the very expressions the filter
writes (``UPPER(col::text) LIKE UPPER(%s)``, Django's ``icontains``; the goal
through ``LEFT(goal_text, 1000)``), so the planner reads the matches through a
bitmap of them. pg_trgm is a trusted extension: the database's owner may
create it (the test database and CI's throwaway cluster are the owner's).

SQLite: a contentless FTS5 table with the ``trigram`` tokenizer over the same
three texts, kept by triggers on the session table; a quoted phrase of three
characters or more matches exactly the rows holding it as a substring (case
folded). Contentless, so the goal's prefix is all it stores; its ``delete``
command needs the indexed values, which the triggers pass from ``old``. The
update trigger fires only when one of the three texts changes: an append saves
the session's counters by name and does not touch it.

Caution for later migrations on SQLite, as with 0002: a change that makes
Django rebuild ``agent_sessions_session`` (copy, drop, rename) drops these
triggers with the old table; such a migration must run ``SQLITE_TRIGGERS``
again (``tests/test_selectors.py`` fails if they are missing).
"""

from __future__ import annotations

from django.db import migrations, models

# Literal SQL: a migration's text must not change when code elsewhere does.
# Keep the 1000 in step with sessions.querysets.GOAL_FILTER_CHARS.
SQLITE_TABLE = """
CREATE VIRTUAL TABLE agent_sessions_session_text USING fts5(
    key, name, goal, content='', tokenize='trigram'
)
"""
_SQLITE_INSERT = """
    INSERT INTO agent_sessions_session_text(rowid, key, name, goal)
    VALUES (new.id, new.key, new.name, substr(new.goal_text, 1, 1000));
"""
_SQLITE_DELETE = """
    INSERT INTO agent_sessions_session_text(agent_sessions_session_text, rowid, key, name, goal)
    VALUES ('delete', old.id, old.key, old.name, substr(old.goal_text, 1, 1000));
"""
SQLITE_TRIGGERS = [
    f"""
    CREATE TRIGGER agent_sessions_session_text_ai AFTER INSERT ON agent_sessions_session
    BEGIN {_SQLITE_INSERT} END
    """,
    f"""
    CREATE TRIGGER agent_sessions_session_text_ad AFTER DELETE ON agent_sessions_session
    BEGIN {_SQLITE_DELETE} END
    """,
    f"""
    CREATE TRIGGER agent_sessions_session_text_au
    AFTER UPDATE OF key, name, goal_text ON agent_sessions_session
    WHEN old.key IS NOT new.key OR old.name IS NOT new.name
        OR substr(old.goal_text, 1, 1000) IS NOT substr(new.goal_text, 1, 1000)
    BEGIN {_SQLITE_DELETE} {_SQLITE_INSERT} END
    """,
]
# Index the sessions stored before this migration.
SQLITE_FILL = """
INSERT INTO agent_sessions_session_text(rowid, key, name, goal)
SELECT id, key, name, substr(goal_text, 1, 1000) FROM agent_sessions_session
"""
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS agent_sessions_session_text_au",
    "DROP TRIGGER IF EXISTS agent_sessions_session_text_ad",
    "DROP TRIGGER IF EXISTS agent_sessions_session_text_ai",
    "DROP TABLE IF EXISTS agent_sessions_session_text",
]

PG_CREATE = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX session_key_trgm_idx ON agent_sessions_session "
    "USING gin ((upper((key)::text)) gin_trgm_ops)",
    "CREATE INDEX session_name_trgm_idx ON agent_sessions_session "
    "USING gin ((upper((name)::text)) gin_trgm_ops)",
    "CREATE INDEX session_goal_trgm_idx ON agent_sessions_session "
    "USING gin ((upper(left(goal_text, 1000))) gin_trgm_ops)",
]
# The extension stays: other objects may have come to use it.
PG_REVERSE = [
    "DROP INDEX IF EXISTS session_goal_trgm_idx",
    "DROP INDEX IF EXISTS session_name_trgm_idx",
    "DROP INDEX IF EXISTS session_key_trgm_idx",
]


def _run(schema_editor, statements: list[str]) -> None:
    for sql in statements:
        # params=None: no placeholder processing of the SQL text.
        schema_editor.execute(sql, params=None)


def forward(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        _run(schema_editor, [SQLITE_TABLE, *SQLITE_TRIGGERS, SQLITE_FILL])
    elif vendor == "postgresql":
        _run(schema_editor, PG_CREATE)


def backward(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        _run(schema_editor, SQLITE_REVERSE)
    elif vendor == "postgresql":
        _run(schema_editor, PG_REVERSE)


class Migration(migrations.Migration):
    dependencies = [
        ("agent_sessions", "0017_session_tally"),
    ]

    operations = [
        migrations.RunPython(forward, backward, elidable=False),
        migrations.AddIndex(
            model_name="session",
            index=models.Index(
                models.OrderBy(models.F("message_count"), descending=True),
                models.OrderBy(models.F("last_active_at"), descending=True),
                models.OrderBy(models.F("id"), descending=True),
                name="session_messages_desc_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="session",
            index=models.Index(
                models.OrderBy(models.F("message_count")),
                models.OrderBy(models.F("last_active_at"), descending=True),
                models.OrderBy(models.F("id"), descending=True),
                name="session_messages_idx",
            ),
        ),
    ]
