"""Reprice: recompute the server-priced costs from the current price table.

``computed`` and ``unpriced`` messages are priced again exactly as an append
would price them today: by the admin's ``ModelPrice`` overrides (the one valid
at the message's time) or the genai-prices table, at the message's model (or
its session's). ``reported`` costs are the agent's word and are never touched.
A model that became priced turns its ``unpriced`` messages ``computed``.

Only the cost changes, so a message's move is ``cost_usd`` and
``unpriced_calls`` (its contribution to the totals, ``services.contribution``,
keeps every other counter); the session totals and the daily rollup move by
the difference in the same transaction as the messages. Work goes in batches
of messages: each batch locks its sessions first (the lock every write to a
session takes), then reads the messages' stored costs under the lock, so an
append or a correction racing the reprice never loses an update and a second
run (or a concurrent one) finds nothing left to change.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import connection, transaction
from django.db.models import Q

from sessions.choices import TOKEN_FIELDS, CostSource
from sessions.errors import InvalidInput
from sessions.models import Message, Session
from sessions.money import exact_usd, from_nanos, to_nanos
from sessions.ops.batches import (
    Clock,
    ItemCallback,
    ProgressCallback,
    batch_size,
    column,
    placeholders,
    table,
)
from sessions.pricing import PriceBook
from sessions.rollups import Rollup

REPRICEABLE = (CostSource.COMPUTED, CostSource.UNPRICED)
_FIELDS = (
    "id",
    "session_id",
    "seq",
    "model",
    "created_at",
    *TOKEN_FIELDS,
    "cost_usd",
    "cost_source",
)


@dataclass
class RepriceResult:
    """What a run changed (or, with ``dry_run``, would change)."""

    dry_run: bool
    checked: int = 0
    changed: int = 0
    sessions: int = 0
    newly_priced: int = 0
    newly_unpriced: int = 0
    cost_delta_usd: Decimal = Decimal(0)
    since: str = ""
    model: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cost_delta_usd"] = f"{from_nanos(to_nanos(self.cost_delta_usd)):f}"
        return data

    def line(self) -> str:
        verb = "Would reprice" if self.dry_run else "Repriced"
        delta = from_nanos(to_nanos(self.cost_delta_usd))
        sign = "+" if delta >= 0 else "-"
        return (
            f"{verb} {_plural(self.changed, 'message')} of {_plural(self.checked, 'checked')} "
            f"in {_plural(self.sessions, 'session')}: cost {sign}{exact_usd(abs(delta))}, "
            f"{self.newly_priced} newly priced, {self.newly_unpriced} newly unpriced; "
            "reported costs untouched."
        )


def _plural(count: int, noun: str) -> str:
    if noun == "checked":
        return f"{count} checked"
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _model_filter(model: str) -> Q:
    """Messages whose effective model (their own, else their session's) is ``model``."""
    return Q(model__iexact=model) | (Q(model="") & Q(session__model__iexact=model))


def check_model(model: str, prices: PriceBook) -> str:
    """``model`` stripped; raises ``InvalidInput`` when no message names it and no price
    (override or genai-prices) is known for it — most likely a typo."""
    model = (model or "").strip()
    if not model:
        raise InvalidInput("must name a model", field="model")
    if prices.rates(model) is not None:
        return model
    if (
        Message.objects.filter(model__iexact=model).exists()
        or Session.objects.filter(model__iexact=model).exists()
    ):
        return model
    known = sorted(
        {
            name
            for name in Message.objects.exclude(model="")
            .values_list("model", flat=True)
            .distinct()[:1000]
        }
    )[:20]
    hint = f"; models in the store include: {', '.join(known)}" if known else ""
    raise InvalidInput(
        f"unknown model {model!r}: no message names it and no price is known for it{hint}",
        field="model",
    )


def _candidates(since: datetime | None, model: str) -> Any:
    qs = Message.objects.filter(cost_source__in=REPRICEABLE)
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if model:
        qs = qs.filter(_model_filter(model))
    return qs


def _reprice_batch(
    ids: Sequence[int],
    session_ids: Sequence[int],
    prices: PriceBook,
    dry_run: bool,
    result: RepriceResult,
    touched: set[int],
    on_item: ItemCallback | None,
) -> None:
    with transaction.atomic():
        sessions = {
            s.pk: s
            for s in Session.objects.select_for_update()
            .filter(id__in=sorted(set(session_ids)))
            .order_by("id")
            .only(
                "id",
                "key",
                "agent",
                "model",
                "channel",
                "project_root",
                "cost_usd",
                "unpriced_calls",
            )
        }
        # Read under the locks: what is stored now, not what the page saw.
        rows = Message.objects.filter(id__in=ids, cost_source__in=REPRICEABLE).values_list(*_FIELDS)
        changes: list[tuple[int, int | None, str]] = []
        cost_delta: dict[int, int] = defaultdict(int)
        unpriced_delta: dict[int, int] = defaultdict(int)
        rollup = Rollup()
        for row in rows:
            values = dict(zip(_FIELDS, row, strict=True))
            session = sessions.get(values["session_id"])
            if session is None:
                continue
            result.checked += 1
            model = values["model"] or session.model
            try:
                cost, source = prices.price(
                    model=model,
                    at=values["created_at"],
                    prompt_tokens=values["prompt_tokens"],
                    completion_tokens=values["completion_tokens"],
                    cache_read_tokens=values["cache_read_tokens"],
                    cache_creation_tokens=values["cache_creation_tokens"],
                )
            except ValueError:
                continue  # a cost past the bound of money (sessions.bounds): left as it is
            old = to_nanos(values["cost_usd"]) if values["cost_usd"] is not None else None
            new = to_nanos(cost) if cost is not None else None
            if old == new and source == values["cost_source"]:
                continue
            changes.append((values["id"], new, source))
            moved = (new or 0) - (old or 0)
            unpriced = int(source == CostSource.UNPRICED) - int(
                values["cost_source"] == CostSource.UNPRICED
            )
            cost_delta[session.pk] += moved
            unpriced_delta[session.pk] += unpriced
            result.changed += 1
            result.cost_delta_usd += from_nanos(moved)
            result.newly_priced += int(unpriced < 0)
            result.newly_unpriced += int(unpriced > 0)
            touched.add(session.pk)
            rollup.add(
                at=values["created_at"],
                agent=session.agent,
                model=model,
                channel=session.channel,
                project=session.project_root,
                cost_usd=moved,
                unpriced_calls=unpriced,
            )
            if on_item:
                before = "unpriced" if old is None else f"${from_nanos(old)}"
                after = "unpriced" if new is None else f"${from_nanos(new)}"
                on_item("message", f"{session.key}#{values['seq']} {model}: {before} -> {after}")
        if dry_run or not changes:
            return
        _update_messages(changes)
        for pk, session in sessions.items():
            if pk not in cost_delta:
                continue
            nanos = max(0, to_nanos(session.cost_usd) + cost_delta[pk])
            session.cost_usd = from_nanos(nanos)
            session.unpriced_calls = max(0, session.unpriced_calls + unpriced_delta[pk])
            session.save(update_fields=["cost_usd", "unpriced_calls"])
        rollup.apply()


def _update_messages(changes: Sequence[tuple[int, int | None, str]]) -> None:
    """One ``UPDATE … CASE`` for the batch's changed messages."""
    pk = column(Message, "id")
    cost_cases = " ".join(f"WHEN {pk} = %s THEN %s" for _ in changes)
    source_cases = " ".join(f"WHEN {pk} = %s THEN %s" for _ in changes)
    params: list[Any] = []
    for message_id, nanos, _ in changes:
        params.extend([message_id, nanos])
    for message_id, _, source in changes:
        params.extend([message_id, str(source)])
    params.extend(message_id for message_id, _, _ in changes)
    cost_type = "BIGINT" if connection.vendor == "postgresql" else "INTEGER"
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table(Message)} SET "  # noqa: S608 - our names, values are params
            f"{column(Message, 'cost_usd')} = CAST(CASE {cost_cases} END AS {cost_type}), "
            f"{column(Message, 'cost_source')} = CASE {source_cases} END "
            f"WHERE {pk} IN ({placeholders(len(changes))})",
            params,
        )


def reprice(
    *,
    now: datetime,
    since: datetime | None = None,
    model: str = "",
    dry_run: bool = False,
    size: int | None = None,
    on_item: ItemCallback | None = None,
    on_progress: ProgressCallback | None = None,
) -> RepriceResult:
    """Price ``computed``/``unpriced`` messages again (created at or after ``since``,
    of ``model`` if given); totals and rollups follow. See the module doc.

    Raises ``InvalidInput`` for a ``since`` in the future or an unknown model.
    """
    if since is not None and since > now:
        raise InvalidInput(f"must not be in the future, got {since.isoformat()}", field="since")
    size = batch_size(size)
    clock = Clock()
    prices = PriceBook.load()
    if model:
        model = check_model(model, prices)
    result = RepriceResult(
        dry_run=dry_run, since=since.isoformat() if since else "", model=model or ""
    )
    qs = _candidates(since, model)
    total = qs.count() if on_progress else 0
    touched: set[int] = set()
    last = 0
    seen = 0
    while True:
        page = list(qs.filter(id__gt=last).order_by("id").values_list("id", "session_id")[:size])
        if not page:
            break
        last = page[-1][0]
        _reprice_batch(
            [pk for pk, _ in page],
            [session_id for _, session_id in page],
            prices,
            dry_run,
            result,
            touched,
            on_item,
        )
        seen += len(page)
        if on_progress:
            on_progress("messages", min(seen, total), total)
    result.sessions = len(touched)
    result.seconds = clock.seconds
    return result
