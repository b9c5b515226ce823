"""What simulated agents say: agent profiles and the messages of their turns.

Four kinds of agent, after the stores Fleet replaces: a coding agent on the
command line with sub-agents and Anthropic-style usage (``koda``), chat bots
on Telegram/Discord/Slack holding one session per person (``zeroclaw``),
autonomous workers with goals that report their own cost (``appam``) and an
editor agent over ACP (``zeph``). Usage keeps the token rules (reasoning
within completion, cache within prompt) and uses model names the price table
knows, plus one local model nobody can price.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

UNPRICED_MODEL = "local/llama-3.3-70b"
# USD per million input/output tokens, for agents that report their own cost.
_LIST_PRICE = {
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "gpt-5": (1.25, 10.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "o3": (2.0, 8.0),
    "deepseek-chat": (0.27, 1.1),
}
_REASONING_MODELS = ("o3", "gpt-5", "gemini-2.5-pro")


@dataclass(frozen=True)
class Profile:
    """How one kind of agent behaves."""

    name: str
    kind: str
    channels: tuple[str, ...]
    models: tuple[str, ...]
    tools: tuple[str, ...]
    prompts: tuple[str, ...]
    sub_agents: tuple[tuple[str, str], ...] = ()  # (agent_name, model)
    open_sessions: int = 1  # sessions it holds at once (a chat bot: one per person)
    streams: bool = False  # shows replies as they arrive (update-last)
    reports_cost: bool = False
    anthropic_usage: bool = False  # usage as Anthropic counts it (input without cache)
    end_chance: float = 0.3  # after each turn (from the second on)
    resumes: bool = False  # reloads its sessions after a restart


_CODE_PROMPTS = (
    "The tests in tests/test_billing.py fail since the last merge, can you look?",
    "Add a --dry-run flag to the export command.",
    "Refactor the retry logic in http_client.py, it retries on 4xx too.",
    "Why is the CI job three times slower than last week?",
    "Rename UserProfile.tz to time_zone everywhere.",
)
_CHAT_PROMPTS = (
    "what's the weather in Lisbon tomorrow?",
    "remind me to call the dentist at 5pm",
    "summarise this thread for me please",
    "translate 'see you at the station' to German",
    "what did we decide about the offsite last week?",
)
_GOALS = (
    "Triage every open issue labelled bug and propose owners.",
    "Reconcile last month's cloud invoices against the budget sheet.",
    "Draft release notes for v2.4 from the merged pull requests.",
    "Find flaky tests in the last 200 CI runs and open a ticket for each.",
)
_REPLIES = (
    "Done. I changed {path} and the tests pass now.",
    "Here is what I found:\n\n1. The retry loop ignores the status code.\n"
    "2. The backoff is never reset.\n\nI fixed both; see the diff above.",
    "The failure comes from a timezone-naive datetime in `{path}`. "
    "I made it aware and added a regression test.",
    "All set. Summary:\n- 3 files changed\n- 1 test added\n- no API change",
    "I couldn't reproduce it; could you paste the full traceback?",
    "Here's a short summary:\n\n* decision: ship on Thursday\n* owner: Dana\n* risk: low",
)
_CODE_LINES = (
    "from __future__ import annotations",
    "import logging",
    "logger = logging.getLogger(__name__)",
    "class RetryPolicy:",
    "    def should_retry(self, status: int) -> bool:",
    "        return status >= 500 or status == 429",
    "    for attempt in range(self.attempts):",
    "        try:",
    "            response = send(request)",
    "        except TimeoutError:",
    '            logger.warning("timeout on attempt %s", attempt)',
    "    return response.json()",
)
_PATHS = ("src/billing/invoices.py", "src/http_client.py", "app/models/user.py", "cmd/main.go")
PROJECTS = ("/home/dana/src/fleet", "/home/dana/src/billing", "/srv/work/api-gateway")
PEOPLE = ("alice", "bob", "chen", "dana", "eitan", "fatima")
BOTS = ("clamps", "pinchy", "shellby")

PROFILES = (
    Profile(
        "koda",
        "interactive",
        ("cli", "cli", "tui"),
        ("claude-sonnet-4-5", "claude-sonnet-4-5", "gpt-5"),
        ("read_file", "bash", "grep", "edit_file"),
        _CODE_PROMPTS,
        sub_agents=(("researcher", "claude-haiku-4-5"), ("reviewer", "gpt-4.1-mini")),
        streams=True,
        anthropic_usage=True,
    ),
    Profile(
        "zeroclaw",
        "interactive",
        ("telegram", "discord", "slack"),
        ("deepseek-chat", "gpt-4.1-mini", "claude-haiku-4-5", UNPRICED_MODEL),
        ("web_search", "fetch_url", "set_reminder"),
        _CHAT_PROMPTS,
        open_sessions=4,
        end_chance=0.05,
        resumes=True,
    ),
    Profile(
        "appam",
        "autonomous",
        ("cli",),
        ("o3", "gpt-5", "claude-sonnet-4-5"),
        ("http_get", "sql_query", "python"),
        _GOALS,
        sub_agents=(("planner", "gpt-4.1-mini"),),
        reports_cost=True,
        end_chance=0.25,
    ),
    Profile(
        "zeph",
        "acp",
        ("acp",),
        ("claude-sonnet-4-5", "gpt-5", "deepseek-chat"),
        ("read_file", "bash", "edit_file"),
        _CODE_PROMPTS,
        streams=True,
        reports_cost=True,
    ),
)


def _hex(rng: random.Random, bits: int = 96) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def _lines(rng: random.Random, low: int, high: int) -> str:
    lines = rng.choices(_CODE_LINES, k=rng.randint(low, high))
    return "\n".join(f"{n:4d}  {line}" for n, line in enumerate(lines, 1))


def tool_run(rng: random.Random, tool: str) -> tuple[dict[str, Any], str]:
    """Arguments of one call of ``tool`` and its result (some of them long)."""
    path = rng.choice(_PATHS)
    if tool == "read_file":
        return {"path": path}, _lines(rng, 20, 160)
    if tool == "bash":
        dots = "." * rng.randint(10, 60)
        if rng.random() < 0.3:
            return {"command": f"pytest -q {path}"}, (
                f"{dots}F\n{_lines(rng, 5, 30)}\nE   AssertionError\n1 failed, {len(dots)} passed"
            )
        return {"command": f"pytest -q {path}"}, f"{dots}\n{len(dots)} passed in 1.07s"
    if tool == "grep":
        hits = [f"{rng.choice(_PATHS)}:{rng.randint(1, 400)}: {rng.choice(_CODE_LINES)}"]
        return {"pattern": "should_retry"}, "\n".join(hits * rng.randint(1, 10))
    if tool == "edit_file":
        return {"path": path, "old": "status >= 400", "new": "status >= 500"}, f"edited {path}"
    if tool == "web_search":
        found = [
            {"title": f"Result {n}", "url": f"https://example.org/{_hex(rng, 32)}"}
            for n in range(5)
        ]
        return {"query": rng.choice(_CHAT_PROMPTS)}, json.dumps(found, indent=2)
    if tool == "fetch_url":
        return {"url": "https://example.org/post"}, "\n\n".join(rng.choices(_REPLIES, k=12))
    if tool == "sql_query":
        rows = "\n".join(
            f"{n:>5} | {rng.choice(PEOPLE):<8} | {rng.uniform(1, 900):9.2f}" for n in range(30)
        )
        return {"sql": "SELECT id, owner, amount FROM invoices"}, rows
    if tool == "http_get":
        items = [{"id": n, "state": "open"} for n in range(rng.randint(1, 8))]
        return {"url": "https://api.example.com/v1/issues"}, json.dumps({"items": items})
    return {"input": "print(6 * 7)"}, "42"


class Conversation:
    """The messages of one session, produced turn by turn as its agent would."""

    def __init__(self, rng: random.Random, profile: Profile, model: str) -> None:
        self.rng = rng
        self.profile = profile
        self.model = model
        self.tag = _hex(rng, 48)
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
        rng = self.rng
        prompt = self.context + rng.randint(1500, 9000)
        visible = rng.randint(30, 900)
        reasoning = int(visible * rng.uniform(0.3, 2.0)) if model in _REASONING_MODELS else 0
        cache_read = 0 if self.calls == 0 or model == UNPRICED_MODEL else int(prompt * 0.7)
        cache_write = min(prompt - cache_read, rng.randint(100, 2000))
        if not model.startswith("claude"):
            cache_write = 0
        self.calls += 1
        if self.profile.anthropic_usage and model.startswith("claude"):
            return {
                "convention": "anthropic",
                "input_tokens": prompt - cache_read - cache_write,
                "output_tokens": visible,
                "cache_read_input_tokens": cache_read,
                "cache_creation_input_tokens": cache_write,
            }
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": visible + reasoning,
            "reasoning_tokens": reasoning,
            "cache_read_tokens": cache_read,
            "cache_creation_tokens": cache_write,
        }
        if self.profile.reports_cost and model in _LIST_PRICE:
            rate_in, rate_out = _LIST_PRICE[model]
            cost = (prompt * rate_in + (visible + reasoning) * rate_out) / 1e6
            usage["cost_usd"] = f"{cost:.9f}"
        return usage

    def assistant(self, *, model: str = "", agent_name: str = "", **values: Any) -> dict[str, Any]:
        model = model or self.model
        message = {"role": "assistant", "model": model, **values, "usage": self.usage(model)}
        if agent_name:
            message["agent_name"] = agent_name
        if model.startswith("claude"):
            message["provider_response_id"] = f"msg_01{_hex(self.rng)}"
        elif model.startswith(("gpt", "o3")):
            message["provider_response_id"] = f"chatcmpl-{_hex(self.rng)}"
        return self._add(message)

    def tool_step(self, *, model: str = "", agent_name: str = "") -> list[dict[str, Any]]:
        """An assistant message calling tools, then one result per call."""
        rng = self.rng
        model = model or self.model
        calls, results = [], []
        for _ in range(rng.choice((1, 1, 2, 3))):
            tool = rng.choice(self.profile.tools)
            arguments, result = tool_run(rng, tool)
            call_id = (
                f"call_{_hex(rng)}" if model.startswith(("gpt", "o3")) else f"toolu_{_hex(rng)}"
            )
            # OpenAI-style clients send arguments as a JSON string, others as an object.
            sent = json.dumps(arguments) if model.startswith(("gpt", "o3")) else arguments
            calls.append({"id": call_id, "name": tool, "arguments": sent})
            results.append(
                {"role": "tool", "tool_call_id": call_id, "name": tool, "content": result}
            )
        content = rng.choice((None, None, "Let me check.", "I'll look at the code first."))
        step = [
            self.assistant(model=model, agent_name=agent_name, content=content, tool_calls=calls)
        ]
        for result in results:
            if agent_name:
                result["agent_name"] = agent_name
            step.append(self._add(result))
        return step

    def delegation(self) -> list[list[dict[str, Any]]]:
        """The agent hands a task to a sub-agent: the call, the sub-agent's work, the answer."""
        sub_agent, sub_model = self.rng.choice(self.profile.sub_agents)
        call_id = f"toolu_{_hex(self.rng)}"
        task = {"id": call_id, "name": "task", "arguments": {"agent": sub_agent, "prompt": "look"}}
        handoff = [self.assistant(tool_calls=[task])]
        work = self.tool_step(model=sub_model, agent_name=sub_agent)
        reply = self.rng.choice(_REPLIES).format(path=self.rng.choice(_PATHS))
        findings = self.assistant(model=sub_model, agent_name=sub_agent, content=reply)
        answer = self._add(
            {"role": "tool", "tool_call_id": call_id, "name": "task", "content": reply}
        )
        return [handoff, [*work, findings, answer]]

    def reply_text(self) -> str:
        return self.rng.choice(_REPLIES).format(path=self.rng.choice(_PATHS))

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
    key = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    fields: dict[str, Any] = {"kind": profile.kind, "channel": channel, "model": model}
    if profile.name == "zeroclaw":
        sender = str(rng.randrange(10**8, 10**9))
        key = f"{channel}_{sender}_{_hex(rng, 32)}"
        fields.update(
            channel_ref=f"{channel}.{rng.choice(BOTS)}",
            room_id=str(rng.randrange(10**17, 10**18)),
            sender_id=sender,
            name=f"{rng.choice(PEOPLE)} on {channel}",
        )
    elif profile.kind == "autonomous":
        fields["goal_text"] = rng.choice(_GOALS)
        fields["name"] = fields["goal_text"][:60]
    else:
        project = rng.choice(PROJECTS)
        fields["project_root"] = project
        fields["name"] = f"{project.rsplit('/', 1)[-1]}: {rng.choice(profile.prompts)[:48]}"
        fields["metadata"] = {"host": rng.choice(("devbox", "mbp-dana", "ci-runner-3"))}
    return key, fields
