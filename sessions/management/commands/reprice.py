"""Price server-priced messages again after a price change (never reported costs)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.utils import timezone

from sessions.ops.command import OpsCommand
from sessions.ops.reprice import reprice


class Command(OpsCommand):
    help = (
        "Recompute the cost of 'computed' and 'unpriced' messages from the current prices "
        "(admin overrides, valid from their date, then the genai-prices table), as an append "
        "would price them today; 'reported' costs are never touched. Session totals and the "
        "daily rollups move by the difference in the same transaction."
    )
    item_verbs = {"message": ("Repriced", "Would reprice")}

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--since",
            metavar="DATE",
            help="Only messages created on or after this UTC date (YYYY-MM-DD) or ISO 8601 time.",
        )
        parser.add_argument(
            "--model",
            metavar="NAME",
            help="Only messages of this model (their own model, else their session's).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        size = self.batch_size(options)
        since = _parse_since(options["since"], now) if options["since"] else None
        model = options["model"]
        if model is not None and not model.strip():
            raise CommandError("--model must name a model")
        result = self.run_job(
            options, reprice, now=now, since=since, model=(model or "").strip(), size=size
        )
        self.report(result, options)


def _day_start(text: str) -> datetime:
    return datetime.combine(date.fromisoformat(text), time.min, tzinfo=UTC)


def _parse_since(raw: str, now: datetime) -> datetime:
    text = raw.strip()
    moment: datetime | None = None
    for parse in (_day_start, datetime.fromisoformat):
        try:
            moment = parse(text)
            break
        except ValueError:
            continue
    if moment is None:
        raise CommandError(
            f"--since must be a date (YYYY-MM-DD) or an ISO 8601 time "
            f"(2025-01-31T12:00:00+00:00), got {raw!r}"
        )
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=UTC)
    if moment > now:
        raise CommandError(f"--since must not be in the future, got {raw!r}")
    return moment
