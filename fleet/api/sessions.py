"""Session endpoints: upsert, read, delete, and the lists (all, running, stuck)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Status

from fleet.api import cursors
from fleet.api.responses import ErrorOut, SessionListOut, SessionOut, SessionPageOut, example_answer
from fleet.api.schemas import SessionFieldsIn
from sessions import selectors, services
from sessions.choices import Channel, Kind, State
from sessions.choices import Status as SessionStatus
from sessions.inputs import clean_choice, clean_key, clean_text
from sessions.models import ApiKey, Session
from sessions.querysets import SessionQuerySet
from sessions.scopes import FULL, KeyScope
from sessions.shapes import session_json, session_summary_json

router = Router()

MAX_LIMIT = 1000
# count=true counts at most this many sessions (then total_exact is false): the
# count is one bounded query however large the table, on both databases.
MAX_COUNTED = 100_000
# Bounds a timedelta can take without overflowing (100 years).
MAX_SECONDS = 100 * 365 * 24 * 3600
ERRORS = {code: ErrorOut for code in (401, 404, 410, 422, 429)}
# One session's reads: 403 when it belongs to an agent outside the key's scope.
READ_ERRORS = {**ERRORS, 403: ErrorOut}
WRITE_ERRORS = {code: ErrorOut for code in (400, 401, 403, 404, 409, 410, 413, 422, 429)}


def key_scope(request: HttpRequest) -> KeyScope:
    """The scope of the API key the request authenticated with."""
    key = getattr(request, "auth", None)
    return key.scope if isinstance(key, ApiKey) else FULL


def load_session(key: str, scope: KeyScope) -> Session:
    """The session with ``key``: 404 if there never was one, 410 if it was deleted,
    403 if it belongs to an agent outside ``scope``."""
    key = clean_key(key)
    session = selectors.session_get(key)
    scope.check_read(session.agent, key)
    return session


def _offset_page(queryset: SessionQuerySet, kind: str, limit: int, cursor: str | None) -> dict:
    offset = cursors.decode_offset(cursor, kind) if cursor else 0
    # A list leaves out the large fields (metadata, todo) and never reads them.
    narrow = queryset.without_large_fields()
    rows = list(narrow[offset : offset + limit + 1])
    more = len(rows) > limit
    return {
        "items": [session_summary_json(session) for session in rows[:limit]],
        "next": cursors.encode(kind, o=offset + limit) if more else None,
    }


@router.get(
    "/sessions",
    response={200: SessionPageOut, **ERRORS},
    summary="List (and count) sessions, newest activity first",
    openapi_extra=example_answer(
        {
            "items": ["…sessions, as GET /sessions/{key} without metadata and todo…"],
            "next": "eyJrIjoic2Vzc2lvbnMiLCJ0IjoiMjAyNi0xMS0yMVQxMDowMDowMFoiLCJpIjo0Mn0",
            "total": 1234,
            "total_exact": True,
        }
    ),
)
def list_sessions(
    request: HttpRequest,
    status: str | None = Query(None, description="one of the session statuses"),
    kind: str | None = Query(None, description="interactive, autonomous or acp"),
    channel: str | None = Query(None, description="e.g. telegram, discord, cli"),
    agent: str | None = Query(None, description="the agent's name, exactly"),
    model: str | None = Query(None, description="the model's name, exactly"),
    project_root: str | None = Query(None, description="the project path, exactly"),
    state: str | None = Query(None, description="idle, running or error"),
    limit: int = Query(50, ge=1, le=MAX_LIMIT, description="sessions per page"),
    cursor: str | None = Query(None, description="the `next` of the previous page"),
    count: bool = Query(
        False,
        description=(
            "true: also answer `total`, the number of sessions matching the filters "
            "(counted up to 100000; `total_exact` false beyond)"
        ),
    ),
) -> dict:
    """Sessions matching every filter given, newest activity first, `limit` per page.

    Paging is keyset (by last activity, then id): walking the pages visits every
    session once even while new sessions arrive (they start before the first
    page). A session that becomes active again during the walk moves to the
    front, which the walk has passed.

    With `count=true` the answer also has `total`: how many sessions match the
    filters (the whole list, whatever the cursor), e.g. appam's `session_count`
    or a count per agent (`?agent=NAME&count=true&limit=1`). Counting stops at
    100000 (`total_exact` is then false and `total` a lower bound), so the count
    costs one bounded query on any table. Without `count` both are null and
    nothing is counted.
    """
    # Any: mypy cannot tell these keys from listing's own (health, q, now).
    filters: dict[str, Any] = {
        "status": clean_choice(status, "status", SessionStatus, blank=True),
        "kind": clean_choice(kind, "kind", Kind, blank=True),
        "channel": clean_choice(channel, "channel", Channel, blank=True),
        "state": clean_choice(state, "state", State, blank=True),
        "agent": clean_text(agent, "agent", single_line=True),
        "model": clean_text(model, "model", single_line=True),
        "project_root": clean_text(project_root, "project_root", max_length=1024),
    }
    queryset = key_scope(request).sessions(Session.objects.listing(**filters))
    total, exact = selectors.count_bounded(queryset, MAX_COUNTED) if count else (None, None)
    if cursor:
        moment, last_id = cursors.decode_keyset(cursor, "sessions")
        queryset = queryset.filter(
            Q(last_active_at__lt=moment) | Q(last_active_at=moment, id__lt=last_id)
        )
    rows = list(queryset.without_large_fields()[: limit + 1])
    page = rows[:limit]
    after = page[-1] if len(rows) > limit else None
    return {
        "items": [session_summary_json(session) for session in page],
        "next": (
            cursors.encode("sessions", t=after.last_active_at.isoformat(), i=after.id)
            if after
            else None
        ),
        "total": total,
        "total_exact": exact,
    }


@router.get(
    "/sessions/running",
    response={200: SessionListOut, **ERRORS},
    summary="Running sessions, newest turn first",
)
def running_sessions(
    request: HttpRequest,
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
) -> dict:
    """Active sessions with a turn under way (state `running`), newest turn first."""
    queryset = key_scope(request).sessions(Session.objects.running())
    return _offset_page(queryset, "running", limit, cursor)


@router.get(
    "/sessions/stuck",
    response={200: SessionListOut, **ERRORS},
    summary="Stuck sessions, oldest turn first",
)
def stuck_sessions(
    request: HttpRequest,
    older_than: int | None = Query(
        None,
        ge=0,
        le=MAX_SECONDS,
        description="seconds a turn has run; default the server's FLEET_STUCK_AFTER",
    ),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    cursor: str | None = None,
) -> dict:
    """Running turns that started more than `older_than` seconds ago, oldest first."""
    seconds = settings.FLEET_STUCK_AFTER if older_than is None else older_than
    queryset = key_scope(request).sessions(
        Session.objects.stuck(older_than=timedelta(seconds=seconds))
    )
    return _offset_page(queryset, "stuck", limit, cursor)


@router.put(
    "/sessions/{path:key}",
    response={200: SessionOut, 201: SessionOut, **WRITE_ERRORS},
    summary="Create or update a session",
)
def upsert_session(request: HttpRequest, key: str, payload: SessionFieldsIn) -> Status:
    """Create the session (201) or update it (200) with the fields given.

    Absent fields keep their values; `metadata` is merged (a null value removes
    a key); routing context (`channel_ref`, `room_id`, `sender_id`) is never
    overwritten with an empty value. Ending statuses record `ended_at` and close
    a running turn. Totals (`turns`, `tool_call_count`, `api_calls`, token fields,
    `cost_usd`) are reported totals, for agents that do not send messages.
    Reported tokens without `cost_usd`, for a model the server cannot price, are
    unpriced (`unpriced_calls` 1, never a fake $0) until a cost is reported.
    Writing to a deleted key answers 410, unless the body has `"recreate": true`:
    that starts a new session under the key (201; no messages, seq from 1; the old
    session stays deleted). On a key that has a session `recreate` is ignored, so a
    retried recreate is safe. Appends and the other writes never recreate.
    """
    fields = payload.sent()
    recreate = fields.pop("recreate", False)
    session, created = services.session_upsert(
        key=key, fields=fields, scope=key_scope(request), recreate=recreate
    )
    return Status(201 if created else 200, session_json(session))


@router.get(
    "/sessions/{path:key}",
    response={200: SessionOut, **READ_ERRORS},
    summary="A session with its totals",
)
def get_session(request: HttpRequest, key: str) -> dict:
    """The session: fields, state, routing context, metadata, todo and totals."""
    return session_json(load_session(key, key_scope(request)))


@router.delete(
    "/sessions/{path:key}",
    response={204: None, **READ_ERRORS},
    summary="Delete a session (leaves a tombstone)",
)
def delete_session(request: HttpRequest, key: str) -> HttpResponse:
    """Delete the session and its messages (204). Its key becomes a tombstone:
    later writes to it answer 410 instead of creating a new session. Daily usage
    totals keep the money it spent."""
    services.session_delete(key=key, scope=key_scope(request))
    return HttpResponse(status=204)
