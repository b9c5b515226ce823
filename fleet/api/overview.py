"""Fleet-wide endpoints: reconcile, keyword search, fleet totals, compaction stats."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Query, Router

from fleet.api.responses import (
    CompactionStatsOut,
    ErrorOut,
    FleetOut,
    MarkedOut,
    SearchOut,
    example_answer,
)
from fleet.api.schemas import ReconcileIn
from fleet.api.sessions import ERRORS, WRITE_ERRORS, key_scope
from fleet.snippets import snippet_marked
from sessions import selectors, services
from sessions.errors import InvalidInput
from sessions.fleet_stats import fleet_latency, fleet_totals
from sessions.inputs import clean_text
from sessions.shapes import fleet_json, jsonable, session_summary_json, timestamp

router = Router()

MAX_QUERY_CHARS = 500


@router.post(
    "/reconcile",
    response={200: MarkedOut, **WRITE_ERRORS},
    summary="Mark an agent's previous sessions as crashed",
)
def reconcile(request: HttpRequest, payload: ReconcileIn) -> dict:
    """Marks every `active` session of `agent` as `unknown` (presumed crashed), except
    the keys listed under `except`. An agent calls this when it starts: the sessions of
    its previous process died with it. Safe to repeat."""
    keys = payload.except_keys
    marked = services.sessions_mark_unknown(
        agent=payload.agent, except_keys=[] if keys is None else keys, scope=key_scope(request)
    )
    return {"marked": marked}


@router.get(
    "/search",
    response={200: SearchOut, **ERRORS},
    summary="Keyword search over message content",
)
def search(
    request: HttpRequest,
    q: str = Query(..., description="words to find (any of them)"),
    limit: int = Query(20, ge=1, le=100, description="most sessions to answer"),
) -> dict:
    """Sessions whose messages contain any of the words (at most 16 different words),
    best match first, each with snippets of the matching messages (`snippets`: matches
    wrapped in `**`; `hits`: plain text with the matched character ranges, and the
    message's seq). A snippet comes from the first 10 000 characters of its message."""
    from sessions import search as message_search

    query = clean_text(q, "q", max_length=MAX_QUERY_CHARS)
    if not query.strip():
        raise InvalidInput("must contain a word to search for", field="q")
    words = message_search.query_word_count(query)
    if words > message_search.MAX_TERMS:
        raise InvalidInput(
            f"must have at most {message_search.MAX_TERMS} different words, got {words}",
            field="q",
        )
    items = []
    agents = key_scope(request).agent_filter
    for result in message_search.search_messages(query, limit=limit, agents=agents):
        hits = []
        for hit in result.hits:
            hits.append(
                {
                    "seq": hit.seq,
                    "role": hit.role,
                    "created_at": timestamp(hit.created_at),
                    "text": hit.snippet.text,
                    "highlights": list(hit.snippet.highlights),
                    "archived": hit.archived,
                }
            )
        items.append(
            {
                "session": session_summary_json(result.session),
                "snippets": [snippet_marked(hit.snippet, "**", "**") for hit in result.hits],
                "hits": hits,
            }
        )
    return {"items": items}


@router.get(
    "/fleet",
    response={200: FleetOut, 401: ErrorOut, 429: ErrorOut},
    summary="Fleet totals (the dashboard's header numbers)",
)
def fleet(request: HttpRequest) -> dict:
    """Sessions by status, running, stuck (running longer than `stuck_after` seconds),
    stale (active, silent for `stale_after` seconds), started today; tokens and cost
    today, over the last 7 and 30 days and all time (UTC days, from the daily rollup, so
    purged sessions still count; `unpriced_calls` are calls with no known price, left
    out of `cost_usd`); and the burn rate: cost of the usage dated in the last hour (the
    current UTC minute and the 59 before it). `latency`, per period: p50/p95/p99, mean
    and count in milliseconds of the model calls and times to first token per model,
    the tool runs per tool name (slowest p95 first) and the turns, from the latency
    rollup (messages' `duration_ms`, turns from running to idle or error); a percentile
    is at most `bucket_ratio` times the exact one. A key scoped to agents sees only
    theirs."""
    agents = key_scope(request).agent_filter
    totals = dict(fleet_totals(agents=agents))
    totals["latency"] = fleet_latency(totals["generated_at"], agents=agents)
    return fleet_json(totals)


@router.get(
    "/compaction-stats",
    response={200: CompactionStatsOut, **ERRORS},
    summary="What compaction archived, fleet-wide",
    openapi_extra=example_answer(
        {
            "archived_messages": 5210,
            "sessions_with_archived": 37,
            "archived_bytes": 8812345,
            "oldest_archived_at": "2026-10-02T08:15:00Z",
            "newest_archived_at": "2026-11-21T09:59:12Z",
        }
    ),
)
def compaction_stats(request: HttpRequest) -> dict:
    """Messages archived by compaction and not yet purged: how many, in how many sessions,
    the UTF-8 bytes of their content, and when the oldest and newest were archived
    (koda's `compacted_stats`; times null when nothing is archived). A key scoped to
    agents counts only their sessions. The admin's message list shows the same numbers.
    One aggregate over the archived messages: `purge --compacted-older-than` keeps its
    cost bounded."""
    return jsonable(vars(selectors.compaction_stats(agents=key_scope(request).agent_filter)))
