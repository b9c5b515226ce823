"""A live fleet simulator: agents (threads) that report to Fleet over its JSON API.

It drives the API over HTTP the way real agents do (see ``agents``), with the
standard library only, so it runs against any Fleet server:
``manage.py simulate_fleet --url URL --key KEY``. The ingest benchmark
(``bench/ingest.py``) uses its client and its messages.
"""

from __future__ import annotations

from fleet.simulator.agents import Behaviour
from fleet.simulator.client import ApiClient, ApiError
from fleet.simulator.content import PROFILES, Conversation
from fleet.simulator.runner import FleetReport, SimulatorError, run_fleet

__all__ = [
    "PROFILES",
    "ApiClient",
    "ApiError",
    "Behaviour",
    "Conversation",
    "FleetReport",
    "SimulatorError",
    "run_fleet",
]
