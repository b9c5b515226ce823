"""The API key admin: the key is shown once on creation, listed by prefix, revocable."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from sessions.models import ApiKey
from tests.api_client import ApiClient

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/agent_sessions/apikey/"


def test_adding_a_key_shows_it_once_and_stores_only_its_hash(admin_client: Client) -> None:
    response = admin_client.post(f"{CHANGELIST}add/", {"name": "coder-1"}, follow=True)

    page = response.content.decode()
    token = re.search(r"<code>(fleet_[^<]+)</code>", page).group(1)
    key = ApiKey.objects.get(name="coder-1")
    assert key.hashed_key == ApiKey.hash_token(token)
    assert ApiClient(token).get("sessions").status_code == 200
    # Shown once: no later page shows it again.
    listing = admin_client.get(CHANGELIST).content.decode()
    change = admin_client.get(f"{CHANGELIST}{key.pk}/change/").content.decode()
    assert token not in listing
    assert token not in change
    assert key.hashed_key not in change
    assert key.prefix in listing


def test_the_add_form_asks_only_for_a_name(admin_client: Client) -> None:
    page = admin_client.get(f"{CHANGELIST}add/").content.decode()

    assert 'name="name"' in page
    assert 'name="hashed_key"' not in page
    assert 'name="prefix"' not in page


def test_a_duplicate_name_is_a_form_error(admin_client: Client) -> None:
    ApiKey.generate(name="coder-1")

    response = admin_client.post(f"{CHANGELIST}add/", {"name": "coder-1"})

    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert ApiKey.objects.count() == 1


def test_the_revoke_action_revokes_and_the_key_stops_working(admin_client: Client) -> None:
    key, token = ApiKey.generate(name="old")
    other, other_token = ApiKey.generate(name="new")

    admin_client.post(
        CHANGELIST, {"action": "revoke_keys", "_selected_action": [key.pk]}, follow=True
    )

    key.refresh_from_db()
    other.refresh_from_db()
    assert key.revoked_at is not None
    assert other.revoked_at is None
    assert ApiClient(token).get("sessions").status_code == 401
    assert ApiClient(other_token).get("sessions").status_code == 200


def test_the_list_shows_prefix_times_and_revocation(admin_client: Client) -> None:
    key, _ = ApiKey.generate(name="ci")
    key.revoke()

    page = admin_client.get(CHANGELIST).content.decode()

    for column in ("Prefix", "Created at", "Last used at", "Revoked at"):
        assert column in page
    assert key.prefix in page


def test_a_key_added_with_a_scope_is_limited_to_it(admin_client: Client) -> None:
    response = admin_client.post(
        f"{CHANGELIST}add/",
        {"name": "bot", "agents": "bot-a\n\n bot-b \nbot-a", "read_only": "on"},
        follow=True,
    )

    token = re.search(r"<code>(fleet_[^<]+)</code>", response.content.decode()).group(1)
    key = ApiKey.objects.get(name="bot")
    assert key.agents == ["bot-a", "bot-b"]
    assert key.read_only is True
    assert ApiClient(token).put("sessions/s", {"agent": "bot-a"}).status_code == 403


def test_the_scope_is_editable_and_holds_on_the_next_request(admin_client: Client) -> None:
    key, token = ApiKey.generate(name="bot", agents=["bot-a"])
    api = ApiClient(token)
    assert api.put("sessions/s", {"agent": "bot-b"}).status_code == 403
    page = admin_client.get(f"{CHANGELIST}{key.pk}/change/").content.decode()
    assert re.search(r"<textarea name=\"agents\"[^>]*>\s*bot-a</textarea>", page)

    admin_client.post(f"{CHANGELIST}{key.pk}/change/", {"name": "bot", "agents": "bot-a\nbot-b"})

    key.refresh_from_db()
    assert key.agents == ["bot-a", "bot-b"]
    assert api.put("sessions/s", {"agent": "bot-b"}).status_code == 201


def test_clearing_the_agents_gives_the_key_every_agent(admin_client: Client) -> None:
    key, _ = ApiKey.generate(name="bot", agents=["bot-a"], read_only=True)

    admin_client.post(f"{CHANGELIST}{key.pk}/change/", {"name": "bot", "agents": ""})

    key.refresh_from_db()
    assert key.agents == []
    assert key.read_only is False
    assert key.scope.is_full


def test_a_bad_agent_name_is_a_form_error(admin_client: Client) -> None:
    response = admin_client.post(f"{CHANGELIST}add/", {"name": "bot", "agents": "x" * 300})

    assert response.status_code == 200
    assert "at most 255 characters" in response.content.decode()
    assert not ApiKey.objects.exists()


def test_the_list_shows_each_keys_scope(admin_client: Client) -> None:
    ApiKey.generate(name="full")
    ApiKey.generate(name="scoped", agents=["bot-a", "bot-b"])
    ApiKey.generate(name="reader", read_only=True)

    page = admin_client.get(CHANGELIST).content.decode()

    assert "Scope" in page
    assert "all agents</td>" in page
    assert "bot-a, bot-b</td>" in page
    assert "all agents (read-only)</td>" in page
