"""PostgreSQL: the text filter's trigram indexes move off the session table
to a side table kept by triggers (issue 16), as SQLite's FTS5 table of 0018.

0018 put ``pg_trgm`` GIN indexes on the session table's expressions. A
session row's update is never HOT (its sort-indexed columns change on every
append), so every append inserted the trigrams of the key, the name and the
goal's first 1 000 characters into the three GIN indexes again (~+1 ms an
append with a 16 000-character goal, bench/README.md). The side table
``agent_sessions_session_text`` (session id -> key, name, goal head) holds
them instead; its triggers fire on a session's insert, on an update of its
key, name or goal only when one of the texts changes (``WHEN``: an append
saves the counters by name and does not fire it), on delete (purge deletes
sessions with raw SQL) and on ``TRUNCATE`` (Django's ``flush``; a foreign key
would make that ``TRUNCATE`` fail). ``sessions.querysets.text_ids_sql`` reads
the ids from it, on either database.

SQLite: nothing to do (0018's FTS5 table is such a side table already).

Caution for later migrations: the triggers live on ``agent_sessions_session``;
a migration that drops and recreates that table must create them again
(``tests/test_selectors.py`` checks them).
"""

from __future__ import annotations

from django.db import migrations

# Literal SQL: a migration's text must not change when code elsewhere does.
# Keep the 1000 in step with sessions.querysets.GOAL_FILTER_CHARS.
PG_CREATE = [
    """
    CREATE TABLE agent_sessions_session_text (
        session_id bigint PRIMARY KEY,
        key text NOT NULL,
        name text NOT NULL,
        goal text NOT NULL
    )
    """,
    """
    CREATE FUNCTION agent_sessions_session_text_write() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO agent_sessions_session_text (session_id, key, name, goal)
        VALUES (NEW.id, NEW.key, NEW.name, left(NEW.goal_text, 1000))
        ON CONFLICT (session_id) DO UPDATE
            SET key = EXCLUDED.key, name = EXCLUDED.name, goal = EXCLUDED.goal;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE FUNCTION agent_sessions_session_text_delete() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM agent_sessions_session_text WHERE session_id = OLD.id;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE FUNCTION agent_sessions_session_text_truncate() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        TRUNCATE agent_sessions_session_text;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER agent_sessions_session_text_ai
    AFTER INSERT ON agent_sessions_session
    FOR EACH ROW EXECUTE FUNCTION agent_sessions_session_text_write()
    """,
    """
    CREATE TRIGGER agent_sessions_session_text_au
    AFTER UPDATE OF key, name, goal_text ON agent_sessions_session
    FOR EACH ROW
    WHEN (OLD.key IS DISTINCT FROM NEW.key OR OLD.name IS DISTINCT FROM NEW.name
          OR left(OLD.goal_text, 1000) IS DISTINCT FROM left(NEW.goal_text, 1000))
    EXECUTE FUNCTION agent_sessions_session_text_write()
    """,
    """
    CREATE TRIGGER agent_sessions_session_text_ad
    AFTER DELETE ON agent_sessions_session
    FOR EACH ROW EXECUTE FUNCTION agent_sessions_session_text_delete()
    """,
    """
    CREATE TRIGGER agent_sessions_session_text_at
    AFTER TRUNCATE ON agent_sessions_session
    FOR EACH STATEMENT EXECUTE FUNCTION agent_sessions_session_text_truncate()
    """,
    # The sessions stored before this migration (the triggers above hold the
    # session table's lock until the migration commits: no write slips by).
    """
    INSERT INTO agent_sessions_session_text (session_id, key, name, goal)
    SELECT id, key, name, left(goal_text, 1000) FROM agent_sessions_session
    """,
    # The expressions text_ids_sql writes (Django's icontains: UPPER(…) LIKE UPPER(…)).
    "CREATE INDEX session_text_key_trgm_idx ON agent_sessions_session_text "
    "USING gin ((upper(key)) gin_trgm_ops)",
    "CREATE INDEX session_text_name_trgm_idx ON agent_sessions_session_text "
    "USING gin ((upper(name)) gin_trgm_ops)",
    "CREATE INDEX session_text_goal_trgm_idx ON agent_sessions_session_text "
    "USING gin ((upper(goal)) gin_trgm_ops)",
    "DROP INDEX IF EXISTS session_goal_trgm_idx",
    "DROP INDEX IF EXISTS session_name_trgm_idx",
    "DROP INDEX IF EXISTS session_key_trgm_idx",
    # Statistics for the planner's estimate of a text's matches, now.
    "ANALYZE agent_sessions_session_text",
]
PG_REVERSE = [
    "DROP TRIGGER IF EXISTS agent_sessions_session_text_at ON agent_sessions_session",
    "DROP TRIGGER IF EXISTS agent_sessions_session_text_ad ON agent_sessions_session",
    "DROP TRIGGER IF EXISTS agent_sessions_session_text_au ON agent_sessions_session",
    "DROP TRIGGER IF EXISTS agent_sessions_session_text_ai ON agent_sessions_session",
    "DROP FUNCTION IF EXISTS agent_sessions_session_text_truncate()",
    "DROP FUNCTION IF EXISTS agent_sessions_session_text_delete()",
    "DROP FUNCTION IF EXISTS agent_sessions_session_text_write()",
    "DROP TABLE IF EXISTS agent_sessions_session_text",
    # 0018's indexes, as 0018 created them.
    "CREATE INDEX session_key_trgm_idx ON agent_sessions_session "
    "USING gin ((upper((key)::text)) gin_trgm_ops)",
    "CREATE INDEX session_name_trgm_idx ON agent_sessions_session "
    "USING gin ((upper((name)::text)) gin_trgm_ops)",
    "CREATE INDEX session_goal_trgm_idx ON agent_sessions_session "
    "USING gin ((upper(left(goal_text, 1000))) gin_trgm_ops)",
]


def _run(schema_editor, statements: list[str]) -> None:
    for sql in statements:
        # params=None: no placeholder processing of the SQL text.
        schema_editor.execute(sql, params=None)


def forward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        _run(schema_editor, PG_CREATE)


def backward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        _run(schema_editor, PG_REVERSE)


class Migration(migrations.Migration):
    dependencies = [
        ("agent_sessions", "0020_context_view_indexes"),
    ]

    operations = [
        migrations.RunPython(forward, backward, elidable=False),
    ]
