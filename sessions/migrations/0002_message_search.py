"""Keyword search over message content, one index per database.

SQLite: an FTS5 external-content table over ``agent_sessions_message.content``
kept in sync by triggers, so every write path (services, the admin, purge's
bulk deletes, raw SQL) keeps it right. Rows with NULL content are indexed as
empty documents, exactly as FTS5's ``rebuild`` does, so the ``delete`` command
in the triggers always sees the values that were indexed.

PostgreSQL: a GIN expression index (migration 0006 replaced it with a stored
column holding the same vector, indexed the same way).
The expression turns ASCII punctuation into spaces before parsing, so that
``sessions/search.py`` or ``os.path.join`` are indexed as their words (the
default parser would keep them as one file/host token and a search for
``search`` or ``join`` would miss them, unlike on SQLite), and indexes the
first 100 000 characters only: a tsvector is limited to 1 MB, and a longer
message of distinct words would otherwise make its INSERT fail.

Caution for later migrations on SQLite: a change that makes Django rebuild
``agent_sessions_message`` (copy, drop, rename) drops these triggers with the
old table. Such a migration must run ``SQLITE_TRIGGERS`` again (and rebuild
the index); ``tests/test_search.py`` fails if the triggers are missing.
"""

from __future__ import annotations

from django.db import migrations

# Literal SQL: a migration's text must not change when code elsewhere does.
SQLITE_TABLE = """
CREATE VIRTUAL TABLE agent_sessions_message_fts USING fts5(
    content,
    content='agent_sessions_message',
    content_rowid='id',
    tokenize='unicode61 remove_diacritics 2'
)
"""
# The external-content pattern: FTS5's 'delete' command needs the old values.
SQLITE_TRIGGERS = [
    """
    CREATE TRIGGER agent_sessions_message_fts_ai AFTER INSERT ON agent_sessions_message
    BEGIN
        INSERT INTO agent_sessions_message_fts(rowid, content) VALUES (new.id, new.content);
    END
    """,
    """
    CREATE TRIGGER agent_sessions_message_fts_ad AFTER DELETE ON agent_sessions_message
    BEGIN
        INSERT INTO agent_sessions_message_fts(agent_sessions_message_fts, rowid, content)
        VALUES ('delete', old.id, old.content);
    END
    """,
    """
    CREATE TRIGGER agent_sessions_message_fts_au AFTER UPDATE OF content
    ON agent_sessions_message
    BEGIN
        INSERT INTO agent_sessions_message_fts(agent_sessions_message_fts, rowid, content)
        VALUES ('delete', old.id, old.content);
        INSERT INTO agent_sessions_message_fts(rowid, content) VALUES (new.id, new.content);
    END
    """,
]
# Index the messages stored before this migration.
SQLITE_REBUILD = (
    "INSERT INTO agent_sessions_message_fts(agent_sessions_message_fts) VALUES ('rebuild')"
)
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS agent_sessions_message_fts_au",
    "DROP TRIGGER IF EXISTS agent_sessions_message_fts_ad",
    "DROP TRIGGER IF EXISTS agent_sessions_message_fts_ai",
    "DROP TABLE IF EXISTS agent_sessions_message_fts",
]

# Keep in step with sessions.search.POSTGRES_VECTOR (a test checks the plan).
# ASCII punctuation except ' \ % (those three already separate words, and
# leaving them out keeps the literal free of escapes and placeholders).
PG_CREATE = """
CREATE INDEX message_content_search_idx ON agent_sessions_message USING gin ((
    to_tsvector('simple'::regconfig, translate(left(coalesce(content, ''), 100000),
        '!"#$&()*+,-./:;<=>?@[]^_`{|}~',
        '                             '))
))
"""
PG_REVERSE = "DROP INDEX IF EXISTS message_content_search_idx"


def _run(schema_editor, statements: list[str]) -> None:
    for sql in statements:
        # params=None: no placeholder processing of the SQL text.
        schema_editor.execute(sql, params=None)


def create_search_index(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        _run(schema_editor, [SQLITE_TABLE, *SQLITE_TRIGGERS, SQLITE_REBUILD])
    elif vendor == "postgresql":
        _run(schema_editor, [PG_CREATE])


def drop_search_index(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        _run(schema_editor, SQLITE_REVERSE)
    elif vendor == "postgresql":
        _run(schema_editor, [PG_REVERSE])


class Migration(migrations.Migration):
    dependencies = [
        ("agent_sessions", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(create_search_index, drop_search_index, elidable=False),
    ]
