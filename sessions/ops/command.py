"""What the ops commands (reconcile, purge, reprice) share: their common flags,
the progress bar, per-item lines, the summary line or ``--json``, and turning
failures into a non-zero exit with a one-line reason.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from sessions.errors import FleetError
from sessions.ops.durations import parse_duration
from sessions.ops.progress import Progress

R = TypeVar("R")


class OpsCommand(BaseCommand):
    """Base of the ops commands: ``-n/--dry-run``, ``--json``, ``--batch-size``."""

    item_verbs: dict[str, tuple[str, str]] = {}  # kind -> (done, would do)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-n",
            "--dry-run",
            action="store_true",
            help="Report what would change, with the same counts, and write nothing.",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print the summary as one JSON object (for cron and monitoring).",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=None,
            help="Rows per transaction (default: FLEET_OPS_BATCH_SIZE, 5000).",
        )

    def batch_size(self, options: dict[str, Any]) -> int | None:
        size = options["batch_size"]
        if size is not None and size < 1:
            raise CommandError(f"--batch-size must be at least 1, got {size}")
        return size

    @staticmethod
    def duration(options: dict[str, Any], name: str, *, allow_zero: bool = False) -> timedelta:
        flag = "--" + name.replace("_", "-")
        try:
            value = parse_duration(options[name])
        except ValueError as exc:
            raise CommandError(f"{flag}: {exc}") from None
        if not allow_zero and not value:
            raise CommandError(f"{flag} must be longer than 0, got {options[name]!r}")
        return value

    def run_job(self, options: dict[str, Any], job: Callable[..., R], **kwargs: Any) -> R:
        """Call ``job`` with item and progress callbacks wired to this command's output."""
        dry_run = options["dry_run"]
        as_json = options["json"]
        item_out = self.stderr if as_json else self.stdout
        progress = Progress(self.stdout, "", enabled=None if not as_json else False)

        def on_item(kind: str, key: str) -> None:
            progress.close()
            done, would = self.item_verbs.get(kind, (kind, f"would {kind}"))
            item_out.write(f"{would if dry_run else done}: {key}")

        def on_progress(label: str, done: int, total: int) -> None:
            progress.label = label
            progress.update(done, total)

        try:
            return job(
                dry_run=dry_run,
                on_item=on_item if options["verbosity"] >= 2 else None,
                on_progress=on_progress if progress.enabled else None,
                **kwargs,
            )
        except FleetError as exc:
            raise CommandError(
                f"{exc.field}: {exc.message}" if exc.field else exc.message
            ) from None
        except DatabaseError as exc:
            raise CommandError(f"database error: {exc}") from exc
        finally:
            progress.close()

    def report(self, result: Any, options: dict[str, Any]) -> None:
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), default=str, sort_keys=True))
        else:
            self.stdout.write(result.line())
