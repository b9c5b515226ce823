from __future__ import annotations

import dataclasses
import hashlib

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from sessions import search as search_module
from sessions import services
from sessions.models import Message, Session
from sessions.search import (
    MAX_TERMS,
    RANK_MAX_TOKENS,
    SNIPPET_SCAN_CHARS,
    SearchHit,
    SearchResult,
    Snippet,
    query_word_count,
    search_messages,
    search_terms,
)

pytestmark = pytest.mark.django_db


def append(key: str, *contents: str | None, role: str = "user") -> None:
    services.messages_append(
        key=key,
        messages=[{"role": role, "content": content} for content in contents],
        session={"agent": "tester"},
    )


def keys(results: list[SearchResult]) -> list[str]:
    return [result.session.key for result in results]


def marked(word: str) -> str:
    return f"[{word}]"


def shown(snippet: Snippet) -> str:
    """The snippet's text with each highlight in brackets (the tests' texts hold none)."""
    text, position, parts = snippet.text, 0, []
    for start, end in snippet.highlights:
        parts += [text[position:start], marked(text[start:end])]
        position = end
    return "".join([*parts, text[position:]])


def assert_index_in_sync() -> None:
    """SQLite: FTS5 compares its index with the message table and raises if they differ."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO agent_sessions_message_fts(agent_sessions_message_fts, rank) "
                "VALUES ('integrity-check', 1)"
            )


# --- matching and ranking ----------------------------------------------------


def test_it_finds_sessions_containing_any_of_the_words() -> None:
    append("deploys", "the deploy failed at midnight")
    append("rollbacks", "rollback done")
    append("other", "nothing to see")

    assert sorted(keys(search_messages("deploy rollback"))) == ["deploys", "rollbacks"]


def test_it_ignores_case() -> None:
    append("s", "Deploy finished")

    assert keys(search_messages("DEPLOY")) == ["s"]


def test_it_matches_whole_words_only() -> None:
    append("s", "deployment finished")

    assert search_messages("deploy") == []


def test_it_finds_words_inside_paths_and_dotted_names() -> None:
    append("paths", "edited sessions/search.py and called os.path.join on user@example.com")

    for word in ("search", "py", "join", "example"):
        assert keys(search_messages(word)) == ["paths"], word
    (hit,) = search_messages("search")[0].hits
    assert f"sessions/{marked('search')}.py" in shown(hit.snippet)


def test_it_finds_words_with_diacritics() -> None:
    append("s", "a naïve approach")

    assert keys(search_messages("naïve")) == ["s"]


def test_it_ranks_a_message_with_more_of_the_words_first() -> None:
    append("one-word", "apple pie is on the table today")
    append("both-words", "apple banana is on the table today")

    assert keys(search_messages("apple banana")) == ["both-words", "one-word"]


def test_a_message_of_more_than_rank_max_tokens_words_ranks_after_the_others() -> None:
    # Issue 10: bm25() walks every occurrence of every word in a message;
    # over 90 messages of 1.9 M characters that took seconds.
    for index in range(5):
        append(f"other{index}", "nothing relevant here")
    append("huge", "alpha bravo " * (RANK_MAX_TOKENS // 2 + 1))
    append("short", "alpha and some other words")

    assert keys(search_messages("alpha bravo")) == ["short", "huge"]
    assert keys(search_messages("bravo")) == ["huge"]


def test_it_orders_sessions_by_their_best_message() -> None:
    append("weak", "apple and many other unrelated words in this long rambling sentence here")
    append("strong", "unrelated", "apple banana")

    assert keys(search_messages("apple banana")) == ["strong", "weak"]


# --- result shape, limit, grouping -------------------------------------------


def test_it_returns_sessions_with_hits_describing_the_messages() -> None:
    append("s", "hello there", "general kenobi")
    message = Message.objects.get(session__key="s", seq=2)

    (result,) = search_messages("kenobi")

    assert isinstance(result, SearchResult)
    assert result.session == Session.objects.get(key="s")
    (hit,) = result.hits
    assert isinstance(hit, SearchHit)
    assert hit.message_pk == message.pk
    assert hit.seq == 2
    assert hit.role == "user"
    assert hit.created_at == message.created_at
    assert hit.archived is False
    assert hit.snippet == Snippet("general kenobi", ((8, 14),))
    with pytest.raises(dataclasses.FrozenInstanceError):
        hit.seq = 3  # type: ignore[misc]  # assigning a frozen field is what is tested


def test_it_marks_every_matched_word_in_the_snippet() -> None:
    append("s", "Apple pie and banana split")

    (result,) = search_messages("banana apple")

    assert shown(result.hits[0].snippet) == f"{marked('Apple')} pie and {marked('banana')} split"


def test_it_shortens_long_messages_around_the_match() -> None:
    words = [f"w{index}" for index in range(300)]
    words[150] = "needle"
    append("s", " ".join(words))

    snippet = shown(search_messages("needle")[0].hits[0].snippet)

    assert marked("needle") in snippet
    assert snippet.startswith("…")
    assert snippet.endswith("…")
    assert 10 <= len(snippet.split()) <= 25


def test_snippets_read_a_bounded_start_of_each_message(monkeypatch) -> None:
    # Issue 10: snippet() over 90 messages of 1.9 M characters took 3 s. Only
    # the start of a message is read for its snippet, whatever its size.
    read: list[int] = []
    real = search_module._snippet

    def spy(text: str, terms: list[str], **options: bool) -> Snippet:
        read.append(len(text))
        return real(text, terms, **options)

    monkeypatch.setattr(search_module, "_snippet", spy)
    append("huge", "needle " + "filler words " * 50_000)

    (result,) = search_messages("needle")

    assert read
    assert max(read) <= SNIPPET_SCAN_CHARS + 1
    assert shown(result.hits[0].snippet).startswith(f"{marked('needle')} filler words")


def test_a_snippet_window_cut_inside_a_character_reads_cleanly() -> None:
    # SQLite reads the start as UTF-8 bytes: the read may end inside an "é".
    append("s", "needle" + " é" * SNIPPET_SCAN_CHARS)

    snippet = shown(search_messages("needle")[0].hits[0].snippet)

    assert snippet == marked("needle") + " é" * 19 + "…"
    assert snippet.endswith("…")


def test_a_match_past_the_snippet_window_shows_the_start_unmarked() -> None:
    append("s", "opening words " + "filler " * SNIPPET_SCAN_CHARS + "needle")

    (result,) = search_messages("needle")

    snippet = result.hits[0].snippet
    assert snippet.text.startswith("opening words filler")
    assert snippet.text.endswith("…")
    assert snippet.highlights == ()


def test_snippets_highlight_words_folded_as_the_index_folds_them() -> None:
    append("s", "a Naïve approach")

    (result,) = search_messages("naïve")

    assert shown(result.hits[0].snippet) == f"a {marked('Naïve')} approach"


def test_marker_characters_in_agent_text_never_fake_a_match() -> None:
    # Issue 10: on SQLite \x02FAKE\x03 in content came out as a highlight.
    # Snippets were marked with these characters then; they are still left out.
    append("s", "\x02FAKE\x03 and the needle \x02x")

    (result,) = search_messages("needle")

    assert result.hits[0].snippet == Snippet("FAKE and the needle x", ((13, 19),))


def test_it_returns_at_most_limit_sessions() -> None:
    for index in range(5):
        append(f"s{index}", "common word")

    assert len(search_messages("common", limit=2)) == 2
    assert len(search_messages("common", limit=10)) == 5
    assert search_messages("common", limit=0) == []


def test_it_groups_hits_by_session_and_keeps_the_best_three() -> None:
    append("many", "match", "other", "match match", "match", "match", "match")
    append("few", "match")

    results = search_messages("match")

    assert sorted(keys(results)) == ["few", "many"]
    many = next(result for result in results if result.session.key == "many")
    assert len(many.hits) == 3
    assert len({hit.seq for hit in many.hits}) == 3
    assert 2 not in {hit.seq for hit in many.hits}


def test_it_searches_one_session_when_asked() -> None:
    append("a", "shared word")
    append("b", "shared word")

    results = search_messages("shared", session=Session.objects.get(key="b"))

    assert keys(results) == ["b"]


def test_it_finds_archived_messages() -> None:
    append("s", "old secret plan", "recent chatter", "latest chatter")
    services.session_compact(key="s", summary="a summary", keep=1)

    (result,) = search_messages("secret")

    (hit,) = result.hits
    assert hit.seq == 1
    assert hit.archived is True


def test_it_costs_the_same_number_of_queries_for_few_and_many_results(
    django_assert_max_num_queries,
) -> None:
    append("s0", "needle")
    with django_assert_max_num_queries(4):
        assert len(search_messages("needle")) == 1
    for index in range(1, 15):
        append(f"s{index}", "needle", "needle haystack", "needle")
    with django_assert_max_num_queries(4):
        results = search_messages("needle", limit=50)
    assert len(results) == 15
    assert sum(len(result.hits) for result in results) == 1 + 14 * 3


def test_it_stores_and_finds_a_huge_message_of_distinct_words() -> None:
    # Its tsvector would pass PostgreSQL's 1 MB limit if all of it were indexed.
    words = [hashlib.md5(str(index).encode()).hexdigest()[:12] for index in range(120_000)]  # noqa: S324
    append("huge", "findme " + " ".join(words))

    assert keys(search_messages("findme")) == ["huge"]


# --- queries typed by people -------------------------------------------------

HOSTILE_QUERIES = [
    "",
    "   ",
    '"',
    '"unbalanced',
    "*",
    "foo*",
    "-foo",
    "NEAR(a b)",
    "a AND OR NOT",
    "(((",
    ")",
    "'); DROP TABLE agent_sessions_message; --",
    "🔥🚀",
    "foo 🔥 bar",
    "x" * 10_000,
    "word " * 2_000,
    "foo\x00bar",
    "\\",
    "%s %(x)s %%",
    "col:foo",
    "^foo",
    "foo + bar",
    "{foo}",
    "a & b | !c <-> d",
    "\x02\x03",
]


@pytest.mark.parametrize("query", HOSTILE_QUERIES)
def test_a_query_typed_by_a_person_never_raises(query: str) -> None:
    append("s", "foo unbalanced near word bar", "drop table agent sessions message")

    results = search_messages(query)

    assert isinstance(results, list)
    assert Message.objects.count() == 2


@pytest.mark.parametrize(
    "query",
    ['"unbalanced', "-foo", "foo*", "NEAR(foo)", "(((foo", "foo\x00", "🔥foo🔥", "col:foo"],
)
def test_it_reads_query_syntax_as_plain_words(query: str) -> None:
    append("s", "foo unbalanced")
    append("other", "something else")

    assert keys(search_messages(query)) == ["s"]


def test_it_does_not_treat_not_as_an_operator() -> None:
    append("s", "foo bar")

    assert keys(search_messages("NOT foo")) == ["s"]


@pytest.mark.parametrize("query", ["", '"', "*", "(((", "🔥🚀", "x" * 10_000, None])
def test_a_query_without_words_finds_nothing(query: str | None) -> None:
    append("s", "x " * 10 + "🔥🚀")

    assert search_messages(query) == []


def test_search_terms_are_lowercased_deduplicated_and_capped() -> None:
    assert search_terms("Foo foo FOO bar") == ["foo", "bar"]
    assert search_terms("snake_case") == ["snake", "case"]
    assert search_terms(" ".join(f"w{index}" for index in range(100))) == [
        f"w{index}" for index in range(MAX_TERMS)
    ]
    assert search_terms("x" * 101 + " ok") == ["ok"]


def test_a_query_has_at_most_sixteen_words() -> None:
    # Issue 10: each word costs ranking and snippet work; 32 were too many.
    assert MAX_TERMS == 16
    assert query_word_count("a b A c " + " ".join(f"w{i}" for i in range(40))) == 43


# --- the index follows every write -------------------------------------------


def test_an_updated_message_matches_its_new_content_only() -> None:
    append("s", "placeholder alpha")
    services.message_update_last(key="s", message={"content": "final omega"})

    assert search_messages("alpha") == []
    assert keys(search_messages("omega")) == ["s"]
    assert_index_in_sync()


def test_a_message_without_content_can_gain_and_lose_it() -> None:
    services.messages_append(
        key="s",
        messages=[
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "name": "ls", "arguments": "{}"}],
            }
        ],
    )
    assert search_messages("gamma") == []

    services.message_update_last(key="s", message={"content": "gamma ray"})
    assert keys(search_messages("gamma")) == ["s"]

    services.message_update_last(key="s", message={"content": None})
    assert search_messages("gamma") == []
    assert_index_in_sync()

    services.message_remove_last(key="s")
    assert_index_in_sync()


def test_a_removed_last_message_no_longer_matches() -> None:
    append("s", "keep this", "remove that")
    services.message_remove_last(key="s")

    assert search_messages("remove") == []
    assert keys(search_messages("keep")) == ["s"]
    assert_index_in_sync()


def test_cleared_messages_no_longer_match() -> None:
    append("s", "cleared words")
    services.messages_clear(key="s")

    assert search_messages("cleared") == []
    assert_index_in_sync()


def test_a_deleted_session_no_longer_matches() -> None:
    append("gone", "vanishing words")
    append("kept", "vanishing words")
    services.session_delete(key="gone")

    assert keys(search_messages("vanishing")) == ["kept"]
    assert_index_in_sync()


def test_the_sqlite_triggers_survive_every_migration(sqlite_only: None) -> None:
    # A later migration that rebuilds the message table would drop them silently.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' "
            "AND tbl_name = 'agent_sessions_message' ORDER BY name"
        )
        names = [row[0] for row in cursor.fetchall()]
    assert names == [
        "agent_sessions_message_fts_ad",
        "agent_sessions_message_fts_ai",
        "agent_sessions_message_fts_au",
    ]


def test_the_postgres_query_uses_the_gin_index(postgres_only: None) -> None:
    append("s", "indexed words")
    with CaptureQueriesContext(connection) as queries:
        search_messages("indexed")
    ranking_sql = queries.captured_queries[0]["sql"]
    with connection.cursor() as cursor:
        # Only a bitmap scan is left, and only an index on the very expression
        # searched can answer it: a mismatch would fall back to a full scan.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(f"EXPLAIN {ranking_sql}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "message_search_vector_idx" in plan, plan


# --- highlights ----------------------------------------------------------------


def test_highlights_are_ranges_of_plain_text_the_domain_adds_no_markup() -> None:
    append("s", "<script>alert(1)</script> needle <b>")

    snippet = search_messages("needle script")[0].hits[0].snippet

    assert snippet.text == "<script>alert(1)</script> needle <b>"
    assert [snippet.text[start:end] for start, end in snippet.highlights] == [
        "script",
        "script",
        "needle",
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snippet.text = ""  # type: ignore[misc]


def test_a_fleet_wide_search_ranks_the_newest_matches(monkeypatch) -> None:
    monkeypatch.setattr("sessions.search.CANDIDATES", 3)
    for index in range(5):
        append(f"s{index}", f"deploy number {index}")

    found = keys(search_messages("deploy"))
    one_session = search_messages("deploy", session=Session.objects.get(key="s0"))

    assert sorted(found) == ["s2", "s3", "s4"]
    assert keys(one_session) == ["s0"]


def test_the_postgres_vector_maps_punctuation_as_migration_0006_did(postgres_only: None) -> None:
    """0015 swapped 0006's translate() for a faster regexp_replace: same vector."""
    import importlib

    migration = importlib.import_module("sessions.migrations.0016_search_vector_regexp")
    ascii_punctuation = "".join(chr(c) for c in range(33, 127) if not chr(c).isalnum())
    texts = [
        f"alpha{ascii_punctuation}beta",
        *(f"left{char}right" for char in ascii_punctuation),
        "sessions/search.py calls os.path.join — naïve café 東京 [x] {y} a\\b 'q' \"r\"",
        "tabs\tand\nnewlines\r\nand  spaces",
    ]
    for index, text in enumerate(texts):
        append(f"punct-{index}", text)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT content, search_vector::text, "  # noqa: S608 - the migration's SQL
            f"({migration.OLD_SEARCH_VECTOR})::text FROM agent_sessions_message"
        )
        rows = cursor.fetchall()
    assert len(rows) == len(texts)
    for content, stored, old in rows:
        assert stored == old, content
