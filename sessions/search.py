"""Keyword search over message content, the same results on SQLite and PostgreSQL.

The indexes come from migrations: an FTS5 table kept in sync by triggers on
SQLite (``0002_message_search``), a stored ``search_vector`` column with a GIN
index on PostgreSQL (``0006_message_search_vector``; 0002 indexed the
expression).

Rules this module protects:

* A query typed by a person never raises and is never parsed as a query
  language: only its words are used (Unicode letters and digits; quotes,
  ``*``, ``-``, ``NEAR``, ``AND``/``OR``, parentheses and emoji are plain
  text). Any word matches. A query without words finds nothing.
* Results are sessions ordered by their best-matching message, each with at
  most ``HITS_PER_SESSION`` hits; archived (compacted) messages are found too.
  The number of queries does not grow with the number of results.
* A snippet is plain text and the character ranges of its matched words
  (``Snippet``); it holds no markup. Callers render the ranges (the fleet
  app: ``<mark>`` on the page, ``**`` and ranges in the API), escaping the
  text for whatever format it goes into. The characters ``\x02`` and
  ``\x03`` (the markers snippets once carried) are removed from the text.
* One search's work is bounded, whatever the messages hold (issue 10): at
  most ``MAX_TERMS`` words, the newest ``CANDIDATES`` matches ranked
  fleet-wide, snippets cut from the first ``SNIPPET_SCAN_CHARS`` characters.

Differences between the databases (tokenisers): SQLite folds diacritics
(``naive`` finds ``naïve``), PostgreSQL does not; PostgreSQL indexes the first
``POSTGRES_INDEXED_CHARS`` characters of a message, SQLite all of it.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from django.db import connection
from django.db.models import Value
from django.db.models.functions import Coalesce, Substr

from sessions.models import Message, Session

ELLIPSIS = "…"

MAX_LIMIT = 100
HITS_PER_SESSION = 3
# Each word costs ranking work on every matching message; a query with more
# different words than this is refused by the API and cut by the dashboard.
MAX_TERMS = 16
# Longer "words" (a pasted blob) are not searched for.
MAX_TERM_CHARS = 100
# Only the start of a very long query is read for words.
MAX_QUERY_CHARS = 4000
SNIPPET_TOKENS = 20
# Messages of at least this many words are not ranked by relevance: they come
# after the others, newest first. bm25() walks every occurrence of every query
# word in a message (90 messages of 1.9 M characters took 0.6 s with 16 words,
# 3.6 s with 32). PostgreSQL has its own bound: its vectors hold the first
# 100 000 characters, at most 256 positions per word.
RANK_MAX_TOKENS = 4096
# A snippet is cut from the first this-many characters of its message, by
# ``_snippet`` on both databases: FTS5's snippet() (and ts_headline) re-read
# the whole message, which made a search over 90 messages of 1.9 M characters
# take 3 s. A message whose first match lies further in shows its start,
# unmarked.
SNIPPET_SCAN_CHARS = 10_000
# The best window is chosen among this many matches at most, within this
# many words from (a window's length before) the first match.
SNIPPET_MATCHES = 50
SNIPPET_SCAN_WORDS = 200
# Fleet-wide searches rank the newest this-many matching messages. Ranking
# every match of a common word costs time in proportion to the whole store;
# the newest matches are what an operator looks for, and finding them walks
# the index backwards and stops early.
CANDIDATES = 2000

# A word: letters and digits; everything else (punctuation, "_", emoji,
# query syntax) separates words, as the FTS5 unicode61 tokenizer does.
_WORD = re.compile(r"[^\W_]+")
# Snippets carried these as highlight markers until issue 11; API clients
# were promised snippets without them, so they are still left out.
_OLD_MARKERS = str.maketrans("", "", "\x02\x03")

SQLITE_FTS_TABLE = "agent_sessions_message_fts"

# PostgreSQL: migration 0006 stores each message's vector in this column
# (to_tsvector of the first 100 000 characters of its content, ASCII
# punctuation turned into spaces) under a GIN index.
POSTGRES_VECTOR = "m.search_vector"
POSTGRES_INDEXED_CHARS = 100_000


@dataclass(frozen=True)
class Snippet:
    """Plain text cut from a message, and the ``[start, end)`` character ranges
    of its matched words in ``text``: in order, never overlapping, never empty."""

    text: str
    highlights: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class SearchHit:
    """One matching message, with a snippet of it around its matches."""

    message_pk: int
    seq: int
    role: str
    snippet: Snippet
    created_at: datetime
    archived: bool


@dataclass(frozen=True)
class SearchResult:
    """A session with its best-matching messages, best first."""

    session: Session
    hits: list[SearchHit]


def _query_words(query: str | None) -> list[str]:
    """Every different word of a query, lower-cased, in order (not capped)."""
    if not isinstance(query, str):
        return []
    text = unicodedata.normalize("NFC", query[:MAX_QUERY_CHARS])
    words: dict[str, None] = {}
    for match in _WORD.finditer(text):
        word = match.group().lower()
        if len(word) <= MAX_TERM_CHARS:
            words[word] = None
    return list(words)


def search_terms(query: str | None) -> list[str]:
    """The words of a query typed by a person, lower-cased, deduplicated, capped.

    At most ``MAX_TERMS`` (the first ones). Never raises; a query without
    letters or digits gives ``[]``.
    """
    return _query_words(query)[:MAX_TERMS]


def query_word_count(query: str | None) -> int:
    """How many different words ``search_terms`` sees in ``query`` before capping."""
    return len(_query_words(query))


def search_messages(
    query: str | None,
    *,
    limit: int = 20,
    session: Session | None = None,
    agents: Sequence[str] | None = None,
) -> list[SearchResult]:
    """Sessions whose messages contain any word of ``query``, best match first.

    At most ``limit`` sessions (capped at ``MAX_LIMIT``), each with up to
    ``HITS_PER_SESSION`` hits; ``session`` restricts the search to one
    session, ``agents`` to those agents' sessions (an API key's scope).
    Archived messages are searched too. Never raises on the query.
    """
    terms = search_terms(query)
    limit = min(int(limit), MAX_LIMIT)
    if not terms or limit < 1 or (agents is not None and not agents):
        return []
    if connection.vendor == "postgresql":
        ranked = _postgres_ranked(terms, limit, session, agents)
    else:
        ranked = _sqlite_ranked(terms, limit, session, agents)
    if not ranked:
        return []
    # The ranking query also answers each hit's fields: on SQLite they are
    # stored after the content, so reading them walks a long message's
    # overflow pages (0.7 ms for 1.9 M characters); once is enough.
    ids = [row[0] for row in ranked]
    if connection.vendor == "postgresql":
        # PostgreSQL detoasts only this slice of each message.
        start = Substr(Coalesce("content", Value("")), 1, SNIPPET_SCAN_CHARS + 1)
        rows = Message.objects.filter(pk__in=ids).order_by().annotate(start=start)
        starts = dict(rows.values_list("pk", "start"))
    else:
        starts = _sqlite_starts(ids)
    fold = connection.vendor == "sqlite"
    snippets = {pk: _snippet(text, terms, fold=fold) for pk, text in starts.items()}
    # Results list sessions: their large fields (metadata, todo) are not read.
    owners = Session.objects.without_large_fields()
    if agents is not None:
        owners = owners.filter(agent__in=agents)
    sessions = owners.in_bulk({row[1] for row in ranked})
    results: list[SearchResult] = []
    by_session: dict[int, list[SearchHit]] = {}
    for message_pk, session_pk, seq, role, created_at, compacted_at in ranked:
        owner = sessions.get(session_pk)
        if owner is None:
            # Deleted between the queries.
            continue
        hit = SearchHit(
            message_pk=message_pk,
            seq=seq,
            role=role,
            snippet=snippets.get(message_pk, Snippet("")),
            created_at=_datetime(created_at),
            archived=compacted_at is not None,
        )
        if session_pk not in by_session:
            by_session[session_pk] = []
            results.append(SearchResult(session=owner, hits=by_session[session_pk]))
        by_session[session_pk].append(hit)
    return results


def _datetime(value: Any) -> datetime:
    """A datetime column read by raw SQL (untyped, as DB-API rows are), as the
    model field would read it: psycopg answers aware datetimes already."""
    if connection.vendor == "sqlite":
        # Stored as text; Django's converter parses it and attaches UTC. The
        # ignore: the method is on SQLite's DatabaseOperations, not the base class.
        return connection.ops.convert_datetimefield_value(value, None, connection)  # type: ignore[attr-defined]
    return value


# --- SQLite: FTS5 -------------------------------------------------------------


def _fts_query(terms: list[str]) -> str:
    # Each word as an FTS5 string: nothing in it is query syntax. Words hold
    # only letters and digits, so they contain no double quote to escape.
    return " OR ".join(f'"{term}"' for term in terms)


def _of_agents(agents: Sequence[str] | None) -> str:
    """SQL testing that a session id belongs to one of ``agents``, or ``""``."""
    if agents is None:
        return ""
    placeholders = ", ".join(["%s"] * len(agents))
    # Only placeholders are formatted in; the names are parameters.
    return f"IN (SELECT s.id FROM agent_sessions_session AS s WHERE s.agent IN ({placeholders}))"  # noqa: S608


def _sqlite_starts(ids: list[int]) -> dict[int, str]:
    """The first ``SNIPPET_SCAN_CHARS + 1`` characters of each message's content.

    SQL's substr() reads the whole value first (73 ms for 90 messages of
    1.9 M characters); incremental blob I/O reads only the bytes asked for.
    """
    connection.ensure_connection()
    raw = connection.connection
    size = 4 * (SNIPPET_SCAN_CHARS + 1)  # UTF-8: at most 4 bytes a character
    starts: dict[int, str] = {}
    for pk in ids:
        try:
            with raw.blobopen(Message._meta.db_table, "content", pk, readonly=True) as blob:
                data = blob.read(size)
        except sqlite3.Error:
            # NULL content, or deleted since the ranking.
            data = b""
        # A character cut at the end of the read is dropped.
        starts[pk] = data.decode("utf-8", errors="ignore")[: SNIPPET_SCAN_CHARS + 1]
    return starts


def _varint(value: int) -> bytes:
    """``value`` as SQLite's two-byte varint. Two-byte varints compare as blobs
    in numeric order; one-byte ones are smaller, longer ones larger."""
    if not 128 <= value < 16384:
        raise ValueError("only two-byte varints")
    return bytes([0x80 | (value >> 7), value & 0x7F])


def _sqlite_ranked(
    terms: list[str], limit: int, session: Session | None, agents: Sequence[str] | None = None
) -> list[tuple]:
    """(message pk, session pk) of the hits to show, best session first.

    bm25() is smaller (more negative) for better matches; a message of
    ``RANK_MAX_TOKENS`` words or more gets 0, after every ranked match. Its
    size comes from FTS5's ``_docsize`` table: one varint per row (a single
    indexed column), the number of tokens.
    """
    params: list[Any] = [_varint(RANK_MAX_TOKENS), _fts_query(terms), *(agents or ())]
    only_agents = ""
    if agents is not None:
        # Among the candidates: the newest matches of these agents, not the fleet's.
        of_agents = _of_agents(agents)
        only_agents = f"AND rowid IN (SELECT m.id FROM agent_sessions_message AS m WHERE m.session_id {of_agents})"  # noqa: S608, E501 -- placeholders only
    only_session = ""
    if session is not None:
        only_session = "WHERE m.session_id = %s"
        params.append(session.pk)
    params += [limit, HITS_PER_SESSION]
    newest = "" if session is not None else f"ORDER BY rowid DESC LIMIT {CANDIDATES}"
    sql = f"""
        WITH hits AS (
            SELECT rowid AS id, CASE WHEN (
                SELECT length(sz) = 1 OR (length(sz) = 2 AND sz < %s)
                FROM {SQLITE_FTS_TABLE}_docsize WHERE id = {SQLITE_FTS_TABLE}.rowid
            ) THEN bm25({SQLITE_FTS_TABLE}) ELSE 0.0 END AS rank
            FROM {SQLITE_FTS_TABLE}
            WHERE {SQLITE_FTS_TABLE} MATCH %s {only_agents}
            {newest}
        ), ranked AS (
            SELECT h.id, m.session_id, h.rank, m.seq, m.role, m.created_at, m.compacted_at,
                   ROW_NUMBER() OVER (
                       PARTITION BY m.session_id ORDER BY h.rank, h.id DESC
                   ) AS n
            FROM hits AS h JOIN agent_sessions_message AS m ON m.id = h.id
            {only_session}
        ), best AS (
            SELECT session_id, rank, id FROM ranked WHERE n = 1
            ORDER BY rank, id DESC LIMIT %s
        )
        SELECT r.id, r.session_id, r.seq, r.role, r.created_at, r.compacted_at
        FROM ranked AS r JOIN best AS b ON b.session_id = r.session_id
        WHERE r.n <= %s
        ORDER BY b.rank, b.id DESC, r.n
    """  # noqa: S608 -- only constants are formatted in; values are parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


# --- PostgreSQL: tsvector + GIN -----------------------------------------------


def _postgres_ranked(
    terms: list[str], limit: int, session: Session | None, agents: Sequence[str] | None = None
) -> list[tuple]:
    """(message pk, session pk) of the hits to show, best session first.

    Each word goes through ``plainto_tsquery`` (which has no syntax), and the
    queries are OR-ed with ``||``. ts_rank() is larger for better matches;
    normalisation 1 favours shorter messages, like bm25.
    """
    tsquery = " || ".join(["plainto_tsquery('simple'::regconfig, %s)"] * len(terms))
    params: list[Any] = [*terms, *terms]
    only_session = ""
    if session is not None:
        only_session = "AND m.session_id = %s"
        params.append(session.pk)
    only_agents = ""
    if agents is not None:
        only_agents = f"AND m.session_id {_of_agents(agents)}"
        params += agents
    params += [limit, HITS_PER_SESSION]
    newest = "" if session is not None else f"ORDER BY m.id DESC LIMIT {CANDIDATES}"
    # The tsquery is written out in the candidates' WHERE, not read from the
    # CTE: the planner must see the words to choose between the GIN index
    # (rare words) and walking the primary key backwards until it has the
    # newest matches (common words: ~10 ms against ~500 ms through the index).
    sql = f"""
        WITH q AS (SELECT {tsquery} AS query), candidates AS (
            SELECT m.id FROM agent_sessions_message AS m
            WHERE {POSTGRES_VECTOR} @@ ({tsquery}) {only_session} {only_agents}
            {newest}
        ), hits AS (
            SELECT m.id, m.session_id, ts_rank({POSTGRES_VECTOR}, q.query, 1) AS rank,
                   m.seq, m.role, m.created_at, m.compacted_at
            FROM candidates AS c JOIN agent_sessions_message AS m ON m.id = c.id, q
        ), ranked AS (
            SELECT id, session_id, rank, seq, role, created_at, compacted_at,
                   ROW_NUMBER() OVER (PARTITION BY session_id ORDER BY rank DESC, id DESC) AS n
            FROM hits
        ), best AS (
            SELECT session_id, rank, id FROM ranked WHERE n = 1
            ORDER BY rank DESC, id DESC LIMIT %s
        )
        SELECT r.id, r.session_id, r.seq, r.role, r.created_at, r.compacted_at
        FROM ranked AS r JOIN best AS b ON b.session_id = r.session_id
        WHERE r.n <= %s
        ORDER BY b.rank DESC, b.id DESC, r.n
    """  # noqa: S608 -- only constants are formatted in; values are parameters
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _fold(word: str) -> str:
    """``word`` as FTS5's ``unicode61 remove_diacritics 2`` compares it."""
    if word.isascii():
        return word.lower()
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return unicodedata.normalize(
        "NFC", "".join(c for c in decomposed if not unicodedata.combining(c))
    )


@lru_cache(maxsize=64)
def _terms_pattern(terms: tuple[str, ...]) -> re.Pattern[str]:
    """Any of ``terms`` as a whole word, ignoring case (longest first)."""
    alternatives = "|".join(re.escape(term) for term in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<![^\W_])(?:{alternatives})(?![^\W_])", re.IGNORECASE)


def _first_match(text: str, terms: list[str], wanted: set[str], key: Callable[[str], str]) -> int:
    """Where the first matching word of ``text`` starts, or -1.

    A regular expression finds it at C speed; words are compared one by one
    (as ``key`` folds them) only where it finds nothing in non-ASCII text.
    """
    found = _terms_pattern(tuple(terms)).search(text)
    if found:
        return found.start()
    if not text.isascii():
        for word in _WORD.finditer(text):
            if key(word.group()) in wanted:
                return word.start()
    return -1


def _snippet(text: str, terms: list[str], *, fold: bool = False) -> Snippet:
    """About ``SNIPPET_TOKENS`` words of ``text`` around its best matches, and
    where the matches are in it.

    Only the first ``SNIPPET_SCAN_CHARS`` characters of ``text`` are searched,
    and only ``SNIPPET_SCAN_WORDS`` words from its first match are split, so
    the cost does not grow with the message. ``fold`` compares words without
    their diacritics, as SQLite's index does. Used on both databases instead
    of FTS5's snippet() or ts_headline(): both re-read the whole message, and
    ts_headline's default parser does not see ``search`` in ``search.py``.
    """
    truncated = len(text) > SNIPPET_SCAN_CHARS
    text = text[:SNIPPET_SCAN_CHARS].translate(_OLD_MARKERS)
    key = _fold if fold else str.lower
    wanted = {key(term) for term in terms}
    first = _first_match(text, terms, wanted, key)
    # Split the words from a window's length before the first match: a short
    # text is shown whole, as FTS5's snippet() shows it.
    origin = 0
    if first > 0:
        back = max(0, first - 100 * SNIPPET_TOKENS)
        before = list(_WORD.finditer(text, back, first))
        if len(before) >= SNIPPET_TOKENS:
            origin = before[-SNIPPET_TOKENS].start()
        elif back > 0:
            origin = before[0].start() if before else first
    words: list[re.Match[str]] = []
    more = truncated
    for word in _WORD.finditer(text, origin):
        if len(words) == SNIPPET_SCAN_WORDS:
            more = True
            break
        words.append(word)
    if truncated and words and words[-1].end() == len(text):
        words.pop()  # perhaps cut in the middle
    if not words:
        return Snippet(text[:200])
    # Is the first split word the first word of the text?
    at_start = origin == 0 or not _WORD.search(text, 0, words[0].start())
    matched = [i for i, word in enumerate(words) if key(word.group()) in wanted]
    start = 0
    best_score = (-1, -1)
    for index in matched[:SNIPPET_MATCHES]:
        # A few words of context before the match, unless that runs past the end.
        window = max(0, min(index - 3, len(words) - SNIPPET_TOKENS))
        inside = matched[
            bisect_left(matched, window) : bisect_left(matched, window + SNIPPET_TOKENS)
        ]
        score = (len({key(words[i].group()) for i in inside}), len(inside))
        if score > best_score:
            best_score, start = score, window
    end = min(len(words), start + SNIPPET_TOKENS)
    parts = [ELLIPSIS] if start > 0 or not at_start else []
    length = len(parts[0]) if parts else 0
    position = 0 if start == 0 and at_start else words[start].start()
    highlights: list[tuple[int, int]] = []
    hits = set(matched)
    for i in range(start, end):
        word = words[i]
        between = text[position : word.start()]
        parts += [between, word.group()]
        length += len(between)
        if i in hits:
            highlights.append((length, length + len(word.group())))
        length += len(word.group())
        position = word.end()
    if end < len(words) or more:
        parts.append(ELLIPSIS)
    else:
        parts.append(text[position:])
    return Snippet("".join(parts), tuple(highlights))
