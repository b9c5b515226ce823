"""SQLite: the sessions table's name order within one project and within one
agent gets its own index (issue 16).

A table filtered to many sessions walks its sort's index and checks the
filters on each row (``selectors.session_rows``). Names start with their
project, so walking ``session_name_idx`` for one project passed every other
project's sessions before its page (page 3 of the largest project, 13 600 of
100 000 sessions: 118–137 ms); an agent names its sessions after its
projects too (45–50 ms). ``(project_root, name, key)`` and ``(agent, name,
key)`` hold each one's sessions in the name order (``key`` ends the order:
unique), read both ways; ``session_rows`` keeps these filters on their
index when it walks the name order (``selectors.SQLITE_ORDER_INDEXES``).

SQLite only, not ``Session.Meta.indexes``: an ``UPDATE`` on SQLite rewrites
only the indexes holding a column it sets, and an append saves the counters
by name (``accounting.TRANSCRIPT_FIELDS``), so these cost an append nothing
there; on PostgreSQL a session row's update is never HOT (its sort-indexed
columns change on every append) and would insert into both, for cells
PostgreSQL already serves within the target (docs/DECISIONS.md).

If the database has planner statistics (``sqlite_stat1``: someone ran
``ANALYZE``), the new indexes get theirs, so the planner does not weigh
their default guesses against the other indexes' measured figures.

Caution for later migrations on SQLite, as with 0002's and 0018's triggers:
Django does not know these indexes; a change that makes it rebuild
``agent_sessions_session`` (copy, drop, rename) drops them with the old
table, and such a migration must run ``SQLITE_CREATE`` again
(``tests/test_selectors.py``'s plan test fails if they are missing).
"""

from __future__ import annotations

from django.db import migrations

# Literal SQL: a migration's text must not change when code elsewhere does.
SQLITE_CREATE = [
    "CREATE INDEX IF NOT EXISTS session_project_name_idx "
    'ON agent_sessions_session ("project_root", "name", "key")',
    "CREATE INDEX IF NOT EXISTS session_agent_name_idx "
    'ON agent_sessions_session ("agent", "name", "key")',
]
SQLITE_ANALYZE = ["ANALYZE session_project_name_idx", "ANALYZE session_agent_name_idx"]
SQLITE_REVERSE = [
    "DROP INDEX IF EXISTS session_agent_name_idx",
    "DROP INDEX IF EXISTS session_project_name_idx",
]


def _run(schema_editor, statements: list[str]) -> None:
    for sql in statements:
        # params=None: no placeholder processing of the SQL text.
        schema_editor.execute(sql, params=None)


def forward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "sqlite":
        return
    _run(schema_editor, SQLITE_CREATE)
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")
        analyzed = cursor.fetchone() is not None
    if analyzed:
        _run(schema_editor, SQLITE_ANALYZE)


def backward(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "sqlite":
        _run(schema_editor, SQLITE_REVERSE)


class Migration(migrations.Migration):
    dependencies = [
        ("agent_sessions", "0021_session_text_side_table"),
    ]

    operations = [
        migrations.RunPython(forward, backward, elidable=False),
    ]
