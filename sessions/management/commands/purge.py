"""Delete old sessions, archived messages and tombstones; keep the cost history."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from sessions.ops.command import OpsCommand
from sessions.ops.purge import purge


class Command(OpsCommand):
    help = (
        "Delete sessions whose last activity is older than --older-than (any status) or that "
        "are not among the --max-sessions most recently active, with their messages; archived "
        "(compacted) messages archived longer than --compacted-older-than ago (0 = all); "
        "tombstones older than --tombstones-older-than. At least one criterion is required. "
        "Daily usage rollups are kept, so the cost history is unchanged; session totals stay. "
        "Deletes in short batches, safe while agents write. Durations: 90s, 15m, 2h, 7d."
    )
    item_verbs = {
        "session": ("Purged session", "Would purge session"),
        "archived": ("Purged archived messages of", "Would purge archived messages of"),
        "tombstone": ("Purged tombstone", "Would purge tombstone"),
    }

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--older-than",
            metavar="DURATION",
            help="Delete sessions (any status) with no activity for longer than this.",
        )
        parser.add_argument(
            "--max-sessions",
            metavar="N",
            help="Keep only the N most recently active sessions (0: none).",
        )
        parser.add_argument(
            "--compacted-older-than",
            metavar="DURATION",
            help="Delete archived messages archived longer ago than this (0: all archived).",
        )
        parser.add_argument(
            "--tombstones-older-than",
            metavar="DURATION",
            help="Delete tombstones of deleted sessions older than this.",
        )
        parser.add_argument(
            "--vacuum",
            action="store_true",
            help="Afterwards give the freed space back to the file system (SQLite VACUUM, "
            "PostgreSQL VACUUM ANALYZE); on SQLite writers wait until it is done.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        size = self.batch_size(options)
        durations = {}
        for name in ("older_than", "compacted_older_than", "tombstones_older_than"):
            if options[name] is not None:
                durations[name] = self.duration(options, name, allow_zero=True)
        max_sessions = None
        if options["max_sessions"] is not None:
            raw = str(options["max_sessions"]).strip()
            if not raw.isdigit():
                raise CommandError(f"--max-sessions must be a whole number, 0 or more, got {raw!r}")
            max_sessions = int(raw)
        if not durations and max_sessions is None:
            raise CommandError(
                "give at least one criterion: --older-than DURATION, --max-sessions N, "
                "--compacted-older-than DURATION or --tombstones-older-than DURATION"
            )
        result = self.run_job(
            options,
            purge,
            now=now,
            max_sessions=max_sessions,
            vacuum_after=options["vacuum"],
            size=size,
            **durations,
        )
        self.report(result, options)
