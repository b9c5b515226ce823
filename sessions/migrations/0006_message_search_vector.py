"""PostgreSQL: the message search vector becomes a stored column.

Migration 0002 indexed an expression, ``to_tsvector(…content…)``. Ranking
with ``ts_rank`` then recomputed that vector for every candidate (about
0.4 ms each: 2 000 candidates took ~750 ms at a million messages), and for
a common word the planner's best plan — walk the primary key backwards and
stop at the newest matches — had to recompute it for every row it passed.
A ``GENERATED … STORED`` column holds the same vector, computed once at
insert like the index entry was; the GIN index moves onto it. The search
of the demo fleet's common words went from ~1 s to ~10 ms at 1.2 M messages.

The column is not a model field: SQLite has no such column (its FTS5 table
lives beside the messages), and Django never reads it — only
``sessions.search`` does, in SQL. Adding it rewrites the message table: about
4 minutes per million messages on a small machine, during which the table is
locked. SQLite: nothing to do.
"""

from django.db import migrations

SEARCH_VECTOR = """
to_tsvector('simple'::regconfig, translate(left(coalesce(content, ''), 100000),
    '!"#$&()*+,-./:;<=>?@[]^_`{|}~',
    '                             '))
"""
PG_FORWARD = [
    "ALTER TABLE agent_sessions_message ADD COLUMN search_vector tsvector "
    f"GENERATED ALWAYS AS ({SEARCH_VECTOR}) STORED",
    "CREATE INDEX message_search_vector_idx ON agent_sessions_message USING gin (search_vector)",
    "DROP INDEX IF EXISTS message_content_search_idx",
]
PG_BACKWARD = [
    "CREATE INDEX message_content_search_idx ON agent_sessions_message "
    f"USING gin (({SEARCH_VECTOR}))",
    "DROP INDEX IF EXISTS message_search_vector_idx",
    "ALTER TABLE agent_sessions_message DROP COLUMN IF EXISTS search_vector",
]


def _run(schema_editor, statements: list[str]) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for sql in statements:
        # params=None: no placeholder processing of the SQL text.
        schema_editor.execute(sql, params=None)


def forward(apps, schema_editor) -> None:
    _run(schema_editor, PG_FORWARD)


def backward(apps, schema_editor) -> None:
    _run(schema_editor, PG_BACKWARD)


class Migration(migrations.Migration):
    dependencies = [
        ("agent_sessions", "0005_minute_usage_and_turn_index"),
    ]

    operations = [
        migrations.RunPython(forward, backward, elidable=False),
    ]
