"""Latency histograms: the fixed buckets every latency rollup row counts into.

A duration is a whole number of milliseconds. Bucket 0 holds exactly 0 ms;
bucket ``i`` holds the integers ``BUCKET_LOWER[i] .. BUCKET_UPPER[i]``
(both inclusive), where each bucket's upper bound is at most ``RATIO``
(2 ** (1/8), about 1.0905) times its lower bound. Below 12 ms every bucket
is one integer (exact); above, the buckets are log-spaced at ``RATIO``. The
last bucket ends at ``MAX_DURATION_MS``; a longer duration (a turn that ran
for weeks) counts in it. That is 213 buckets, fixed for all time: a rollup
row's ``bucket`` is an index into these tuples, so they must never change
(a different layout needs a new rollup table or a migration of the rows).

Precision: a percentile is read as the upper bound of the bucket that holds
the wanted rank (``percentile``), so the true value ``v`` (the nearest-rank
percentile of the raw durations) and the answer ``a`` satisfy
``v <= a <= v * RATIO``: never below, at most 9.05 % above (exact below
12 ms). Counts and sums are exact.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping

from sessions.bounds import MAX_DURATION_MS

RATIO = 2 ** (1 / 8)


def _uppers() -> tuple[int, ...]:
    uppers = [0]
    while uppers[-1] < MAX_DURATION_MS:
        lower = uppers[-1] + 1
        # Every integer in lower .. floor(lower * RATIO) is within RATIO of lower.
        uppers.append(min(math.floor(lower * RATIO), MAX_DURATION_MS))
    return tuple(uppers)


# The inclusive upper bound of each bucket, in milliseconds (ascending).
BUCKET_UPPER: tuple[int, ...] = _uppers()
BUCKET_LOWER: tuple[int, ...] = (0, *(upper + 1 for upper in BUCKET_UPPER[:-1]))


def bucket_of(duration_ms: int) -> int:
    """The bucket holding ``duration_ms`` (past the last bound: the last bucket)."""
    return min(bisect_left(BUCKET_UPPER, max(0, duration_ms)), len(BUCKET_UPPER) - 1)


def percentile(counts: Mapping[int, int], fraction: float) -> int | None:
    """The nearest-rank percentile (``fraction`` of 1) of a histogram
    ``{bucket: count}``, as its bucket's upper bound; ``None`` when empty."""
    total = sum(count for count in counts.values() if count > 0)
    if total <= 0:
        return None
    rank = max(1, math.ceil(fraction * total - 1e-9))
    seen = 0
    for bucket in sorted(counts):
        count = counts[bucket]
        if count <= 0:
            continue
        seen += count
        if seen >= rank:
            return BUCKET_UPPER[bucket]
    return BUCKET_UPPER[max(counts)]


PERCENTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


def summarize(counts: Mapping[int, int], sum_ms: int) -> dict[str, int | float | None]:
    """Count, mean and the ``PERCENTILES`` of a histogram, in milliseconds."""
    total = sum(count for count in counts.values() if count > 0)
    summary: dict[str, int | float | None] = {
        "count": total,
        "mean_ms": round(sum_ms / total, 1) if total else None,
    }
    for name, fraction in PERCENTILES.items():
        summary[f"{name}_ms"] = percentile(counts, fraction)
    return summary


def cumulative(counts: Mapping[int, int]) -> Iterable[tuple[int, int]]:
    """``(upper bound ms, count of durations at most that)`` for each non-empty
    bucket, ascending: a Prometheus histogram's ``le`` series."""
    seen = 0
    for bucket in sorted(counts):
        if counts[bucket] > 0:
            seen += counts[bucket]
            yield BUCKET_UPPER[bucket], seen
