"""Small SQL helpers shared by the read paths.

``scalars`` runs several one-value querysets in one round trip; ``count_of``
turns a filtered queryset into such a one-value ``COUNT``. Together they let
the dashboard's header ask for many counts, each answered from an index,
in a single query.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from django.db import connections
from django.db.models import (
    BigIntegerField,
    DateField,
    F,
    Field,
    Func,
    IntegerField,
    Model,
    QuerySet,
    Sum,
)


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


def grouped_exact_sums(
    model: type[Model],
    keys: Sequence[str],
    names: Sequence[str],
    *,
    since: tuple[str, date],
    order: bool = False,
) -> list[dict[str, Any]]:
    """Rows of ``keys`` and the exact sums of ``names`` (as ``exact_totals``
    gives them) of ``model``'s rows whose date field ``since[0]`` is on or
    after ``since[1]``, grouped by ``keys`` (and in their order if ``order``).

    The same query as ``values(*keys).annotate(**exact_sums(*names))``,
    written once from the model's columns: for a rollup's month of rows the
    ORM's compiling of two dozen aggregates and its per-value converters took
    two thirds of the read (the fleet page's charts and breakdowns, ~4 of 6 ms
    each at 100 000 sessions). A date key comes back as a ``date`` on both
    databases.
    """
    connection = connections[model._default_manager.db]
    quote = connection.ops.quote_name
    columns = {name: quote(column_name(model, name)) for name in (*keys, *names, since[0])}
    grouped = ", ".join(columns[key] for key in keys)
    sums = ", ".join(
        f"SUM({c} / {_SPLIT}), SUM({c} - ({c} / {_SPLIT}) * {_SPLIT})"
        for c in (columns[name] for name in names)
    )
    sql = (
        f"SELECT {grouped}, {sums} FROM {quote(model._meta.db_table)} "  # noqa: S608 - our names, values are params
        f"WHERE {columns[since[0]]} >= %s GROUP BY {grouped}"
        + (f" ORDER BY {grouped}" if order else "")
    )
    dates = {key for key in keys if isinstance(model._meta.get_field(key), DateField)}
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datefield_value(since[1])])
        found = cursor.fetchall()
    rows = []
    for values in found:
        row = dict(zip(keys, values, strict=False))
        for key in dates:
            if isinstance(row[key], str):  # SQLite, without a declared type to convert
                row[key] = date.fromisoformat(row[key])
        at = len(keys)
        for name in names:
            row[name] = int(values[at] or 0) * _SPLIT + int(values[at + 1] or 0)
            at += 2
        rows.append(row)
    return rows


def exact_totals(row: Mapping[str, Any], names: Iterable[str]) -> dict[str, int]:
    """The sums ``exact_sums`` asked for, as Python ints (0 where there were no rows)."""
    return {
        name: int(row[f"{name}__high"] or 0) * _SPLIT + int(row[f"{name}__low"] or 0)
        for name in names
    }
