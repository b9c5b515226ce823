"""Reconcile: presume dead the sessions whose agents stopped reporting.

Rules (``manage.py reconcile``):

* **stale** — an active session with no activity for ``stale_after``
  (``last_active_at`` at or before ``now - stale_after``) becomes ``unknown``
  (presumed crashed), its turn closed (state ``idle``), as the start-up rule
  does;
* **stuck** — of the stuck sessions (``SessionQuerySet.stuck``: a running
  turn started at or before ``now - stuck_after``, the rule the dashboard,
  ``/metrics`` and the API count), only those that have written nothing since
  the cut-off (``silent_since``) get state ``error``, keeping their turn id and
  start (which turn hung). A
  long turn whose agent keeps writing is alive, so it is not marked (though the
  dashboard counts it as stuck); a session that is stale as well is counted as
  stale only;
* **agent** — the start-up rule of the stores Fleet replaces: every active
  session of one agent except the keys it names becomes ``unknown``
  (its previous process died with them).

A running turn that a rule closes (stale and agent: outcome ``unknown``;
stuck: ``error``) is a finished turn like one its agent ends: a ``Turn`` row
and the latency rollup's ``turn`` count, its duration from its start to the
run's ``now``, written in the batch's transaction.

Candidates are read first, then marked in batches by a conditional
``UPDATE … WHERE id BETWEEN … AND <rule still holds>``: a session that an agent
wrote to after the cut-off no longer satisfies the rule when the ``UPDATE``
reaches it, so it is never marked, however the two race (appends lock the
session row and move ``last_active_at``; PostgreSQL re-checks the condition
on the newest row version, SQLite runs one writer at a time). Running twice
marks nothing the second time; two copies at once mark each session once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet
from django.dispatch import Signal
from django.utils import timezone

from sessions.choices import State, Status, TurnOutcome
from sessions.inputs import clean_key, clean_text
from sessions.models import Session
from sessions.ops.batches import (
    Clock,
    ItemCallback,
    ProgressCallback,
    batch_size,
    chunks,
    column,
    placeholders,
    sql_datetime,
    table,
)
from sessions.ops.durations import format_duration
from sessions.rollups import Rollup
from sessions.services.sessions import RUNNING_TURN_FIELDS, end_turns

# Sent by ``manage.py reconcile`` after a run that marked sessions (kwargs:
# ``result``, ``now``): the alerts app evaluates its crash and stuck rules then.
reconciled = Signal()

STALE = "stale"
STUCK = "stuck"
AGENT = "agent"


@dataclass
class ReconcileResult:
    """What a run marked (or, with ``dry_run``, would mark)."""

    dry_run: bool
    stale: int = 0
    stuck: int = 0
    agent: str = ""
    agent_marked: int = 0
    agent_kept: int = 0
    stale_after: str = ""
    stuck_after: str = ""
    seconds: float = 0.0

    @property
    def changed(self) -> int:
        return self.stale + self.stuck + self.agent_marked

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        verb = "Would mark" if self.dry_run else "Marked"
        if self.agent:
            kept = f" ({self.agent_kept} kept)" if self.agent_kept else ""
            return (
                f"{verb} {_plural(self.agent_marked, 'active session')} of agent "
                f"{self.agent!r} unknown{kept}."
            )
        return (
            f"{verb} {_plural(self.stale, 'stale session')} unknown "
            f"(silent for {self.stale_after}) and {_plural(self.stuck, 'stuck turn')} error "
            f"(running for {self.stuck_after})."
        )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _stuck(now: datetime, stuck_after: timedelta, stale_cutoff: datetime) -> QuerySet[Session]:
    """The shared stuck rule, narrowed to the silent turns reconcile marks."""
    return (
        Session.objects.stuck(now, older_than=stuck_after)
        .silent_since(now - stuck_after)
        # Stale sessions are marked unknown first; a dry run must not count them twice.
        .filter(last_active_at__gt=stale_cutoff)
    )


def _mark(
    ids: Sequence[int],
    *,
    assignments: dict[str, Any],
    conditions: list[tuple[str, str, Any]],
    size: int,
    kind: str,
    on_item: ItemCallback | None,
    on_progress: ProgressCallback | None,
    by_range: bool = True,
    ends_turns: str = "",
    now: datetime | None = None,
) -> int:
    """``UPDATE`` the sessions ``ids`` (sorted) that still meet ``conditions``, batch by batch.

    Each batch is one statement (its own transaction); when items are listed,
    ``RETURNING key`` says exactly which rows it changed (SQLite ≥ 3.35 and
    PostgreSQL). ``ends_turns``: the outcome (``TurnOutcome``) of the running
    turns the update closes, each recorded at ``now`` like a turn an agent
    ends (``services.end_turns``); the batch's running sessions are read and
    locked first, in the update's transaction, and only those may be marked
    while running (one that started a turn since is alive).
    """
    sets = ", ".join(f"{column(Session, name)} = %s" for name in assignments)
    where = " AND ".join(f"{column(Session, name)} {op} %s" for name, op, _ in conditions)
    params_tail = [value for _, _, value in conditions]
    marked = 0
    done = 0
    pk = column(Session, "id")
    returning = f" RETURNING {pk}, {column(Session, 'key')}" if on_item or ends_turns else ""
    for batch in chunks(ids, size):
        if by_range:
            # The id range of the batch's candidates: two parameters instead of
            # thousands and a range scan of the primary key. Other rows of the
            # range are updated only if the rule holds for them now, which is
            # what the rule asks.
            selection, selected = f"{pk} BETWEEN %s AND %s", [batch[0], batch[-1]]
            in_batch = Session.objects.filter(pk__range=(batch[0], batch[-1]))
        else:
            selection, selected = f"{pk} IN ({placeholders(len(batch))})", list(batch)
            in_batch = Session.objects.filter(pk__in=batch)
        with transaction.atomic():
            running: list[dict[str, Any]] = []
            guard, guarded = "", []
            if ends_turns:
                running = list(
                    in_batch.filter(state=State.RUNNING)
                    .select_for_update()
                    .order_by("id")
                    .values(*RUNNING_TURN_FIELDS)
                )
                locked = [row["id"] for row in running]
                state = column(Session, "state")
                listed = f" OR {pk} IN ({placeholders(len(locked))})" if locked else ""
                guard, guarded = f" AND ({state} <> %s{listed})", [State.RUNNING.value, *locked]
            sql = (
                f"UPDATE {table(Session)} SET {sets} "  # noqa: S608 - our names, values are params
                f"WHERE {selection} AND {where}{guard}{returning}"
            )
            with connection.cursor() as cursor:
                cursor.execute(sql, [*assignments.values(), *selected, *params_tail, *guarded])
                rows = cursor.fetchall() if returning else []
                count = len(rows) if returning else cursor.rowcount
            if ends_turns:
                ended = {row[0] for row in rows}
                rollup = Rollup()
                end_turns(
                    [row for row in running if row["id"] in ended],
                    ended_at=now or timezone.now(),
                    outcome=ends_turns,
                    rollup=rollup,
                )
                rollup.apply()
        marked += count
        if on_item:
            for _, key in rows:
                on_item(kind, key)
        done += len(batch)
        if on_progress:
            on_progress(kind, done, len(ids))
    return marked


def _count_or_list(qs: QuerySet[Session], kind: str, on_item: ItemCallback | None) -> int:
    """A dry run: how many rows the rule holds for now, listing their keys if asked."""
    if on_item is None:
        return qs.count()
    count = 0
    for key in qs.order_by("id").values_list("key", flat=True).iterator(chunk_size=2000):
        on_item(kind, key)
        count += 1
    return count


def _ids(qs: QuerySet[Session]) -> list[int]:
    return list(qs.order_by("id").values_list("id", flat=True))


_CLOSE_TURN = {"turn_id": "", "turn_started_at": None}


def reconcile_sessions(
    *,
    stale_after: timedelta,
    stuck_after: timedelta,
    now: datetime,
    dry_run: bool = False,
    size: int | None = None,
    on_item: ItemCallback | None = None,
    on_progress: ProgressCallback | None = None,
) -> ReconcileResult:
    """Mark stale sessions ``unknown``, then stuck turns ``error`` (see the module doc)."""
    if stale_after <= timedelta(0) or stuck_after <= timedelta(0):
        raise ValueError("stale_after and stuck_after must be longer than 0")
    size = batch_size(size)
    clock = Clock()
    result = ReconcileResult(
        dry_run=dry_run,
        stale_after=format_duration(stale_after),
        stuck_after=format_duration(stuck_after),
    )
    stale_cutoff = now - stale_after
    stuck_cutoff = now - stuck_after
    stale_qs = Session.objects.stale(now, older_than=stale_after)
    stuck_qs = _stuck(now, stuck_after, stale_cutoff)
    if dry_run:
        result.stale = _count_or_list(stale_qs, STALE, on_item)
        result.stuck = _count_or_list(stuck_qs, STUCK, on_item)
        result.seconds = clock.seconds
        return result

    result.stale = _mark(
        _ids(stale_qs),
        assignments={"status": Status.UNKNOWN.value, "state": State.IDLE.value, **_CLOSE_TURN},
        conditions=[
            ("status", "=", Status.ACTIVE.value),
            ("last_active_at", "<=", sql_datetime(stale_cutoff)),
        ],
        size=size,
        kind=STALE,
        ends_turns=TurnOutcome.UNKNOWN,
        now=now,
        on_item=on_item,
        on_progress=on_progress,
    )
    result.stuck = _mark(
        _ids(stuck_qs),
        # error keeps the turn that hung: its id and start say which one.
        assignments={"state": State.ERROR.value},
        conditions=[
            ("status", "=", Status.ACTIVE.value),
            ("state", "=", State.RUNNING.value),
            ("turn_started_at", "<=", sql_datetime(stuck_cutoff)),
            ("last_active_at", "<=", sql_datetime(stuck_cutoff)),
            ("last_active_at", ">", sql_datetime(stale_cutoff)),
        ],
        size=size,
        kind=STUCK,
        ends_turns=TurnOutcome.ERROR,
        now=now,
        on_item=on_item,
        on_progress=on_progress,
    )
    result.seconds = clock.seconds
    return result


def reconcile_agent(
    *,
    agent: str,
    except_keys: Sequence[str] = (),
    now: datetime,
    dry_run: bool = False,
    size: int | None = None,
    on_item: ItemCallback | None = None,
    on_progress: ProgressCallback | None = None,
) -> ReconcileResult:
    """Mark every active session of ``agent`` except ``except_keys`` as ``unknown``.

    Only sessions silent since ``now`` (the run's start) are marked: a session
    the agent's new process writes to while this runs is alive. Raises
    ``sessions.errors.InvalidInput`` for a blank agent or a malformed key.
    """
    from sessions.errors import InvalidInput

    agent = clean_text(agent, "agent")
    if not agent.strip():
        raise InvalidInput("must name the agent", field="agent")
    kept = {clean_key(key, f"except[{index}]") for index, key in enumerate(except_keys)}
    size = batch_size(size)
    clock = Clock()
    result = ReconcileResult(dry_run=dry_run, agent=agent)
    qs = Session.objects.filter(agent=agent, status=Status.ACTIVE, last_active_at__lte=now)
    # Filtered in Python: the list of kept keys can be longer than a query may carry.
    rows = list(qs.order_by("id").values_list("id", "key"))
    marked = [(pk, key) for pk, key in rows if key not in kept]
    result.agent_kept = len(rows) - len(marked)
    rows = marked
    if dry_run:
        result.agent_marked = len(rows)
        if on_item:
            for _, key in rows:
                on_item(AGENT, key)
        result.seconds = clock.seconds
        return result
    result.agent_marked = _mark(
        [pk for pk, _ in rows],
        assignments={"status": Status.UNKNOWN.value, "state": State.IDLE.value, **_CLOSE_TURN},
        conditions=[
            ("agent", "=", agent),
            ("status", "=", Status.ACTIVE.value),
            ("last_active_at", "<=", sql_datetime(now)),
        ],
        size=size,
        kind=AGENT,
        ends_turns=TurnOutcome.UNKNOWN,
        now=now,
        on_item=on_item,
        on_progress=on_progress,
        # The kept sessions lie among the marked ones: name the ids.
        by_range=False,
    )
    result.seconds = clock.seconds
    return result
