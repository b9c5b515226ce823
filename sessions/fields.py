"""A message's fields, by who writes them: the one definition every layer reads.

The model (``Message._meta``) lists the fields and their types; this module
adds only what the model cannot say. Everything else is derived from the
two: the append's INSERT (``sessions.bulk``), the parsing of a client's
message (``sessions.inputs``), update-last (``sessions.services.messages``),
the JSON shape of a message (``sessions.shapes``) and the import of our own
export (``sessions.importers.fleet``).

Adding a message field therefore touches the model, its migration and the
API's schema (``fleet.api.schemas.MESSAGE_SCHEMA`` for a field clients write,
``fleet.api.responses.MessageOut`` for every field); ``tests/test_api_docs.py``
fails until the schema names it. A field the server sets goes in
``MESSAGE_SERVER_FIELDS`` here instead of the request schema. A client's
value is checked by the field's type (``inputs._field_cleaner``): an
integer is non-negative and within ``MESSAGE_NUMBER_BOUNDS`` (else
``MAX_COUNT``); a JSONField whose default is ``dict`` (``metadata``) holds an object within
``FLEET_MAX_METADATA_BYTES``.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from sessions.bounds import MAX_DURATION_MS
from sessions.choices import TOKEN_FIELDS
from sessions.models import Message

# Set by the server, never sent by a client: the row's identity and place,
# and compaction's marks. Our own export carries seq, is_summary and
# compacted_at, and its import keeps them (``MESSAGE_TRUSTED_FIELDS``).
MESSAGE_SERVER_FIELDS = ("id", "session", "seq", "is_summary", "compacted_at")
MESSAGE_TRUSTED_FIELDS = tuple(
    name for name in MESSAGE_SERVER_FIELDS if name not in ("id", "session")
)
# Sent and shown in the message's ``usage`` block (DESIGN "Shapes"), not as
# fields of their own; the server fills cost_usd and cost_source when it prices.
MESSAGE_USAGE_FIELDS = (*TOKEN_FIELDS, "cost_usd", "cost_source")
# Text that must be one line (no control characters): ids and status words.
MESSAGE_SINGLE_LINE_FIELDS = frozenset({"message_id", "status"})
# The bound of a number a client sends, where it is not ``MAX_COUNT``
# (``sessions.bounds``): durations in milliseconds.
MESSAGE_NUMBER_BOUNDS = {"duration_ms": MAX_DURATION_MS, "time_to_first_token_ms": MAX_DURATION_MS}


def message_fields() -> list[models.Field]:
    """The stored fields of a message, in the model's order."""
    return list(Message._meta.concrete_fields)


# The fields a client writes, each as itself: every other field of the model.
MESSAGE_CLIENT_FIELDS: tuple[str, ...] = tuple(
    field.name
    for field in message_fields()
    if field.name not in MESSAGE_SERVER_FIELDS and field.name not in MESSAGE_USAGE_FIELDS
)
# The keys a client's message may have: its fields and the usage block.
MESSAGE_INPUT_KEYS = frozenset({*MESSAGE_CLIENT_FIELDS, "usage"})
# The keys of a message as JSON (``shapes.message_json``, the API and export):
# every field but the row's identity, in the model's order, with the usage
# fields gathered under ``usage`` where the message's cost stands.
MESSAGE_JSON_KEYS: tuple[str, ...] = tuple(
    dict.fromkeys(
        "usage" if field.name in MESSAGE_USAGE_FIELDS else field.name
        for field in message_fields()
        if field.name not in ("id", "session", *TOKEN_FIELDS)
    )
)


def message_field(name: str) -> models.Field:
    """The stored field ``name`` of a message."""
    return _BY_NAME[name]


def message_default(name: str) -> Any:
    """The value a message has for ``name`` when nobody sent one (the model's default)."""
    return _BY_NAME[name].get_default()


_BY_NAME = {field.name: field for field in message_fields()}
