"""Opaque pagination cursors: URL-safe base64 of a small JSON object.

Each cursor names the list it belongs to, so a cursor from one list handed
to another is refused like any other garbage: with a 422 naming ``cursor``,
never a 500.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any

from sessions.errors import InvalidInput

MAX_ID = 2**63 - 1
MAX_CURSOR_LENGTH = 512


def encode(kind: str, **position: Any) -> str:
    raw = json.dumps({"k": kind, **position}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _refuse() -> InvalidInput:
    return InvalidInput(
        "is not a cursor this list gave out; start again without it", field="cursor"
    )


def decode(cursor: str, kind: str) -> dict[str, Any]:
    """The position stored in ``cursor`` for the list ``kind``; ``InvalidInput`` otherwise."""
    if not cursor or len(cursor) > MAX_CURSOR_LENGTH or not cursor.isascii():
        raise _refuse()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        raise _refuse() from None
    if not isinstance(data, dict) or data.get("k") != kind:
        raise _refuse()
    return data


def _integer(value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_ID:
        raise _refuse()
    return value


def decode_keyset(cursor: str, kind: str) -> tuple[datetime, int]:
    """A ``(timestamp, id)`` position (the sessions list)."""
    data = decode(cursor, kind)
    moment = data.get("t")
    if not isinstance(moment, str) or len(moment) > 40:
        raise _refuse()
    try:
        parsed = datetime.fromisoformat(moment)
        if parsed.tzinfo is None:
            raise ValueError("naive")
        # Both databases compare in UTC; an offset at the calendar's edge overflows.
        parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _refuse() from None
    return parsed, _integer(data.get("i"), 1)


def decode_offset(cursor: str, kind: str) -> int:
    return _integer(decode(cursor, kind).get("o"))


def decode_after(cursor: str, kind: str) -> int:
    return _integer(decode(cursor, kind).get("a"))


def decode_context(cursor: str) -> tuple[int, tuple[bool, int] | None]:
    """The context view's position: ``(0, (is_summary, seq))`` of the last
    message handed out; a cursor given out before it was a keyset (an offset
    into the view, ``"o"``) still reads as ``(offset, None)``."""
    data = decode(cursor, "context")
    if "o" in data:
        return _integer(data.get("o")), None
    summary = data.get("s")
    if summary not in (0, 1) or isinstance(summary, bool):
        raise _refuse()
    return 0, (bool(summary), _integer(data.get("q"), 1))
