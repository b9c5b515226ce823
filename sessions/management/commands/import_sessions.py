"""Import the history in an agent's own session store (or a Fleet export)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions.errors import InvalidInput
from sessions.importers import FORMATS, Problem, SessionOutcome, SourceError, import_store
from sessions.inputs import clean_text


class Command(BaseCommand):
    help = (
        "Import sessions from an agent's store: zeph (SQLite), zeroclaw (a folder of JSONL "
        "files or a sessions.db), appam (SQLite), koda (SQLite), or a Fleet export (fleet, "
        "JSONL; - for standard input). Safe to run again: what is stored already is skipped "
        "and nothing changes. Corrupt rows are reported with their place and skipped; the "
        "exit status is 1 when any was. Values Fleet does not know (a kind, status, channel "
        "or state) are imported with a fallback, kept in metadata source_<field> and "
        "reported as warnings (exit status 0)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("format", choices=sorted(FORMATS), help="The store's format.")
        parser.add_argument("path", help="The store: a file, or a folder (zeroclaw JSONL).")
        parser.add_argument("--agent", help="Agent name for every imported session.")
        parser.add_argument(
            "-n",
            "--dry-run",
            action="store_true",
            help="Report what would be imported; write nothing.",
        )
        parser.add_argument("--json", action="store_true", help="Print the summary as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        agent = options["agent"]
        if agent is not None:
            try:
                agent = clean_text(agent, "agent", single_line=True).strip()
            except InvalidInput as exc:
                raise CommandError(f"--agent {exc.message}") from None
            if not agent:
                raise CommandError("--agent must not be empty")
        verbosity = options["verbosity"]

        def problem(item: Problem) -> None:
            self.stderr.write(f"error: {item}")

        def warning(item: Problem) -> None:
            self.stderr.write(f"warning: {item}")

        def session(outcome: SessionOutcome) -> None:
            if verbosity >= 2 and outcome.problem is None:
                self.stdout.write(
                    f"  {outcome.result} {outcome.key}: {outcome.appended} messages, "
                    f"{outcome.skipped} already stored"
                )

        try:
            report = import_store(
                options["format"],
                options["path"],
                agent=agent,
                dry_run=options["dry_run"],
                on_problem=problem,
                on_session=session,
                on_warning=warning,
            )
        except SourceError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict()))
        else:
            self.stdout.write(report.line())
        if report.errors:
            raise CommandError(
                f"{len(report.errors)} item(s) of the store could not be imported (see above)",
                returncode=1,
            )
