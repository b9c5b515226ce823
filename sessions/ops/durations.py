"""Durations on the command line: ``90s``, ``15m``, ``2h``, ``7d``, ``2w``, ``1h30m``, ``0``."""

from __future__ import annotations

import re
from datetime import timedelta

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
ACCEPTED = "a duration such as 90s, 15m, 2h, 7d or 2w (parts may be combined: 1h30m), or 0"
_PART = re.compile(r"(\d+)([smhdw])")
_WHOLE = re.compile(r"(?:\d+[smhdw])+")
# Far beyond any retention anyone means, and far below timedelta's limit.
MAX_SECONDS = 100 * 365 * 86400


def parse_duration(text: str) -> timedelta:
    """Parse ``text`` into a ``timedelta``; raises ``ValueError`` saying what is accepted.

    A bare number other than ``0`` is refused: ``--older-than 30`` could mean
    30 seconds or 30 days, and guessing wrong on a purge deletes data.
    """
    value = str(text).strip().lower()
    if value == "0":
        return timedelta(0)
    if not _WHOLE.fullmatch(value):
        raise ValueError(f"expected {ACCEPTED}, got {text!r}")
    seconds = sum(int(number) * UNITS[unit] for number, unit in _PART.findall(value))
    if seconds > MAX_SECONDS:
        raise ValueError(f"expected at most 100 years, got {text!r}")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """The shortest exact spelling of ``delta`` in the units above (``1h30m``)."""
    seconds = int(delta.total_seconds())
    if seconds == 0:
        return "0"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            parts.append(f"{count}{unit}")
    return "".join(parts)
