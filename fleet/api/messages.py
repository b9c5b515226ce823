"""Message endpoints: append, read, update-last, remove-last, clear, compact, archive, usage."""

from __future__ import annotations

from typing import Literal

from django.http import HttpRequest
from ninja import Query, Router, Status

from fleet.api import cursors
from fleet.api.responses import (
    MESSAGE_EXAMPLE,
    AppendOut,
    ArchivedOut,
    ArchiveMarksOut,
    ErrorOut,
    MessageListOut,
    MessageOut,
    PendingToolCallsOut,
    RecentMessagesOut,
    RemovedCountOut,
    RemovedFlagOut,
    SessionUsageOut,
    UpdateLastOut,
    example_answer,
)
from fleet.api.schemas import AppendIn, ArchiveIn, CompactIn, UpdateLastIn
from fleet.api.sessions import ERRORS, READ_ERRORS, WRITE_ERRORS, key_scope, load_session
from sessions import selectors, services
from sessions.bounds import MAX_COUNT
from sessions.choices import Role
from sessions.errors import InvalidInput, SessionNotFound
from sessions.inputs import clean_archived, clean_choice, clean_text
from sessions.models import Session
from sessions.shapes import message_json, session_json, totals_json

router = Router()

MAX_LIMIT = 1000
CONFLICT_ERRORS = {**WRITE_ERRORS, 409: ErrorOut}
# A role query parameter: anything else is 422 naming `role`. Built from the
# choices at run time (one list of roles), which a static Literal cannot be.
RoleName = Literal[tuple(Role.values)]  # type: ignore[valid-type]

ANTHROPIC_NOTE = """
**Usage: forward your provider's usage object as is.** Each message's `usage`
is stored the OpenTelemetry way (`prompt_tokens` is all input *including*
cache reads and writes, `completion_tokens` all output including reasoning).
Send Fleet's names, or the `usage` object OpenAI (Chat Completions or
Responses), Anthropic (Messages) or koda returned, or Gemini's
`usageMetadata`, unchanged: the server tells them apart by their field names
and normalises (Anthropic's `input_tokens` excludes the cache tokens, which
are added; Gemini's thoughts are added to completion). See the usage schema
for the mapping and an example of each. Bare `input_tokens` cannot be told
apart (Anthropic leaves cache out, OpenAI counts it in) and is refused (422)
unless you send `"convention": "anthropic"` (input excludes cache; for the
request, or inside one usage block) or `"convention": "otel"` (input includes
it). Under `"anthropic"`, Fleet's names also count input without cache. A
block mixing shapes, or whose convention contradicts its shape, is refused
(422) rather than silently mis-counted.
"""


def _refuse_cost_source(message: object, path: str) -> None:
    """The server decides ``cost_source``: a client's usage block may not set it.

    (Our own export carries it; ``import_sessions fleet`` keeps it, through
    ``sessions.inputs`` directly, not through the API.)
    """
    usage = message.get("usage") if isinstance(message, dict) else None
    if isinstance(usage, dict) and "cost_source" in usage:
        raise InvalidInput(
            "is decided by the server (reported when cost_usd is sent, else computed or "
            "unpriced); leave it out",
            field=f"{path}.usage.cost_source",
        )


@router.post(
    "/sessions/{path:key}/messages",
    response={200: AppendOut, 201: AppendOut, **WRITE_ERRORS},
    summary="Append a batch of messages",
    description=(
        "Appends `messages` in order, **all or nothing**: one invalid message refuses the "
        "batch (422 naming it, e.g. `messages[3].role`) and nothing is written. Creates "
        "the session if needed, with the fields under `session` (answer **201**; an "
        "existing session answers **200** and gets those fields updated). Messages whose "
        "`message_id` is already stored are skipped, so a retried request never "
        "duplicates (`skipped` counts them). A deleted key answers 410. At most "
        "`FLEET_API_MAX_BATCH` messages per request (default 1000), content at most "
        "`FLEET_MAX_MESSAGE_CHARS` characters.\n" + ANTHROPIC_NOTE
    ),
)
def append_messages(request: HttpRequest, key: str, payload: AppendIn) -> Status:
    messages = payload.messages
    if not isinstance(messages, list):
        raise InvalidInput("must be a list of messages", field="messages")
    for index, message in enumerate(messages):
        _refuse_cost_source(message, f"messages[{index}]")
    result = services.messages_append(
        key=key,
        messages=messages,
        session=payload.session,
        convention=payload.convention,
        scope=key_scope(request),
    )
    return Status(
        201 if result.created else 200,
        {
            "appended": result.appended,
            "skipped": result.skipped,
            "first_seq": result.first_seq,
            "last_seq": result.last_seq,
            "session": session_json(result.session),
        },
    )


@router.get(
    "/sessions/{path:key}/messages",
    response={200: MessageListOut, **READ_ERRORS},
    summary="A session's transcript, in order",
)
def list_messages(
    request: HttpRequest,
    key: str,
    view: Literal["context", "all"] = Query(
        "context",
        description=(
            "context: what an agent reloads (not archived; compaction summaries first; "
            "never a tool call without its result or a result without its call). "
            "all: every stored message by seq, archived ones included."
        ),
    ),
    role: str | None = None,
    after: int = Query(0, ge=0, le=MAX_COUNT, description="only messages with a larger seq"),
    limit: int = Query(500, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, description="the `next` of the previous page"),
) -> dict:
    session = load_session(key, key_scope(request))
    role = clean_choice(role, "role", Role, blank=True)
    if view == "all":
        if cursor:
            after = max(after, cursors.decode_after(cursor, "messages"))
        queryset = selectors.messages_all(session).filter(seq__gt=after)
        if role:
            queryset = queryset.filter(role=role)
        rows = list(queryset[: limit + 1])
        page = rows[:limit]
        more = len(rows) > limit
        following = cursors.encode("messages", a=page[-1].seq) if more else None
    else:
        skip, position = cursors.decode_context(cursor) if cursor else (0, None)
        found = selectors.messages_context_page(
            session, limit=limit, after=after, role=role or None, position=position, skip=skip
        )
        page = found.messages
        following = None
        if found.more and found.position is not None:
            summary, seq = found.position
            following = cursors.encode("context", s=int(summary), q=seq)
    return {"items": [message_json(message) for message in page], "next": following}


@router.get(
    "/sessions/{path:key}/messages/last",
    response={200: MessageOut, **READ_ERRORS},
    summary="The last message (of a role)",
    openapi_extra=example_answer(MESSAGE_EXAMPLE),
)
def last_message(
    request: HttpRequest,
    key: str,
    role: RoleName | None = Query(  # type: ignore[valid-type]  # noqa: B008 -- RoleName is a Literal
        None, description="only messages of this role; absent: the last message of any role"
    ),
) -> dict:
    """The session's newest message of `role` (highest seq; archived messages count too,
    `compacted_at` tells), e.g. koda's `last_user_message` / `last_assistant_message` on
    resume. **404** when the session has none of that role (and when there is no such
    session: the message says which). The list (`GET .../messages`) stays oldest first, so
    `?role=assistant&limit=1` there is the *first* assistant message: use this route."""
    session = load_session(key, key_scope(request))
    message = selectors.last_message(session, role)
    if message is None:
        raise SessionNotFound(f"session {session.key!r} has no {role or 'stored'} message"[:300])
    return message_json(message)


@router.get(
    "/sessions/{path:key}/pending-tool-calls",
    response={200: PendingToolCallsOut, **READ_ERRORS},
    summary="Tool calls still waiting for their result",
    openapi_extra=example_answer(
        {
            "items": [
                {
                    "seq": 12,
                    "message_id": "m12",
                    "call": {"id": "call_7", "name": "bash", "arguments": {"cmd": "make test"}},
                }
            ]
        }
    ),
)
def pending_tool_calls(request: HttpRequest, key: str) -> dict:
    """Assistant tool calls (in messages not archived) with no `tool` message answering
    them yet, in order, each with the seq and `message_id` of the message that made it
    (koda's `has_pending_tool_calls`: an agent that crashed mid-tool sees what it left
    undone). The context view hides such calls, so this is where they show. Empty
    `items`: nothing pending."""
    session = load_session(key, key_scope(request))
    return {
        "items": [
            {"seq": p.message.seq, "message_id": p.message.message_id, "call": p.call}
            for p in selectors.pending_tool_calls(session)
        ]
    }


@router.get(
    "/messages/recent",
    response={200: RecentMessagesOut, **ERRORS},
    summary="Recent messages across sessions, newest first",
    openapi_extra=example_answer(
        {
            "items": [
                {
                    **MESSAGE_EXAMPLE,
                    "role": "user",
                    "content": "fix the flaky test",
                    "usage": None,
                    "model": "",
                    "provider_response_id": "",
                    "status": "",
                    "session_key": "koda/cli/42",
                    "session_agent": "koda",
                }
            ]
        }
    ),
)
def recent_messages(
    request: HttpRequest,
    role: RoleName = Query(  # type: ignore[valid-type]  # noqa: B008 -- RoleName is a Literal
        Role.USER.value, description="the messages' role (default user)"
    ),
    agent: str | None = Query(None, description="only sessions of this agent"),
    limit: int = Query(20, ge=1, le=MAX_LIMIT, description="how many, newest first"),
) -> dict:
    """The newest `limit` messages of `role` over every session (a scoped key: its agents'
    sessions only), newest `created_at` first, each with its `session_key` and
    `session_agent` (koda's `recent_user_messages`, its prompt history on resume).
    Archived messages are included. No paging: ask for up to 1000."""
    messages = selectors.recent_messages(
        role=role,
        limit=limit,
        agent=clean_text(agent, "agent", single_line=True) or None,
        agents=key_scope(request).agent_filter,
    )
    return {
        "items": [
            {
                **message_json(r.message),
                "session_key": r.session_key,
                "session_agent": r.session_agent,
            }
            for r in messages
        ]
    }


@router.put(
    "/sessions/{path:key}/messages/last",
    response={200: UpdateLastOut, **CONFLICT_ERRORS},
    summary="Replace the last message (streaming)",
    description=(
        "Replaces the fields given under `message` on the session's last message; absent "
        "fields keep their values, except that `content` replaces the message's content "
        "fields together: `tool_calls` and `reasoning` not sent with it are cleared (send "
        "them again to keep them), so a placeholder's stale calls or reasoning never "
        "survive the final message. Streaming agents append a placeholder, then update it "
        "as tokens arrive. Usage and the session totals (tool calls too) move by the "
        "difference. An empty session answers 409.\n" + ANTHROPIC_NOTE
    ),
)
def update_last_message(request: HttpRequest, key: str, payload: UpdateLastIn) -> dict:
    patch = payload.message
    _refuse_cost_source(patch, "message")
    message = services.message_update_last(
        key=key, message=patch, convention=payload.convention, scope=key_scope(request)
    )
    session = Session.objects.get(pk=message.session_id)
    return {"message": message_json(message), "session": session_json(session)}


@router.delete(
    "/sessions/{path:key}/messages/last",
    response={200: RemovedFlagOut, **WRITE_ERRORS},
    summary="Remove the last message",
)
def remove_last_message(request: HttpRequest, key: str) -> dict:
    """Removes the session's last message and takes its usage out of the totals.
    `removed` is false when the session has no message."""
    return {"removed": services.message_remove_last(key=key, scope=key_scope(request))}


@router.delete(
    "/sessions/{path:key}/messages",
    response={200: RemovedCountOut, **WRITE_ERRORS},
    summary="Clear a session's messages",
)
def clear_messages(request: HttpRequest, key: str) -> dict:
    """Removes every message; the session and its totals (its spending history) stay."""
    return {"removed": services.messages_clear(key=key, scope=key_scope(request))}


@router.post(
    "/sessions/{path:key}/compact",
    response={200: ArchivedOut, **WRITE_ERRORS},
    summary="Compact a session",
)
def compact_session(request: HttpRequest, key: str, payload: CompactIn) -> dict:
    """Archives every active message except the newest `keep` and adds `summary` as a
    system message the context view places first. Archived messages stay in the `all`
    view until purged. With nothing to archive it writes nothing and answers
    `{"archived": 0}`."""
    archived = services.session_compact(
        key=key, summary=payload.summary, keep=payload.keep, scope=key_scope(request)
    )
    return {"archived": archived}


@router.post(
    "/sessions/{path:key}/messages/archive",
    response={200: ArchiveMarksOut, **WRITE_ERRORS},
    summary="Archive stored messages an agent archived",
)
def archive_messages(request: HttpRequest, key: str, payload: ArchiveIn) -> dict:
    """For a store that archives messages itself (koda's `compacted_at`; `fleet-follow`
    sends them): archives the session's stored messages named by `message_id` at the
    given `compacted_at`, taking them out of the context view (they stay in the `all`
    view). A message already archived keeps its time and one not stored is ignored, so
    a resend changes nothing; `archived` counts those archived now. An item with
    `"summary": true` marks a stored `system` message as the store's compaction summary
    (the context view puts it first, like Fleet's own); `summaries` counts those marked
    now. Totals stay. At most `FLEET_API_MAX_BATCH` items per request."""
    marks = clean_archived(payload.messages)
    done = services.messages_archive_stored(
        key=key, archived=marks.archived, summaries=marks.summaries, scope=key_scope(request)
    )
    return {"archived": done.archived, "summaries": done.summaries}


@router.get(
    "/sessions/{path:key}/usage",
    response={200: SessionUsageOut, **READ_ERRORS},
    summary="A session's usage, in total and by agent",
)
def session_usage(request: HttpRequest, key: str) -> dict:
    """`totals` are the session's spending history (clearing or compacting messages does
    not lower them); `by_agent` groups the stored messages by `agent_name` (empty =
    `main`), so sub-agents' cost shows apart."""
    session = load_session(key, key_scope(request))
    return {
        "totals": totals_json(selectors.session_usage(session)),
        "by_agent": [totals_json(row) for row in selectors.usage_by_agent(session)],
    }
