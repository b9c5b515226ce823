"""A consistent copy of the live SQLite database, taken while agents write.

SQLite's online backup API (``sqlite3.Connection.backup``) copies the
database page by page from one read transaction: in WAL mode writers go on
meanwhile, and the copy is the database as of the moment the copy began.
It is copied in one step on purpose: a step-by-step backup restarts whenever
another connection writes, so under steady ingest it might never finish.

PostgreSQL has its own tool for this, ``pg_dump`` (see the README).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from django.db import connections

from sessions.errors import FleetError
from sessions.models import Message, Session


class BackupError(FleetError):
    """The backup cannot be made (wrong database, existing target, failed copy)."""

    code = "invalid"


@dataclass(frozen=True)
class BackupResult:
    source: str
    path: Path
    size_bytes: int
    sessions: int
    messages: int
    seconds: float


def sqlite_backup(*, path: Path, overwrite: bool = False, using: str = "default") -> BackupResult:
    """Copy the SQLite database of ``using`` to ``path``, atomically.

    The copy is written next to ``path`` and renamed into place once checked
    (``PRAGMA quick_check``), so ``path`` never holds half a backup. The copy
    is a single self-contained file (rollback journal, not WAL). Raises
    ``BackupError`` on PostgreSQL, when ``path`` exists and ``overwrite`` is
    off, or when the copy fails its check.
    """
    connection = connections[using]
    if connection.vendor != "sqlite":
        raise BackupError(
            f"backup copies SQLite databases; this one is {connection.vendor}. "
            "Use pg_dump: pg_dump --format=custom --file=PATH DATABASE (restore with pg_restore)"
        )
    source = str(connection.settings_dict["NAME"])
    if source == ":memory:" or source.startswith("file::memory:"):
        raise BackupError("the database is in memory: there is no file to back up")
    path = Path(path).expanduser().resolve()
    if path == Path(source).resolve():
        raise BackupError("the backup path is the live database itself")
    if path.exists() and not overwrite:
        raise BackupError(f"{path} exists; choose a new name or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    started = time.monotonic()
    try:
        _copy(source, partial, timeout=connection.settings_dict["OPTIONS"].get("timeout", 30))
        sessions, messages = _check(partial)
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return BackupResult(
        source=source,
        path=path,
        size_bytes=path.stat().st_size,
        sessions=sessions,
        messages=messages,
        seconds=time.monotonic() - started,
    )


def _copy(source: str, target: Path, *, timeout: float) -> None:
    src = sqlite3.connect(source, timeout=timeout)
    dst = sqlite3.connect(target)
    try:
        with dst:
            src.backup(dst, pages=-1)  # one step: one consistent snapshot
        # The copy carries the source's WAL flag: make it one plain file.
        dst.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.Error as exc:
        raise BackupError(f"the copy failed: {exc}") from None
    finally:
        dst.close()
        src.close()


def _check(target: Path) -> tuple[int, int]:
    conn = sqlite3.connect(target)
    try:
        result = conn.execute("PRAGMA quick_check").fetchall()
        if result != [("ok",)]:
            problems = "; ".join(row[0] for row in result[:5])
            raise BackupError(f"the copy failed its integrity check: {problems}")
        sessions = conn.execute(f'SELECT count(*) FROM "{Session._meta.db_table}"').fetchone()[0]  # noqa: S608
        messages = conn.execute(f'SELECT count(*) FROM "{Message._meta.db_table}"').fetchone()[0]  # noqa: S608
    except sqlite3.Error as exc:
        raise BackupError(f"the copy cannot be read back: {exc}") from None
    finally:
        conn.close()
    return sessions, messages
