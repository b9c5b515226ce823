"""Evaluate the alert rules and deliver notifications (run from cron every minute)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from alerts.engine import run_alerts


class Command(BaseCommand):
    help = (
        "Evaluate every enabled alert rule: open an incident when its condition starts, "
        "resolve it when it ends, and send the due notifications (retrying failed ones with "
        "backoff). Idempotent; concurrent runs never send a notification twice."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "-n",
            "--dry-run",
            action="store_true",
            help="Report the incidents that would open or resolve; write and send nothing.",
        )
        parser.add_argument(
            "--json", action="store_true", help="Print the summary as one JSON object."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        result = run_alerts(dry_run=options["dry_run"])
        if options["json"]:
            self.stdout.write(json.dumps(result.as_dict(), default=str, sort_keys=True))
            return
        if options["verbosity"] >= 2:
            for verb, items in (("opened", result.opened), ("resolved", result.resolved)):
                for item in items:
                    self.stdout.write(f"{verb}: {item['rule']}: {item['subject']}")
        for error in result.errors:
            self.stderr.write(f"rule {error['rule']!r} failed: {error['error']}")
        self.stdout.write(result.line())
