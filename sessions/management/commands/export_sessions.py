"""Export sessions with their messages as JSONL (read back by ``import_sessions fleet``)."""

from __future__ import annotations

import os
from argparse import ArgumentTypeError
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from sessions.errors import InvalidInput
from sessions.export import export_sessions
from sessions.inputs import clean_timestamp


def parse_since(value: str) -> datetime:
    """A day (``2026-11-21``, from its start in UTC) or an RFC 3339 timestamp."""
    try:
        return datetime.combine(date.fromisoformat(value), time.min, tzinfo=UTC)
    except ValueError:
        pass
    try:
        return clean_timestamp(value, "since")
    except InvalidInput:
        raise ArgumentTypeError(
            f"must be a date (2026-11-21) or an RFC 3339 timestamp, got {value!r}"
        ) from None


class _Raw:
    """Writes to a command's stdout as is (``OutputWrapper`` would add line endings)."""

    def __init__(self, wrapper: OutputWrapper) -> None:
        self.wrapper = wrapper

    def write(self, text: str) -> int:
        self.wrapper.write(text, ending="")
        return len(text)


class Command(BaseCommand):
    help = (
        "Write sessions as JSONL, one session per line with its messages, usage and "
        "metadata, to PATH (or - for standard output). `import_sessions fleet PATH` reads "
        "it back into another Fleet: the same sessions, messages and totals."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="The file to write, or - for standard output.")
        parser.add_argument(
            "--since", type=parse_since, help="Only sessions active since this date or time."
        )
        parser.add_argument("--agent", help="Only the sessions of this agent.")

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["path"]
        filters = {"since": options["since"], "agent": options["agent"]}
        if path == "-":
            summary = export_sessions(_Raw(self.stdout), **filters)
            self.stdout.flush()
            self.stderr.write(
                f"Exported {summary.sessions} sessions with {summary.messages} messages."
            )
            return
        target = Path(path)
        if target.is_dir():
            raise CommandError(f"{target} is a directory; give a file name")
        partial = target.with_name(target.name + ".partial")
        try:
            with partial.open("w", encoding="utf-8", newline="\n") as out:
                summary = export_sessions(out, **filters)
            # Only a complete export takes the name: an interrupted one never looks whole.
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise CommandError(f"cannot write {target}: {exc.strerror or exc}") from None
        self.stdout.write(
            f"Exported {summary.sessions} sessions with {summary.messages} messages to {target}."
        )
