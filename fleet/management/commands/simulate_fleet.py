"""Drive a Fleet server's JSON API with a simulated fleet of agents."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from fleet.simulator import Behaviour, SimulatorError, run_fleet


class Command(BaseCommand):
    help = (
        "Simulate a fleet of agents reporting to the Fleet server at --url over its JSON API: "
        "sessions, turns, tool calls, streaming, sub-agents, compaction, clean ends, failures "
        "and crashes. Runs for --duration seconds (0: until Ctrl-C or SIGTERM), then prints "
        "a summary; exits non-zero if any request failed unexpectedly."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8000")
        parser.add_argument(
            "--key",
            default=os.environ.get("FLEET_API_KEY", ""),
            help="an API key (manage.py create_api_key); default: $FLEET_API_KEY",
        )
        parser.add_argument("--agents", type=int, default=8, help="agents (threads); default 8")
        parser.add_argument(
            "--rate",
            type=float,
            default=1.0,
            help="turns per second across the fleet (0: no limit)",
        )
        parser.add_argument(
            "--duration", type=float, default=0.0, help="seconds to run; 0 (default): until stopped"
        )
        parser.add_argument(
            "--step-delay",
            type=float,
            default=Behaviour.step_delay,
            help="mean seconds between the steps of a turn (model and tool time)",
        )
        parser.add_argument(
            "--wait", type=float, default=0.0, help="seconds to wait for the server to answer"
        )
        parser.add_argument("--seed", type=int, default=None, help="seed of the random choices")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["key"]:
            raise CommandError("give an API key: --key KEY or FLEET_API_KEY")
        if options["agents"] < 1:
            raise CommandError("--agents must be at least 1")
        for name in ("rate", "duration", "step_delay", "wait"):
            if options[name] < 0:
                raise CommandError(f"--{name.replace('_', '-')} must not be negative")
        stop = threading.Event()
        previous = _on_sigterm(stop)
        log = self.stderr.write if options["verbosity"] >= 2 else None
        try:
            report = run_fleet(
                url=options["url"],
                key=options["key"],
                agents=options["agents"],
                rate=options["rate"],
                duration=options["duration"],
                behaviour=Behaviour(step_delay=options["step_delay"]),
                seed=options["seed"],
                wait=options["wait"],
                stop=stop,
                log=log,
            )
            self.stdout.write(report.line())
            for sample in report.stats.error_samples:
                self.stderr.write(f"  {sample}")
        except (SimulatorError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        finally:
            # Out before the old handler returns: a second SIGTERM may follow the first.
            self.stdout.flush()
            self.stderr.flush()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        if report.stats.errors:
            raise CommandError(f"{report.stats.errors} requests failed unexpectedly")


def _on_sigterm(stop: threading.Event) -> Any:
    """Stop cleanly on SIGTERM too (``kill``, the serve script's trap); returns the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
