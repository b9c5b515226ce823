"""Run a simulated fleet: start the agents' threads, stop them, sum up."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fleet.simulator.agents import Behaviour, Pacer, SimAgent, Stats, agent_names
from fleet.simulator.client import ApiClient, ApiError


class SimulatorError(Exception):
    """The simulation cannot start: the server does not answer or refuses the key."""


@dataclass
class FleetReport:
    agents: int
    seconds: float
    stats: Stats

    def line(self) -> str:
        s = self.stats
        ended = ", ".join(f"{n} {status}" for status, n in sorted(s.ended.items())) or "none ended"
        return (
            f"Simulated {self.agents} agents for {self.seconds:.1f} s: {s.turns} turns, "
            f"{s.sessions} sessions started ({ended}), {s.crashes} crashes "
            f"({s.marked_unknown} sessions marked unknown), {s.compactions} compactions, "
            f"{s.messages} messages; {s.requests} requests ({s.retries} retried), "
            f"{s.errors} errors."
        )


def wait_ready(client: ApiClient, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for the API to answer; check the key on the way."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = client.send("GET", "/sessions?limit=1")
        except ApiError as exc:
            if time.monotonic() >= deadline:
                raise SimulatorError(f"the server does not answer: {exc.detail}") from None
            time.sleep(0.25)
            continue
        finally:
            client.close()
        if response.status == 200:
            return
        if response.status == 401:
            raise SimulatorError("the server refused the API key (401)")
        raise SimulatorError(f"GET {client.prefix}/sessions answered HTTP {response.status}")


def run_fleet(
    *,
    url: str,
    key: str,
    agents: int = 8,
    rate: float = 1.0,
    duration: float = 0.0,
    behaviour: Behaviour | None = None,
    seed: int | None = None,
    wait: float = 0.0,
    stop: threading.Event | None = None,
    log: Callable[[str], None] | None = None,
) -> FleetReport:
    """Run ``agents`` agents against the API at ``url`` until ``duration`` seconds
    pass (0: until ``stop`` is set or Ctrl-C). Agents stop between two requests."""
    wait_ready(ApiClient(url, key), wait)
    stop = stop or threading.Event()
    stats = Stats()
    seeder = random.Random(seed)  # noqa: S311 - a simulation, not a secret
    pacer = Pacer(rate, stop, random.Random(seeder.random()))  # noqa: S311
    fleet = [
        SimAgent(
            name,
            profile,
            ApiClient(url, key),
            pacer=pacer,
            stats=stats,
            behaviour=behaviour or Behaviour(),
            stop=stop,
            rng=random.Random(seeder.random()),  # noqa: S311
            log=log,
        )
        for name, profile in agent_names(agents)
    ]
    threads = [threading.Thread(target=a.run, name=a.name, daemon=True) for a in fleet]
    started = time.monotonic()
    deadline = started + duration if duration > 0 else None
    try:
        for thread in threads:
            thread.start()
        while not stop.is_set() and any(thread.is_alive() for thread in threads):
            left = deadline - time.monotonic() if deadline else 0.5
            if left <= 0:
                break
            stop.wait(min(left, 0.5))
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return FleetReport(agents=agents, seconds=time.monotonic() - started, stats=stats)
