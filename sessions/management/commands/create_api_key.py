"""Make an API key for an agent and print it once."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions.errors import FleetError
from sessions.models import ApiKey


class Command(BaseCommand):
    help = (
        "Make an API key named NAME and print it. The key is shown this once and "
        "stored only as a hash: copy it into the agent's configuration now."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="a unique name saying who uses the key, e.g. coder-1")
        parser.add_argument(
            "--agent",
            action="append",
            default=[],
            dest="agents",
            metavar="NAME",
            help="scope the key to this agent's sessions (repeat for several); "
            "default: every agent",
        )
        parser.add_argument(
            "--read-only", action="store_true", help="the key may read but never write"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            key, token = ApiKey.generate(
                name=options["name"], agents=options["agents"], read_only=options["read_only"]
            )
        except FleetError as exc:
            raise CommandError(f"{exc.field or 'name'}: {exc.message}") from None
        if options["verbosity"] >= 1:
            self.stderr.write(
                f"Created API key {key.name!r} (prefix {key.prefix}, scope: "
                f"{key.scope.describe()}). Shown once:"
            )
        # The key alone on stdout, so `KEY=$(manage.py create_api_key NAME)` works.
        self.stdout.write(token)
