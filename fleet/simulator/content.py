"""What simulated agents say: agent profiles and the messages of their turns.

Four kinds of agent, after the stores Fleet replaces: a coding agent on the
command line with sub-agents and Anthropic-style usage (``koda``), chat bots
on Telegram/Discord/Slack holding one session per person (``zeroclaw``),
autonomous workers with goals, some reporting their own cost (``appam``) and an
editor agent over ACP (``zeph``). They are the demo fleet's agents, with its
words, tool results and usage (``sessions.demo.text``), so the live fleet
reads like the demo; here is how they behave live.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from sessions.demo.text import (
    HOSTS,
    OPENERS,
    PEOPLE,
    Agent,
    agent_named,
    delegation_call,
    hex_id,
    reply_text,
    response_id,
    session_identity,
    tool_calls,
    usage,
)


@dataclass(frozen=True)
class Profile(Agent):
    """How one of the demo fleet's agents behaves live."""

    open_sessions: int = 1  # sessions it holds at once (a chat bot: one per person)
    streams: bool = False  # shows replies as they arrive (update-last)
    anthropic_usage: bool = False  # usage as Anthropic counts it (input without cache)
    end_chance: float = 0.3  # after each turn (from the second on)
    resumes: bool = False  # reloads its sessions after a restart


def _profile(name: str, **behaviour: Any) -> Profile:
    return Profile(**vars(agent_named(name)), **behaviour)


PROFILES = (
    _profile("koda", streams=True, anthropic_usage=True),
    _profile("zeroclaw", open_sessions=4, end_chance=0.05, resumes=True),
    _profile("appam", end_chance=0.25),
    _profile("zeph", streams=True),
)


class Conversation:
    """The messages of one session, produced turn by turn as its agent would."""

    def __init__(self, rng: random.Random, profile: Profile, model: str) -> None:
        self.rng = rng
        self.profile = profile
        self.model = model
        self.tag = hex_id(rng, 48)
        self.reports_cost = rng.random() < profile.reports_cost
        self.count = 0
        self.context = 0  # tokens of context so far, roughly
        self.calls = 0

    def _add(self, message: dict[str, Any]) -> dict[str, Any]:
        # Every message carries an id, so a retried request never duplicates it.
        self.count += 1
        message["message_id"] = f"{self.tag}-{self.count}"
        self.context += len(message.get("content") or "") // 4
        return message

    def system(self) -> dict[str, Any]:
        return self._add({"role": "system", "content": "You are a careful, concise agent."})

    def user(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "user", "content": self.rng.choice(self.profile.prompts)}
        if self.profile.name == "zeroclaw":
            message["name"] = self.rng.choice(PEOPLE)
        return self._add(message)

    def usage(self, model: str) -> dict[str, Any]:
        """One call's usage; Anthropic-style agents count input without the cache."""
        counts = usage(
            self.rng,
            model,
            context=self.context,
            first=self.calls == 0,
            reports=self.reports_cost,
            anthropic=self.profile.anthropic_usage,
        )
        self.calls += 1
        return counts

    def assistant(self, *, model: str = "", agent_name: str = "", **values: Any) -> dict[str, Any]:
        model = model or self.model
        message = {"role": "assistant", "model": model, **values, "usage": self.usage(model)}
        if agent_name:
            message["agent_name"] = agent_name
        if provider_id := response_id(self.rng, model):
            message["provider_response_id"] = provider_id
        return self._add(message)

    def tool_step(self, *, model: str = "", agent_name: str = "") -> list[dict[str, Any]]:
        """An assistant message calling tools, then one result per call."""
        model = model or self.model
        calls, results = tool_calls(self.rng, model, self.profile.tools, agent_name=agent_name)
        content = self.rng.choice(OPENERS)
        step = [
            self.assistant(model=model, agent_name=agent_name, content=content, tool_calls=calls)
        ]
        return step + [self._add(result) for result in results]

    def delegation(self) -> list[list[dict[str, Any]]]:
        """The agent hands a task to a sub-agent: the call, the sub-agent's work, the answer."""
        sub_agent, sub_model = self.rng.choice(self.profile.sub_agents)
        task = delegation_call(self.rng, self.model, sub_agent)
        handoff = [self.assistant(tool_calls=[task])]
        work = self.tool_step(model=sub_model, agent_name=sub_agent)
        reply = self.reply_text()
        findings = self.assistant(model=sub_model, agent_name=sub_agent, content=reply)
        answer = self._add(
            {"role": "tool", "tool_call_id": task["id"], "name": "task", "content": reply}
        )
        return [handoff, [*work, findings, answer]]

    def reply_text(self) -> str:
        return reply_text(self.rng)

    def reply(self) -> dict[str, Any]:
        return self.assistant(content=self.reply_text(), status="complete")

    def placeholder(self) -> dict[str, Any]:
        """A streaming reply's first state: no text yet, no usage."""
        return self._add(
            {"role": "assistant", "model": self.model, "content": "", "status": "streaming"}
        )

    def turn_messages(self) -> list[dict[str, Any]]:
        """A whole turn as one list (for batch writers): user, tool work, reply."""
        messages = [self.user()]
        for _ in range(self.rng.choice((0, 1, 1, 2, 3))):
            if self.profile.sub_agents and self.rng.random() < 0.2:
                for group in self.delegation():
                    messages += group
            else:
                messages += self.tool_step()
        messages.append(self.reply())
        return messages


def session_fields(rng: random.Random, profile: Profile, model: str) -> tuple[str, dict[str, Any]]:
    """A new session's key and the fields its agent sends when it starts it."""
    channel = rng.choice(profile.channels)
    key, fields = session_identity(rng, kind=profile.kind, channel=channel, prompts=profile.prompts)
    fields.update(kind=profile.kind, channel=channel, model=model)
    if "project_root" in fields:
        fields["metadata"] = {"host": rng.choice(HOSTS)}
    return key, fields
