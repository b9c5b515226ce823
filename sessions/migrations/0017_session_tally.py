"""Session counts per agent × status, kept by the database (issue 16).

The fleet's header counted sessions per status on every view: index range
counts that visit every entry (~30 ms for 100 000 sessions on PostgreSQL,
0.34 s at 1 M). ``SessionTally`` holds one row per agent × status with its
count, moved by triggers on ``agent_sessions_session`` so that every write
path keeps it exact, raw SQL included (purge's DELETE, reconcile's UPDATE,
COPY); the rows of the existing sessions are counted once here, in the same
transaction that creates the triggers (which lock the session table against
writes until it commits).

SQLite: row triggers (SQLite has no other kind), an upsert each.
PostgreSQL: statement triggers with transition tables, so a COPY, a purge
batch or a reconcile's UPDATE is one grouped upsert, not one per row. Not
row triggers: an upsert per row of an 18 000-row UPDATE took 11-15 s
against 3-4 s for the UPDATE alone (each upsert of the same tally row in one
transaction walks the row versions the earlier ones left). A statement
trigger with transition tables cannot name columns, so the UPDATE one runs
on every UPDATE of sessions (every append's totals) and finds no change of
agent or status there. Each upsert takes the tally's rows in (agent, status)
order.

Caution for later migrations on SQLite: a change that makes Django rebuild
``agent_sessions_session`` (copy, drop, rename) drops these triggers with the
old table; such a migration must run ``SQLITE_TRIGGERS`` again and refill the
tally (``tests/test_session_tally.py`` fails when they are missing).
"""

from __future__ import annotations

from django.db import migrations, models

# Literal SQL: a migration's text must not change when code elsewhere does.
SQLITE_TRIGGERS = [
    """
    CREATE TRIGGER agent_sessions_session_tally_ai AFTER INSERT ON agent_sessions_session
    BEGIN
        INSERT INTO agent_sessions_sessiontally (agent, status, sessions)
        VALUES (new.agent, new.status, 1)
        ON CONFLICT (agent, status) DO UPDATE SET sessions = sessions + 1;
    END
    """,
    """
    CREATE TRIGGER agent_sessions_session_tally_ad AFTER DELETE ON agent_sessions_session
    BEGIN
        UPDATE agent_sessions_sessiontally SET sessions = sessions - 1
        WHERE agent = old.agent AND status = old.status;
    END
    """,
    """
    CREATE TRIGGER agent_sessions_session_tally_au AFTER UPDATE OF agent, status
    ON agent_sessions_session
    WHEN old.agent IS NOT new.agent OR old.status IS NOT new.status
    BEGIN
        UPDATE agent_sessions_sessiontally SET sessions = sessions - 1
        WHERE agent = old.agent AND status = old.status;
        INSERT INTO agent_sessions_sessiontally (agent, status, sessions)
        VALUES (new.agent, new.status, 1)
        ON CONFLICT (agent, status) DO UPDATE SET sessions = sessions + 1;
    END
    """,
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS agent_sessions_session_tally_au",
    "DROP TRIGGER IF EXISTS agent_sessions_session_tally_ad",
    "DROP TRIGGER IF EXISTS agent_sessions_session_tally_ai",
]

# Each upsert takes the tally's rows in (agent, status) order.
PG_TRIGGERS = [
    """
    CREATE FUNCTION agent_sessions_session_tally_inserted() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO agent_sessions_sessiontally AS tally (agent, status, sessions)
        SELECT agent, status, count(*) FROM inserted
        GROUP BY agent, status ORDER BY agent, status
        ON CONFLICT (agent, status) DO UPDATE SET sessions = tally.sessions + EXCLUDED.sessions;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE FUNCTION agent_sessions_session_tally_deleted() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO agent_sessions_sessiontally AS tally (agent, status, sessions)
        SELECT agent, status, -count(*) FROM deleted
        GROUP BY agent, status ORDER BY agent, status
        ON CONFLICT (agent, status) DO UPDATE SET sessions = tally.sessions + EXCLUDED.sessions;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE FUNCTION agent_sessions_session_tally_updated() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO agent_sessions_sessiontally AS tally (agent, status, sessions)
        SELECT agent, status, sum(n) FROM (
            SELECT before.agent, before.status, -1 AS n
            FROM updated_before AS before JOIN updated_after AS after USING (id)
            WHERE before.agent IS DISTINCT FROM after.agent
                OR before.status IS DISTINCT FROM after.status
            UNION ALL
            SELECT after.agent, after.status, 1
            FROM updated_before AS before JOIN updated_after AS after USING (id)
            WHERE before.agent IS DISTINCT FROM after.agent
                OR before.status IS DISTINCT FROM after.status
        ) AS moved
        GROUP BY agent, status HAVING sum(n) <> 0 ORDER BY agent, status
        ON CONFLICT (agent, status) DO UPDATE SET sessions = tally.sessions + EXCLUDED.sessions;
        RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER agent_sessions_session_tally_ai AFTER INSERT ON agent_sessions_session
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT
    EXECUTE FUNCTION agent_sessions_session_tally_inserted()
    """,
    """
    CREATE TRIGGER agent_sessions_session_tally_ad AFTER DELETE ON agent_sessions_session
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT
    EXECUTE FUNCTION agent_sessions_session_tally_deleted()
    """,
    """
    CREATE TRIGGER agent_sessions_session_tally_au AFTER UPDATE ON agent_sessions_session
    REFERENCING OLD TABLE AS updated_before NEW TABLE AS updated_after FOR EACH STATEMENT
    EXECUTE FUNCTION agent_sessions_session_tally_updated()
    """,
]
PG_REVERSE = [
    "DROP TRIGGER IF EXISTS agent_sessions_session_tally_au ON agent_sessions_session",
    "DROP TRIGGER IF EXISTS agent_sessions_session_tally_ad ON agent_sessions_session",
    "DROP TRIGGER IF EXISTS agent_sessions_session_tally_ai ON agent_sessions_session",
    "DROP FUNCTION IF EXISTS agent_sessions_session_tally_updated()",
    "DROP FUNCTION IF EXISTS agent_sessions_session_tally_deleted()",
    "DROP FUNCTION IF EXISTS agent_sessions_session_tally_inserted()",
]
FILL = """
INSERT INTO agent_sessions_sessiontally (agent, status, sessions)
SELECT agent, status, COUNT(*) FROM agent_sessions_session GROUP BY agent, status
"""


def _run(schema_editor, statements: list[str]) -> None:
    for sql in statements:
        # params=None: no placeholder processing of the SQL text.
        schema_editor.execute(sql, params=None)


def create_triggers(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        _run(schema_editor, [*SQLITE_TRIGGERS, FILL])
    elif vendor == "postgresql":
        _run(schema_editor, [*PG_TRIGGERS, FILL])


def drop_triggers(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        _run(schema_editor, SQLITE_REVERSE)
    elif vendor == "postgresql":
        _run(schema_editor, PG_REVERSE)


class Migration(migrations.Migration):
    dependencies = [
        ("agent_sessions", "0016_search_vector_regexp"),
    ]

    operations = [
        migrations.CreateModel(
            name="SessionTally",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("agent", models.CharField(blank=True, max_length=255)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("active", "Active"),
                            ("completed", "Completed"),
                            ("failed", "Failed"),
                            ("cancelled", "Cancelled"),
                            ("unknown", "Unknown"),
                        ],
                        max_length=16,
                    ),
                ),
                ("sessions", models.BigIntegerField(default=0)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("agent", "status"), name="sessiontally_agent_status"
                    )
                ],
            },
        ),
        migrations.RunPython(create_triggers, drop_triggers, elidable=False),
    ]
