"""Log-in and log-out for the dashboard."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def user(django_user_model: Any) -> Any:
    """An operator: not staff; the dashboard needs only the permission to view sessions."""
    user = django_user_model.objects.create_user("op", password="pw-operator-123")
    user.user_permissions.add(
        Permission.objects.get(content_type__app_label="agent_sessions", codename="view_session")
    )
    return user


def test_the_login_page_is_styled_and_open_to_anonymous_visitors(client: Client) -> None:
    response = client.get("/login/")

    assert response.status_code == 200
    html = response.content.decode()
    assert '<link rel="stylesheet" href="/static/fleet/fleet.css">' in html
    assert 'class="login-card"' in html
    assert 'name="csrfmiddlewaretoken"' in html


def test_logging_in_opens_the_fleet_page(client: Client, user: Any) -> None:
    response = client.post("/login/", {"username": "op", "password": "pw-operator-123"})

    assert response.status_code == 302
    assert response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_logging_in_returns_to_the_page_asked_for(client: Client, user: Any) -> None:
    redirect = client.get("/search?q=x")
    assert redirect["Location"] == "/login/?next=/search%3Fq%3Dx"

    response = client.post(
        "/login/", {"username": "op", "password": "pw-operator-123", "next": "/search?q=x"}
    )

    assert response["Location"] == "/search?q=x"


def test_it_never_redirects_off_site_after_login(client: Client, user: Any) -> None:
    response = client.post(
        "/login/",
        {"username": "op", "password": "pw-operator-123", "next": "https://evil.example/"},
    )

    assert response["Location"] == "/"


def test_a_wrong_password_shows_an_error(client: Client, user: Any) -> None:
    response = client.post("/login/", {"username": "op", "password": "nope"})

    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert client.get("/").status_code == 302


def test_a_logged_in_user_skips_the_login_page(client: Client, user: Any) -> None:
    client.force_login(user)

    assert client.get("/login/")["Location"] == "/"


def test_logging_out_returns_to_the_login_page_with_a_note(client: Client, user: Any) -> None:
    client.force_login(user)

    response = client.post("/logout/", follow=True)

    assert response.redirect_chain == [("/login/", 302)]
    assert b"You are logged out." in response.content
    assert client.get("/").status_code == 302


def test_logging_out_needs_a_post(client: Client, user: Any) -> None:
    client.force_login(user)

    assert client.get("/logout/").status_code == 405
    assert client.get("/").status_code == 200


def test_every_page_offers_the_log_out_button(client: Client, user: Any) -> None:
    client.force_login(user)

    html = client.get("/").content.decode()

    assert '<form class="logout" method="post" action="/logout/">' in html
