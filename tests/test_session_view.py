"""The session page (``/sessions/<key>/``): header, transcript, paging, live tail, actions."""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from sessions import errors, services
from sessions.models import Session, Tombstone
from tests.clock import Clock

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}
KEY = "team/bot-1"
URL = "/sessions/team/bot-1/"


def add(key: str = KEY, *messages: dict[str, Any], **fields: Any) -> None:
    services.messages_append(
        key=key,
        messages=list(messages) or [{"role": "user", "content": "hello"}],
        session={"agent": "alpha", "model": "gpt-4o", "channel": "cli", **fields},
    )


def conversation() -> None:
    add(
        KEY,
        {"role": "user", "content": "Please fix the bug"},
        {
            "role": "assistant",
            "reasoning": "I should grep first",
            "tool_calls": [
                {"id": "call-1", "name": "grep", "arguments": '{"pattern": "x", "path": "src"}'}
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "cost_usd": "0.01"},
        },
        {"role": "tool", "tool_call_id": "call-1", "content": "src/a.py:1: x"},
        {"role": "assistant", "content": "Fixed it", "agent_name": "helper"},
        name="Fix the bug",
        goal_text="Make the tests pass",
        project_root="/src/app",
        metadata={"branch": "main"},
        todo="- [x] grep\n- [ ] commit",
    )


def many(count: int, key: str = KEY) -> None:
    add(key, *({"role": "user", "content": f"message number {i}"} for i in range(1, count + 1)))


def seqs(html: str) -> list[int]:
    import re

    return [int(n) for n in re.findall(r'<article class="msg[^"]*" id="m-(\d+)"', html)]


# --- the page ------------------------------------------------------------------


def test_it_shows_every_session_field_and_the_totals(admin_client: Client) -> None:
    conversation()

    response = admin_client.get(URL)

    assert response.status_code == 200
    html = response.content.decode()
    for text in ("Fix the bug", "Make the tests pass", "/src/app", "gpt-4o", "alpha", "CLI"):
        assert text in html
    assert "<dt>branch</dt><dd>main</dd>" in html
    assert "- [x] grep\n- [ ] commit" in html
    assert "$0.01" in html
    assert response.context["session"].turns == 1


def test_it_shows_usage_by_agent(admin_client: Client) -> None:
    conversation()

    by_agent = admin_client.get(URL).context["by_agent"]

    assert [row["agent_name"] for row in by_agent] == ["helper", "main"]


def test_it_pairs_a_tool_call_with_its_result(admin_client: Client) -> None:
    conversation()

    html = admin_client.get(URL).content.decode()

    call = html[html.index('<div class="call">') :]
    call = call[: call.index("</article>")]
    assert '<span class="tool-name">grep</span>' in call
    assert 'id="m-3"' in call and "src/a.py:1: x" in call  # noqa: PT018
    # The result is shown once, inside its call, not again as its own message.
    assert html.count("src/a.py:1: x") == 1
    assert seqs(html) == [1, 2, 4]


def test_it_pretty_prints_tool_arguments(admin_client: Client) -> None:
    conversation()

    html = admin_client.get(URL).content.decode()

    assert (
        "{\n  &quot;pattern&quot;: &quot;x&quot;,\n  &quot;path&quot;: &quot;src&quot;\n}" in html
    )


def test_it_folds_reasoning(admin_client: Client) -> None:
    conversation()

    html = admin_client.get(URL).content.decode()

    reasoning = html[html.index('<details class="reasoning">') :]
    assert "I should grep first" in reasoning[: reasoning.index("</details>")]


def test_a_messages_metadata_is_folded_as_json_and_absent_without_any(
    admin_client: Client,
) -> None:
    add(
        KEY,
        {"role": "user", "content": "plain"},
        {
            "role": "assistant",
            "content": "answer",
            "tool_calls": [{"id": "c1", "name": "ls", "arguments": {}}],
            "metadata": {"trace": "t-1"},
        },
        {"role": "tool", "tool_call_id": "c1", "content": "a", "metadata": {"exit": 0}},
    )

    html = admin_client.get(URL).content.decode()

    folds = html.split('<details class="metadata">')[1:]
    assert len(folds) == 2  # the reply and its tool result; the plain message has none
    assert "{\n  &quot;trace&quot;: &quot;t-1&quot;\n}" in folds[0].split("</details>")[0]
    assert "&quot;exit&quot;: 0" in folds[1].split("</details>")[0]


def test_it_folds_long_text_and_clips_huge_text(admin_client: Client) -> None:
    long_text = "\n".join(f"line {i}" for i in range(100))
    add(KEY, {"role": "user", "content": long_text}, {"role": "user", "content": "y" * 150_000})

    html = admin_client.get(URL).content.decode()

    assert '<details class="more"><summary>82 more lines</summary>' in html
    assert "line 17<details" in html
    assert "</summary>line 18\n" in html
    assert "50,000 more characters are not shown" in html
    assert "y" * 150_000 not in html


def test_it_folds_archived_messages_behind_the_compaction_summary(admin_client: Client) -> None:
    conversation()
    services.session_compact(key=KEY, summary="They fixed the bug.", keep=1)

    html = admin_client.get(URL).content.decode()

    run = html[html.index('<div class="archived-run">') :]
    assert run.index("They fixed the bug.") < run.index('<details class="archived">')
    archived = run[run.index('<details class="archived">') :]
    assert "3 archived messages" in archived
    assert "Please fix the bug" in archived
    # The summary is shown once, in front of what it replaced.
    assert html.count("They fixed the bug.") == 1


def test_opening_at_an_archived_message_unfolds_it(admin_client: Client) -> None:
    conversation()
    services.session_compact(key=KEY, summary="Summary.", keep=1)

    html = admin_client.get(f"{URL}?at=1").content.decode()

    assert '<details class="archived" open>' in html
    assert 'class="msg role-user target" id="m-1"' in html


def test_it_shows_the_newest_page_first(admin_client: Client) -> None:
    many(120)

    html = admin_client.get(URL).content.decode()

    assert seqs(html) == list(range(71, 121))
    assert f'href="{URL}?before=71"' in html


def test_earlier_messages_load_as_a_fragment(admin_client: Client) -> None:
    many(120)

    first = admin_client.get(f"{URL}?before=71", **HX).content.decode()
    last = admin_client.get(f"{URL}?before=21", **HX).content.decode()

    assert "<html" not in first
    assert seqs(first) == list(range(21, 71))
    assert f'hx-get="{URL}?before=21"' in first
    assert seqs(last) == list(range(1, 21))
    assert "?before=" not in last


def test_earlier_messages_work_without_javascript(admin_client: Client) -> None:
    many(120)

    html = admin_client.get(f"{URL}?before=71").content.decode()

    assert "<html" in html
    assert seqs(html) == list(range(21, 71))
    assert f'href="{URL}?after=70"' in html  # and back to the later ones


def test_later_messages_end_in_the_live_tail(admin_client: Client) -> None:
    many(120)

    middle = admin_client.get(f"{URL}?after=20", **HX).content.decode()
    end = admin_client.get(f"{URL}?after=70", **HX).content.decode()

    assert seqs(middle) == list(range(21, 71))
    assert "?after=70" in middle
    assert seqs(end) == list(range(71, 121))
    assert f'hx-get="{URL}?tail=71&amp;v=' in end


def test_bad_transcript_parameters_show_the_newest_page(admin_client: Client) -> None:
    many(3)

    for query in (
        "before=abc",
        "after=-5",
        "at=0",
        "before=99999999999999",
        "tail=x&v=" + "z" * 99,
    ):
        response = admin_client.get(f"{URL}?{query}")
        assert response.status_code == 200, query
        assert seqs(response.content.decode()) == [1, 2, 3]


def test_an_unknown_key_is_a_404_page(admin_client: Client) -> None:
    response = admin_client.get("/sessions/nope/")

    assert response.status_code == 404
    assert b"No such session" in response.content


def test_a_deleted_key_says_it_was_deleted(admin_client: Client) -> None:
    add("gone")
    services.session_delete(key="gone")

    response = admin_client.get("/sessions/gone/")

    assert response.status_code == 410
    assert b"Session deleted" in response.content


def test_a_recreated_key_shows_its_new_session(admin_client: Client) -> None:
    add("gone")
    services.session_delete(key="gone")
    services.session_upsert(key="gone", fields={"name": "second life"}, recreate=True)

    response = admin_client.get("/sessions/gone/")

    assert response.status_code == 200
    assert b"second life" in response.content


def test_keys_with_odd_characters_resolve(admin_client: Client) -> None:
    add("a b?c#d%e/")

    response = admin_client.get("/sessions/a%20b%3Fc%23d%25e//")

    assert response.status_code == 200
    assert response.context["session"].key == "a b?c#d%e/"


DOT_KEYS = [".", "..", "a/./b", "a/../b", "x/..", "./x", "~.", "~~..", "a/~./b", ".../x", ".x/y."]


@pytest.mark.parametrize("key", DOT_KEYS)
def test_keys_with_dot_segments_survive_the_browser(admin_client: Client, key: str) -> None:
    """A browser drops "." and ".." path segments before it sends a request;
    the session URL escapes them, so every key opens its own page and its
    actions post back to it."""
    add(key)
    url = reverse("session", kwargs={"key": key})
    # What a browser would request for that link (RFC 3986 dot-segment removal).
    sent = urlsplit(urljoin("http://fleet.test/", url)).path
    assert sent == url

    response = admin_client.get(sent)
    assert response.status_code == 200
    assert response.context["session"].key == key
    assert f'action="{url}"' in response.content.decode()

    response = admin_client.post(sent, {"action": "completed"})
    assert response.status_code == 302
    assert Session.objects.get(key=key).status == "completed"


def test_keys_without_dot_segments_read_the_same_in_their_url() -> None:
    for key in ("team/bot-1", "a.b", "v1.2/x", "~", "~x/.~", "a..b"):
        assert reverse("session", kwargs={"key": key}) == f"/sessions/{key}/"


# --- live tail -------------------------------------------------------------------


def test_the_tail_poll_answers_204_until_the_session_changes(
    admin_client: Client, frozen: Clock
) -> None:
    many(3)
    page = admin_client.get(URL)
    version = page.context["version"]
    poll = f"{URL}?tail=1&v={version}"

    unchanged = admin_client.get(poll, **HX)
    frozen.advance(2)
    add(KEY, {"role": "assistant", "content": "a new answer"})
    changed = admin_client.get(poll, **HX)

    assert unchanged.status_code == 204
    assert changed.status_code == 200
    html = changed.content.decode()
    assert seqs(html) == [1, 2, 3, 4]
    assert "a new answer" in html
    # The header and the side panel follow out of band.
    assert '<section id="session-summary" class="session-summary panel" hx-swap-oob="true">' in html
    assert '<aside id="session-aside" class="session-aside" hx-swap-oob="true">' in html


def test_a_streaming_update_of_the_last_message_changes_the_tail(
    admin_client: Client, frozen: Clock
) -> None:
    add(KEY, {"role": "assistant", "content": "partial", "status": "streaming"})
    version = admin_client.get(URL).context["version"]
    frozen.advance(1)
    services.message_update_last(key=KEY, message={"content": "complete answer"})

    response = admin_client.get(f"{URL}?tail=1&v={version}", **HX)

    assert response.status_code == 200
    assert b"complete answer" in response.content


def test_an_ended_session_stops_polling(admin_client: Client) -> None:
    many(2)
    active = admin_client.get(URL).content.decode()
    services.session_set_status(key=KEY, status="completed")
    ended = admin_client.get(URL).content.decode()

    assert 'id="transcript-tail" hx-get=' in active
    assert 'data-poll="' in active
    assert 'data-poll="' not in ended


def test_a_poll_of_a_deleted_session_reloads_the_page(admin_client: Client) -> None:
    many(2)
    services.session_delete(key=KEY)

    response = admin_client.get(f"{URL}?tail=1&v=x", **HX)

    assert response["HX-Refresh"] == "true"


# --- actions ---------------------------------------------------------------------


def test_marking_completed_answers_with_the_updated_header(admin_client: Client) -> None:
    many(1)

    response = admin_client.post(URL, {"action": "completed"}, **HX)

    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="session-summary"')
    assert '<span class="badge status-completed">Completed</span>' in html
    session = Session.objects.get(key=KEY)
    assert session.status == "completed"
    assert session.ended_at is not None


def test_actions_work_without_javascript(admin_client: Client) -> None:
    many(1)

    response = admin_client.post(URL, {"action": "failed"}, follow=True)

    assert response.redirect_chain == [(URL, 302)]
    assert Session.objects.get(key=KEY).status == "failed"
    assert b"Marked" in response.content


def test_delete_tombstones_the_key_and_redirects_to_the_fleet(admin_client: Client) -> None:
    many(2)

    response = admin_client.post(URL, {"action": "delete"}, **HX)

    assert response["HX-Redirect"] == "/"
    assert not Session.objects.filter(key=KEY).exists()
    assert Tombstone.objects.filter(key=KEY).exists()
    assert b"tombstoned" in admin_client.get("/").content


def test_the_delete_asks_for_confirmation_first(admin_client: Client) -> None:
    many(1)

    html = admin_client.get(URL).content.decode()

    confirm = html[html.index('<details class="confirm">') :]
    assert confirm.index("<summary") < confirm.index('value="delete"')


def test_an_unknown_action_is_refused(admin_client: Client) -> None:
    many(1)

    response = admin_client.post(URL, {"action": "explode"})

    assert response.status_code == 400
    assert Session.objects.get(key=KEY).status == "active"


def test_an_action_on_a_missing_session_is_a_404(admin_client: Client) -> None:
    assert admin_client.post("/sessions/nope/", {"action": "completed"}).status_code == 404


def test_actions_need_a_csrf_token(admin_user: Any) -> None:
    many(1)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)

    response = client.post(URL, {"action": "cancelled"})

    assert response.status_code == 403
    assert Session.objects.get(key=KEY).status == "active"


def test_the_page_carries_the_csrf_token_for_htmx(admin_client: Client) -> None:
    many(1)

    response = admin_client.get(URL)

    token = response.context["csrf_token"]
    assert f'hx-headers=\'{{"X-CSRFToken": "{token}"}}\'' in response.content.decode()


# --- keys no session can have: a 400 page, never a server error -------------------

# As the URL carries them; the domain refuses each (sessions.inputs.clean_key).
INVALID_KEYS = {
    "blank": "%20",
    "too long": "a" * 300,
    "control character": "a%01b",
    "NUL": "%00",
}


@pytest.mark.parametrize("action", ["delete", "completed", "cancelled"])
@pytest.mark.parametrize("key", INVALID_KEYS.values(), ids=INVALID_KEYS.keys())
def test_an_action_on_an_invalid_key_is_a_400_page(
    admin_client: Client, key: str, action: str
) -> None:
    many(1)

    plain = admin_client.post(f"/sessions/{key}/", {"action": action})
    htmx = admin_client.post(f"/sessions/{key}/", {"action": action}, **HX)

    for response in (plain, htmx):
        assert response.status_code == 400
        assert "Not a session key" in response.content.decode()
    assert not Tombstone.objects.exists()
    assert Session.objects.get(key=KEY).status == "active"


@pytest.mark.parametrize(
    "query", ["", "?tail=1&v=x", "?before=3", "?after=0", "?at=1"], ids=["page", *"tbaa"]
)
@pytest.mark.parametrize("key", INVALID_KEYS.values(), ids=INVALID_KEYS.keys())
def test_the_page_of_an_invalid_key_is_a_400_page(
    admin_client: Client, key: str, query: str
) -> None:
    for headers in ({}, HX):
        response = admin_client.get(f"/sessions/{key}/{query}", **headers)

        assert response.status_code == 400
        assert "Not a session key" in response.content.decode()


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidInput("status: not today", field="status"), 400),
        (errors.Conflict("the session is busy"), 409),
    ],
)
def test_a_domain_error_from_an_action_is_a_page_with_its_status(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch, error: Exception, status: int
) -> None:
    """Whatever the services refuse is shown as a page, not a server error."""
    many(1)

    def refuse(**kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(services, "session_set_status", refuse)
    monkeypatch.setattr(services, "session_delete", refuse)

    for action in ("completed", "delete"):
        response = admin_client.post(URL, {"action": action})

        assert response.status_code == status
        assert 'class="notice-page"' in response.content.decode()
        assert str(error) in response.content.decode()


# --- who may act: exactly the admin's permissions -------------------------------

# Each user's permissions on sessions, and what the admin lets them do.
USERS = {
    "superuser": {"superuser": True},
    "staff_with_change": {"staff": True, "perms": ["view_session", "change_session"]},
    "staff_with_delete": {"staff": True, "perms": ["view_session", "delete_session"]},
    "staff_view_only": {"staff": True, "perms": ["view_session"]},
    "viewer_not_staff": {"staff": False, "perms": ["view_session"]},
}
MAY_CHANGE = {"superuser", "staff_with_change"}
MAY_DELETE = {"superuser", "staff_with_delete"}
STATUS_ACTIONS = {"completed": "completed", "cancelled": "cancelled", "failed": "failed"}


def login_as(client: Client, django_user_model: Any, who: str) -> Any:
    spec = USERS[who]
    if spec.get("superuser"):
        user = django_user_model.objects.create_superuser(who, password="pw-superuser-123")
    else:
        user = django_user_model.objects.create_user(
            who, password=f"pw-{who}-123", is_staff=spec["staff"]
        )
        user.user_permissions.add(
            *Permission.objects.filter(
                content_type__app_label="agent_sessions", codename__in=spec["perms"]
            )
        )
    client.force_login(user)
    return user


@pytest.mark.parametrize("who", USERS)
@pytest.mark.parametrize("action", [*STATUS_ACTIONS, "delete"])
def test_an_action_needs_the_permission_the_admin_needs(
    client: Client, django_user_model: Any, who: str, action: str
) -> None:
    many(1)
    login_as(client, django_user_model, who)
    allowed = who in (MAY_DELETE if action == "delete" else MAY_CHANGE)

    plain = client.post(URL, {"action": action})

    session = Session.objects.filter(key=KEY).first()
    if not allowed:
        assert plain.status_code == 403
        assert session is not None
        assert session.status == "active"
    elif action == "delete":
        assert plain.status_code == 302
        assert session is None
        assert Tombstone.objects.filter(key=KEY).exists()
    else:
        assert plain.status_code == 302
        assert session is not None
        assert session.status == STATUS_ACTIONS[action]


@pytest.mark.parametrize("who", USERS)
def test_an_htmx_action_is_refused_without_the_permission(
    client: Client, django_user_model: Any, who: str
) -> None:
    many(1)
    login_as(client, django_user_model, who)

    status = client.post(URL, {"action": "failed"}, **HX)
    delete = client.post(URL, {"action": "delete"}, **HX)

    assert (status.status_code == 403) == (who not in MAY_CHANGE)
    assert (delete.status_code == 403) == (who not in MAY_DELETE)


@pytest.mark.parametrize("who", USERS)
def test_only_the_buttons_the_user_may_use_are_shown(
    client: Client, django_user_model: Any, who: str
) -> None:
    many(1)
    login_as(client, django_user_model, who)

    html = client.get(URL).content.decode()

    for action in STATUS_ACTIONS:
        assert (f'name="action" value="{action}"' in html) == (who in MAY_CHANGE), action
    assert ('name="action" value="delete"' in html) == (who in MAY_DELETE)
    assert ("Delete…" in html) == (who in MAY_DELETE)
    if who not in MAY_CHANGE | MAY_DELETE:
        assert 'name="action"' not in html


def test_the_transcript_shows_each_calls_and_tool_runs_duration(admin_client: Client) -> None:
    add(
        KEY,
        {
            "role": "assistant",
            "content": "searching",
            "tool_calls": [{"id": "call-1", "name": "grep"}],
            "duration_ms": 2300,
            "time_to_first_token_ms": 450,
        },
        {"role": "tool", "tool_call_id": "call-1", "content": "found", "duration_ms": 850},
        {"role": "assistant", "content": "a long one", "duration_ms": 245_000},
        {"role": "assistant", "content": "untimed"},
    )

    page = admin_client.get(URL).content.decode()

    assert "⏱ 2.3 s" in page
    assert "first token after 450 ms" in page
    assert "⏱ 850 ms" in page
    assert "⏱ 4 min 5 s" in page
    assert page.count("⏱") == 3


def test_the_aside_lists_the_last_finished_turns_with_their_durations(
    admin_client: Client,
) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from fleet.views.session import SHOWN_TURNS

    start = timezone.now() - timedelta(hours=1)
    add(KEY)
    for index in range(SHOWN_TURNS + 2):
        at = start + timedelta(minutes=2 * index)
        services.session_upsert(key=KEY, fields={"state": "running"}, now=at)
        ended = at + timedelta(seconds=index + 1)
        state = "error" if index == SHOWN_TURNS + 1 else "idle"
        services.session_upsert(key=KEY, fields={"state": state}, now=ended)

    response = admin_client.get(URL)

    turns = response.context["finished_turns"]
    assert [t.duration_ms for t in turns] == [(n + 1) * 1000 for n in range(SHOWN_TURNS + 1, 1, -1)]
    page = response.content.decode()
    assert "12.0 s" in page
    assert '<span class="chip warn">error</span>' in page


def test_the_aside_lists_the_sessions_slowest_calls_linked_to_the_transcript(
    admin_client: Client,
) -> None:
    from fleet.views.session import SHOWN_SLOWEST

    add(
        KEY,
        {"role": "user", "content": "go"},
        *(
            {"role": "assistant", "content": f"a{n}", "duration_ms": 1000 + n, "model": "o3"}
            for n in range(SHOWN_SLOWEST + 2)
        ),
        {
            "role": "tool",
            "tool_call_id": "c1",
            "name": "bash",
            "content": "",
            "duration_ms": 65_000,
        },
    )

    response = admin_client.get(URL)

    slowest = response.context["slowest_calls"]
    assert len(slowest) == SHOWN_SLOWEST
    assert [m.duration_ms for m in slowest[:2]] == [65_000, 1000 + SHOWN_SLOWEST + 1]
    page = response.content.decode()
    assert "Slowest calls" in page
    tool_seq = SHOWN_SLOWEST + 4
    assert f'href="{URL}?at={tool_seq}#m-{tool_seq}"' in page
    assert "1 min 5 s" in page
    assert "bash" in page
