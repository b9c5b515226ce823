"""A demo session's messages, built turn by turn from ``(seed, index)``.

Whole turns: the user's message, tool calls always followed by their results
(some handed to a sub-agent), the reply; usage on every model call. A
running session ends on its open turn. No timestamps here: planning spreads
them over the session's life (``sessions.demo.fleet``).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from django.utils import timezone

from sessions.demo.heads import SessionHead
from sessions.demo.text import (
    CHAT_CHANNELS,
    HOSTILE,
    OPENERS,
    PEOPLE,
    REASONING,
    REASONING_MODELS,
    agent_named,
    call_timing,
    delegation_call,
    reply_text,
    response_id,
    tool_call,
    tool_calls,
    tool_run,
    usage,
)


class Transcript:
    """Builds one session's messages turn by turn (no timestamps yet)."""

    def __init__(self, rng: random.Random, head: SessionHead) -> None:
        self.rng = rng
        self.head = head
        self.messages: list[dict[str, Any]] = []
        self.context = 0
        self.api_calls = 0

    def add(self, message: dict[str, Any]) -> dict[str, Any]:
        if self.head.agent.message_ids:
            message["message_id"] = f"{self.head.agent.name}-{len(self.messages) + 1}"
        self.messages.append(message)
        self.context += len(message.get("content") or "") // 4
        return message

    def assistant(self, *, model: str, agent_name: str = "", **values: Any) -> dict[str, Any]:
        rng, head = self.rng, self.head
        message = {"role": "assistant", "model": model, **values}
        if agent_name:
            message["agent_name"] = agent_name
        message["usage"] = usage(
            rng,
            model,
            context=self.context,
            first=self.api_calls == 0,
            reports=head.reports_cost,
        )
        message.update(call_timing(model, message["usage"], f"{head.key}:{len(self.messages)}"))
        self.api_calls += 1
        if provider_id := response_id(rng, model):
            message["provider_response_id"] = provider_id
        if head.agent.kind == "autonomous":
            message["status"] = "complete"
        if model in REASONING_MODELS and rng.random() < 0.6:
            message["reasoning"] = rng.choice(REASONING)
        return self.add(message)

    def calls(self, model: str, agent_name: str, tools: tuple[str, ...]) -> None:
        """An assistant message with tool calls, then one result per call."""
        calls, results = tool_calls(self.rng, model, tools, agent_name=agent_name)
        content = self.rng.choice(OPENERS)
        self.assistant(model=model, agent_name=agent_name, content=content, tool_calls=calls)
        for result in results:
            self.add(result)

    def delegate(self, sub_agent: str, sub_model: str) -> None:
        """The main agent hands a task to a sub-agent and gets its findings back."""
        model = self.head.model
        call = delegation_call(self.rng, model, sub_agent)
        self.assistant(model=model, tool_calls=[call])
        self.calls(sub_model, sub_agent, ("grep", "read_file"))
        findings = reply_text(self.rng)
        self.assistant(model=sub_model, agent_name=sub_agent, content=findings)
        self.add({"role": "tool", "tool_call_id": call["id"], "name": "task", "content": findings})

    def turn(self) -> None:
        rng, head = self.rng, self.head
        user: dict[str, Any] = {"role": "user", "content": rng.choice(head.agent.prompts)}
        if head.channel in CHAT_CHANNELS:
            user["name"] = rng.choice(PEOPLE)
        self.add(user)
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            if head.agent.sub_agents and rng.random() < 0.25:
                self.delegate(*rng.choice(head.agent.sub_agents))
            else:
                self.calls(head.model, "", head.agent.tools)
        self.assistant(model=head.model, content=reply_text(rng))

    def open_turn(self) -> None:
        """A running turn: the user's message, maybe a tool call still waiting for its result."""
        rng, head = self.rng, self.head
        self.add({"role": "user", "content": rng.choice(head.agent.prompts)})
        if rng.random() < 0.5:
            name = rng.choice(head.agent.tools)
            arguments, _ = tool_run(rng, name)
            self.assistant(
                model=head.model, tool_calls=[tool_call(rng, head.model, name, arguments)]
            )

    def hostile_turn(self) -> None:
        model = self.head.model
        self.add({"role": "user", "name": "<b>mallory</b>", "content": f"{HOSTILE} please"})
        call = tool_call(
            self.rng,
            model,
            "<script>alert('tool')</script>",
            {"html": "<img src=x onerror=alert(1)>"},
        )
        self.assistant(
            model=model,
            content="Rendering <img src=x onerror=alert(1)> now",
            reasoning="</details><script>alert('reasoning')</script>",
            tool_calls=[call],
        )
        self.add(
            {
                "role": "tool",
                "tool_call_id": call["id"],
                "name": "fetch_url",
                "agent_name": "<svg onload=alert(1)>",
                "content": "<script>alert(document.cookie)</script>\n"
                "[click me](javascript:alert(1))\njavascript:alert(1)",
            }
        )
        self.assistant(model=model, content="[docs](javascript:alert(1)) and <b>bold</b>")


def build_messages(head: SessionHead, count: int, *, seed: int) -> list[dict[str, Any]]:
    """About ``count`` messages (whole turns: tool calls always with their results).

    A running session ends on its open turn: the user's message, or a tool
    call still waiting for its result.
    """
    rng = random.Random(f"{seed}:{head.index}:messages")
    transcript = Transcript(rng, head)
    if count <= 0:
        return []
    if head.agent.name in ("koda", "zeph") and rng.random() < 0.4:
        transcript.add({"role": "system", "content": "You are a careful coding agent."})
    if head.hostile:
        transcript.hostile_turn()
    running = head.lifecycle in ("running", "stuck")
    # Whole turns overshoot the count: stop a little short so counts average out.
    target = count - (2 if running else 0) - 2
    turns = 0
    while (turns == 0 and not running) or len(transcript.messages) < target:
        transcript.turn()
        turns += 1
    if running:
        transcript.open_turn()
    return transcript.messages


def iter_messages(count: int, *, seed: int = 1, agent: str = "koda") -> Iterator[dict[str, Any]]:
    """``count`` demo-shaped messages of one long session (for benchmarks), no timestamps."""
    profile = agent_named(agent)
    head = SessionHead(
        index=0,
        key="bench",
        agent=profile,
        channel=profile.channels[0],
        model=profile.models[0],
        lifecycle="completed",
        created_at=timezone.now(),
        last_active_at=timezone.now(),
        fields={},
    )
    produced = 0
    chunk = 0
    while produced < count:
        rng = random.Random(f"{seed}:bench:{chunk}")
        transcript = Transcript(rng, head)
        while len(transcript.messages) < 200:
            transcript.turn()
        for message in transcript.messages[: count - produced]:
            message.pop("message_id", None)
            yield message
            produced += 1
        chunk += 1
