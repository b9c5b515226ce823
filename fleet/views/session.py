"""The session page: header and totals, usage by agent, metadata, the transcript.

One URL per session (``/sessions/<key>/``; keys may contain ``/``). GET shows
the page or, for htmx, a transcript fragment: ``?before=SEQ`` (earlier
messages), ``?after=SEQ`` (later ones), ``?tail=SEQ&v=VERSION`` (the live
poll, ``204`` when the session has not changed). POST runs an action: mark
completed / cancelled / failed, or delete.
"""

from __future__ import annotations

import hashlib
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import HttpResponseClientRedirect, HttpResponseClientRefresh

from fleet import transcript
from fleet.forms import SESSION_ACTIONS, SessionActionForm, TranscriptForm
from fleet.views import HtmxHttpRequest
from fleet.views.auth import can_change, can_delete, dashboard_view, forbidden
from sessions import services
from sessions.choices import TOKEN_FIELDS, Status
from sessions.errors import InvalidInput, SessionGone, SessionNotFound
from sessions.inputs import clean_key
from sessions.models import Session
from sessions.selectors import (
    session_get,
    session_slowest_calls,
    session_turns,
    usage_by_agent,
)

TEMPLATE = "fleet/session.html"
# The aside lists the session's last finished turns, newest first, and its
# slowest timed calls (model calls and tool runs), slowest first.
SHOWN_TURNS = 10
SHOWN_SLOWEST = 10


def session_version(session: Session) -> str:
    """Changes with every write about the session, and once a minute ("3 min ago")."""
    minute = int(timezone.now().timestamp() // 60)
    raw = "|".join(
        str(v)
        for v in (
            session.last_active_at.isoformat(),
            session.last_seq,
            session.message_count,
            session.status,
            session.state,
            session.turns,
            session.cost_usd,
            minute,
        )
    )
    return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()


def _check_key(key: str) -> None:
    """Refuse a key no session can have (blank, too long, control characters)
    before it reaches a query: PostgreSQL cannot even compare one holding NUL.
    ``dashboard_view`` shows the refusal as a 400 page."""
    try:
        clean_key(key)
    except InvalidInput as error:
        raise InvalidInput(f"Not a session key: it {error.message}.", field="key") from None


def _missing(request: HttpRequest, key: str, error: SessionNotFound | SessionGone) -> HttpResponse:
    tombstone = {"deleted_at": error.deleted_at} if isinstance(error, SessionGone) else None
    context = {"key": key, "tombstone": tombstone}
    return render(request, "fleet/session_missing.html", context, status=410 if tombstone else 404)


def _summary_context(request: HttpRequest, session: Session) -> dict[str, Any]:
    statuses = [
        {"action": action, "label": f"Mark {status.label.lower()}"}
        for action, status in SESSION_ACTIONS.items()
        if session.status != status
    ]
    return {
        "session": session,
        "by_agent": usage_by_agent(session),
        "finished_turns": session_turns(session, SHOWN_TURNS),
        "slowest_calls": session_slowest_calls(session, SHOWN_SLOWEST),
        "metadata": sorted((session.metadata or {}).items()),
        "may_change": can_change(request.user),
        "may_delete": can_delete(request.user),
        "status_actions": statuses,
        "token_fields": TOKEN_FIELDS,
        "version": session_version(session),
        "poll_seconds": settings.FLEET_POLL_SECONDS,
        "session_url": session.get_absolute_url(),
    }


@require_http_methods(["GET", "HEAD", "POST"])
@dashboard_view
@vary_on_headers("HX-Request")
def session_page(request: HtmxHttpRequest, key: str) -> HttpResponse:
    _check_key(key)
    htmx = request.htmx and not request.htmx.history_restore_request
    try:
        if request.method == "POST":
            return _action(request, key)
        return _page(request, session_get(key), htmx=bool(htmx))
    except (SessionNotFound, SessionGone) as error:
        if htmx and request.method == "GET" and "tail" in request.GET:
            # Deleted while the page was open: reload to show what happened.
            return HttpResponseClientRefresh()
        return _missing(request, key, error)


def _page(request: HttpRequest, session: Session, *, htmx: bool) -> HttpResponse:
    """The session page, or the transcript fragment an htmx request asks for."""
    form = TranscriptForm(request.GET)
    before, after, at, tail = (form.value(n) for n in ("before", "after", "at", "tail"))
    if htmx and tail is not None:
        version = session_version(session)
        if form.value("v") == version:
            return HttpResponse(status=204)
        context = {**_summary_context(request, session), "oob": True}
        context["chunk"] = transcript.tail(session, tail)
        return render(request, f"{TEMPLATE}#tail_poll", context)
    if htmx and before is not None:
        context = {
            "session": session,
            "chunk": transcript.before(session, before),
            "session_url": session.get_absolute_url(),
        }
        return render(request, f"{TEMPLATE}#earlier", context)
    if htmx and after is not None:
        context = _summary_context(request, session)
        context["chunk"] = transcript.after(session, after)
        return render(request, f"{TEMPLATE}#later", context)

    context = _summary_context(request, session)
    if before is not None:
        context["chunk"] = transcript.before(session, before)
    elif at is not None:
        # Open a few messages before the one asked for, so it shows in context.
        context["chunk"] = chunk = transcript.after(session, max(0, at - 4))
        context["target_seq"] = at
        for item in chunk.items:
            if isinstance(item, transcript.ArchivedRun) and item.contains(at):
                item.open = True
    elif after is not None:
        context["chunk"] = transcript.after(session, after)
    else:
        context["chunk"] = transcript.newest(session)
    return render(request, TEMPLATE, context)


def _action(request: HtmxHttpRequest, key: str) -> HttpResponse:
    """A button of the page; an unknown or deleted session is the caller's missing page."""
    form = SessionActionForm(request.POST)
    if not form.is_valid():
        return HttpResponse("Unknown action.", status=400, content_type="text/plain")
    action = form.cleaned_data["action"]
    page_url = reverse("session", kwargs={"key": key})
    if action == "delete":
        if not can_delete(request.user):
            return forbidden(request, "Your account may not delete sessions.")
        services.session_delete(key=key)
        messages.success(request, f"Deleted session {key}. Its key is tombstoned.")
        if request.htmx:
            return HttpResponseClientRedirect(reverse("fleet"))
        return HttpResponseRedirect(reverse("fleet"))

    if not can_change(request.user):
        return forbidden(request, "Your account may not change sessions.")
    session = services.session_set_status(key=key, status=SESSION_ACTIONS[action])
    if request.htmx:
        return render(request, f"{TEMPLATE}#summary", _summary_context(request, session))
    label = Status(session.status).label.lower()
    messages.success(request, f"Marked {session} {label}.")
    return HttpResponseRedirect(page_url)
