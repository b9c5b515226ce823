"""A one-line progress bar for the ops commands, drawn only on a terminal.

Cron and pipes get nothing (their output is the summary line); a person at a
terminal sees the bar move while long work is under way, and it is erased
before the summary is written.
"""

from __future__ import annotations

import time
from typing import Protocol, TextIO

from django.core.management.base import OutputWrapper


class Stream(Protocol):
    def write(self, text: str) -> object: ...
    def flush(self) -> object: ...
    def isatty(self) -> bool: ...


class Progress:
    """Call ``update(done, total)`` as work goes; ``close()`` erases the bar."""

    WIDTH = 30
    # Redraw at most this often: a terminal is slow next to a batch of deletes.
    INTERVAL = 0.1

    def __init__(self, stream: Stream | TextIO, label: str, *, enabled: bool | None = None) -> None:
        self.stream = stream
        self.label = label
        if enabled is None:
            enabled = _isatty(stream)
        self.enabled = enabled
        self._drawn = 0
        self._last = 0.0

    def update(self, done: int, total: int) -> None:
        if not self.enabled or total <= 0:
            return
        now = time.monotonic()
        if done < total and now - self._last < self.INTERVAL:
            return
        self._last = now
        share = min(1.0, done / total)
        filled = int(share * self.WIDTH)
        line = (
            f"{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
            f"{share * 100:3.0f}% {done}/{total}"
        )
        self._write("\r" + line.ljust(self._drawn))
        self._drawn = len(line)

    def close(self) -> None:
        if self.enabled and self._drawn:
            self._write("\r" + " " * self._drawn + "\r")
            self._drawn = 0

    def _write(self, text: str) -> None:
        # Django's OutputWrapper appends a newline unless told otherwise.
        if isinstance(self.stream, OutputWrapper):
            self.stream.write(text, ending="")
        else:
            self.stream.write(text)
        self.stream.flush()


def _isatty(stream: object) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except (ValueError, OSError):  # a closed stream
        return False
