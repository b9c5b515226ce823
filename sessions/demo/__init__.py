"""A realistic demo fleet, written through ``sessions.services``.

The dashboard's demo (``manage.py demo_fleet``) and the benchmarks share this
generator. Everything is derived from ``(seed, index)``: session *i* of a seed
is the same whatever the fleet's size.

The fleet: ``koda`` (coding agent, CLI/TUI, project paths, sub-agents),
``zeroclaw`` (chat bots on Telegram/Discord/Slack, routing context, one on a
local model nobody can price), ``appam`` (autonomous workers with goals,
message ids, some reporting their own cost) and ``zeph`` (ACP editor agent
reporting cost). Statuses and states cover the dashboard's cases: completed,
active (idle, running, stuck, stale, error), failed, cancelled and unknown
(marked by ``sessions_mark_unknown``, the startup rule), with compacted
sessions and one session full of hostile markup.

- ``text``: what agents say (prompts, replies, tool results, usage), shared
  with the live simulator in ``fleet.simulator``;
- ``heads``: the agents and what each session is (key, lifecycle, times);
- ``transcript``: a session's messages, turn by turn;
- ``fleet``: planning sessions and writing the fleet through the services
  (``write_fleet``).

Nothing is imported here: ``text`` stays free of Django and the database, so
the simulator (and ``bench/ingest.py``) can use it without settings.
"""
