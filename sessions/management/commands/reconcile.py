"""Mark sessions whose agents stopped reporting (run from cron every few minutes)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from sessions.ops.command import OpsCommand
from sessions.ops.durations import format_duration
from sessions.ops.reconcile import reconcile_agent, reconcile_sessions, reconciled

logger = logging.getLogger(__name__)


class Command(OpsCommand):
    help = (
        "Active sessions silent for --stale-after become 'unknown' (presumed crashed); running "
        "turns older than --stuck-after, with no write since, get state 'error'. With --agent "
        "NAME [--except KEY ...]: mark every active session of that agent except the given "
        "keys 'unknown' (an agent's start-up rule). A session written to after the cut-off is "
        "never marked. Durations: 90s, 15m, 2h, 7d."
    )
    item_verbs = {
        "stale": ("Marked unknown (stale)", "Would mark unknown (stale)"),
        "stuck": ("Marked error (stuck turn)", "Would mark error (stuck turn)"),
        "agent": ("Marked unknown", "Would mark unknown"),
    }

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--stale-after",
            default=None,
            help="Silence after which an active session is stale "
            f"(default FLEET_STALE_AFTER: {format_duration(_seconds('FLEET_STALE_AFTER'))}).",
        )
        parser.add_argument(
            "--stuck-after",
            default=None,
            help="Age after which a running turn is stuck "
            f"(default FLEET_STUCK_AFTER: {format_duration(_seconds('FLEET_STUCK_AFTER'))}).",
        )
        parser.add_argument(
            "--agent", default=None, help="Mark every active session of this agent unknown."
        )
        parser.add_argument(
            "--except",
            dest="except_keys",
            nargs="+",
            action="extend",
            default=[],
            metavar="KEY",
            help="With --agent: session keys to leave alone (the new process's sessions).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        size = self.batch_size(options)
        agent = options["agent"]
        if agent is None:
            if options["except_keys"]:
                raise CommandError("--except needs --agent NAME")
            stale_after = _seconds("FLEET_STALE_AFTER")
            stuck_after = _seconds("FLEET_STUCK_AFTER")
            if options["stale_after"] is not None:
                stale_after = self.duration(options, "stale_after")
            if options["stuck_after"] is not None:
                stuck_after = self.duration(options, "stuck_after")
            result = self.run_job(
                options,
                reconcile_sessions,
                stale_after=stale_after,
                stuck_after=stuck_after,
                now=now,
                size=size,
            )
        else:
            if options["stale_after"] is not None or options["stuck_after"] is not None:
                raise CommandError(
                    "--agent applies the start-up rule alone; run reconcile without --agent "
                    "for stale sessions and stuck turns"
                )
            if not agent.strip():
                raise CommandError("--agent must name an agent")
            result = self.run_job(
                options,
                reconcile_agent,
                agent=agent,
                except_keys=options["except_keys"],
                now=now,
                size=size,
            )
        if not result.dry_run and result.changed:
            # Alerts' crash and stuck rules (the alerts app listens); a failure
            # there is logged and never fails the reconcile.
            for _, response in reconciled.send_robust(Command, result=result, now=now):
                if isinstance(response, Exception):
                    logger.error("after reconcile: %s: %s", type(response).__name__, response)
        self.report(result, options)


def _seconds(name: str) -> timedelta:
    return timedelta(seconds=getattr(settings, name))
