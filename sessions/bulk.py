"""The append hot path: new messages go in with one ``executemany``.

``QuerySet.bulk_create`` spends most of a 1 000-message append preparing
values field by field (and SQLite's 999-parameter cap splits it into ~40
statements). Messages built by the services are already validated, so here
each row becomes a plain tuple with the database adapters Django itself uses
(JSON, datetimes) and goes in through one ``cursor.executemany``. Triggers (the
SQLite FTS index) and constraints apply exactly as for ORM inserts.

The columns are the model's (``Message._meta``): a new message field is
inserted without a change here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

from django.db import connection, models
from django.db.models.base import ModelState

from sessions.fields import message_fields
from sessions.models import Message
from sessions.money import MoneyField, to_nanos
from sessions.sql import column_name

# Plain values the database adapters take as they are.
_AS_IS = (models.CharField, models.TextField, models.IntegerField, models.BooleanField)


def _defaults() -> tuple[dict[str, Any], tuple[tuple[str, Callable[[], Any]], ...]]:
    fixed: dict[str, Any] = {}
    made: list[tuple[str, Callable[[], Any]]] = []
    for field in message_fields():
        if field.primary_key:
            fixed[field.attname] = None
        elif field.has_default() and callable(field.default):
            made.append((field.attname, field.default))
        else:
            fixed[field.attname] = field.get_default()
    return fixed, tuple(made)


_FIXED, _MADE = _defaults()
_new = Message.__new__


def new_message(**values: Any) -> Message:
    """An unsaved ``Message`` with ``values`` (by attribute name) and the model's
    defaults for the rest, without ``Model.__init__`` (~35 µs each, on the
    append path): the services build them, ``insert_messages`` stores them."""
    message = _new(Message)
    attributes = message.__dict__
    attributes.update(_FIXED)
    for name, default in _MADE:
        if name not in values:
            attributes[name] = default()
    attributes.update(values)
    attributes["_state"] = ModelState()
    return message


def _adapter(field: models.Field) -> Callable[[Any], Any] | None:
    """How a field's Python value becomes a database parameter (``None``: as it is).

    Made for each insert, so the values most rows of a batch share are adapted
    once: a JSON field's empty default (most messages have no tool calls and
    no metadata) and the same datetime (a batch's messages share ``now``).
    """
    ops = connection.ops
    if isinstance(field, MoneyField):
        return lambda value: None if value is None else to_nanos(value)
    if isinstance(field, models.JSONField):
        default = field.get_default()
        adapted_default = ops.adapt_json_value(default, None)
        # An empty list or object like the default is the default (and never
        # 0 == 0.0 == False: those write different JSON).
        empty = type(default) if isinstance(default, list | dict) and not default else None

        def adapt_json(value: Any) -> Any:
            if value is None or (type(value) is empty and not value):
                return adapted_default
            return ops.adapt_json_value(value, None)

        return adapt_json
    if isinstance(field, models.DateTimeField):
        adapt = ops.adapt_datetimefield_value
        last: list[Any] = [object(), None]  # the last value and its adapted form

        def adapt_datetime(value: Any) -> Any:
            if value is not last[0]:
                last[:] = value, adapt(value)
            return last[1]

        return adapt_datetime
    if isinstance(field, _AS_IS) or field.is_relation:
        return None
    return lambda value: field.get_db_prep_save(value, connection)


def insert_messages(messages: Sequence[Message]) -> None:
    """Insert new messages (validated by the services) in one statement."""
    if not messages:
        return
    fields = [field for field in message_fields() if not field.primary_key]
    quote = connection.ops.quote_name
    columns = ", ".join(quote(column_name(Message, field.name)) for field in fields)
    placeholders = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {quote(Message._meta.db_table)} ({columns}) VALUES ({placeholders})"  # noqa: S608
    values_of = attrgetter(*(field.attname for field in fields))
    adapters = [
        (index, adapt)
        for index, field in enumerate(fields)
        if (adapt := _adapter(field)) is not None
    ]
    rows = []
    for message in messages:
        row = list(values_of(message))
        for index, adapt in adapters:
            row[index] = adapt(row[index])
        rows.append(row)
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
