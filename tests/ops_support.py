"""Helpers for the ops command tests (reconcile, purge, reprice): building
sessions at given times through the services, running commands, and running
jobs in separate processes against the real database."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from io import StringIO
from typing import Any

from django.core.management import call_command
from django.utils import timezone

from sessions import services
from sessions.models import BudgetUsage, DailyUsage, Message, Session
from tests.processes import run_in_processes  # noqa: F401 - the ops tests import it from here


def ago(**delta: float) -> datetime:
    return timezone.now() - timedelta(**delta)


def messages(count: int, *, prefix: str = "m", usage: dict[str, Any] | None = None) -> list:
    """``count`` alternating user/assistant messages; assistants carry ``usage``."""
    usage = usage if usage is not None else {"prompt_tokens": 10, "completion_tokens": 2}
    return [
        {
            "role": "user" if index % 2 == 0 else "assistant",
            "content": f"{prefix} {index}",
            **({"usage": dict(usage)} if index % 2 else {}),
        }
        for index in range(count)
    ]


def make_session(
    key: str,
    *,
    at: datetime,
    count: int = 2,
    agent: str = "koda",
    model: str = "gpt-4o-mini",
    channel: str = "cli",
    **fields: Any,
) -> Session:
    """A session whose last activity is ``at``, with ``count`` messages written then."""
    session = {"agent": agent, "model": model, "channel": channel}
    if count:
        services.messages_append(key=key, session=session, messages=messages(count), now=at)
    else:
        services.session_upsert(key=key, fields=session, now=at)
    if fields:
        services.session_upsert(key=key, fields={**fields, "last_active_at": at}, now=at)
    return Session.objects.get(key=key)


def run(command: str, *args: str, **options: Any) -> str:
    out = StringIO()
    call_command(command, *args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


def run_json(command: str, *args: str, **options: Any) -> dict[str, Any]:
    return json.loads(run(command, *args, "--json", **options))


def rollup_rows() -> list[dict[str, Any]]:
    """Every daily and budget usage row: what charts, period totals and budgets read."""
    budget = BudgetUsage.objects.order_by("span", "start", "agent", "model", "channel", "project")
    return [
        *DailyUsage.objects.order_by("day", "agent", "model", "channel").values(),
        *budget.values(),
    ]


def message_counts_agree() -> list[tuple[str, int, int]]:
    """Sessions whose ``message_count`` differs from the messages stored."""
    wrong = []
    for key, stored, pk in Session.objects.values_list("key", "message_count", "id"):
        actual = Message.objects.filter(session_id=pk).count()
        if actual != stored:
            wrong.append((key, stored, actual))
    return wrong
