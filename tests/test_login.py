"""Log-in and log-out for the dashboard."""

from __future__ import annotations

from datetime import timedelta
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


# --- Throttling (django-axes): FLEET_LOGIN_FAILURE_LIMIT per username + address ---


def fail_until_locked(client: Client, username: str = "op", path: str = "/login/") -> None:
    from django.conf import settings

    for _ in range(settings.FLEET_LOGIN_FAILURE_LIMIT):
        client.post(path, {"username": username, "password": "wrong"})


def test_repeated_wrong_passwords_lock_out_even_the_right_one(client: Client, user: Any) -> None:
    fail_until_locked(client)

    response = client.post("/login/", {"username": "op", "password": "pw-operator-123"})

    assert response.status_code == 429
    html = response.content.decode()
    assert "Too many failed log-ins" in html
    assert "try again in 15 minutes" in html
    assert 'class="login-card"' in html
    assert client.get("/").status_code == 302


def test_the_failures_before_the_limit_do_not_lock_out(client: Client, user: Any) -> None:
    from django.conf import settings

    for _ in range(settings.FLEET_LOGIN_FAILURE_LIMIT - 1):
        assert client.post("/login/", {"username": "op", "password": "x"}).status_code == 200

    response = client.post("/login/", {"username": "op", "password": "pw-operator-123"})

    assert response.status_code == 302


def test_a_lockout_holds_one_username_from_one_address(
    client: Client, user: Any, django_user_model: Any
) -> None:
    django_user_model.objects.create_user("other", password="pw-other-123", is_staff=True)
    fail_until_locked(client)

    other_user = Client().post("/login/", {"username": "other", "password": "pw-other-123"})
    other_address = Client(REMOTE_ADDR="192.0.2.7").post(
        "/login/", {"username": "op", "password": "pw-operator-123"}
    )

    assert other_user.status_code == 302
    assert other_address.status_code == 302


def test_a_lockout_ends_after_the_cool_off(client: Client, user: Any) -> None:
    from axes.models import AccessAttempt
    from django.utils import timezone

    fail_until_locked(client)
    assert client.post("/login/", {"username": "op", "password": "pw-operator-123"}).status_code
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))

    response = client.post("/login/", {"username": "op", "password": "pw-operator-123"})

    assert response.status_code == 302


def test_the_admin_log_in_is_throttled_too(client: Client, user: Any) -> None:
    fail_until_locked(client, path="/admin/login/")

    response = client.post("/admin/login/", {"username": "op", "password": "pw-operator-123"})

    assert response.status_code == 429
    assert "Too many failed log-ins" in response.content.decode()
    assert client.get("/admin/").status_code == 302


def test_a_lockout_on_the_admin_also_holds_on_the_dashboard(client: Client, user: Any) -> None:
    fail_until_locked(client, path="/admin/login/")

    response = client.post("/login/", {"username": "op", "password": "pw-operator-123"})

    assert response.status_code == 429


def test_a_try_during_the_lockout_restarts_the_cool_off(client: Client, user: Any) -> None:
    from axes.models import AccessAttempt
    from django.db.models import F
    from django.utils import timezone

    fail_until_locked(client)
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=14))
    locked = client.post("/login/", {"username": "op", "password": "pw-operator-123"})
    # 16 minutes after the last failure, 2 after the try during the lockout.
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=2))

    response = client.post("/login/", {"username": "op", "password": "pw-operator-123"})

    assert locked.status_code == 429
    assert locked["Retry-After"] == "900"
    assert response.status_code == 429


def test_a_forged_forwarded_for_header_does_not_escape_a_lockout(client: Client, user: Any) -> None:
    fail_until_locked(client)

    response = client.post(
        "/login/",
        {"username": "op", "password": "pw-operator-123"},
        headers={"X-Forwarded-For": "203.0.113.9"},
    )

    assert response.status_code == 429


def test_behind_a_proxy_the_address_it_saw_is_the_client(
    client: Client, user: Any, settings: Any
) -> None:
    settings.FLEET_PROXY_COUNT = 1
    for _ in range(settings.FLEET_LOGIN_FAILURE_LIMIT):
        client.post(
            "/login/",
            {"username": "op", "password": "x"},
            headers={"X-Forwarded-For": "198.51.100.1"},
        )

    def log_in(forwarded_for: str) -> int:
        return (
            Client()
            .post(
                "/login/",
                {"username": "op", "password": "pw-operator-123"},
                headers={"X-Forwarded-For": forwarded_for},
            )
            .status_code
        )

    assert log_in("203.0.113.9, 198.51.100.1") == 429  # the client's own claim is ignored
    assert log_in("198.51.100.2") == 302


def test_a_forwarded_for_that_is_not_an_address_falls_back_to_the_peer(
    client: Client, user: Any, settings: Any
) -> None:
    settings.FLEET_PROXY_COUNT = 1

    response = client.post(
        "/login/",
        {"username": "op", "password": "x"},
        headers={"X-Forwarded-For": "not-an-address"},
    )

    assert response.status_code == 200
    from axes.models import AccessAttempt

    assert AccessAttempt.objects.get().ip_address == "127.0.0.1"
