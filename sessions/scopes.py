"""What an API key may do: the one home of the key-scope rule.

A key is scoped to a list of agents (it writes and reads only the sessions
whose ``agent`` is in the list) and/or read-only (every write is refused).
An empty list means every agent: keys made before scopes existed keep full
access. Services and selectors receive a ``KeyScope`` and ask it; nothing
else decides what a key may touch.

Decisions (docs/DECISIONS.md): a session outside the scope answers 403 on
reads and writes alike (the contract: "anything else 403"); lists, search and
fleet totals leave it out. A scoped key that creates a session without naming
its agent gives it the key's agent when the key has exactly one, else 403.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from sessions.errors import Forbidden, InvalidInput

if TYPE_CHECKING:
    from django.db.models import QuerySet

Q = TypeVar("Q", bound="QuerySet[Any]")

MAX_AGENTS = 100
AGENT_MAX_LENGTH = 255  # Session.agent's length


def clean_agents(values: Iterable[Any] | None, path: str = "agents") -> list[str]:
    """A key's agent list: names of at most 255 characters, deduplicated, in order."""
    agents: list[str] = []
    for index, value in enumerate(values or ()):
        if not isinstance(value, str):
            raise InvalidInput(f"must be a string, got {type(value).__name__}", field=path)
        name = value.strip()
        if not name:
            continue
        if len(name) > AGENT_MAX_LENGTH or not name.isprintable():
            raise InvalidInput(
                f"agent {index + 1} must be one line of at most {AGENT_MAX_LENGTH} characters",
                field=path,
            )
        if name not in agents:
            agents.append(name)
    if len(agents) > MAX_AGENTS:
        raise InvalidInput(f"a key names at most {MAX_AGENTS} agents", field=path)
    return agents


@dataclass(frozen=True)
class KeyScope:
    """What one key may touch. ``agents`` empty = every agent."""

    agents: tuple[str, ...] = ()
    read_only: bool = False

    @property
    def is_full(self) -> bool:
        return not self.agents and not self.read_only

    @property
    def agent_filter(self) -> Sequence[str] | None:
        """The agents reads are limited to, or ``None`` for every agent."""
        return self.agents or None

    def covers(self, agent: str) -> bool:
        return not self.agents or agent in self.agents

    def sessions(self, queryset: Q) -> Q:
        """``queryset`` (of sessions) narrowed to the sessions this key may see."""
        if not self.agents:
            return queryset
        return queryset.filter(agent__in=self.agents)

    def check_read(self, agent: str, key: str = "") -> None:
        """Refuse (403) reading a session owned by an agent outside the scope."""
        if not self.covers(agent):
            raise Forbidden(f"this API key may not read session {key!r}"[:300], field="key")

    def check_writes(self) -> None:
        """Refuse (403) any write through a read-only key, before anything is read."""
        if self.read_only:
            raise Forbidden("this API key is read-only")

    def check_write(self, agent: str, *, field: str = "agent") -> None:
        """Refuse (403) a write to (or naming) ``agent`` outside the scope."""
        self.check_writes()
        if not self.covers(agent):
            raise Forbidden(
                f"this API key may write only sessions of {self._listed()}, not of agent {agent!r}"[
                    :300
                ],
                field=field,
            )

    def agent_for_new_session(self, agent: str | None) -> str | None:
        """The agent a session created through this key gets (``agent`` as sent, or None).

        A scoped key must own what it creates: a missing agent becomes the key's
        agent when it has exactly one; with several it must be named.
        """
        if agent is None and self.agents:
            if len(self.agents) == 1:
                return self.agents[0]
            raise Forbidden(
                f"this API key writes sessions of {self._listed()}; name the session's agent",
                field="agent",
            )
        if agent is not None:
            self.check_write(agent)
        return agent

    def _listed(self) -> str:
        shown = ", ".join(repr(agent) for agent in self.agents[:5])
        more = f" and {len(self.agents) - 5} more" if len(self.agents) > 5 else ""
        return f"agents {shown}{more}"

    def describe(self) -> str:
        """How the admin and the command show the scope."""
        who = "all agents" if not self.agents else ", ".join(self.agents)
        return f"{who} (read-only)" if self.read_only else who


FULL = KeyScope()
