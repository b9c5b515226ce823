"""The admin: lists, filters, actions and edits go through the services; old data never crashes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from django import forms
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from sessions import services
from sessions.models import Budget, DailyUsage, Message, ModelPrice, Session, Tombstone

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SESSIONS_URL = "/admin/agent_sessions/session/"
MESSAGES_URL = "/admin/agent_sessions/message/"


def make_session(
    key: str, *, messages: int = 2, agent: str = "coder", model: str = "gpt-x", **fields: Any
) -> Session:
    """A session with alternating user/assistant messages; assistants report usage."""
    batch = []
    for index in range(messages):
        if index % 2 == 0:
            batch.append({"role": "user", "content": f"question {index} of {key}"})
        else:
            batch.append(
                {
                    "role": "assistant",
                    "content": f"answer {index} of {key}",
                    "usage": {
                        "prompt_tokens": 100,
                        "completion_tokens": 20,
                        "cost_usd": "0.001",
                    },
                }
            )
    services.messages_append(
        key=key,
        messages=batch,
        session={"agent": agent, "model": model, "channel": "cli", **fields},
        now=T0,
    )
    return Session.objects.get(key=key)


def changelist_keys(response: Any) -> list[str]:
    return [row.key for row in response.context["cl"].result_list]


def form_data(response: Any) -> dict[str, str]:
    """The change form's current values, as a browser would post them back."""
    form = response.context["adminform"].form
    data: dict[str, str] = {}
    for name, field in form.fields.items():
        value = form[name].value()
        assert not isinstance(field, forms.SplitDateTimeField), name
        data[name] = "" if value is None else str(value)
        if field.show_hidden_initial:
            # A field whose default is callable (metadata, tool_calls) posts its
            # initial value too: Django compares the two to see what changed.
            data[form.add_initial_prefix(name)] = str(field.prepare_value(form[name].initial))
    data["_save"] = "Save"
    return data


def rollup(**bucket: Any) -> DailyUsage:
    return DailyUsage.objects.get(day=T0.date(), **bucket)


# --- pages render -------------------------------------------------------------------


@pytest.fixture
def store() -> dict[str, Any]:
    session = make_session("s-1", messages=4)
    make_session("s-2", agent="writer", model="claude-y", messages=1)
    make_session("gone", messages=1)
    services.session_delete(key="gone")
    price = ModelPrice.objects.create(
        model_pattern="gpt-x*", input_per_mtok=Decimal(1), output_per_mtok=Decimal(2)
    )
    return {
        "session": session,
        "message": Message.objects.get(session=session, seq=2),
        "tombstone": Tombstone.objects.get(key="gone"),
        "rollup": DailyUsage.objects.first(),
        "price": price,
    }


@pytest.mark.parametrize(
    "model_name", ["session", "message", "tombstone", "dailyusage", "modelprice"]
)
def test_every_changelist_renders(
    admin_client: Client, store: dict[str, Any], model_name: str
) -> None:
    response = admin_client.get(f"/admin/agent_sessions/{model_name}/")
    assert response.status_code == 200
    assert response.context["cl"].result_count >= 1


@pytest.mark.parametrize(
    ("model_name", "item"),
    [
        ("session", "session"),
        ("message", "message"),
        ("tombstone", "tombstone"),
        ("dailyusage", "rollup"),
        ("modelprice", "price"),
    ],
)
def test_every_change_page_renders(
    admin_client: Client, store: dict[str, Any], model_name: str, item: str
) -> None:
    response = admin_client.get(f"/admin/agent_sessions/{model_name}/{store[item].pk}/change/")
    assert response.status_code == 200


def test_a_messages_change_page_shows_every_field_of_the_model(
    admin_client: Client, store: dict[str, Any]
) -> None:
    # The fieldsets lay out the known fields; any other field of the model is
    # added to them (MessageAdmin.get_fieldsets), so a new one is never hidden.
    message = store["message"]
    page = admin_client.get(f"{MESSAGES_URL}{message.pk}/change/").content.decode()

    for field in Message._meta.concrete_fields:
        if not field.primary_key:
            assert f"field-{field.name}" in page, field.name


def test_the_session_page_links_to_its_messages_instead_of_listing_them(
    admin_client: Client, store: dict[str, Any]
) -> None:
    session = store["session"]
    response = admin_client.get(f"{SESSIONS_URL}{session.pk}/change/")
    assert response.context["inline_admin_formsets"] == []
    assert f"{MESSAGES_URL}?session__id__exact={session.pk}" in response.text
    assert "answer 1 of s-1" not in response.text

    messages = admin_client.get(MESSAGES_URL, {"session__id__exact": session.pk})
    assert [m.seq for m in messages.context["cl"].result_list] == [1, 2, 3, 4]


def test_the_session_page_links_to_the_dashboard_transcript(
    admin_client: Client, store: dict[str, Any]
) -> None:
    session = store["session"]
    change = admin_client.get(f"{SESSIONS_URL}{session.pk}/change/")
    view_on_site = re.search(r'href="([^"]+)" class="viewsitelink"', change.text)
    assert view_on_site is not None

    response = admin_client.get(view_on_site.group(1), follow=True)
    assert response.redirect_chain[-1][0].endswith(f"/sessions/{session.key}/")
    assert response.context["session"] == session


def test_the_session_list_shows_unpriced_usage_beside_the_cost(admin_client: Client) -> None:
    services.messages_append(
        key="u",
        messages=[
            {"role": "assistant", "content": "a", "usage": {"cost_usd": "0.25"}},
            {"role": "assistant", "content": "b", "usage": {"cost_source": "unpriced"}},
        ],
    )
    response = admin_client.get(SESSIONS_URL)
    assert "$0.25 + 1 unpriced" in response.text


def test_message_content_is_escaped_in_the_list(admin_client: Client) -> None:
    services.messages_append(
        key="x", messages=[{"role": "user", "content": "<script>alert(1)</script>"}]
    )
    response = admin_client.get(MESSAGES_URL)
    assert "<script>alert(1)</script>" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text


# --- filters and search ------------------------------------------------------------------


def test_sessions_filter_by_status_agent_and_model(admin_client: Client) -> None:
    make_session("a", agent="coder", model="gpt-x")
    make_session("b", agent="writer", model="claude-y")
    services.session_set_status(key="b", status="completed")

    assert changelist_keys(admin_client.get(SESSIONS_URL, {"status__exact": "completed"})) == ["b"]
    assert changelist_keys(admin_client.get(SESSIONS_URL, {"agent": "coder"})) == ["a"]
    assert changelist_keys(admin_client.get(SESSIONS_URL, {"model": "claude-y"})) == ["b"]
    page = admin_client.get(SESSIONS_URL)
    assert "?agent=writer" in page.text
    assert "?model=gpt-x" in page.text


def test_session_filter_counts_are_shown_on_request(admin_client: Client) -> None:
    make_session("a", agent="coder")
    make_session("b", agent="coder")
    make_session("c", agent="writer")
    response = admin_client.get(SESSIONS_URL, {"_facets": "1"})
    assert response.status_code == 200
    assert "coder (2)" in response.text
    assert "writer (1)" in response.text


def test_sessions_search_by_key_name_agent_and_goal(admin_client: Client) -> None:
    make_session("alpha-key", name="nightly build")
    make_session("beta-key", agent="reviewer", goal_text="ship the release")

    assert changelist_keys(admin_client.get(SESSIONS_URL, {"q": "alpha"})) == ["alpha-key"]
    assert changelist_keys(admin_client.get(SESSIONS_URL, {"q": "nightly"})) == ["alpha-key"]
    assert changelist_keys(admin_client.get(SESSIONS_URL, {"q": "reviewer"})) == ["beta-key"]
    assert changelist_keys(admin_client.get(SESSIONS_URL, {"q": "release"})) == ["beta-key"]


def test_messages_filter_by_role_and_archived_and_search_content(admin_client: Client) -> None:
    make_session("m", messages=4)
    services.session_compact(key="m", summary="so far", keep=2)

    def seqs(**params: str) -> list[int]:
        return [m.seq for m in admin_client.get(MESSAGES_URL, params).context["cl"].result_list]

    assert seqs(role__exact="assistant") == [2, 4]
    assert seqs(archived="yes") == [1, 2]
    assert seqs(archived="no") == [3, 4, 5]
    assert seqs(q="answer 3") == [4]


# --- actions --------------------------------------------------------------------------


def test_mark_completed_ends_the_selected_sessions(admin_client: Client) -> None:
    first, second, other = make_session("a"), make_session("b"), make_session("c")
    response = admin_client.post(
        SESSIONS_URL,
        {"action": "mark_completed", ACTION_CHECKBOX_NAME: [first.pk, second.pk], "index": 0},
        follow=True,
    )
    statuses = dict(Session.objects.values_list("key", "status"))
    assert statuses == {"a": "completed", "b": "completed", "c": "active"}
    assert Session.objects.get(key="a").ended_at is not None
    assert "Marked 2 session(s) completed" in response.text
    assert other.status == "active"


@pytest.mark.parametrize("status", ["cancelled", "failed"])
def test_mark_cancelled_and_failed(admin_client: Client, status: str) -> None:
    session = make_session("a")
    admin_client.post(
        SESSIONS_URL,
        {"action": f"mark_{status}", ACTION_CHECKBOX_NAME: [session.pk], "index": 0},
    )
    assert Session.objects.get(key="a").status == status


def test_compact_asks_for_a_summary_then_archives(admin_client: Client) -> None:
    session = make_session("c", messages=6)
    make_session("untouched", messages=6)

    page = admin_client.post(
        SESSIONS_URL,
        {"action": "compact_sessions", ACTION_CHECKBOX_NAME: [session.pk], "index": 0},
    )
    assert page.status_code == 200
    assert "admin/agent_sessions/session/compact.html" in [t.name for t in page.templates]
    assert Message.objects.filter(compacted_at__isnull=False).count() == 0

    done = admin_client.post(
        SESSIONS_URL,
        {
            "action": "compact_sessions",
            ACTION_CHECKBOX_NAME: [session.pk],
            "select_across": "0",
            "apply": "yes",
            "summary": "what happened so far",
            "keep": "2",
        },
        follow=True,
    )
    assert "Compacted 1 session(s), archiving 4 message(s)" in done.text
    archived = Message.objects.filter(session=session, compacted_at__isnull=False)
    assert sorted(archived.values_list("seq", flat=True)) == [1, 2, 3, 4]
    summary = Message.objects.get(session=session, is_summary=True)
    assert summary.content == "what happened so far"
    assert not Message.objects.filter(session__key="untouched", compacted_at__isnull=False)


def test_compact_applies_to_every_filtered_session_when_all_are_selected(
    admin_client: Client,
) -> None:
    first = make_session("c1", agent="coder", messages=3)
    make_session("c2", agent="coder", messages=3)
    make_session("w", agent="writer", messages=3)
    admin_client.post(
        f"{SESSIONS_URL}?agent=coder",
        {
            "action": "compact_sessions",
            ACTION_CHECKBOX_NAME: [first.pk],
            "select_across": "1",
            "apply": "yes",
            "summary": "done",
            "keep": "0",
        },
    )
    archived = Message.objects.filter(compacted_at__isnull=False)
    assert set(archived.values_list("session__key", flat=True)) == {"c1", "c2"}
    assert archived.count() == 6


def test_compact_refuses_an_empty_summary_and_writes_nothing(admin_client: Client) -> None:
    session = make_session("c", messages=4)
    page = admin_client.post(
        SESSIONS_URL,
        {
            "action": "compact_sessions",
            ACTION_CHECKBOX_NAME: [session.pk],
            "select_across": "0",
            "apply": "yes",
            "summary": "   ",
            "keep": "-1",
        },
    )
    assert page.status_code == 200
    assert set(page.context["form"].errors) == {"summary", "keep"}
    assert Message.objects.filter(compacted_at__isnull=False).count() == 0
    assert Message.objects.count() == 4


def test_delete_selected_leaves_tombstones_and_removes_messages(admin_client: Client) -> None:
    doomed, kept = make_session("doomed", messages=3), make_session("kept")
    confirm = admin_client.post(
        SESSIONS_URL, {"action": "delete_selected", ACTION_CHECKBOX_NAME: [doomed.pk], "index": 0}
    )
    assert confirm.status_code == 200
    assert "3 messages" in confirm.text
    assert "question 0 of doomed" not in confirm.text

    admin_client.post(
        SESSIONS_URL,
        {"action": "delete_selected", ACTION_CHECKBOX_NAME: [doomed.pk], "post": "yes"},
    )
    assert list(Session.objects.values_list("key", flat=True)) == ["kept"]
    assert list(Tombstone.objects.values_list("key", flat=True)) == ["doomed"]
    assert not Message.objects.filter(session_id=doomed.pk).exists()
    assert Message.objects.filter(session=kept).count() == 2


def test_the_delete_view_leaves_a_tombstone(admin_client: Client) -> None:
    session = make_session("doomed", messages=3)
    url = f"{SESSIONS_URL}{session.pk}/delete/"
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not Session.objects.exists()
    assert Tombstone.objects.filter(key="doomed").exists()
    assert Message.objects.count() == 0


def test_messages_cannot_be_added_or_deleted_in_the_admin(admin_client: Client) -> None:
    session = make_session("m")
    message = Message.objects.get(session=session, seq=1)
    assert admin_client.get(f"{MESSAGES_URL}{message.pk}/delete/").status_code == 403
    assert admin_client.get(f"{MESSAGES_URL}add/").status_code == 403
    assert Message.objects.filter(pk=message.pk).exists()


# --- edits -------------------------------------------------------------------------------


def test_editing_a_messages_usage_moves_totals_and_rollup_by_the_difference(
    admin_client: Client,
) -> None:
    session = make_session("e", messages=4)
    message = Message.objects.get(session=session, seq=2)
    before_day = rollup(agent="coder", model="gpt-x", channel="cli")
    url = f"{MESSAGES_URL}{message.pk}/change/"
    data = form_data(admin_client.get(url))
    data.update(prompt_tokens="150", completion_tokens="50", cost_usd="0.0035")

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    after = Session.objects.get(pk=session.pk)
    assert after.prompt_tokens == session.prompt_tokens + 50
    assert after.completion_tokens == session.completion_tokens + 30
    assert after.cost_usd == session.cost_usd + Decimal("0.0025")
    assert after.api_calls == session.api_calls
    after_day = rollup(agent="coder", model="gpt-x", channel="cli")
    assert after_day.prompt_tokens == before_day.prompt_tokens + 50
    assert after_day.completion_tokens == before_day.completion_tokens + 30
    assert after_day.cost_usd == before_day.cost_usd + Decimal("0.0025")
    assert after_day.message_count == before_day.message_count


def test_editing_a_message_refuses_usage_that_breaks_the_token_rules(
    admin_client: Client,
) -> None:
    session = make_session("e", messages=2)
    message = Message.objects.get(session=session, seq=2)
    url = f"{MESSAGES_URL}{message.pk}/change/"
    data = form_data(admin_client.get(url))
    data.update(reasoning_tokens="999", tool_calls='[{"name": "no id"}]')

    response = admin_client.post(url, data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "tool_calls" in errors
    assert "__all__" in errors  # reasoning is a part of completion
    assert Session.objects.get(pk=session.pk).reasoning_tokens == 0


def test_editing_a_messages_duration_moves_the_latency_rollup(admin_client: Client) -> None:
    from sessions.latency import bucket_of
    from sessions.models import LatencyUsage

    session = make_session("e", messages=2)
    message = Message.objects.get(session=session, seq=2)
    url = f"{MESSAGES_URL}{message.pk}/change/"
    page = admin_client.get(url)
    assert 'name="duration_ms"' in page.content.decode()
    data = form_data(page)
    data.update(duration_ms="1500", time_to_first_token_ms="")

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Message.objects.get(pk=message.pk).duration_ms == 1500
    assert list(LatencyUsage.objects.values_list("kind", "bucket", "count")) == [
        ("call", bucket_of(1500), 1)
    ]


@pytest.mark.parametrize("value", ["-1", str(10**12)])
def test_a_duration_past_its_bounds_is_a_form_error_in_the_admin(
    admin_client: Client, value: str
) -> None:
    session = make_session("e", messages=2)
    message = Message.objects.get(session=session, seq=2)
    url = f"{MESSAGES_URL}{message.pk}/change/"
    data = form_data(admin_client.get(url))
    data.update(duration_ms=value)

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert "duration_ms" in response.context["adminform"].form.errors
    assert Message.objects.get(pk=message.pk).duration_ms is None


def test_a_messages_metadata_is_shown_escaped_and_can_be_edited(admin_client: Client) -> None:
    session = make_session("e", messages=2)
    message = Message.objects.get(session=session, seq=2)
    Message.objects.filter(pk=message.pk).update(metadata={"note": "<script>x</script>"})
    url = f"{MESSAGES_URL}{message.pk}/change/"
    page = admin_client.get(url)
    assert "<script>x</script>" not in page.content.decode()
    assert "&lt;script&gt;x&lt;/script&gt;" in page.content.decode()
    data = form_data(page)
    data.update(metadata=json.dumps({"note": "fixed", "steps": [1, 2]}))

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Message.objects.get(pk=message.pk).metadata == {"note": "fixed", "steps": [1, 2]}


@pytest.mark.parametrize(
    ("value", "said"),
    [("[1, 2]", "must be an object"), (json.dumps({"x": "y" * 200}), "at most 100")],
)
def test_a_messages_metadata_that_is_not_an_object_or_too_big_is_a_form_error(
    admin_client: Client, settings: Any, value: str, said: str
) -> None:
    settings.FLEET_MAX_METADATA_BYTES = 100
    session = make_session("e", messages=2)
    message = Message.objects.get(session=session, seq=2)
    url = f"{MESSAGES_URL}{message.pk}/change/"
    data = form_data(admin_client.get(url))
    data.update(metadata=value)

    response = admin_client.post(url, data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert said in str(errors["metadata"])
    assert Message.objects.get(pk=message.pk).metadata == {}


def test_an_emptied_messages_metadata_is_stored_as_an_empty_object(admin_client: Client) -> None:
    session = make_session("e", messages=2)
    message = Message.objects.get(session=session, seq=2)
    Message.objects.filter(pk=message.pk).update(metadata={"a": 1})
    url = f"{MESSAGES_URL}{message.pk}/change/"
    data = form_data(admin_client.get(url))
    data.update(metadata="")

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    assert Message.objects.get(pk=message.pk).metadata == {}


def test_editing_a_session_goes_through_the_upsert(admin_client: Client) -> None:
    session = make_session("s", metadata={"old": "1", "keep": "2"})
    url = f"{SESSIONS_URL}{session.pk}/change/"
    data = form_data(admin_client.get(url))
    data.update(name="renamed", status="completed", metadata=json.dumps({"keep": "2", "new": "3"}))
    # Totals are read-only: a posted value is ignored.
    data["turns"] = "999"

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    after = Session.objects.get(pk=session.pk)
    assert after.name == "renamed"
    assert after.status == "completed"
    assert after.ended_at is not None
    assert after.metadata == {"keep": "2", "new": "3"}
    assert after.turns == session.turns == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [("metadata", json.dumps({"keep": "1", "big": "x" * 200})), ("todo", "x" * 201)],
)
def test_an_edit_over_a_size_cap_is_a_form_error_and_writes_nothing(
    admin_client: Client, settings: Any, name: str, value: str
) -> None:
    settings.FLEET_MAX_METADATA_BYTES = 200
    settings.FLEET_MAX_TODO_CHARS = 200
    session = make_session("s", metadata={"keep": "1"}, todo="- [ ] x")
    url = f"{SESSIONS_URL}{session.pk}/change/"
    data = form_data(admin_client.get(url))
    data.update(name="renamed", metadata=json.dumps({"keep": "1"}))
    data[name] = value

    response = admin_client.post(url, data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert name in errors
    assert "at most 200" in str(errors[name])
    after = Session.objects.get(pk=session.pk)
    assert (after.name, after.metadata, after.todo) == ("", {"keep": "1"}, "- [ ] x")


def test_the_session_list_never_reads_metadata_or_todo(admin_client: Client) -> None:
    make_session("s", metadata={"team": "core"}, todo="- [ ] x")

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(SESSIONS_URL)

    assert changelist_keys(response) == ["s"]
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert '."metadata"' not in sql
    assert '."todo"' not in sql


def test_editing_a_session_refuses_a_turn_on_an_ended_session(admin_client: Client) -> None:
    session = make_session("s")
    services.session_set_status(key="s", status="completed")
    url = f"{SESSIONS_URL}{session.pk}/change/"
    data = form_data(admin_client.get(url))
    data["state"] = "running"

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert "state" in response.context["adminform"].form.errors
    assert Session.objects.get(pk=session.pk).state == "idle"


# --- old or imported values that are no longer valid ---------------------------------------


@pytest.fixture
def invalid_rows() -> tuple[Session, Message]:
    session = make_session("old", messages=2)
    Session.objects.filter(pk=session.pk).update(
        status="bogus", channel="irc", kind="weird", state="dozing", metadata=["a", "b"]
    )
    message = Message.objects.get(session=session, seq=2)
    Message.objects.filter(pk=message.pk).update(
        role="robot", tool_calls="not a list", cost_source="bogus"
    )
    return Session.objects.get(pk=session.pk), Message.objects.get(pk=message.pk)


def test_invalid_stored_values_render_in_lists_and_change_pages(
    admin_client: Client, invalid_rows: tuple[Session, Message]
) -> None:
    session, message = invalid_rows
    sessions = admin_client.get(SESSIONS_URL)
    assert sessions.status_code == 200
    assert "bogus (invalid)" in sessions.text
    assert "irc (invalid)" in sessions.text
    messages = admin_client.get(MESSAGES_URL)
    assert messages.status_code == 200
    assert "robot (invalid)" in messages.text

    session_page = admin_client.get(f"{SESSIONS_URL}{session.pk}/change/")
    assert session_page.status_code == 200
    assert "bogus (stored value, not valid: choose another)" in session_page.text
    message_page = admin_client.get(f"{MESSAGES_URL}{message.pk}/change/")
    assert message_page.status_code == 200
    assert "robot (stored value, not valid: choose another)" in message_page.text

    filtered = admin_client.get(SESSIONS_URL, {"status__exact": "bogus", "q": "old"})
    assert filtered.status_code == 200


def test_saving_keeps_refusing_an_invalid_stored_value_until_it_is_fixed(
    admin_client: Client, invalid_rows: tuple[Session, Message]
) -> None:
    session, _ = invalid_rows
    url = f"{SESSIONS_URL}{session.pk}/change/"
    data = form_data(admin_client.get(url))
    data["name"] = "edited"

    refused = admin_client.post(url, data)
    assert refused.status_code == 200
    assert {"status", "channel", "kind", "state"} <= set(refused.context["adminform"].form.errors)
    assert Session.objects.get(pk=session.pk).name == ""

    data.update(
        status="failed", channel="cli", kind="autonomous", state="idle", metadata='{"a": "b"}'
    )
    fixed = admin_client.post(url, data)
    assert fixed.status_code == 302, fixed.context["adminform"].form.errors
    after = Session.objects.get(pk=session.pk)
    assert (after.name, after.status, after.channel) == ("edited", "failed", "cli")
    assert after.metadata == {"a": "b"}


def test_an_invalid_message_can_be_corrected(
    admin_client: Client, invalid_rows: tuple[Session, Message]
) -> None:
    _, message = invalid_rows
    url = f"{MESSAGES_URL}{message.pk}/change/"
    data = form_data(admin_client.get(url))
    data.update(role="assistant", tool_calls="[]", cost_source="reported")

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    fixed = Message.objects.get(pk=message.pk)
    assert (fixed.role, fixed.tool_calls, fixed.cost_source) == ("assistant", [], "reported")


# --- query budgets ------------------------------------------------------------------------


def count_queries(client: Client, url: str, expected_rows: int) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) == expected_rows
    return len(queries)


def test_the_session_list_costs_the_same_queries_at_any_size(admin_client: Client) -> None:
    for index in range(5):
        make_session(f"small-{index}", agent=f"agent-{index}", model=f"model-{index}")
    small = count_queries(admin_client, SESSIONS_URL, 5)
    for index in range(55):
        make_session(f"big-{index}", agent=f"agent-{index}", model=f"model-{index}")
    big = count_queries(admin_client, SESSIONS_URL, 60)
    assert small == big


def test_the_message_list_costs_the_same_queries_at_any_size(admin_client: Client) -> None:
    for index in range(5):
        make_session(f"small-{index}", messages=1)
    small = count_queries(admin_client, MESSAGES_URL, 5)
    for index in range(11):
        make_session(f"big-{index}", messages=5)
    big = count_queries(admin_client, MESSAGES_URL, 60)
    assert small == big


# --- bounds -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("prompt_tokens", str(2**62)), ("cost_usd", "999999999.5")],
)
def test_a_correction_past_a_bound_is_a_form_error_and_writes_nothing(
    admin_client: Client, field: str, value: str
) -> None:
    services.session_upsert(key="s", fields={"cost_usd": "999999999"})
    services.messages_append(
        key="s",
        messages=[{"role": "assistant", "content": "x", "usage": {"cost_usd": "0.5"}}],
    )
    message = Message.objects.get()
    url = f"{MESSAGES_URL}{message.pk}/change/"
    data = form_data(admin_client.get(url))
    data.update({"prompt_tokens": "1", "completion_tokens": "1"})
    data[field] = value
    rollup = list(DailyUsage.objects.values())

    response = admin_client.post(url, data)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert Message.objects.get().cost_usd == Decimal("0.5")
    assert Message.objects.get().prompt_tokens == 0
    assert list(DailyUsage.objects.values()) == rollup


def test_failed_log_ins_and_lockouts_are_listed_for_the_admin(admin_client: Client) -> None:
    Client().post("/login/", {"username": "mallory", "password": "guess"})

    response = admin_client.get("/admin/axes/accessattempt/")

    assert response.status_code == 200
    assert "mallory" in response.content.decode()


@pytest.mark.parametrize("url", ["/admin/", SESSIONS_URL, "/admin/auth/user/add/"])
def test_every_admin_page_names_the_fleet_icon(admin_client: Client, url: str) -> None:
    """Else the browser asks /favicon.ico of each admin page."""
    response = admin_client.get(url)

    assert response.status_code == 200
    icons = re.findall(r'<link rel="icon" href="([^"]+)"', response.content.decode())
    assert len(icons) == 1
    assert re.fullmatch(r"/static/fleet/favicon(\.\w+)?\.svg", icons[0])


def test_the_message_list_shows_what_compaction_archived(admin_client: Client) -> None:
    make_session("a", messages=4)
    make_session("b", messages=2)
    services.session_compact(key="a", summary="short", keep=1, now=T0)

    response = admin_client.get(MESSAGES_URL)

    assert response.status_code == 200
    stats = response.context["compaction_stats"]
    assert (stats.archived_messages, stats.sessions_with_archived) == (3, 1)
    page = response.content.decode()
    assert "Archived by compaction: 3 messages in 1 session" in page
    assert "GET /api/v1/compaction-stats" in page


def test_the_message_list_says_when_nothing_is_archived(admin_client: Client) -> None:
    make_session("a")

    page = admin_client.get(MESSAGES_URL).content.decode()

    assert "Archived by compaction: nothing" in page


# --- budgets -----------------------------------------------------------------

BUDGETS_URL = "/admin/agent_sessions/budget/"


def budget_form(**fields: Any) -> dict[str, Any]:
    return {
        "name": "koda monthly",
        "period": "month",
        "amount_usd": "25",
        "warning_percent": "80",
        "agent": "",
        "model": "",
        "channel": "",
        "project": "",
        **fields,
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("agent", "ko\x01da"),
        ("model", "o3\x7f"),
        ("channel", "fax"),
        ("project", "/src\x07app"),
        ("amount_usd", "0"),
        ("amount_usd", "1000000000"),
        ("warning_percent", "101"),
    ],
)
def test_a_budget_no_usage_can_match_or_out_of_bounds_is_a_form_error(
    admin_client: Client, field: str, value: str
) -> None:
    response = admin_client.post(f"{BUDGETS_URL}add/", budget_form(**{field: value}))

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert not Budget.objects.exists()


def test_a_budget_is_added_and_the_list_shows_this_periods_spend(admin_client: Client) -> None:
    services.messages_append(
        key="b",
        session={"agent": "koda"},
        messages=[{"role": "assistant", "content": "a", "usage": {"cost_usd": "2.5"}}],
    )

    added = admin_client.post(f"{BUDGETS_URL}add/", budget_form(agent="koda"))
    listing = admin_client.get(BUDGETS_URL)
    change = admin_client.get(f"{BUDGETS_URL}{Budget.objects.get().pk}/change/")

    assert added.status_code == 302
    assert "$2.50 of $25.00 (10 %, ok)" in listing.content.decode()
    assert "$2.50 of $25.00 (10 %, ok)" in change.content.decode()


# --- large stores (issue 16) --------------------------------------------------------------


@pytest.mark.parametrize("url", [SESSIONS_URL, MESSAGES_URL])
def test_the_big_lists_count_their_rows_only_up_to_a_cap(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    from sessions.admin import common

    monkeypatch.setattr(common, "ADMIN_COUNT_CAP", 3)
    for index in range(3):
        make_session(f"s-{index}", messages=2)

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(url)

    assert response.context["cl"].result_count == 3  # 3 sessions or 6 messages: 3
    sqls = [q["sql"] for q in queries.captured_queries]
    assert [sql for sql in sqls if sql.startswith("SELECT COUNT(*) FROM (") and "LIMIT 4" in sql]
    assert not [sql for sql in sqls if 'COUNT(*) AS "__count"' in sql]  # no full count


def test_the_agent_and_model_filters_offer_the_rollups_values_not_a_scan_of_sessions(
    admin_client: Client,
) -> None:
    make_session("busy", agent="coder", model="gpt-x", messages=6)
    make_session("quiet", agent="writer", model="claude-y", messages=2)

    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(SESSIONS_URL)

    assert "?agent=coder" in page.text
    assert "?agent=writer" in page.text
    assert "?model=claude-y" in page.text
    # Most messages first.
    assert page.text.index("?agent=coder") < page.text.index("?agent=writer")
    grouped = [q["sql"] for q in queries.captured_queries if "GROUP BY" in q["sql"]]
    assert grouped
    assert all("agent_sessions_dailyusage" in sql for sql in grouped), grouped
