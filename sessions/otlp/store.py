"""Writing mapped OTLP records: one append per session, refusals counted with their reason."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.db import transaction

from sessions import services
from sessions.errors import FleetError
from sessions.inputs import MessageIn, clean_key, clean_message
from sessions.models import Session
from sessions.scopes import FULL, KeyScope

MAX_REASON_CHARS = 1000
READ_CHUNK = 500  # keys per query reading stored sessions (SQLite bounds a query's variables)
_EARLIEST = datetime.min.replace(tzinfo=UTC)


@dataclass
class IngestResult:
    """What became of an export's records: stored (or already stored), or rejected and why."""

    noun: str = "span"
    accepted: int = 0
    rejected: int = 0
    appended: int = 0
    sessions: list[str] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)

    def reject(self, reason: str, count: int = 1) -> None:
        self.rejected += count
        self.reasons[reason] += count

    @property
    def message(self) -> str:
        """One English phrase per reason, for OTLP's ``partial_success.error_message``."""
        parts = [
            f"{count} {self.noun}{'s' if count != 1 else ''} {reason}"
            for reason, count in self.reasons.most_common()
        ]
        return "; ".join(parts)[:MAX_REASON_CHARS]


@dataclass
class Mapped:
    """One record's session, agent and messages (as mappings, validated when stored);
    ``order`` sorts records of a session; ``label`` names the record in a refusal.

    ``turn`` (a trace id, Claude Code's ``prompt.id``) and ``started`` name the
    turn when the record failed. Messages whose ``message_id`` is stored
    already complete the stored ones (``services.messages_complete``).
    """

    key: str
    agent: str
    messages: list[dict[str, Any]]
    order: tuple[int, str]
    label: str
    turn: str = ""
    started: datetime | None = None
    records: int = 1  # the records it stands for (a model call's events: one each)

    @property
    def model(self) -> str:
        return next((m["model"] for m in self.messages if isinstance(m.get("model"), str)), "")

    @property
    def failed(self) -> bool:
        return any(message.get("status") == "error" for message in self.messages)


def _turn_fields(newest: Mapped, state: str | None) -> dict[str, Any]:
    """The session's turn state after an export, from its newest record.

    A failed model call or tool run leaves the session in ``error``, naming the
    turn; a later success clears an ``error`` to ``idle``. Otherwise the state
    is left as it is (OTLP says nothing of turns still running).
    """
    if newest.failed:
        fields: dict[str, Any] = {"state": "error"}
        if newest.turn and newest.turn.isprintable():
            fields["turn_id"] = newest.turn[:255]
            fields["turn_started_at"] = newest.started
        return fields
    if state == "error":
        return {"state": "idle"}
    return {}


def _clean(item: Mapped, result: IngestResult) -> list[MessageIn] | None:
    """A record's messages validated, or None (the record rejected, with the reason)."""
    cleaned = []
    for index, message in enumerate(item.messages):
        values = {name: value for name, value in message.items() if value not in (None, "", [])}
        try:
            cleaned.append(clean_message(values, f"message {index}"))
        except FleetError as error:
            where = f" ({error.field})" if error.field else ""
            result.reject(f"refused: {item.label}{where}: {error.message}"[:300], item.records)
            return None
    return cleaned


def store(
    mapped: Sequence[Mapped],
    result: IngestResult,
    *,
    scope: KeyScope = FULL,
    now: datetime | None = None,
) -> None:
    """Append each session's messages in one transaction, sessions in key order.

    A refused session rejects its own records; the others are stored. The
    export that creates a session names its agent and model; later exports do
    not rename it (records of sub-agents name theirs on their messages).
    """
    groups: dict[str, list[Mapped]] = defaultdict(list)
    for item in mapped:
        groups[item.key].append(item)
    for key in list(groups):
        # The key is checked before it is looked up: a key the store cannot
        # hold (a NUL byte: PostgreSQL refuses it even in a WHERE) is refused
        # with its records, not an error for the whole export.
        try:
            clean_key(key, "session key")
        except FleetError as error:
            records = sum(item.records for item in groups.pop(key))
            result.reject(f"refused for session {key[:100]!r}: {error.message}"[:300], records)
    keys = list(groups)
    stored: dict[str, tuple[str, str]] = {}
    for start in range(0, len(keys), READ_CHUNK):
        rows = Session.objects.filter(key__in=keys[start : start + READ_CHUNK])
        for key, agent, state in rows.values_list("key", "agent", "state"):
            stored[key] = (agent, state)
    for key in sorted(groups):
        if key in stored:
            agent, state = stored[key]
        else:
            agent, state = min(groups[key], key=lambda item: item.order).agent, ""
        # Every record validated alone: an invalid one is rejected, its
        # session's other records still land.
        group: list[Mapped] = []
        messages: list[tuple[datetime, int, int, MessageIn]] = []
        for item in sorted(groups[key], key=lambda item: item.order):
            for message in item.messages:
                if message.get("agent_name") == agent:
                    message["agent_name"] = ""
            cleaned = _clean(item, result)
            if cleaned is None:
                continue
            for position, (raw, message_in) in enumerate(zip(item.messages, cleaned, strict=True)):
                at = raw.get("created_at") or _EARLIEST
                messages.append((at, len(group), position, message_in))
            group.append(item)
        if not group:
            continue
        fields: dict[str, Any] = {}
        if key not in stored:
            fields = {"agent": agent, "model": next((i.model for i in group if i.model), "")}
            fields = {name: value for name, value in fields.items() if value}
        fields.update(_turn_fields(group[-1], state))
        messages.sort(key=lambda entry: entry[:3])
        records = sum(item.records for item in group)
        try:
            with transaction.atomic():
                append = services.messages_append_all(
                    key=key,
                    messages=[entry[3] for entry in messages],
                    session=fields,
                    now=now,
                    scope=scope,
                )
                if append.skipped:
                    # Stored already: a retry (nothing to fill in), or the
                    # other half of a model call (its span, or its events).
                    services.messages_complete(
                        key=key, messages=[entry[3] for entry in messages], now=now, scope=scope
                    )
        except FleetError as error:
            result.reject(f"refused for session {key[:100]!r}: {error.message}"[:300], records)
            continue
        result.accepted += records
        result.appended += append.appended
        result.sessions.append(key)
