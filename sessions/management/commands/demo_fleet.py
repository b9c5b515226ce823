"""Fill the database with a realistic demo fleet (``make run`` uses ``--if-empty``)."""

from __future__ import annotations

import random
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from sessions.demo.fleet import FleetLoaded, write_fleet
from sessions.models import Session


class Command(BaseCommand):
    help = (
        "Write a realistic demo fleet through the services: several agents, every kind, "
        "channel, status and state, tool calls, sub-agents, compactions, weeks of history. "
        "The same --seed gives the same fleet; benchmarks use it at large sizes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sessions", type=int, default=60, help="Sessions to write.")
        parser.add_argument(
            "--messages-per-session",
            type=int,
            default=24,
            help="Average messages per session (actual counts vary around it).",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=None,
            help="Seed for a reproducible fleet (default: random).",
        )
        parser.add_argument("--days", type=int, default=35, help="Days of history to spread over.")
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing when the database already holds sessions.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        sessions = options["sessions"]
        per_session = options["messages_per_session"]
        days = options["days"]
        if sessions < 0:
            raise CommandError(f"--sessions must be 0 or more, got {sessions}")
        if per_session < 0:
            raise CommandError(f"--messages-per-session must be 0 or more, got {per_session}")
        if days < 1:
            raise CommandError(f"--days must be at least 1, got {days}")
        seed = options["seed"]
        if seed is None:
            seed = random.SystemRandom().randrange(1, 10**6)
        if seed < 0:
            raise CommandError(f"--seed must be 0 or more, got {seed}")
        if options["if_empty"] and Session.objects.exists():
            self.stdout.write("The database already holds sessions: no demo fleet written.")
            return

        verbosity = options["verbosity"]

        def progress(done: int, total: int) -> None:
            self.stdout.write(f"  {done}/{total} sessions")

        try:
            summary = write_fleet(
                sessions=sessions,
                messages_per_session=per_session,
                seed=seed,
                days=days,
                now=timezone.now(),
                progress=progress if verbosity >= 2 else None,
                progress_every=max(1, min(1000, sessions // 10)),
            )
        except FleetLoaded as exc:
            raise CommandError(f"{exc}; pass another --seed") from None
        self.stdout.write(summary.line())
