"""Small pieces the ops services share: batching, SQL names and values, timing."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from django.conf import settings
from django.db import connection, models

from sessions.sql import column_name

T = TypeVar("T")

# on_item(kind, key): one line per item at --verbosity 2.
ItemCallback = Callable[[str, str], None]
# on_progress(label, done, total): drives the progress bar.
ProgressCallback = Callable[[str, int, int], None]


def batch_size(size: int | None = None) -> int:
    """Rows per transaction: the given size, else ``FLEET_OPS_BATCH_SIZE``."""
    size = size if size is not None else getattr(settings, "FLEET_OPS_BATCH_SIZE", 5000)
    if size < 1:
        raise ValueError(f"batch size must be at least 1, got {size}")
    return size


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def table(model: type[models.Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def column(model: type[models.Model], name: str) -> str:
    return connection.ops.quote_name(column_name(model, name))


def sql_datetime(value: datetime) -> Any:
    """A datetime as the database stores it (naive UTC text on SQLite)."""
    return connection.ops.adapt_datetimefield_value(value)


def placeholders(count: int) -> str:
    return ", ".join(["%s"] * count)


class Clock:
    """Seconds since the job started, for the ``--json`` summary."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    @property
    def seconds(self) -> float:
        return round(time.perf_counter() - self._start, 3)
