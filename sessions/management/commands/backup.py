"""Copy the live SQLite database to a file, while agents keep writing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions.backup import BackupError, sqlite_backup


class Command(BaseCommand):
    help = (
        "Write a consistent copy of the live SQLite database to PATH (SQLite's online "
        "backup API: agents keep writing meanwhile; the copy is the database as of the "
        "moment it began). PATH is written atomically and checked. To restore: stop the "
        "app servers, replace the database file with the copy (removing its -wal and -shm "
        "files), start them. On PostgreSQL use pg_dump instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path, help="the file to write, e.g. backups/fleet.sqlite3")
        parser.add_argument("--overwrite", action="store_true", help="Replace PATH if it exists.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            result = sqlite_backup(path=options["path"], overwrite=options["overwrite"])
        except BackupError as exc:
            raise CommandError(exc.message) from None
        if options["verbosity"] >= 1:
            self.stdout.write(
                f"Backed up {result.sessions} sessions and {result.messages} messages "
                f"({result.size_bytes / 1e6:.1f} MB) to {result.path} in {result.seconds:.1f} s."
            )
