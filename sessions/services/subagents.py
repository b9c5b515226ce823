"""Sub-agents known after their messages (OTLP): the waits of ``SubAgentWait``.

A sub-agent's ``invoke_agent`` span ends after its children, so a long run's
children usually arrive in earlier exports than the span that names their
sub-agent. The rules this protects:

* **Bounded**: a span waits only when its ancestry leaves its export without
  a name, one row per span, for at most ``WAIT_FOR``; a wait ends when its
  ancestor arrives (named, or a root) and moves up when that ancestor's own
  parent is missing too.
* **Nothing lost, idempotent**: messages are stored at once (as the main
  agent's); naming later only fills ``agent_name`` where it is empty, so an
  exporter's retry of either export changes nothing. ``agent_name`` is in no
  total or rollup, so naming moves none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from sessions.choices import Role
from sessions.models import Message, Session, SubAgentWait
from sessions.scopes import FULL, KeyScope

WAIT_FOR = timedelta(days=1)
READ_CHUNK = 500  # traces per query (SQLite bounds a query's variables)


@dataclass(frozen=True, slots=True)
class SpanLink:
    """What an export tells of one of its spans (trace and span id, hex)."""

    name: str = ""  # the sub-agent it speaks for, found in its export
    missing: str = ""  # else its nearest ancestor missing from the export


@dataclass(frozen=True, slots=True)
class Wait:
    """A span of this export whose messages (session ``key``) wait for ``awaited``."""

    key: str
    trace_id: str
    span_id: str
    awaited: str


def _name(wait: SubAgentWait, name: str, prefix: str) -> int:
    """Name the sub-agent on the waiting span's messages (not its prompts)."""
    if name == wait.session.agent:
        return 0  # the session's own agent: the main one, a blank name
    start = f"{prefix}{wait.trace_id}:{wait.span_id}"
    return (
        Message.objects.filter(
            session_id=wait.session_id,
            message_id__gte=start,
            message_id__lt=f"{start};",  # the span's ids: ``start`` and ``start:…``
            agent_name="",
        )
        .exclude(role=Role.USER)
        .update(agent_name=name)
    )


@transaction.atomic
def sub_agents_resolve(
    *,
    links: Mapping[tuple[str, str], SpanLink],
    waits: Sequence[Wait],
    prefix: str,
    now: datetime | None = None,
    scope: KeyScope = FULL,
) -> int:
    """Settle the waits for this export's spans (``links``, by (trace, span)),
    then record this export's own (``waits``); returns how many messages got a name.

    ``prefix`` starts the message ids of a span (``otel:``): its messages are
    ``<prefix><trace>:<span>`` and ``…:<suffix>``. A session outside ``scope``
    is left alone.
    """
    now = now or timezone.now()
    named = 0
    traces = sorted({trace_id for trace_id, _ in links})
    for start in range(0, len(traces), READ_CHUNK):
        rows = SubAgentWait.objects.filter(
            trace_id__in=traces[start : start + READ_CHUNK]
        ).select_related("session")
        for wait in rows:
            link = links.get((wait.trace_id, wait.awaited))
            if link is None or not scope.covers(wait.session.agent):
                continue
            if link.name:
                named += _name(wait, link.name, prefix)
                wait.delete()
            elif link.missing:
                wait.awaited = link.missing
                wait.save(update_fields=["awaited"])
            else:
                wait.delete()  # a root: no sub-agent above it
    if waits:
        keys = sorted({wait.key for wait in waits})
        ids: dict[str, int] = {}
        for start in range(0, len(keys), READ_CHUNK):
            ids.update(
                Session.objects.filter(key__in=keys[start : start + READ_CHUNK]).values_list(
                    "key", "pk"
                )
            )
        SubAgentWait.objects.bulk_create(
            [
                SubAgentWait(
                    session_id=ids[wait.key],
                    trace_id=wait.trace_id,
                    span_id=wait.span_id,
                    awaited=wait.awaited,
                    created_at=now,
                )
                for wait in waits
                if wait.key in ids  # a refused session stored nothing to name
            ],
            ignore_conflicts=True,
        )
        SubAgentWait.objects.filter(created_at__lt=now - WAIT_FOR).delete()
    return named
