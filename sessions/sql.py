"""Small SQL helpers shared by the read paths.

``scalars`` runs several one-value querysets in one round trip; ``count_of``
turns a filtered queryset into such a one-value ``COUNT``. Together they let
the dashboard's header ask for many counts, each answered from an index,
in a single query.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db import connections
from django.db.models import BigIntegerField, F, Field, Func, IntegerField, Model, QuerySet, Sum


def column_name(model: type[Model], name: str) -> str:
    """The (unquoted) column of ``model``'s concrete field ``name``.

    ``_meta.get_field`` may also answer a reverse relation, which has no column.
    """
    field = model._meta.get_field(name)
    if not isinstance(field, Field) or not field.column:
        raise TypeError(f"{model.__name__}.{name} is not a field with a column")
    return field.column


def scalars(*querysets: QuerySet) -> tuple[Any, ...]:
    """Run ``SELECT (q1), (q2), …`` (each a one-row, one-column queryset)."""
    if not querysets:
        return ()
    using = querysets[0].db
    parts, params = [], []
    for qs in querysets:
        sql, qs_params = qs.query.get_compiler(using=using).as_sql()
        parts.append(f"({sql})")
        params.extend(qs_params)
    with connections[using].cursor() as cursor:
        cursor.execute("SELECT " + ", ".join(parts), params)
        return tuple(cursor.fetchone())


def count_of(qs: QuerySet) -> QuerySet:
    """``SELECT COUNT(*) FROM … WHERE …`` as a one-value queryset for ``scalars``.

    ``Func`` rather than ``Count`` on purpose: an aggregate would add a
    ``GROUP BY`` per row; a plain function over the filtered rows gives one
    row, which the database answers from an index when the filter has one.
    ``COUNT(*)``, not ``COUNT(id)``: SQLite counts a whole table from its
    b-tree without stepping through it only for ``*`` (0.8 ms against 7.7 ms
    at 100 000 sessions).
    """
    return qs.order_by().values(n=Func(template="COUNT(*)", output_field=IntegerField()))


# Each row's value is split into (value / 2**32) and the remainder, summed
# apart and joined in Python: SUM over 64-bit columns overflows on SQLite
# ("integer overflow") once the rows add up past 9.2e18, which rows within
# their bounds (sessions.bounds) can do. Both halves' sums stay far inside
# 64 bits for any number of rows a store can hold (2**31 rows at the bound).
_SPLIT = 2**32


def exact_sums(*names: str) -> dict[str, Sum]:
    """Aggregates for ``annotate``/``aggregate``: an exact sum of each column, in halves.

    Integer division and its remainder truncate alike on SQLite and
    PostgreSQL, so ``high * 2**32 + low`` is the exact sum (negative rows too).
    Read the result with ``exact_totals``.
    """
    aggregates = {}
    for name in names:
        high = Func(F(name), template=f"(%(expressions)s / {_SPLIT})")
        low = Func(F(name), template=f"(%(expressions)s - (%(expressions)s / {_SPLIT}) * {_SPLIT})")
        aggregates[f"{name}__high"] = Sum(high, output_field=BigIntegerField())
        aggregates[f"{name}__low"] = Sum(low, output_field=BigIntegerField())
    return aggregates


def exact_totals(row: Mapping[str, Any], names: Iterable[str]) -> dict[str, int]:
    """The sums ``exact_sums`` asked for, as Python ints (0 where there were no rows)."""
    return {name: exact_total(row[f"{name}__high"], row[f"{name}__low"]) for name in names}


def exact_total(high: Any, low: Any) -> int:
    """One column's exact sum from its two halves (``exact_sums``' ``__high`` and
    ``__low``), for a reader of rows as tuples (``values_list``)."""
    return int(high or 0) * _SPLIT + int(low or 0)
