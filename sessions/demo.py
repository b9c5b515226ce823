"""A realistic demo fleet, written through ``sessions.services``.

The dashboard's demo (``manage.py demo_fleet``) and the benchmarks share this
generator. Everything is derived from ``(seed, index)``: session *i* of a seed
is the same whatever the fleet's size, and a session's head (key, agent,
lifecycle, times) is drawn apart from its messages, so the fleet can be
planned without building every transcript in memory.

The fleet: ``koda`` (coding agent, CLI/TUI, project paths, sub-agents),
``zeroclaw`` (chat bots on Telegram/Discord/Slack, routing context, one on a
local model nobody can price), ``appam`` (autonomous workers with goals,
message ids, some reporting their own cost) and ``zeph`` (ACP editor agent
reporting cost). Statuses and states cover the dashboard's cases: completed,
active (idle, running, stuck, stale, error), failed, cancelled and unknown
(marked by ``sessions_mark_unknown``, the startup rule), with compacted
sessions and one session full of hostile markup. Usage respects the token
rules (reasoning within completion, cache within prompt).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from sessions import services
from sessions.models import Session, Status, Tombstone

HOSTILE = '<script>alert(1)</script> <img src=x onerror=alert(1)> <a href="javascript:alert(1)">'
UNPRICED_MODEL = "local/llama-3.3-70b"
# Rough list prices (USD per million input/output tokens) for the costs agents
# report themselves: their own tables never quite match the server's.
_REPORTED_PRICE = {
    "claude-sonnet-4-5": (3.0, 15.0),
    "claude-opus-4-1": (15.0, 75.0),
    "claude-haiku-4-5": (1.0, 5.0),
    "gpt-5": (1.25, 10.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gemini-2.5-pro": (1.25, 10.0),
    "o3": (2.0, 8.0),
    "deepseek-chat": (0.27, 1.1),
}
_REASONING_MODELS = {"o3", "gpt-5", "gemini-2.5-pro", "claude-opus-4-1"}


@dataclass(frozen=True)
class Agent:
    name: str
    kind: str
    channels: tuple[str, ...]
    models: tuple[str, ...]
    tools: tuple[str, ...]
    sub_agents: tuple[tuple[str, str], ...] = ()  # (agent_name, model)
    prompts: tuple[str, ...] = ()
    reports_cost: float = 0.0  # share of sessions whose agent reports cost_usd
    message_ids: bool = False


_CODE_PROMPTS = (
    "The tests in tests/test_billing.py fail since the last merge, can you look?",
    "Add a --dry-run flag to the export command.",
    "Refactor the retry logic in http_client.py, it retries on 4xx too.",
    "Why is the CI job 3x slower than last week?",
    "Write a migration that backfills the created_at column.",
    "Review my branch feature/rate-limit before I open the PR.",
    "Rename UserProfile.tz to time_zone everywhere.",
    "The dashboard crashes when a session has no model, fix it.",
)
_CHAT_PROMPTS = (
    "what's the weather in Lisbon tomorrow?",
    "remind me to call the dentist at 5pm",
    "summarise this thread for me please",
    "can you find the cheapest flight to Berlin next Friday?",
    "translate 'see you at the station' to German",
    "what did we decide about the offsite last week?",
    "any news on the Rust 2024 edition?",
    "tl;dr of https://example.org/blog/postgres-17 ?",
)
_GOALS = (
    "Triage every open issue labelled bug in fleet-infra and propose owners.",
    "Collect last month's cloud invoices and reconcile them against the budget sheet.",
    "Monitor the staging deploy, roll back if the error rate exceeds 2%.",
    "Draft release notes for v2.4 from merged pull requests.",
    "Find flaky tests in the last 200 CI runs and open a ticket for each.",
)
_REPLIES = (
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
_REASONING = (
    "The user wants the tests fixed. First read the failing test, then the code under "
    "test. The traceback points at the date parsing, so check how created_at is built.",
    "I should not guess the file layout; list the directory, then grep for the symbol.",
    "Two options: patch the caller or change the helper. Changing the helper affects "
    "three call sites; the caller patch is smaller and safer. Go with the caller.",
    "The question is ambiguous about the time zone. Assume the user's locale (Europe/Lisbon).",
)
_CODE_LINES = (
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
_PATHS = (
    "src/billing/invoices.py",
    "src/http_client.py",
    "app/models/user.py",
    "tests/test_billing.py",
    "cmd/export/main.go",
    "web/src/components/SessionTable.tsx",
)
_PROJECTS = (
    "/home/dana/src/fleet",
    "/home/dana/src/billing",
    "/srv/work/api-gateway",
    "~/code/dotfiles",
)

AGENTS = (
    Agent(
        "koda",
        "interactive",
        ("cli", "cli", "tui"),
        ("claude-sonnet-4-5", "claude-sonnet-4-5", "claude-opus-4-1", "gpt-5", "gemini-2.5-pro"),
        ("read_file", "bash", "grep", "edit_file", "list_dir"),
        (("researcher", "claude-haiku-4-5"), ("reviewer", "gpt-4.1-mini")),
        _CODE_PROMPTS,
    ),
    Agent(
        "zeroclaw",
        "interactive",
        ("telegram", "discord", "slack"),
        ("deepseek-chat", "gpt-4.1-mini", "claude-haiku-4-5", UNPRICED_MODEL),
        ("web_search", "fetch_url", "memory_recall", "set_reminder"),
        (),
        _CHAT_PROMPTS,
        message_ids=True,
    ),
    Agent(
        "appam",
        "autonomous",
        ("cli", "", "cli"),
        ("o3", "gpt-5", "claude-sonnet-4-5"),
        ("http_get", "sql_query", "python", "write_file"),
        (("planner", "gpt-4.1-mini"), ("researcher", "claude-haiku-4-5")),
        _GOALS,
        reports_cost=0.5,
        message_ids=True,
    ),
    Agent(
        "zeph",
        "acp",
        ("acp",),
        ("claude-sonnet-4-5", "gpt-5", "deepseek-chat"),
        ("read_file", "bash", "grep", "edit_file"),
        (),
        _CODE_PROMPTS,
        reports_cost=1.0,
    ),
)
_AGENT_WEIGHTS = (40, 30, 18, 12)
_BOT_ALIASES = ("clamps", "pinchy", "shellby")
_PEOPLE = ("alice", "bob", "chen", "dana", "eitan", "fatima")

# Lifecycles: final status (and state) of a session, with their weights.
LIFECYCLES = {
    "completed": 62,
    "idle": 6,  # active, recent activity
    "running": 4,
    "stuck": 2,  # running turn started long ago
    "stale": 4,  # active, no activity for hours
    "error": 2,  # active, state error
    "failed": 7,
    "cancelled": 5,
    "unknown": 8,
}
# The first sessions of every fleet: every kind, channel, status and state,
# the cost sources, a compaction and the hostile session, even at small sizes.
SHOWCASE = (
    ("koda", "cli", "claude-sonnet-4-5", "completed", {"compact": True, "today": True}),
    ("koda", "tui", "claude-opus-4-1", "running", {"today": True}),
    ("zeroclaw", "telegram", UNPRICED_MODEL, "stuck", {}),
    ("zeroclaw", "discord", "deepseek-chat", "stale", {"hostile": True}),
    ("zeroclaw", "slack", "claude-haiku-4-5", "failed", {}),
    ("appam", "cli", "o3", "cancelled", {"reports": True}),
    ("zeph", "acp", "claude-sonnet-4-5", "unknown", {}),
    ("koda", "cli", "gpt-5", "error", {}),
    ("appam", "", "gemini-2.5-pro", "idle", {"compact": True}),
    ("zeph", "acp", "gpt-5", "completed", {}),
    ("koda", "cli", "gemini-2.5-pro", "completed", {"today": True}),
)


class FleetLoaded(Exception):
    """The keys of this seed's fleet are already in the database."""


@dataclass
class SessionHead:
    """What a session is, drawn without its transcript."""

    index: int
    key: str
    agent: Agent
    channel: str
    model: str
    lifecycle: str
    created_at: datetime
    last_active_at: datetime
    fields: dict[str, Any]
    reports_cost: bool = False
    compact: bool = False
    hostile: bool = False


@dataclass
class SessionPlan:
    head: SessionHead
    messages: list[dict[str, Any]]
    compact_after: int = 0  # compact once this many messages are stored
    compact_keep: int = 0
    compact_at: datetime | None = None


@dataclass
class FleetSummary:
    seed: int
    sessions: int = 0
    messages: int = 0
    compacted: int = 0
    statuses: Counter = field(default_factory=Counter)

    def line(self) -> str:
        parts = ", ".join(f"{n} {status}" for status, n in sorted(self.statuses.items()))
        return (
            f"Created {self.sessions} demo sessions ({parts or 'none'}) with "
            f"{self.messages} messages, {self.compacted} compacted (seed {self.seed})."
        )


def _hex(rng: random.Random, bits: int = 96) -> str:
    return f"{rng.getrandbits(bits):0{bits // 4}x}"


def _uuid(rng: random.Random) -> str:
    h = _hex(rng, 128)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def _today_start(now: datetime) -> datetime:
    local = timezone.localtime(now)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def session_head(index: int, *, seed: int, now: datetime, days: int = 35) -> SessionHead:
    """Session ``index`` of the fleet of ``seed``: key, agent, lifecycle and times."""
    rng = random.Random(f"{seed}:{index}:head")
    extra: dict[str, Any] = {}
    if index < len(SHOWCASE):
        agent_name, channel, model, lifecycle, extra = SHOWCASE[index]
        agent = next(a for a in AGENTS if a.name == agent_name)
    else:
        agent = rng.choices(AGENTS, weights=_AGENT_WEIGHTS)[0]
        channel = rng.choice(agent.channels)
        model = rng.choice(agent.models)
        lifecycle = rng.choices(tuple(LIFECYCLES), weights=tuple(LIFECYCLES.values()))[0]

    minutes = 60.0
    if lifecycle in ("idle", "running", "error"):
        last = now - timedelta(seconds=rng.uniform(20, 20 * 60))
    elif lifecycle == "stuck":
        last = now - timedelta(minutes=rng.uniform(40, 6 * 60))
    elif lifecycle == "stale":
        last = now - timedelta(minutes=rng.uniform(60, 10 * 60))
    else:
        # More activity lately: ages skew towards now.
        age = max(30 * 60, days * 86400 * rng.random() ** 1.7)
        last = now - timedelta(seconds=age)
    if agent.kind == "autonomous":
        minutes = rng.uniform(20, 8 * 60)
    elif channel in ("telegram", "discord", "slack"):
        minutes = rng.uniform(30, 3 * 24 * 60)  # bot sessions live for days
    else:
        minutes = rng.uniform(3, 3 * 60)
    if extra.get("today"):
        # Created and active since midnight, even just after midnight.
        start = _today_start(now)
        since_midnight = (now - start).total_seconds()
        last = now - timedelta(seconds=rng.uniform(0, min(120, since_midnight / 2)))
        minutes = min(minutes, (last - start).total_seconds() * 0.9 / 60)
    earliest = now - timedelta(days=days)
    created = max(earliest, last - timedelta(minutes=minutes))
    if created >= last:
        created = last - timedelta(seconds=1)

    if agent.name == "zeroclaw":
        alias = rng.choice(_BOT_ALIASES)
        sender = str(rng.randrange(10**8, 10**9))
        key = f"{channel}_{sender}_{_hex(rng, 32)}"
        fields: dict[str, Any] = {
            "channel_ref": f"{channel}.{alias}",
            "room_id": f"{rng.randrange(10**17, 10**18)}"
            if channel == "discord"
            else f"C0{_hex(rng, 32).upper()}",
            "sender_id": sender,
            "name": f"{rng.choice(_PEOPLE)} on {channel}",
        }
    else:
        key = _uuid(rng)
        fields = {}
    if agent.kind == "autonomous":
        fields["goal_text"] = rng.choice(_GOALS)
        fields["name"] = fields["goal_text"].split(",")[0][:60]
    elif agent.name in ("koda", "zeph"):
        project = rng.choice(_PROJECTS)
        fields["project_root"] = project
        fields["name"] = f"{project.rsplit('/', 1)[-1]}: {rng.choice(_CODE_PROMPTS)[:48]}"
    fields.update(
        agent=agent.name, kind=agent.kind, channel=channel, model=model, created_at=created
    )
    if rng.random() < 0.3:
        fields["metadata"] = {
            "version": f"{agent.name} 0.{rng.randint(3, 12)}.{rng.randint(0, 9)}",
            "host": rng.choice(("devbox", "ci-runner-3", "mbp-dana", "k8s-worker-7")),
        }
        if agent.name == "koda":
            fields["metadata"]["git_branch"] = rng.choice(("main", "fix/billing", "feat/export"))
    if rng.random() < 0.2:
        fields["todo"] = "- [x] reproduce the failure\n- [x] write a test\n- [ ] fix and re-run CI"
    hostile = bool(extra.get("hostile"))
    if hostile:
        fields["name"] = f"{HOSTILE} hostile session"
        fields["todo"] = "- [ ] <script>alert('todo')</script>\n- [ ] javascript:alert(1)"
        fields["metadata"] = {"note": "<img src=x onerror=alert(1)>", "link": "javascript:alert(1)"}
        fields["channel_ref"] = "discord.<b>clamps</b>"
    compact = bool(extra.get("compact")) or (
        index >= len(SHOWCASE) and lifecycle not in ("running", "stuck") and rng.random() < 0.08
    )
    reports = bool(extra.get("reports")) or (
        model != UNPRICED_MODEL and rng.random() < agent.reports_cost
    )
    return SessionHead(
        index=index,
        key=key,
        agent=agent,
        channel=channel,
        model=model,
        lifecycle=lifecycle,
        created_at=created,
        last_active_at=last,
        fields=fields,
        reports_cost=reports,
        compact=compact,
        hostile=hostile,
    )


# --- messages -------------------------------------------------------------------


def _long_lines(rng: random.Random, low: int, high: int) -> str:
    lines = rng.choices(_CODE_LINES, k=rng.randint(low, high))
    return "\n".join(f"{n:4d}  {line}" for n, line in enumerate(lines, 1))


def _tool(rng: random.Random, name: str) -> tuple[dict[str, Any], str]:
    """Arguments and result of one call of tool ``name``."""
    path = rng.choice(_PATHS)
    if name == "read_file":
        return {"path": path}, _long_lines(rng, 20, 160)
    if name == "bash":
        failed = rng.random() < 0.3
        dots = "." * rng.randint(10, 60)
        tail = "1 failed, 41 passed in 2.31s" if failed else f"{len(dots)} passed in 1.07s"
        body = f"{dots}\n" + (_long_lines(rng, 10, 40) + "\nE   AssertionError\n" if failed else "")
        return {"command": f"pytest -q {path}", "timeout": 120}, f"{body}{tail}"
    if name == "grep":
        hits = rng.randint(0, 12)
        return {"pattern": "parse_created_at", "path": "src/"}, "\n".join(
            f"{rng.choice(_PATHS)}:{rng.randint(1, 400)}: {rng.choice(_CODE_LINES)}"
            for _ in range(hits)
        ) or "(no matches)"
    if name == "edit_file":
        return (
            {"path": path, "old_string": "status >= 400", "new_string": "status >= 500"},
            f"Applied 1 edit to {path}",
        )
    if name == "list_dir":
        return {"path": "."}, "\n".join(sorted(_PATHS))
    if name == "web_search":
        results = [
            {"title": f"Result {n}", "url": f"https://example.org/{_hex(rng, 24)}"}
            for n in range(rng.randint(2, 6))
        ]
        return {"query": rng.choice(_CHAT_PROMPTS)}, json.dumps(results, indent=2)
    if name == "fetch_url":
        words = rng.choices(_REPLIES, k=rng.randint(4, 30))
        return {"url": "https://example.org/blog/postgres-17"}, "\n\n".join(words)
    if name == "memory_recall":
        return {"query": "offsite decision"}, "2 memories: offsite on Thursday; Dana owns it."
    if name == "set_reminder":
        return {"when": "17:00", "text": "call the dentist"}, '{"ok": true, "id": 4211}'
    if name == "http_get":
        body = {"status": "ok", "items": [{"id": n, "state": "open"} for n in range(5)]}
        return {"url": "https://api.example.com/v1/issues?label=bug"}, json.dumps(body, indent=2)
    if name == "sql_query":
        rows = "\n".join(
            f"{rng.randint(1, 999):>5} | {rng.choice(_PEOPLE):<8} | {rng.uniform(1, 900):9.2f}"
            for _ in range(rng.randint(3, 40))
        )
        return {"sql": "SELECT id, owner, amount FROM invoices ORDER BY amount DESC"}, (
            f"   id | owner    |    amount\n------+----------+----------\n{rows}"
        )
    if name == "python":
        return {"code": "print(sum(range(10)))"}, "45"
    return {"path": "report.md", "content": "# Report\n..."}, f"wrote {rng.randint(1, 40)} KB"


def _usage(
    rng: random.Random, model: str, context: int, first: bool, reports: bool
) -> dict[str, Any]:
    prompt = context + rng.randint(1500, 9000)
    visible = rng.randint(30, 900)
    reasoning = int(visible * rng.uniform(0.3, 2.0)) if model in _REASONING_MODELS else 0
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": visible + reasoning,  # reasoning is a part of completion
        "reasoning_tokens": reasoning,
    }
    if model.startswith("claude"):
        if first:
            usage["cache_creation_tokens"] = int(prompt * 0.8)
        else:
            usage["cache_read_tokens"] = int(prompt * rng.uniform(0.6, 0.9))
            usage["cache_creation_tokens"] = min(
                prompt - usage["cache_read_tokens"], rng.randint(100, 3000)
            )
    elif model != UNPRICED_MODEL and not first:
        usage["cache_read_tokens"] = int(prompt * rng.uniform(0.3, 0.8)) // 128 * 128
    if reports:
        rate_in, rate_out = _REPORTED_PRICE.get(model, (1.0, 3.0))
        cost = (prompt * rate_in + usage["completion_tokens"] * rate_out) / 1e6
        usage["cost_usd"] = f"{cost * rng.uniform(0.8, 1.05):.6f}"
    return usage


def _arguments(model: str, arguments: dict[str, Any]) -> Any:
    # OpenAI-style clients send arguments as a JSON string, others as an object.
    return json.dumps(arguments) if model.startswith(("gpt", "o3")) else arguments


def _call_id(rng: random.Random, model: str) -> str:
    return f"call_{_hex(rng)}" if model.startswith(("gpt", "o3")) else f"toolu_01{_hex(rng)}"


class _Transcript:
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
        message["usage"] = _usage(rng, model, self.context, self.api_calls == 0, head.reports_cost)
        self.api_calls += 1
        if model.startswith("claude"):
            message["provider_response_id"] = f"msg_01{_hex(rng)}"
        elif model.startswith(("gpt", "o3")):
            message["provider_response_id"] = f"chatcmpl-{_hex(rng)}"
        if head.agent.kind == "autonomous":
            message["status"] = "complete"
        if model in _REASONING_MODELS and rng.random() < 0.6:
            message["reasoning"] = rng.choice(_REASONING)
        return self.add(message)

    def calls(self, model: str, agent_name: str, tools: tuple[str, ...]) -> None:
        """An assistant message with tool calls, then one result per call."""
        rng = self.rng
        calls, results = [], []
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            name = rng.choice(tools)
            arguments, result = _tool(rng, name)
            call_id = _call_id(rng, model)
            calls.append({"id": call_id, "name": name, "arguments": _arguments(model, arguments)})
            results.append((call_id, name, result))
        content = rng.choice((None, None, "Let me check.", "I'll look at the code first."))
        self.assistant(model=model, agent_name=agent_name, content=content, tool_calls=calls)
        for call_id, name, result in results:
            tool = {"role": "tool", "tool_call_id": call_id, "name": name, "content": result}
            if agent_name:
                tool["agent_name"] = agent_name
            self.add(tool)

    def delegate(self, sub_agent: str, sub_model: str) -> None:
        """The main agent hands a task to a sub-agent and gets its findings back."""
        rng, model = self.rng, self.head.model
        call_id = _call_id(rng, model)
        arguments = {"agent": sub_agent, "prompt": "Find every caller of parse_created_at."}
        self.assistant(
            model=model,
            tool_calls=[{"id": call_id, "name": "task", "arguments": _arguments(model, arguments)}],
        )
        self.calls(sub_model, sub_agent, ("grep", "read_file"))
        findings = self.assistant(
            model=sub_model, agent_name=sub_agent, content=rng.choice(_REPLIES).format(path="-")
        )
        self.add({"role": "tool", "tool_call_id": call_id, "name": "task", **_text(findings)})

    def turn(self) -> None:
        rng, head = self.rng, self.head
        user: dict[str, Any] = {"role": "user", "content": rng.choice(head.agent.prompts)}
        if head.channel in ("telegram", "discord", "slack"):
            user["name"] = rng.choice(_PEOPLE)
        self.add(user)
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            if head.agent.sub_agents and rng.random() < 0.25:
                self.delegate(*rng.choice(head.agent.sub_agents))
            else:
                self.calls(head.model, "", head.agent.tools)
        reply = rng.choice(_REPLIES).format(path=rng.choice(_PATHS))
        self.assistant(model=head.model, content=reply)

    def hostile_turn(self) -> None:
        model = self.head.model
        self.add({"role": "user", "name": "<b>mallory</b>", "content": f"{HOSTILE} please"})
        call_id = _call_id(self.rng, model)
        self.assistant(
            model=model,
            content="Rendering <img src=x onerror=alert(1)> now",
            reasoning="</details><script>alert('reasoning')</script>",
            tool_calls=[
                {
                    "id": call_id,
                    "name": "<script>alert('tool')</script>",
                    "arguments": {"html": "<img src=x onerror=alert(1)>"},
                }
            ],
        )
        self.add(
            {
                "role": "tool",
                "tool_call_id": call_id,
                "name": "fetch_url",
                "agent_name": "<svg onload=alert(1)>",
                "content": "<script>alert(document.cookie)</script>\n"
                "[click me](javascript:alert(1))\njavascript:alert(1)",
            }
        )
        self.assistant(model=model, content="[docs](javascript:alert(1)) and <b>bold</b>")


def _text(message: dict[str, Any]) -> dict[str, Any]:
    return {"content": message.get("content") or ""}


def build_messages(head: SessionHead, count: int, *, seed: int) -> list[dict[str, Any]]:
    """About ``count`` messages (whole turns: tool calls always with their results).

    A running session ends on its open turn: the user's message, or a tool
    call still waiting for its result.
    """
    rng = random.Random(f"{seed}:{head.index}:messages")
    transcript = _Transcript(rng, head)
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
        transcript.add({"role": "user", "content": rng.choice(head.agent.prompts)})
        if rng.random() < 0.5:
            model = head.model
            name = rng.choice(head.agent.tools)
            arguments, _ = _tool(rng, name)
            call = {"id": _call_id(rng, model), "name": name, "arguments": arguments}
            transcript.assistant(model=model, tool_calls=[call])
    return transcript.messages


_GAP = {"system": 0.01, "user": 20.0, "assistant": 1.0, "tool": 0.1}


def plan_session(
    index: int, *, seed: int, now: datetime, days: int = 35, messages_per_session: int = 24
) -> SessionPlan:
    """The whole session: head and timestamped messages, ready to write."""
    head = session_head(index, seed=seed, now=now, days=days)
    rng = random.Random(f"{seed}:{index}:count")
    count = messages_per_session
    if count > 0:
        count = rng.randint(max(1, count // 3), max(1, count * 5 // 3))
    if head.compact and count > 0:
        count = max(count, 16)
    messages = build_messages(head, count, seed=seed)
    # Timestamps from creation to last activity: people take a while to write,
    # models a few seconds, tools less; the last message is the last activity.
    gaps = [_GAP[m["role"]] * rng.expovariate(1.0) for m in messages]
    scale = (head.last_active_at - head.created_at).total_seconds() / (sum(gaps) or 1)
    elapsed = 0.0
    for message, gap in zip(messages, gaps, strict=True):
        elapsed += gap * scale
        message["created_at"] = head.created_at + timedelta(seconds=elapsed)
    if messages:
        messages[-1]["created_at"] = head.last_active_at
    plan = SessionPlan(head=head, messages=messages)
    if head.compact and len(messages) >= 8:
        plan.compact_after = len(messages) * 2 // 3
        plan.compact_keep = rng.randint(2, 5)
        before = messages[plan.compact_after - 1]["created_at"]
        after = messages[plan.compact_after]["created_at"]
        plan.compact_at = before + (after - before) / 2
    return plan


# --- writing --------------------------------------------------------------------


def _turn_fields(head: SessionHead, now: datetime) -> dict[str, Any]:
    if head.lifecycle in ("running", "stuck"):
        started = head.last_active_at - timedelta(seconds=5)
        return {"state": "running", "turn_id": f"turn-{head.index}", "turn_started_at": started}
    if head.lifecycle == "error":
        return {"state": "error"}
    return {}


def write_session(plan: SessionPlan, *, now: datetime) -> int:
    """Write one planned session through the services; returns messages stored."""
    head, messages = plan.head, plan.messages
    fields = {**head.fields, **_turn_fields(head, now)}
    stored = 0
    if not messages:
        services.session_upsert(key=head.key, fields=fields, now=head.last_active_at)
    elif plan.compact_after and plan.compact_at:
        first, rest = messages[: plan.compact_after], messages[plan.compact_after :]
        services.messages_append(
            key=head.key, messages=first, session=head.fields, now=first[-1]["created_at"]
        )
        summary = (
            f"Summary of the first {len(first)} messages: the user asked for a fix; "
            "the agent read the code, ran the tests and changed two files."
        )
        services.session_compact(
            key=head.key, summary=summary, keep=plan.compact_keep, now=plan.compact_at
        )
        services.messages_append(
            key=head.key, messages=rest, session=_turn_fields(head, now), now=head.last_active_at
        )
        stored += 1  # the summary
    else:
        services.messages_append(
            key=head.key, messages=messages, session=fields, now=head.last_active_at
        )
    stored += len(messages)
    if head.lifecycle in ("completed", "failed", "cancelled"):
        ended = head.last_active_at + timedelta(seconds=2)
        services.session_set_status(key=head.key, status=head.lifecycle, now=min(ended, now))
    return stored


def existing_keys(keys: list[str]) -> list[str]:
    """Keys already used by a session or a tombstone (another run with this seed)."""
    found: list[str] = []
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        found += Session.objects.filter(key__in=chunk).values_list("key", flat=True)
        found += Tombstone.objects.filter(key__in=chunk).values_list("key", flat=True)
    return found


def write_fleet(
    *,
    sessions: int,
    messages_per_session: int = 24,
    seed: int = 1,
    days: int = 35,
    now: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
    progress_every: int = 1000,
) -> FleetSummary:
    """Write a fleet of ``sessions`` sessions through ``sessions.services``.

    Sessions that end ``unknown`` are written first, still active; then each
    agent "restarts" and calls ``sessions_mark_unknown`` (sparing the active
    sessions the database already held), as real agents do at startup.
    """
    now = now or timezone.now()
    keys: list[str] = []
    unknown: list[int] = []
    agents: set[str] = set()
    for index in range(sessions):
        head = session_head(index, seed=seed, now=now, days=days)
        keys.append(head.key)
        if head.lifecycle == "unknown":
            unknown.append(index)
            agents.add(head.agent.name)
    taken = existing_keys(keys)
    if taken:
        raise FleetLoaded(f"the demo fleet of seed {seed} is already loaded (key {taken[0]!r})")
    spared = {
        agent: list(
            Session.objects.filter(agent=agent, status=Status.ACTIVE).values_list("key", flat=True)
        )
        for agent in sorted(agents)
    }
    chosen = set(unknown)
    order = unknown + [index for index in range(sessions) if index not in chosen]
    del keys, chosen
    summary = FleetSummary(seed=seed)
    for done, index in enumerate(order, 1):
        plan = plan_session(
            index, seed=seed, now=now, days=days, messages_per_session=messages_per_session
        )
        summary.messages += write_session(plan, now=now)
        summary.compacted += bool(plan.compact_after)
        summary.sessions += 1
        status = plan.head.lifecycle
        summary.statuses[status if status in Status.values else Status.ACTIVE] += 1
        if done == len(unknown):
            for agent in sorted(agents):
                services.sessions_mark_unknown(agent=agent, except_keys=spared[agent])
        if progress and (done % progress_every == 0 or done == len(order)):
            progress(done, len(order))
    return summary


def iter_messages(count: int, *, seed: int = 1, agent: str = "koda") -> Iterator[dict[str, Any]]:
    """``count`` demo-shaped messages of one long session (for benchmarks), no timestamps."""
    profile = next(a for a in AGENTS if a.name == agent)
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
        transcript = _Transcript(rng, head)
        while len(transcript.messages) < 200:
            transcript.turn()
        for message in transcript.messages[: count - produced]:
            message.pop("message_id", None)
            yield message
            produced += 1
        chunk += 1
