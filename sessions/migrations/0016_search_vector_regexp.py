"""PostgreSQL: the message search vector maps punctuation with ``regexp_replace``.

Migration 0006's generated column mapped punctuation to spaces with
``translate()``, which on a UTF-8 database scans its 29-character list once
per character of the content: ~230 µs of server CPU per demo message (381
characters on average), 85 % of the vector's cost and most of the server's
work on every insert (issue 16: COPY of demo messages ran at ~3 000 rows/s
with the column, ~30 000 without). ``regexp_replace`` with the same
characters as a bracket class gives the identical vector (checked on 47 000
demo messages, and by tests/test_search.py's tokenization tests) in about a
fifth of the time.

A generated column's expression cannot be changed in place before
PostgreSQL 17: the column is dropped and added again, which rewrites the
message table (computing every vector again) and rebuilds the GIN index.
SQLite: nothing to do.
"""

from django.db import migrations

SEARCH_VECTOR = r"""
to_tsvector('simple'::regconfig, regexp_replace(left(coalesce(content, ''), 100000),
    '[!"#$&()*+,./:;<=>?@^_`{|}~\[\]\-]', ' ', 'g'))
"""
OLD_SEARCH_VECTOR = """
to_tsvector('simple'::regconfig, translate(left(coalesce(content, ''), 100000),
    '!"#$&()*+,-./:;<=>?@[]^_`{|}~',
    '                             '))
"""


def _statements(vector: str) -> list[str]:
    return [
        "ALTER TABLE agent_sessions_message DROP COLUMN IF EXISTS search_vector",
        "ALTER TABLE agent_sessions_message ADD COLUMN search_vector tsvector "
        f"GENERATED ALWAYS AS ({vector}) STORED",
        "CREATE INDEX message_search_vector_idx ON agent_sessions_message "
        "USING gin (search_vector)",
    ]


def _run(schema_editor, statements: list[str]) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for sql in statements:
        # params=None: no placeholder processing of the SQL text.
        schema_editor.execute(sql, params=None)


def forward(apps, schema_editor) -> None:
    _run(schema_editor, _statements(SEARCH_VECTOR))


def backward(apps, schema_editor) -> None:
    _run(schema_editor, _statements(OLD_SEARCH_VECTOR))


class Migration(migrations.Migration):
    dependencies = [
        ("agent_sessions", "0015_table_sorts"),
    ]

    operations = [
        migrations.RunPython(forward, backward, elidable=False),
    ]
