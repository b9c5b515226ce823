"""The raw-SQLite baseline of ``bench/append.py`` and ``bench/ingest.py``.

Both benchmarks time the rows the service stored, written again with plain
``sqlite3``: one ``BEGIN IMMEDIATE … COMMIT`` per batch holding an
``executemany`` of the message rows and one ``UPDATE`` of the session's totals,
on a connection with the pragmas ``fleet/settings.py`` sets.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MESSAGE_TABLE = "agent_sessions_message"
SESSION_TABLE = "agent_sessions_session"
PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA temp_store=MEMORY",
    "PRAGMA cache_size=-20000",
)
# The session totals an append adds to, in the order ``update_params`` gives them.
TOTALS = (
    "message_count",
    "turns",
    "tool_call_count",
    "api_calls",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "cache_read_tokens",
    "cache_creation_tokens",
    "cost_usd",
)
SESSION_UPDATE = (
    f"UPDATE {SESSION_TABLE} SET last_seq = ?, last_active_at = ?, "
    + ", ".join(f"{name} = {name} + ?" for name in TOTALS)
    + " WHERE id = ?"
)


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    return conn


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def insert_sql(table: str, names: Iterable[str]) -> str:
    names = list(names)
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"


def update_params(
    rows: Sequence[Sequence[Any]], message_columns: Sequence[str], session_id: int
) -> tuple[Any, ...]:
    """``SESSION_UPDATE``'s parameters for one batch of message rows, in seq order."""
    at = {name: n for n, name in enumerate(message_columns)}
    sums = [
        len(rows),
        sum(1 for r in rows if r[at["role"]] == "assistant" and r[at["content"]]),
        sum(len(json.loads(r[at["tool_calls"]] or "[]")) for r in rows),
        sum(1 for r in rows if r[at["cost_source"]]),
        *(sum(r[at[name]] for r in rows) for name in TOTALS[4:9]),
        sum(r[at["cost_usd"]] or 0 for r in rows),
    ]
    last = rows[-1]
    return (last[at["seq"]], last[at["created_at"]], *sums, session_id)


def write_batch(
    conn: sqlite3.Connection, insert: str, rows: Sequence[Sequence[Any]], params: tuple
) -> None:
    """One batch, as the service writes it: the messages and the session row, one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(insert, rows)
    conn.execute(SESSION_UPDATE, params)
    conn.execute("COMMIT")
