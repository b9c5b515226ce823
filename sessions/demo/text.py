"""Who the demo agents are and what they say: text pools and message content.

Shared by the demo fleet (``sessions.demo``, written through the services)
and the live simulator (``fleet.simulator``, sent over the JSON API), so the
two fleets read alike: the same prompts and replies, tool calls with their
results (some of them long), usage within the token rules (reasoning within
completion, cache within prompt) under model names the price table knows,
plus one local model nobody can price.
"""

from __future__ import annotations

import json
import random
import uuid
import zlib
from dataclasses import dataclass
from typing import Any

HOSTILE = '<script>alert(1)</script> <img src=x onerror=alert(1)> <a href="javascript:alert(1)">'
UNPRICED_MODEL = "local/llama-3.3-70b"
# Rough list prices (USD per million input/output tokens) for the costs agents
# report themselves: their own tables never quite match the server's.
LIST_PRICE = {
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "gpt-5": (1.25, 10.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gemini-2.5-pro": (1.25, 10.0),
    "o3": (2.0, 8.0),
    "deepseek-chat": (0.27, 1.1),
}
REASONING_MODELS = frozenset({"o3", "gpt-5", "gemini-2.5-pro", "claude-opus-4-1"})
CHAT_CHANNELS = ("telegram", "discord", "slack")
# What each kind of agent calls; ``tool_run`` knows every one of them.
CODING_TOOLS = ("read_file", "bash", "grep", "edit_file", "list_dir")
CHAT_TOOLS = ("web_search", "fetch_url", "memory_recall", "set_reminder")
WORKER_TOOLS = ("http_get", "sql_query", "python", "write_file")

CODE_PROMPTS = (
    "The tests in tests/test_billing.py fail since the last merge, can you look?",
    "Add a --dry-run flag to the export command.",
    "Refactor the retry logic in http_client.py, it retries on 4xx too.",
    "Why is the CI job 3x slower than last week?",
    "Write a migration that backfills the created_at column.",
    "Review my branch feature/rate-limit before I open the PR.",
    "Rename UserProfile.tz to time_zone everywhere.",
    "The dashboard crashes when a session has no model, fix it.",
)
CHAT_PROMPTS = (
    "what's the weather in Lisbon tomorrow?",
    "remind me to call the dentist at 5pm",
    "summarise this thread for me please",
    "can you find the cheapest flight to Berlin next Friday?",
    "translate 'see you at the station' to German",
    "what did we decide about the offsite last week?",
    "any news on the Rust 2024 edition?",
    "tl;dr of https://example.org/blog/postgres-17 ?",
)
GOALS = (
    "Triage every open issue labelled bug in fleet-infra and propose owners.",
    "Collect last month's cloud invoices and reconcile them against the budget sheet.",
    "Monitor the staging deploy, roll back if the error rate exceeds 2%.",
    "Draft release notes for v2.4 from merged pull requests.",
    "Find flaky tests in the last 200 CI runs and open a ticket for each.",
)
REPLIES = (
    "Done. I changed {path} and the tests pass now.",
    "Here is what I found:\n\n1. The retry loop ignores the status code.\n"
    "2. The backoff is never reset.\n\nI fixed both; see the diff above.",
    "The failure comes from a timezone-naive datetime in `{path}`. "
    "I made it aware and added a regression test.",
    "All set — summary:\n- 3 files changed\n- 1 test added\n- no API change",
    "Sure! I've set that up for you.",
    "I couldn't reproduce it locally; could you paste the full traceback?",
    "According to the sources I checked, the answer is yes, with two caveats.",
    "Here's a short summary:\n\n* decision: ship on Thursday\n* owner: Dana\n* risk: low",
)
REASONING = (
    "The user wants the tests fixed. First read the failing test, then the code under "
    "test. The traceback points at the date parsing, so check how created_at is built.",
    "I should not guess the file layout; list the directory, then grep for the symbol.",
    "Two options: patch the caller or change the helper. Changing the helper affects "
    "three call sites; the caller patch is smaller and safer. Go with the caller.",
    "The question is ambiguous about the time zone. Assume the user's locale (Europe/Lisbon).",
)
CODE_LINES = (
    "from __future__ import annotations",
    "import logging",
    "",
    "logger = logging.getLogger(__name__)",
    "class RetryPolicy:",
    '    """Retry transient failures with exponential backoff."""',
    "    def __init__(self, attempts: int = 3, base: float = 0.5) -> None:",
    "        self.attempts = attempts",
    "        self.base = base",
    "    def should_retry(self, status: int) -> bool:",
    "        return status >= 500 or status == 429",
    "def parse_created_at(value: str) -> datetime:",
    "    return datetime.fromisoformat(value)",
    "    for attempt in range(self.attempts):",
    "        try:",
    "            response = send(request)",
    "        except TimeoutError:",
    '            logger.warning("timeout on attempt %s", attempt)',
    "            continue",
    "    if response.status_code >= 400:",
    "        raise HTTPError(response)",
    "    return response.json()",
)
PATHS = (
    "src/billing/invoices.py",
    "src/http_client.py",
    "app/models/user.py",
    "tests/test_billing.py",
    "cmd/export/main.go",
    "web/src/components/SessionTable.tsx",
)
PROJECTS = (
    "/home/dana/src/fleet",
    "/home/dana/src/billing",
    "/srv/work/api-gateway",
    "~/code/dotfiles",
)
PEOPLE = ("alice", "bob", "chen", "dana", "eitan", "fatima")
BOTS = ("clamps", "pinchy", "shellby")
HOSTS = ("devbox", "ci-runner-3", "mbp-dana", "k8s-worker-7")
# What an assistant says, if anything, before its tool calls.
OPENERS = (None, None, "Let me check.", "I'll look at the code first.")


@dataclass(frozen=True)
class Agent:
    """One kind of agent in the demo fleets: who it is, its models, tools and words."""

    name: str
    kind: str
    channels: tuple[str, ...]
    models: tuple[str, ...]
    tools: tuple[str, ...]
    prompts: tuple[str, ...]
    sub_agents: tuple[tuple[str, str], ...] = ()  # (agent_name, model)
    reports_cost: float = 0.0  # share of its sessions that report their own cost_usd
    message_ids: bool = False  # its demo messages carry ids (live agents always send them)


# A coding agent with sub-agents, chat bots (one on a local model), autonomous
# workers with goals, an editor agent over ACP.
AGENTS = (
    Agent(
        "koda",
        "interactive",
        ("cli", "cli", "tui"),
        ("claude-sonnet-4-5", "claude-sonnet-4-5", "claude-opus-4-1", "gpt-5", "gemini-2.5-pro"),
        CODING_TOOLS,
        CODE_PROMPTS,
        sub_agents=(("researcher", "claude-haiku-4-5"), ("reviewer", "gpt-4.1-mini")),
    ),
    Agent(
        "zeroclaw",
        "interactive",
        CHAT_CHANNELS,
        ("deepseek-chat", "gpt-4.1-mini", "claude-haiku-4-5", UNPRICED_MODEL),
        CHAT_TOOLS,
        CHAT_PROMPTS,
        message_ids=True,
    ),
    Agent(
        "appam",
        "autonomous",
        ("cli", "", "cli"),
        ("o3", "gpt-5", "claude-sonnet-4-5"),
        WORKER_TOOLS,
        GOALS,
        sub_agents=(("planner", "gpt-4.1-mini"), ("researcher", "claude-haiku-4-5")),
        reports_cost=0.5,
        message_ids=True,
    ),
    Agent(
        "zeph",
        "acp",
        ("acp",),
        ("claude-sonnet-4-5", "gpt-5", "deepseek-chat"),
        ("read_file", "bash", "grep", "edit_file"),
        CODE_PROMPTS,
        reports_cost=1.0,
    ),
)


def agent_named(name: str) -> Agent:
    return next(agent for agent in AGENTS if agent.name == name)


def hex_id(rng: random.Random, bits: int = 96) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def listing(rng: random.Random, low: int, high: int) -> str:
    """``low`` to ``high`` numbered lines of code, as a file read shows them."""
    lines = rng.choices(CODE_LINES, k=rng.randint(low, high))
    return "\n".join(f"{n:4d}  {line}" for n, line in enumerate(lines, 1))


def reply_text(rng: random.Random) -> str:
    return rng.choice(REPLIES).format(path=rng.choice(PATHS))


def tool_run(rng: random.Random, name: str) -> tuple[dict[str, Any], str]:
    """Arguments and result of one call of tool ``name``."""
    path = rng.choice(PATHS)
    if name == "read_file":
        return {"path": path}, listing(rng, 20, 160)
    if name == "bash":
        failed = rng.random() < 0.3
        dots = "." * rng.randint(10, 60)
        tail = "1 failed, 41 passed in 2.31s" if failed else f"{len(dots)} passed in 1.07s"
        body = f"{dots}\n" + (listing(rng, 10, 40) + "\nE   AssertionError\n" if failed else "")
        return {"command": f"pytest -q {path}", "timeout": 120}, f"{body}{tail}"
    if name == "grep":
        hits = rng.randint(0, 12)
        return {"pattern": "parse_created_at", "path": "src/"}, "\n".join(
            f"{rng.choice(PATHS)}:{rng.randint(1, 400)}: {rng.choice(CODE_LINES)}"
            for _ in range(hits)
        ) or "(no matches)"
    if name == "edit_file":
        return (
            {"path": path, "old_string": "status >= 400", "new_string": "status >= 500"},
            f"Applied 1 edit to {path}",
        )
    if name == "list_dir":
        return {"path": "."}, "\n".join(sorted(PATHS))
    if name == "web_search":
        results = [
            {"title": f"Result {n}", "url": f"https://example.org/{hex_id(rng, 24)}"}
            for n in range(rng.randint(2, 6))
        ]
        return {"query": rng.choice(CHAT_PROMPTS)}, json.dumps(results, indent=2)
    if name == "fetch_url":
        words = rng.choices(REPLIES, k=rng.randint(4, 30))
        return {"url": "https://example.org/blog/postgres-17"}, "\n\n".join(words)
    if name == "memory_recall":
        return {"query": "offsite decision"}, "2 memories: offsite on Thursday; Dana owns it."
    if name == "set_reminder":
        return {"when": "17:00", "text": "call the dentist"}, '{"ok": true, "id": 4211}'
    if name == "http_get":
        issues = {"status": "ok", "items": [{"id": n, "state": "open"} for n in range(5)]}
        return {"url": "https://api.example.com/v1/issues?label=bug"}, json.dumps(issues, indent=2)
    if name == "sql_query":
        rows = "\n".join(
            f"{rng.randint(1, 999):>5} | {rng.choice(PEOPLE):<8} | {rng.uniform(1, 900):9.2f}"
            for _ in range(rng.randint(3, 40))
        )
        return {"sql": "SELECT id, owner, amount FROM invoices ORDER BY amount DESC"}, (
            f"   id | owner    |    amount\n------+----------+----------\n{rows}"
        )
    if name == "python":
        return {"code": "print(sum(range(10)))"}, "45"
    return {"path": "report.md", "content": "# Report\n..."}, f"wrote {rng.randint(1, 40)} KB"


def _openai_style(model: str) -> bool:
    return model.startswith(("gpt", "o3"))


def call_id(rng: random.Random, model: str) -> str:
    return f"call_{hex_id(rng)}" if _openai_style(model) else f"toolu_01{hex_id(rng)}"


def response_id(rng: random.Random, model: str) -> str:
    """The provider's id of a response, for the providers that give one ("" otherwise)."""
    if model.startswith("claude"):
        return f"msg_01{hex_id(rng)}"
    if _openai_style(model):
        return f"chatcmpl-{hex_id(rng)}"
    return ""


def tool_call(
    rng: random.Random, model: str, name: str, arguments: dict[str, Any]
) -> dict[str, Any]:
    # OpenAI-style clients send arguments as a JSON string, others as an object.
    sent = json.dumps(arguments) if _openai_style(model) else arguments
    return {"id": call_id(rng, model), "name": name, "arguments": sent}


def tool_calls(
    rng: random.Random, model: str, tools: tuple[str, ...], *, agent_name: str = ""
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One to three calls of ``tools`` by ``model``, and a result message per call."""
    calls, results = [], []
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        name = rng.choice(tools)
        arguments, result = tool_run(rng, name)
        call = tool_call(rng, model, name, arguments)
        calls.append(call)
        tool = {"role": "tool", "tool_call_id": call["id"], "name": name, "content": result}
        tool["duration_ms"] = tool_timing(name, call["id"])
        if agent_name:
            tool["agent_name"] = agent_name
        results.append(tool)
    return calls, results


def delegation_call(rng: random.Random, model: str, sub_agent: str) -> dict[str, Any]:
    """The call handing a task to ``sub_agent`` (its result is the sub-agent's findings)."""
    arguments = {"agent": sub_agent, "prompt": "Find every caller of parse_created_at."}
    return tool_call(rng, model, "task", arguments)


def _spread(text: str, span: int) -> int:
    """A number in ``[0, span)`` that depends only on ``text``: demo timings vary
    without drawing from the generator (the rest of a seeded demo stays as it was)."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % span


def call_timing(model: str, counts: dict[str, Any], salt: str) -> dict[str, int]:
    """``duration_ms`` and ``time_to_first_token_ms`` of a model call: the prompt
    takes its time before the first token, then each output token its model's."""
    prompt = counts.get("prompt_tokens", counts.get("input_tokens", 0)) or 0
    output = counts.get("completion_tokens", counts.get("output_tokens", 0)) or 0
    first = 250 + prompt // 40 + _spread(salt, 900)
    per_token = 8 + _spread(model, 30)
    return {"time_to_first_token_ms": first, "duration_ms": first + output * per_token}


def tool_timing(name: str, salt: str) -> int:
    """A tool run's ``duration_ms``: each tool its own typical time, varying per run."""
    typical = 20 + _spread(name, 3000)
    return typical + _spread(salt, typical * 3 + 1)


def usage(
    rng: random.Random,
    model: str,
    *,
    context: int,
    first: bool,
    reports: bool,
    anthropic: bool = False,
) -> dict[str, Any]:
    """The usage of one model call made with about ``context`` tokens of history.

    Claude models write the prompt cache on a session's first call and read it
    afterwards; other priced models read a cached prefix. ``reports``: the
    agent sends its own cost, from list prices a little off the server's.
    ``anthropic``: Claude's counts as Anthropic sends them (input without the
    cache tokens, under ``"convention": "anthropic"``).
    """
    prompt = context + rng.randint(1500, 9000)
    visible = rng.randint(30, 900)
    reasoning = int(visible * rng.uniform(0.3, 2.0)) if model in REASONING_MODELS else 0
    cache_read = cache_write = 0
    if model.startswith("claude"):
        if first:
            cache_write = int(prompt * 0.8)
        else:
            cache_read = int(prompt * rng.uniform(0.6, 0.9))
            cache_write = min(prompt - cache_read, rng.randint(100, 3000))
    elif model != UNPRICED_MODEL and not first:
        cache_read = int(prompt * rng.uniform(0.3, 0.8)) // 128 * 128
    counts: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": visible + reasoning,  # reasoning is a part of completion
        "reasoning_tokens": reasoning,
        "cache_read_tokens": cache_read,
        "cache_creation_tokens": cache_write,
    }
    if anthropic and model.startswith("claude"):
        counts = {
            "convention": "anthropic",
            "input_tokens": prompt - cache_read - cache_write,
            "output_tokens": visible + reasoning,
            "reasoning_tokens": reasoning,
            "cache_read_input_tokens": cache_read,
            "cache_creation_input_tokens": cache_write,
        }
    if reports and model != UNPRICED_MODEL:
        rate_in, rate_out = LIST_PRICE.get(model, (1.0, 3.0))
        cost = (prompt * rate_in + (visible + reasoning) * rate_out) / 1e6
        counts["cost_usd"] = f"{cost * rng.uniform(0.8, 1.05):.6f}"
    return counts


def session_identity(
    rng: random.Random, *, kind: str, channel: str, prompts: tuple[str, ...]
) -> tuple[str, dict[str, Any]]:
    """A new session's key and the fields that say who it is with and what about.

    A chat bot keys a session by channel and sender and sends its routing
    context; an autonomous worker sends its goal; a coding agent its project.
    """
    if channel in CHAT_CHANNELS:
        sender = str(rng.randrange(10**8, 10**9))
        key = f"{channel}_{sender}_{hex_id(rng, 32)}"
        if channel == "discord":
            room = str(rng.randrange(10**17, 10**18))
        else:
            room = f"C0{hex_id(rng, 32).upper()}"
        return key, {
            "channel_ref": f"{channel}.{rng.choice(BOTS)}",
            "room_id": room,
            "sender_id": sender,
            "name": f"{rng.choice(PEOPLE)} on {channel}",
        }
    key = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if kind == "autonomous":
        goal = rng.choice(GOALS)
        return key, {"goal_text": goal, "name": goal.split(",")[0][:60]}
    project = rng.choice(PROJECTS)
    name = f"{project.rsplit('/', 1)[-1]}: {rng.choice(prompts)[:48]}"
    return key, {"project_root": project, "name": name}
