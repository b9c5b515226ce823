"""Search (``/search?q=``): sessions with highlighted, escaped snippets linking to messages."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from fleet.forms import SEARCH_MAX_LENGTH
from fleet.snippets import snippet_html, snippet_marked
from sessions import services
from sessions.errors import Conflict, FleetError, InvalidInput, SessionGone, SessionNotFound
from sessions.search import MAX_TERMS, Snippet

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def add(key: str, *contents: str, name: str = "") -> None:
    services.messages_append(
        key=key,
        messages=[{"role": "user", "content": text} for text in contents],
        session={"agent": "alpha", "name": name},
    )


def test_it_finds_sessions_and_highlights_the_words(admin_client: Client) -> None:
    add("k1", "nothing here", "the deploy failed on staging", name="Deploy bot")
    add("k2", "unrelated")

    response = admin_client.get("/search?q=deploy")

    assert response.status_code == 200
    html = response.content.decode()
    assert "Deploy bot" in html
    assert "the <mark>deploy</mark> failed on staging" in html
    assert 'href="/sessions/k2/"' not in html


def test_results_never_read_the_sessions_metadata_or_todo(admin_client: Client) -> None:
    services.messages_append(
        key="k1",
        messages=[{"role": "user", "content": "deploy it"}],
        session={"metadata": {"team": "core"}, "todo": "- [ ] tests"},
    )

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get("/search?q=deploy")

    assert 'href="/sessions/k1/' in response.content.decode()
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "agent_sessions_session" in sql
    assert '."metadata"' not in sql
    assert '."todo"' not in sql


def test_each_hit_links_to_its_message_in_the_transcript(admin_client: Client) -> None:
    add("team/k 1", "first", "second with needle")

    html = admin_client.get("/search?q=needle").content.decode()

    assert 'href="/sessions/team/k%201/?at=2#m-2"' in html
    page = admin_client.get("/sessions/team/k%201/?at=2")
    assert 'class="msg role-user target" id="m-2"' in page.content.decode()


def test_highlighting_never_unescapes_agent_text(admin_client: Client) -> None:
    add("x", "<script>alert('needle')</script> <img src=x onerror=alert(1)> needle")

    html = admin_client.get("/search?q=needle").content.decode()

    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(&#x27;<mark>needle</mark>&#x27;)&lt;/script&gt;" in html


def test_markup_inside_and_next_to_a_highlight_comes_out_escaped(admin_client: Client) -> None:
    add("x", "<script>needle</script><b>x</b>")

    html = admin_client.get("/search?q=script needle").content.decode()

    assert "<script>" not in html.split("<main", 1)[-1]
    assert (
        "&lt;<mark>script</mark>&gt;<mark>needle</mark>&lt;/<mark>script</mark>&gt;"
        "&lt;b&gt;x&lt;/b&gt;"
    ) in html


def test_snippet_html_escapes_every_piece_and_marks_the_ranges() -> None:
    snippet = Snippet("<i>needle</i> & more", ((1, 2), (3, 9)))

    assert snippet_html(snippet) == (
        "&lt;<mark>i</mark>&gt;<mark>needle</mark>&lt;/i&gt; &amp; more"
    )


def test_snippet_html_gives_every_character_once_whatever_the_ranges() -> None:
    snippet = Snippet("<a>bc", ((1, 2), (0, 3), (3, 3), (4, 99)))

    assert snippet_html(snippet) == "&lt;<mark>a</mark>&gt;b<mark>c</mark>"


def test_snippet_marked_wraps_the_ranges_for_the_api() -> None:
    snippet = Snippet("say hello <b>", ((4, 9),))

    assert snippet_marked(snippet) == "say **hello** <b>"
    assert snippet_marked(snippet, "[", "]") == "say [hello] <b>"


def test_an_htmx_search_answers_with_the_results_and_moves_the_address_bar(
    admin_client: Client,
) -> None:
    add("k1", "find me")

    response = admin_client.get("/search?q=find+me", **HX)

    assert b"<html" not in response.content
    assert response.content.lstrip().startswith(b'<section id="results"')
    assert response["HX-Push-Url"] == "/search?q=find+me"


def test_no_results_says_so(admin_client: Client) -> None:
    add("k1", "something")

    html = admin_client.get("/search?q=zebra").content.decode()

    assert "No messages contain “zebra”." in html


def test_an_empty_search_explains_itself(admin_client: Client) -> None:
    html = admin_client.get("/search").content.decode()

    assert "Find words in any message" in html


def test_an_over_long_search_is_a_form_error(admin_client: Client) -> None:
    response = admin_client.get("/search?q=" + "a" * (SEARCH_MAX_LENGTH + 1))

    assert response.status_code == 200
    assert response.context["results"] == []
    assert "at most 200 characters" in response.content.decode()


def test_a_search_with_too_many_words_uses_the_first_ones_and_says_so(
    admin_client: Client,
) -> None:
    add("k1", "first word here")
    add("k2", "last word here")
    words = ["first", *(f"w{index}" for index in range(MAX_TERMS - 1)), "last"]

    response = admin_client.get("/search", {"q": " ".join(words)})

    html = response.content.decode()
    assert f"Only the first {MAX_TERMS} different words were searched for" in html
    assert "<mark>first</mark>" in html
    assert "<mark>last</mark>" not in html


@pytest.mark.parametrize(
    "query",
    [
        '"unbalanced',
        "NEAR(a b",
        "a AND OR NOT b*",
        "col:value",
        "%00",
        "\\x00",
        "😀" * 50,
        "' OR 1=1 --",
        "<script>alert(1)</script>",
        "a" * 199,
        "&amp;&lt;",
    ],
)
def test_hostile_searches_never_fail(admin_client: Client, query: str) -> None:
    add("k1", "some text to search")

    response = admin_client.get("/search", {"q": query})

    assert response.status_code == 200
    assert b"<script>alert(1)</script>" not in response.content


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidInput("too many words", field="q"), 400),
        (Conflict("the index is rebuilding"), 409),
        (SessionNotFound("no such session"), 404),
        (SessionGone("the session was deleted"), 410),
    ],
)
def test_a_domain_error_from_the_search_is_a_page_with_its_status(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch, error: FleetError, status: int
) -> None:
    """A refusal from the search (a bound it enforces) is a page, not a server error."""

    def refuse(query: str, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr("fleet.views.search.search_messages", refuse)

    for headers in ({}, HX):
        response = admin_client.get("/search?q=needle", **headers)

        assert response.status_code == status
        assert error.message in response.content.decode()
