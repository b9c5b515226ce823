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

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            key, token = ApiKey.generate(name=options["name"])
        except FleetError as exc:
            raise CommandError(f"{exc.field or 'name'}: {exc.message}") from None
        if options["verbosity"] >= 1:
            self.stderr.write(f"Created API key {key.name!r} (prefix {key.prefix}). Shown once:")
        # The key alone on stdout, so `KEY=$(manage.py create_api_key NAME)` works.
        self.stdout.write(token)
