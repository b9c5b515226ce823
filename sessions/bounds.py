"""The bound of every stored number: one home, read by inputs, services and rollups.

DESIGN: "every stored number has a bound that every total and rollup can
hold (checked after rounding, on the totals a write would produce); a write
past a bound is refused with 422 and writes nothing". The columns are 64-bit
integers (at most 9.2e18); the bounds below leave room so that a stored
total plus any one accepted change still fits the column (SQLite would
silently turn an overflowing integer into a float, PostgreSQL would fail).
Sums over many rows (fleet totals, charts, ``/metrics``) may exceed 64 bits:
they are read with ``sessions.sql.exact_sums``, never summed in one column.
"""

from __future__ import annotations

from decimal import Decimal

# Money: one amount and every total of money (a session's cost, a day's or a
# minute's cost in the rollups) is below one billion USD, i.e. at most
# 999 999 999.999 999 999 (10**18 - 1 nano-dollars).
MAX_USD = Decimal(10**9)
MAX_COST_NANOS = 10**18 - 1

# Tokens of one kind in one message. A trillion is far above any real call
# (the largest contexts are ~10**7), and priced at up to $999 per million
# tokens it stays below MAX_USD; a dearer admin price is refused (422) by
# pricing rather than stored.
MAX_TOKENS = 10**12

# Every total of tokens or counts kept in a 64-bit column: a session's token
# totals (also when reported with an upsert) and every rollup counter.
MAX_TOTAL = 10**18

# A session's counts of turns, messages, tool calls and API calls (32-bit
# columns), and other small counts a client sends (seq, keep).
MAX_COUNT = 2**31 - 1

# One duration in milliseconds (a model call, a tool run, a time to first
# token): at most a week. Longer is a clock error, not a call; a turn that
# runs longer still counts, in the top latency bucket (sessions.latency).
MAX_DURATION_MS = 7 * 24 * 3600 * 1000


# Session keys an agent may list to leave active when it reconciles (its
# live sessions): a bound on one request's work, not on a column.
MAX_EXCEPT_KEYS = 10_000


def limit_of(counter: str) -> int:
    """The bound of a total: ``cost_usd`` in nano-dollars, any other counter as is."""
    return MAX_COST_NANOS if counter == "cost_usd" else MAX_TOTAL
