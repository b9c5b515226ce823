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
