"""Simulated agents: each one a thread that reports its sessions over HTTP.

An agent behaves like a real one: at start it reconciles (the sessions of its
previous process died with it), then runs turns paced across the fleet. A
turn: the user's message, state ``running`` with a turn id, tool calls and
their results (sometimes handed to a sub-agent), the reply (streamed by
some agents: a placeholder, then update-last as text arrives), state
``idle`` (or ``error``). Sessions grow, get compacted, and end completed,
failed or cancelled. Now and then an agent crashes in the middle of a turn:
it stops writing, stays down a few seconds, and on restart calls
``/reconcile`` with the sessions it resumes, so the others become
``unknown``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleet.simulator.client import ApiClient, ApiError, session_path
from fleet.simulator.content import PROFILES, Conversation, Profile, session_fields

ENDINGS = {"completed": 75, "failed": 12, "cancelled": 13}


@dataclass(frozen=True)
class Behaviour:
    """How often things happen (per turn) and how long they take."""

    step_delay: float = 0.5  # mean pause between the steps of a turn (model and tool time)
    crash_chance: float = 0.02
    downtime: float = 3.0  # seconds a crashed agent stays down
    error_chance: float = 0.04  # the turn ends in state "error"
    delegate_chance: float = 0.2  # a tool step handed to a sub-agent
    compact_after: int = 40  # messages in context before the agent compacts
    compact_keep: int = 6
    stream_updates: int = 3  # update-last calls while a reply streams in
    patience: float = 30.0  # seconds to retry a request the server does not answer


class Stopped(Exception):
    """The simulation is over: the agent stops between two requests."""


class Crash(Exception):
    """The agent's process dies here: nothing more is written for this turn."""


@dataclass
class Stats:
    """Counts shared by the fleet's threads (under ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: int = 0
    retries: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    turns: int = 0
    messages: int = 0
    sessions: int = 0
    ended: Counter = field(default_factory=Counter)
    crashes: int = 0
    marked_unknown: int = 0
    compactions: int = 0

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def error(self, text: str) -> None:
        with self.lock:
            self.errors += 1
            if len(self.error_samples) < 10:
                self.error_samples.append(text[:500])


class Pacer:
    """Hands out turn start times so the whole fleet runs ``rate`` turns a second."""

    def __init__(self, rate: float, stop: threading.Event, rng: random.Random) -> None:
        self.rate = rate
        self.stop = stop
        self.rng = rng
        self.lock = threading.Lock()
        self.next = time.monotonic()

    def wait_turn(self) -> bool:
        """Wait for this agent's next turn; ``False`` when the simulation stops."""
        if self.rate <= 0:
            return not self.stop.is_set()
        with self.lock:
            now = time.monotonic()
            # Idle agents do not bank turns: the schedule never runs behind now.
            slot = max(self.next, now)
            self.next = slot + self.rng.expovariate(self.rate)
        return not self.stop.wait(max(0.0, slot - now))


@dataclass
class LiveSession:
    key: str
    conversation: Conversation
    turns: int = 0
    in_context: int = 0  # messages the context view holds (compaction resets it)


class SimAgent:
    """One agent process: its sessions, its connection, its turns."""

    def __init__(
        self,
        name: str,
        profile: Profile,
        client: ApiClient,
        *,
        pacer: Pacer,
        stats: Stats,
        behaviour: Behaviour,
        stop: threading.Event,
        rng: random.Random,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.profile = profile
        self.client = client
        self.pacer = pacer
        self.stats = stats
        self.behaviour = behaviour
        self.stop = stop
        self.rng = rng
        self.log = log or (lambda text: None)
        self.sessions: list[LiveSession] = []
        self.crash_in: int | None = None  # requests left before this turn's crash

    # --- plumbing -------------------------------------------------------------

    def run(self) -> None:
        try:
            self.reconcile(keep=[])  # a new process: its previous sessions died
            while self.pacer.wait_turn():
                session = self.pick_session()
                try:
                    self.turn(session)
                except Crash:
                    self.restart(crashed=session)
                except ApiError as exc:
                    # Already counted; this session is left as it is.
                    self.log(f"{self.name}: {exc}")
                    self.drop(session)
                finally:
                    self.crash_in = None  # a crash planned past the turn's end did not happen
        except (Stopped, ApiError):
            pass
        except Exception as exc:  # a bug in the simulator: report it, don't hide it
            self.stats.error(f"{self.name}: {type(exc).__name__}: {exc}")
        finally:
            self.client.close()

    def call(self, method: str, path: str, body: Any = None, *, expect: tuple[int, ...]) -> Any:
        if self.stop.is_set():
            raise Stopped
        if self.crash_in is not None:
            if self.crash_in == 0:
                self.crash_in = None
                raise Crash
            self.crash_in -= 1
        self.stats.add(requests=1)
        # No answer (the server is restarting, or stopping with us): retry with
        # backoff, as an agent does. Every write is safe to repeat: messages carry ids.
        give_up = time.monotonic() + self.behaviour.patience
        backoff = 0.25
        while True:
            try:
                return self.client.call(method, path, body, expect=expect)
            except ApiError as exc:
                if exc.status is not None or time.monotonic() + backoff > give_up:
                    self.stats.error(str(exc))
                    raise
            if self.stop.wait(backoff):
                raise Stopped
            self.stats.add(retries=1)
            backoff = min(backoff * 2, 5.0)

    def pause(self, mean: float) -> None:
        if mean > 0 and self.stop.wait(min(self.rng.expovariate(1 / mean), mean * 4)):
            raise Stopped

    def drop(self, session: LiveSession) -> None:
        if session in self.sessions:
            self.sessions.remove(session)

    # --- what an agent does ---------------------------------------------------

    def reconcile(self, *, keep: list[LiveSession]) -> None:
        body = {"agent": self.name, "except": [session.key for session in keep]}
        marked = self.call("POST", "/reconcile", body, expect=(200,))["marked"]
        self.stats.add(marked_unknown=marked)
        if marked:
            self.log(f"{self.name}: reconciled, {marked} session(s) marked unknown")

    def pick_session(self) -> LiveSession:
        open_ = self.sessions
        if not open_ or (len(open_) < self.profile.open_sessions and self.rng.random() < 0.3):
            return self.start_session()
        return self.rng.choice(open_)

    def start_session(self) -> LiveSession:
        model = self.rng.choice(self.profile.models)
        key, fields = session_fields(self.rng, self.profile, model)
        fields["agent"] = self.name
        self.call("PUT", session_path(key), fields, expect=(201,))
        session = LiveSession(key, Conversation(self.rng, self.profile, model))
        self.sessions.append(session)
        self.stats.add(sessions=1)
        return session

    def append(self, session: LiveSession, messages: list[dict[str, Any]], **fields: Any) -> None:
        body: dict[str, Any] = {"messages": messages}
        if fields:
            body["session"] = fields
        answer = self.call("POST", session_path(session.key, "/messages"), body, expect=(200,))
        session.in_context += answer["appended"]
        self.stats.add(messages=answer["appended"])

    def turn(self, session: LiveSession) -> None:
        rng, behaviour, conversation = self.rng, self.behaviour, session.conversation
        if rng.random() < behaviour.crash_chance:
            self.crash_in = rng.randint(0, 8)
        turn_id = f"turn-{rng.getrandbits(64):016x}"
        opening = [conversation.user()]
        if session.turns == 0 and self.profile.kind != "interactive":
            opening.insert(0, conversation.system())
        if self.profile.open_sessions > 1:
            # Chat bots say the turn started in the same request as the message.
            self.append(session, opening, state="running", turn_id=turn_id)
        else:
            self.append(session, opening)
            self.put_session(session, state="running", turn_id=turn_id)
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            self.pause(behaviour.step_delay)
            if self.profile.sub_agents and rng.random() < behaviour.delegate_chance:
                for group in conversation.delegation():
                    self.append(session, group)
                    self.pause(behaviour.step_delay / 2)
            else:
                self.append(session, conversation.tool_step())
        self.pause(behaviour.step_delay)
        if self.profile.streams:
            self.stream_reply(session)
        else:
            self.append(session, [conversation.reply()])
        ending: dict[str, Any] = {"state": "idle"}
        if rng.random() < behaviour.error_chance:
            ending = {"state": "error"}
        elif self.profile.name == "koda" and rng.random() < 0.2:
            ending["todo"] = "- [x] reproduce\n- [x] fix\n- [ ] re-run CI"
        self.put_session(session, **ending)
        session.turns += 1
        self.stats.add(turns=1)
        if session.in_context >= behaviour.compact_after:
            self.compact(session)
        if session.turns >= 2 and rng.random() < self.profile.end_chance:
            self.end(session)

    def stream_reply(self, session: LiveSession) -> None:
        """A placeholder, the text as it arrives, then the final text with its usage."""
        conversation = session.conversation
        self.append(session, [conversation.placeholder()])
        text = conversation.reply_text()
        path = session_path(session.key, "/messages/last")
        updates = self.behaviour.stream_updates
        for part in range(1, updates + 1):
            self.pause(self.behaviour.step_delay / 4)
            partial = text[: len(text) * part // (updates + 1)]
            self.call("PUT", path, {"message": {"content": partial}}, expect=(200,))
        final = {
            "content": text,
            "status": "complete",
            "usage": conversation.usage(conversation.model),
        }
        self.call("PUT", path, {"message": final}, expect=(200,))

    def put_session(self, session: LiveSession, **fields: Any) -> None:
        self.call("PUT", session_path(session.key), fields, expect=(200,))

    def compact(self, session: LiveSession) -> None:
        keep = self.behaviour.compact_keep
        summary = (
            f"Summary of the conversation so far ({session.turns} turns): the user asked for "
            "changes; the agent read the code, ran the tests and reported back."
        )
        body = {"summary": summary, "keep": keep}
        archived = self.call("POST", session_path(session.key, "/compact"), body, expect=(200,))
        session.in_context = min(session.in_context, keep) + 1
        if archived["archived"]:
            self.stats.add(compactions=1)

    def end(self, session: LiveSession) -> None:
        status = self.rng.choices(tuple(ENDINGS), weights=tuple(ENDINGS.values()))[0]
        fields: dict[str, Any] = {"status": status}
        if status == "failed":
            fields["state"] = "error"
        self.put_session(session, **fields)
        self.drop(session)
        with self.stats.lock:
            self.stats.ended[status] += 1

    def restart(self, *, crashed: LiveSession) -> None:
        """The process died mid-turn: stay down, then start again and reconcile."""
        self.stats.add(crashes=1)
        self.client.close()
        self.log(f"{self.name}: crashed in a turn of {crashed.key}")
        self.pause(self.behaviour.downtime)
        # A bot reloads its sessions from disk (not the one that died mid-turn);
        # a CLI agent starts afresh. Reconcile marks the rest unknown.
        resumed = [s for s in self.sessions if self.profile.resumes and s is not crashed]
        self.sessions = resumed
        self.reconcile(keep=resumed)


def agent_names(count: int) -> list[tuple[str, Profile]]:
    """``koda-1, zeroclaw-1, appam-1, zeph-1, koda-2, …``: unique names, as reconcile needs."""
    return [
        (
            f"{PROFILES[n % len(PROFILES)].name}-{n // len(PROFILES) + 1}",
            PROFILES[n % len(PROFILES)],
        )
        for n in range(count)
    ]
