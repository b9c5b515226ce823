"""``manage.py backup PATH``: a consistent copy of the live SQLite database,
taken while agents write; refused on PostgreSQL with a pointer to pg_dump."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections

from sessions import services
from sessions.models import Message
from tests.server_support import batch, half_stored, store_problems, stored_ids

pytestmark = pytest.mark.django_db(transaction=True)

BATCH = 10


def backup(*args: str) -> str:
    out = StringIO()
    call_command("backup", *args, stdout=out)
    return out.getvalue()


class Agents:
    """Threads appending batches through the services until stopped."""

    def __init__(self, count: int) -> None:
        self.stop = threading.Event()
        self.batches: dict[str, list[str]] = {}
        self.failures: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(n,)) for n in range(count)]

    def __enter__(self) -> Agents:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def _run(self, n: int) -> None:
        try:
            count = 0
            while not self.stop.is_set():
                prefix = f"a{n}-b{count}"
                items = batch(prefix, BATCH)
                self.batches[prefix] = [item["message_id"] for item in items]
                services.messages_append(key=f"agent-{n % 2}", messages=items)
                count += 1
        except BaseException as exc:  # reported by the test
            self.failures.append(exc)
        finally:
            connections.close_all()


@contextmanager
def opened(path: Path) -> Iterator[None]:
    """Point Fleet's connection at another SQLite file for the duration."""
    saved = connection.settings_dict["NAME"]
    connection.close()
    connection.settings_dict["NAME"] = str(path)
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["NAME"] = saved


@pytest.mark.usefixtures("sqlite_only")
def test_a_backup_taken_during_ingest_restores_to_a_consistent_store(tmp_path: Path) -> None:
    target = tmp_path / "backups" / "fleet.sqlite3"
    with Agents(4) as agents:
        while Message.objects.count() < 200 and not agents.failures:
            agents.stop.wait(0.01)
        before = Message.objects.count()
        summary = backup(str(target))
        after = Message.objects.count()
        agents.stop.wait(0.2)  # the agents go on writing after the copy
    assert agents.failures == []
    total = Message.objects.count()

    assert summary.startswith("Backed up ")
    assert not Path(f"{target}-wal").exists()  # one self-contained file
    with sqlite3.connect(target) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    # Restore as the README says: the copy becomes the database file.
    restored = tmp_path / "restored.sqlite3"
    shutil.copyfile(target, restored)
    with opened(restored):
        copied = Message.objects.count()
        assert store_problems() == []
        assert half_stored(agents.batches, stored_ids()) == []
    assert before <= copied <= after < total  # a moment of the live store, mid-ingest
    assert copied % BATCH == 0


@pytest.mark.usefixtures("sqlite_only")
def test_it_refuses_to_overwrite_a_file_unless_asked(tmp_path: Path) -> None:
    target = tmp_path / "fleet.sqlite3"
    target.write_text("yesterday's backup")

    with pytest.raises(CommandError, match="exists"):
        backup(str(target))
    assert target.read_text() == "yesterday's backup"

    backup(str(target), "--overwrite")
    with sqlite3.connect(target) as conn:
        assert conn.execute("PRAGMA quick_check").fetchone() == ("ok",)
    assert list(tmp_path.iterdir()) == [target]  # no partial file left behind


@pytest.mark.usefixtures("sqlite_only")
def test_it_refuses_to_write_over_the_live_database() -> None:
    with pytest.raises(CommandError, match="live database"):
        backup(str(connection.settings_dict["NAME"]), "--overwrite")


@pytest.mark.usefixtures("postgres_only")
def test_on_postgresql_it_points_to_pg_dump(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="pg_dump"):
        backup(str(tmp_path / "fleet.sqlite3"))
    assert list(tmp_path.iterdir()) == []
