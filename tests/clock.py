"""A settable clock for tests of the dashboard's polling (the ``frozen`` fixture)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone


class Clock:
    """A settable ``timezone.now``: the fleet version changes every minute by design."""

    def __init__(self) -> None:
        # Early in a minute, so a few seconds of steps stay inside it.
        self.moment = timezone.now().replace(second=5, microsecond=0)

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)
